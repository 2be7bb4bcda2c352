"""``sg.ifelse``: a choice between two branches of which only the one taken runs.

An :class:`IfElse` node holds both branches as inner graphs
(:mod:`.inner`) over the same placeholders, one per outer value they read;
the values the condition needs are computed before the choice, everything
else a branch needs inside it, only when it runs. The gradient is an ifelse
of the branches' gradients: it too computes only the branch taken.
"""

from .. import dtypes as _dt
from ..codegen.ir import Branch
from ..errors import ShapeError
from ..graph import Constant, TensorType, Variable, as_variable
from .shape import zeros_like
from .inner import (InnerGraph, InnerGraphOp, ancestors, as_list, at_user_line, close_over,
                    conflict, graph_flops, merge_shapes, name_placeholders, replace)

__all__ = ["ifelse", "make_ifelse", "IfElse"]


class IfElse(InnerGraphOp):
    """``then`` if the 0-d condition holds, else ``else_``: only that branch runs.

    Inputs: ``[cond, outer values...]``; ``then_graph`` and ``else_graph``
    are inner graphs over the same placeholders, one per outer value.
    """

    name = "ifelse"
    # autodiff passes its vjp to this rule, which differentiates the branches
    grad_takes_vjp = True

    def __init__(self, then_graph, else_graph):
        self.then_graph, self.else_graph = then_graph, else_graph

    def inner_graphs(self):
        """``[(title, InnerGraph)]``: what printing shows below the outer graph."""
        return [("then", self.then_graph), ("else", self.else_graph)]

    def with_inner_outputs(self, outputs):
        """The same choice between branches computing ``outputs`` (the rewrites' version)."""
        then, else_ = outputs
        return IfElse(InnerGraph(self.then_graph.inputs, then),
                      InnerGraph(self.else_graph.inputs, else_))

    def infer(self, cond, *outer):
        check_cond(cond)
        return [TensorType(a.dtype, merge_shapes(a.type.shape, b.type.shape))
                for a, b in zip(self.then_graph.outputs, self.else_graph.outputs)]

    def perform(self, node, cond, *values):
        branch = self.then_graph if bool(cond) else self.else_graph
        return branch.run(values)

    def lower(self, node):
        """A :class:`~symgrad.codegen.ir.Branch` step: the kernel runs the branch taken."""
        return Branch(0, node, [node], cond=node.inputs[0],
                      inputs=list(zip(node.inputs[1:], self.then_graph.inputs)),
                      branches=[list(self.then_graph.outputs), list(self.else_graph.outputs)])

    def flops(self, node, in_shapes, out_shapes):
        """The larger branch's count (which one runs is known only at call time)."""
        shapes = list(in_shapes[1:])
        return max(graph_flops(self.then_graph, shapes), graph_flops(self.else_graph, shapes))

    def grad(self, node, inputs, outputs, gouts, vjp=None, wanted=None):
        if vjp is None:
            raise TypeError("the gradient of ifelse is taken by symgrad.grad (it passes vjp=)")
        cond, outer = inputs[0], list(inputs[1:])
        wanted = list(wanted) if wanted is not None else [True] * len(inputs)
        want = [j for j, v in enumerate(outer) if wanted[1 + j] and _dt.is_float(v.dtype)]
        if not want:
            return [None] * len(inputs)
        # Differentiated with respect to the placeholders (outer values may depend on one
        # another: W and W.T), then put back on the outer values.
        phs = self.then_graph.inputs
        branches = []
        for graph in (self.then_graph, self.else_graph):
            outs = graph.rebuilt_on(phs)
            seeds = [(o, g) for o, g in zip(outs, gouts)
                     if g is not None and _dt.is_float(o.dtype)]
            grads = (vjp(seeds, [phs[j] for j in want]) if seeds else
                     [zeros_like(phs[j]) for j in want])
            branches.append(replace(grads, dict(zip(phs, outer))))
        known = [cond, *outer, *[g for g in gouts if g is not None]]
        result = [None] * len(inputs)
        for j, g in zip(want, make_ifelse(cond, branches[0], branches[1], known)):
            result[1 + j] = g
        return result


def check_cond(cond):
    if cond.ndim != 0:
        raise TypeError(f"the condition must be 0-d, got {cond.type}")
    if cond.dtype != "bool" and not _dt.is_int(cond.dtype):
        raise TypeError(f"the condition must be a 0-d bool (or integer), got {cond.type}; "
                        f"compare first, e.g. sg.ifelse(x.sum() > 0, ...)")


def make_ifelse(cond, then, else_, known=()):
    """The IfElse outputs of branches ``then`` and ``else_`` (equally long lists, types
    already checked).

    What the condition needs and the variables in ``known`` are computed
    outside (they are needed anyway); the rest of each branch moves inside.
    """
    outside = {id(v) for v in known} | {id(v) for v in ancestors([cond])}

    def inside(v):
        return isinstance(v, Constant) or (v.owner is not None and id(v) not in outside)

    n = len(then)
    outer, phs, inner = close_over(list(then) + list(else_), inside)
    name_placeholders(phs)
    op = IfElse(InnerGraph(phs, inner[:n]), InnerGraph(phs, inner[n:]))
    return op.make_node(cond, *outer).outputs


def ifelse(cond, then, else_, name=None):
    """``then`` if ``cond`` holds, else ``else_``; only the branch taken is computed.

    ``cond`` is a 0-d bool; ``then`` and ``else_`` are Variables (or numbers)
    or equally long lists of them whose dtypes and numbers of dimensions
    match. What the condition itself needs is computed before the choice;
    everything else each branch needs is computed only when that branch runs
    (a value also used outside the ifelse is computed there too).

    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> y = sg.ifelse(x.sum() > 0, x * 2, -x)
    >>> sg.evaluate(y, {x: np.array([1.0, -3.0])})
    array([-1.,  3.])
    """
    where = at_user_line()
    cond = as_variable(cond)
    try:
        check_cond(cond)
    except TypeError as e:
        raise TypeError(f"ifelse: {e} {where}") from None
    single = not isinstance(then, (list, tuple))
    if single != (not isinstance(else_, (list, tuple))):
        raise TypeError(f"ifelse: then and else_ must both be Variables or both lists {where}")
    pairs = _branch_pairs(as_list(then), as_list(else_), where)
    outs = make_ifelse(cond, [a for a, _ in pairs], [b for _, b in pairs])
    for v in outs:
        if name:
            v.name = name
    return outs[0] if single else outs


def _branch_pairs(ts, es, where):
    """The branches' values paired, each pair checked to have one type."""
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
        if conflict(a.type.shape, b.type.shape):
            raise ShapeError(f"ifelse: value {k} has the static shape {a.type} in then but "
                             f"{b.type} in else_ {where}")
        pairs.append((a, b))
    return pairs


def _as_branch(v, other):
    if isinstance(v, Variable):
        return v
    if _dt.is_python_scalar(v) and isinstance(other, Variable):
        return Constant(v, dtype=other.dtype)
    return as_variable(v)
