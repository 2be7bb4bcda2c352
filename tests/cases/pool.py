"""Rows for the pooling ops and their gradient ops (references written with loops)."""

import numpy as np

import symgrad as sg
from symgrad.ops.pool import AvgPool2DGrad, MaxPool2D, MaxPool2DGrad, MaxPool2DSelect

from . import Arg as A
from . import Case


def _windows(h, w, k, s, p, oh, ow):
    """(rows, cols) of each output pixel's window, clipped to the input, and its length up
    to the padded edge."""
    for r in range(oh):
        for c in range(ow):
            r0, c0 = r * s - p, c * s - p
            r1, c1 = min(r0 + k, h + p), min(c0 + k, w + p)
            full = (r1 - r0) * (c1 - c0)
            yield r, c, slice(max(r0, 0), min(r1, h)), slice(max(c0, 0), min(c1, w)), full


def np_max(x, k, s, p, oh, ow):
    out = np.zeros(x.shape[:2] + (oh, ow), x.dtype)
    for r, c, rs, cs, _ in _windows(*x.shape[2:], k, s, p, oh, ow):
        out[:, :, r, c] = x[:, :, rs, cs].max(axis=(2, 3))
    return out


def np_max_grad(x, g, k, s, p):
    out = np.zeros_like(x)
    for r, c, rs, cs, _ in _windows(*x.shape[2:], k, s, p, *g.shape[2:]):
        for n in range(x.shape[0]):
            for ch in range(x.shape[1]):
                win = x[n, ch, rs, cs]
                i, j = np.unravel_index(np.argmax(win), win.shape)
                out[n, ch, rs.start + i, cs.start + j] += g[n, ch, r, c]
    return out


def np_avg(x, k, s, p, oh, ow, include_pad=True):
    out = np.zeros(x.shape[:2] + (oh, ow), x.dtype)
    for r, c, rs, cs, full in _windows(*x.shape[2:], k, s, p, oh, ow):
        win = x[:, :, rs, cs]
        out[:, :, r, c] = win.sum(axis=(2, 3)) / (full if include_pad else win[0, 0].size)
    return out


def np_avg_grad(g, xshape, k, s, p, include_pad=True):
    out = np.zeros(xshape, g.dtype)
    for r, c, rs, cs, full in _windows(*xshape[2:], k, s, p, *g.shape[2:]):
        n = full if include_pad else (rs.stop - rs.start) * (cs.stop - cs.start)
        out[:, :, rs, cs] += g[:, :, r:r + 1, c:c + 1] / n
    return out


def np_adaptive(x, oh, ow):
    h, w = x.shape[2:]
    out = np.zeros(x.shape[:2] + (oh, ow), x.dtype)
    for r in range(oh):
        for c in range(ow):
            rs = slice(r * h // oh, -(-(r + 1) * h // oh))
            cs = slice(c * w // ow, -(-(c + 1) * w // ow))
            out[:, :, r, c] = x[:, :, rs, cs].mean(axis=(2, 3))
    return out


def np_select(x, h, k, s, p, oh, ow):
    out = np.zeros(x.shape[:2] + (oh, ow), x.dtype)
    for r, c, rs, cs, _ in _windows(*x.shape[2:], k, s, p, oh, ow):
        for n in range(x.shape[0]):
            for ch in range(x.shape[1]):
                win = x[n, ch, rs, cs]
                i, j = np.unravel_index(np.argmax(win), win.shape)
                out[n, ch, r, c] = h[n, ch, rs.start + i, cs.start + j]
    return out


def _distinct(shape, seed):
    """Distinct values: the maximum's tap stays put under finite differences."""
    return np.random.default_rng(seed).permutation(np.prod(shape)).reshape(shape) / 9.0


MAX = dict(kernel=(3, 3), stride=(2, 2), padding=(1, 1))
X1, X2 = _distinct((2, 3, 5, 6), 1), _distinct((2, 3, 5, 6), 2)
X1S = np.array(X1.shape)
AVG = dict(kernel=(3, 3), stride=(2, 2), padding=(1, 1), count_include_pad=False)
XS = np.array([2, 3, 5, 6])

CASES = [
    Case("max_pool2d", lambda x: sg.nn.max_pool2d(x, 3, 2, 1),
         lambda x: np_max(x, 3, 2, 1, 3, 2), [A(value=_distinct((2, 3, 5, 3), 0))],
         id="max_pool2d[3x3-s2-p1]"),
    Case("max_pool2d", lambda x: sg.nn.max_pool2d(x, 2),
         lambda x: np_max(x, 2, 2, 0, 2, 2), [A(value=_distinct((1, 2, 5, 4), 3),
                                                 dtype="float32")],
         id="max_pool2d[float32]", rtol=1e-6),
    # the indices come from max pooling of a constant x; g (and h) are the inputs
    Case("max_pool2d_grad",
         lambda g: MaxPool2DGrad()(g, MaxPool2D(**MAX)(sg.constant(X1))[1], sg.constant(X1S)),
         lambda g: np_max_grad(X1, g, 3, 2, 1), [A((2, 3, 3, 3))]),
    Case("max_pool2d_select",
         lambda h: MaxPool2DSelect()(h, MaxPool2D(**MAX)(sg.constant(X2))[1]),
         lambda h: np_select(X2, h, 3, 2, 1, 3, 3), [A((2, 3, 5, 6))]),
    Case("avg_pool2d", lambda x: sg.nn.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
         lambda x: np_avg(x, 3, 2, 1, 3, 3, include_pad=False), [A((2, 3, 5, 6))],
         id="avg_pool2d[exclude-pad]"),
    Case("avg_pool2d", lambda x: sg.nn.avg_pool2d(x, 2, 1, 1),
         lambda x: np_avg(x, 2, 1, 1, 5, 4), [A((1, 2, 4, 3))], id="avg_pool2d[include-pad]"),
    Case("avg_pool2d", lambda x: sg.nn.adaptive_avg_pool2d(x, (3, 2)),
         lambda x: np_adaptive(x, 3, 2), [A((2, 2, 5, 7))], id="adaptive_avg_pool2d"),
    Case("avg_pool2d_grad", lambda g: AvgPool2DGrad(**AVG)(g, sg.constant(XS)),
         lambda g: np_avg_grad(g, tuple(XS), 3, 2, 1, include_pad=False), [A((2, 3, 3, 3))]),
]
