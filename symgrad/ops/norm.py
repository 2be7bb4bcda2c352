"""Normalisation: ``sg.nn.batch_norm`` and ``sg.nn.layer_norm``, as PyTorch's.

Training-mode batch norm and layer norm are ops of their own, each with a
gradient op, rather than compositions of ``mean``, ``var`` and elementwise
ops: composed, batch norm's gradient is some twenty nodes of broadcasts and
``sum_to`` that print as an unreadable expansion, and compiled they take
several passes over the activations where two suffice. Measured on the
ResNet block's activations (32x64x32x32, float32, one thread, CPU time, best
of 5x20, output gradient given): composed, forward 7.8 ms and forward +
gradients 29.3 ms; the ops below 3.8 and 7.4 ms (PyTorch eager 7.0 and
11.1 ms).

- :class:`BatchNorm` ``(x, weight, bias)`` -> ``(out, mean, var)``: ``x``
  normalised per channel (axis 1) by the statistics over every other axis;
  ``mean`` and the *unbiased* ``var`` are the batch statistics the running
  averages take (PyTorch's rule). Gradient: :class:`BatchNormGrad`
  ``(g, x, weight, mean, var)`` -> ``(gx, gweight, gbias)``, printed
  ``grad of batch_norm``.
- :class:`LayerNorm` ``(x, weight, bias)`` -> ``(out, mean, rstd)``: each
  row normalised over its last ``k`` axes. Gradient: :class:`LayerNormGrad`.

Second order: the gradient ops' own gradients are composed from ordinary ops
(the formulas below, differentiated by ``sg.grad``), as PyTorch's double
backward of batch norm is a formula too. Inference-mode batch norm is a
composition: one fused elementwise loop with the running statistics.

Compiled, each op is one call of ``include/sg_norm.c``: a channel (a row) at
a time, its statistics summed in double in two passes (the mean, then the
squared deviations), then its results.
"""

import functools
import math
import numbers
import operator
import threading

import numpy as np

from .. import dtypes as _dt
from ..errors import DistributedError, ShapeError
from ..graph import (Op, SharedVariable, TensorType, Variable, as_variable, clone_replace,
                     constant, user_trace)
from ..codegen.ir import Alloc, Arr, Call, Dim, Int, Lit, Workspace
from .elemwise import cast, gt, sqrt, where
from .shape import reshape, shape_at

__all__ = ["batch_norm", "layer_norm", "collect_updates"]


def _at_line(err):
    return type(err)(f"{err} (at {user_trace()})")


def _rd():
    from . import reduce  # imported at call time: built after this module
    return reduce


# --------------------------------------------------------------------------- NumPy references

def _bn_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _per_channel_count(xshape):
    """Values per channel: every length but the channels' (axis 1), which may be 0."""
    return math.prod(xshape[:1] + xshape[2:])


def _bn_count(op, node, xshape):
    """Values per channel of a training-mode batch: 0 (an empty batch, as PyTorch's: an empty
    result) or more than 1; a single value cannot be normalised."""
    m = _per_channel_count(xshape)
    if m == 1:
        raise ShapeError(f"{op} at {node.trace}: expected more than 1 value per channel when "
                         f"training, got an input of shape {tuple(xshape)}")
    return m


def _per_channel(v, ndim):
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _bn_reference(x, w, b, eps):
    """``(out, mean, unbiased var)`` in float64; statistics 0 for an empty batch (the
    running-statistic updates do not read them then)."""
    if _per_channel_count(x.shape) == 0:
        zeros = np.zeros(x.shape[1])
        return x.astype(np.float64), zeros, zeros
    ax, xd = _bn_axes(x), x.astype(np.float64)
    mean = xd.mean(axis=ax)
    dev = xd - _per_channel(mean, x.ndim)
    m = _per_channel_count(x.shape)
    var = (dev * dev).sum(axis=ax) / m
    out = dev / _per_channel(np.sqrt(var + eps), x.ndim) * _per_channel(w, x.ndim) \
        + _per_channel(b, x.ndim)
    return out, mean, var * m / (m - 1)


def _bn_grad_reference(g, x, w, mean, var, eps):
    ax, n = _bn_axes(x), x.ndim
    m = _per_channel_count(x.shape)
    if m == 0:  # an empty batch: sums over nothing
        return g.astype(np.float64), np.zeros(x.shape[1]), np.zeros(x.shape[1])
    inv = 1 / np.sqrt(var.astype(np.float64) * (m - 1) / m + eps)
    xhat = (x.astype(np.float64) - _per_channel(mean, n)) * _per_channel(inv, n)
    gd = g.astype(np.float64)
    gb, gw = gd.sum(axis=ax), (gd * xhat).sum(axis=ax)
    gx = _per_channel(w * inv, n) * (gd - _per_channel(gb / m, n) - xhat * _per_channel(gw / m, n))
    return gx, gw, gb


#: ``ACTIVE.sync``: the collectives of the data-parallel train step this thread is running
#: (symgrad/distributed.py's ``_Sync``, set around its gradient function), None outside one.
ACTIVE = threading.local()


def sync_allreduce(buf):
    """``buf`` (float64, 1-d) summed over the ranks of the running data-parallel step, in
    place: what a synchronised batch norm calls, in mode "py" directly and compiled through
    the support library's hook (sg_norm.c's ``sg_allreduce``)."""
    sync = getattr(ACTIVE, "sync", None)
    if sync is None:
        raise DistributedError("a batch norm synchronised across ranks ran outside a "
                               "data-parallel train step (sg.train_step(..., comm=...))")
    sync.allreduce(buf)


_sync_sum = sync_allreduce


def _bn_sync_reference(op, node, x, w, b, eps):
    """``_bn_reference`` over the global batch: the sums of every rank's values (the same
    collectives as sg_norm.c's sg_batch_norm_sync)."""
    c, m = x.shape[1], _per_channel_count(x.shape)
    ax, xd = _bn_axes(x), x.astype(np.float64)
    sums = np.zeros(c + 1)
    if m:
        sums[:c] = xd.sum(axis=ax)
    sums[c] = m
    _sync_sum(sums)
    total = sums[c]
    if total == 1:
        raise ShapeError(f"{op} at {node.trace}: expected more than 1 value per channel when "
                         f"training, got 1 across the ranks (an input of shape "
                         f"{tuple(x.shape)} here)")
    mean = sums[:c] / total if total else np.zeros(c)
    q = np.zeros(c)
    dev = xd - _per_channel(mean, x.ndim)
    if m:
        q[:] = (dev * dev).sum(axis=ax)
    _sync_sum(q)
    if not total:
        return xd, np.zeros(c), np.zeros(c)
    var = q / total  # from here on, _bn_reference's operations
    out = dev / _per_channel(np.sqrt(var + eps), x.ndim) * _per_channel(w, x.ndim) \
        + _per_channel(b, x.ndim)
    return out, mean, var * total / (total - 1)


def _bn_sync_grad_reference(g, x, w, mean, var, eps):
    """``_bn_grad_reference`` over the global batch: the weight's and bias's gradients are
    this rank's sums, the input's uses every rank's (``g``: the same multiple of the global
    loss's gradient on every rank, as a data-parallel step makes it)."""
    c, m, ax, n = x.shape[1], _per_channel_count(x.shape), _bn_axes(x), x.ndim
    gd = g.astype(np.float64)
    dev = x.astype(np.float64) - _per_channel(mean, n)
    sums = np.zeros(2 * c + 1)  # the sums of g and g * (x - mean), then the count
    if m:
        sums[:c], sums[c:2 * c] = gd.sum(axis=ax), (gd * dev).sum(axis=ax)
    local = sums[:2 * c].copy()
    sums[2 * c] = m
    _sync_sum(sums)
    total = sums[2 * c]
    if not total:
        return gd, np.zeros(c), np.zeros(c)
    inv = 1 / np.sqrt(var.astype(np.float64) * (total - 1) / total + eps)
    xhat = dev * _per_channel(inv, n)
    gb, gw = sums[:c], sums[c:2 * c] * inv
    gx = _per_channel(w * inv, n) * (gd - _per_channel(gb / total, n)
                                     - xhat * _per_channel(gw / total, n))
    return gx, local[c:] * inv, local[:c]


def _ln_axes(x, k):
    return tuple(range(x.ndim - k, x.ndim))


def _ln_reference(x, w, b, k, eps):
    ax, xd = _ln_axes(x, k), x.astype(np.float64)
    with np.errstate(all="ignore"):
        mean = xd.mean(axis=ax, keepdims=True) if xd.size else np.full(
            x.shape[:x.ndim - k] + (1,) * k, np.nan)
        dev = xd - mean
        var = (dev * dev).mean(axis=ax, keepdims=True) if xd.size else mean
        rstd = 1 / np.sqrt(var + eps)
    out = dev * rstd * w + b
    lead = x.shape[:x.ndim - k]
    return out, mean.reshape(lead), rstd.reshape(lead)


def _ln_grad_reference(g, x, w, mean, rstd, k):
    ax, lead = _ln_axes(x, k), mean.shape + (1,) * k
    m, r = mean.astype(np.float64).reshape(lead), rstd.astype(np.float64).reshape(lead)
    xhat = (x.astype(np.float64) - m) * r
    gd = g.astype(np.float64)
    gh = gd * w
    d = math.prod(x.shape[x.ndim - k:])
    rows = tuple(range(x.ndim - k))
    with np.errstate(all="ignore"):
        gx = r * (gh - gh.sum(axis=ax, keepdims=True) / d
                  - xhat * (gh * xhat).sum(axis=ax, keepdims=True) / d)
    return gx, (gd * xhat).sum(axis=rows), gd.sum(axis=rows)


# --------------------------------------------------------------------------- composed formulas
#
# The same formulas as graph: the gradient ops' gradients (second order) and the gradient
# through the statistics outputs are these, differentiated by autodiff's vjp.

def _channel(v, x):
    """A (C,) value shaped to broadcast along x's channel axis."""
    return reshape(v, (1, -1) + (1,) * (x.ndim - 2)) if x.ndim > 2 else v


def _count(x, axes):
    """The number of values a statistic averages: a float, or a symbolic 0-d of x's dtype."""
    lens = [x.type.shape[a] for a in axes]
    if None not in lens:
        return float(math.prod(lens))
    n = None
    for a in axes:
        part = x.type.shape[a] if x.type.shape[a] is not None else shape_at(x, a)
        n = part if n is None else n * part
    return cast(n, x.dtype)


def _bn_stats_graph(x):
    ax, rd = _bn_axes(x), _rd()
    m = _count(x, ax)
    mean = rd.mean(x, axis=ax)
    dev = x - _channel(mean, x)
    return [mean, rd.sum(dev * dev, axis=ax) / (m - 1)]


def _bn_grad_graph(eps):
    def build(g, x, w, mean, var):
        ax, rd = _bn_axes(x), _rd()
        m = _count(x, ax)
        inv = 1 / sqrt(var * ((m - 1) / m) + eps)
        xhat = (x - _channel(mean, x)) * _channel(inv, x)
        gb, gw = rd.sum(g, axis=ax), rd.sum(g * xhat, axis=ax)
        gx = _channel(w * inv, x) * (g - _channel(gb / m, x) - xhat * _channel(gw / m, x))
        return [gx, gw, gb]
    return build


def _ln_stats_graph(k, eps):
    def build(x):
        ax, rd = _ln_axes(x, k), _rd()
        mean = rd.mean(x, axis=ax, keepdims=True)
        dev = x - mean
        rstd = 1 / sqrt(rd.mean(dev * dev, axis=ax) + eps)
        return [rd.mean(x, axis=ax), rstd]
    return build


def _ln_grad_graph(k):
    def build(g, x, w, mean, rstd):
        ax, rd = _ln_axes(x, k), _rd()
        rows = tuple(range(x.ndim - k))
        expand = (slice(None),) * (x.ndim - k) + (None,) * k
        m, r = mean[expand], rstd[expand]
        d = _count(x, ax)
        xhat = (x - m) * r
        gh = g * w
        gx = r * (gh - rd.sum(gh, axis=ax, keepdims=True) / d
                  - xhat * rd.sum(gh * xhat, axis=ax, keepdims=True) / d)
        return [gx, rd.sum(g * xhat, axis=rows), rd.sum(g, axis=rows)]
    return build


def _composed_vjp(build, inputs, gouts, vjp):
    """The vjp of ``build(*inputs)`` (a list of outputs) for the given cotangents (None: no
    contribution), differentiated on stand-ins so that inputs computed from one another
    (x and the statistics made from x) are told apart, then put back on ``inputs``."""
    stand = [Variable(v.type, name=v.name) for v in inputs]
    outs = build(*stand)
    seeds = [(o, g) for o, g in zip(outs, gouts) if g is not None]
    grads = vjp(seeds, stand)
    return clone_replace(grads, dict(zip(stand, inputs)))


# --------------------------------------------------------------------------- ops

def _check_float(opname, *vs):
    for v in vs:
        if not _dt.is_float(v.dtype) or v.dtype != vs[0].dtype:
            raise TypeError(f"takes float values of one dtype, got "
                            f"{', '.join(str(u.type) for u in vs)}")


def _merge(a, b):
    return a if a is not None else b


class BatchNorm(Op):
    """Training-mode batch norm: ``(out, mean, var)`` of ``(x, weight, bias)``.

    ``out = (x - mean) / sqrt(var_b + eps) * weight + bias`` per channel (axis 1),
    ``mean`` and the biased ``var_b`` over every other axis; the ``var`` output is
    unbiased (``var_b * M / (M - 1)``, ``M`` values per channel).
    Gradient: :class:`BatchNormGrad`.
    """

    __props__ = ("eps", "sync")
    name = "batch_norm"
    grad_takes_vjp = True

    def __init__(self, eps=1e-5, sync=False):
        self.eps, self.sync = float(eps), bool(sync)

    def __str__(self):
        return f"batch_norm{{eps={self.eps:g}{', synchronised' if self.sync else ''}}}"

    __repr__ = __str__

    def flops(self, node, in_shapes, out_shapes):
        """Seven per element: the two sums, a subtraction, a scale and a shift."""
        return 7 * math.prod(in_shapes[0])

    def infer(self, x, w, b):
        if x.ndim < 2:
            raise ShapeError(f"the input must be (N, C, ...), at least 2-d, got {x.type}")
        _check_float(self.name, x, w, b)
        c = x.type.shape[1]
        for v, what in ((w, "weight"), (b, "bias")):
            if v.ndim != 1 or None not in (c, v.type.shape[0]) and v.type.shape[0] != c:
                raise ShapeError(f"the {what} must have one entry per channel, shape ({c},), "
                                 f"got {v.type}")
            c = _merge(c, v.type.shape[0])
        lens = [x.type.shape[a] for a in _bn_axes(x)]
        if None not in lens and math.prod(lens) == 1:
            raise ShapeError(f"expected more than 1 value per channel when training, got an "
                             f"input of shape {x.type.shape}")
        stat = TensorType(x.dtype, (c,))
        return [x.type, stat, stat]

    def perform(self, node, x, w, b):
        if self.sync:
            _check_channels(self, node, x, w, b)
            out, mean, var = _bn_sync_reference(self, node, x, w, b, self.eps)
            return [np.asarray(v, dtype=x.dtype) for v in (out, mean, var)]
        _bn_count(self, node, x.shape)
        _check_channels(self, node, x, w, b)
        out, mean, var = _bn_reference(x, w, b, self.eps)
        return [np.asarray(v, dtype=x.dtype) for v in (out, mean, var)]

    def grad(self, node, inputs, outputs, gouts, vjp=None, wanted=None):
        x, w, b = inputs
        g, g_mean, g_var = gouts
        gx = gw = gb = None
        if g is not None:
            gx, gw, gb = BatchNormGrad(self.eps, self.sync)(g, x, w, outputs[1], outputs[2])
        if self.sync and (g_mean is not None or g_var is not None):
            raise NotImplementedError(
                f"{self} at {node.trace}: the gradient through the batch statistics of a batch "
                f"norm synchronised across ranks is not supported; differentiate the loss "
                f"before sg.train_step(..., comm=) synchronises it")
        if g_mean is not None or g_var is not None:
            (extra,) = _composed_vjp(_bn_stats_graph, [x], [g_mean, g_var], vjp)
            gx = extra if gx is None else gx + extra
        return [gx, gw, gb]

    def lower(self, node):
        (x, w, b), (out, mean, var) = node.inputs, node.outputs
        return [Alloc(out, [Dim(x, i) for i in range(x.ndim)]), Alloc(mean, [Dim(x, 1)]),
                Alloc(var, [Dim(x, 1)]),
                Call("sg_batch_norm_sync" if self.sync else "sg_batch_norm",
                     [Workspace(), Arr(out), Arr(mean), Arr(var), Arr(x),
                                       Int(x.ndim), Arr(w), Arr(b), Lit(self.eps, "float64")],
                     dtypes=(x.dtype,))]


def _check_channels(op, node, x, *per_channel):
    for v in per_channel:
        if v.shape != (x.shape[1],):
            raise ShapeError(f"{op} at {node.trace}: the weight, bias and statistics must have "
                             f"one entry per channel ({x.shape[1]}), got shape {v.shape}")


def _check_g(op, node, g, x):
    if g.shape != x.shape:
        raise ShapeError(f"{op} at {node.trace}: the output gradient has shape {g.shape} but "
                         f"the input has shape {x.shape}")


class BatchNormGrad(Op):
    """``(gx, gweight, gbias)``: :class:`BatchNorm`'s gradient for the output gradient ``g``,
    from ``(g, x, weight, mean, var)`` (the forward's batch statistics).

    Its own gradient (second order) is the formula's, composed from ordinary ops.
    """

    __props__ = ("eps", "sync")
    name = "batch_norm_grad"
    grad_takes_vjp = True

    def __init__(self, eps=1e-5, sync=False):
        self.eps, self.sync = float(eps), bool(sync)

    def __str__(self):
        return "grad of batch_norm" + (" (synchronised)" if self.sync else "")

    __repr__ = __str__

    def flops(self, node, in_shapes, out_shapes):
        """Nine per element: the two sums and the input gradient's formula."""
        return 9 * math.prod(in_shapes[1])

    def infer(self, g, x, w, mean, var):
        if x.ndim < 2 or g.ndim != x.ndim:
            raise ShapeError(f"takes an output gradient and an input of one shape, at least "
                             f"2-d, got {g.type} and {x.type}")
        _check_float(self.name, g, x, w, mean, var)
        c = x.type.shape[1]
        for v in (w, mean, var):
            if v.ndim != 1:
                raise ShapeError(f"the weight and statistics must be 1-d, got {v.type}")
            c = _merge(c, v.type.shape[0])
        shape = tuple(_merge(a, b) for a, b in zip(x.type.shape, g.type.shape))
        return [TensorType(x.dtype, shape), TensorType(x.dtype, (c,)), TensorType(x.dtype, (c,))]

    def perform(self, node, g, x, w, mean, var):
        _check_g(self, node, g, x)
        if self.sync:
            _check_channels(self, node, x, w, mean, var)
            return [np.asarray(v, dtype=x.dtype)
                    for v in _bn_sync_grad_reference(g, x, w, mean, var, self.eps)]
        _bn_count(self, node, x.shape)
        _check_channels(self, node, x, w, mean, var)
        return [np.asarray(v, dtype=x.dtype)
                for v in _bn_grad_reference(g, x, w, mean, var, self.eps)]

    def grad(self, node, inputs, outputs, gouts, vjp=None, wanted=None):
        if self.sync:
            raise NotImplementedError(
                f"{self} at {node.trace}: second derivatives of a batch norm synchronised "
                f"across ranks are not supported")
        return _composed_vjp(_bn_grad_graph(self.eps), list(inputs), gouts, vjp)

    def lower(self, node):
        (g, x, w, mean, var), (gx, gw, gb) = node.inputs, node.outputs
        return [Alloc(gx, [Dim(x, i) for i in range(x.ndim)]), Alloc(gw, [Dim(x, 1)]),
                Alloc(gb, [Dim(x, 1)]),
                Call("sg_batch_norm_grad_sync" if self.sync else "sg_batch_norm_grad",
                     [Workspace(), Arr(gx), Arr(gw), Arr(gb), Arr(g), Arr(x), Int(x.ndim),
                      Arr(w), Arr(mean), Arr(var), Lit(self.eps, "float64")],
                     dtypes=(x.dtype,))]


class LayerNorm(Op):
    """``(out, mean, rstd)`` of ``(x, weight, bias)``: each row of ``x`` normalised over its
    last ``k`` axes, ``out = (x - mean) * rstd * weight + bias``, ``rstd = 1 / sqrt(var +
    eps)`` (biased variance); ``weight`` and ``bias`` have the normalised shape, ``mean`` and
    ``rstd`` the rows' (``x.shape[:-k]``). Gradient: :class:`LayerNormGrad`.
    """

    __props__ = ("k", "eps")
    name = "layer_norm"
    grad_takes_vjp = True

    def __init__(self, k=1, eps=1e-5):
        self.k, self.eps = int(k), float(eps)

    def __str__(self):
        return f"layer_norm{{axes={self.k}, eps={self.eps:g}}}"

    __repr__ = __str__

    def flops(self, node, in_shapes, out_shapes):
        """Seven per element: the two sums, a subtraction, a scale and a shift."""
        return 7 * math.prod(in_shapes[0])

    def row_inputs(self, node):
        """Each row (leading axis) from its own row of ``x`` when it is not normalised."""
        return (0,) if node.inputs[0].ndim > self.k else None

    def infer(self, x, w, b):
        k = self.k
        if not 1 <= k <= x.ndim:
            raise ShapeError(f"normalises the last {k} axes but the input is {x.type}")
        _check_float(self.name, x, w, b)
        norm = x.type.shape[x.ndim - k:]
        for v, what in ((w, "weight"), (b, "bias")):
            if v.ndim != k or any(None not in (a, c) and a != c for a, c in zip(v.type.shape, norm)):
                raise ShapeError(f"the {what} must have the normalised shape "
                                 f"{tuple('?' if n is None else n for n in norm)}, got {v.type}")
        stat = TensorType(x.dtype, x.type.shape[:x.ndim - k])
        return [x.type, stat, stat]

    def perform(self, node, x, w, b):
        k = self.k
        if w.shape != x.shape[x.ndim - k:] or b.shape != w.shape:
            raise ShapeError(f"{self} at {node.trace}: the weight and the bias must have the "
                             f"normalised shape {x.shape[x.ndim - k:]}, got {w.shape} and "
                             f"{b.shape}")
        return [np.asarray(v, dtype=x.dtype) for v in _ln_reference(x, w, b, k, self.eps)]

    def grad(self, node, inputs, outputs, gouts, vjp=None, wanted=None):
        x, w, b = inputs
        g, g_mean, g_rstd = gouts
        gx = gw = gb = None
        if g is not None:
            gx, gw, gb = LayerNormGrad(self.k)(g, x, w, outputs[1], outputs[2])
        if g_mean is not None or g_rstd is not None:
            (extra,) = _composed_vjp(_ln_stats_graph(self.k, self.eps), [x], [g_mean, g_rstd],
                                     vjp)
            gx = extra if gx is None else gx + extra
        return [gx, gw, gb]

    def lower(self, node):
        (x, w, b), (out, mean, rstd) = node.inputs, node.outputs
        lead = [Dim(x, i) for i in range(x.ndim - self.k)]
        return [Alloc(out, [Dim(x, i) for i in range(x.ndim)]), Alloc(mean, lead),
                Alloc(rstd, list(lead)),
                Call("sg_layer_norm", [Workspace(), Arr(out), Arr(mean), Arr(rstd), Arr(x),
                                       Int(x.ndim), Int(self.k), Arr(w), Arr(b),
                                       Lit(self.eps, "float64")],
                     dtypes=(x.dtype,))]


class LayerNormGrad(Op):
    """``(gx, gweight, gbias)``: :class:`LayerNorm`'s gradient for the output gradient ``g``,
    from ``(g, x, weight, mean, rstd)``. Its own gradient is the formula's, composed."""

    __props__ = ("k",)
    name = "layer_norm_grad"
    grad_takes_vjp = True

    def __init__(self, k=1):
        self.k = int(k)

    def __str__(self):
        return "grad of layer_norm"

    __repr__ = __str__

    def flops(self, node, in_shapes, out_shapes):
        """Eleven per element: the sums and the input gradient's formula."""
        return 11 * math.prod(in_shapes[1])

    def infer(self, g, x, w, mean, rstd):
        k = self.k
        if g.ndim != x.ndim or not 1 <= k <= x.ndim or w.ndim != k:
            raise ShapeError(f"takes an output gradient and an input of one shape and a "
                             f"{k}-d weight, got {g.type}, {x.type} and {w.type}")
        if mean.ndim != x.ndim - k or rstd.ndim != x.ndim - k:
            raise ShapeError(f"the statistics must have the rows' shape, got {mean.type}")
        _check_float(self.name, g, x, w, mean, rstd)
        shape = tuple(_merge(a, b) for a, b in zip(x.type.shape, g.type.shape))
        norm = tuple(_merge(a, b) for a, b in zip(shape[x.ndim - k:], w.type.shape))
        return [TensorType(x.dtype, shape), TensorType(x.dtype, norm),
                TensorType(x.dtype, norm)]

    def perform(self, node, g, x, w, mean, rstd):
        _check_g(self, node, g, x)
        k = self.k
        if w.shape != x.shape[x.ndim - k:] or mean.shape != x.shape[:x.ndim - k] \
                or rstd.shape != mean.shape:
            raise ShapeError(f"{self} at {node.trace}: the weight must have the normalised "
                             f"shape and the statistics the rows' shape")
        return [np.asarray(v, dtype=x.dtype)
                for v in _ln_grad_reference(g, x, w, mean, rstd, k)]

    def grad(self, node, inputs, outputs, gouts, vjp=None, wanted=None):
        return _composed_vjp(_ln_grad_graph(self.k), list(inputs), gouts, vjp)

    def lower(self, node):
        (g, x, w, mean, rstd), (gx, gw, gb) = node.inputs, node.outputs
        k = self.k
        norm = [Dim(x, i) for i in range(x.ndim - k, x.ndim)]
        return [Alloc(gx, [Dim(x, i) for i in range(x.ndim)]), Alloc(gw, norm),
                Alloc(gb, list(norm)),
                Call("sg_layer_norm_grad", [Workspace(), Arr(gx), Arr(gw), Arr(gb), Arr(g), Arr(x),
                                            Int(x.ndim), Int(k), Arr(w), Arr(mean), Arr(rstd)],
                     dtypes=(x.dtype,))]


# --------------------------------------------------------------------------- user functions

def _number(v, what, fn):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
        raise _at_line(ValueError(f"{fn}: {what} must be a finite number >= 0, got {v!r}"))
    return float(v)


def _affine(v, x, what, fn, shape):
    """``v`` as a Variable of x's dtype, or ones/zeros of ``shape`` when None."""
    from .shape import alloc
    if v is None:
        fill = 1.0 if what == "weight" else 0.0
        if all(n is not None for _, n in shape):
            return constant(np.full(tuple(n for _, n in shape), fill, dtype=x.dtype))
        lens = tuple(n if n is not None else shape_at(x, a) for a, n in shape)
        return alloc(fill, lens, dtype=x.dtype)
    v = as_variable(v)
    if v.dtype != x.dtype:
        raise _at_line(TypeError(f"{fn}: the {what} is {v.type} but the input is {x.type}; "
                                 f"cast one of them"))
    want = tuple(n for _, n in shape)
    if v.ndim != len(want) or any(None not in (a, b) and a != b
                                  for a, b in zip(v.type.shape, want)):
        text = tuple("?" if n is None else n for n in want)
        raise _at_line(ShapeError(f"{fn}: the {what} must have shape {text}, got {v.type}"))
    return v


def _input(x, fn, min_ndim):
    x = as_variable(x)
    if x.ndim < min_ndim:
        raise _at_line(ShapeError(f"{fn}: the input must be at least {min_ndim}-d "
                                  f"{'(N, C, ...)' if fn == 'batch_norm' else ''}, got {x.type}"))
    if not _dt.is_float(x.dtype):
        raise _at_line(TypeError(f"{fn}: the input must be float, got {x.type}"))
    return x


def _running(v, x, what):
    v = as_variable(v)
    c = x.type.shape[1]
    if v.ndim != 1 or None not in (c, v.type.shape[0]) and v.type.shape[0] != c:
        raise _at_line(ShapeError(f"batch_norm: {what} must have one entry per channel, shape "
                                  f"({c},), got {v.type}"))
    if not _dt.is_float(v.dtype):
        raise _at_line(TypeError(f"batch_norm: {what} must be float, got {v.type}"))
    return v


def _has_values(x):
    """Whether the batch has values per channel: True or False where its lengths are static,
    else a 0-d bool Variable."""
    static = [x.type.shape[a] for a in _bn_axes(x)]
    if None not in static:
        return math.prod(static) > 0
    lens = [shape_at(x, a) if n is None else n for a, n in zip(_bn_axes(x), static)]
    return gt(functools.reduce(operator.mul, lens), 0)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation over channel axis 1 of ``x`` (``(N, C)``, ``(N, C, L)``,
    ``(N, C, H, W)``, ...), as PyTorch's ``torch.nn.functional.batch_norm``.

    ``out = (x - mean) / sqrt(var + eps) * weight + bias`` per channel.

    Parameters
    ----------
    x : Variable, float, at least 2-d
    running_mean, running_var : SharedVariable of shape (C,), or None
        The running statistics: used in inference, updated (by the returned
        updates) in training. None in training: no running statistics.
    weight, bias : Variable of shape (C,), optional
        Default: no scale (ones) and no shift (zeros).
    training : bool
        True: normalise by the batch's statistics (mean and biased variance over
        every axis but 1) and return ``(out, updates)``. False: by the running ones,
        returning ``out``.
    momentum : float or 0-d Variable
        ``running = (1 - momentum) * running + momentum * batch_stat``; the batch's
        variance in this update is the unbiased one, as in PyTorch.
    eps : float

    Returns
    -------
    training: ``(out, updates)``, ``updates`` a list of ``(shared, new value)`` pairs
    for ``sg.function(..., updates=...)``; ``sg.train_step`` applies them by itself
    (see :func:`collect_updates`). Inference: ``out``.

    A batch with a single value per channel (``(1, C)``) cannot be normalised in
    training: ``sg.ShapeError`` when the graph is built if the shape is static, else
    when it runs. An empty batch (no value per channel: ``N = 0``) gives an empty
    result and leaves the running statistics as they were, as PyTorch's does (the
    weight's and bias's gradients are 0).

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.matrix("x")
    >>> rm, rv = sg.shared(np.zeros(2), trainable=False), sg.shared(np.ones(2), trainable=False)
    >>> out, updates = sg.nn.batch_norm(x, rm, rv, training=True)
    >>> f = sg.function([x], out, updates=updates)
    >>> f(np.array([[1.0, 2.0], [3.0, 6.0]])).round(3)
    array([[-1., -1.],
           [ 1.,  1.]])
    >>> rm.get_value(), rv.get_value()
    (array([0.2, 0.4]), array([1.1, 1.7]))
    """
    fn = "batch_norm"
    x = _input(x, fn, 2)
    eps = _number(eps, "eps", fn)
    chan = [(1, x.type.shape[1])]
    weight, bias = _affine(weight, x, "weight", fn, chan), _affine(bias, x, "bias", fn, chan)
    tracked = running_mean is not None or running_var is not None
    if tracked and (running_mean is None or running_var is None):
        raise _at_line(ValueError("batch_norm: give both running_mean and running_var, or "
                                  "neither"))
    if tracked:
        running_mean = _running(running_mean, x, "running_mean")
        running_var = _running(running_var, x, "running_var")
    if not training:
        if not tracked:
            raise _at_line(ValueError("batch_norm: inference (training=False) normalises by "
                                      "running_mean and running_var; none were given"))
        scale = weight / sqrt(cast(running_var, x.dtype) + eps)
        return (x - _channel(cast(running_mean, x.dtype), x)) * _channel(scale, x) \
            + _channel(bias, x)
    if isinstance(momentum, Variable):
        if momentum.ndim != 0:
            raise _at_line(ShapeError(f"batch_norm: momentum must be 0-d, got {momentum.type}"))
    else:
        momentum = _number(momentum, "momentum", fn)
    out, mean, var = BatchNorm(eps)(x, weight, bias)
    filled = _has_values(x)
    updates = []
    if tracked:
        for target, stat, what in ((running_mean, mean, "running_mean"),
                                   (running_var, var, "running_var")):
            if not isinstance(target, SharedVariable):
                raise _at_line(TypeError(f"batch_norm: {what} must be a shared variable "
                                         f"(sg.shared) to be updated in training, got "
                                         f"{target!r}; pass None to keep no running "
                                         f"statistics"))
            new = cast((1 - momentum) * target + momentum * cast(stat, target.dtype),
                       target.dtype)
            if filled is not True:  # an empty batch leaves them (PyTorch's)
                new = target if filled is False else where(filled, new, target)
            updates.append((target, new))
    out.owner.tag.updates = list(updates)
    return out, updates


def collect_updates(outputs):
    """The pending updates of the training-mode normalisation ``outputs`` depend on.

    A training-mode :func:`batch_norm` (and so every ``sg.layers.BatchNorm1D`` /
    ``BatchNorm2D`` called with ``training=True``) leaves its running-statistic
    updates on its node; this walks the graph of ``outputs`` and returns them, in
    the order the graph computes those nodes, as ``(shared, new value)`` pairs for
    ``sg.function(..., updates=...)``. ``sg.train_step`` calls it on its total loss.
    Two normalisations updating the same variables (a layer applied twice) chain as
    PyTorch's calls would: the second's updates see every value the first one's left
    (its running statistics, and its counter, on which ``momentum=None`` depends).

    Examples
    --------
    >>> import symgrad as sg
    >>> bn = sg.layers.BatchNorm1D(3)
    >>> x = sg.matrix("x")
    >>> loss = (bn(x, training=True) ** 2).mean()
    >>> [v.name for v, _ in sg.nn.collect_updates(loss)]
    ['batchnorm.running_mean', 'batchnorm.running_var', 'batchnorm.num_batches_tracked']
    """
    from ..graph import toposort
    outs = [outputs] if isinstance(outputs, Variable) else list(
        outputs.values() if isinstance(outputs, dict) else outputs)
    merged = {}
    for node in toposort(outs):
        updates = getattr(node.tag, "updates", ())
        # what the calls before this one left of the state this node updates: all of it,
        # not only the variable an update assigns (a cumulative average's weight reads the
        # counter the call before advanced); other variables keep the values the forward
        # pass read
        before = {t: merged[t] for t, _ in updates if t in merged}
        for target, new in updates:
            if before:
                (new,) = clone_replace([new], before)
            merged[target] = new
    return list(merged.items())


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalisation over the last ``len(normalized_shape)`` axes of ``x``, as
    PyTorch's ``torch.nn.functional.layer_norm``.

    ``out = (x - mean) / sqrt(var + eps) * weight + bias``, the mean and (biased)
    variance of each row over the normalised axes; ``weight`` and ``bias`` (default:
    none) have ``normalized_shape``.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.matrix("x")
    >>> sg.evaluate(sg.nn.layer_norm(x, 2), {x: np.array([[1.0, 3.0]])}).round(4)
    array([[-1.,  1.]])
    """
    fn = "layer_norm"
    shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) \
        else tuple(normalized_shape)
    if not shape or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool)
                            and n >= 0 for n in shape):
        raise _at_line(TypeError(f"layer_norm: normalized_shape must be an int or a non-empty "
                                 f"tuple of ints >= 0, got {normalized_shape!r}"))
    x = _input(x, fn, len(shape))
    k = len(shape)
    tail = x.type.shape[x.ndim - k:]
    if any(t is not None and t != n for t, n in zip(tail, shape)):
        raise _at_line(ShapeError(f"layer_norm: normalized_shape {tuple(shape)} does not match "
                                  f"the input's last axes, {x.type}"))
    eps = _number(eps, "eps", fn)
    dims = [(None, int(n)) for n in shape]
    weight, bias = _affine(weight, x, "weight", fn, dims), _affine(bias, x, "bias", fn, dims)
    out, _, _ = LayerNorm(k, eps)(x, weight, bias)
    return out
