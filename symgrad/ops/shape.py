"""Shape-level ops: shapes as values, axis shuffles, broadcast and its adjoint, reshape.

The autodiff relies on these: ``sum_to`` folds a cotangent back to the shape of
a broadcast input, ``zeros_like`` makes an explicit zero cotangent.
"""

import math

import numpy as np

from .. import dtypes as _dt
from ..errors import ShapeError
from ..graph import (NOT_DIFFERENTIABLE, Constant, Op, TensorType, Variable, as_variable,
                     shape_text, user_trace)
from ..codegen.ir import (Alloc, Arr, Array, At, Bin, Call, Cast, Check, Declare, Dim, Elem, Fn,
                          If, Int, ItemSize, Local, Store, Stride, View)
from ..codegen.ir import Shape as Lengths

__all__ = ["shape", "shape_at", "make_vector", "dimshuffle", "transpose", "expand_dims",
           "squeeze", "broadcast_to", "sum_to", "reshape", "flatten", "alloc", "zeros", "ones",
           "zeros_like", "ones_like", "shape_entries", "as_shape_vector", "check_size",
           "normalize_axis"]


def normalize_axis(axis, ndim, opname):
    """``axis`` as a non-negative int, or a TypeError/ShapeError naming ``opname``."""
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{opname}: axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ShapeError(f"{opname}: axis {axis} is out of range for a {ndim}-d input")
    return int(axis) % ndim if ndim else 0


# --------------------------------------------------------------------------- shapes as values

class Shape(Op):
    """The runtime shape of ``x`` as an int64 vector."""

    name = "shape"
    flops_per_element = 0  # moves data: no arithmetic
    value_inputs = ()

    def infer(self, x):
        return [TensorType("int64", (x.ndim,))]

    def perform(self, node, x):
        return [np.array(x.shape, dtype=np.int64)]

    def grad(self, node, inputs, outputs, gouts):
        return [None]

    def lower(self, node):
        return _shape(self, node)


class ShapeAt(Op):
    """The runtime length of one axis of ``x``, as an int64 scalar."""

    __props__ = ("axis",)
    name = "shape_at"
    flops_per_element = 0  # moves data: no arithmetic
    value_inputs = ()

    def __init__(self, axis):
        self.axis = int(axis)

    def infer(self, x):
        normalize_axis(self.axis, x.ndim, self.name)
        return [TensorType("int64", ())]

    def perform(self, node, x):
        return [np.array(x.shape[self.axis], dtype=np.int64)]

    def grad(self, node, inputs, outputs, gouts):
        return [None]

    def lower(self, node):
        return _shape_at(self, node)


class MakeVector(Op):
    """Integer scalars stacked into an int64 vector (shapes built from parts)."""

    name = "make_vector"
    flops_per_element = 0  # moves data: no arithmetic

    def infer(self, *parts):
        for p in parts:
            if p.ndim != 0 or not (_dt.is_int(p.dtype) or _dt.is_bool(p.dtype)):
                raise TypeError(f"make_vector takes integer scalars, got {p.type}")
        return [TensorType("int64", (len(parts),))]

    def perform(self, node, *parts):
        return [np.array([int(p) for p in parts], dtype=np.int64)]

    def grad(self, node, inputs, outputs, gouts):
        return [NOT_DIFFERENTIABLE] * len(inputs)

    def lower(self, node):
        return _make_vector(self, node)


def shape(x):
    """The shape of ``x`` as a symbolic int64 vector; ``sg.shape(x)[0]`` is the batch size.

    >>> import symgrad as sg
    >>> sg.shape(sg.matrix()).type
    int64[2]
    """
    return Shape()(as_variable(x))


def shape_at(x, axis):
    x = as_variable(x)
    return ShapeAt(normalize_axis(axis, x.ndim, "shape"))(x)


def make_vector(parts):
    return MakeVector()(*[as_variable(p, dtype="int64") for p in parts])


def scalar_entry(s):
    """The static int value of an integer scalar variable, or None if known only at run time."""
    if isinstance(s, Constant) and s.ndim == 0:
        return int(s.data)
    if s.owner is not None and isinstance(s.owner.op, ShapeAt):
        return s.owner.inputs[0].type.shape[s.owner.op.axis]
    return None


def shape_entries(v):
    """Static entries (int or None each) of an int64 shape vector ``v``."""
    if isinstance(v, Constant):
        return tuple(int(e) for e in v.data)
    if v.owner is not None and isinstance(v.owner.op, Shape):
        return v.owner.inputs[0].type.shape
    if v.owner is not None and isinstance(v.owner.op, MakeVector):
        return tuple(scalar_entry(p) for p in v.owner.inputs)
    return (None,) * (v.type.shape[0] or 0)


def as_shape_vector(shp, opname, fill=False):
    """Sizes as the user gives them -> an int64 vector.

    Accepted: an int, a 0-d integer Variable (``x.shape[0]``), a tuple or list
    mixing both (``(x.shape[0], -1)``), or an integer vector of static length
    (``sg.shape(x)``). Anything else is a TypeError naming the user's line; a
    negative int a ShapeError (but -1 where ``fill``: reshape's "the rest").
    """
    if isinstance(shp, Variable):
        if shp.ndim == 1 and _dt.is_int(shp.dtype):
            if shp.type.shape[0] is None:
                raise ShapeError(f"{opname}: a shape vector needs a static length, got "
                                 f"{shp.type} (at {user_trace()})")
            return shp if shp.dtype == "int64" else shp.astype("int64")
        if shp.ndim != 0:
            raise _size_error(opname, "a shape must be sizes or an integer vector", shp)
        shp = [shp]
    elif isinstance(shp, (int, np.integer)) and not isinstance(shp, (bool, np.bool_)):
        shp = [shp]
    elif isinstance(shp, (tuple, list)) or (isinstance(shp, np.ndarray) and shp.ndim == 1):
        shp = list(shp)
    else:
        raise _size_error(opname, "a shape must be an int, an integer scalar Variable, a tuple "
                                  "of them or an integer vector", shp)
    for s in shp:
        if s is None:
            raise TypeError(f"{opname}: a shape entry is None (at {user_trace()}); for a length "
                            f"known only at call time use x.shape[i] (x.type.shape holds None "
                            f"there)")
        check_size(s, opname)
        if not isinstance(s, Variable) and s < 0 and not (fill and s == -1):
            shown = shape_text([e if not isinstance(e, Variable) else None for e in shp], "?")
            raise ShapeError(f"{opname}: negative size {int(s)} in {shown} (at {user_trace()})")
    if all(not isinstance(s, Variable) for s in shp):
        return Constant(np.array(shp, dtype=np.int64).reshape(len(shp)))
    return make_vector(shp)


def check_size(s, opname, what="a size"):
    """``s`` must be an int or a 0-d integer Variable: a TypeError at the user's line if not."""
    if isinstance(s, Variable):
        if s.ndim != 0 or not _dt.is_int(s.dtype):
            raise _size_error(opname, f"{what} must be an int or a 0-d integer Variable", s)
    elif isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)):
        raise _size_error(opname, f"{what} must be an int or a 0-d integer Variable", s)
    return s


def _size_error(opname, what, got):
    shown = f"a Variable of type {got.type}" if isinstance(got, Variable) else repr(got)
    return TypeError(f"{opname}: {what}, got {shown} (at {user_trace()})")


# --------------------------------------------------------------------------- dimshuffle

class DimShuffle(Op):
    """Permute axes, insert length-1 axes ('x'), drop length-1 axes.

    ``order`` lists, for each output axis, an input axis or 'x'. Input axes not
    listed are dropped and must have length 1 (checked at build time when the
    length is static, else at run time).
    """

    __props__ = ("order", "in_ndim")
    name = "dimshuffle"
    flops_per_element = 0  # moves data: no arithmetic

    def __init__(self, order, in_ndim):
        self.order = tuple(order)
        self.in_ndim = int(in_ndim)
        axes = [a for a in self.order if a != "x"]
        if len(set(axes)) != len(axes) or any(not 0 <= a < in_ndim for a in axes):
            raise ShapeError(f"dimshuffle: invalid axis order {self.order} for a {in_ndim}-d input")
        self.dropped = tuple(a for a in range(in_ndim) if a not in axes)

    def infer(self, x):
        if x.ndim != self.in_ndim:
            raise ShapeError(f"expected a {self.in_ndim}-d input, got {x.type}")
        for a in self.dropped:
            if x.type.shape[a] not in (None, 1):
                raise ShapeError(f"cannot drop axis {a} of length {x.type.shape[a]} "
                                 f"(only length 1)")
        return [TensorType(x.dtype, tuple(1 if a == "x" else x.type.shape[a] for a in self.order))]

    def perform(self, node, x):
        for a in self.dropped:
            if x.shape[a] != 1:
                raise ShapeError(f"dimshuffle at {node.trace}: cannot drop axis {a} of length "
                                 f"{x.shape[a]} (input shape {x.shape})")
        kept = [a for a in self.order if a != "x"]
        y = np.transpose(x, kept + list(self.dropped))
        y = y.reshape(y.shape[:len(kept)])
        # np.array copies: a result never aliases its input, and 0-d stays 0-d.
        return [np.array(y.reshape([1 if a == "x" else x.shape[a] for a in self.order]), order="C")]

    def grad(self, node, inputs, outputs, gouts):
        (g,) = gouts
        kept_out = [i for i, a in enumerate(self.order) if a != "x"]
        g = DimShuffle(kept_out, len(self.order))(g) if len(kept_out) != len(self.order) else g
        kept = [a for a in self.order if a != "x"]
        back = [kept.index(a) if a in kept else "x" for a in range(self.in_ndim)]
        if back == list(range(len(kept))):
            return [g]
        return [DimShuffle(back, len(kept))(g)]

    def lower(self, node):
        return _dimshuffle(self, node)


def dimshuffle(x, *order):
    x = as_variable(x)
    if list(order) == list(range(x.ndim)):
        return x
    return DimShuffle(order, x.ndim)(x)


def transpose(x, axes=None):
    """Permute the axes of ``x`` (reverse them when ``axes`` is None), as ``np.transpose``."""
    x = as_variable(x)
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    axes = tuple(normalize_axis(a, x.ndim, "transpose") for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise ShapeError(f"transpose: axes {axes} are not a permutation of {x.ndim} axes")
    return dimshuffle(x, *axes)


def expand_dims(x, axis):
    """Insert length-1 axes at ``axis`` (an int or a tuple), as ``np.expand_dims``."""
    x = as_variable(x)
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    out_ndim = x.ndim + len(axes)
    axes = sorted(normalize_axis(a, out_ndim, "expand_dims") for a in axes)
    if len(set(axes)) != len(axes):
        raise ShapeError(f"expand_dims: repeated axis in {axis}")
    src = iter(range(x.ndim))
    return dimshuffle(x, *["x" if i in axes else next(src) for i in range(out_ndim)])


def squeeze(x, axis=None):
    """Drop length-1 axes: the given ones (checked), or every axis of static length 1."""
    x = as_variable(x)
    if axis is None:
        axes = [i for i, s in enumerate(x.type.shape) if s == 1]
    else:
        axes = axis if isinstance(axis, (tuple, list)) else (axis,)
        axes = [normalize_axis(a, x.ndim, "squeeze") for a in axes]
        for a in axes:
            if x.type.shape[a] not in (None, 1):
                raise ShapeError(f"squeeze: axis {a} has length {x.type.shape[a]}, not 1 "
                                 f"(input {x.type})")
    return dimshuffle(x, *[i for i in range(x.ndim) if i not in axes])


# --------------------------------------------------------------------------- broadcast and its adjoint

def _broadcast_check(src, target, opname):
    if len(src) > len(target):
        raise ShapeError(f"{opname}: cannot broadcast {len(src)}-d shape {src} to {len(target)} dims")
    for s, t in zip(src[::-1], target[::-1]):
        if s is not None and t is not None and s != 1 and s != t:
            raise ShapeError(f"{opname}: cannot broadcast shape {src} to {target}")


class BroadcastTo(Op):
    """``np.broadcast_to(x, shape)`` as a fresh array; ``shape`` is an int64 vector."""

    name = "broadcast_to"
    flops_per_element = 0  # moves data: no arithmetic

    def infer(self, x, shp):
        if shp.dtype != "int64" or shp.ndim != 1 or shp.type.shape[0] is None:
            raise TypeError(f"the shape must be an int64 vector of static length, got {shp.type}")
        target = shape_entries(shp)
        _broadcast_check(x.type.shape, target, self.name)
        lead = len(target) - x.ndim
        src = x.type.shape
        out = [t if t is not None else (s if i >= lead and (s := src[i - lead]) not in (None, 1)
                                        else None) for i, t in enumerate(target)]
        return [TensorType(x.dtype, out)]

    def perform(self, node, x, shp):
        try:
            return [np.array(np.broadcast_to(x, tuple(int(s) for s in shp)))]
        except ValueError:
            raise ShapeError(f"broadcast_to at {node.trace}: cannot broadcast shape {x.shape} "
                             f"to {tuple(int(s) for s in shp)}") from None

    def grad(self, node, inputs, outputs, gouts):
        x, _ = inputs
        return [sum_to(gouts[0], x), NOT_DIFFERENTIABLE]

    def lower(self, node):
        return _broadcast_to(self, node)


class SumTo(Op):
    """Sum ``g`` over the axes along which an input of shape ``shape`` was broadcast.

    The adjoint of broadcasting: leading extra axes are summed away, and axes
    where ``shape`` has length 1 are summed with keepdims.
    """

    name = "sum_to"

    def flops(self, node, in_shapes, out_shapes):
        """One per element of the input (an add, multiply or comparison each)."""
        return math.prod(in_shapes[0])

    def infer(self, g, shp):
        if shp.dtype != "int64" or shp.ndim != 1 or shp.type.shape[0] is None:
            raise TypeError(f"the shape must be an int64 vector of static length, got {shp.type}")
        target = shape_entries(shp)
        _broadcast_check(target, g.type.shape, self.name)
        return [TensorType(g.dtype, target)]

    def perform(self, node, g, shp):
        target = tuple(int(s) for s in shp)
        try:
            np.broadcast_shapes(target, g.shape)
        except ValueError:
            raise ShapeError(f"sum_to at {node.trace}: shape {g.shape} is not a broadcast of "
                             f"{target}") from None
        lead = g.ndim - len(target)
        axes = tuple(range(lead)) + tuple(lead + i for i, t in enumerate(target)
                                          if t == 1 and g.shape[lead + i] != 1)
        # a float32 sum accumulates in float64, as the C does (issue #11)
        wide = np.float64 if g.dtype == np.float32 else None
        out = g.sum(axis=axes, keepdims=True, dtype=wide) if axes else g
        return [np.array(out.reshape(target), dtype=g.dtype)]

    def grad(self, node, inputs, outputs, gouts):
        g, _ = inputs
        return [broadcast_to(gouts[0], shape(g)), NOT_DIFFERENTIABLE]

    def lower(self, node):
        return _sum_to(self, node)


def broadcast_to(x, shp):
    """Broadcast ``x`` to ``shp``, as ``np.broadcast_to``.

    ``shp``: sizes as every size argument takes them -- ints, 0-d integer
    Variables (``y.shape[0]``), a tuple or list mixing both, or an int vector.
    """
    x = as_variable(x)
    return BroadcastTo()(x, as_shape_vector(shp, "broadcast_to"))


def sum_to(g, like):
    """``g`` summed back to the shape of the variable ``like`` (no node if provably not needed)."""
    if None not in like.type.shape:
        if g.type.shape == like.type.shape:
            return g
        # The target as a constant: inside a loop's step it stays known (a shape read
        # from an outer variable would become an input whose value the step cannot see).
        return SumTo()(g, Constant(np.array(like.type.shape, dtype="int64")))
    return SumTo()(g, shape(like))


# --------------------------------------------------------------------------- reshape

class Reshape(Op):
    """``np.reshape(x, shape)`` with ``shape`` an int64 vector (one entry may be -1)."""

    name = "reshape"
    flops_per_element = 0  # moves data: no arithmetic

    def infer(self, x, shp):
        if shp.dtype != "int64" or shp.ndim != 1 or shp.type.shape[0] is None:
            raise TypeError(f"the shape must be an int64 vector of static length, got {shp.type}")
        entries = list(shape_entries(shp))
        if sum(e == -1 for e in entries) > 1:
            raise ShapeError(f"at most one -1 in a shape, got {tuple(entries)}")
        if any(e is not None and e < -1 for e in entries):
            raise ShapeError(f"negative length in shape {tuple(entries)}")
        # An entry that is one of x's own unknown lengths (x.shape[i]) cancels that axis:
        # x.reshape((x.shape[0], -1)) of a (?, 3, 4) input is (?, 12).
        xs, es = list(x.type.shape), list(entries)
        for k, axis in _own_lengths(x, shp):
            xs[axis] = es[k] = 1
        # Python ints: an int64 product would wrap (2**62 * 8 == 0) and pass the checks.
        size = None if None in xs else math.prod(xs)
        known = [e for e in es if e not in (None, -1)]
        if -1 in entries:
            rest = math.prod(known)
            fill = None
            if size is not None and None not in es:
                if rest == 0 or size % rest:
                    raise ShapeError(f"cannot reshape {x.type} to {_entries_text(entries)}")
                fill = size // rest
            entries = [fill if e == -1 else e for e in entries]
        elif size is not None and None not in es and math.prod(es) != size:
            why = (f"{size} elements" if None not in x.type.shape else
                   f"apart from the lengths they share, {size} elements for {math.prod(es)}")
            raise ShapeError(f"cannot reshape {x.type} ({why}) to {_entries_text(entries)}")
        return [TensorType(x.dtype, entries)]

    def perform(self, node, x, shp):
        try:
            return [np.array(np.reshape(x, tuple(int(s) for s in shp)))]
        except ValueError:
            raise ShapeError(f"reshape at {node.trace}: cannot reshape an array of shape "
                             f"{x.shape} to {tuple(int(s) for s in shp)}") from None

    def grad(self, node, inputs, outputs, gouts):
        x, _ = inputs
        return [reshape(gouts[0], shape(x)), NOT_DIFFERENTIABLE]

    def lower(self, node):
        return _reshape(self, node)


def _own_lengths(x, shp):
    """``(k, axis)`` for each entry ``k`` of the shape vector ``shp`` that is ``x``'s own
    unknown length along ``axis`` (each axis once)."""
    if shp.owner is not None and isinstance(shp.owner.op, Shape) and shp.owner.inputs[0] is x:
        return [(a, a) for a, s in enumerate(x.type.shape) if s is None]
    if shp.owner is None or not isinstance(shp.owner.op, MakeVector):
        return []
    pairs, used = [], set()
    for k, p in enumerate(shp.owner.inputs):
        if p.owner is not None and isinstance(p.owner.op, ShapeAt) and p.owner.inputs[0] is x:
            axis = p.owner.op.axis % x.ndim
            if x.type.shape[axis] is None and axis not in used:
                pairs.append((k, axis))
                used.add(axis)
    return pairs


def _entries_text(entries):
    """A requested shape: lengths known only at call time shown as ``?``."""
    return shape_text(entries, unknown="?")


def reshape(x, shp):
    """``x`` with a new shape, as ``np.reshape``.

    ``shp``: ints, 0-d integer Variables, a tuple or list mixing both, or an int
    vector; one entry may be -1. Static lengths stay static, and an entry that
    is one of ``x``'s own lengths cancels it, so ``x.reshape((x.shape[0], -1))``
    of a ``(?, 3, 4)`` input has the static shape ``(?, 12)``.

    >>> import symgrad as sg
    >>> x = sg.tensor(shape=(None, 3, 4))
    >>> x.reshape((x.shape[0], -1)).type
    float64[?, 12]
    """
    x = as_variable(x)
    vec = as_shape_vector(shp, "reshape", fill=True)
    out = Reshape()(x, vec)
    return _fill_resolved(x, vec, out)


def _fill_resolved(x, vec, out):
    """``out`` again with the -1 of ``vec`` replaced by the length the static shapes give it.

    ``x.reshape((x.shape[0], -1))`` of a ``(?, 3, 4)`` input is ``(?, 12)``; asking
    for ``(n, 12)`` at run time keeps that true when ``n`` is 0 (a -1 next to a 0
    length is ambiguous: NumPy refuses to guess).
    """
    if vec.owner is None or not isinstance(vec.owner.op, MakeVector):
        return out
    parts = list(vec.owner.inputs)
    fill = [k for k, p in enumerate(parts) if scalar_entry(p) == -1]
    if not fill or out.type.shape[fill[0]] is None:
        return out
    parts[fill[0]] = out.type.shape[fill[0]]
    return Reshape()(x, make_vector(parts))


def flatten(x, ndim=1):
    """``x`` with its first ``ndim - 1`` axes kept and the rest merged into one (Theano's
    ``flatten``); ``ndim=1`` gives a vector (a fresh array, like ``ndarray.flatten``).

    Static lengths stay static: ``flatten(x, 2)`` of a ``(?, 3, 4)`` input is ``(?, 12)``.

    >>> import symgrad as sg
    >>> sg.flatten(sg.tensor(shape=(None, 3, 4)), 2).type
    float64[?, 12]
    """
    x = as_variable(x)
    if isinstance(ndim, (bool, np.bool_)) or not isinstance(ndim, (int, np.integer)):
        raise TypeError(f"flatten: ndim must be an int, got {ndim!r} (at {user_trace()})")
    if not 1 <= ndim <= max(x.ndim, 1):
        raise ShapeError(f"flatten: ndim must be between 1 and {max(x.ndim, 1)} for a "
                         f"{x.ndim}-d input, got {ndim} (at {user_trace()})")
    if ndim == 1:
        return reshape(x, (-1,))
    lengths = [s if s is not None else shape_at(x, i) for i, s in enumerate(x.type.shape)]
    rest = lengths[ndim - 1:]
    merged = math.prod(s for s in rest if not isinstance(s, Variable))
    for s in rest:
        if isinstance(s, Variable):  # no -1: NumPy refuses it when other lengths are 0
            merged = s if merged == 1 else merged * s
    return reshape(x, (*lengths[:ndim - 1], merged))


# --------------------------------------------------------------------------- filled arrays

def alloc(value, shp, dtype=None, opname="alloc"):
    value = as_variable(value, dtype=dtype)
    if value.ndim != 0:
        raise ShapeError(f"{opname}: the fill value must be a scalar, got {value.type}")
    return broadcast_to(value, as_shape_vector(shp, opname))


def zeros(shp, dtype=None):
    """An array of zeros of shape ``shp``: ints, 0-d integer Variables (``x.shape[0]``),
    a tuple or list mixing both, or a shape vector."""
    return alloc(Constant(0, dtype=_dt.as_dtype(dtype)), shp, opname="zeros")


def ones(shp, dtype=None):
    """An array of ones of shape ``shp`` (sizes as :func:`zeros` takes them)."""
    return alloc(Constant(1, dtype=_dt.as_dtype(dtype)), shp, opname="ones")


def zeros_like(x, dtype=None):
    """Zeros with the (runtime) shape of ``x`` and its dtype unless given."""
    x = as_variable(x)
    return alloc(Constant(0, dtype=dtype or x.dtype), shape(x))


def ones_like(x, dtype=None):
    """Ones with the (runtime) shape of ``x`` and its dtype unless given."""
    x = as_variable(x)
    return alloc(Constant(1, dtype=dtype or x.dtype), shape(x))


# --------------------------------------------------------------------------- lowering
# The ops' lower methods above return these statements of codegen.ir.

def _shape(self, node):
    (x,), out = node.inputs, node.outputs[0]
    return [Alloc(out, [Int(x.ndim)])] + [Store(out, k, Dim(x, k)) for k in range(x.ndim)]


def _shape_at(self, node):
    (x,), out = node.inputs, node.outputs[0]
    return [Alloc(out, []), Store(out, 0, Dim(x, self.axis % x.ndim))]


def _make_vector(self, node):
    out = node.outputs[0]
    return ([Alloc(out, [Int(len(node.inputs))])]
            + [Store(out, k, Cast("int64", Elem(p))) for k, p in enumerate(node.inputs)])


def _dimshuffle(self, node):
    (x,), out = node.inputs, node.outputs[0]
    checks = [Check(Bin("!=", Dim(x, a), Int(1)), "shape",
                    f"cannot drop axis {a} of length %lld (only length 1)", [Dim(x, a)])
              for a in self.dropped]
    shapes = [Int(1) if a == "x" else Dim(x, a) for a in self.order]
    strides = [Int(0) if a == "x" else Stride(x, a) for a in self.order]
    return checks + [View(out, x, Int(0), shapes, strides)]


def _target_shape(shp, ndim):
    """An int64 shape vector read into a local array (checked by the op that uses it)."""
    t = Local("tgt", length=ndim)
    return t, [Array(t), Call("sg_read_shape", [t, Arr(shp), Int(ndim)], can_fail=False)]


def _broadcast_to(self, node):
    (x, shp), out = node.inputs, node.outputs[0]
    t, read = _target_shape(shp, out.ndim)
    return read + [Declare(out),
                   Call("sg_broadcast_view", [Arr(out), Int(out.ndim), Arr(x), Int(x.ndim), t])]


def _sum_to(self, node):
    (g, shp), out = node.inputs, node.outputs[0]
    t, read = _target_shape(shp, out.ndim)
    check = Call("sg_sum_to_check", [Arr(g), Int(g.ndim), t, Int(out.ndim)])
    total = [Alloc(out, [At(t, k) for k in range(out.ndim)]),
             Call("sg_sum_to", [Arr(out), Int(out.ndim), Arr(g), Int(g.ndim)],
                  dtypes=(out.dtype,))]
    if g.ndim != out.ndim or out.ndim == 0:
        return read + [check] + total
    # Where the lengths agree nothing is summed: the result is g itself, a view (the
    # renderer makes a result the caller gets, or one placed elsewhere, a sum anyway).
    view = View(out, g, Int(0), [At(t, k) for k in range(out.ndim)],
                [Stride(g, k) for k in range(out.ndim)])
    return read + [check, If(Fn("sg_same_lengths", [Lengths(g), t, Int(out.ndim)]), [view], total)]


def _reshape(self, node):
    # A view of a contiguous input, else a C-order copy in a block of its own, which the
    # renderer gives back when nothing reads it (in a loop's step, every step: not kept
    # until the call ends). sg_reshape_shape checks the shape and resolves a -1.
    (x, shp), out = node.inputs, node.outputs[0]
    t, read = _target_shape(shp, out.ndim)
    lengths = [At(t, k) for k in range(out.ndim)]
    strides, step = [], Int(1)
    for k in reversed(range(out.ndim)):
        strides.insert(0, step)
        step = Bin("*", step, lengths[k])
    return read + [
        Call("sg_reshape_shape", [t, Int(out.ndim), Arr(x), Int(x.ndim)]),
        If(Fn("sg_is_contiguous", [Arr(x), Int(x.ndim)]),
           [View(out, x, Int(0), lengths, strides)],
           [Alloc(out, lengths),
            Call("sg_pack_into", [Arr(out), Arr(x), Int(x.ndim), ItemSize(out.dtype)],
                 can_fail=False)])]
