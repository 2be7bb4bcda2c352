"""Basic indexing: the index description shared by every indexing op, ``Subtensor``
(``x[1:3, i, None]``) and its adjoint ``IncSubtensor`` (add into / set a region).

An index is described, once parsed, by a hashable tuple ``idx`` that becomes
the op's ``__props__``, so equal indexing is an equal op. Its entries:

* an ``int``: a constant integer index;
* ``SCALAR`` (``"?"``): an integer scalar known at run time (the next input);
* ``ARRAY`` (``"[?]"``): an integer array (the next input; advanced ops only);
* ``None``: a new axis of length 1;
* ``Ellipsis``: kept only where it covers no axis between advanced indices,
  because NumPy then still treats the advanced indices as not adjacent;
* ``(start, stop, step)``: a slice whose parts are None, an int or ``SCALAR``.

Values of the ``SCALAR`` and ``ARRAY`` entries follow ``x`` (and ``y``) as the
op's inputs, in the order they appear (slice parts included).
"""

import math

import numpy as np

from .. import dtypes as _dt
from ..errors import IndexError as _IndexError
from ..errors import ShapeError
from ..graph import NOT_DIFFERENTIABLE, Constant, Op, TensorType, user_trace
from ..codegen.ir import (Addr, Arr, Call, Cast, CopyOf, Declare, Elem, Fn, Int, ItemSize, Local,
                          Workspace)
from .elemwise import cast
from .shape import sum_to, zeros_like

__all__ = ["Subtensor", "IncSubtensor", "SCALAR", "ARRAY", "FULL"]

SCALAR = "?"
ARRAY = "[?]"
FULL = (None, None, None)  # the slice ``:``


# --------------------------------------------------------------------------- the index description

def is_slice(e):
    return isinstance(e, tuple)


def consumes_axis(e):
    """Whether an entry indexes one axis of ``x`` (None and Ellipsis do not)."""
    return e is not None and e is not Ellipsis


def entry_axes(idx):
    """For each entry, the axis of ``x`` it indexes (None for None / Ellipsis)."""
    axes, axis = [], 0
    for e in idx:
        axes.append(axis if consumes_axis(e) else None)
        axis += consumes_axis(e)
    return axes


def n_consumed(idx):
    return sum(consumes_axis(e) for e in idx)


def input_slots(idx):
    """The entries' kinds that take an input, in input order: SCALAR or ARRAY."""
    kinds = []
    for e in idx:
        parts = e if is_slice(e) else (e,)
        kinds.extend(p for p in parts if isinstance(p, str))
    return kinds


def validate_idx(idx, opname, advanced):
    """``idx`` as a tuple, checked for well-formed entries (ops may be built directly)."""
    idx = tuple(idx)
    for e in idx:
        if not _valid_entry(e, advanced):
            raise TypeError(f"{opname}: malformed index entry {e!r}")
        if is_slice(e) and e[2] == 0:
            raise ValueError(f"{opname}: slice step cannot be zero (at {user_trace()})")
    return idx


def _valid_entry(e, advanced):
    if e is None or e is Ellipsis:
        return True
    if is_slice(e):
        return len(e) == 3 and all(p is None or p == SCALAR or _is_int(p) for p in e)
    return e == SCALAR or _is_int(e) or (advanced and e == ARRAY)


def _is_int(p):
    return isinstance(p, int) and not isinstance(p, bool)


def render(idx):
    """``idx`` as NumPy-like text, e.g. ``[1:?, ::-1, None]`` (``?``: known at run time)."""
    def part(p):
        return "" if p is None else str(p)

    def entry(e):
        if is_slice(e):
            start, stop, step = map(part, e)
            return f"{start}:{stop}" + (f":{step}" if step else "")
        return "..." if e is Ellipsis else str(e)

    return "[" + ", ".join(map(entry, idx)) + "]"


def check_index_inputs(idx, inputs, opname):
    """Each index input must be an integer scalar (SCALAR) or integer array (ARRAY)."""
    kinds = input_slots(idx)
    if len(kinds) != len(inputs):
        raise TypeError(f"{opname}{render(idx)} takes {len(kinds)} index inputs, got {len(inputs)}")
    for kind, v in zip(kinds, inputs):
        if not _dt.is_int(v.dtype) or (kind == SCALAR and v.ndim != 0):
            want = "an integer scalar" if kind == SCALAR else "an integer array"
            raise TypeError(f"{opname}: an index must be {want}, got {v.type}")


def check_rank(idx, x, opname):
    n = n_consumed(idx)
    if n > x.ndim:
        raise _IndexError(f"{opname}: too many indices: {n} for a {x.ndim}-d input {x.type} "
                          f"(at {user_trace()})")
    if Ellipsis in idx and n != x.ndim:
        raise _IndexError(f"{opname}: the index {render(idx)} (whose '...' covers no axis) "
                          f"needs a {n}-d input, got {x.type} (at {user_trace()})")


def out_of_range(opname, value, axis, n, trace, build=False):
    """The IndexError for ``value`` outside ``[-n, n)``, naming the op and the user's line."""
    what = f"index {value} is out of range for axis {axis} with size {n}"
    if build:
        return _IndexError(f"{opname}: {what} (at {trace})")
    return _IndexError(f"{opname} at {trace}: {what}")


def split_inputs(idx, inputs):
    """Per entry of ``idx``, the tuple of index inputs it takes (a slice up to three)."""
    it = iter(inputs)
    return [tuple(next(it) for p in (e if is_slice(e) else (e,)) if isinstance(p, str))
            for e in idx]


def check_static_ranges(idx, x, index_inputs, opname):
    """Constant indices against static lengths: an error at the user's line, not at run time."""
    per_entry = split_inputs(idx, index_inputs)
    for e, axis, ins in zip(idx, entry_axes(idx), per_entry):
        if axis is None or is_slice(e) or x.type.shape[axis] is None:
            continue
        value = ins[0] if ins else e
        value = value.data if isinstance(value, Constant) else value
        if isinstance(value, (int, np.ndarray)):
            bad = _first_bad(value, x.type.shape[axis])
            if bad is not None:
                raise out_of_range(opname, bad, axis, x.type.shape[axis], user_trace(), build=True)


def _first_bad(values, n):
    """The first index in ``values`` outside ``[-n, n)``, or None."""
    v = np.asarray(values)
    if v.size == 0:
        return None
    bad = (v < -n) | (v >= n)
    return int(v[bad].flat[0]) if bad.any() else None


def slice_length(e, n):
    """The static length a slice gives on an axis of static length ``n`` (or None)."""
    if n is None or SCALAR in e:
        return None
    return len(range(n)[slice(*e)])


def basic_shape(idx, xshape):
    """The static shape of ``x[idx]`` for an index without arrays."""
    out = []
    for e, axis in zip(idx, entry_axes(idx)):
        if e is None:
            out.append(1)
        elif is_slice(e):
            out.append(slice_length(e, xshape[axis]))
    return tuple(out) + tuple(xshape[n_consumed(idx):])


def numpy_key(op, node, xshape, index_values):
    """The NumPy index tuple for run-time values, with integer indices range-checked.

    NumPy's own IndexError would name neither the op nor the user's line.
    """
    key = []
    for e, axis, vals in zip(op.idx, entry_axes(op.idx), split_inputs(op.idx, index_values)):
        if is_slice(e):
            vals = iter(vals)
            key.append(slice(*[int(next(vals)) if p == SCALAR else p for p in e]))
            if key[-1].step == 0:
                raise ValueError(f"{op.name} at {node.trace}: slice step cannot be zero")
            continue
        if e == SCALAR:
            value = int(vals[0])
        elif e == ARRAY:
            value = vals[0]
        else:
            value = e  # a constant int, None or Ellipsis
        if axis is not None:
            bad = _first_bad(value, xshape[axis])
            if bad is not None:
                raise out_of_range(op.name, bad, axis, xshape[axis], node.trace)
        key.append(value)
    return tuple(key)


def check_assignable(y, region, opname):
    """``y`` must broadcast to the indexed region (static check, build time)."""
    if y.ndim > len(region):
        raise ShapeError(f"{opname}: cannot put a {y.ndim}-d value {y.type} into a "
                         f"{len(region)}-d region of shape {region}")
    for s, r in zip(y.type.shape[::-1], region[::-1]):
        if s is not None and r is not None and s not in (1, r):
            raise ShapeError(f"{opname}: a value of shape {y.type.shape} does not fit a region of "
                             f"shape {region}")


def check_value_dtype(x, y, opname):
    if not np.can_cast(y.dtype, x.dtype, "same_kind"):
        raise TypeError(f"{opname}: cannot put {y.dtype} values into a {x.dtype} array; "
                        f"cast them first with .astype('{x.dtype}')")


def value_grad(g_region, y):
    """The cotangent of a value put into a region: the region's cotangent summed to ``y``."""
    if not _dt.is_float(y.dtype):
        return NOT_DIFFERENTIABLE
    gy = sum_to(g_region, y)
    return gy if gy.dtype == y.dtype else cast(gy, y.dtype)


# --------------------------------------------------------------------------- the ops

class Subtensor(Op):
    """``x[idx]`` for basic indices: ints, slices (any step), None.

    Integer indices are range-checked (a negative one counts from the end, as
    in NumPy); the result is a fresh array, never a view of ``x``.

    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> y = x[1:]
    >>> y.owner.op
    subtensor[1:]
    >>> sg.evaluate(y, {x: np.array([1.0, 2.0, 3.0])})
    array([2., 3.])
    """

    __props__ = ("idx",)
    name = "subtensor"
    flops_per_element = 0  # moves data: no arithmetic

    def __init__(self, idx):
        self.idx = validate_idx(idx, self.name, advanced=False)

    def __str__(self):
        return f"{self.name}{render(self.idx)}"

    __repr__ = __str__

    def infer(self, x, *index_inputs):
        check_index_inputs(self.idx, index_inputs, self.name)
        check_rank(self.idx, x, self.name)
        check_static_ranges(self.idx, x, index_inputs, self.name)
        return [TensorType(x.dtype, basic_shape(self.idx, x.type.shape))]

    def perform(self, node, x, *index_values):
        key = numpy_key(self, node, x.shape, index_values)
        return [np.array(x[key], dtype=x.dtype)]  # np.array copies: never a view of x

    def grad(self, node, inputs, outputs, gouts):
        x, *index_inputs = inputs
        gx = IncSubtensor(self.idx)(zeros_like(x), gouts[0], *index_inputs)
        return [gx] + [NOT_DIFFERENTIABLE] * len(index_inputs)

    def lower(self, node):
        # A view (offset and strides into x): nothing ever writes into x's memory.
        (x, *index_inputs), out = node.inputs, node.outputs[0]
        ix, body = resolve(self.idx, x, index_inputs)
        return body + [Declare(out), Call("sg_index_view", [Arr(out), Addr(ix), Arr(x),
                                                            ItemSize(x.dtype)], can_fail=False)]


class IncSubtensor(Op):
    """A copy of ``x`` with ``y`` added into (or, ``set_instead_of_inc``, written to) ``x[idx]``.

    The gradient of :class:`Subtensor`. ``y`` broadcasts to the region's
    shape; basic indices never repeat an element, so add and set are exact.
    Build it with ``sg.inc_subtensor(x[idx], y)`` / ``sg.set_subtensor``.
    """

    __props__ = ("idx", "set_instead_of_inc")
    name = "inc_subtensor"

    def flops(self, node, in_shapes, out_shapes):
        """One add per element of the values put in (``sg.explain``'s rules)."""
        return math.prod(in_shapes[1])

    def __init__(self, idx, set_instead_of_inc=False):
        self.idx = validate_idx(idx, self.name, advanced=False)
        self.set_instead_of_inc = bool(set_instead_of_inc)

    def __str__(self):
        return f"{'set' if self.set_instead_of_inc else 'inc'}_subtensor{render(self.idx)}"

    __repr__ = __str__

    def infer(self, x, y, *index_inputs):
        check_index_inputs(self.idx, index_inputs, self.name)
        check_rank(self.idx, x, self.name)
        check_static_ranges(self.idx, x, index_inputs, self.name)
        check_value_dtype(x, y, self.name)
        check_assignable(y, basic_shape(self.idx, x.type.shape), self.name)
        return [x.type]

    def perform(self, node, x, y, *index_values):
        key = numpy_key(self, node, x.shape, index_values)
        out = np.array(x, copy=True)
        try:
            if self.set_instead_of_inc:
                out[key] = y
            else:
                out[key] += y
        except ValueError:
            raise ShapeError(f"{self.name} at {node.trace}: a value of shape {y.shape} does not "
                             f"fit the region of shape {x[key].shape}") from None
        return [out]

    def grad(self, node, inputs, outputs, gouts):
        x, y, *index_inputs = inputs
        (g,) = gouts
        # ``set`` overwrites the region, so x's old values there have no effect.
        gx = (IncSubtensor(self.idx, True)(g, Constant(0, dtype=g.dtype), *index_inputs)
              if self.set_instead_of_inc else g)
        gy = value_grad(Subtensor(self.idx)(g, *index_inputs), y)
        return [gx, gy] + [NOT_DIFFERENTIABLE] * len(index_inputs)

    def lower(self, node):
        (x, y, *index_inputs), out = node.inputs, node.outputs[0]
        ix, body = resolve(self.idx, x, index_inputs)
        return body + fresh_copy(x, out) + [
            update("sg_index_put", ix, out, y, self.set_instead_of_inc)]


# --------------------------------------------------------------------------- lowering
# Shared by the indexing ops (here and in .advanced); statements of codegen.ir.
# The index is resolved at run time, entry by entry in its order, into an
# "index" local (sg_index of the support library's sg_index.h): negative
# indices wrap, out-of-range ones fail naming the op and the user's line, the
# index arrays' dims are placed as NumPy places them. The op then applies it:
# a view, a gather, or an update of a fresh copy.

def _bound(p):
    # Clamping keeps huge Python ints in int64; a slice clamps them anyway.
    return Int(max(min(p, 2 ** 63 - 1), -2 ** 63 + 1))


def resolve(idx, x, index_inputs):
    """The statements resolving ``idx`` against ``x``, and the "index" local they fill."""
    ix = Local("ix", "index")
    body = [Declare(ix), Call("sg_index_begin", [Addr(ix), Arr(x), Int(x.ndim)], can_fail=False)]
    for e, ins in zip(idx, split_inputs(idx, index_inputs)):
        vals = iter(ins)

        def part(p):
            return Cast("int64", Elem(next(vals))) if p == SCALAR else _bound(p)

        if e is None or e is Ellipsis:
            body.append(Call("sg_index_new" if e is None else "sg_index_ellipsis", [Addr(ix)],
                             can_fail=False))
        elif is_slice(e):
            given = (e[0] is not None) | (e[1] is not None) << 1
            parts = [part(p) if p is not None else Int(d) for p, d in zip(e, (0, 0, 1))]
            body.append(Call("sg_index_slice", [Addr(ix), Int(given), *parts]))
        elif e == ARRAY:
            v = next(vals)
            body.append(Call("sg_index_array", [Addr(ix), Arr(v), Int(v.ndim), ItemSize(v.dtype)]))
        else:
            body.append(Call("sg_index_int", [Addr(ix), part(e)]))
    body.append(Call("sg_index_done", [Addr(ix)]))
    return ix, body


def index_shape(ix, ndim):
    """The lengths of the ``ndim`` dims a resolved index selects."""
    return [Fn("sg_index_dim", [Addr(ix), Int(k)]) for k in range(ndim)]


def fresh_copy(x, out):
    """``out`` made a copy of ``x`` to update (inputs stay read-only: an update works on a
    copy) -- or, when nothing reads ``x`` afterwards, ``x``'s own memory (codegen's
    choice: ``CopyOf``)."""
    return [CopyOf(out, x)]


def update(fn, ix, out, y, set_instead_of_inc):
    """Put ``y`` into the region ``ix`` selects of ``out`` (a fresh copy) with ``fn``
    (sg_index_put or sg_index_scatter) for ``out``'s dtype and ``y``'s."""
    return Call(fn, [Workspace(), Addr(ix), Arr(out), Arr(y), Int(y.ndim),
                     Int(int(set_instead_of_inc))], dtypes=(out.dtype, y.dtype))
