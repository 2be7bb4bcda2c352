"""Loops: what a scan's step computes from its sequences alone, done for every step at once.

A recurrent net's step multiplies its input slice by a weight before it
meets the recurrent state: ``tanh(x_t @ Wx + h @ Wh + b)``. ``x_t @ Wx``
depends on the step only through the slice, so the products of all the steps
are one product of the whole sequence, ``X @ Wx``: one BLAS call over
``T * B`` rows before the loop instead of ``T`` small ones inside it, the
step reading its row of the result as a sequence of its own.

:func:`hoist_sequence_work` finds, in a scan's step, the values computed
only from sequence slices and loop-invariant values (the non-sequences, the
constants) through ops that extend to a leading steps axis -- elementwise
ops whose operands that vary by step have the result's rank, a matrix
product of a slice by a 2-d invariant matrix, a dimshuffle -- and moves those
that involve a product out of the loop. Elementwise work alone stays inside,
where the step's fused loop computes it without storing it for every step.
Values are unchanged: each step's entry of the batched product is computed
by the same gemm kernel on the same numbers (BLAS may block a taller product
differently, as it may anyway).
"""

from ..graph import Constant, TensorType, Variable, trace_as
from ..ops.elemwise import Elemwise
from ..ops.inner import InnerGraph, replace
from ..ops.linalg import MatMul
from ..ops.scan import Scan
from ..ops.shape import DimShuffle

__all__ = ["hoist_sequence_work"]


def hoist_sequence_work(op, inputs):
    """A Scan node's ``(op, inputs)`` with its sequence-only products computed before the
    loop (each a new sequence of the node), or None when its step has none."""
    if not isinstance(op, Scan):
        return None
    n_steps, seqs, inits, others = op.split(inputs)
    s, r = op.n_seqs, op.n_rec
    phs = op.inner.inputs
    seq_of = {id(p): x for p, x in zip(phs[:s], seqs)}
    outer_of = {id(p): x for p, x in zip(phs[s + r:], others)}
    nodes = op.inner.nodes()

    varies = set(seq_of)      # ids of values computed from slices and invariants only
    invariant = set(outer_of)  # ids of values the same at every step (placeholders, nodes)
    product = set()           # ids of varying values whose computation holds a product
    for n in nodes:
        ins = n.inputs
        if all(id(i) in invariant or isinstance(i, Constant) for i in ins):
            invariant.update(id(o) for o in n.outputs)
            continue
        if not all(id(i) in varies or id(i) in invariant or isinstance(i, Constant) for i in ins):
            continue
        if not _extends(n, varies):
            continue
        out = n.outputs[0]
        varies.add(id(out))
        if isinstance(n.op, MatMul) or any(id(i) in product for i in ins):
            product.add(id(out))

    # What leaves the set -- read by a node that stays in the step, or an output of it.
    frontier, seen = [], set()

    def meet(v):
        if id(v) in product and id(v) not in seen:
            seen.add(id(v))
            frontier.append(v)

    for n in nodes:
        if id(n.outputs[0]) not in varies:
            for i in n.inputs:
                meet(i)
    for o in op.inner.outputs:
        meet(o)
    if not frontier:
        return None

    memo = dict(seq_of)
    memo.update(outer_of)

    def outer(v):
        """``v`` computed outside the loop: for every step at once if it varies."""
        got = memo.get(id(v))
        if got is not None:
            return got
        if isinstance(v, Constant):
            return v
        n = v.owner
        args = [outer(i) for i in n.inputs]
        with trace_as(n.trace, n.grad_of):
            if id(v) in varies and isinstance(n.op, DimShuffle):
                order = (0, *[a if a == "x" else a + 1 for a in n.op.order])
                made = DimShuffle(order, n.op.in_ndim + 1).make_node(*args)
            else:
                made = n.op.make_node(*args)
        memo[id(v)] = made.outputs[0]
        return made.outputs[0]

    batched = [outer(v) for v in frontier]
    slices = [Variable(TensorType(v.dtype, v.type.shape), name=v.name) for v in frontier]
    outs = replace(op.inner.outputs, dict(zip(frontier, slices)))
    # Sequences the step no longer reads (their products moved out) are dropped.
    read = {id(i) for n in InnerGraph([], outs).nodes() for i in n.inputs} | {id(o) for o in outs}
    keep = [j for j in range(s) if id(phs[j]) in read]
    inner = InnerGraph([phs[j] for j in keep] + slices + list(phs[s:]), outs)
    new = Scan(inner, len(keep) + len(slices), r, op.last, op.truncate, op.label)
    return new, [n_steps, *[seqs[j] for j in keep], *batched, *inits, *others]


def _extends(n, varies):
    """Whether node ``n``, its varying operands given a leading steps axis, computes every
    step's value at once."""
    if len(n.outputs) != 1:
        return False
    out = n.outputs[0]
    if isinstance(n.op, Elemwise):
        # invariant operands broadcast from the right; varying ones need the result's rank
        return all(i.ndim == out.ndim for i in n.inputs if id(i) in varies)
    if isinstance(n.op, MatMul):
        a, b = n.inputs
        return id(a) in varies and id(b) not in varies and b.ndim == 2 and a.ndim >= 1
    return isinstance(n.op, DimShuffle)
