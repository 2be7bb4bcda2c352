"""Loops: ``sg.scan`` and ``sg.map``, an op that runs an inner graph once per step.

A :class:`Scan` node runs its step, an inner graph (:mod:`.inner`) traced
once by calling the user's function on placeholders: one per sequence slice,
one per previous value of a recurrent output. The outer values the step
reads (non-sequences, shared variables, any outer expression) are cut out of
it and become explicit inputs of the node, so the outer graph sees every
dependence: gradients reach shared parameters read inside the step, and work
that does not depend on the step (``W.T``, ``x @ W`` of a non-sequence) is
done once, before the loop. Node inputs: ``[n_steps, sequences..., initial
values..., outer values...]``; outputs: one per recurrent output (the stack
of every step's value, or with ``last`` only the final value), then one
stack per output that is not fed back.

The gradient of a scan is a scan running backwards over the steps
(back-propagation through time, :class:`_Bptt`): an ordinary graph that
prints with the loop it comes from and is differentiated again like any
other. The rule differentiates the step with the ``vjp`` that
:mod:`symgrad.autodiff` hands to ops with ``grad_takes_vjp`` (this module is
below autodiff and does not import it).

In mode "c" the node lowers to a :class:`~symgrad.codegen.ir.Loop` step:
the kernel runs the step's own steps once per iteration, inside the one C
call (no Python per step), with each iteration's value written by the body
straight into its entry of the preallocated stack, or into the buffer that
carries it to the next iteration (``codegen.ir.Loop.written``).
"""

import collections
import inspect

import numpy as np

from .. import dtypes as _dt
from ..errors import ShapeError
from ..codegen.ir import Loop
from ..graph import (Constant, SharedVariable, TensorType, Variable, as_variable, toposort,
                     trace_as)
from . import elemwise as _ew
from .shape import expand_dims, shape_at, zeros, zeros_like
from .inner import (InnerGraph, InnerGraphOp, as_list, at_user_line, close_over, conflict,
                    dependence, graph_flops, known_union, name_placeholders, placeholder, replace)
from .join import concatenate

__all__ = ["scan", "map", "Scan"]


class Scan(InnerGraphOp):
    """A loop over ``n_steps`` steps of an inner graph; see the module docstring.

    Inner inputs: sequence slices (``n_seqs``), previous values of the
    recurrent outputs (``n_rec``), outer values (the rest). Inner outputs:
    the recurrent outputs' new values, then the outputs not fed back.
    ``last[k]``: recurrent output ``k`` comes out as its final value (the
    initial value after zero steps) rather than a stack.
    ``truncate`` bounds back-propagation through time to that many steps.
    ``flipped[k]``: stacked output ``k`` (one that is not fed back) holds step ``t``'s
    value at entry ``n_steps - 1 - t``, the order its readers want (a gradient loop's
    stack read backwards: ``rewrite.loops.stacks_read_backwards``, a factor of a product
    over the steps: ``rewrite.loops.accumulations_after_the_loop``).
    ``shapes``: per output, the static shape of a step's value as known when the loop
    was built; the rewrites' version of the step may know less (a ``sum_to`` proven to
    sum nothing gives way to its operand, whose lengths the graph cannot name), and a
    loop of zero steps then still knows its empty stacks without running the step.
    """

    name = "scan"
    # autodiff passes its vjp to this rule, which differentiates the step
    grad_takes_vjp = True

    def __init__(self, inner, n_seqs, n_rec, last=None, truncate=-1, label=None, checked=None,
                 shapes=None, flipped=None):
        self.inner = inner
        # ``shapes`` may cover the leading outputs only (a rewrite appending outputs).
        own = [o.type.shape for o in inner.outputs]
        known = list(shapes or ())
        self.shapes = tuple(known_union(known[k], s) if k < len(known) else s
                            for k, s in enumerate(own))
        self.n_seqs, self.n_rec = int(n_seqs), int(n_rec)
        self.last = tuple(bool(x) for x in (last or (False,) * self.n_rec))
        self.truncate = int(truncate)
        self.label = label
        # The leading sequences whose lengths the loop checks, numbered as the user gave
        # them; the rewrites append sequences of their own (products of these) after them.
        self.checked = self.n_seqs if checked is None else int(checked)
        # ``flipped`` may cover the leading outputs only (a rewrite appending outputs)
        flips = list(flipped or ())
        self.flipped = tuple(bool(flips[k]) if k < len(flips) else False
                             for k in range(len(inner.outputs)))
        if any(self.flipped[:self.n_rec]):
            raise ValueError("scan: only an output that is not fed back can be stacked "
                             "backwards")

    def __setstate__(self, state):
        self.__dict__.update(state)
        # pickled before loops kept stacks backwards: every stack in step order
        self.__dict__.setdefault("flipped", (False,) * len(self.inner.outputs))

    def __str__(self):
        return f"scan{{{self.label}}}" if self.label else "scan"

    __repr__ = __str__

    def inner_graphs(self):
        """``[(title, InnerGraph)]``: what printing shows below the outer graph."""
        return [("step", self.inner)]

    def with_inner_outputs(self, outputs):
        """The same loop over a step computing ``outputs[0]`` (the rewrites' version of it)."""
        (outs,) = outputs
        return Scan(InnerGraph(self.inner.inputs, outs), self.n_seqs, self.n_rec, self.last,
                    self.truncate, self.label, self.checked, self.shapes, self.flipped)

    def split(self, values):
        """``(n_steps, sequences, initial values, outer values)`` of a node's inputs."""
        s, r = self.n_seqs, self.n_rec
        return (values[0], list(values[1:1 + s]), list(values[1 + s:1 + s + r]),
                list(values[1 + s + r:]))

    def stacked(self, k):
        """Whether output ``k`` is a stack of every step's value (not a final value)."""
        return k >= self.n_rec or not self.last[k]

    def infer(self, n_steps, *outer):
        if n_steps.ndim != 0 or not _dt.is_int(n_steps.dtype):
            raise TypeError(f"n_steps must be a 0-d integer, got {n_steps.type}")
        if len(outer) != len(self.inner.inputs):
            raise TypeError(f"expects {len(self.inner.inputs)} inputs after n_steps, "
                            f"got {len(outer)}")
        _, seqs, inits, _ = self.split([n_steps, *outer])
        steps = self._static_steps(n_steps, seqs)
        for j, (x, p) in enumerate(zip(outer, self.inner.inputs)):
            lead = 1 if j < self.n_seqs else 0   # a sequence has one axis more: the steps
            if (x.ndim != p.ndim + lead or x.dtype != p.dtype
                    or conflict(x.type.shape[lead:], p.type.shape)):
                raise TypeError(f"an input is {x.type} where the step reads "
                                f"{'slices of type ' if lead else ''}{p.type}")
        outs = self.inner.outputs
        types = []
        for k, o in enumerate(outs):
            shape = (known_union(inits[k].type.shape, self.shapes[k]) if k < self.n_rec
                     else self.shapes[k])
            types.append(TensorType(o.dtype, (steps, *shape) if self.stacked(k) else shape))
        return types

    @staticmethod
    def _static_steps(n_steps, seqs):
        steps = n_steps.data.item() if isinstance(n_steps, Constant) else None
        for i, x in enumerate(seqs):
            if x.type.shape[0] is not None:
                if steps is not None and steps != x.type.shape[0]:
                    raise ShapeError(f"sequence {i} has {x.type.shape[0]} steps but the loop runs "
                                     f"n_steps={steps}")
                steps = x.type.shape[0]
        return steps

    # ------------------------------------------------------------------ reference

    def perform(self, node, n_steps, *values):
        _, seqs, inits, others = self.split([n_steps, *values])
        steps = self._check_lengths(node, int(n_steps), seqs[:self.checked])
        where = f"{self} at {node.trace}"
        prev = list(inits)
        stacks = [None] * len(self.inner.outputs)
        for t in range(steps):
            outs = self.inner.run([s[t] for s in seqs] + prev + others)
            for k, o in enumerate(outs):
                if k < self.n_rec and o.shape != prev[k].shape:
                    raise ShapeError(
                        f"{where}: recurrent output {k} has shape {o.shape} at step {t} but its "
                        f"previous value had shape {prev[k].shape}; a value fed back must keep "
                        f"its shape")
                if not self.stacked(k):
                    continue
                if stacks[k] is None:
                    stacks[k] = np.empty((steps, *o.shape), dtype=node.outputs[k].dtype)
                elif stacks[k].shape[1:] != o.shape:
                    raise ShapeError(f"{where}: output {k} has shape {o.shape} at step {t} but "
                                     f"{stacks[k].shape[1:]} at step 0; every step's value "
                                     f"must have the same shape")
                stacks[k][steps - 1 - t if self.flipped[k] else t] = o
            prev = outs[:self.n_rec]
        results = []
        for k, var in enumerate(node.outputs):
            if not self.stacked(k):
                results.append(np.array(prev[k], dtype=var.dtype, copy=True))
            elif stacks[k] is None:
                shape = self._step_shape(k, seqs, inits, others)
                results.append(np.empty((0, *shape), dtype=var.dtype))
            else:
                results.append(stacks[k])
        return results

    def _check_lengths(self, node, steps, seqs):
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
        return steps

    def _step_shape(self, k, seqs, inits, others):
        """The shape of output ``k``'s value at a step, for a loop of zero steps."""
        if k < self.n_rec:
            return inits[k].shape
        out = self.inner.outputs[k]
        if None not in self.shapes[k]:
            return self.shapes[k]
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

    def lower(self, node):
        """A :class:`~symgrad.codegen.ir.Loop` step binding the node's inputs to the step's
        placeholders (``codegen.lower`` lowers the step into its body)."""
        n_steps, seqs, inits, others = self.split(node.inputs)
        phs = self.inner.inputs
        s, r = self.n_seqs, self.n_rec
        return Loop(0, node, [node], n_steps=n_steps,
                    sequences=list(zip(seqs, phs[:s])),
                    recurrent=list(zip(inits, phs[s:s + r])),
                    others=list(zip(others, phs[s + r:])),
                    outputs=list(self.inner.outputs),
                    stacked=[self.stacked(k) for k in range(len(node.outputs))],
                    checked=self.checked, flipped=list(self.flipped))

    def flops(self, node, in_shapes, out_shapes):
        """The step's count at the inputs' shapes (found by running it on zeros) times the
        number of steps."""
        stacked = [sh for k, sh in enumerate(out_shapes) if self.stacked(k)]
        if not stacked:
            raise NotImplementedError("a loop returning only final values does not say its "
                                      "number of steps in its shapes")
        s = self.n_seqs
        shapes = [sh[1:] for sh in in_shapes[1:1 + s]] + list(in_shapes[1 + s:])
        return stacked[0][0] * graph_flops(self.inner, shapes)

    def grad(self, node, inputs, outputs, gouts, vjp=None, wanted=None):
        if vjp is None:
            raise TypeError("the gradient of scan is taken by symgrad.grad (it passes vjp=)")
        wanted = list(wanted) if wanted is not None else [True] * len(inputs)
        op = self
        if any(self.flipped):
            # the same loop with every stack in step order: these stacks read backwards
            op = Scan(self.inner, self.n_seqs, self.n_rec, self.last, self.truncate,
                      self.label, self.checked, self.shapes)
            outputs = [o[::-1] if f else o for o, f in zip(outputs, self.flipped)]
            gouts = [g[::-1] if f and g is not None else g for g, f in zip(gouts, self.flipped)]
        return _Bptt(op, node, inputs, outputs, gouts, wanted).grads(vjp)


# --------------------------------------------------------------------------- building loops

def build_loop(label, n_steps, seqs, inits, step, last=None, truncate=-1, seq_names=None,
               rec_names=None, bound=()):
    """The outputs of a Scan node over ``seqs`` (each ``n_steps`` long) and recurrent ``inits``.

    ``step(*slices, *prev)`` returns ``(new values of the recurrent outputs,
    outputs not fed back)`` as Variables; see :func:`make_loop` for ``bound``.
    """
    seq_names = seq_names or [None] * len(seqs)
    rec_names = rec_names or [None] * len(inits)
    seq_phs = [Variable(TensorType(x.dtype, x.type.shape[1:]), name=n) for x, n in zip(seqs, seq_names)]
    prev_phs = [placeholder(x, n) for x, n in zip(inits, rec_names)]
    rec_outs, other_outs = step(*seq_phs, *prev_phs)
    return make_loop(label, n_steps, list(zip(seqs, seq_phs)), list(zip(inits, prev_phs)),
                     [as_variable(o) for o in rec_outs], [as_variable(o) for o in other_outs],
                     last, truncate, bound=bound)


def make_loop(label, n_steps, seq_pairs, rec_pairs, rec_outs, other_outs, last=None,
              truncate=-1, bound=(), keep_sequences=False):
    """The outputs of the Scan node of a step already traced on placeholders.

    ``seq_pairs`` and ``rec_pairs`` pair each sequence and initial value with
    its placeholder. The outer values the step reads become the node's inputs;
    sequences it does not read are left out, unless ``keep_sequences`` (the
    user's: their lengths are checked, numbered as given). ``bound`` lists ``(outer value,
    placeholder)``: placeholders the step was traced on that stand for outer
    values (a gradient rule differentiates with respect to them, never to the
    outer values, which may depend on one another); what the step computes from
    them alone is loop-invariant and computed before the loop, from the values.
    """
    phs = [p for _, p in seq_pairs] + [p for _, p in rec_pairs]
    outs = list(rec_outs) + list(other_outs)
    dep, const = dependence(outs, phs)
    outer, outer_phs, inner_outs = close_over(
        outs, lambda v: id(v) in dep or id(v) in const, phs)
    if bound:
        outer = replace(outer, {p: x for x, p in bound})
    used = {id(v) for n in toposort(inner_outs) for v in n.inputs}
    used.update(id(v) for v in inner_outs)
    if not keep_sequences:
        seq_pairs = [(x, p) for x, p in seq_pairs if id(p) in used]
    inner = InnerGraph([p for _, p in seq_pairs] + [p for _, p in rec_pairs] + outer_phs,
                       inner_outs)
    name_placeholders(inner.inputs, len(seq_pairs), len(rec_pairs))
    op = Scan(inner, len(seq_pairs), len(rec_pairs), last, truncate, label)
    args = [_ew.cast(as_variable(n_steps), "int64")] + [x for x, _ in seq_pairs] + \
        [x for x, _ in rec_pairs] + outer
    return op.make_node(*args).outputs


def _length(v, k):
    """``v``'s length on axis ``k``: an int where it is static, else a 0-d int64 Variable."""
    return v.type.shape[k] if v.type.shape[k] is not None else shape_at(v, k)


# --------------------------------------------------------------------------- BPTT

class _Bptt:
    """The gradient of one Scan node: a Scan over its steps in reverse.

    At each step back, the cotangent of every recurrent output (carried from
    the step after it, plus what the cost puts on that step's value) and of
    every other output is pulled back through the step: to the sequences'
    slices (stacked, then reversed), to the previous values (carried to the
    step before; after the first step they are the initial values'
    gradients), and to the outer values (summed over the steps). With
    ``truncate`` = k > 0 only the last k steps are gone back through, as
    Theano does: earlier slices and the initial values get zeros.
    """

    def __init__(self, op, node, inputs, outputs, gouts, wanted):
        self.op, self.node, self.inputs = op, node, inputs
        self.n_steps, self.seqs, self.inits, self.others = op.split(inputs)
        s, r = op.n_seqs, op.n_rec
        is_f = _dt.is_float
        self.outputs, self.gouts = outputs, gouts
        self.recs = [k for k in range(r) if is_f(self.inits[k].dtype)]     # carried back
        self.want_init = [k for k in self.recs if wanted[1 + s + k]]
        self.want_seq = [i for i, x in enumerate(self.seqs) if wanted[1 + i] and is_f(x.dtype)]
        self.want_other = [j for j, x in enumerate(self.others)
                           if wanted[1 + s + r + j] and is_f(x.dtype)]
        self.seeded = [k for k, (o, g) in enumerate(zip(outputs, gouts))
                       if g is not None and op.stacked(k) and is_f(o.dtype)]
        # The forward's values, which the backward step reads instead of computing them
        # again (an output of the step computed by the step, not one of its inputs).
        self.stored = [k for k, o in enumerate(op.inner.outputs) if o.owner is not None]
        self.saved = []  # set by grads: _values_to_save
        trunc = op.truncate
        self.back_steps = self.n_steps if trunc <= 0 else _ew.minimum(self.n_steps, trunc)
        self.other_phs = [placeholder(o) for o in self.others]

    def back(self, x):
        """A forward-time stack as the backward loop reads it: latest step first."""
        rev = x[::-1]
        return rev if self.op.truncate <= 0 else rev[:self.back_steps]

    def sequences(self):
        """The forward sequences, the previous values of the recurrent outputs, the
        cotangents of the stacked outputs, every output's stored values; each reversed.
        Returns (values, names)."""
        stacks = self._stacks()
        prevs = [concatenate([expand_dims(i, 0), y], axis=0)[:-1]
                 for i, y in zip(self.inits, stacks[:self.op.n_rec])]
        n_out = len(self.outputs)
        seqs = [self.back(x) for x in self.seqs + prevs] + \
            [self.back(self.gouts[k]) for k in self.seeded] + \
            [self.back(stacks[k]) for k in self.stored] + \
            [self.back(x) for x in stacks[n_out:]]
        names = [f"{x.name}[t]" if x.name else None for x in self.seqs] + \
            [f"{y.name}[t-1]" if y.name else None for y in self.inits] + \
            [f"d({self.outputs[k].name or f'out{k}'}[t])" for k in self.seeded] + \
            [f"{self.outputs[k].name or f'out{k}'}[t]" for k in self.stored] + \
            [f"{v.name or v.owner.op.name}[t]" for v in self.saved]
        return seqs, names

    def _stacks(self):
        """The node's outputs with every recurrent output stacked, then the stacks of the
        values ``saved``: the backward loop needs every step's value of those the node keeps
        only the final value of, and of the saved ones. Either way a second forward loop
        over the same inputs computes them, which the rewrites merge with the node itself
        when it keeps stacks (``rewrite.loops.merge_loops``)."""
        op = self.op
        if all(op.stacked(k) for k in range(op.n_rec)) and not self.saved:
            return self.outputs
        inner = op.inner
        if self.saved:
            inner = InnerGraph(inner.inputs, list(inner.outputs) + self.saved)
        last = op.last if all(op.stacked(k) for k in range(op.n_rec)) else None
        again = Scan(inner, op.n_seqs, op.n_rec, last, op.truncate, op.label, op.checked,
                     op.shapes)
        with trace_as(self.node.trace, self.node.grad_of):
            return again.make_node(*self.inputs).outputs

    def _values_to_save(self, vjp):
        """Values of the forward step, besides its outputs, that the backward step reads and
        that are computed through a product (an LSTM's gates): stacked by the forward loop,
        so that the backward step does not compute the step's products again."""
        op, inner = self.op, self.op.inner
        outs, phs = inner.outputs, inner.inputs
        s, r = op.n_seqs, op.n_rec
        forward, product = set(), set()
        for n in inner.nodes():
            forward.update(id(o) for o in n.outputs)
            if n.op.name in ("matmul", "gemm") or any(id(i) in product for i in n.inputs):
                product.update(id(o) for o in n.outputs)
        seeds = [(outs[k], placeholder(outs[k])) for k in dict.fromkeys(self.recs + self.seeded)]
        wrt = [phs[i] for i in self.want_seq] + [phs[s + k] for k in self.recs] + \
            [phs[s + r + j] for j in self.want_other]
        if not seeds or not wrt:
            return []
        taken = {id(o) for o in outs}
        saved = []
        for n in toposort(vjp(seeds, wrt)):
            if all(id(o) in forward for o in n.outputs) or n.op.name in ("shape", "shape_at"):
                continue  # the forward step's own node; a length (the rewrites find it)
            for i in n.inputs:
                if id(i) in product and id(i) not in taken:
                    taken.add(id(i))
                    saved.append(i)
        return saved

    def initial(self):
        """The carried cotangents' initial values (a final value's cotangent, or zeros), then
        zeros for the outer values' sums. Returns (values, names)."""
        carries = []
        for k in self.recs:
            g = None if self.op.stacked(k) else self.gouts[k]
            carries.append(_ew.cast(g, self.inits[k].dtype) if g is not None
                           else zeros_like(self.inits[k]))
        sums = [zeros_like(self.others[j]) for j in self.want_other]
        names = [f"d({self.inits[k].name or f'prev{k}'})" for k in self.recs] + \
            [f"sum d({self.others[j].name or f'outer{j}'})" for j in self.want_other]
        return carries + sums, names

    def step(self, vjp):
        """The backward step: pulls the cotangents back through the forward step."""
        s, r, n_g, n_c = self.op.n_seqs, self.op.n_rec, len(self.seeded), len(self.recs)
        n_y, n_v = len(self.stored), len(self.saved)
        inner = self.op.inner

        def step(*phs):
            x_ph, p_ph, g_ph = phs[:s], phs[s:s + r], phs[s + r:s + r + n_g]
            y_ph = phs[s + r + n_g:s + r + n_g + n_y]
            v_ph = phs[s + r + n_g + n_y:s + r + n_g + n_y + n_v]
            rest = phs[s + r + n_g + n_y + n_v:]
            carry, acc = rest[:n_c], rest[n_c:]
            both = replace(list(inner.outputs) + self.saved,
                           dict(zip(inner.inputs, list(x_ph) + list(p_ph) + self.other_phs)))
            outs, saved = both[:len(inner.outputs)], both[len(inner.outputs):]
            seeds = [(outs[k], c) for k, c in zip(self.recs, carry)] + \
                [(outs[k], g) for k, g in zip(self.seeded, g_ph)]
            wrt = [x_ph[i] for i in self.want_seq] + [p_ph[k] for k in self.recs] + \
                [self.other_phs[j] for j in self.want_other]
            grads = vjp(seeds, wrt) if wrt else []
            if grads:  # the forward's stored values in place of computing them again
                stored = {outs[k]: y for k, y in zip(self.stored, y_ph)
                          if outs[k].owner is not None}
                stored.update(zip(saved, v_ph))
                grads = replace(grads, stored)
            n_x = len(self.want_seq)
            g_x, g_p, g_o = grads[:n_x], grads[n_x:n_x + n_c], grads[n_x + n_c:]
            return list(g_p) + [a + _ew.cast(g, a.dtype) for a, g in zip(acc, g_o)], list(g_x)

        return step

    def grads(self, vjp):
        """The gradient rule's result: one entry per input of the node."""
        self.saved = self._values_to_save(vjp)
        seqs, seq_names = self.sequences()
        inits, rec_names = self.initial()
        outs = build_loop(f"grad of {self.op.label or 'scan'}", self.back_steps, seqs, inits,
                          self.step(vjp), last=[True] * len(inits), seq_names=seq_names,
                          rec_names=rec_names, bound=list(zip(self.others, self.other_phs)))
        n_c, s, r = len(self.recs), self.op.n_seqs, self.op.n_rec
        result = [None] * len(self.inputs)
        for i, g in zip(self.want_seq, outs[len(inits):]):
            result[1 + i] = self._unreversed(g, self.seqs[i])
        for k, c in zip(self.recs, outs[:n_c]):
            if k in self.want_init:
                result[1 + s + k] = self._reached_start(c)
        for j, a in zip(self.want_other, outs[n_c:len(inits)]):
            result[1 + s + r + j] = a
        return result

    def _unreversed(self, g, seq):
        """A sequence's gradient in forward order; zeros for the steps truncation cut."""
        g = g[::-1]
        if self.op.truncate <= 0:
            return g
        cut = self.n_steps - self.back_steps
        dims = [cut] + [_length(seq, k) for k in range(1, seq.ndim)]
        return concatenate([zeros(tuple(dims), dtype=seq.dtype), g], axis=0)

    def _reached_start(self, carry):
        """An initial value's gradient: the carry, if going back reached the first step."""
        if self.op.truncate <= 0:
            return carry
        return _ew.where(_ew.le(self.n_steps, self.op.truncate), carry, zeros_like(carry))


# --------------------------------------------------------------------------- sg.scan

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
        Looped over along their first axis; all must have the same length
        (``sg.ShapeError`` at call time otherwise). An entry
        ``dict(input=x, taps=[-1, 0])`` (Theano's) passes ``x[t-1]`` and then
        ``x[t]`` to the step, for each ``t`` where every tap is inside ``x``
        (here ``len(x) - 1`` steps).
    outputs_info : list, optional
        One entry per output of ``fn``: its initial value (the output is fed
        back to the next step and must keep the initial value's dtype, number
        of dimensions and static shape) or None (it is not fed back). None or
        ``[]`` for the whole list: no output is fed back (a map). An entry
        ``dict(initial=x0, taps=[-2, -1])`` (Theano's) passes ``out[t-2]`` and
        ``out[t-1]`` to the step, ``x0`` holding ``out[-2], out[-1]`` along its
        first axis (its first ``-min(taps)`` entries are read); the output is
        still the stack of the new values.
    non_sequences : Variable or list, optional
        Passed to every step as they are. Other outer values the step reads
        (shared variables, inputs) need not be listed.
    n_steps : int or 0-d integer Variable, optional
        Required without sequences; with sequences, the number of their
        first entries to loop over.
    go_backwards : bool
        Loop over the sequences from their last entry to their first.
    truncate_gradient : int
        Back-propagate through at most this many (last) steps; -1: all. What
        is carried into those steps (the previous values, with taps the values
        of the steps before) is then a constant of the gradient: the initial
        values get zeros when the loop runs more steps than this.
    name : str, optional
        Shown by printing; the gradient's loop is ``scan{grad of <name>}``.

    Returns
    -------
    (outputs, updates)
        ``outputs``: a Variable for one output, else a list; ``updates``: an
        ``OrderedDict`` for ``sg.function`` (random-stream state advanced
        inside the loop; empty otherwise). A step may read shared variables
        but not assign them.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> sums, _ = sg.scan(lambda x_t, acc: acc + x_t, sequences=x, outputs_info=sg.constant(0.0))
    >>> sg.evaluate(sums, {x: np.array([1.0, 2.0, 3.0])})
    array([1., 3., 6.])
    """
    where = at_user_line()
    if truncate_gradient is None or int(truncate_gradient) == 0:
        raise ValueError(f"scan: truncate_gradient must be -1 (no truncation) or a positive "
                         f"number of steps, got {truncate_gradient!r} {where}")
    seqs, seq_names = _sequences(sequences, where)
    n, seqs = _loop_length(n_steps, seqs, where)
    if go_backwards:
        seqs = [x[::-1] for x in seqs]
    infos = as_list(outputs_info)
    listed = bool(infos)  # None or [] (Theano's): no output is fed back
    entries = [_initial(e, k, where) for k, e in enumerate(infos)]
    inits = [i for i, _ in entries]
    taps = [t for _, t in entries]
    seq_phs = [Variable(TensorType(x.dtype, x.type.shape[1:]), name=name)
               for x, name in zip(seqs, seq_names)]
    # What the step reads of each fed-back output: its previous value, or with taps
    # (Theano's dict(initial=x0, taps=[-2, -1])) a window of its last m = -min(taps)
    # values, carried from step to step, whose entries m + k it is given.
    prev_phs, args, windows = {}, [], {}
    for k, i in enumerate(inits):
        if i is None:
            continue
        if taps[k] is None:
            prev_phs[k] = placeholder(i, f"{i.name}[t-1]" if i.name else None)
            args.append(prev_phs[k])
            continue
        m = -min(taps[k])
        start = i[:m]
        prev_phs[k] = placeholder(start, f"{i.name}[t-{m}:t]" if i.name else None)
        windows[k] = (start, m)
        args += [prev_phs[k][m + tap] for tap in taps[k]]
    others = [as_variable(x) for x in as_list(non_sequences)]
    _check_arity(fn, len(seq_phs), len(args), len(others), where)
    from .. import random as _random  # sg.random builds on the ops: imported when used
    with _random.loop_scope(where) as draws:  # the step's samples: fresh at every step
        got = fn(*seq_phs, *args, *others)
    outs, updates = _step_result(got, fn, where)
    updates = draws.updates(updates)
    if not listed:
        inits = [None] * len(outs)
    _check_outputs(outs, [prev_phs[k][0] if k in windows else i for k, i in enumerate(inits)],
                   fn, where, taps)
    _check_no_pending_updates(outs, seq_phs + list(prev_phs.values()), fn, where)
    state = _state_updates(updates, fn, where)
    plain = [k for k, i in enumerate(inits) if i is not None and k not in windows]
    tapped = list(windows)
    rec_pairs = [(inits[k], prev_phs[k]) for k in plain] + \
        [(windows[k][0], prev_phs[k]) for k in tapped]
    rec_outs = [outs[k] for k in plain] + \
        [concatenate([prev_phs[k][1:], expand_dims(outs[k], 0)], axis=0) for k in tapped]
    other = [k for k in range(len(outs)) if k not in plain]  # a tapped one: its new values
    node_outs = _loop_of(name, n, seqs, seq_phs, rec_pairs, rec_outs,
                         [False] * len(plain) + [True] * len(tapped),
                         [outs[k] for k in other], state, int(truncate_gradient))
    n_rec = len(rec_pairs) + len(state)
    order = {k: j for j, k in enumerate(plain)}
    order.update({k: n_rec + j for j, k in enumerate(other)})
    result = [node_outs[order[k]] for k in range(len(outs))]
    for k, v in enumerate(result):
        if name and v.name is None:
            v.name = name if len(result) == 1 else f"{name}[{k}]"
    upd = collections.OrderedDict(
        (sv, node_outs[len(rec_pairs) + j]) for j, (sv, _) in enumerate(state))
    _random.mark_finals(upd)
    return (result[0] if len(result) == 1 else result), upd


def _sequences(sequences, where):
    """``(slices' sequences, their placeholders' names)``: one per tap of each sequence.

    An entry may be Theano's ``dict(input=x, taps=[...])``: the step then reads
    ``x[t + k]`` for each tap ``k``, in the order given (``taps=[0]`` by
    default). ``t`` runs over the positions where every tap is inside ``x``:
    from ``-min(taps, 0)`` to ``len(x) - 1 - max(taps, 0)``, so the loop has
    ``len(x) - (max(taps, 0) - min(taps, 0))`` steps. Each tap is a sequence
    of its own here, the slice of ``x`` that the step reads at those steps.
    """
    seqs, names = [], []
    for i, entry in enumerate(as_list(sequences)):
        taps = [0]
        if isinstance(entry, dict):
            taps = _seq_taps(entry, i, where)
            entry = entry["input"]
        x = as_variable(entry)
        if x.ndim == 0:
            raise ShapeError(f"scan: sequence {i} is 0-d ({x.type}); a sequence is looped over "
                             f"along its first axis {where}")
        low, high = min(min(taps), 0), max(max(taps), 0)
        for k in taps:
            end = k - high   # <= 0: how many entries at the end the tap never reads
            seqs.append(x[k - low:end if end else None] if (low, high) != (0, 0) else x)
            at = "t" if k == 0 else f"t{k:+d}"
            names.append(f"{x.name}[{at}]" if x.name else None)
    return seqs, names


def _seq_taps(entry, i, where):
    """The taps of a sequence given as ``dict(input=x, taps=...)``, as a list of ints."""
    unknown = sorted(set(entry) - {"input", "taps"})
    if "input" not in entry or unknown:
        raise ValueError(f"scan: sequences[{i}] is a dict with keys {sorted(entry)}; a sequence "
                         f"given as a dict is dict(input=x) or dict(input=x, taps=[-1, 0]) "
                         f"{where}")
    taps = entry.get("taps", [0])
    taps = [0] if taps is None else taps
    taps = list(taps) if isinstance(taps, (list, tuple)) else [taps]
    if not taps or any(isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer))
                       for k in taps) or len(set(taps)) != len(taps):
        raise ValueError(f"scan: sequences[{i}] has taps {entry.get('taps')!r}; taps are "
                         f"distinct ints, offsets from the step's position (e.g. [-1, 0]: the "
                         f"previous and the current entry) {where}")
    return [int(k) for k in taps]


def _loop_length(n_steps, seqs, where):
    """``(number of steps, sequences)``: an explicit ``n_steps`` takes that many entries
    of each sequence (the loop checks at run time that there are that many)."""
    if n_steps is None:
        if not seqs:
            raise ValueError(f"scan: n_steps is required when there is no sequence (the loop "
                             f"has nothing to take its length from) {where}")
        first = seqs[0]
        return _length(first, 0), seqs
    bad = (f"scan: n_steps must be an int or a 0-d integer Variable, got "
           f"{getattr(n_steps, 'type', repr(n_steps))} {where}")
    if isinstance(n_steps, Variable):
        if n_steps.ndim != 0 or not _dt.is_int(n_steps.dtype):
            raise TypeError(bad)
    elif isinstance(n_steps, (bool, np.bool_)) or not isinstance(n_steps, (int, np.integer)):
        raise TypeError(bad)
    elif n_steps < 0:
        raise ValueError(f"scan: n_steps is {n_steps}; a loop runs 0 or more steps {where}")
    return n_steps, [x[:n_steps] for x in seqs]


def _initial(entry, k, where):
    """An entry of ``outputs_info``: ``(initial value or None (not fed back), taps)``.

    ``taps`` is None for the previous value alone (a value, or ``taps=[-1]``), else
    Theano's: distinct negative offsets, the step reading ``out[t + k]`` for each, in the
    order given, and the initial value holding ``out[-m], ..., out[-1]``, ``m = -min(taps)``,
    along a leading axis (its first m entries are read).
    """
    if not isinstance(entry, dict):
        return (None if entry is None else as_variable(entry)), None
    unknown = sorted(set(entry) - {"initial", "taps"})
    if unknown:
        raise ValueError(f"scan: outputs_info[{k}] is a dict with keys {sorted(entry)}; an "
                         f"output's entry given as a dict is dict(initial=x0) or "
                         f"dict(initial=x0, taps=[-2, -1]) {where}")
    init = entry.get("initial")
    if init is None and entry.get("taps") is None:
        return None, None  # Theano's dict() / dict(initial=None): not fed back
    taps = entry.get("taps", [-1])
    taps = [-1] if taps is None else taps
    taps = list(taps) if isinstance(taps, (list, tuple)) else [taps]
    if not taps or any(isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer))
                       or t >= 0 for t in taps) or len(set(taps)) != len(taps):
        raise ValueError(f"scan: outputs_info[{k}] asks for taps {entry.get('taps')!r}; an "
                         f"output's taps are distinct negative ints, the earlier steps whose "
                         f"values the step reads (e.g. [-2, -1]) {where}")
    if init is None:
        raise ValueError(f"scan: outputs_info[{k}] asks for taps {taps} but gives no initial "
                         f"value; dict(initial=x0, taps=...) {where}")
    init = as_variable(init)
    if [int(t) for t in taps] == [-1]:
        return init, None
    m = -min(taps)
    length = init.type.shape[0] if init.ndim else None
    if init.ndim == 0 or (length is not None and length < m):
        raise ValueError(f"scan: outputs_info[{k}] asks for taps {taps}, which read the "
                         f"output {m} steps back, but its initial value is {init.type}; give "
                         f"the {m} values before the first step along a leading axis "
                         f"(shape ({m}, ...)) {where}")
    return init, [int(t) for t in taps]


def _fn_where(fn):
    code = getattr(fn, "__code__", None)
    if code is None:
        return getattr(fn, "__name__", repr(fn))
    return f"{getattr(fn, '__name__', 'fn')} at {code.co_filename}:{code.co_firstlineno}"


def _check_arity(fn, n_seqs, n_rec, n_others, where):
    """A step function that cannot take what scan passes: say what it is passed, in order
    (checked before the call, so a TypeError raised inside the step stays the user's)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # no signature to check (a builtin): the call itself will tell
    n = n_seqs + n_rec + n_others
    try:
        sig.bind(*range(n))
    except TypeError as e:
        def some(k, what):
            return f"{k} {what}{'s' * (k != 1)}"
        raise TypeError(
            f"scan: the step function ({_fn_where(fn)}) cannot be called with the {n} "
            f"argument{'s' * (n != 1)} scan passes ({e}). It is called with, in this order: "
            f"{some(n_seqs, 'slice')} of the sequences (one per sequence, or per tap of a "
            f"dict(input=x, taps=[...])), "
            f"{some(n_rec, 'previous value')} of the recurrent outputs (one per entry of "
            f"outputs_info that is not None, or per tap of a dict(initial=x0, taps=[...])), "
            f"then {some(n_others, 'non-sequence')}; "
            f"give it one parameter for each {where}") from None


def _step_result(got, fn, where):
    """``(outputs, updates)`` of what the step function returned."""
    updates = None
    if isinstance(got, tuple) and len(got) == 2 and isinstance(got[1], dict):
        got, updates = got
    elif isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], dict):
        updates, got = got  # Theano takes the two in either order
    elif isinstance(got, dict):
        got, updates = [], got
    outs = as_list(got)
    for k, o in enumerate(outs):
        if isinstance(o, (int, float, bool, np.ndarray, np.generic)):
            outs[k] = as_variable(o)
        elif not isinstance(o, Variable):
            raise TypeError(f"scan: output {k} of the step function ({_fn_where(fn)}) is a "
                            f"{type(o).__name__}, not a symbolic Variable {where}")
    return outs, updates


def _check_outputs(outs, inits, fn, where, taps=()):
    """``inits``: per output, its initial value or (with taps) one entry of it, or None."""
    if len(outs) != len(inits):
        raise ValueError(
            f"scan: the step function ({_fn_where(fn)}) returned {len(outs)} output"
            f"{'s' * (len(outs) != 1)} but outputs_info has {len(inits)} entr"
            f"{'ies' if len(inits) != 1 else 'y'}; give one entry per output (None for an "
            f"output that is not fed back) {where}")
    for k, (o, i) in enumerate(zip(outs, inits)):
        if i is not None and (o.dtype != i.dtype or o.ndim != i.ndim or conflict(o.type.shape, i.type.shape)):
            made = f" made at {o.owner.trace}" if o.owner is not None else ""
            entry = (f"an entry of its initial value outputs_info[{k}] (for taps "
                     f"{taps[k]}, one value per step back)" if k < len(taps) and taps[k]
                     else f"its initial value outputs_info[{k}]")
            if o.dtype != i.dtype:
                fix = (f"give the initial value the output's dtype, sg.cast(h0, '{o.dtype}') "
                       f"(for a number: 0.0, not 0), or cast the output to the initial "
                       f"value's, .astype('{i.dtype}')")
            else:
                fix = (f"make the initial value the shape of one step's value (for a "
                       f"(batch, hidden) state, e.g. sg.zeros((x.shape[1], hidden))), or "
                       f"reshape the output to the initial value's")
            raise TypeError(
                f"scan: output {k} of the step function ({_fn_where(fn)}) is {o.type}{made}, but "
                f"{entry} is {i.type}; a value fed back to the next "
                f"step must keep its dtype, number of dimensions and static shape: {fix} "
                f"{where}")


def _check_no_pending_updates(outs, phs, fn, where):
    """A training-mode batch norm computed in the step would update its running statistics
    at every step: a step assigning shared variables, which the loop cannot carry out (its
    updates are on a node inside the step, where ``sg.train_step`` and
    ``sg.nn.collect_updates`` do not look). Refused at build time rather than dropped."""
    dep, const = dependence(outs, phs)
    for node in toposort(outs):
        pending = getattr(node.tag, "updates", None)
        if not pending or not any(id(o) in dep or id(o) in const for o in node.outputs):
            continue  # none, or computed from outer values only: before the loop, as usual
        names = ", ".join(repr(sv.name) if sv.name else repr(sv) for sv, _ in pending)
        raise ValueError(
            f"scan: the step function ({_fn_where(fn)}) computes a training-mode "
            f"{node.op.name} (made at {node.trace}) that would update {names} at every step; "
            f"a step may read shared variables but not assign them, so these updates would "
            f"be lost. Inside a loop normalise with sg.nn.layer_norm / sg.layers.LayerNorm, "
            f"or a batch norm made with track_running_stats=False (the batch's statistics in "
            f"training and in inference), or called with training=False (the running "
            f"statistics) {where}")


def _is_random_state(sv):
    """A random stream's state: the only shared variable a step may advance."""
    return bool(getattr(sv, "is_random_state", False))


def _state_updates(updates, fn, where):
    """The step's updates as ``[(shared variable, new value)]``: random-stream state only."""
    out = []
    for sv, expr in (updates or {}).items():
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
        if expr.dtype != sv.dtype or expr.ndim != sv.ndim:
            raise TypeError(f"scan: the update of {sv.name or sv} in the step is {expr.type}, "
                            f"the variable is {sv.type} {where}")
        out.append((sv, expr))
    return out


def _loop_of(name, n, seqs, seq_phs, rec_pairs, rec_outs, rec_last, other_outs, state,
             truncate):
    """The Scan node's outputs: the recurrent ones (``rec_pairs`` of initial value and
    placeholder, their new values ``rec_outs``, ``rec_last`` for those kept as final values
    only), then each random-stream state the step advances -- a recurrent output too, kept
    as its final value only (the state read in the step is its previous value) -- then the
    stacks of ``other_outs``."""
    state_phs = [placeholder(sv, f"{sv.name}[t-1]" if sv.name else None) for sv, _ in state]
    inner = list(rec_outs) + [e for _, e in state] + list(other_outs)
    if state:
        inner = replace(inner, {sv: p for (sv, _), p in zip(state, state_phs)})
    n_rec = len(rec_outs) + len(state)
    pairs = list(rec_pairs) + [(sv, p) for (sv, _), p in zip(state, state_phs)]
    return make_loop(name, n, list(zip(seqs, seq_phs)), pairs, inner[:n_rec], inner[n_rec:],
                     list(rec_last) + [True] * len(state), truncate, keep_sequences=True)


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
