"""Hypothesis-drawn shapes against PyTorch (skipped where torch is not installed):
conv2d's value and gradients to input and weight, max_pool2d's value and gradient.

The compiled kernels are generic over sizes, so each argument combination compiles
once (``_compiled``, a cache over the module) and every drawn example only calls it:
batch, channels, kernel and spatial sizes, and the input's memory layout vary per
example. The suite runs two convolution and two float32 pooling combinations (six
compiles, about 10 s of CPU); the slow run (``-m slow``) every combination, float64
pooling too, with more examples.
"""

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symgrad as sg

torch = pytest.importorskip("torch")

CONV = [
    dict(),
    dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2),
    dict(stride=3, padding=2, dilation=2),
    dict(stride=(1, 2), padding=1, groups=3),
]
POOL = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=(2, 3), stride=(2, 1), dilation=(1, 2), ceil_mode=True),
    dict(kernel_size=3, stride=3, padding=1, ceil_mode=True),
]


def _two(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@functools.lru_cache(maxsize=None)
def _compiled(kind, i, dtype):
    """One function per combination: the value and the gradients of <value, r>."""
    x, r = sg.tensor4("x", dtype), sg.tensor4("r", dtype)
    if kind == "conv":
        w = sg.tensor4("w", dtype)
        out = sg.nn.conv2d(x, w, **CONV[i])
        return sg.function([x, w, r], [out] + sg.grad((out * r).sum(), [x, w]))
    out = sg.nn.max_pool2d(x, **POOL[i])
    return sg.function([x, r], [out, sg.grad((out * r).sum(), x)])


def _layout(v, transposed):
    """v's values, C-contiguous or with the last two axes swapped in memory."""
    if not transposed:
        return v
    return np.swapaxes(np.ascontiguousarray(np.swapaxes(v, 2, 3)), 2, 3)


@st.composite
def _conv_case(draw, combos):
    i = draw(st.sampled_from(combos))
    kw = CONV[i]
    (sh, sw), (ph, pw), (dh, dw) = (_two(kw.get(k, d)) for k, d in
                                    (("stride", 1), ("padding", 0), ("dilation", 1)))
    g = kw.get("groups", 1)
    n, cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kwd = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    # at least the dilated kernel's span inside the padded input, up to 9 more
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), dh * (kh - 1) + 10))
    w = draw(st.integers(max(1, dw * (kwd - 1) + 1 - 2 * pw), dw * (kwd - 1) + 10))
    layout, seed = draw(st.booleans()), draw(st.integers(0, 2**31))
    return i, (n, cg * g, h, w), (og * g, cg, kh, kwd), layout, seed


@st.composite
def _pool_case(draw, combos, dtypes=("float32", "float64")):
    i = draw(st.sampled_from(combos))
    kw = POOL[i]
    (kh, kwd), (dh, dw) = _two(kw["kernel_size"]), _two(kw.get("dilation", 1))
    ph, pw = _two(kw.get("padding", 0))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    # widths up to 40: rows of more than a vector's 8 float32 outputs
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), dh * (kh - 1) + 12))
    w = draw(st.integers(max(1, dw * (kwd - 1) + 1 - 2 * pw), dw * (kwd - 1) + 40))
    dtype = draw(st.sampled_from(dtypes))
    return i, (n, c, h, w), dtype, draw(st.booleans()), draw(st.integers(0, 2**31))


def _check_conv(case):
    i, xs, ws, transposed, seed = case
    rng = np.random.default_rng(seed)
    X, W = rng.standard_normal(xs), rng.standard_normal(ws)
    xt, wt = (torch.tensor(a, requires_grad=True) for a in (X, W))
    ot = torch.nn.functional.conv2d(xt, wt, **CONV[i])
    R = rng.standard_normal(tuple(ot.shape))
    (ot * torch.tensor(R)).sum().backward()
    got = _compiled("conv", i, "float64")(_layout(X, transposed), W, R)
    for g, want, what in zip(got, (ot.detach(), xt.grad, wt.grad), ("out", "d/dx", "d/dw")):
        np.testing.assert_allclose(g, want.numpy(), rtol=1e-10, atol=1e-10,
                                   err_msg=f"{what} {CONV[i]} x {xs} w {ws}")


def _check_pool(case):
    i, xs, dtype, transposed, seed = case
    rng = np.random.default_rng(seed)
    # few distinct values: ties, where the first tap in window order wins
    X = rng.integers(0, 4, xs).astype(dtype)
    xt = torch.tensor(X, requires_grad=True)
    ot = torch.nn.functional.max_pool2d(xt, **POOL[i])
    R = rng.standard_normal(tuple(ot.shape)).astype(dtype)
    (ot * torch.tensor(R)).sum().backward()
    out, gx = _compiled("pool", i, dtype)(_layout(X, transposed), R)
    np.testing.assert_array_equal(out, ot.detach().numpy(), err_msg=f"{POOL[i]} {xs}")
    # a position several windows pick sums their cotangents: float32 rounding may differ
    tol = 1e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=tol, atol=tol,
                               err_msg=f"{POOL[i]} {xs} grad")


@settings(max_examples=20, deadline=None)
@given(_conv_case([0, 1]))
def test_conv2d_drawn_shapes_against_pytorch(case):
    _check_conv(case)


@settings(max_examples=20, deadline=None)
@given(_pool_case([0, 1], ("float32",)))
def test_max_pool2d_drawn_shapes_against_pytorch(case):
    _check_pool(case)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(_conv_case(list(range(len(CONV)))))
def test_conv2d_drawn_shapes_and_arguments_against_pytorch(case):
    _check_conv(case)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(_pool_case(list(range(len(POOL)))))
def test_max_pool2d_drawn_shapes_and_arguments_against_pytorch(case):
    _check_pool(case)
