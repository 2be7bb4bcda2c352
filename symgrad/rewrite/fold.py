"""Constant folding: a node whose inputs are all constants becomes a constant.

The value is the op's own ``perform`` on the constants' data, so it is
bit-identical to what mode "py" computes at run time. A node whose
``perform`` raises (a shape error, an index out of range) is left in the
graph, so the error still happens at run time and names the user's line.
Results larger than their inputs (``zeros((1000, 1000))``) are not folded:
a constant is passed to the kernel on every call. Random draws are never
folded (an op with ``never_fold``): each call draws fresh numbers.

Shapes known when the graph is built fold too: ``shape(x)`` and
``shape_at(x, i)`` of a statically shaped ``x`` become int64 constants.
"""

import numpy as np

from ..graph import Constant
from .engine import RuleSet

__all__ = ["FOLD"]

FOLD = RuleSet("fold")

MAX_FOLDED = 4096  # elements a folded result may have beyond the size of its inputs


@FOLD("*")
def fold_constants(node, sweep):
    if not all(isinstance(i, Constant) for i in node.inputs):
        return None
    if getattr(node.op, "never_fold", False):
        return None  # a random draw, or the index of one (ops/random.py)
    if node.op.name in ("shape", "shape_at"):
        return None  # below
    size_in = sum(i.data.size for i in node.inputs)
    for o in node.outputs:
        if o.type.size is None or o.type.size > max(size_in, MAX_FOLDED):
            return None
    try:
        with np.errstate(all="ignore"):
            values = node.op.perform(node, *[i.data for i in node.inputs])
    except Exception:  # the error belongs to run time, where it names the user's line
        return None
    out = []
    for o, v in zip(node.outputs, values):
        v = np.asarray(v)
        if v.dtype.name != o.dtype or not o.type.accepts_shape(v.shape):
            return None
        out.append(Constant(v, dtype=o.dtype))
    return out


@FOLD("shape")
def fold_static_shape(node, sweep):
    x = node.inputs[0]
    if None in x.type.shape:
        return None
    return Constant(np.array(x.type.shape, dtype=np.int64).reshape(x.ndim))


@FOLD("shape_at")
def fold_static_length(node, sweep):
    x = node.inputs[0]
    n = x.type.shape[node.op.axis % x.ndim]
    return None if n is None else Constant(np.array(n, dtype=np.int64))
