"""Rows for conv2d and its two gradient ops (a reference written with loops over taps)."""

import numpy as np

import symgrad as sg
from symgrad.ops.conv import Conv2DGradInput, Conv2DGradWeight

from . import Arg as A
from . import Case

# stride, padding (top, bottom, left, right), dilation, groups
P = ((2, 1), (1, 0, 2, 1), (1, 2), 2)


def np_conv(x, w, stride=(1, 1), pad=(0, 0, 0, 0), dil=(1, 1), groups=1):
    """Direct: one term per output pixel and tap (slow, obviously right)."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.zeros((n, c, h + pad[0] + pad[1], wd + pad[2] + pad[3]), x.dtype)
    xp[:, :, pad[0]:pad[0] + h, pad[2]:pad[2] + wd] = x
    oh = (xp.shape[2] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (xp.shape[3] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, oh, ow))
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(kh):
            for j in range(kw):
                r0, c0 = i * dil[0], j * dil[1]
                win = xp[:, g * cg:(g + 1) * cg, r0:r0 + stride[0] * (oh - 1) + 1:stride[0],
                         c0:c0 + stride[1] * (ow - 1) + 1:stride[1]]
                out[:, oc] += np.einsum("nchw,c->nhw", win, w[oc, :, i, j])
    return out.astype(x.dtype)


def _vjp(x, w, g, wrt, **kw):
    """conv's adjoint by brute force: d<conv(x, w), g>/d(x or w), one basis vector each."""
    base = x if wrt == "x" else w
    out = np.zeros(base.shape)
    for idx in np.ndindex(base.shape):
        e = np.zeros(base.shape)
        e[idx] = 1
        y = np_conv(e, w, **kw) if wrt == "x" else np_conv(x, e, **kw)
        out[idx] = (y * g).sum()
    return out.astype(x.dtype)


def _grad_input(g, w, xs, **kw):
    return _vjp(np.zeros(xs), w, g, "x", **kw)


def _grad_weight(x, g, ws, **kw):
    return _vjp(x, np.zeros(ws), g, "w", **kw)


KW = dict(stride=P[0], pad=P[1], dil=P[2], groups=P[3])
F32 = {"rtol": 1e-5, "atol": 1e-5}

CASES = [
    Case("conv2d", sg.nn.conv2d, np_conv, [A((2, 3, 5, 4)), A((2, 3, 2, 3))]),
    Case("conv2d", lambda x, w: sg.nn.conv2d(x, w, stride=(2, 1), padding=(1, 2),
                                             dilation=(1, 2), groups=2),
         lambda x, w: np_conv(x, w, stride=(2, 1), pad=(1, 1, 2, 2), dil=(1, 2), groups=2),
         [A((1, 4, 5, 6)), A((4, 2, 2, 2))], id="conv2d[stride-pad-dilation-groups]"),
    Case("conv2d", lambda x, w: sg.nn.conv2d(x, w, padding=1),
         lambda x, w: np_conv(x, w, pad=(1, 1, 1, 1)),
         [A((2, 2, 3, 3), dtype="float32"), A((3, 2, 3, 3), dtype="float32")],
         id="conv2d[float32]", **F32),
    Case("conv2d_grad_input",
         lambda g, w: Conv2DGradInput(*P)(g, w, sg.constant(np.array([2, 4, 5, 6]))),
         lambda g, w: _grad_input(g, w, (2, 4, 5, 6), **KW),
         [A((2, 4, 3, 7)), A((4, 2, 2, 2))]),
    Case("conv_transpose2d",
         lambda x, w: sg.nn.conv_transpose2d(x, w, stride=(2, 1), padding=(1, 0),
                                             output_padding=(1, 0), groups=2, dilation=(1, 2)),
         lambda x, w: _grad_input(x, w, (2, 4, 5, 5), stride=(2, 1), pad=(1, 1, 0, 0),
                                  dil=(1, 2), groups=2),
         [A((2, 4, 3, 3)), A((4, 2, 2, 2))]),
    Case("conv2d_grad_weight",
         lambda x, g: Conv2DGradWeight(*P)(x, g, sg.constant(np.array([4, 2, 2, 2]))),
         lambda x, g: _grad_weight(x, g, (4, 2, 2, 2), **KW),
         [A((2, 4, 5, 6)), A((2, 4, 3, 7))]),
]
