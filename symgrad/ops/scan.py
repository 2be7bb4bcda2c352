"""Loops and control flow: ``scan`` (and ``map``) and ``ifelse``, ops that hold inner graphs.

A :class:`Scan` node runs its inner graph (the step) once per step. The step
was traced once, symbolically, by calling the user's function on
placeholders: one per sequence slice, one per previous value of a recurrent
output, one per value the step reads from outside (non-sequences, shared
variables, constants' computations and any outer expression). Those outer
values are cut out of the step and become explicit inputs of the node, so
the outer graph sees every dependence (gradients reach shared parameters
read inside the step; work that does not depend on the step is done once,
before the loop). Node inputs: ``[n_steps, sequences..., initial values...,
outer values...]``; outputs: one per recurrent output (the stack of every
step's value, or only the final value, ``last``), then one stack per output
that is not fed back.

:class:`IfElse` holds two inner graphs over the same outer values; only the
branch the condition selects runs.

Gradients are ordinary graphs: the gradient of a scan is a scan running
backwards over the steps (back-propagation through time); the gradient of an
ifelse an ifelse of the branches' gradients. Both rules differentiate their
inner graphs with the ``vjp`` that :mod:`symgrad.autodiff` hands to ops with
``grad_takes_vjp`` (this module is below autodiff and does not import it).

Mode "c" has no lowering of these ops yet: compiling them raises
``codegen.render_c.NoLowering`` naming the node and the user's line.
"""

import collections

import numpy as np

from .. import dtypes as _dt
from ..errors import ShapeError
from ..graph import (Constant, Op, SharedVariable, TensorType, Variable, as_variable,
                     clone_replace, flatten_graph, toposort, trace_as, unflatten_graph,
                     user_trace)
from ..interp import Program
from . import elemwise as _ew
from . import shape as _sh
from .join import concatenate

__all__ = ["scan", "map", "ifelse"]

_builtin_map = map


# --------------------------------------------------------------------------- inner graphs

class InnerGraph:
    """A graph from placeholder ``inputs`` to ``outputs``, run by the NumPy reference."""

    def __init__(self, inputs, outputs):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self._program = None

    @property
    def program(self):
        if self._program is None:
            self._program = Program(self.inputs, self.outputs)
        return self._program

    def run(self, values):
        return self.program.run(list(values))

    def nodes(self):
        return toposort(self.outputs)

    def rebuilt_on(self, values):
        """The outputs with ``values`` (Variables) in place of the inputs."""
        return clone_replace(self.outputs, dict(zip(self.inputs, values)))

    def __getstate__(self):
        # Flattened: pickling a long chain of nodes recursively overflows the C stack.
        n = len(self.inputs)
        return {"graph": flatten_graph(self.inputs + self.outputs), "n": n}

    def __setstate__(self, state):
        roots = unflatten_graph(state["graph"])
        self.inputs, self.outputs = roots[:state["n"]], roots[state["n"]:]
        self._program = None


def _placeholder(v, name=None):
    return Variable(v.type, name=name if name is not None else v.name)


def _close_over(outputs, inside, placeholders=()):
    """Cut ``outputs`` (a step or branch traced on outer variables) from the outer graph.

    ``inside(v)`` says whether ``v`` belongs to the inner graph; the outer
    variables the inner graph reads (its frontier) become new placeholders.
    Returns ``(outer variables, their placeholders, inner outputs)``.
    """
    frontier, seen = [], set()
    stack = list(reversed(outputs))
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if not inside(v):
            frontier.append(v)
        elif v.owner is not None:
            stack.extend(reversed(v.owner.inputs))
    ph_ids = {id(p) for p in placeholders}
    frontier = [v for v in frontier if id(v) not in ph_ids]
    phs = [_placeholder(v) for v in frontier]
    inner = _replace(outputs, dict(zip(frontier, phs))) if frontier else list(outputs)
    return frontier, phs, inner


def _replace(outputs, mapping):
    """``clone_replace`` that never rebuilds the graph above a replaced variable."""
    memo = {id(k): v for k, v in mapping.items()}
    for node in toposort(outputs, stop=set(memo)):
        new_inputs = [memo.get(id(i), i) for i in node.inputs]
        if all(a is b for a, b in zip(new_inputs, node.inputs)):
            continue
        with trace_as(node.trace, node.grad_of):
            new_node = node.op.make_node(*new_inputs)
        for old, new in zip(node.outputs, new_node.outputs):
            new.name = old.name
            new.tag.__dict__.update(old.tag.__dict__)
            memo[id(old)] = new
    return [memo.get(id(o), o) for o in outputs]


def _dependence(outputs, placeholders):
    """``(depends on a placeholder, computed from constants only)``: two id sets."""
    dep = {id(p) for p in placeholders}
    const = set()
    for v in outputs:
        if isinstance(v, Constant):
            const.add(id(v))
    for node in toposort(outputs, stop=dep):
        ids = [id(i) for i in node.inputs]
        for i in node.inputs:
            if isinstance(i, Constant):
                const.add(id(i))
        if any(i in dep for i in ids):
            dep.update(id(o) for o in node.outputs)
        elif all(i in const for i in ids):
            const.update(id(o) for o in node.outputs)
    return dep, const


def _merge_shapes(a, b):
    """Per axis the length both agree on (None where either is unknown)."""
    return tuple(x if x == y else None for x, y in zip(a, b))


def _known_union(a, b):
    return tuple(x if x is not None else y for x, y in zip(a, b))


def _conflict(a, b):
    return any(x is not None and y is not None and x != y for x, y in zip(a, b))


def _at(trace=None):
    return f"(at {trace or user_trace()})"


def _fn_where(fn):
    code = getattr(fn, "__code__", None)
    if code is None:
        return getattr(fn, "__name__", repr(fn))
    return f"{getattr(fn, '__name__', 'fn')} at {code.co_filename}:{code.co_firstlineno}"


# --------------------------------------------------------------------------- Scan

class Scan(Op):
    """A loop over ``n_steps`` steps of an inner graph; see the module docstring.

    Inner inputs: sequence slices (``n_seqs``), previous values of the
    recurrent outputs (``n_rec``), outer values (the rest). Inner outputs:
    the recurrent outputs' new values, then the outputs not fed back.
    ``last[k]``: recurrent output ``k`` comes out as its final value (the
    initial value after zero steps) rather than a stack.
    ``truncate`` bounds back-propagation through time to that many steps.
    """

    name = "scan"
    grad_takes_vjp = True

    def __init__(self, inner, n_seqs, n_rec, last=None, truncate=-1, label=None):
        self.inner = inner
        self.n_seqs, self.n_rec = int(n_seqs), int(n_rec)
        self.n_other = len(inner.inputs) - self.n_seqs - self.n_rec
        self.n_nonrec = len(inner.outputs) - self.n_rec
        self.last = tuple(bool(x) for x in (last or (False,) * self.n_rec))
        self.truncate = int(truncate)
        self.label = label

    # Two loops are the same op only if they are the same object: comparing inner
    # graphs would cost as much as they are large.
    def __eq__(self, other):
        return self is other

    def __hash__(self):
        return id(self)

    def props(self):  # what the rewrites' merging compares: the op itself
        return (id(self),)

    def __str__(self):
        return f"scan{{{self.label}}}" if self.label else "scan"

    __repr__ = __str__

    def inner_graphs(self):
        """``[(title, InnerGraph)]``: what printing shows below the outer graph."""
        return [("step", self.inner)]

    def split(self, values):
        """``(n_steps, sequences, initial values, outer values)`` of a node's inputs."""
        s, r = self.n_seqs, self.n_rec
        return values[0], list(values[1:1 + s]), list(values[1 + s:1 + s + r]), \
            list(values[1 + s + r:])

    def infer(self, n_steps, *outer):
        if n_steps.ndim != 0 or not _dt.is_int(n_steps.dtype):
            raise TypeError(f"n_steps must be a 0-d integer, got {n_steps.type}")
        if len(outer) != len(self.inner.inputs):
            raise TypeError(f"expects {len(self.inner.inputs)} inputs after n_steps, "
                            f"got {len(outer)}")
        _, seqs, inits, others = self.split([n_steps, *outer])
        phs = self.inner.inputs
        steps = n_steps.data.item() if isinstance(n_steps, Constant) else None
        for i, (x, p) in enumerate(zip(seqs, phs)):
            if x.ndim != p.ndim + 1 or x.dtype != p.dtype or _conflict(x.shape[1:], p.shape):
                raise TypeError(f"sequence {i} is {x.type}, its step reads slices of type "
                                f"{p.type}")
            if x.shape[0] is not None:
                if steps is not None and steps != x.shape[0]:
                    raise ShapeError(f"sequence {i} has {x.shape[0]} steps but the loop runs "
                                     f"n_steps={steps}")
                steps = x.shape[0]
        for k, (x, p) in enumerate(zip(inits, phs[self.n_seqs:])):
            if x.ndim != p.ndim or x.dtype != p.dtype or _conflict(x.shape, p.shape):
                raise TypeError(f"the initial value of recurrent output {k} is {x.type}, "
                                f"its step reads {p.type}")
        for x, p in zip(others, phs[self.n_seqs + self.n_rec:]):
            if x.ndim != p.ndim or x.dtype != p.dtype or _conflict(x.shape, p.shape):
                raise TypeError(f"an outer value is {x.type}, its step reads {p.type}")
        types = []
        outs = self.inner.outputs
        for k in range(self.n_rec):
            shape = _known_union(inits[k].shape, outs[k].shape)
            types.append(TensorType(inits[k].dtype, shape if self.last[k] else (steps, *shape)))
        for o in outs[self.n_rec:]:
            types.append(TensorType(o.dtype, (steps, *o.shape)))
        return types

    # ------------------------------------------------------------------ reference

    def perform(self, node, n_steps, *values):
        steps = int(n_steps)
        _, seqs, inits, others = self.split([n_steps, *values])
        where = f"{self} at {node.trace}"
        if steps < 0:
            raise ShapeError(f"{where}: n_steps is {steps}; a loop runs 0 or more steps")
        lengths = [len(s) for s in seqs]
        if len(set(lengths)) > 1:
            shown = ", ".join(f"sequence {i}: {n}" for i, n in enumerate(lengths))
            raise ShapeError(f"{where}: the sequences have different lengths ({shown}); "
                             f"every sequence needs one entry per step")
        if lengths and lengths[0] != steps:
            raise ShapeError(f"{where}: the sequences have {lengths[0]} entries but the loop "
                             f"runs n_steps={steps} steps")
        r = self.n_rec
        prev = list(inits)
        stacks = [None] * len(self.inner.outputs)
        for t in range(steps):
            outs = self.inner.run([s[t] for s in seqs] + prev + others)
            for k in range(r):
                if outs[k].shape != prev[k].shape:
                    raise ShapeError(
                        f"{where}: recurrent output {k} has shape {outs[k].shape} at step {t} "
                        f"but its previous value had shape {prev[k].shape}; a value fed back "
                        f"must keep its shape")
            for k, o in enumerate(outs):
                if k < r and self.last[k]:
                    continue
                if stacks[k] is None:
                    stacks[k] = np.empty((steps, *o.shape), dtype=node.outputs[k].dtype)
                elif stacks[k].shape[1:] != o.shape:
                    raise ShapeError(f"{where}: output {k} has shape {o.shape} at step {t} but "
                                     f"{stacks[k].shape[1:]} at step 0; every step's value "
                                     f"must have the same shape")
                stacks[k][t] = o
            prev = outs[:r]
        results = []
        for k, var in enumerate(node.outputs):
            if k < r and self.last[k]:
                results.append(np.array(prev[k], dtype=var.dtype, copy=True))
            elif stacks[k] is not None:
                results.append(stacks[k])
            else:
                results.append(np.empty((0, *self._empty_shape(k, seqs, inits, others)),
                                        dtype=var.dtype))
        return results

    def _empty_shape(self, k, seqs, inits, others):
        """The shape of output ``k``'s value at a step, for a loop of zero steps."""
        if k < self.n_rec:
            return inits[k].shape
        out = self.inner.outputs[k]
        if None not in out.shape:
            return out.shape
        # Not static: run the step once on zeros of the right shapes, for its shapes only.
        probe = [np.zeros(s.shape[1:], dtype=s.dtype) for s in seqs] + list(inits) + list(others)
        try:
            with np.errstate(all="ignore"):
                return self.inner.run(probe)[k].shape
        except Exception as e:
            raise ShapeError(f"{self}: a loop of zero steps returns an empty stack of output "
                             f"{k}, whose per-step shape {out.type} is not known when the "
                             f"graph is built and could not be found from the inputs' shapes "
                             f"({e})") from None

    def flops(self, node, in_shapes, out_shapes):
        """The step's count (at the inputs' shapes, found by running it on zeros) times
        the number of steps."""
        stacked = [s for k, s in enumerate(out_shapes)
                   if not (k < self.n_rec and self.last[k])]
        if not stacked:
            raise NotImplementedError("a loop returning only final values does not say its "
                                      "number of steps in its shapes")
        steps = stacked[0][0]
        s = self.n_seqs
        shapes = [sh[1:] for sh in in_shapes[1:1 + s]] + list(in_shapes[1 + s:])
        return steps * _graph_flops(self.inner, shapes)

    # ------------------------------------------------------------------ gradient

    def grad(self, node, inputs, outputs, gouts, vjp=None, wanted=None):
        return _scan_grad(self, node, inputs, outputs, gouts, vjp, wanted)


def _graph_flops(inner, shapes):
    """FLOPs of one run of ``inner`` on inputs of these shapes (values: zeros)."""
    vals = [np.zeros(sh, dtype=p.dtype) for p, sh in zip(inner.inputs, shapes)]
    prog = Program(inner.inputs, [o for n in inner.nodes() for o in n.outputs])
    with np.errstate(all="ignore"):
        got = prog.run(vals)
    shape_of = {id(p): v.shape for p, v in zip(inner.inputs, vals)}
    shape_of.update({id(v): g.shape for v, g in zip(prog.outputs, got)})
    total = 0
    for n in inner.nodes():
        ins = [shape_of.get(id(i), getattr(i, "data", np.zeros(())).shape) for i in n.inputs]
        total += int(n.op.flops(n, ins, [shape_of[id(o)] for o in n.outputs]))
    return total


# --------------------------------------------------------------------------- building loops

def _build_loop(label, n_steps, seqs, inits, step, last=None, truncate=-1, seq_names=None,
                rec_names=None, bound=()):
    """A Scan node over ``seqs`` (each ``n_steps`` long) and recurrent ``inits``.

    ``step(*slices, *prev)`` returns ``(new values of the recurrent outputs,
    outputs not fed back)`` as Variables. Outer values it reads become the
    node's inputs; sequences the step does not read are left out.
    Returns the node's outputs.
    """
    seq_names = seq_names or [None] * len(seqs)
    rec_names = rec_names or [None] * len(inits)
    seq_phs = [Variable(TensorType(x.dtype, x.shape[1:]), name=n) for x, n in zip(seqs, seq_names)]
    prev_phs = [_placeholder(x, n) for x, n in zip(inits, rec_names)]
    rec_outs, other_outs = step(*seq_phs, *prev_phs)
    rec_outs = [as_variable(o) for o in rec_outs]
    other_outs = [as_variable(o) for o in other_outs]
    return _make_scan(label, n_steps, list(zip(seqs, seq_phs)), list(zip(inits, prev_phs)),
                      rec_outs, other_outs, last, truncate, bound=bound)


def _make_scan(label, n_steps, seq_pairs, rec_pairs, rec_outs, other_outs, last=None,
               truncate=-1, trace=None, bound=()):
    """The Scan node of a step already traced on placeholders; see :func:`_build_loop`.

    ``bound`` lists ``(outer value, placeholder)``: placeholders the step was traced on
    that stand for outer values (a gradient rule differentiates with respect to them,
    never to the outer values, which may depend on one another). What the step computes
    from them alone is loop-invariant: it is computed before the loop, from the values.
    """
    phs = [p for _, p in seq_pairs] + [p for _, p in rec_pairs]
    outs = list(rec_outs) + list(other_outs)
    dep, const = _dependence(outs, phs)
    ph_ids = {id(p) for p in phs}
    outer, outer_phs, inner_outs = _close_over(
        outs, lambda v: id(v) in dep or id(v) in const or id(v) in ph_ids, phs)
    if bound:
        outer = _replace(outer, {p: x for x, p in bound})
    used = {id(v) for n in toposort(inner_outs) for v in n.inputs} | {id(v) for v in inner_outs}
    seq_pairs = [(x, p) for x, p in seq_pairs if id(p) in used]
    inner = InnerGraph([p for _, p in seq_pairs] + [p for _, p in rec_pairs] + outer_phs,
                       inner_outs)
    _name_placeholders(inner.inputs, len(seq_pairs), len(rec_pairs))
    op = Scan(inner, len(seq_pairs), len(rec_pairs), last, truncate, label)
    n_steps = _ew.cast(as_variable(n_steps), "int64")
    args = [n_steps] + [x for x, _ in seq_pairs] + [x for x, _ in rec_pairs] + outer
    if trace is not None:
        with trace_as(trace):
            return op.make_node(*args).outputs
    return op.make_node(*args).outputs


def _name_placeholders(phs, n_seqs, n_rec):
    """Names for printing the unnamed ones: ``seq0[t]``, ``prev0`` (recurrent), ``outer0``."""
    for j, p in enumerate(phs):
        if p.name is None:
            p.name = (f"seq{j}[t]" if j < n_seqs else f"prev{j - n_seqs}" if j < n_seqs + n_rec
                      else f"outer{j - n_seqs - n_rec}")


# --------------------------------------------------------------------------- BPTT

def _reverse(x):
    return x[::-1]


def _stack_zeros_like(x, length):
    dims = [length] + [x.shape[k] if x.shape[k] is not None else _sh.shape_at(x, k)
                       for k in range(1, x.ndim)]
    return _sh.zeros(tuple(dims), dtype=x.dtype)


def _scan_grad(op, node, inputs, outputs, gouts, vjp, wanted):
    """Back-propagation through time: a Scan over the steps in reverse; see the module docstring."""
    if vjp is None:
        raise TypeError("the gradient of scan is taken by symgrad.grad (it passes vjp=)")
    wanted = list(wanted) if wanted is not None else [True] * len(inputs)
    n_steps, seqs, inits, others = op.split(inputs)
    s, r = op.n_seqs, op.n_rec
    w_seqs, w_inits, w_others = wanted[1:1 + s], wanted[1 + s:1 + s + r], wanted[1 + s + r:]
    is_f = _dt.is_float
    if any(op.last[k] for k in range(r)):
        # final values only: the backward pass needs every step's value, so run again with stacks
        again = Scan(op.inner, s, r, None, op.truncate, op.label)
        with trace_as(node.trace, node.grad_of):
            stacks = again.make_node(*inputs).outputs
    else:
        stacks = outputs
    ys = stacks[:r]
    T = n_steps
    trunc = op.truncate
    Tb = T if trunc <= 0 else _ew.minimum(T, trunc)

    def back(x):  # forward-time stack -> the steps back-propagated, latest first
        rev = _reverse(x)
        return rev if trunc <= 0 else rev[:Tb]

    prevs = [concatenate([_sh.expand_dims(i, 0), y], axis=0)[:-1] for i, y in zip(inits, ys)]
    g_stack = [gouts[k] if k < r and not op.last[k] or k >= r else None
               for k in range(len(outputs))]
    g_final = [gouts[k] if op.last[k] else None for k in range(r)]
    fl_recs = [k for k in range(r) if is_f(inits[k].dtype)]
    want_seq = [i for i in range(s) if w_seqs[i] and is_f(seqs[i].dtype)]
    want_other = [j for j in range(len(others)) if w_others[j] and is_f(others[j].dtype)]
    seeded = [k for k in range(len(outputs)) if g_stack[k] is not None and is_f(outputs[k].dtype)]

    other_phs = [_placeholder(o) for o in others]
    bseqs = [back(x) for x in seqs] + [back(p) for p in prevs] + [back(g_stack[k]) for k in seeded]
    binits = []
    for k in fl_recs:
        g = g_final[k]
        binits.append(_ew.cast(g, inits[k].dtype) if g is not None else _sh.zeros_like(inits[k]))
    binits += [_sh.zeros_like(others[j]) for j in want_other]

    def step(*phs):
        x_ph, p_ph = phs[:s], phs[s:s + r]
        g_ph = phs[s + r:s + r + len(seeded)]
        carry = phs[s + r + len(seeded):s + r + len(seeded) + len(fl_recs)]
        acc = phs[s + r + len(seeded) + len(fl_recs):]
        outs = op.inner.rebuilt_on(list(x_ph) + list(p_ph) + other_phs)
        seeds = [(outs[k], c) for k, c in zip(fl_recs, carry)]
        seeds += [(outs[k], g) for k, g in zip(seeded, g_ph)]
        wrt = [x_ph[i] for i in want_seq] + [p_ph[k] for k in fl_recs] + \
              [other_phs[j] for j in want_other]
        grads = vjp(seeds, wrt) if wrt else []
        g_x = grads[:len(want_seq)]
        g_p = grads[len(want_seq):len(want_seq) + len(fl_recs)]
        g_o = grads[len(want_seq) + len(fl_recs):]
        new_acc = [a + _ew.cast(g, a.dtype) for a, g in zip(acc, g_o)]
        return list(g_p) + new_acc, list(g_x)

    names = [f"{x.name}[t]" if x.name else None for x in seqs] + \
        [f"{y.name}[t-1]" if y.name else None for y in inits] + \
        [f"d({outputs[k].name or f'out{k}'}[t])" for k in seeded]
    bnames = [f"d({inits[k].name or f'prev{k}'})" for k in fl_recs] + \
        [f"sum d({others[j].name or f'outer{j}'})" for j in want_other]
    label = f"grad of {op.label or 'scan'}"
    bouts = _build_loop(label, Tb, bseqs, binits, step,
                        last=[True] * len(binits),
                        seq_names=names, rec_names=bnames, bound=list(zip(others, other_phs)))
    n_fr = len(fl_recs)
    carries, accs, g_xs = bouts[:n_fr], bouts[n_fr:len(binits)], bouts[len(binits):]
    result = [None] * len(inputs)
    for i, g in zip(want_seq, g_xs):
        g = _reverse(g)
        if trunc > 0:
            g = concatenate([_stack_zeros_like(seqs[i], T - Tb), g], axis=0)
        result[1 + i] = g
    for k, c in zip(fl_recs, carries):
        if not w_inits[k]:
            continue
        if trunc > 0:  # the carry reached the initial value only if nothing was cut
            c = _ew.where(_ew.le(T, trunc), c, _sh.zeros_like(c))
        result[1 + s + k] = c
    for j, a in zip(want_other, accs):
        result[1 + s + r + j] = a
    return result


# --------------------------------------------------------------------------- sg.scan

def _as_list(x):
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _initial(entry, k, where):
    if isinstance(entry, dict):
        taps = list(entry.get("taps", [-1]))
        if taps != [-1]:
            raise ValueError(f"scan: outputs_info[{k}] asks for taps {taps}; only the previous "
                             f"value (taps=[-1]) is supported {where}")
        entry = entry.get("initial")
        if entry is None:
            return None
    return as_variable(entry)


def _is_random_state(sv):
    """A random stream's state: the only shared variable a step may advance."""
    return bool(getattr(sv, "is_random_state", False))


def scan(fn, sequences=None, outputs_info=None, non_sequences=None, n_steps=None,
         go_backwards=False, truncate_gradient=-1, name=None):
    """A loop: ``fn`` applied step by step, with Theano's calling convention.

    ``fn`` is called once, symbolically, with one slice (leading axis) of each
    sequence, then the previous value of each recurrent output, then the
    non-sequences, in that order. It returns a Variable, a list of them, or
    ``(outputs, updates)``. Each output comes back as the stack of every
    step's value (leading axis: steps).

    Parameters
    ----------
    fn : callable
    sequences : Variable or list, optional
        Looped over along their first axis; all must have the same length.
    outputs_info : list, optional
        One entry per output of ``fn``: its initial value (the output is fed
        back to the next step) or None (it is not).
    non_sequences : Variable or list, optional
        Passed to every step as they are. Other outer values the step reads
        (shared variables, inputs) need not be listed.
    n_steps : int or 0-d integer Variable, optional
        Required without sequences; with sequences, the number of their
        first entries to loop over.
    go_backwards : bool
        Loop over the sequences from their last entry to their first.
    truncate_gradient : int
        Back-propagate through at most this many steps (-1: all).
    name : str, optional
        Shown by printing; gradient loops say ``grad of <name>``.

    Returns
    -------
    (outputs, updates)
        ``outputs``: a Variable for one output, else a list; ``updates``: an
        ``OrderedDict`` for ``sg.function`` (random-stream state advanced
        inside the loop; empty otherwise).

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> sums, _ = sg.scan(lambda x_t, acc: acc + x_t, sequences=x, outputs_info=sg.constant(0.0))
    >>> sg.evaluate(sums, {x: np.array([1.0, 2.0, 3.0])})
    array([1., 3., 6.])
    """
    where = _at()
    trace = user_trace()
    seqs = [as_variable(x) for x in _as_list(sequences)]
    for i, x in enumerate(seqs):
        if x.ndim == 0:
            raise ShapeError(f"scan: sequence {i} is 0-d ({x.type}); a sequence is looped over "
                             f"along its first axis {where}")
    single_info = outputs_info is not None and not isinstance(outputs_info, (list, tuple))
    infos = _as_list(outputs_info)
    inits = [None if e is None else _initial(e, k, where) for k, e in enumerate(infos)]
    non_seqs = [as_variable(x) for x in _as_list(non_sequences)]
    if truncate_gradient is None or int(truncate_gradient) == 0:
        raise ValueError(f"scan: truncate_gradient must be -1 (no truncation) or a positive "
                         f"number of steps, got {truncate_gradient!r} {where}")
    if n_steps is None:
        if not seqs:
            raise ValueError(f"scan: n_steps is required when there is no sequence (the loop "
                             f"has nothing to take its length from) {where}")
        n = _sh.shape_at(seqs[0], 0) if seqs[0].shape[0] is None else seqs[0].shape[0]
    else:
        n = as_variable(n_steps) if isinstance(n_steps, Variable) else n_steps
        if isinstance(n, Variable) and (n.ndim != 0 or not _dt.is_int(n.dtype)):
            raise TypeError(f"scan: n_steps must be an int or a 0-d integer Variable, got "
                            f"{n.type} {where}")
        if not isinstance(n, Variable):
            if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
                raise TypeError(f"scan: n_steps must be an int or a 0-d integer Variable, got "
                                f"{n!r} {where}")
            if n < 0:
                raise ValueError(f"scan: n_steps is {n}; a loop runs 0 or more steps {where}")
        # the first n_steps entries; the loop checks at run time that there are that many
        seqs = [x[:n] for x in seqs]
    if go_backwards:
        seqs = [x[::-1] for x in seqs]
    rec = [k for k, i in enumerate(inits) if i is not None]
    seq_phs = [Variable(TensorType(x.dtype, x.shape[1:]),
                        name=f"{x.name}[t]" if x.name else None) for x in seqs]
    prev_phs = [_placeholder(inits[k], f"{inits[k].name}[t-1]" if inits[k].name else None)
                for k in rec]
    got = fn(*seq_phs, *prev_phs, *non_seqs)
    outs, updates = _split_result(got, fn, where)
    if outputs_info is not None and not single_info or single_info:
        if len(outs) != len(inits):
            raise ValueError(
                f"scan: the step function ({_fn_where(fn)}) returned {len(outs)} output"
                f"{'s' * (len(outs) != 1)} but outputs_info has {len(inits)} entr"
                f"{'ies' if len(inits) != 1 else 'y'}; give one entry per output (None for an "
                f"output that is not fed back) {where}")
    else:
        inits = [None] * len(outs)
        rec = []
    for k in rec:
        o, i = outs[k], inits[k]
        if o.dtype != i.dtype or o.ndim != i.ndim or _conflict(o.shape, i.shape):
            made = f" made at {o.owner.trace}" if o.owner is not None else ""
            raise TypeError(
                f"scan: output {k} of the step function ({_fn_where(fn)}) is {o.type}{made}, but "
                f"its initial value outputs_info[{k}] is {i.type}; a value fed back to the next "
                f"step must keep its dtype, number of dimensions and static shape (cast the "
                f"initial value or the output, e.g. .astype('{i.dtype}')) {where}")
    rand_updates = _check_updates(updates, fn, where)
    # random-stream state advanced inside the loop: a hidden recurrent output, final value only
    state_phs = [_placeholder(sv, f"{sv.name}[t-1]" if sv.name else None) for sv, _ in rand_updates]
    swap = {sv: p for (sv, _), p in zip(rand_updates, state_phs)}
    rec_outs = [outs[k] for k in rec] + [e for _, e in rand_updates]
    other_idx = [k for k in range(len(outs)) if k not in rec]
    other_outs = [outs[k] for k in other_idx]
    if swap:
        both = clone_replace(rec_outs + other_outs, swap)
        rec_outs, other_outs = both[:len(rec_outs)], both[len(rec_outs):]
    rec_pairs = [(inits[k], p) for k, p in zip(rec, prev_phs)] + \
        [(sv, p) for (sv, _), p in zip(rand_updates, state_phs)]
    last = [False] * len(rec) + [True] * len(rand_updates)
    node_outs = _make_scan(name, n, list(zip(seqs, seq_phs)), rec_pairs, rec_outs, other_outs,
                           last, int(truncate_gradient), trace)
    result = [None] * len(outs)
    for j, k in enumerate(rec):
        result[k] = node_outs[j]
    for j, k in enumerate(other_idx):
        result[k] = node_outs[len(rec_pairs) + j]
    for k, v in enumerate(result):
        if name and v.name is None:
            v.name = name if len(result) == 1 else f"{name}[{k}]"
    upd = collections.OrderedDict(
        (sv, node_outs[len(rec) + j]) for j, (sv, _) in enumerate(rand_updates))
    return (result[0] if len(result) == 1 else result), upd


def _split_result(got, fn, where):
    updates = None
    if isinstance(got, tuple) and len(got) == 2 and isinstance(got[1], dict):
        got, updates = got
    elif isinstance(got, dict):
        got, updates = [], got
    outs = _as_list(got)
    for k, o in enumerate(outs):
        if not isinstance(o, Variable):
            if isinstance(o, (int, float, bool, np.ndarray, np.generic)):
                outs[k] = as_variable(o)
                continue
            raise TypeError(f"scan: output {k} of the step function ({_fn_where(fn)}) is a "
                            f"{type(o).__name__}, not a symbolic Variable {where}")
    return outs, updates


def _check_updates(updates, fn, where):
    if not updates:
        return []
    out = []
    for sv, expr in updates.items():
        if not isinstance(sv, SharedVariable) or not _is_random_state(sv):
            label = repr(sv.name) if getattr(sv, "name", None) else repr(sv)
            made = (f" (the new value is made at {expr.owner.trace})"
                    if isinstance(expr, Variable) and expr.owner is not None else "")
            raise ValueError(
                f"scan: the step function ({_fn_where(fn)}) assigns the shared variable {label}"
                f"{made}; a step may read shared variables but not assign them (only a random "
                f"stream's state may advance inside a loop). Return the new value as an output "
                f"of the step instead, and update the variable with the loop's result "
                f"(e.g. its last step) in sg.function(..., updates=...) {where}")
        expr = as_variable(expr)
        if expr.type.dtype != sv.dtype or expr.ndim != sv.ndim:
            raise TypeError(f"scan: the update of {sv.name or sv} in the step is {expr.type}, "
                            f"the variable is {sv.type} {where}")
        out.append((sv, expr))
    return out


def map(fn, sequences, non_sequences=None, name=None):  # noqa: A001 - Theano's name
    """``fn`` applied to every entry of the sequences: a scan with nothing fed back.

    Returns ``(outputs, updates)`` like :func:`scan`.

    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> sq, _ = sg.map(lambda v: v * v, x)
    >>> sg.evaluate(sq, {x: np.array([1.0, 2.0])})
    array([1., 4.])
    """
    return scan(fn, sequences=sequences, non_sequences=non_sequences, name=name)


# --------------------------------------------------------------------------- IfElse

class IfElse(Op):
    """``then`` if the 0-d condition holds, else ``else_``: only that branch runs.

    Inputs: ``[cond, outer values...]``; ``then_graph`` and ``else_graph``
    are inner graphs over the same placeholders, one per outer value.
    """

    name = "ifelse"
    grad_takes_vjp = True

    def __init__(self, then_graph, else_graph):
        self.then_graph, self.else_graph = then_graph, else_graph

    def __eq__(self, other):
        return self is other

    def __hash__(self):
        return id(self)

    def props(self):  # what the rewrites' merging compares: the op itself
        return (id(self),)

    def inner_graphs(self):
        return [("then", self.then_graph), ("else", self.else_graph)]

    def infer(self, cond, *outer):
        _check_cond(cond)
        types = []
        for k, (a, b) in enumerate(zip(self.then_graph.outputs, self.else_graph.outputs)):
            types.append(TensorType(a.dtype, _merge_shapes(a.shape, b.shape)))
        return types

    def perform(self, node, cond, *values):
        branch = self.then_graph if bool(cond) else self.else_graph
        outs = branch.run(values)
        results = []
        for o, var in zip(outs, node.outputs):
            results.append(o if o.dtype == var.dtype else o.astype(var.dtype))
        return results

    def flops(self, node, in_shapes, out_shapes):
        """The larger branch's count (which one runs is known only at call time)."""
        shapes = list(in_shapes[1:])
        return max(_graph_flops(self.then_graph, shapes), _graph_flops(self.else_graph, shapes))

    def grad(self, node, inputs, outputs, gouts, vjp=None, wanted=None):
        if vjp is None:
            raise TypeError("the gradient of ifelse is taken by symgrad.grad (it passes vjp=)")
        cond, outer = inputs[0], list(inputs[1:])
        wanted = list(wanted) if wanted is not None else [True] * len(inputs)
        want = [j for j, v in enumerate(outer) if wanted[1 + j] and _dt.is_float(v.dtype)]
        if not want:
            return [None] * len(inputs)
        seeds_of = []
        # differentiated with respect to the placeholders (the outer values may depend on
        # one another), then put back on the outer values
        phs = self.then_graph.inputs
        to_outer = dict(zip(phs, outer))
        for graph in (self.then_graph, self.else_graph):
            outs = graph.rebuilt_on(phs)
            seeds = [(o, g) for o, g in zip(outs, gouts)
                     if g is not None and _dt.is_float(o.dtype)]
            grads = (vjp(seeds, [phs[j] for j in want]) if seeds else
                     [_sh.zeros_like(phs[j]) for j in want])
            seeds_of.append(_replace(grads, to_outer))
        known = [cond, *outer, *[g for g in gouts if g is not None]]
        picked = _ifelse(cond, seeds_of[0], seeds_of[1], known)
        result = [None] * len(inputs)
        for j, g in zip(want, picked):
            result[1 + j] = g
        return result


def _check_cond(cond):
    if cond.ndim != 0:
        raise TypeError(f"the condition must be 0-d, got {cond.type}")
    if cond.dtype != "bool" and not _dt.is_int(cond.dtype):
        raise TypeError(f"the condition must be a 0-d bool (or integer), got {cond.type}; "
                        f"compare first, e.g. sg.ifelse(x.sum() > 0, ...)")


def _ifelse(cond, then, else_, known=()):
    """The IfElse outputs of branches ``then`` and ``else_`` (equally long lists).

    What the condition needs and the variables in ``known`` are computed
    outside (they are needed anyway); the rest of each branch moves inside.
    """
    outside = {id(v) for v in known} | {id(v) for v in _ancestors_vars([cond])}
    n = len(then)

    def inside(v):
        if isinstance(v, Constant):
            return True
        return v.owner is not None and id(v) not in outside

    outer, phs, inner = _close_over(list(then) + list(else_), inside)
    _name_placeholders(phs, 0, 0)
    op = IfElse(InnerGraph(phs, inner[:n]), InnerGraph(phs, inner[n:]))
    return op.make_node(cond, *outer).outputs


def _ancestors_vars(outputs):
    seen, stack = {}, list(outputs)
    while stack:
        v = stack.pop()
        if id(v) not in seen:
            seen[id(v)] = v
            if v.owner is not None:
                stack.extend(v.owner.inputs)
    return seen.values()


def ifelse(cond, then, else_, name=None):
    """``then`` if ``cond`` holds, else ``else_``; only the branch taken is computed.

    ``cond`` is a 0-d bool; ``then`` and ``else_`` are Variables (or numbers)
    or equally long lists of them whose dtypes and numbers of dimensions
    match. What the condition itself needs is computed before the choice;
    everything else each branch needs is computed only when that branch runs.

    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> y = sg.ifelse(x.sum() > 0, x * 2, -x)
    >>> sg.evaluate(y, {x: np.array([1.0, -3.0])})
    array([-1.,  3.])
    """
    where = _at()
    cond = as_variable(cond)
    try:
        _check_cond(cond)
    except TypeError as e:
        raise TypeError(f"ifelse: {e} {where}") from None
    single = not isinstance(then, (list, tuple))
    if single != (not isinstance(else_, (list, tuple))):
        raise TypeError(f"ifelse: then and else_ must both be Variables or both lists {where}")
    ts, es = _as_list(then), _as_list(else_)
    if len(ts) != len(es):
        raise ValueError(f"ifelse: then has {len(ts)} values but else_ has {len(es)}; the "
                         f"branches must give equally many {where}")
    if not ts:
        raise ValueError(f"ifelse: the branches are empty {where}")
    pairs = []
    for k, (a, b) in enumerate(zip(ts, es)):
        a, b = _as_branch(a, b), _as_branch(b, a)
        if a.dtype != b.dtype or a.ndim != b.ndim:
            raise TypeError(f"ifelse: value {k} is {a.type} in then but {b.type} in else_; the "
                            f"branches must match in dtype and number of dimensions (cast one, "
                            f"e.g. .astype('{a.dtype}')) {where}")
        if _conflict(a.shape, b.shape):
            raise ShapeError(f"ifelse: value {k} has the static shape {a.type} in then but "
                             f"{b.type} in else_ {where}")
        pairs.append((a, b))
    outs = _ifelse(cond, [a for a, _ in pairs], [b for _, b in pairs])
    for v in outs:
        if name:
            v.name = name
    return outs[0] if single else outs


def _as_branch(v, other):
    if isinstance(v, Variable):
        return v
    if _dt.is_python_scalar(v) and isinstance(other, Variable):
        return Constant(v, dtype=other.dtype)
    return as_variable(v)

