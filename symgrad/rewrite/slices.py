"""Slices moved before the elementwise op they read: ``f(a, b)[s] -> f(a[s], b[s])``.

An LSTM's step computes ``z = x @ Wx + h @ Wh + b`` and reads its four gates
as column slices ``z[:, :H]``, ``z[:, H:2H]``, ... Computed as written, the
bias add is a loop of its own that writes all of ``z``, and each gate's
``sigmoid`` is another loop reading it back. With the slices moved before the
add, each gate's loop adds its part of the bias as it goes (the C backend
fuses ``sigmoid(p[:, :H] + b[:H])`` into one loop over views), and ``z`` is
never written.

The rule applies where every reader of the elementwise result is such a
slice (so the full result is no longer computed), the slices take no more
elements together than the result has (nothing is computed twice), and
each operand's part is known when the graph is built: a slice of an axis
the operand broadcasts along (length 1 where the result is longer, or a
length unknown until run time) is not taken. The same operation on the same
elements gives the same bits; a broadcast that fails at run time still
names the elementwise op's line.
"""

import math

from ..graph import trace_as
from ..ops.elemwise import Elemwise
from ..ops.subtensor import FULL, Subtensor, is_slice
from .engine import RuleSet

__all__ = ["SLICES"]

SLICES = RuleSet("slices")


def _constant_slices(node, ndim):
    """The node's index as one slice per axis (ints and None only), or None."""
    if not isinstance(node.op, Subtensor) or len(node.inputs) != 1:
        return None
    idx = node.op.idx
    if len(idx) > ndim or not all(is_slice(e) for e in idx):
        return None
    if not all(p is None or isinstance(p, int) for e in idx for p in e):
        return None
    return tuple(idx) + (FULL,) * (ndim - len(idx))


def _size(shape):
    return None if any(n is None for n in shape) else math.prod(shape)


@SLICES("subtensor")
def slice_before_elementwise(node, walk):
    x = node.inputs[0]
    e = x.owner
    if e is None or type(e.op) is not Elemwise or x.ndim == 0:
        return None
    idx = _constant_slices(node, x.ndim)
    readers = walk.readers(x)
    if idx is None or walk.n_uses(x) != len(readers):  # an output of the graph too
        return None
    if len(readers) > 1:
        if any(_constant_slices(r, x.ndim) is None for r in readers):
            return None
        parts = [_size(r.outputs[0].type.shape) for r in readers]
        whole = _size(x.type.shape)
        if whole is None or None in parts or sum(parts) > whole:
            return None
    ins = []
    for a in e.inputs:
        off = x.ndim - a.ndim
        sub = []
        for j in range(a.ndim):
            s = idx[off + j]
            n = a.type.shape[j]
            if s != FULL and (n is None or n != x.type.shape[off + j]):
                return None  # the operand broadcasts along this axis, or may
            sub.append(s)
        ins.append(a if all(s == FULL for s in sub) else Subtensor(tuple(sub))(a))
    with trace_as(e.trace, e.grad_of):
        return e.op.make_node(*ins).outputs[0]
