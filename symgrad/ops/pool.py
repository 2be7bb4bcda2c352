"""Pooling: ``sg.nn.max_pool2d``, ``avg_pool2d`` and ``adaptive_avg_pool2d``, as PyTorch's.

Each is an op with its gradient as ops of its own, closed under differentiation:

- max pooling has two outputs, the maxima and where they are (int64 indices
  into each input plane); its gradient (:class:`MaxPool2DGrad`) adds ``g`` at
  those positions, and that op's gradient reads the cotangent back there
  (:class:`MaxPool2DSelect`). Kept indices, not the argmax found again from
  ``x`` in the backward pass: measured on LeNet's pools (2x2 over
  64x20x24x24 and 64x50x8x8, float32, C), forward and backward take 4.6 and
  1.2 ms with indices, 8.5 and 2.4 ms recomputing (CPU time, best of 30);
- average pooling is linear: its gradient (:class:`AvgPool2DGrad`) spreads
  ``g`` evenly over each window, and that op's gradient is the average pooling
  again. ``adaptive_avg_pool2d`` is the same pair of ops with PyTorch's
  adaptive windows.

Windows follow PyTorch's CPU kernels: padding at most half the kernel (not
the dilated one), ``ceil_mode`` keeps a last window that starts inside the input or its
left padding, average pooling divides by the window's length up to the input
plus its padding (``count_include_pad``) or by the taps inside the input.
Max pooling picks the first maximum of a window in row-major order (a NaN
wins). Compiled, each op is one call of ``include/sg_pool.c``: a pass over
the output reading each window through the input's strides.
"""

import math

import numpy as np

from .. import dtypes as _dt
from ..errors import IndexError as _IndexError
from ..errors import ShapeError
from ..graph import NOT_DIFFERENTIABLE, Op, TensorType, as_variable, user_trace
from ..codegen.ir import (Alloc, Arr, Array, At, Bin, Call, Check, Dim, Ints, Local, Shape,
                          Workspace)
from .shape import _target_shape, shape, shape_entries, zeros_like

__all__ = ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"]

_INT_MAX = 2**31 - 1


# --------------------------------------------------------------------------- geometry

def _pool_len(n, k, s, pad, d, ceil_mode, axis):
    # PyTorch's bound is half the kernel itself, not the dilated one: with more, a window
    # of a dilated kernel can have no tap inside the input (its maximum is -inf)
    span = (k - 1) * d + 1
    if 2 * pad > k:
        raise ShapeError(f"the padding {pad} should be at most half of the kernel's {axis} "
                         f"{k}")
    if n is None:
        return None
    room = n + 2 * pad - span
    o = (-(-room // s) if ceil_mode else room // s) + 1
    if ceil_mode and (o - 1) * s >= n + pad:
        o -= 1
    # ceil_mode keeps one window that starts inside and overhangs the input, as PyTorch's
    if o < 1:
        raise ShapeError(f"the kernel's {axis} {k} (dilated: {span}) is larger than the padded "
                         f"input's {axis} {n + 2 * pad}")
    return o


def _adaptive_bounds(n, m):
    """PyTorch's adaptive windows: [floor(o n / m), ceil((o + 1) n / m)) for o < m."""
    o = np.arange(m)
    return o * n // m, -(-(o + 1) * n // m)


class _Pool(Op):
    """What the pooling ops share: the parameters, the output shape, the runtime checks."""

    __props__ = ("kernel", "stride", "padding", "dilation", "ceil_mode", "count_include_pad",
                 "output_size")
    register = False
    flops_per_element = None

    def __init__(self, kernel=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                 ceil_mode=False, count_include_pad=True, output_size=None):
        self.kernel, self.stride, self.padding = tuple(kernel), tuple(stride), tuple(padding)
        self.dilation, self.ceil_mode = tuple(dilation), bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        self.output_size = None if output_size is None else tuple(output_size)
        if self.output_size is not None:  # named, printed and in errors as the user wrote it
            self.name = "adaptive_" + type(self).name

    def _params(self):
        ad = self.output_size is not None
        return Ints(self.kernel + self.stride + self.padding + self.dilation
                    + (int(self.ceil_mode), int(self.count_include_pad), int(ad))
                    + (self.output_size if ad else (0, 0)))

    def out_shape(self, xs):
        if self.output_size is not None:
            for axis, n, m in zip(("height", "width"), xs[2:], self.output_size):
                if n == 0 and m:
                    raise ShapeError("an input of height or width 0 has no windows to average")
            return tuple(xs[:2]) + self.output_size
        return tuple(xs[:2]) + tuple(
            _pool_len(n, k, s, p, d, self.ceil_mode, axis)
            for axis, n, k, s, p, d in zip(("height", "width"), xs[2:], self.kernel, self.stride,
                                           self.padding, self.dilation))

    def runtime_shape(self, node, xs):
        try:
            return self.out_shape(tuple(int(v) for v in xs))
        except ShapeError as e:
            raise ShapeError(f"{self} at {node.trace}: {e}") from None

    def check_g(self, node, xs, g):
        want = self.runtime_shape(node, xs)
        if tuple(g.shape) != want:
            raise ShapeError(f"{self} at {node.trace}: the output gradient has shape "
                             f"{tuple(g.shape)} but the pooling's output has shape {want}")
        return want

    def _float4(self, *vs):
        for v in vs:
            if v.ndim != 4:
                raise ShapeError(f"takes 4-d (N, C, H, W) values, got {v.type}")
            if not _dt.is_float(v.dtype) or v.dtype != vs[0].dtype:
                raise TypeError(f"takes float values of one dtype, got "
                                f"{', '.join(str(u.type) for u in vs)}")

    def __str__(self):
        if self.output_size is not None:
            return f"{self.name}{{output_size={self.output_size[0]}x{self.output_size[1]}}}"
        parts = [f"kernel={self.kernel[0]}x{self.kernel[1]}"]
        parts += [f"stride={self.stride[0]}x{self.stride[1]}"] * (self.stride != self.kernel)
        parts += [f"padding={self.padding[0]}x{self.padding[1]}"] * any(self.padding)
        parts += [f"dilation={self.dilation[0]}x{self.dilation[1]}"] * (self.dilation != (1, 1))
        parts += ["ceil_mode"] * self.ceil_mode
        if self.name.startswith("avg") and not self.count_include_pad:
            parts.append("count_include_pad=False")
        return f"{self.name}{{{', '.join(parts)}}}"

    __repr__ = __str__

    def flops(self, node, in_shapes, out_shapes):
        """One per output element and tap (a comparison or an addition)."""
        taps = math.prod(self.kernel) if self.output_size is None else max(
            1, math.prod(-(-a // b) + 1 for a, b in zip(in_shapes[0][2:], self.output_size) if b))
        return taps * math.prod(out_shapes[0])


def _alloc_out(node, x_shape_call):
    """Statements: the output's shape from sg_pool2d_shape, then its memory."""
    out = node.outputs[0]
    os = Local("oshape", length=4)
    return [Array(os), Call("sg_pool2d_shape", [x_shape_call, node.op._params(), Shape(os)]),
            Alloc(out, [At(os, i) for i in range(4)])]


# --------------------------------------------------------------------------- NumPy references

def _taps(x, op, oh, ow, fill):
    """``(N, C, kh * kw, OH, OW)``: each window's taps, ``fill`` where outside the input."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = op.kernel, op.stride, op.padding, op.dilation
    n, c, h, w = x.shape
    eh = max(0, (oh - 1) * sh + (kh - 1) * dh + 1 - h - ph)  # ceil_mode's extra rows
    ew = max(0, (ow - 1) * sw + (kw - 1) * dw + 1 - w - pw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, eh), (pw, ew)), constant_values=fill)
    return np.stack([xp[:, :, i * dh:i * dh + (oh - 1) * sh + 1:sh,
                        j * dw:j * dw + (ow - 1) * sw + 1:sw]
                     for i in range(kh) for j in range(kw)], axis=2), xp.shape


def _argmax(x, op, oh, ow):
    """Each window's chosen tap (first maximum, or the last NaN), as an index into taps."""
    taps, _ = _taps(x, op, oh, ow, -np.inf)
    nan = np.isnan(taps)
    last_nan = taps.shape[2] - 1 - np.argmax(nan[:, :, ::-1], axis=2)
    with np.errstate(invalid="ignore"):
        first_max = np.argmax(taps, axis=2)
    return np.where(nan.any(axis=2), last_nan, first_max), taps


def _scatter_taps(op, xshape, oh, ow, per_tap):
    """The adjoint of _taps: per_tap(t) ``(N, C, OH, OW)`` added back at tap t's positions."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = op.kernel, op.stride, op.padding, op.dilation
    n, c, h, w = xshape
    eh = max(0, (oh - 1) * sh + (kh - 1) * dh + 1 - h - ph)
    ew = max(0, (ow - 1) * sw + (kw - 1) * dw + 1 - w - pw)
    acc = np.zeros((n, c, h + ph + eh, w + pw + ew))
    for i in range(kh):
        for j in range(kw):
            acc[:, :, i * dh:i * dh + (oh - 1) * sh + 1:sh,
                j * dw:j * dw + (ow - 1) * sw + 1:sw] += per_tap(i * kw + j)
    return acc[:, :, ph:ph + h, pw:pw + w]


def _divisors(op, h, w, oh, ow):
    """Average pooling's divisor of each output pixel, ``(OH, OW)``."""
    def axis(n, o, k, s, p):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, n + p)
        full = end - start
        inside = np.minimum(end, n) - np.maximum(start, 0)
        return full if op.count_include_pad else inside
    return np.outer(axis(h, oh, op.kernel[0], op.stride[0], op.padding[0]),
                    axis(w, ow, op.kernel[1], op.stride[1], op.padding[1]))


def _avg(x, op, oh, ow):
    n, c, h, w = x.shape
    out = np.zeros((n, c, oh, ow))
    if op.output_size is not None:
        (h0, h1), (w0, w1) = _adaptive_bounds(h, oh), _adaptive_bounds(w, ow)
        for r in range(oh):
            for q in range(ow):
                out[:, :, r, q] = x[:, :, h0[r]:h1[r], w0[q]:w1[q]].mean(axis=(2, 3))
        return out
    taps, _ = _taps(x.astype(np.float64), op, oh, ow, 0.0)
    with np.errstate(all="ignore"):
        return taps.sum(axis=2) / _divisors(op, h, w, oh, ow)


def _avg_grad(g, op, xshape):
    n, c, h, w = xshape
    oh, ow = g.shape[2:]
    if op.output_size is not None:
        gx = np.zeros(xshape)
        (h0, h1), (w0, w1) = _adaptive_bounds(h, oh), _adaptive_bounds(w, ow)
        for r in range(oh):
            for q in range(ow):
                cnt = (h1[r] - h0[r]) * (w1[q] - w0[q])
                gx[:, :, h0[r]:h1[r], w0[q]:w1[q]] += g[:, :, r:r + 1, q:q + 1] / cnt
        return gx
    with np.errstate(all="ignore"):
        share = g / _divisors(op, h, w, oh, ow)
    return _scatter_taps(op, xshape, oh, ow, lambda t: share)


# --------------------------------------------------------------------------- max pooling

class MaxPool2D(_Pool):
    """The maximum of each window, and where it is: two outputs, the values and, as int64,
    each maximum's tap as ``row * W + column`` of its input plane (-1 for a window with no
    tap inside the input). Gradient: :class:`MaxPool2DGrad` ``(g, indices, shape(x))``."""

    name = "max_pool2d"

    def infer(self, x):
        self._float4(x)
        out = self.out_shape(x.type.shape)
        return [TensorType(x.dtype, out), TensorType("int64", out)]

    def perform(self, node, x):
        os = self.runtime_shape(node, x.shape)
        if 0 in os:
            return [np.zeros(os, dtype=x.dtype), np.zeros(os, dtype=np.int64)]
        idx, taps = _argmax(x, self, *os[2:])
        values = np.take_along_axis(taps, idx[:, :, None], 2)[:, :, 0].astype(x.dtype)
        return [values, _plane_index(self, idx, x.shape, *os[2:])]

    def grad(self, node, inputs, outputs, gouts):
        (x,), g = inputs, gouts[0]
        if g is None:
            return [zeros_like(x)]
        return [MaxPool2DGrad()(g, outputs[1], shape(x))]

    def lower(self, node):
        (x,), (out, idx) = node.inputs, node.outputs
        return _alloc_out(node, Shape(x)) + [
            Alloc(idx, [Dim(out, i) for i in range(4)]),
            Call("sg_max_pool2d", [Workspace(), Arr(out), Arr(idx), Arr(x), self._params()],
                 dtypes=(x.dtype,), can_fail=False)]

    def lower_epilogue(self, node, result, epilogue):
        """Max pooling with an elementwise loop applied to each plane of its maxima as it is
        made (``codegen.lower``'s epilogues: LeNet's tanh after pooling): ``result``, the
        loop's, takes the place of the maxima; the indices are stored as without it."""
        (x,), idx = node.inputs, node.outputs[1]
        os = Local("oshape", length=4)
        return [Array(os), Call("sg_pool2d_shape", [Shape(x), self._params(), Shape(os)]),
                Alloc(result, [At(os, i) for i in range(4)]),
                Alloc(idx, [At(os, i) for i in range(4)]),
                Call("sg_max_pool2d_epi", [Workspace(), Arr(result), Arr(idx), Arr(x),
                                           self._params(), epilogue],
                     dtypes=(x.dtype,), can_fail=False)]


def _plane_index(op, tap, xshape, oh, ow):
    """Each window's chosen tap (an index into its taps) as ``row * W + column``, or -1."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = op.kernel, op.stride, op.padding, op.dilation
    h, w = xshape[2:]
    rows = np.arange(oh)[:, None] * sh - ph + (tap // kw) * dh
    cols = np.arange(ow)[None, :] * sw - pw + (tap % kw) * dw
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    return np.where(inside, rows * w + cols, -1).astype(np.int64)


def _check_indices(op, node, g, idx, xs):
    if g.shape != idx.shape or g.shape[:2] != tuple(xs[:2]):
        raise ShapeError(f"{op} at {node.trace}: the gradient of shape {g.shape}, the indices "
                         f"of shape {idx.shape} and the input of shape {tuple(xs)} do not match")
    plane = int(xs[2]) * int(xs[3])
    if idx.size and (idx.min() < -1 or idx.max() >= plane):
        raise _IndexError(f"{op} at {node.trace}: an index is outside the input's plane of "
                          f"{plane} elements")


class _Indexed(Op):
    """The ops that move values along max pooling's stored indices (no parameters)."""

    register = False

    def _check(self, v, idx):
        if v.ndim != 4 or idx.ndim != 4 or not _dt.is_float(v.dtype) or idx.dtype != "int64":
            raise TypeError(f"takes a 4-d float value and 4-d int64 indices, got {v.type} and "
                            f"{idx.type}")

    def flops(self, node, in_shapes, out_shapes):
        """One addition (or move) per index."""
        return math.prod(in_shapes[1])


class MaxPool2DGrad(_Indexed):
    """``g`` added at the input positions ``indices`` name (max pooling's gradient), into
    zeros of ``x_shape``. Gradient: :class:`MaxPool2DSelect` ``(h, indices)`` to ``g``."""

    name = "max_pool2d_grad"

    def __str__(self):
        return "grad of max_pool2d"

    __repr__ = __str__

    def infer(self, g, idx, xs):
        self._check(g, idx)
        entries = shape_entries(xs)
        if xs.ndim != 1 or len(entries) != 4:
            raise ShapeError(f"the input's shape must be an int64 vector of 4, got {xs.type}")
        return [TensorType(g.dtype, entries)]

    def perform(self, node, g, idx, xs):
        xs = tuple(int(v) for v in xs)
        _check_indices(self, node, g, idx, xs)
        gx = np.zeros((xs[0] * xs[1], xs[2] * xs[3]), dtype=g.dtype)
        rows = np.repeat(np.arange(xs[0] * xs[1]), idx[0, 0].size if idx.size else 0)
        keep = idx.reshape(-1) >= 0
        np.add.at(gx, (rows[keep], idx.reshape(-1)[keep]), g.reshape(-1)[keep])
        return [gx.reshape(xs)]

    def grad(self, node, inputs, outputs, gouts):
        g, idx, _ = inputs
        # the indices are piecewise constant in whatever made them: no contribution (None)
        return [MaxPool2DSelect()(gouts[0], idx), None, NOT_DIFFERENTIABLE]

    def lower(self, node):
        (g, idx, xs), out = node.inputs, node.outputs[0]
        t, read = _target_shape(xs, 4)
        return read + [Call("sg_pool2d_indices_check", [Arr(g), Arr(idx), Shape(t)]),
                       Alloc(out, [At(t, i) for i in range(4)]),
                       Call("sg_max_pool2d_grad", [Workspace(), Arr(out), Arr(g), Arr(idx)],
                            dtypes=(g.dtype,), can_fail=False)]


class MaxPool2DSelect(_Indexed):
    """``h`` read at the input positions ``indices`` name (0 where -1): the gradient of
    :class:`MaxPool2DGrad` with respect to ``g``. Gradient: :class:`MaxPool2DGrad` to ``h``."""

    name = "max_pool2d_select"

    def __str__(self):
        return "max_pool2d's argmax taps of"

    __repr__ = __str__

    def infer(self, h, idx):
        self._check(h, idx)
        return [TensorType(h.dtype, idx.type.shape)]

    def perform(self, node, h, idx):
        _check_indices(self, node, idx, idx, h.shape)
        flat = h.reshape(h.shape[0] * h.shape[1], -1)
        rows = np.repeat(np.arange(flat.shape[0]), idx[0, 0].size if idx.size else 0)
        i = idx.reshape(-1)
        vals = np.where(i >= 0, flat[rows, np.maximum(i, 0)] if flat.size else 0, 0)
        return [np.asarray(vals, dtype=h.dtype).reshape(idx.shape)]

    def grad(self, node, inputs, outputs, gouts):
        h, idx = inputs
        return [MaxPool2DGrad()(gouts[0], idx, shape(h)), None]

    def lower(self, node):
        (h, idx), out = node.inputs, node.outputs[0]
        return [Call("sg_pool2d_indices_check", [Arr(idx), Arr(idx), Shape(h)]),
                Alloc(out, [Dim(idx, i) for i in range(4)]),
                Call("sg_max_pool2d_select", [Workspace(), Arr(out), Arr(h), Arr(idx)],
                     dtypes=(h.dtype,), can_fail=False)]


# --------------------------------------------------------------------------- average pooling

class AvgPool2D(_Pool):
    """The mean of each window (PyTorch's divisors), or of PyTorch's adaptive windows when
    ``output_size`` is set. Gradient: :class:`AvgPool2DGrad` ``(g, shape(x))``."""

    name = "avg_pool2d"

    def infer(self, x):
        self._float4(x)
        return [TensorType(x.dtype, self.out_shape(x.type.shape))]

    def perform(self, node, x):
        os = self.runtime_shape(node, x.shape)
        if 0 in os:
            return [np.zeros(os, dtype=x.dtype)]
        return [np.ascontiguousarray(_avg(x, self, *os[2:]), dtype=x.dtype)]

    def grad(self, node, inputs, outputs, gouts):
        return [AvgPool2DGrad(*self.props())(gouts[0], shape(inputs[0]))]

    def lower(self, node):
        (x,), out = node.inputs, node.outputs[0]
        return _alloc_out(node, Shape(x)) + [
            Call("sg_avg_pool2d", [Workspace(), Arr(out), Arr(x), self._params()],
                 dtypes=(x.dtype,), can_fail=False)]


class AvgPool2DGrad(_Pool):
    """``g`` spread evenly over each window (the input's shape is ``x_shape``, int64[4]).

    Gradient: :class:`AvgPool2D` to ``g`` (the op is linear).
    """

    name = "avg_pool2d_grad"

    def __str__(self):
        return "grad of " + super().__str__().replace("avg_pool2d_grad", "avg_pool2d")

    def infer(self, g, xs):
        self._float4(g)
        entries = shape_entries(xs)
        if xs.ndim != 1 or len(entries) != 4:
            raise ShapeError(f"the input's shape must be an int64 vector of 4, got {xs.type}")
        return [TensorType(g.dtype, entries)]

    def perform(self, node, g, xs):
        xs = tuple(int(v) for v in xs)
        os = self.check_g(node, xs, g)
        if 0 in os:
            return [np.zeros(xs, dtype=g.dtype)]
        return [np.ascontiguousarray(_avg_grad(g, self, xs), dtype=g.dtype)]

    def grad(self, node, inputs, outputs, gouts):
        return [AvgPool2D(*self.props())(gouts[0]), NOT_DIFFERENTIABLE]

    def lower(self, node):
        (g, xs), out = node.inputs, node.outputs[0]
        t, read = _target_shape(xs, 4)
        return read + [Call("sg_pool2d_check", [Shape(t), self._params(), Shape(g)]),
                       Alloc(out, [At(t, i) for i in range(4)]),
                       Call("sg_avg_pool2d_grad", [Workspace(), Arr(out), Arr(g), self._params()],
                            dtypes=(g.dtype,), can_fail=False)]


# --------------------------------------------------------------------------- user functions

def _at_line(err):
    return type(err)(f"{err} (at {user_trace()})")


def _pair(v, what, fn, minimum):
    vals = (v, v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v
    if (not isinstance(vals, (tuple, list)) or len(vals) != 2
            or not all(isinstance(e, (int, np.integer)) and not isinstance(e, bool)
                       for e in vals)):
        raise _at_line(TypeError(f"{fn}: {what} must be an int or a tuple of 2 ints, got {v!r}"))
    if not all(minimum <= e <= _INT_MAX for e in vals):
        raise _at_line(ValueError(f"{fn}: {what} must be >= {minimum} (and < 2**31), got {v!r}"))
    return tuple(int(e) for e in vals)


def _x(x, fn):
    x = as_variable(x)
    if x.ndim != 4:
        raise _at_line(ShapeError(f"{fn}: the input must be 4-d (N, C, H, W), got {x.type}"))
    return x


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """The maximum over each ``kernel_size`` window of NCHW ``x``, as PyTorch's ``max_pool2d``.

    ``stride`` defaults to ``kernel_size``; ``padding`` (at most half the kernel)
    pads with -inf; ``ceil_mode`` rounds the output length up.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.tensor4("x")
    >>> sg.evaluate(sg.nn.max_pool2d(x, 2), {x: np.arange(16.0).reshape(1, 1, 4, 4)})
    array([[[[ 5.,  7.],
             [13., 15.]]]])
    """
    x = _x(x, "max_pool2d")
    k = _pair(kernel_size, "kernel_size", "max_pool2d", 1)
    s = k if stride is None else _pair(stride, "stride", "max_pool2d", 1)
    values, _ = MaxPool2D(k, s, _pair(padding, "padding", "max_pool2d", 0),
                          _pair(dilation, "dilation", "max_pool2d", 1), ceil_mode)(x)
    return values


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """The mean over each ``kernel_size`` window of NCHW ``x``, as PyTorch's ``avg_pool2d``.

    With ``count_include_pad`` (default) a window is divided by its length up to
    the padded input's edge, else by its taps inside the input.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.tensor4("x")
    >>> sg.evaluate(sg.nn.avg_pool2d(x, 2), {x: np.arange(16.0).reshape(1, 1, 4, 4)})
    array([[[[ 2.5,  4.5],
             [10.5, 12.5]]]])
    """
    x = _x(x, "avg_pool2d")
    k = _pair(kernel_size, "kernel_size", "avg_pool2d", 1)
    s = k if stride is None else _pair(stride, "stride", "avg_pool2d", 1)
    return AvgPool2D(k, s, _pair(padding, "padding", "avg_pool2d", 0), (1, 1), ceil_mode,
                     count_include_pad)(x)


def adaptive_avg_pool2d(x, output_size):
    """The mean over PyTorch's adaptive windows, giving an ``output_size`` image.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.tensor4("x")
    >>> sg.evaluate(sg.nn.adaptive_avg_pool2d(x, 1), {x: np.arange(4.0).reshape(1, 1, 2, 2)})
    array([[[[1.5]]]])
    """
    x = _x(x, "adaptive_avg_pool2d")
    size = _pair(output_size, "output_size", "adaptive_avg_pool2d", 0)
    return AvgPool2D(output_size=size)(x)
