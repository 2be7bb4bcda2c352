"""Conventions at kinks, ties and zeros (README: "Conventions at kinks, ties and zeros").

Gradients follow PyTorch's formulas where symgrad does not document otherwise;
values of ``maximum``/``minimum`` follow NumPy to the sign of a zero in every mode.
"""

import numpy as np
import pytest

import symgrad as sg

MODES = ["py", "c", "debug"]
inf = np.inf


def _grads(cost, wrt, mode, *vals, inputs=None, rewrite=None):
    f = sg.function(inputs or wrt, sg.grad(cost, wrt), mode=mode, rewrite=rewrite)
    return [np.asarray(g) for g in f(*vals)]


# ---------------------------------------------------------------- pow at 0 (issue 11, item 2)

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_pow_gradient_with_a_zero_constant_exponent_is_zero(mode, dtype):
    # d/dx x**0 = 0 everywhere (PyTorch); 0 * 0**-1 used to give NaN at x == 0
    x = sg.vector("x", dtype)
    (gx,) = _grads((x ** 0.0).sum(), [x], mode, np.array([0.0, 2.0, -3.0], dtype))
    np.testing.assert_array_equal(gx, [0.0, 0.0, 0.0])
    assert gx.dtype == dtype


@pytest.mark.parametrize("mode", MODES)
def test_pow_gradient_with_an_array_exponent_holding_zeros(mode):
    x = sg.vector("x")
    expo = np.array([0.0, 2.0, 1.0, 0.0])
    (gx,) = _grads((x ** expo).sum(), [x], mode, np.array([0.0, 0.0, 0.0, 5.0]))
    np.testing.assert_array_equal(gx, [0.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize("mode", MODES)
def test_pow_gradients_at_zero_base_and_zero_exponent(mode):
    # PyTorch: d/dx = 0 where y == 0; d/dy = 0 where x == 0 and y >= 0
    x, y = sg.scalar("x"), sg.scalar("y")
    for xv, yv, want in [(0.0, 0.0, (0.0, 0.0)), (0.0, 2.0, (0.0, 0.0)), (0.0, 1.0, (1.0, 0.0)),
                         (2.0, 3.0, (12.0, 8 * np.log(2.0))), (3.0, 0.0, (0.0, np.log(3.0)))]:
        got = _grads(x ** y, [x, y], mode, xv, yv)
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=f"x={xv}, y={yv}")


@pytest.mark.parametrize("mode", ["py", "c"])
def test_pow_gradient_at_zero_base_and_negative_exponent_is_infinite(mode):
    # torch: y * x**(y-1) = -inf and x**y * log(x) = inf * -inf = -inf (mode "debug" stops on Inf)
    x, y = sg.scalar("x"), sg.scalar("y")
    got = _grads(x ** y, [x, y], mode, 0.0, -1.0)
    np.testing.assert_array_equal(got, [-inf, -inf])


@pytest.mark.parametrize("mode", MODES)
def test_pow_gradient_with_an_integer_exponent_variable(mode):
    x, n = sg.vector("x"), sg.vector("n", "int64")
    (gx,) = _grads((x ** n).sum(), [x], mode, np.array([0.0, 0.0, 2.0]), np.array([0, 2, 3]),
                   inputs=[x, n])
    np.testing.assert_array_equal(gx, [0.0, 0.0, 12.0])


@pytest.mark.parametrize("rewrite", ["none", "safe", "fast"])
@pytest.mark.parametrize("mode", MODES)
def test_pow_gradient_at_zero_survives_rewrites(mode, rewrite):
    # x ** 2 becomes square(x) under "fast"; x ** 1 folds away; x ** 0 the same at every level
    x = sg.vector("x")
    cost = (x ** 2.0 + x ** 1.0 + x ** 0.0).sum()
    (gx,) = _grads(cost, [x], mode, np.array([0.0, 1.5]), rewrite=rewrite)
    np.testing.assert_array_equal(gx, [1.0, 4.0])


def test_second_derivative_of_pow_at_zero():
    x = sg.scalar("x")
    g = sg.grad(x ** 3.0, x)
    (h,) = _grads(g, [x], "c", 0.0)
    assert h == 0.0  # 3 * 2 * x**1 at 0 (the masked y == 0 lanes never enter)


# ---------------------------------------------------------------- kinks and ties

@pytest.mark.parametrize("mode", ["py", "c"])
def test_kink_and_tie_gradients_are_the_documented_ones(mode):
    x, y = sg.vector("x"), sg.vector("y")
    v = np.array([0.0, 0.0, -0.0])
    w = np.array([0.0, -0.0, 0.0])
    cases = {
        "relu": (sg.relu(x).sum(), [0.0, 0.0, 0.0]),        # README's conventions: relu'(0) = 0
        "abs": (abs(x).sum(), [0.0, 0.0, 0.0]),             # README's conventions: abs'(0) = 0
        "sign": (sg.sign(x).sum(), [0.0, 0.0, 0.0]),
        "round": (sg.round(x + 0.5).sum(), [0.0, 0.0, 0.0]),
        "floor": (sg.floor(x).sum(), [0.0, 0.0, 0.0]),
        "sqrt": (sg.sqrt(x).sum(), [inf, inf, -inf]),       # as PyTorch: 1 / (2 sqrt(+-0))
    }
    for name, (cost, want) in cases.items():
        (gx,) = _grads(cost, [x], mode, v)
        np.testing.assert_array_equal(gx, want, err_msg=name)
    # maximum / minimum: a tie's gradient goes wholly to the first argument
    for op in (sg.maximum, sg.minimum):
        gx, gy = _grads(op(x, y).sum(), [x, y], mode, v, w)
        np.testing.assert_array_equal(gx, [1.0, 1.0, 1.0], err_msg=op.__name__)
        np.testing.assert_array_equal(gy, [0.0, 0.0, 0.0], err_msg=op.__name__)


@pytest.mark.parametrize("mode", ["py", "c"])
def test_clip_passes_the_gradient_to_x_at_its_bounds(mode):
    # torch.clamp's convention: x gets the gradient where lo <= x <= hi
    x, lo, hi = sg.vector("x"), sg.vector("lo"), sg.vector("hi")
    gx, glo, ghi = _grads(sg.clip(x, lo, hi).sum(), [x, lo, hi], mode,
                          np.array([-1.0, 1.0, -2.0, 2.0, 0.0, 5.0]),
                          np.array([-1.0, -1.0, -1.0, -1.0, -1.0, 3.0]),
                          np.array([1.0, 1.0, 1.0, 1.0, 1.0, 2.0]))
    np.testing.assert_array_equal(gx, [1, 1, 0, 0, 1, 0])
    np.testing.assert_array_equal(glo, [0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(ghi, [0, 0, 0, 1, 0, 1])  # lo > hi: the result is hi


@pytest.mark.parametrize("mode", ["py", "c"])
def test_clip_with_equal_bounds_and_nan_operands(mode):
    x, lo, hi = sg.vector("x"), sg.vector("lo"), sg.vector("hi")
    gx, glo, ghi = _grads(sg.clip(x, lo, hi).sum(), [x, lo, hi], mode,
                          np.array([-5.0, 5.0, 1.0, np.nan]), np.array([1.0, 1.0, 1.0, 0.0]),
                          np.array([1.0, 1.0, 1.0, 1.0]))
    np.testing.assert_array_equal(gx, [0, 0, 1, 0])
    np.testing.assert_array_equal(glo, [1, 0, 0, 0])   # PyTorch: to neither (it needs lo < hi)
    np.testing.assert_array_equal(ghi, [0, 1, 0, 0])
    # a NaN operand of maximum / minimum: no gradient to either (PyTorch: all to both)
    y = sg.vector("y")
    for op in (sg.maximum, sg.minimum):
        gx, gy = _grads(op(x, y).sum(), [x, y], mode, np.array([np.nan, 1.0]),
                        np.array([1.0, np.nan]))
        np.testing.assert_array_equal(gx, [0.0, 0.0])
        np.testing.assert_array_equal(gy, [0.0, 0.0])


@pytest.mark.parametrize("mode", ["py", "c"])
def test_where_sends_the_gradient_to_the_branch_taken(mode):
    c, x, y = sg.vector("c", "bool"), sg.vector("x"), sg.vector("y")
    gx, gy = _grads(sg.where(c, x, y).sum(), [x, y], mode, np.array([True, False]),
                    np.array([1.0, np.nan]), np.array([np.inf, 2.0]), inputs=[c, x, y])
    np.testing.assert_array_equal(gx, [1.0, 0.0])
    np.testing.assert_array_equal(gy, [0.0, 1.0])


@pytest.mark.parametrize("mode", ["py", "c"])
def test_max_reduction_splits_the_gradient_among_ties(mode):
    x = sg.matrix("x")
    gx, = _grads(x.max(axis=1).sum() + x.max(), [x], mode, np.array([[1.0, 3.0, 3.0],
                                                                     [2.0, 0.0, 2.0]]))
    np.testing.assert_allclose(gx, [[0, 1.0, 1.0], [0.5, 0, 0.5]])
    # a slice holding NaN: no element gets a share (PyTorch: the NaN elements share it)
    gx, = _grads(x.max(axis=1).sum(), [x], mode, np.array([[1.0, np.nan, 3.0],
                                                           [2.0, 0.0, 2.0]]))
    np.testing.assert_array_equal(gx, [[0, 0, 0], [0.5, 0, 0.5]])


# ---------------------------------------------------------------- signed zeros (issue 11, item 3)

_A = np.array([0.0, -0.0, 0.0, -0.0, np.nan, 1.0, np.nan, -0.0, 2.0, -inf])
_B = np.array([-0.0, 0.0, 0.0, -0.0, 1.0, np.nan, np.nan, -1.0, inf, -0.0])


def _same_bits(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)  # NaN where NumPy has NaN
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("layout", ["short", "long", "strided", "scalar-second", "scalar-first"])
def test_maximum_and_minimum_give_numpys_zero_and_nan(mode, dtype, layout):
    # NumPy returns the second operand on a tie (maximum(0.0, -0.0) is -0.0) and NaN from
    # either side; mode "c" used to return the first operand of a tie
    a, b = _A.astype(dtype), _B.astype(dtype)
    if layout == "long":  # long enough for the vectorised body of the loop
        a, b = np.tile(a, 103), np.tile(b, 103)
    elif layout == "strided":
        a, b = np.repeat(a, 2)[::2], np.repeat(b, 2)[::2]
    xs = [sg.vector("a", dtype), sg.vector("b", dtype)]
    vals = [a, b]
    if layout.startswith("scalar"):
        k = 0 if layout == "scalar-first" else 1
        xs[k], vals[k] = sg.scalar("s", dtype), np.array(-0.0 if k else 0.0, dtype)
    if mode == "debug":  # it stops on NaN from NaN inputs: keep the finite lanes there
        keep = np.isfinite(vals[0]) & np.isfinite(vals[1])
        vals = [v[keep] if v.ndim else v for v in vals]
    x, y = xs
    outs = [sg.maximum(x, y), sg.minimum(x, y), sg.maximum(y, x), sg.minimum(y, x),
            sg.maximum(x, y) * 1.0 - 0.0, sg.clip(x, y, 1.0)]
    got = sg.function(xs, outs, mode=mode)(*vals)
    p, q = vals
    want = [np.maximum(p, q), np.minimum(p, q), np.maximum(q, p), np.minimum(q, p),
            np.maximum(p, q), np.minimum(np.maximum(p, q), np.asarray(1.0, dtype))]
    for g, w in zip(got, want):
        _same_bits(g, w.astype(dtype))


@pytest.mark.parametrize("mode", ["py", "c"])
def test_maximum_zeros_fused_with_other_ops_and_unfused(mode):
    a, b = sg.vector("a"), sg.vector("b")
    av, bv = np.array([0.0, -0.0] * 40), np.array([-0.0, 0.0] * 40)
    fused = sg.function([a, b], sg.minimum(sg.maximum(a, b), -sg.maximum(-a, -b)), mode=mode)
    _same_bits(fused(av, bv), np.minimum(np.maximum(av, bv), -np.maximum(-av, -bv)))
    lone = sg.function([a, b], sg.maximum(a, b), mode=mode, rewrite="none")
    _same_bits(lone(av, bv), np.maximum(av, bv))


def test_maximum_of_integers_and_booleans_still_match_numpy():
    cases = [("int32", ([3, -2, 0], [3, 5, -1])), ("bool", ([True, False], [False, False]))]
    for dtype, vals in cases:
        a, b = sg.vector("a", dtype), sg.vector("b", dtype)
        f = sg.function([a, b], [sg.maximum(a, b), sg.minimum(a, b)], mode="c")
        p, q = (np.array(v, dtype) for v in vals)
        for g, w in zip(f(p, q), [np.maximum(p, q), np.minimum(p, q)]):
            np.testing.assert_array_equal(g, w)
            assert g.dtype == w.dtype
