"""Joining and splitting arrays: :class:`Concatenate`, its adjoint :class:`Split`, and ``stack``.

Lengths along the joined axis may be known only at call time: the gradient of
a concatenation splits the cotangent by the runtime lengths of the inputs,
passed to ``Split`` as an int64 vector.
"""

import numpy as np

from .. import dtypes as _dt
from ..errors import ShapeError
from ..graph import NOT_DIFFERENTIABLE, Op, TensorType, Variable, as_variable, user_trace
from ..codegen.ir import (Alloc, Arr, Array, Arrs, At, Bin, Call, Dim, Int, ItemSize, Local,
                          Stride, View)
from .elemwise import cast
from .shape import as_shape_vector, expand_dims, normalize_axis, shape_at, shape_entries, zeros_like

INT64_MAX = 2**63 - 1

__all__ = ["concatenate", "stack"]


def _dims(shape):
    inner = ", ".join("?" if s is None else str(s) for s in shape)
    return f"({inner}{',' * (len(shape) == 1)})"


def _merge_lengths(xs, axis, opname):
    """The static shape shared by ``xs`` off ``axis`` (ShapeError when provably different)."""
    merged = []
    for d in range(xs[0].ndim):
        known = {x.type.shape[d] for x in xs if x.type.shape[d] is not None}
        if d != axis and len(known) > 1:
            shown = ", ".join(_dims(x.type.shape) for x in xs)
            raise ShapeError(f"{opname}: all inputs must have the same length on every axis but "
                             f"{axis}; axis {d} differs: {shown}")
        merged.append(known.pop() if len(known) == 1 else None)
    return merged


# --------------------------------------------------------------------------- concatenate

class Concatenate(Op):
    """``np.concatenate(xs, axis)`` for one or more inputs of the same rank (at least 1-d).

    The output dtype is NumPy's promotion of the inputs' dtypes. The gradient
    splits the output cotangent by the inputs' lengths along ``axis``.
    """

    __props__ = ("axis",)
    name = "concatenate"
    flops_per_element = 0  # moves data: no arithmetic

    def __init__(self, axis=0):
        self.axis = int(axis)

    def infer(self, *xs):
        if not xs:
            raise ShapeError("needs at least one input")
        nd = xs[0].ndim
        if any(x.ndim != nd for x in xs) or nd == 0:
            shown = ", ".join(str(x.type) for x in xs)
            raise ShapeError(f"inputs must all have the same number of dimensions (at least 1), "
                             f"got {shown}")
        axis = normalize_axis(self.axis, nd, self.name)
        dtype = _dt.result_dtype(lambda *a: np.concatenate(a), [x.dtype for x in xs],
                                 opname=self.name)
        shape = _merge_lengths(xs, axis, self.name)
        lengths = [x.type.shape[axis] for x in xs]
        shape[axis] = None if None in lengths else sum(lengths)
        if shape[axis] is not None and shape[axis] > INT64_MAX:
            raise ShapeError(_too_long(tuple(lengths), axis))
        return [TensorType(dtype, shape)]

    def perform(self, node, *xs):
        axis = self.axis % xs[0].ndim
        for d in range(xs[0].ndim):
            if d != axis and len({x.shape[d] for x in xs}) > 1:
                shown = ", ".join(str(x.shape) for x in xs)
                raise ShapeError(f"concatenate at {node.trace}: the inputs' lengths differ on "
                                 f"axis {d} (only axis {axis} may differ): shapes {shown}")
        lengths = [x.shape[axis] for x in xs]
        if sum(lengths) > INT64_MAX:  # NumPy's own sum would wrap around
            raise ShapeError(f"{node.op} at {node.trace}: {_too_long(tuple(lengths), axis)}")
        return [np.asarray(np.concatenate(xs, axis=axis), dtype=node.outputs[0].dtype)]

    def grad(self, node, inputs, outputs, gouts):
        (g,) = gouts
        axis = self.axis % g.ndim
        pieces = split(g, [_length(x, axis) for x in inputs], axis)
        return [cast(p, x.dtype) if _dt.is_float(x.dtype) else NOT_DIFFERENTIABLE
                for x, p in zip(inputs, pieces)]

    def lower(self, node):
        xs, out = node.inputs, node.outputs[0]
        nd, axis, n = out.ndim, self.axis % out.ndim, len(node.inputs)
        at = Local("at", length=n + 1)  # where each input starts along the axis; at[n]: the total
        body = [Array(at), Call("sg_concat_starts", [at, Int(n), Arrs(xs), Int(nd), Int(axis)]),
                Alloc(out, [At(at, n) if d == axis else Dim(xs[0], d) for d in range(nd)])]
        for k, x in enumerate(xs):
            if x.dtype == out.dtype:
                body.append(Call("sg_copy_block", [Arr(out), Int(nd), Int(axis), At(at, k), Arr(x),
                                                   ItemSize(out.dtype)], can_fail=False))
            else:  # converted into its block
                body.append(Call("sg_concat_cast", [Arr(out), Int(nd), Int(axis), At(at, k),
                                                    Arr(x)], dtypes=(out.dtype, x.dtype),
                                 can_fail=False))
        return body


def _length(x, axis):
    """The length of ``x`` along ``axis``: an int when static, else a symbolic scalar."""
    return x.type.shape[axis] if x.type.shape[axis] is not None else shape_at(x, axis)


# --------------------------------------------------------------------------- split

class Split(Op):
    """Cut ``x`` along ``axis`` into pieces of the lengths in ``lengths`` (int64 vector).

    One output per entry of ``lengths``, whose length must be static; the
    entries themselves may be known only at call time and must add up to the
    length of ``x`` along ``axis``. Each output is a fresh array. The gradient
    concatenates the pieces' cotangents, zeros standing in for pieces nothing
    flows back from.
    """

    __props__ = ("axis",)
    name = "split"
    flops_per_element = 0  # moves data: no arithmetic

    def __init__(self, axis=0):
        self.axis = int(axis)

    def infer(self, x, lengths):
        if x.ndim == 0:
            raise ShapeError(f"cannot split a 0-d value ({x.type})")
        axis = normalize_axis(self.axis, x.ndim, self.name)
        if lengths.dtype != "int64" or lengths.ndim != 1 or lengths.type.shape[0] is None:
            raise TypeError(f"the lengths must be an int64 vector of static length, got "
                            f"{lengths.type}")
        entries = shape_entries(lengths)
        if any(e is not None and e < 0 for e in entries):
            raise ShapeError(f"negative length in {entries}")
        xs = x.type.shape
        if None not in entries and xs[axis] is not None and sum(entries) != xs[axis]:
            raise ShapeError(f"lengths {entries} add up to {sum(entries)}, but axis {axis} of "
                             f"{x.type} has length {xs[axis]}")
        return [TensorType(x.dtype, xs[:axis] + (e,) + xs[axis + 1:]) for e in entries]

    def perform(self, node, x, lengths):
        axis = self.axis % x.ndim
        if np.any(lengths < 0) or int(lengths.sum()) != x.shape[axis]:
            raise ShapeError(f"split at {node.trace}: lengths {lengths.tolist()} do not cut axis "
                             f"{axis} of an array of shape {x.shape} (they must be >= 0 and add "
                             f"up to {x.shape[axis]})")
        if lengths.size == 0:
            return []
        pieces = np.split(x, np.cumsum(lengths)[:-1], axis=axis)
        return [np.array(p, copy=True) for p in pieces]  # np.split gives views

    def lower(self, node):
        # Each piece is a view (an offset along the axis): nothing writes into x.
        x, lengths = node.inputs
        axis, n = self.axis % x.ndim, len(node.outputs)
        cuts, at = Local("cuts", length=n), Local("at", length=n)
        body = [Array(cuts), Array(at),
                Call("sg_split_at", [cuts, at, Int(n), Arr(lengths), Arr(x), Int(x.ndim),
                                     Int(axis)])]
        for k, piece in enumerate(node.outputs):
            shape = [At(cuts, k) if d == axis else Dim(x, d) for d in range(x.ndim)]
            strides = [Stride(x, d) for d in range(x.ndim)]
            body.append(View(piece, x, Bin("*", At(at, k), Stride(x, axis)), shape, strides))
        return body

    def grad(self, node, inputs, outputs, gouts):
        x, _ = inputs
        if not _dt.is_float(x.dtype):
            return [NOT_DIFFERENTIABLE, NOT_DIFFERENTIABLE]
        parts = [g if g is not None else zeros_like(o) for g, o in zip(gouts, outputs)]
        return [cast(concatenate(parts, self.axis % x.ndim), x.dtype), NOT_DIFFERENTIABLE]


# --------------------------------------------------------------------------- functions

def _as_list(xs, opname):
    if isinstance(xs, Variable) or not isinstance(xs, (list, tuple)):
        raise _at_line(TypeError(f"{opname} takes a list or tuple of arrays, got "
                                 f"{type(xs).__name__}"))
    if not xs:
        raise _at_line(ShapeError(f"{opname} needs at least one array"))
    return [as_variable(x) for x in xs]


def _check_axis_type(axis, opname):
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise _at_line(TypeError(f"{opname}: axis must be an int, got {axis!r}"))


def _at_line(err):
    return type(err)(f"{err} (at {user_trace()})")


def concatenate(xs, axis=0):
    """Join arrays along an existing axis, as ``np.concatenate``.

    Lengths along ``axis`` may differ (and be known only at call time); every
    other axis must agree.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> a, b = sg.vector("a"), sg.vector("b")
    >>> sg.evaluate(sg.concatenate([a, b]), {a: np.array([1.0]), b: np.array([2.0, 3.0])})
    array([1., 2., 3.])
    """
    xs = _as_list(xs, "concatenate")
    _check_axis_type(axis, "concatenate")
    nd = xs[0].ndim
    if -nd <= axis < nd:
        axis = int(axis) % nd  # one spelling per op, so equal ops compare equal
    return Concatenate(axis)(*xs)


def stack(xs, axis=0):
    """Join arrays of the same shape along a new axis, as ``np.stack``.

    Examples
    --------
    >>> import symgrad as sg
    >>> sg.stack([sg.scalar(), sg.scalar()]).type
    float64[2]
    """
    xs = _as_list(xs, "stack")
    try:
        axis = normalize_axis(axis, xs[0].ndim + 1, "stack")
    except (TypeError, ShapeError) as e:
        raise _at_line(e) from None
    if any(x.ndim != xs[0].ndim for x in xs):
        shown = ", ".join(str(x.type) for x in xs)
        raise _at_line(ShapeError(f"stack: all inputs must have the same shape, got {shown}"))
    return Concatenate(axis)(*[expand_dims(x, axis) for x in xs])


def split(x, lengths, axis=0):
    """Pieces of ``x`` along ``axis`` with the given lengths (ints or integer scalars).

    The lengths must add up to the length of ``x`` along ``axis``; their
    number must be known when the graph is built.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> a, b = split(x, [1, 2])
    >>> sg.evaluate(b, {x: np.array([1.0, 2.0, 3.0])})
    array([2., 3.])
    """
    x = as_variable(x)
    _check_axis_type(axis, "split")
    lengths = as_shape_vector(list(lengths) if isinstance(lengths, tuple) else lengths, "split")
    out = Split(axis % x.ndim if -x.ndim <= axis < x.ndim else axis)(x, lengths)
    return out if isinstance(out, list) else [out]


def _too_long(lengths, axis):
    """The message for lengths (a tuple's text) that add up past int64 (sg_concat_starts's)."""
    return f"the lengths {lengths} on axis {axis} add up to more than 2**63 - 1: no array is that long"
