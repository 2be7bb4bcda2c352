"""Algebraic simplification: rewrites that give the same bits in IEEE arithmetic.

Each rule returns a replacement whose every element equals the original's,
NaN, infinities and the sign of zero included, or returns None. Where a
rewrite drops an operand (``x * 1 -> x``) the shape facts of
:mod:`.shapes` must prove that the operand did not stretch ``x`` by
broadcasting, and a dtype the operand changed is restored with a cast.

The rewrites that hold only in exact arithmetic live in ``FAST`` and run only
at level "fast"; the package docstring lists them with the reasons.
"""

import numpy as np

from ..graph import Constant
from ..ops.elemwise import Cast, Elemwise
from ..ops.join import Concatenate
from ..ops.shape import DimShuffle, MakeVector, Shape, ShapeAt, broadcast_to
from ..ops.subtensor import FULL, SCALAR, IncSubtensor, is_slice
from .engine import RuleSet, all_equal

__all__ = ["ALGEBRA", "FAST", "same_values"]

ALGEBRA = RuleSet("algebra")
FAST = RuleSet("fast")

# A conversion that keeps every value: x -> d1 -> d2 equals x -> d2.
_LOSSLESS = {("bool", d) for d in ("int32", "int64", "float32", "float64")} | {
    ("int32", "int64"), ("int32", "float64"), ("float32", "float64")}


def _op(v, *names):
    """``v``'s node if it is made by one of the ops ``names``, else None."""
    node = v.owner
    return node if node is not None and node.op.name in names else None


def same_values(node, x, sweep):
    """``x`` standing in for ``node``'s output: same lengths (proved) and dtype (cast).

    None when the shape facts cannot prove that ``x`` has the output's lengths.
    """
    out = node.outputs[0]
    if x.ndim != out.ndim or not sweep.dims.same(sweep.dims.of(x), sweep.dims.of(out)):
        return None
    return x if x.dtype == out.dtype else Cast(out.dtype)(x)


def _float(v):
    return v.dtype in ("float32", "float64")


# --------------------------------------------------------------------------- identities

@ALGEBRA("stop_gradient")
def drop_stop_gradient(node, sweep):
    # Gradients are taken before sg.function: in a compiled graph it is the identity.
    return node.inputs[0]


@ALGEBRA("neg")
def double_negation(node, sweep):
    inner = _op(node.inputs[0], "neg")
    return inner.inputs[0] if inner is not None else None


@ALGEBRA("mul")
def multiply_by_one(node, sweep):
    a, b = node.inputs
    for x, c in ((a, b), (b, a)):
        if all_equal(c, 1):
            r = same_values(node, x, sweep)
            if r is not None:
                return r
    return None


@ALGEBRA("mul")
def multiply_by_minus_one(node, sweep):
    a, b = node.inputs
    out = node.outputs[0]
    for x, c in ((a, b), (b, a)):
        # only without a cast: -x of the most negative int wraps, x * -1.0 does not
        if x.dtype == out.dtype and out.dtype != "bool" and all_equal(c, -1):
            r = same_values(node, x, sweep)
            if r is not None:
                return Elemwise("neg")(r)
    return None


@ALGEBRA("mul")
def two_negations_multiply(node, sweep):
    na, nb = (_op(v, "neg") for v in node.inputs)
    if na is None or nb is None:
        return None
    return Elemwise("mul")(na.inputs[0], nb.inputs[0])


@ALGEBRA("truediv")
def divide_by_one(node, sweep):
    x, c = node.inputs
    return same_values(node, x, sweep) if all_equal(c, 1) else None


@ALGEBRA("pow")
def power_of_one(node, sweep):
    x, c = node.inputs
    return same_values(node, x, sweep) if all_equal(c, 1) else None


@ALGEBRA("add")
def add_zero(node, sweep):
    # Floats: only -0.0 is neutral (-0.0 + 0.0 is +0.0); integers: 0.
    out = node.outputs[0]
    zero = -0.0 if _float(out) else 0
    a, b = node.inputs
    for x, c in ((a, b), (b, a)):
        if all_equal(c, zero):
            r = same_values(node, x, sweep)
            if r is not None:
                return r
    return None


@ALGEBRA("add")
def chain_increments_into_zeros(node, sweep):
    """``inc(Z, a, s) + Q -> inc(Q, a, s)`` when ``Z`` is all +0.0 and ``Q`` is ``Z`` or
    increments into ``Z``: the gradient of a value sliced into parts (an LSTM's gates) is a
    sum of increments into zeros, one full buffer and one full add per part; chained,
    each part is added into one buffer.

    Exact: an element of ``Q`` is ``0.0 + ...``, never -0.0, so ``0.0 + q == q``
    outside the slice and ``(0.0 + a) + q == q + a`` inside it, NaN and infinities alike.
    """
    out = node.outputs[0]
    if not _float(out):
        return None
    a, b = node.inputs
    for p, q in ((a, b), (b, a)):
        n = p.owner
        if (n is None or not isinstance(n.op, IncSubtensor) or n.op.set_instead_of_inc
                or p.type != q.type or q.type != out.type):
            continue
        zeros = n.inputs[0]
        if _incremented_zeros(q) is zeros and all_equal(zeros, 0.0):
            return n.op.make_node(q, *n.inputs[1:]).outputs[0]
    return None


def _incremented_zeros(v):
    """The value at the root of ``v``'s chain of increments (``v`` itself if none)."""
    while (v.owner is not None and isinstance(v.owner.op, IncSubtensor)
           and not v.owner.op.set_instead_of_inc):
        v = v.owner.inputs[0]
    return v


@ALGEBRA("inc_subtensor")
def increments_tiling_zeros(node, sweep):
    """``inc(...inc(Z, a1, s1)..., an, sn) -> concatenate([0.0 + a1, ..., 0.0 + an])`` (in
    the regions' order) when ``Z`` is all +0.0 and the regions -- slices with constant
    bounds of one axis, the other axes whole -- tile that axis: the gradient of a value
    split into parts (an LSTM's gates) is its parts' gradients side by side, with no buffer
    of zeros to fill, copy and add each part into.

    Exact: each element of the chain is ``0.0 + a`` for the one part whose region holds
    it, and that sum stays (``0.0 + a`` is +0.0 where ``a`` is -0.0).
    """
    out = node.outputs[0]
    if not _float(out) or out.ndim == 0:
        return None
    parts, v = [], out
    while (v.owner is not None and isinstance(v.owner.op, IncSubtensor)
           and not v.owner.op.set_instead_of_inc):
        parts.append(v.owner)
        v = v.owner.inputs[0]
    if len(parts) < 2 or not all_equal(v, 0.0):
        return None
    regions = [_region(n, sweep) for n in parts]
    if None in regions or len({axis for axis, _, _, _ in regions}) != 1:
        return None
    regions.sort(key=lambda r: r[1])
    axis = regions[0][0]
    ends = [0] + [stop for _, _, stop, _ in regions]
    if any(start != end for (_, start, _, _), end in zip(regions, ends)) \
            or ends[-1] != out.type.shape[axis]:
        return None
    zero = Constant(0, dtype=out.dtype)
    return Concatenate(axis)(*[Elemwise("add")(zero, y) for _, _, _, y in regions])


def _region(n, sweep):
    """``(axis, start, stop, value)`` of an increment ``n`` of a whole value into a slice
    ``start:stop`` (constant, non-empty) of one axis of ``x``, the others whole, the value
    of the region's lengths and dtype; else None."""
    x, y = n.inputs[:2]
    idx = n.op.idx
    if (len(n.inputs) != 2 or len(idx) > x.ndim or y.ndim != x.ndim or y.dtype != x.dtype
            or not all(is_slice(e) for e in idx)):
        return None
    cut = [k for k, e in enumerate(idx) if e != FULL]
    if len(cut) != 1:
        return None
    axis = cut[0]
    e, length = idx[axis], x.type.shape[axis]
    if length is None or SCALAR in e or e[2] not in (None, 1):
        return None
    start, stop, _ = slice(e[0], e[1]).indices(length)
    if stop <= start or y.type.shape[axis] != stop - start:
        return None
    # the value has the region's lengths (it does not broadcast into it): static or proved
    tx, ty = sweep.dims.of(x), sweep.dims.of(y)
    if not all(x.type.shape[k] is not None and x.type.shape[k] == y.type.shape[k]
               or sweep.dims.same((tx[k],), (ty[k],)) for k in range(x.ndim) if k != axis):
        return None
    return axis, start, stop, y


@ALGEBRA("sub")
def subtract_zero(node, sweep):
    x, c = node.inputs
    return same_values(node, x, sweep) if all_equal(c, 0) else None


@ALGEBRA("add", "sub")
def absorb_negation(node, sweep):
    # x - y is defined as x + (-y), exactly: a - (-b) == a + b and a + (-b) == a - b
    a, b = node.inputs
    nb, na = _op(b, "neg"), _op(a, "neg")
    if node.op.name == "sub" and nb is not None:
        return Elemwise("add")(a, nb.inputs[0])
    if node.op.name == "add" and nb is not None:
        return Elemwise("sub")(a, nb.inputs[0])
    if node.op.name == "add" and na is not None:
        return Elemwise("sub")(b, na.inputs[0])
    return None


@ALGEBRA("cast")
def cast_of_cast(node, sweep):
    inner = _op(node.inputs[0], "cast")
    if inner is None:
        return None
    x = inner.inputs[0]
    if (x.dtype, inner.op.dtype) not in _LOSSLESS:
        return None
    return x if x.dtype == node.op.dtype else Cast(node.op.dtype)(x)


# --------------------------------------------------------------------------- shapes and axes

@ALGEBRA("dimshuffle")
def dimshuffle_of_dimshuffle(node, sweep):
    op, x = node.op, node.inputs[0]
    inner = _op(x, "dimshuffle")
    if inner is None:
        if list(op.order) == list(range(op.in_ndim)):
            return x
        return None
    # Axes the outer one drops are 'x' of the inner (nothing to check) or input axes,
    # which the composition drops in turn: every length-1 check is kept.
    order = ["x" if o == "x" else inner.op.order[o] for o in op.order]
    src = inner.inputs[0]
    if order == list(range(src.ndim)):
        return src
    return DimShuffle(order, src.ndim)(src)


@ALGEBRA("reshape")
def reshape_to_own_shape(node, sweep):
    x, s = node.inputs
    d = sweep.dims
    return x if x.ndim == len(d.vector(s)) and d.same(d.of(x), d.vector(s)) else None


@ALGEBRA("reshape")
def reshape_of_reshape(node, sweep):
    inner = _op(node.inputs[0], "reshape")
    if inner is None:
        return None
    x = inner.inputs[0]
    # Only when the inner reshape was checked as the graph was built: dropping it must
    # not drop an error the run would raise.
    if None in x.type.shape or None in inner.outputs[0].type.shape:
        return None
    return inner.op.make_node(x, node.inputs[1]).outputs[0]


@ALGEBRA("sum_to")
def sum_to_nothing(node, sweep):
    g, s = node.inputs
    d = sweep.dims
    return g if d.same(d.of(g), d.vector(s)) else None


@ALGEBRA("broadcast_to")
def broadcast_to_own_shape(node, sweep):
    x, s = node.inputs
    d = sweep.dims
    return x if d.same(d.of(x), d.vector(s)) else None


@ALGEBRA("sum", "mean", "prod", "max", "min")
def reduce_over_length_one(node, sweep):
    """A reduction over axes of length 1 (or none) is its input, with those axes dropped.

    A sum (and a mean) starts from 0.0, so one element -0.0 sums to +0.0: that is
    ``x + 0.0``. A product starts from 1.0 and keeps it, as max and min do.
    """
    x, op, out = node.inputs[0], node.op, node.outputs[0]
    terms = sweep.dims.of(x)
    if any(terms[a] != 1 for a in op.axis):
        return None
    kept = [i for i in range(x.ndim) if i not in op.axis]
    r = x if op.keepdims or not op.axis else DimShuffle(kept, x.ndim)(x)
    r = r if r.dtype == out.dtype else Cast(out.dtype)(r)
    if op.name in ("sum", "mean") and _float(out):
        r = Elemwise("add")(r, Constant(0.0, dtype=out.dtype))
    return r


# --------------------------------------------------------------------------- shapes as values

def _witness(v, axis, sweep):
    """A variable and axis whose length provably equals ``v``'s along ``axis``, found among
    the inputs of ``v``'s node (or the parts of a shape vector it was given)."""
    node, d = v.owner, sweep.dims
    want = d.of(v)[axis]
    if node.op.name in ("broadcast_to", "sum_to", "reshape"):
        s = node.inputs[1]
        sn = s.owner
        if sn is not None and sn.op.name == "shape":
            return sn.inputs[0], axis
        if sn is not None and sn.op.name == "make_vector":
            part = sn.inputs[axis]
            term = d.scalar(part)
            if part.dtype == "int64" and (term is want or term == want):
                return part, None
        return None
    if node.op.name == "arange":  # arange(0, n, 1) with n a length has length n
        stop = node.inputs[1]
        term = d.scalar(stop)
        return (stop, None) if stop.dtype == "int64" and term is want else None
    for u in node.inputs:
        terms = d.of(u)
        for j, t in enumerate(terms):
            if t is want and not isinstance(t, int):
                return u, j
    return None


def _length_of(v, axis, sweep):
    """An int64 scalar with the length of ``v`` along ``axis`` that does not need ``v``:
    a constant, or ``shape_at`` of the deepest variable known to share the length."""
    t = sweep.dims.of(v)[axis]
    if isinstance(t, int):
        return Constant(np.array(t, dtype=np.int64))
    src, a = _deepest(v, axis, sweep)
    if src is v:
        return None
    return src if a is None else ShapeAt(a)(src)  # a is None: a part of a shape vector


def _deepest(v, axis, sweep):
    """The end of the chain of witnesses from (v, axis), remembered for every link."""
    memo = sweep.__dict__.setdefault("deepest_length", {})
    path, src, a = [], v, axis
    while True:
        known = memo.get((id(src), a))
        if known is not None:
            src, a = known
            break
        if src.owner is None or a is None:
            break
        w = _witness(src, a, sweep)
        if w is None:
            break
        path.append((id(src), a))
        src, a = w
    for key in path:
        memo[key] = (src, a)
    return src, a


@ALGEBRA("shape_at")
def length_from_inputs(node, sweep):
    """``shape_at(f(x), i)`` becomes ``shape_at(x, j)``: the length without computing f(x),
    and equal lengths from different places merge."""
    v = node.inputs[0]
    if v.owner is None:
        return None
    return _length_of(v, node.op.axis % v.ndim, sweep)


def _same_shape_input(v, d):
    terms = d.of(v)
    for u in v.owner.inputs:
        if u.ndim == v.ndim and d.same(d.of(u), terms):
            return u
    return None


@ALGEBRA("shape")
def shape_from_inputs(node, sweep):
    v, d = node.inputs[0], sweep.dims
    if v.owner is None or v.ndim == 0:
        return None
    src = v
    while src.owner is not None:
        u = _same_shape_input(src, d)
        if u is None:
            break
        src = u
    if src.owner is not None:  # lengths from further down, where known, need no src either
        parts = [_length_of(src, a, sweep) for a in range(src.ndim)]
        if all(p is not None for p in parts):
            return MakeVector()(*parts)
    return None if src is v else Shape()(src)


@ALGEBRA("make_vector")
def make_vector_is_shape(node, sweep):
    """``make_vector(shape_at(x, 0), ..., shape_at(x, n-1))`` is ``shape(x)``."""
    parts = node.inputs
    src = None
    for i, p in enumerate(parts):
        pn = p.owner
        if pn is None or pn.op.name != "shape_at":
            return None
        x = pn.inputs[0]
        if (src is not None and x is not src) or pn.op.axis % x.ndim != i:
            return None
        src = x
    if src is None or src.ndim != len(parts):
        return None
    return Shape()(src)


# --------------------------------------------------------------------------- fast math only

@FAST("mul")
def multiply_by_zero(node, sweep):
    # wrong for x = NaN or inf (NaN, not 0) and gives +0.0 where x < 0 gives -0.0
    a, b = node.inputs
    out = node.outputs[0]
    for x, c in ((a, b), (b, a)):
        if all_equal(c, 0) or all_equal(c, -0.0):
            if same_values(node, x, sweep) is not None:
                return broadcast_to(Constant(0, dtype=out.dtype), Shape()(x))
    return None


@FAST("sub")
def subtract_itself(node, sweep):
    # wrong for x = NaN or inf
    a, b = node.inputs
    if a is b and same_values(node, a, sweep) is not None:
        return broadcast_to(Constant(0, dtype=node.outputs[0].dtype), Shape()(a))
    return None


@FAST("truediv")
def divide_by_itself(node, sweep):
    # wrong for x = 0, NaN or inf
    a, b = node.inputs
    if a is b and same_values(node, a, sweep) is not None:
        return broadcast_to(Constant(1, dtype=node.outputs[0].dtype), Shape()(a))
    return None


@FAST("add")
def add_positive_zero(node, sweep):
    # wrong only for x = -0.0 (gives +0.0)
    a, b = node.inputs
    for x, c in ((a, b), (b, a)):
        if all_equal(c, 0.0):
            r = same_values(node, x, sweep)
            if r is not None:
                return r
    return None


@FAST("pow")
def power_of_two(node, sweep):
    # libm's pow(x, 2) is not always correctly rounded: it may differ from x * x in the last bit
    x, c = node.inputs
    if _float(x) and all_equal(c, 2):
        r = same_values(node, x, sweep)
        return None if r is None else Elemwise("square")(r)
    return None


@FAST("log")
def log_of_exp(node, sweep):
    # wrong where exp(x) overflows (inf, not x) or underflows (-inf)
    inner = _op(node.inputs[0], "exp")
    return inner.inputs[0] if inner is not None else None
