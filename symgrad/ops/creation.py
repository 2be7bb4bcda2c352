"""Arrays made from numbers rather than from other arrays: ``arange``."""

import math

import numpy as np

from .. import dtypes as _dt
from ..errors import ShapeError
from ..codegen.ir import Addr, Alloc, Bin, Call, Cast, Check, Data, Elem, Int, Let, Local
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

    def lower(self, node):
        """The length (``sg_arange_length_<i64|f64>``: exact integer arithmetic when every
        argument is an integer, else NumPy's in doubles), the result, then its values
        (``sg_arange_<i64|f64>_<dtype>``)."""
        out = node.outputs[0]
        kind = "int64" if all(_dt.is_int(v.dtype) for v in node.inputs) else "float64"
        start, stop, step = (Cast(kind, Elem(v)) for v in node.inputs)
        n = Local("n")
        body = [Let(n, Int(0)),
                Call("sg_arange_length", [start, stop, step, Addr(n)], dtypes=(kind,))]
        if self.dtype == "bool":
            body.append(Check(Bin(">", n, Int(2)), "value", "arange() is only supported for "
                              "booleans when the result has at most length 2"))
        return body + [Alloc(out, [n]),
                       Call("sg_arange", [Data(out), n, start, step], dtypes=(kind, out.dtype),
                            can_fail=False)]


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
