"""Rows for batch norm, layer norm and their gradient ops (references written out in NumPy)."""

import numpy as np

import symgrad as sg
from symgrad.ops.norm import BatchNormGrad, LayerNormGrad

from . import Arg as A
from . import Case

EPS = 1e-5


def _c(v, ndim):
    """A per-channel vector shaped to broadcast along axis 1."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def np_bn(x, w, b):
    axes = (0,) + tuple(range(2, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    return ((x - mu) / np.sqrt(var + EPS) * _c(w, x.ndim) + _c(b, x.ndim)).astype(x.dtype)


def np_bn_grad(g, x, w, mean, var, out=0):
    """d<bn(x), g>/d(x, w, b) with the statistics given (var unbiased, as the op takes it)."""
    axes = (0,) + tuple(range(2, x.ndim))
    m = x.size // x.shape[1]
    inv = 1 / np.sqrt(var * (m - 1) / m + EPS)
    xhat = (x - _c(mean, x.ndim)) * _c(inv, x.ndim)
    gb, gw = g.sum(axis=axes), (g * xhat).sum(axis=axes)
    gx = _c(w * inv, x.ndim) * (g - _c(gb, x.ndim) / m - xhat * _c(gw, x.ndim) / m)
    return [gx, gw, gb][out]


def np_ln(x, w, b, k):
    axes = tuple(range(x.ndim - k, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    return ((x - mu) / np.sqrt(var + EPS) * w + b).astype(x.dtype)


def np_ln_grad(g, x, w, mean, rstd, k, out=0):
    axes, rows = tuple(range(x.ndim - k, x.ndim)), tuple(range(x.ndim - k))
    d = np.prod(x.shape[x.ndim - k:])
    r, m = rstd.reshape(rstd.shape + (1,) * k), mean.reshape(mean.shape + (1,) * k)
    xhat = (x - m) * r
    gh = g * w
    gx = r * (gh - gh.sum(axis=axes, keepdims=True) / d
              - xhat * (gh * xhat).sum(axis=axes, keepdims=True) / d)
    return [gx, (g * xhat).sum(axis=rows), g.sum(axis=rows)][out]


def _bn(x, w, b):
    return sg.nn.batch_norm(x, None, None, w, b, training=True)[0]


STAT = dict(low=0.5, high=2.0)  # variances and rstd: positive

CASES = [
    Case("batch_norm", _bn, np_bn, [A((4, 3)), A((3,)), A((3,))]),
    Case("batch_norm", _bn, np_bn, [A((2, 3, 5)), A((3,)), A((3,))]),
    Case("batch_norm", _bn, np_bn, [A((2, 3, 2, 3), static=True), A((3,)), A((3,))]),
    Case("batch_norm", _bn, np_bn, [A((3, 2, 2, 2), dtype="float32"), A((2,), dtype="float32"),
                                    A((2,), dtype="float32")], id="batch_norm[float32]",
         rtol=1e-5, atol=1e-5),
    Case("batch_norm_grad", lambda g, x, w, m, v: BatchNormGrad(EPS)(g, x, w, m, v)[0],
         np_bn_grad, [A((2, 3, 4)), A((2, 3, 4)), A((3,)), A((3,)), A((3,), **STAT)]),
    Case("batch_norm_grad", lambda g, x, w, m, v: BatchNormGrad(EPS)(g, x, w, m, v)[1],
         lambda *a: np_bn_grad(*a, out=1), [A((5, 2)), A((5, 2)), A((2,)), A((2,)),
                                            A((2,), **STAT)], id="batch_norm_grad[weight]"),
    Case("layer_norm", lambda x, w, b: sg.nn.layer_norm(x, 4, w, b),
         lambda x, w, b: np_ln(x, w, b, 1), [A((3, 4), static=True), A((4,)), A((4,))]),
    Case("layer_norm", lambda x, w, b: sg.nn.layer_norm(x, (3, 2), w, b),
         lambda x, w, b: np_ln(x, w, b, 2), [A((2, 4, 3, 2)), A((3, 2)), A((3, 2))]),
    Case("layer_norm_grad", lambda g, x, w, m, r: LayerNormGrad(2)(g, x, w, m, r)[0],
         lambda *a: np_ln_grad(*a, k=2), [A((2, 3, 4)), A((2, 3, 4)), A((3, 4)), A((2,)),
                                          A((2,), **STAT)]),
    Case("layer_norm_grad", lambda g, x, w, m, r: LayerNormGrad(1)(g, x, w, m, r)[2],
         lambda *a: np_ln_grad(*a, k=1, out=2), [A((3, 5)), A((3, 5)), A((5,)), A((3,)),
                                                 A((3,), **STAT)], id="layer_norm_grad[bias]"),
]
