"""Arrays made from numbers rather than from other arrays: ``arange``."""

import math

import numpy as np

from .. import dtypes as _dt
from ..errors import ShapeError
from ..codegen.c_support import SUFFIX
from ..graph import Constant, Op, TensorType, Variable, user_trace
from .shape import shape_at
from .subtensor import value_grad

__all__ = ["arange"]


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
    flops_per_element = 0  # moves data: no arithmetic

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
    if ct != "uint8_t":  # sg_rows.h
        ctx.w(f"sg_arange_fill_{SUFFIX[out.dtype]}({p}, {n}, {a0}, {a1});")
        return
    with ctx.w.block(f"if ({n} > 0)"):  # bool: at most two entries
        ctx.w(f"{p}[0] = {a0};")
        ctx.w(f"if ({n} > 1) {p}[1] = {a1};")


def _c_convert(value, ct, exact):
    """``value`` (int64 when ``exact``, else double) cast to ``ct`` as NumPy's setitem does."""
    if ct == "uint8_t":
        return f"(uint8_t)({value} != 0)"
    if exact or ct in ("double", "float"):
        return f"({ct})({value})"
    return f"({ct})sg_f2i{'64' if ct == 'int64_t' else '32'}({value})"
