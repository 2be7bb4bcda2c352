"""Indexing with NumPy's rules, the Theano-style region updates, and ``arange``.

``x[idx]`` parses the index once into the hashable description of
:mod:`.subtensor` and builds a :class:`~.subtensor.Subtensor` (ints, slices,
None, Ellipsis) or, when an integer array is present, an
:class:`~.advanced.AdvancedSubtensor` (a gather). Their gradients are
``IncSubtensor`` / ``AdvancedIncSubtensor`` (a scatter-add, so repeated
indices accumulate), also reachable as :func:`inc_subtensor` and
:func:`set_subtensor`.

Boolean masks are refused: the result's length would depend on the mask's
values, which a static graph cannot type. Use ``sg.where``.
"""

import math

import numpy as np

from .. import dtypes as _dt
from ..errors import IndexError as _IndexError
from ..errors import ShapeError
from ..graph import Constant, Op, TensorType, Variable, as_variable, user_trace
from .advanced import AdvancedIncSubtensor, AdvancedSubtensor
from .shape import Shape, shape_at
from .subtensor import (ARRAY, FULL, SCALAR, IncSubtensor, Subtensor, consumes_axis,
                        value_grad)

__all__ = ["getitem", "inc_subtensor", "set_subtensor", "arange"]


def _error(cls, msg):
    return cls(f"indexing: {msg} (at {user_trace()})")


# --------------------------------------------------------------------------- parsing an index

def _mask_error(what):
    return _error(TypeError, (
        f"boolean mask indices are not supported ({what}): the result's length would depend "
        "on how many entries are true, which a static graph cannot know. Keep the shape with "
        "sg.where(mask, x, 0) (and divide a sum by mask.astype(x.dtype).sum() for a mean), "
        "or index with integer positions"))


def _float_error(what):
    return _error(TypeError, f"indices must be integers, got {what}; convert them with "
                             f".astype('int64') (or sg.cast(i, 'int64'))")


def _int_scalar(v, what):
    """A slice part or scalar index: an int constant, or (SCALAR, the Variable)."""
    if v is None:
        return None, ()
    if isinstance(v, (bool, np.bool_)):
        raise _mask_error(f"{what} {v!r}")
    if isinstance(v, (int, np.integer)):
        return int(v), ()
    if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iu":
        return int(v), ()
    if isinstance(v, Variable) and v.ndim == 0 and _dt.is_int(v.dtype):
        return (int(v.data), ()) if isinstance(v, Constant) else (SCALAR, (v,))
    raise _error(TypeError, f"{what} must be an int or an integer scalar, got {v!r}")


def _parse_slice(s):
    parts, inputs = [], []
    for v, what in ((s.start, "a slice start"), (s.stop, "a slice stop"), (s.step, "a slice step")):
        p, ins = _int_scalar(v, what)
        parts.append(p)
        inputs.extend(ins)
    if parts[2] == 0:
        raise _error(ValueError, "slice step cannot be zero")
    if parts[2] == 1:
        parts[2] = None  # x[a:b:1] is x[a:b]: one spelling, so equal slices make equal ops
    return tuple(parts), inputs


def _parse_variable(v):
    if _dt.is_bool(v.dtype):
        raise _mask_error(f"a bool {v.type} variable")
    if not _dt.is_int(v.dtype):
        raise _float_error(f"a {v.type} variable")
    if v.ndim == 0:
        return _int_scalar(v, "an index")
    return ARRAY, (v,)


def _contains_variable(item):
    if isinstance(item, Variable):
        return True
    return isinstance(item, (list, tuple)) and any(_contains_variable(e) for e in item)


def _parse_array(item):
    """A list or NumPy array of integer positions: a constant index array."""
    if _contains_variable(item):
        raise _error(TypeError, "a list of symbolic indices cannot become one index array; "
                                "build it with sg.stack([...])")
    arr = np.asarray(item)
    if arr.size == 0 and not isinstance(item, np.ndarray):
        arr = arr.astype(np.int64)  # NumPy reads an empty list as no positions, not a float
    if arr.dtype == np.bool_:
        raise _mask_error(f"a bool array of shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise _float_error(f"an array of {arr.dtype}")
    if arr.ndim == 0:
        return int(arr), ()
    return ARRAY, (Constant(arr.astype(np.int64)),)


def _parse_item(item):
    """One item of a user's index -> (entry, the index inputs it takes)."""
    if item is None or item is Ellipsis:
        return item, ()
    if isinstance(item, slice):
        return _parse_slice(item)
    if isinstance(item, Variable):
        return _parse_variable(item)
    if isinstance(item, (bool, np.bool_)):
        raise _mask_error(f"the Python bool {item!r}")
    if isinstance(item, (int, np.integer)):
        return int(item), ()
    if isinstance(item, (list, tuple, np.ndarray)):
        return _parse_array(item)
    if isinstance(item, (float, np.floating)):
        raise _float_error(f"the float {item!r}")
    raise _error(TypeError, f"unsupported index {item!r} of type {type(item).__name__}")


def _expand(entries, ndim):
    """Ellipsis replaced by full slices; trailing full slices dropped (x[1, :] is x[1])."""
    if sum(e is Ellipsis for e in entries) > 1:
        raise _error(_IndexError, "an index can only have a single ellipsis ('...')")
    used = sum(consumes_axis(e) for e in entries)
    if used > ndim:
        raise _error(_IndexError, f"too many indices for a {ndim}-d input: {used} were indexed")
    advanced = ARRAY in entries
    out = []
    for e in entries:
        if e is not Ellipsis:
            out.append(e)
        elif ndim > used:
            out.extend([FULL] * (ndim - used))
        elif advanced:
            out.append(e)  # covers no axis, yet still separates advanced indices (NumPy)
    if out and out[-1] is Ellipsis:
        out.pop()
    # A kept Ellipsis must keep covering no axis, so the slices after it stay.
    while out and out[-1] == FULL and Ellipsis not in out:
        out.pop()
    return tuple(out)


def _shape_entry(x, idx):
    """``sg.shape(v)[i]`` with a Python int i is ``shape_at(v, i)`` (static shapes see it)."""
    if x.owner is None or not isinstance(x.owner.op, Shape):
        return None
    if isinstance(idx, (bool, np.bool_)) or not isinstance(idx, (int, np.integer)):
        return None
    v = x.owner.inputs[0]
    if not -v.ndim <= idx < v.ndim:
        raise _IndexError(f"subtensor: index {int(idx)} is out of range for axis 0 with size "
                          f"{v.ndim} (the shape of a {v.ndim}-d value) (at {user_trace()})")
    return shape_at(v, int(idx) % v.ndim)


def getitem(x, idx):
    """``x[idx]`` with NumPy's rules (what ``Variable.__getitem__`` calls).

    Basic items: ints (negative count from the end), slices with any step
    whose bounds are ints or integer scalar Variables, ``None``, ``...``.
    Advanced items: integer arrays (Variables of any rank, lists, NumPy
    arrays); they broadcast together and their dims replace them in place
    when adjacent, else come first. An index out of range raises
    ``sg.IndexError`` (at build time when the length is static). Boolean
    masks and floats raise ``TypeError``.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> M = sg.matrix("M")
    >>> rows, cols = sg.vector("r", "int64"), sg.vector("c", "int64")
    >>> picked = M[rows, cols]
    >>> sg.evaluate(picked, {M: np.eye(3), rows: np.array([0, 1]), cols: np.array([0, 0])})
    array([1., 0.])
    >>> sg.evaluate(M[::-1, 0], {M: np.arange(4.0).reshape(2, 2)})
    array([2., 0.])
    """
    x = as_variable(x)
    found = _shape_entry(x, idx)
    if found is not None:
        return found
    entries, inputs = [], []
    for item in idx if isinstance(idx, tuple) else (idx,):
        entry, ins = _parse_item(item)
        entries.append(entry)
        inputs.extend(ins)
    entries = _expand(entries, x.ndim)
    op = AdvancedSubtensor(entries) if ARRAY in entries else Subtensor(entries)
    return op(x, *inputs)


# --------------------------------------------------------------------------- region updates

def _put(x_sub, y, set_instead_of_inc, fname):
    node = x_sub.owner if isinstance(x_sub, Variable) else None
    if node is None or not isinstance(node.op, (Subtensor, AdvancedSubtensor)):
        raise TypeError(f"{fname} expects the result of indexing a variable, as in "
                        f"sg.{fname}(x[1:3], y); got {x_sub!r}")
    x, *index_inputs = node.inputs
    if _dt.is_python_scalar(y):
        y = Constant(y, dtype=_dt.weak_scalar_dtype(y, [x.dtype]))
    cls = IncSubtensor if isinstance(node.op, Subtensor) else AdvancedIncSubtensor
    return cls(node.op.idx, set_instead_of_inc)(x, as_variable(y), *index_inputs)


def inc_subtensor(x_sub, y):
    """A copy of ``x`` with ``y`` added into the region ``x_sub = x[idx]`` (Theano's API).

    With integer-array indices a repeated position receives every value
    added to it (``np.add.at``). ``y`` broadcasts to the region's shape.

    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> sg.evaluate(sg.inc_subtensor(x[[0, 0, 2]], 1.0), {x: np.zeros(3)})
    array([2., 0., 1.])
    """
    return _put(x_sub, y, False, "inc_subtensor")


def set_subtensor(x_sub, y):
    """A copy of ``x`` with the region ``x_sub = x[idx]`` replaced by ``y`` (Theano's API).

    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> sg.evaluate(sg.set_subtensor(x[1:], 5.0), {x: np.zeros(3)})
    array([0., 5., 5.])
    """
    return _put(x_sub, y, True, "set_subtensor")


# --------------------------------------------------------------------------- arange

def _static_length(start, stop, step):
    """NumPy's length: ceil((stop - start) / step) computed in floats, at least 0."""
    if not all(isinstance(v, Constant) for v in (start, stop, step)):
        return None
    a, b, c = (v.data.item() for v in (start, stop, step))
    try:
        return max(0, math.ceil((b - a) / c))
    except (OverflowError, ValueError):
        raise ValueError(f"arange({a}, {b}, {c}) has no finite length (at {user_trace()})") from None


class Arange(Op):
    """``np.arange(start, stop, step, dtype)`` from three numeric scalars.

    Gradient (float output): ``out[i] = start + i * step``, so d/dstart sums
    the cotangent and d/dstep weighs it by ``i``; ``stop`` only sets the length
    (no gradient). Integer inputs are not differentiable.
    """

    __props__ = ("dtype",)
    name = "arange"

    def __init__(self, dtype):
        self.dtype = _dt.as_dtype(dtype, "arange")

    def infer(self, start, stop, step):
        for v, what in ((start, "start"), (stop, "stop"), (step, "step")):
            if v.ndim != 0 or not (_dt.is_int(v.dtype) or _dt.is_float(v.dtype)):
                raise TypeError(f"{what} must be an int or float scalar, got {v.type}")
        if isinstance(step, Constant) and step.data == 0:
            raise ValueError(f"arange: step must not be zero (at {user_trace()})")
        return [TensorType(self.dtype, (_static_length(start, stop, step),))]

    def perform(self, node, start, stop, step):
        if step == 0:
            raise ValueError(f"arange at {node.trace}: step must not be zero")
        a, b, c = start.item(), stop.item(), step.item()
        if all(isinstance(v, int) for v in (a, b, c)) and -((a - b) // c) > 2**63 - 1:
            # NumPy wraps such a length to an empty result; mode "c" refuses it too.
            raise ShapeError(f"{node.op} at {node.trace}: arange: the length does not fit in "
                             f"64 bits")
        return [np.arange(a, b, c, dtype=self.dtype)]

    def grad(self, node, inputs, outputs, gouts):
        start, _, step = inputs
        (g,), (out,) = gouts, outputs
        positions = Arange(out.dtype)(Constant(0), shape_at(out, 0), Constant(1))
        return [value_grad(g, start), None, value_grad(g * positions, step)]

    def c_code(self, ctx, node):
        start, stop, step = (f"{ctx.ptr(v)}[0]" for v in node.inputs)
        exact = all(_dt.is_int(v.dtype) for v in node.inputs)
        n = (_c_int_length if exact else _c_float_length)(ctx, node, start, stop, step)
        out = node.outputs[0]
        if self.dtype == "bool":
            with ctx.w.block(f"if ({n} > 2)"):
                ctx.fail(node, "value", "arange() is only supported for booleans when the result "
                                        "has at most length 2")
        ctx.alloc(node, out, [n])
        _c_arange_fill(ctx, out, start, step, exact, n)


def _arange_arg(v, what):
    if isinstance(v, Variable):
        return v
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)):
        raise TypeError(f"arange: {what} must be a number or a numeric scalar Variable, "
                        f"got {v!r} (at {user_trace()})")
    if not _dt.is_python_scalar(v):
        return Constant(v)  # a NumPy scalar keeps its dtype
    # Python numbers are int64 / float64 as in np.arange, whatever floatX says.
    return Constant(v, dtype="int64" if isinstance(v, int) else "float64")


def arange(start, stop=None, step=1, dtype=None):
    """Evenly spaced values in ``[start, stop)``, as ``np.arange``.

    Parameters
    ----------
    start, stop, step : number or numeric scalar Variable
        With one argument it is ``stop`` and ``start`` is 0. The length is
        static when all three are constants.
    dtype : str, optional
        Default as NumPy: int64 when every argument is an integer, else float64.

    Examples
    --------
    >>> import symgrad as sg
    >>> r = sg.arange(5)
    >>> r.type
    int64[5]
    >>> sg.evaluate(sg.arange(1.0, 2.0, 0.25))
    array([1.  , 1.25, 1.5 , 1.75])
    """
    if stop is None:
        start, stop = 0, start
    args = [_arange_arg(v, w) for v, w in ((start, "start"), (stop, "stop"), (step, "step"))]
    if dtype is None:
        dtype = "float64" if any(_dt.is_float(a.dtype) for a in args) else "int64"
    return Arange(dtype)(*args)


def _c_int_length(ctx, node, start, stop, step):
    """The length for integer arguments, in exact integer arithmetic."""
    a, b, c, n = ctx.tmp("start"), ctx.tmp("stop"), ctx.tmp("step"), ctx.tmp("n")
    ctx.w(f"int64_t {a} = (int64_t){start}, {b} = (int64_t){stop}, {c} = (int64_t){step}, {n};")
    with ctx.w.block(f"if ({c} == 0)"):
        ctx.fail(node, "value", "step must not be zero")
    # Unsigned differences, divisions and the + 1: no overflow for any int64 arguments
    # (a length past INT64_MAX converts to a negative number, refused below).
    ctx.w(f"if ({c} > 0) {n} = {b} > {a} ? "
          f"(int64_t)(((uint64_t){b} - (uint64_t){a} - 1) / (uint64_t){c} + 1) : 0;")
    ctx.w(f"else {n} = {a} > {b} ? "
          f"(int64_t)(((uint64_t){a} - (uint64_t){b} - 1) / (0 - (uint64_t){c}) + 1) : 0;")
    with ctx.w.block(f"if ({n} < 0)"):
        ctx.fail(node, "shape", "arange: the length does not fit in 64 bits")
    return n


def _c_float_length(ctx, node, start, stop, step):
    """NumPy's length: ceil((stop - start) / step) in doubles, 1 when that underflows to 0."""
    d, q, n = ctx.tmp("d"), ctx.tmp("q"), ctx.tmp("n")
    ctx.w(f"double {d} = (double){stop} - (double){start};")
    with ctx.w.block(f"if ((double){step} == 0)"):
        ctx.fail(node, "value", "step must not be zero")
    ctx.w(f"double {q} = {d} / (double){step};")
    with ctx.w.block(f"if ({q} != {q} || {q} > 9.2e18 || {q} < -9.2e18)"):
        ctx.fail(node, "value", "arange(%g, %g, %g) has no finite length",
                 f"(double){start}", f"(double){stop}", f"(double){step}")
    ctx.w(f"int64_t {n} = ({d} != 0 && {q} == 0) ? 1 : (int64_t)ceil({q});")
    ctx.w(f"if ({n} < 0) {n} = 0;")
    return n


def _c_arange_fill(ctx, out, start, step, exact, n):
    """NumPy's fill: out[0] = start, out[1] = start + step (each cast), then
    out[i] = out[0] + i * (out[1] - out[0]) in the output type."""
    ct, p = ctx.ct(out), ctx.ptr(out)
    first, second = ((f"(int64_t){start}", f"(int64_t)((uint64_t){start} + (uint64_t){step})")
                     if exact else (f"(double){start}", f"(double){start} + (double){step}"))
    a0, a1 = ctx.tmp("first"), ctx.tmp("second")
    ctx.w(f"{ct} {a0} = {_c_convert(first, ct, exact)}, {a1} = {_c_convert(second, ct, exact)};")
    with ctx.w.block(f"if ({n} > 0)"):
        ctx.w(f"{p}[0] = {a0};")
        ctx.w(f"if ({n} > 1) {p}[1] = {a1};")
    if ct == "uint8_t":
        return  # bool: at most two entries
    with ctx.w.block(f"for (int64_t i = 2; i < {n}; i++)"):
        if ct in ("double", "float"):
            ctx.w(f"{p}[i] = {a0} + ({ct})i * ({ct})({a1} - {a0});")
        else:  # wrapping integer arithmetic, as NumPy's fill
            ctx.w(f"{p}[i] = ({ct})((uint64_t){a0} + (uint64_t)i * (uint64_t)({a1} - {a0}));")


def _c_convert(value, ct, exact):
    """``value`` (int64 when ``exact``, else double) cast to ``ct`` as NumPy's setitem does."""
    if ct == "uint8_t":
        return f"(uint8_t)({value} != 0)"
    if exact or ct in ("double", "float"):
        return f"({ct})({value})"
    return f"({ct})sg_f2i{'64' if ct == 'int64_t' else '32'}({value})"
