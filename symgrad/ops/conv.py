"""Convolutions: ``sg.nn.conv2d`` and ``sg.nn.conv1d``, with PyTorch's semantics.

Data is NCHW, weights OIHW (``(out_channels, in_channels // groups, kh, kw)``),
as in ``torch.nn.functional``. Three ops close the family under
differentiation, so gradients of any order stay readable ops:

- :class:`Conv2D` ``(x, w)``: the convolution (a cross-correlation, as in
  every framework);
- :class:`Conv2DGradInput` ``(g, w, x_shape)``: its adjoint in ``x`` (a
  transposed convolution of the output gradient ``g``);
- :class:`Conv2DGradWeight` ``(x, g, w_shape)``: its adjoint in ``w`` (a
  correlation of the input with the output gradient).

All three are bilinear, and each one's gradient is made of the other two and
the convolution itself: with ``<a, b>`` the sum of ``a * b``,
``<conv(x, w), g> = <x, grad_input(g, w)> = <w, grad_weight(x, g)>``.

The NumPy references lay the windows out with strided slices and contract
them with ``einsum``; compiled, each op is one call of the support library
(``include/sg_conv.c``): im2col of a panel (a few whole images, or a band of
one image's output rows) into a buffer that stays in the core's cache, then one
BLAS gemm per panel and group; threads share the panels a chunk at a time.

A bias is added by broadcasting (``conv2d(..., bias=b)``), so it fuses with
whatever elementwise op follows; compiled, that fused loop runs inside the
convolution as its epilogue (:meth:`Conv2D.lower_epilogue`, ``codegen.lower``'s
``plan_epilogues``): each channel plane of each image goes through the bias and
the activation as the product leaves it, and the convolution's own output is
never stored.
"""

import math

import numpy as np

from .. import dtypes as _dt
from ..errors import ShapeError
from ..graph import NOT_DIFFERENTIABLE, Op, TensorType, as_variable, user_trace
from ..codegen.ir import (Alloc, Arr, Array, At, Bin, Call, Check, Dim, Int, Ints, Local,
                          Shape, Workspace)
from .join import concatenate
from .shape import _target_shape, dimshuffle, make_vector, shape, shape_at, shape_entries, zeros

__all__ = ["conv2d", "conv1d", "conv_transpose2d"]

_PARAMS = ("stride", "padding", "dilation", "groups", "dims")
_INT_MAX = 2**31 - 1


# --------------------------------------------------------------------------- geometry

def _out_len(n, k, s, p0, p1, d):
    """The output length along one axis (None when unknown); -1 when the kernel is too big."""
    if n is None or k is None:
        return None
    span = d * (k - 1) + 1
    return -1 if n + p0 + p1 < span else (n + p0 + p1 - span) // s + 1


def _user_shape(op, s):
    """A shape as the user wrote it: a conv1d's without the height of 1 it runs on."""
    return (s[0], s[1], s[3]) if op.dims == 1 else tuple(s)


def _check_static(op, xs, wsh):
    """ShapeError for what the static shapes already rule out (None: unknown)."""
    (sh, sw), (pt, pb, pl, pr), (dh, dw), g = op.stride, op.padding, op.dilation, op.groups
    c, (o, cg, kh, kw) = xs[1], wsh
    if c is not None and cg is not None and c != cg * g:
        raise ShapeError(f"the input has {c} channels but the weight of shape "
                         f"{_user_shape(op, wsh)} with groups={g} expects {cg * g}")
    if o is not None and o % g:
        raise ShapeError(f"the weight's {o} output channels are not divisible by groups={g}")
    for axis, n, k, s, p0, p1, d in (("height", xs[2], kh, sh, pt, pb, dh),
                                     ("length" if op.dims == 1 else "width", xs[3], kw, sw, pl,
                                      pr, dw)):
        if k is not None and k < 1:
            raise ShapeError(f"the kernel of shape {_user_shape(op, wsh)} is empty")
        if _out_len(n, k, s, p0, p1, d) == -1:
            raise ShapeError(f"the kernel's {axis} {k} (dilated: {d * (k - 1) + 1}) is larger "
                             f"than the padded input's {axis} {n + p0 + p1}")
    return (xs[0], o, _out_len(xs[2], kh, sh, pt, pb, dh), _out_len(xs[3], kw, sw, pl, pr, dw))


def _windows(xp, op, oh, ow, kh, kw):
    """``(N, C, kh * kw, OH, OW)``: the padded input's value under each tap, per output pixel."""
    (sh, sw), (dh, dw) = op.stride, op.dilation
    taps = [xp[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
            for i in range(kh) for j in range(kw)]
    return np.stack(taps, axis=2)


def _padded(x, op):
    pt, pb, pl, pr = op.padding
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))


def _runtime_shape(op, node, xs, wsh):
    """The output shape, or sg.ShapeError naming the op and the user's line."""
    try:
        out = _check_static(op, tuple(int(v) for v in xs), tuple(int(v) for v in wsh))
    except ShapeError as e:
        raise ShapeError(f"{op} at {node.trace}: {e}") from None
    return out


# --------------------------------------------------------------------------- the ops

class _ConvBase(Op):
    """What the three ops share: the parameters, their checks, the float type rule."""

    __props__ = _PARAMS
    register = False

    def __init__(self, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1, dims=2):
        self.stride, self.padding = tuple(stride), tuple(padding)
        self.dilation, self.groups = tuple(dilation), int(groups)
        # 1: a conv1d (a height of 1 between dimshuffles), printed as one, and named so
        # where a gradient's node says which op it comes from
        self.dims = int(dims)
        if self.dims == 1:
            self.name = type(self).name.replace("conv2d", "conv1d")

    def _params(self):
        return Ints(self.stride + self.padding + self.dilation + (self.groups, self.dims))

    def _flop_count(self, xs, wsh, os):
        # a multiply-add per output element and tap of its group's input channels
        return 2 * math.prod(os) * math.prod(wsh[1:])

    def _float_pair(self, a, b, names):
        for v, what in zip((a, b), names):
            if v.ndim != 4:
                raise ShapeError(f"the {what} must be 4-d, got {v.type}")
        if a.dtype != b.dtype or not _dt.is_float(a.dtype):
            raise TypeError(f"takes float operands of one dtype, got {a.type} and {b.type}; "
                            f"cast one of them (a layer's dtype= sets its parameters')")

    def _label(self, what):
        """``what`` ("conv2d", "grad of conv2d wrt input", ...) as the user's op names it,
        with the parameters that are not their defaults."""
        (sh, sw), (pt, pb, pl, pr), (dh, dw) = self.stride, self.padding, self.dilation
        if self.dims == 1:  # the width's parameters only
            parts = [f"stride={sw}"] * (sw != 1) + [f"padding={pl},{pr}"] * (pl or pr)
            parts += [f"dilation={dw}"] * (dw != 1)
        else:
            parts = [f"stride={sh}x{sw}"] * ((sh, sw) != (1, 1))
            parts += [f"padding={pt},{pb},{pl},{pr}"] * any(self.padding)
            parts += [f"dilation={dh}x{dw}"] * ((dh, dw) != (1, 1))
        parts += [f"groups={self.groups}"] * (self.groups != 1)
        what = what.replace("conv2d", "conv1d") if self.dims == 1 else what
        return what + (f"{{{', '.join(parts)}}}" if parts else "")


class Conv2D(_ConvBase):
    """``out[n, o, r, q] = sum over c, i, j of
    w[o, c, i, j] * xpad[n, g * Cg + c, r * sh + i * dh, q * sw + j * dw]`` (``g``: o's group).

    Gradient: ``grad_input(g, w)`` and ``grad_weight(x, g)``.
    """

    name = "conv2d"

    def __str__(self):
        return self._label("conv2d")

    __repr__ = __str__

    def flops(self, node, in_shapes, out_shapes):
        """Two per output element and tap (a multiply-add), as a matrix product counts."""
        return self._flop_count(in_shapes[0], in_shapes[1], out_shapes[0])

    def infer(self, x, w):
        self._float_pair(x, w, ("input", "weight"))
        return [TensorType(x.dtype, _check_static(self, x.type.shape, w.type.shape))]

    def perform(self, node, x, w):
        n, o, oh, ow = _runtime_shape(self, node, x.shape, w.shape)
        g, cg, kh, kw = self.groups, w.shape[1], w.shape[2], w.shape[3]
        out = np.zeros((n, o, oh, ow), dtype=x.dtype)
        if out.size == 0 or cg == 0:
            return [out]
        cols = _windows(_padded(x, self), self, oh, ow, kh, kw)
        cols = cols.reshape(n, g, cg, kh * kw, oh, ow)
        wg = w.reshape(g, o // g, cg, kh * kw)
        out = np.einsum("ngckhw,gock->ngohw", cols, wg, optimize=True)
        return [np.ascontiguousarray(out.reshape(n, o, oh, ow), dtype=x.dtype)]

    def grad(self, node, inputs, outputs, gouts):
        x, w = inputs
        (g,) = gouts
        p = self.props()
        return [Conv2DGradInput(*p)(g, w, shape(x)), Conv2DGradWeight(*p)(x, g, shape(w))]

    def lower(self, node):
        (x, w), out = node.inputs, node.outputs[0]
        os = Local("oshape", length=4)
        return [Array(os),
                Call("sg_conv2d_shape", [Shape(x), Shape(w), self._params(), Shape(os)]),
                Alloc(out, [At(os, i) for i in range(4)]),
                Call("sg_conv2d", [Workspace(), Arr(out), Arr(x), Arr(w), self._params()],
                     dtypes=(x.dtype,), blas=_blas(x.dtype))]

    def lower_epilogue(self, node, result, epilogue):
        """The convolution with an elementwise loop applied to each channel plane of each
        image as the product leaves it (``codegen.lower``'s epilogues: a bias, an
        activation): ``result``, the loop's, has the convolution's shape (conv1d's without
        its axis of length 1) and is written in place of the convolution's output."""
        x, w = node.inputs
        os = Local("oshape", length=4)
        kept = [a for a in range(4) if epilogue.axes[a] >= 0]
        return [Array(os),
                Call("sg_conv2d_shape", [Shape(x), Shape(w), self._params(), Shape(os)]),
                Alloc(result, [At(os, a) for a in kept]),
                Call("sg_conv2d_epi", [Workspace(), Arr(result), Shape(os), Arr(x), Arr(w),
                                       self._params(), epilogue],
                     dtypes=(x.dtype,), blas=_blas(x.dtype))]


class Conv2DGradInput(_ConvBase):
    """The gradient of ``conv2d`` with respect to its input: ``g`` (the output's gradient)
    spread back over the windows it came from, weighted by ``w`` (a transposed
    convolution). ``x_shape`` is the input's shape (int64[4]).

    Gradient: ``conv2d(h, w)`` to ``g`` and ``grad_weight(h, g)`` to ``w`` (``h``: this
    op's output gradient).
    """

    name = "conv2d_grad_input"

    def __str__(self):
        return self._label("grad of conv2d wrt input")

    __repr__ = __str__

    def flops(self, node, in_shapes, out_shapes):
        """As the convolution it differentiates: a multiply-add per output element and tap."""
        return self._flop_count(out_shapes[0], in_shapes[1], in_shapes[0])

    def infer(self, g, w, xs):
        self._float_pair(g, w, ("output gradient", "weight"))
        entries = shape_entries(xs)
        if xs.ndim != 1 or len(entries) != 4:
            raise ShapeError(f"the input's shape must be an int64 vector of 4, got {xs.type}")
        return [TensorType(g.dtype, entries)]

    def perform(self, node, g, w, xs):
        xs = tuple(int(v) for v in xs)
        os = _runtime_shape(self, node, xs, w.shape)
        _same_shape(self, node, g.shape, os)
        n, c, h, wd = xs
        gr, cg, kh, kw = self.groups, w.shape[1], w.shape[2], w.shape[3]
        (sh, sw), (pt, pb, pl, pr), (dh, dw) = self.stride, self.padding, self.dilation
        oh, ow = os[2], os[3]
        xp = np.zeros((n, c, h + pt + pb, wd + pl + pr), dtype=g.dtype)
        if g.size and cg:
            gg = g.reshape(n, gr, os[1] // gr, oh, ow)
            wg = w.reshape(gr, os[1] // gr, cg, kh * kw)
            cols = np.einsum("ngohw,gock->ngckhw", gg, wg, optimize=True)
            cols = cols.reshape(n, c, kh * kw, oh, ow)
            for i in range(kh):
                for j in range(kw):
                    xp[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                       j * dw:j * dw + sw * (ow - 1) + 1:sw] += cols[:, :, i * kw + j]
        return [np.ascontiguousarray(xp[:, :, pt:pt + h, pl:pl + wd])]

    def grad(self, node, inputs, outputs, gouts):
        g, w, _ = inputs
        (h,) = gouts
        p = self.props()
        return [Conv2D(*p)(h, w), Conv2DGradWeight(*p)(h, g, shape(w)), NOT_DIFFERENTIABLE]

    def lower(self, node):
        (g, w, xs), out = node.inputs, node.outputs[0]
        t, read = _target_shape(xs, 4)
        return read + [
            Call("sg_conv2d_check", [Shape(t), Shape(w), self._params(), Shape(g)]),
            Alloc(out, [At(t, i) for i in range(4)]),
            Call("sg_conv2d_grad_input", [Workspace(), Arr(out), Arr(g), Arr(w), self._params()],
                 dtypes=(g.dtype,), blas=_blas(g.dtype))]


class Conv2DGradWeight(_ConvBase):
    """The gradient of ``conv2d`` with respect to its weight: the correlation of the input
    ``x`` with the output gradient ``g``, summed over the batch. ``w_shape`` is the
    weight's shape (int64[4]).

    Gradient: ``grad_input(g, h)`` to ``x`` and ``conv2d(x, h)`` to ``g`` (``h``: this
    op's output gradient).
    """

    name = "conv2d_grad_weight"

    def __str__(self):
        return self._label("grad of conv2d wrt weight")

    __repr__ = __str__

    def flops(self, node, in_shapes, out_shapes):
        """As the convolution it differentiates: a multiply-add per output element and tap."""
        return self._flop_count(in_shapes[0], out_shapes[0], in_shapes[1])

    def infer(self, x, g, wsh):
        self._float_pair(x, g, ("input", "output gradient"))
        entries = shape_entries(wsh)
        if wsh.ndim != 1 or len(entries) != 4:
            raise ShapeError(f"the weight's shape must be an int64 vector of 4, got {wsh.type}")
        return [TensorType(x.dtype, entries)]

    def perform(self, node, x, g, wsh):
        wsh = tuple(int(v) for v in wsh)
        os = _runtime_shape(self, node, x.shape, wsh)
        _same_shape(self, node, g.shape, os)
        n, o, oh, ow = os
        gr, cg, kh, kw = self.groups, wsh[1], wsh[2], wsh[3]
        if not (n and oh and ow):
            return [np.zeros(wsh, dtype=x.dtype)]
        cols = _windows(_padded(x, self), self, oh, ow, kh, kw)
        cols = cols.reshape(n, gr, cg, kh * kw, oh, ow)
        gg = g.reshape(n, gr, o // gr, oh, ow)
        gw = np.einsum("ngckhw,ngohw->gock", cols, gg, optimize=True)
        return [np.ascontiguousarray(gw.reshape(wsh), dtype=x.dtype)]

    def grad(self, node, inputs, outputs, gouts):
        x, g, _ = inputs
        (h,) = gouts
        p = self.props()
        return [Conv2DGradInput(*p)(g, h, shape(x)), Conv2D(*p)(x, h), NOT_DIFFERENTIABLE]

    def lower(self, node):
        (x, g, wsh), out = node.inputs, node.outputs[0]
        t, read = _target_shape(wsh, 4)
        return read + [
            Call("sg_conv2d_check", [Shape(x), Shape(t), self._params(), Shape(g)]),
            Alloc(out, [At(t, i) for i in range(4)]),
            Call("sg_conv2d_grad_weight", [Workspace(), Arr(out), Arr(x), Arr(g),
                                           self._params()],
                 dtypes=(x.dtype,), blas=_blas(x.dtype))]


class ConvTranspose2D(Conv2DGradInput):
    """``sg.nn.conv_transpose2d``: the adjoint of the convolution whose input has shape
    ``out_shape``, applied to ``x`` -- the same computation as :class:`Conv2DGradInput`,
    named as the user wrote it. Its weight is ``(C_in, C_out // groups, kh, kw)``.
    """

    name = "conv_transpose2d"

    def __str__(self):
        return self._label("conv_transpose2d")

    __repr__ = __str__

    # Checked here in the user's terms, before the adjoint's own checks (which would speak
    # of an "output gradient"): the input's channels against the weight's first axis, the
    # groups, and the output's size, computed from the user's sizes and parameters (a
    # height or width below 1 is PyTorch's "Output size is too small").
    _CHANNELS = ("the input has %lld channels but the weight, of shape (C_in, C_out // groups, "
                 "kh, kw), expects C_in = %lld")
    _GROUPS = "the weight's %lld input channels are not divisible by groups=%lld"
    _TOO_SMALL = ("the output would have height %lld and width %lld: (H - 1) * stride - "
                  "2 * padding + dilation * (kernel - 1) + output_padding + 1 must be at least "
                  "1 on each axis; use less padding or a larger input")

    def perform(self, node, g, w, xs):
        c, cin, gr = g.shape[1], w.shape[0], self.groups
        for bad, text, args in ((c != cin, self._CHANNELS, (c, cin)),
                                (cin % gr, self._GROUPS, (cin, gr)),
                                (min(int(xs[2]), int(xs[3])) < 1, self._TOO_SMALL, xs[2:])):
            if bad:
                raise ShapeError(f"{self} at {node.trace}: "
                                 + text.replace("%lld", "{}").format(*(int(a) for a in args)))
        return super().perform(node, g, w, xs)

    def lower(self, node):
        g, w, _ = node.inputs
        stmts = super().lower(node)
        t = stmts[0].local  # _target_shape's local array, read by stmts[1]
        small = Bin("or", Bin("<", At(t, 2), Int(1)), Bin("<", At(t, 3), Int(1)))
        checks = [Check(Bin("!=", Dim(g, 1), Dim(w, 0)), "shape", self._CHANNELS,
                        [Dim(g, 1), Dim(w, 0)]),
                  Check(Bin("!=", Bin("%", Dim(w, 0), Int(self.groups)), Int(0)), "shape",
                        self._GROUPS, [Dim(w, 0), Int(self.groups)]),
                  Check(small, "shape", self._TOO_SMALL, [At(t, 2), At(t, 3)])]
        return stmts[:2] + checks + stmts[2:]


def _same_shape(op, node, got, want):
    if tuple(got) != tuple(want):
        raise ShapeError(f"{op} at {node.trace}: the output gradient has shape "
                         f"{_user_shape(op, got)} but the convolution's output has shape "
                         f"{_user_shape(op, want)}")


def _blas(dtype):
    return {"float32": ("sgemm",), "float64": ("dgemm",)}[dtype]


# --------------------------------------------------------------------------- user functions

def _at_line(err):
    return type(err)(f"{err} (at {user_trace()})")


def _pair(v, what, fn, n=2, minimum=1):
    """An int or a tuple of ``n`` ints, each >= ``minimum`` and < 2**31."""
    vals = (v,) * n if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v
    if (not isinstance(vals, (tuple, list)) or len(vals) != n
            or not all(isinstance(e, (int, np.integer)) and not isinstance(e, bool)
                       for e in vals)):
        raise _at_line(TypeError(f"{fn}: {what} must be an int or a tuple of {n} ints, "
                                 f"got {v!r}"))
    if not all(minimum <= e <= _INT_MAX for e in vals):
        raise _at_line(ValueError(f"{fn}: {what} must be >= {minimum} (and < 2**31), got {v!r}"))
    return tuple(int(e) for e in vals)


def _padding(padding, kernel, dilation, stride, fn, n=2):
    """(before, after) per spatial axis from an int, a tuple, "valid" or "same"; None for
    "same" with a kernel whose size is known only at call time (:func:`_pad_same`)."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        if padding == "same":
            if any(s != 1 for s in stride):
                raise _at_line(ValueError(f"{fn}: padding='same' needs stride 1 (as PyTorch), "
                                          f"got stride={stride}"))
            if None in kernel:
                return None
            # PyTorch's rule: an odd total puts the extra row or column after
            totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
            return tuple((t // 2, t - t // 2) for t in totals)
        raise _at_line(ValueError(f"{fn}: padding must be an int, a tuple, 'valid' or 'same', "
                                  f"got {padding!r}"))
    return tuple((p, p) for p in _pair(padding, "padding", fn, n, minimum=0))


def _prepare(x, w, bias, fn, nd):
    x, w = as_variable(x), as_variable(w)
    for v, what in ((x, "input"), (w, "weight")):
        if v.ndim != nd + 2:
            raise _at_line(ShapeError(f"{fn}: the {what} must be {nd + 2}-d, got {v.type}"))
    if bias is not None:
        bias = _bias(bias, x, w, w.type.shape[0], fn)
    return x, w, bias


def _bias(bias, x, w, o, fn):
    """The bias as a Variable, 1-d, of ``o`` entries (None: unknown) and of x's dtype: as
    PyTorch (and batch norm's weight and bias), another dtype is refused, not promoted (a
    float64 bias turned a float32 network's every later result into float64). When the
    weight's dtype is not x's either, the op says so (that is the mistake to report)."""
    bias = as_variable(bias)
    if bias.ndim != 1 or (None not in (o, bias.type.shape[0]) and o != bias.type.shape[0]):
        raise _at_line(ShapeError(f"{fn}: the bias must be 1-d with one entry per output "
                                  f"channel ({o}), got {bias.type}"))
    if bias.dtype != x.dtype and w.dtype == x.dtype:
        raise _at_line(TypeError(f"{fn}: the bias is {bias.type} but the input is {x.type}; "
                                 f"cast one of them"))
    return bias


def _pad_same(x, w, dilation):
    """x with the zeros padding="same" adds around it, for a kernel whose size is known only
    at call time: the convolution's padding is a parameter of its op, so it cannot follow
    the kernel; x is padded (a copy) and convolved with none."""
    nd = len(dilation)
    for a, d in enumerate(dilation):
        axis = x.ndim - nd + a
        total = d * (_dim(w, axis) - 1)
        # PyTorch's rule: an odd total puts the extra row or column after
        before = total // 2
        parts = []
        for n in (before, total - before):
            lengths = [_dim(x, i) for i in range(x.ndim)]
            lengths[axis] = n
            parts.append(zeros(lengths, x.dtype))
        x = concatenate([parts[0], x, parts[1]], axis=axis)
    return x


def _with_bias(out, bias, nd):
    if bias is None:
        return out
    return out + dimshuffle(bias, "x", 0, *("x",) * nd)


def conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-d convolution (cross-correlation) of NCHW ``x`` with OIHW ``w``, as PyTorch's.

    Parameters
    ----------
    x : Variable, (N, C, H, W), float
    w : Variable, (O, C // groups, kh, kw), of x's dtype
    bias : Variable, (O,), optional
    stride, dilation : int or (int, int)
    padding : int, (int, int), "valid" or "same" (stride 1; an odd total pads one
        more row or column after, as PyTorch; with a kernel whose size is known only at
        call time, x is padded with zeros, a copy, before a convolution without padding)
    groups : int, dividing C and O (``groups=C``: depthwise)

    Returns
    -------
    Variable, (N, O, OH, OW) with ``OH = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1``.

    Batch and spatial sizes may change from call to call; what the static shapes
    already rule out (channels, a kernel larger than the padded input) is a
    ``sg.ShapeError`` here, the rest at call time, naming the op and this line.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x, w = sg.tensor4("x"), sg.tensor4("w")
    >>> sg.evaluate(sg.nn.conv2d(x, w), {x: np.ones((1, 1, 3, 3)), w: np.ones((1, 1, 2, 2))})
    array([[[[4., 4.],
             [4., 4.]]]])
    """
    x, w, bias = _prepare(x, w, bias, "conv2d", 2)
    stride = _pair(stride, "stride", "conv2d")
    dilation = _pair(dilation, "dilation", "conv2d")
    g = _pair(groups, "groups", "conv2d", 1)[0]
    pads = _padding(padding, w.type.shape[2:], dilation, stride, "conv2d")
    if pads is None:
        x, pads = _pad_same(x, w, dilation), ((0, 0), (0, 0))
    op = Conv2D(stride, pads[0] + pads[1], dilation, g)
    return _with_bias(op(x, w), bias, 2)


def conv1d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-d convolution of NCL ``x`` with OIK ``w``, as PyTorch's ``conv1d``.

    A ``conv2d`` over a height of 1 between dimshuffles, which the graph prints as
    ``conv1d`` (its gradients as ``grad of conv1d wrt ...``); arguments as
    :func:`conv2d` with ints or 1-tuples.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x, w = sg.tensor3("x"), sg.tensor3("w")
    >>> sg.evaluate(sg.nn.conv1d(x, w), {x: np.ones((1, 1, 3)), w: np.ones((1, 1, 2))})
    array([[[2., 2.]]])
    """
    x, w, bias = _prepare(x, w, bias, "conv1d", 1)
    stride = _pair(stride, "stride", "conv1d", 1)
    dilation = _pair(dilation, "dilation", "conv1d", 1)
    g = _pair(groups, "groups", "conv1d", 1)[0]
    pads = _padding(padding, w.type.shape[2:], dilation, stride, "conv1d", 1)
    if pads is None:
        x, pads = _pad_same(x, w, dilation), ((0, 0),)
    (pad,) = pads
    op = Conv2D((1,) + stride, (0, 0) + pad, (1,) + dilation, g, dims=1)
    out = op(dimshuffle(x, 0, 1, "x", 2), dimshuffle(w, 0, 1, "x", 2))
    return _with_bias(dimshuffle(out, 0, 1, 3), bias, 1)


def _dim(v, axis):
    """``v``'s length on ``axis``: an int where static, else the symbolic ``shape_at``."""
    n = v.type.shape[axis]
    return n if n is not None else shape_at(v, axis)


def conv_transpose2d(x, w, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed 2-d convolution of NCHW ``x`` with ``w`` of shape
    ``(C_in, C_out // groups, kh, kw)``, as PyTorch's ``conv_transpose2d``: the gradient
    of ``conv2d`` with respect to its input, given the output's gradient.

    The output's height is ``(H - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1`` (width
    alike); ``output_padding`` must be smaller than the stride or the dilation, as
    PyTorch's (one of a stride or more adds rows or columns no window of the convolution
    it transposes reaches: the adjoint of that convolution applied to ``x`` padded with
    zeros after its last row or column).

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x, w = sg.tensor4("x"), sg.tensor4("w")
    >>> sg.evaluate(sg.nn.conv_transpose2d(x, w), {x: np.ones((1, 1, 1, 2)),
    ...                                            w: np.ones((1, 1, 1, 2))})
    array([[[[1., 2., 1.]]]])
    """
    fn = "conv_transpose2d"
    x, w, _ = _prepare(x, w, None, fn, 2)
    stride, dilation = _pair(stride, "stride", fn), _pair(dilation, "dilation", fn)
    g = _pair(groups, "groups", fn, 1)[0]
    pad = _pair(padding, "padding", fn, minimum=0)
    opad = _pair(output_padding, "output_padding", fn, minimum=0)
    if any(o >= max(s, d) for o, s, d in zip(opad, stride, dilation)):
        raise _at_line(ValueError(f"{fn}: output_padding {opad} must be smaller than the "
                                  f"stride {stride} or the dilation {dilation}"))
    cin, cout_g = w.type.shape[:2]
    if None not in (x.type.shape[1], cin) and x.type.shape[1] != cin:
        raise _at_line(ShapeError(f"{fn}: the input has {x.type.shape[1]} channels but the "
                                  f"weight of shape {w.type.shape} expects {cin}"))
    if cin is not None and cin % g:
        raise _at_line(ShapeError(f"{fn}: the weight's {cin} input channels (its first axis) are "
                                  f"not divisible by groups={g}"))
    if bias is not None:
        bias = _bias(bias, x, w, None if cout_g is None else cout_g * g, fn)
    sizes = [(_dim(x, 2 + a) - 1) * stride[a] - 2 * pad[a]
             + dilation[a] * (_dim(w, 2 + a) - 1) + opad[a] + 1 for a in range(2)]
    for a, axis in enumerate(("height", "width")):
        if isinstance(sizes[a], int) and sizes[a] < 1:  # else checked at call time
            raise _at_line(ShapeError(
                f"{fn}: the output's {axis} would be {sizes[a]}: ({axis[0].upper()} - 1) * "
                f"stride - 2 * padding "
                f"+ dilation * (kernel - 1) + output_padding + 1 = ({_dim(x, 2 + a)} - 1) * "
                f"{stride[a]} - 2 * {pad[a]} + {dilation[a]} * ({_dim(w, 2 + a)} - 1) + "
                f"{opad[a]} + 1 must be at least 1; use less padding or a larger input"))
    out_shape = make_vector([_dim(x, 0), _dim(w, 1) * g] + sizes)
    for a in range(2):
        # the convolution of an input of out_shape has opad // stride more outputs than x
        # along this axis, which nothing reaches: x's gradient there is zero
        if opad[a] >= stride[a]:
            lengths = [_dim(x, i) for i in range(4)]
            lengths[2 + a] = opad[a] // stride[a]
            x = concatenate([x, zeros(lengths, x.dtype)], axis=2 + a)
    op = ConvTranspose2D(stride, (pad[0], pad[0], pad[1], pad[1]), dilation, g)
    return _with_bias(op(x, w, out_shape), bias, 2)
