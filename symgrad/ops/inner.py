"""Inner graphs: what the loop and branch ops (``scan``, ``ifelse``) hold.

An op with inner graphs runs a graph of its own per step (a loop's body) or
per choice (a branch). The graph is traced on the outer graph's variables
and placeholders; :func:`close_over` cuts it out: the outer values it reads
become placeholders of the inner graph and explicit inputs of the op's node,
so the outer graph sees every dependence (gradients, printing, compiling).
"""

import numpy as np

from ..graph import (Constant, Op, Variable, clone_replace, flatten_graph, toposort, unflatten_graph,
                     user_trace)
from ..interp import Program

__all__ = ["InnerGraph", "InnerGraphOp", "close_over", "replace", "dependence", "placeholder", "graph_flops",
           "merge_shapes", "known_union", "conflict", "name_placeholders", "at_user_line",
           "as_list", "ancestors"]


class InnerGraphOp(Op):
    """The base of ops holding inner graphs (scan, ifelse): one op equals only itself, since
    comparing inner graphs would cost their size."""

    def __eq__(self, other):
        return self is other

    def __hash__(self):
        return id(self)

    def props(self):  # what the rewrites' merging compares: the op itself
        return (id(self),)


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
        """The outputs' values for ``values`` of the inputs (arrays, in order)."""
        return self.program.run(list(values))

    def nodes(self):
        return toposort(self.outputs)

    def rebuilt_on(self, values):
        """The outputs with ``values`` (Variables) in place of the inputs."""
        return replace(self.outputs, dict(zip(self.inputs, values)))

    def __getstate__(self):
        # Flattened: pickling a long chain of nodes recursively overflows the C stack.
        return {"graph": flatten_graph(self.inputs + self.outputs), "n": len(self.inputs)}

    def __setstate__(self, state):
        roots = unflatten_graph(state["graph"])
        self.inputs, self.outputs = roots[:state["n"]], roots[state["n"]:]
        self._program = None


def placeholder(v, name=None):
    """A free variable of ``v``'s type: an input of an inner graph."""
    return Variable(v.type, name=name if name is not None else v.name)


def close_over(outputs, inside, placeholders=()):
    """Cut ``outputs`` (a step or branch traced on outer variables) from the outer graph.

    ``inside(v)`` says whether ``v`` belongs to the inner graph; the outer
    variables the inner graph reads (its frontier, but the given
    ``placeholders``) become new placeholders.
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
    phs = [placeholder(v) for v in frontier]
    inner = replace(outputs, dict(zip(frontier, phs))) if frontier else list(outputs)
    return frontier, phs, inner


def replace(outputs, mapping):
    """``outputs`` rebuilt with ``mapping`` (old -> new variable) substituted.

    Unlike plain ``graph.clone_replace``, nothing above a replaced variable is
    rebuilt (a replaced variable computed from another replaced one stays
    replaced). Each new node keeps the trace and gradient origin of its copy.
    """
    return clone_replace(outputs, mapping, keep_replaced=True)


def dependence(outputs, placeholders):
    """``(ids depending on a placeholder, ids computed from constants only)``."""
    dep = {id(p) for p in placeholders}
    const = {id(v) for v in outputs if isinstance(v, Constant)}
    for node in toposort(outputs, stop=dep):
        ids = [id(i) for i in node.inputs]
        const.update(id(i) for i in node.inputs if isinstance(i, Constant))
        if any(i in dep for i in ids):
            dep.update(id(o) for o in node.outputs)
        elif all(i in const for i in ids):
            const.update(id(o) for o in node.outputs)
    return dep, const


def ancestors(outputs):
    """Every variable ``outputs`` depend on (themselves included)."""
    seen, stack = {}, list(outputs)
    while stack:
        v = stack.pop()
        if id(v) not in seen:
            seen[id(v)] = v
            if v.owner is not None:
                stack.extend(v.owner.inputs)
    return list(seen.values())


def graph_flops(inner, shapes):
    """FLOPs of one run of ``inner`` on inputs of these shapes (run on zeros to find the rest)."""
    vals = [np.zeros(sh, dtype=p.dtype) for p, sh in zip(inner.inputs, shapes)]
    nodes = inner.nodes()
    prog = Program(inner.inputs, [o for n in nodes for o in n.outputs])
    with np.errstate(all="ignore"):
        got = prog.run(vals)
    shape_of = {id(p): v.shape for p, v in zip(inner.inputs, vals)}
    shape_of.update({id(v): g.shape for v, g in zip(prog.outputs, got)})
    total = 0
    for n in nodes:
        ins = [shape_of[id(i)] if id(i) in shape_of else i.data.shape for i in n.inputs]
        total += int(n.op.flops(n, ins, [shape_of[id(o)] for o in n.outputs]))
    return total


def name_placeholders(phs, n_seqs=0, n_rec=0):
    """Names for printing the unnamed ones: ``seq0[t]``, ``prev0`` (recurrent), ``outer0``."""
    for j, p in enumerate(phs):
        if p.name is None:
            p.name = (f"seq{j}[t]" if j < n_seqs else f"prev{j - n_seqs}" if j < n_seqs + n_rec
                      else f"outer{j - n_seqs - n_rec}")


def merge_shapes(a, b):
    """Per axis the length both agree on (None where they differ or one is unknown)."""
    return tuple(x if x == y else None for x, y in zip(a, b))


def known_union(a, b):
    """Per axis the length either knows."""
    return tuple(x if x is not None else y for x, y in zip(a, b))


def conflict(a, b):
    """Whether two static shapes know different lengths on some axis."""
    return any(x is not None and y is not None and x != y for x, y in zip(a, b))


def at_user_line():
    """``(at path/model.py:12)``: the user's line, for build-time messages."""
    return f"(at {user_trace()})"


def as_list(x):
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]
