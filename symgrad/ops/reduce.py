"""Reductions: sum, mean, prod, max, min, argmax, argmin, logsumexp (and var, std).

Each reduction is one small op over a normalised, sorted tuple of axes plus
``keepdims``. Output dtypes are what NumPy gives (the sum of int32 is int64,
the mean of an int is float64); ``var`` and ``std`` are compositions of
``mean`` and need no op of their own.

Gradient rules are graph built from existing ops. The gradient of ``max`` /
``min`` is split equally among tied maxima; the gradient of ``prod`` is exact
when the input holds zeros (no division by zero).

Accuracy: float32 sums, means and products accumulate in float64 and are
rounded once at the end, in every mode (NumPy's float32 sum is pairwise only
along a contiguous axis and drifts elsewhere: 1018.96 for the mean over axis
0 of 3e6 values near 1000). ``_wide`` is that rule for the NumPy references.
"""

import math
import numbers

import numpy as np

from .. import dtypes as _dt
from ..errors import ShapeError
from ..graph import NOT_DIFFERENTIABLE, Constant, Op, TensorType, as_variable, user_trace
from ..codegen.ir import (Alloc, Arr, Bin, Call, Check, Dim, Fn, Int, Ints, Let, Local, Shape,
                          ShapeText)
from .elemwise import cast, eq, exp, sqrt, square, stop_gradient, where
from .shape import broadcast_to, expand_dims, normalize_axis, shape, shape_at, transpose

__all__ = ["sum", "mean", "prod", "max", "min", "argmax", "argmin", "var", "std", "logsumexp"]


# --------------------------------------------------------------------------- argument checks

def _at_line(err):
    """``err`` with the user's line appended: argument errors name where the graph was built."""
    return type(err)(f"{err} (at {user_trace()})")


def _axes(axis, ndim, opname):
    """``axis`` (None, an int or a tuple of ints) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    items = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    try:
        axes = [normalize_axis(a, ndim, opname) for a in items]
    except (TypeError, ShapeError) as e:
        # name the whole argument: "axis (0, 3)" says more than "axis 3"
        suffix = f" (axis={axis!r})" if len(items) > 1 else ""
        raise _at_line(type(e)(f"{e}{suffix}")) from None
    if len(set(axes)) != len(axes):
        raise _at_line(ShapeError(f"{opname}: axis {axis!r} repeats an axis "
                                  f"(axes of a {ndim}-d input, each at most once)"))
    return tuple(sorted(axes))


def _one_axis(axis, ndim, opname):
    """argmax/argmin: None (the flat index) or one int axis, as NumPy."""
    if axis is None:
        return None
    if isinstance(axis, (tuple, list)):
        raise _at_line(TypeError(f"{opname}: axis must be None or an int, got {axis!r} "
                                 f"(NumPy's {opname} takes one axis)"))
    try:
        return normalize_axis(axis, ndim, opname)
    except (TypeError, ShapeError) as e:
        raise _at_line(e) from None


def _keepdims(keepdims, opname):
    if not isinstance(keepdims, (bool, np.bool_)):
        raise _at_line(TypeError(f"{opname}: keepdims must be True or False, got {keepdims!r}"))
    return bool(keepdims)


def _ddof(ddof, opname):
    if isinstance(ddof, (bool, np.bool_)) or not isinstance(ddof, numbers.Real):
        raise _at_line(TypeError(f"{opname}: ddof must be a number, got {ddof!r}"))
    return ddof


def _reduced_shape(shp, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shp))
    return tuple(s for i, s in enumerate(shp) if i not in axes)


def _wide(x):
    """The accumulator dtype of a sum or product of ``x``: float64 for float32, else None."""
    return np.float64 if x.dtype == np.float32 else None


def _numpy_dtype(fn, dtype, opname):
    # one element, not an empty array: max of nothing is an error, mean of nothing a warning
    return _dt.result_dtype(lambda a: fn(np.ones(1, a.dtype)), [dtype], opname=opname)


# --------------------------------------------------------------------------- graph helpers

def _keep(v, axes, keepdims):
    """A reduced result ``v`` with its reduced axes present again (as length 1)."""
    return v if keepdims or not axes else expand_dims(v, axes)


def _spread(g, x, axes, keepdims):
    """A cotangent of a reduction spread back to the shape of its input ``x``."""
    if not axes:
        return g
    return broadcast_to(_keep(g, axes, keepdims), shape(x))


def _count(x, axes, dtype):
    """The runtime number of elements of ``x`` along ``axes``, as a ``dtype`` scalar."""
    static = [x.type.shape[a] for a in axes]
    if None not in static:
        return Constant(np.array(np.prod(static, dtype=np.int64), dtype=dtype))
    n = None
    for a in axes:
        if x.type.shape[a] != 1:
            n = shape_at(x, a) if n is None else n * shape_at(x, a)
    return cast(n, dtype)


# --------------------------------------------------------------------------- ops

class Reduce(Op):
    """A reduction of one input over ``axis`` (a sorted tuple of axes), with ``keepdims``."""

    __props__ = ("axis", "keepdims")
    register = False
    numpy = None          # the NumPy function: reference and dtype rule
    needs_elements = False  # NumPy refuses to reduce an empty axis (no identity)


    def flops(self, node, in_shapes, out_shapes):
        """One per element of the input (an add, multiply or comparison each)."""
        return math.prod(in_shapes[0])

    def __init__(self, axis, keepdims=False):
        self.axis = tuple(int(a) for a in axis)
        self.keepdims = bool(keepdims)

    def out_dtype(self, dtype):
        return _numpy_dtype(type(self).numpy, dtype, self.name)

    def infer(self, x):
        for a in self.axis:
            if not 0 <= a < x.ndim:
                raise ShapeError(f"axis {a} is out of range for a {x.ndim}-d input ({x.type})")
        if self.needs_elements and any(x.type.shape[a] == 0 for a in self.axis):
            raise ShapeError(f"cannot reduce {x.type} over a length-0 axis "
                             f"(axis={self.axis}): the {self.name} of nothing is undefined")
        out_shape = _reduced_shape(x.type.shape, self.axis, self.keepdims)
        return [TensorType(self.out_dtype(x.dtype), out_shape)]

    def row_inputs(self, node):
        """Over axes other than the leading one, each row on its own."""
        return (0,) if self.axis and 0 not in self.axis else None

    def compute(self, x):
        return type(self).numpy(x, axis=self.axis, keepdims=self.keepdims)

    def perform(self, node, x):
        dtype = node.outputs[0].dtype
        if self.needs_elements and any(x.shape[a] == 0 for a in self.axis):
            raise ShapeError(f"{self.name} at {node.trace}: cannot reduce an array of shape "
                             f"{x.shape} over the length-0 axis {self.axis}; the {self.name} "
                             f"of nothing is undefined")
        with np.errstate(all="ignore"):
            return [np.array(self.compute(np.asarray(x)), dtype=dtype)]

    def grad(self, node, inputs, outputs, gouts):
        (x,), (out,), (g,) = inputs, outputs, gouts
        if not _dt.is_float(x.dtype):
            return [NOT_DIFFERENTIABLE]
        return [cast(self.grad_rule(x, out, g), x.dtype)]


class Sum(Reduce):
    """``np.sum(x, axis, keepdims)``; the gradient broadcasts ``g`` back."""

    name = "sum"
    numpy = staticmethod(np.sum)

    def compute(self, x):
        total = np.sum(x, axis=self.axis, keepdims=self.keepdims, dtype=_wide(x))
        return total.astype(x.dtype, copy=False) if _wide(x) else total

    def grad_rule(self, x, out, g):
        return _spread(g, x, self.axis, self.keepdims)

    def lower(self, node):
        return (sum_into(node, self.axis, self.keepdims, mean=False)
                or fold(node, "sum", self.axis, self.keepdims))


class Mean(Reduce):
    """``np.mean(x, axis, keepdims)``; the gradient is ``g`` broadcast back over the count."""

    name = "mean"
    numpy = staticmethod(np.mean)

    def compute(self, x):
        # NumPy's own recipe (sum in the result dtype, then divide; a float32
        # sum in float64, divided, then rounded), without its "mean of empty
        # slice" warning: an empty mean is NaN, as in NumPy
        dtype = self.out_dtype(x.dtype.name)
        wide = _wide(x) or dtype
        total = np.sum(x, axis=self.axis, keepdims=self.keepdims, dtype=wide)
        n = int(np.prod([x.shape[a] for a in self.axis], dtype=np.int64))
        return np.true_divide(total, n, dtype=wide).astype(dtype, copy=False)

    def grad_rule(self, x, out, g):
        return _spread(g / _count(x, self.axis, g.dtype), x, self.axis, self.keepdims)

    def lower(self, node):
        # the count divides the total: 0 / 0 is NaN for an empty mean, as in NumPy
        return (sum_into(node, self.axis, self.keepdims, mean=True)
                or fold(node, "mean", self.axis, self.keepdims))


class Prod(Reduce):
    """``np.prod(x, axis, keepdims)``; the gradient is exact when ``x`` holds zeros."""

    name = "prod"
    numpy = staticmethod(np.prod)

    def compute(self, x):
        total = np.prod(x, axis=self.axis, keepdims=self.keepdims, dtype=_wide(x))
        return total.astype(x.dtype, copy=False) if _wide(x) else total

    def grad_rule(self, x, out, g):
        # d prod / d x_i is the product of the others. Dividing out by x_i fails
        # at zeros, so count the zeros of each reduced group: none -> prod / x_i;
        # exactly one -> the zero's slot gets the product of the nonzeros, the
        # rest 0; two or more -> all 0. ``safe`` keeps the division finite in
        # the branch where() does not pick. The nonzero slots' factor "0 if
        # the group has a zero" is written as the product of the zeros, so that
        # second derivatives stay exact at a single zero (only the mixed
        # partial between two zeros comes out 0 instead of the rest's product).
        keep = self.axis, True
        is_zero = eq(x, 0)
        safe = where(is_zero, 1, x)
        others_nonzero = Prod(*keep)(safe) / safe
        zeros_prod = Prod(*keep)(where(is_zero, x, 1))  # 1 without a zero, else 0
        at_zero = where(eq(Sum(*keep)(is_zero), 1), others_nonzero, 0)
        local = where(is_zero, at_zero, others_nonzero * zeros_prod)
        return _keep(g, self.axis, self.keepdims) * local

    def lower(self, node):
        return fold(node, "prod", self.axis, self.keepdims)


class Max(Reduce):
    """``np.max(x, axis, keepdims)``; the gradient is split equally among tied maxima."""

    name = "max"
    numpy = staticmethod(np.max)
    needs_elements = True

    def out_dtype(self, dtype):
        return dtype

    def compute(self, x):
        out = type(self).numpy(x, axis=self.axis, keepdims=self.keepdims)
        if x.dtype.kind == "f" and self.axis and np.any(out == 0):
            out = _last_zero_sign(x, self.axis, self.keepdims, out)
        return out

    def grad_rule(self, x, out, g):
        if not self.axis:
            return g
        out, g = _keep(out, self.axis, self.keepdims), _keep(g, self.axis, self.keepdims)
        order = _ties_layout(x.type.shape, self.axis)
        if order is not None:
            # the same values, computed with the reduced axes first (see _ties_layout)
            x, out, g = (transpose(v, order) for v in (x, out, g))
        axes = tuple(range(len(self.axis))) if order is not None else self.axis
        hit = eq(x, out)
        # count the ties in g's float dtype: a cast of an integer count would be
        # a path through an integer value, which a second derivative refuses; a
        # cast of each tie (no gradient, as where's condition) is not, and unlike
        # where(hit, 1, 0) gcc vectorises its sum into double accumulators
        ones = cast(stop_gradient(hit), g.dtype)
        share = g / Sum(axes, keepdims=True)(ones)
        # a NaN maximum hits nothing: no element gets a share (and no 0/0 leaks out)
        dx = where(hit, share, 0)
        return dx if order is None else transpose(dx, tuple(np.argsort(order)))

    def lower(self, node):
        x = node.inputs[0]
        return (_nonempty(x, self.axis, "cannot reduce an array of shape %s over the "
                          f"length-0 axis {self.axis}; the {self.name} of nothing is undefined")
                + fold(node, self.name, self.axis, self.keepdims))


class Min(Max):
    """``np.min(x, axis, keepdims)``; the gradient is split equally among tied minima."""

    name = "min"
    numpy = staticmethod(np.min)


class LogSumExp(Reduce):
    """``log(sum(exp(x), axis, keepdims))``, stably; the gradient is ``g * exp(x - out)``."""

    name = "logsumexp"

    def flops(self, node, in_shapes, out_shapes):
        """About 4 per element of the input: max, subtract, exp, add (``sg.explain``'s rules)."""
        return 4 * math.prod(in_shapes[0])
    numpy = staticmethod(np.logaddexp.reduce)

    def compute(self, x):
        x = x.astype(self.out_dtype(x.dtype.name), copy=False)
        # subtract the maximum so exp cannot overflow; an infinite maximum
        # (a row of -inf, or a +inf) is replaced by 0 so -inf - -inf gives no
        # NaN: np.logaddexp.reduce's results (-inf for a row of -inf, inf for a
        # row with +inf). The sum is in float64 (C: a double), as a float32 sum.
        m = np.max(x, axis=self.axis, keepdims=True, initial=-np.inf)
        m = np.where(np.isfinite(m), m, 0).astype(x.dtype)
        total = np.sum(np.exp(x - m), axis=self.axis, keepdims=True, dtype=np.float64)
        s = (np.log(total) + m).astype(x.dtype)
        return s if self.keepdims else np.squeeze(s, axis=self.axis)

    def grad_rule(self, x, out, g):
        softmax = exp(x - _keep(out, self.axis, self.keepdims))
        # a -inf entry weighs nothing; in a row of all -inf (fully masked logits)
        # -inf - -inf would make it NaN instead of 0
        softmax = where(eq(x, -np.inf), 0, softmax)
        return _keep(g, self.axis, self.keepdims) * softmax

    def lower(self, node):
        return logsumexp_rows(node, self.axis, self.keepdims)


def _ties_layout(shp, axes):
    """The axis order (reduced axes first) in which a max/min gradient is computed, or None
    for the input's own order.

    The gradient's loops (the ties test, their count, the shares) run over the input's
    shape with the result broadcast along the reduced axes; a fused loop's inner run is
    its last axis after merging, so when the last axis is reduced and a kept axis lies
    between reduced ones -- pooling by reshape, ``x.reshape((n, c, h//2, 2, w//2, 2))
    .max(axis=(3, 5))`` -- every run is a couple of elements long and the loop overhead
    per run dominates (6 ms against 1 ms for the forward, 32x16x32x32 float32). With the
    reduced axes moved first, the runs are the kept axes, and the count is a sum over the
    leading axes. Decided on static lengths: a trailing run of reduced axes of unknown
    length, or of 16 elements or more, keeps the input's order.
    """
    kept = [a for a in range(len(shp)) if a not in axes]
    last_kept = kept[-1] if kept else None
    if last_kept is None or last_kept < axes[0] or last_kept == len(shp) - 1:
        return None  # all reduced, reduced axes all first or all last, or the last is kept
    run = 1
    for a in range(last_kept + 1, len(shp)):
        if shp[a] is None:
            return None
        run *= shp[a]
    if run >= 16 or (shp[last_kept] is not None and shp[last_kept] <= run):
        return None
    return tuple(axes) + tuple(a for a in range(len(shp)) if a not in axes)


def _last_zero_sign(x, axes, keepdims, out):
    """``out`` (a max or min of ``x`` over ``axes``) with each zero given the sign of the last
    zero of its row: among equal extremes the last wins, as in NumPy's scalar and strided
    loops (its SIMD loops, along a contiguous axis, may keep another zero; the C does not)."""
    kept = [a for a in range(x.ndim) if a not in axes]
    rows = np.transpose(x, kept + list(axes)).reshape([x.shape[a] for a in kept] + [-1])
    is_zero = rows == 0
    last = rows.shape[-1] - 1 - np.argmax(is_zero[..., ::-1], axis=-1)
    zero = np.take_along_axis(rows, last[..., None], axis=-1)[..., 0]
    signed = np.where(out.reshape(zero.shape) == 0, zero, out.reshape(zero.shape))
    return signed.reshape(out.shape).astype(out.dtype, copy=False)


class ArgReduce(Op):
    """``np.argmax`` / ``np.argmin``: int64 positions along an axis, or the flat index (None)."""

    __props__ = ("axis", "keepdims")
    register = False
    numpy = None


    def flops(self, node, in_shapes, out_shapes):
        """One per element of the input (an add, multiply or comparison each)."""
        return math.prod(in_shapes[0])

    def __init__(self, axis, keepdims=False):
        self.axis = None if axis is None else int(axis)
        self.keepdims = bool(keepdims)

    def axes(self, ndim):
        return tuple(range(ndim)) if self.axis is None else (self.axis,)

    def infer(self, x):
        if self.axis is not None and not 0 <= self.axis < x.ndim:
            raise ShapeError(f"axis {self.axis} is out of range for a {x.ndim}-d input ({x.type})")
        axes = self.axes(x.ndim)
        if any(x.type.shape[a] == 0 for a in axes):
            raise ShapeError(f"the {self.name} of an empty axis is undefined ({x.type}, "
                             f"axis={self.axis})")
        return [TensorType("int64", _reduced_shape(x.type.shape, axes, self.keepdims))]

    def perform(self, node, x):
        if any(x.shape[a] == 0 for a in self.axes(x.ndim)):
            raise ShapeError(f"{self.name} at {node.trace}: an array of shape {x.shape} has no "
                             f"{self.name} along axis={self.axis} (length 0)")
        out = type(self).numpy(x, axis=self.axis, keepdims=self.keepdims)
        return [np.array(out, dtype="int64")]

    def grad(self, node, inputs, outputs, gouts):
        return [NOT_DIFFERENTIABLE]

    def lower(self, node):
        # axis=None reduces every axis: the position in the row is then the flat C-order index
        x, axes = node.inputs[0], self.axes(node.inputs[0].ndim)
        return (_nonempty(x, axes, f"an array of shape %s has no {self.name} along "
                          f"axis={self.axis} (length 0)")
                + fold(node, self.name, axes, self.keepdims))


class Argmax(ArgReduce):
    """Positions of the maxima (the first one among ties)."""

    name = "argmax"
    numpy = staticmethod(np.argmax)


class Argmin(ArgReduce):
    """Positions of the minima (the first one among ties)."""

    name = "argmin"
    numpy = staticmethod(np.argmin)


# --------------------------------------------------------------------------- public functions

def _reduce(op_class, x, axis, keepdims, dtype=None, acc_dtype=None):
    x = as_variable(x)
    axes = _axes(axis, x.ndim, op_class.name)
    op = op_class(axes, _keepdims(keepdims, op_class.name))
    if dtype is None and acc_dtype is None:
        return op(x)
    # ``dtype=`` (NumPy's and Theano's): the elements are converted to it, summed in it and
    # the result has it; Theano's ``acc_dtype=`` sets the accumulation alone (the result
    # keeps the default dtype unless ``dtype=`` is given too).
    out = None if dtype is None else _dt.as_dtype(dtype, f"{op_class.name}: dtype")
    acc = out if acc_dtype is None else _dt.as_dtype(acc_dtype, f"{op_class.name}: acc_dtype")
    if acc_dtype is not None and not np.can_cast(x.dtype, acc, "safe"):
        raise TypeError(f"{op_class.name}: acc_dtype={acc} would lose precision on the "
                        f"{x.dtype} input (at {user_trace()}); accumulate in a dtype that "
                        f"holds every {x.dtype} value, or cast the input first with "
                        f"x.astype('{acc}')")
    if out is None:
        out = op.out_dtype(x.dtype)
    return cast(op(cast(x, acc)), out)


def sum(x, axis=None, keepdims=False, *, dtype=None, acc_dtype=None):  # noqa: A001
    """Sum of elements over ``axis``, as ``np.sum`` (ints and bools sum to int64).

    Parameters
    ----------
    x : Variable or array_like
    axis : None, int or tuple of ints
        The axes to reduce (negative counts from the end); None reduces all.
    keepdims : bool
        Keep the reduced axes as length 1.
    dtype : dtype, optional
        The dtype the elements are summed in and the result has, as NumPy's
        ``dtype=`` (``sum(flags, dtype="float32")``); default: int64 for ints
        and bools, the input's dtype for floats (a float32 sum accumulates in
        float64 whatever the dtype, and rounds once at the end).
    acc_dtype : dtype, optional
        Theano's: the accumulation dtype alone (it must hold every input
        value: a ``TypeError`` otherwise); the result keeps the default dtype
        unless ``dtype`` is given too.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.matrix("x")
    >>> sg.evaluate(sg.sum(x, axis=0), {x: np.array([[1.0, 2.0], [3.0, 4.0]])})
    array([4., 6.])
    >>> sg.sum(sg.vector(dtype="bool"), dtype="float32").dtype
    'float32'
    """
    return _reduce(Sum, x, axis, keepdims, dtype, acc_dtype)


def mean(x, axis=None, keepdims=False, *, dtype=None, acc_dtype=None):
    """Mean over ``axis``, as ``np.mean`` (the mean of ints is float64, float32 stays float32).

    Parameters are those of :func:`sum`; ``dtype=`` is the dtype summed in and
    of the result (``mean(x32, dtype="float64")``; an integer dtype truncates the
    mean, as NumPy). Works when lengths are known only at call time: the
    gradient divides by the runtime count.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> sg.evaluate(sg.mean(x), {x: np.array([1.0, 2.0, 6.0])})
    array(3.)
    """
    return _reduce(Mean, x, axis, keepdims, dtype, acc_dtype)


def prod(x, axis=None, keepdims=False, *, dtype=None, acc_dtype=None):
    """Product over ``axis``, as ``np.prod``; its gradient is exact at zeros.

    Parameters are those of :func:`sum` (``dtype=``, ``acc_dtype=`` included).

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> sg.evaluate(sg.grad(sg.prod(x), x), {x: np.array([2.0, 0.0, 3.0])})
    array([0., 6., 0.])
    """
    return _reduce(Prod, x, axis, keepdims, dtype, acc_dtype)


def max(x, axis=None, keepdims=False):  # noqa: A001
    """Maximum over ``axis``, as ``np.max``; the gradient is split equally among ties.

    Parameters are those of :func:`sum`. A reduction over a length-0 axis is a
    ``ShapeError`` (at build time if the length is static, else at call time).

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> sg.evaluate(sg.grad(sg.max(x), x), {x: np.array([3.0, 1.0, 3.0])})
    array([0.5, 0. , 0.5])
    """
    return _reduce(Max, x, axis, keepdims)


def min(x, axis=None, keepdims=False):  # noqa: A001
    """Minimum over ``axis``, as ``np.min``; the gradient is split equally among ties.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.matrix("x")
    >>> sg.evaluate(sg.min(x, axis=1), {x: np.array([[1.0, -2.0], [0.5, 4.0]])})
    array([-2. ,  0.5])
    """
    return _reduce(Min, x, axis, keepdims)


def _arg(op_class, x, axis, keepdims):
    x = as_variable(x)
    return op_class(_one_axis(axis, x.ndim, op_class.name), _keepdims(keepdims, op_class.name))(x)


def argmax(x, axis=None, keepdims=False):
    """Index of the maximum along ``axis`` (int64), as ``np.argmax``; not differentiable.

    Parameters
    ----------
    x : Variable or array_like
    axis : None or int
        One axis; None gives the index into the flattened array.
    keepdims : bool

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.matrix("x")
    >>> sg.evaluate(sg.argmax(x, axis=1), {x: np.array([[1.0, 5.0], [7.0, 2.0]])})
    array([1, 0])
    """
    return _arg(Argmax, x, axis, keepdims)


def argmin(x, axis=None, keepdims=False):
    """Index of the minimum along ``axis`` (int64), as ``np.argmin``; not differentiable.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> sg.evaluate(sg.argmin(x), {x: np.array([3.0, -1.0, 2.0])})
    array(1)
    """
    return _arg(Argmin, x, axis, keepdims)


def var(x, axis=None, keepdims=False, ddof=0):
    """Variance over ``axis``, as ``np.var``: ``sum((x - mean)**2) / (n - ddof)``.

    Parameters
    ----------
    x, axis, keepdims
        As for :func:`sum`.
    ddof : number
        Delta degrees of freedom: 1 gives the unbiased sample variance.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> sg.evaluate(sg.var(x, ddof=1), {x: np.array([1.0, 2.0, 3.0])})
    array(1.)
    """
    x = as_variable(x)
    axes = _axes(axis, x.ndim, "var")
    keepdims, ddof = _keepdims(keepdims, "var"), _ddof(ddof, "var")
    sq = square(x - Mean(axes, keepdims=True)(x))
    if ddof == 0:
        return Mean(axes, keepdims)(sq)
    return Sum(axes, keepdims)(sq) / (_count(x, axes, sq.dtype) - ddof)


def std(x, axis=None, keepdims=False, ddof=0):
    """Standard deviation over ``axis``, as ``np.std``: ``sqrt(var(x, axis, keepdims, ddof))``.

    The gradient is 0 where the variance is 0 (a constant slice), as PyTorch's,
    not the NaN of ``sqrt``'s infinite slope times the variance's zero one.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> sg.evaluate(sg.std(x), {x: np.array([1.0, 3.0])})
    array(1.)
    >>> sg.evaluate(sg.grad(sg.std(x), x), {x: np.array([2.0, 2.0])})
    array([0., 0.])
    """
    v = var(x, axis=axis, keepdims=keepdims, ddof=ddof)
    # sqrt sees 1 where the variance is 0, and that branch is not taken: its
    # gradient (0.5, times a cotangent of 0) is finite, so no 0 * inf = NaN
    flat = eq(v, 0)
    return where(flat, 0, sqrt(where(flat, 1, v)))


def logsumexp(x, axis=None, keepdims=False):
    """``log(sum(exp(x), axis))`` without overflow: finite for huge inputs, -inf for all -inf.

    Parameters are those of :func:`sum`; integer inputs give float64. The
    gradient is ``g * exp(x - out)``, the softmax of ``x`` along ``axis``.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> sg.evaluate(sg.logsumexp(x), {x: np.array([1000.0, 1000.0])})
    array(1000.69314718)
    """
    return _reduce(LogSumExp, x, axis, keepdims)


# --------------------------------------------------------------------------- lowering
#
# Every reduction is a fold over rows: the input is viewed with its kept axes
# first and its reduced axes last, so one output element is one row. sum, mean,
# prod, max, min, argmax and argmin are functions of sg_ops.h, one per input
# and output dtype (`fold`), and logsumexp's two passes one of sg_rows.h
# (`logsumexp_rows`). A float sum or mean is instead an accumulation in input
# order (`sum_into`), as codegen.lower does when it fuses one with its
# elementwise producer. Each returns statements of codegen.ir.

def _nonempty(x, axes, message):
    """max, min, argmax, argmin: a length-0 reduced axis is a ShapeError, as in ``perform``."""
    if not axes:
        return []
    empty = None
    for a in axes:
        test = Bin("==", Dim(x, a), Int(0))
        empty = test if empty is None else Bin("or", empty, test)
    return [Check(empty, "shape", message, [ShapeText(Shape(x), x.ndim)])]


def _alloc_reduced(node, axes, keepdims):
    """A reduction's newly allocated result (``axes`` gone, or of length 1 with keepdims)."""
    x = node.inputs[0]
    shape = [(Int(1) if a in axes else Dim(x, a)) for a in range(x.ndim)
             if keepdims or a not in axes]
    return Alloc(node.outputs[0], shape)


def fold(node, name, axes, keepdims):
    """The result, filled with ``sg_<name>_<in>_<out>`` of sg_ops.h over a view of the input
    with the reduced axes last."""
    x, out = node.inputs[0], node.outputs[0]
    kept = [a for a in range(x.ndim) if a not in axes]
    view = Local("perm", "arr", ndim=x.ndim, elem=x.dtype)
    return [_alloc_reduced(node, axes, keepdims),
            Let(view, Fn("sg_permuted", [Arr(x), Int(x.ndim), Ints(kept + list(axes))],
                         dtype="arr")),
            Call(f"sg_{name}", [Arr(out), Arr(view), Int(x.ndim), Int(len(axes))],
                 dtypes=(x.dtype, out.dtype), can_fail=False)]


def sum_into(node, axes, keepdims, mean):
    """A float sum or mean in its input's dtype: ``sg_sum_into_<dtype>``, which adds every
    element into its result element (as a fused accumulation does). None for other dtypes."""
    x, out = node.inputs[0], node.outputs[0]
    if x.dtype not in ("float32", "float64") or out.dtype != x.dtype:
        return None
    flags = [int(a in axes) for a in range(x.ndim)]
    return [_alloc_reduced(node, axes, keepdims),
            Call("sg_sum_into", [Arr(out), Int(out.ndim), Arr(x), Int(x.ndim), Ints(flags),
                                 Int(int(keepdims)), Int(int(mean))], dtypes=(x.dtype,))]


def logsumexp_rows(node, axes, keepdims):
    """logsumexp: ``sg_logsumexp_<in>_<out>`` of sg_rows.h folds each row (= output element)
    in two passes, its maximum, then the log of its shifted exponentials' sum."""
    x, out = node.inputs[0], node.outputs[0]
    kept = [a for a in range(x.ndim) if a not in axes]
    return [_alloc_reduced(node, axes, keepdims),
            Call("sg_logsumexp", [Arr(out), Arr(x), Int(x.ndim), Ints(kept + list(axes)),
                                  Int(len(axes))], dtypes=(x.dtype, out.dtype), can_fail=False)]
