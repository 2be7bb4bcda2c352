"""Idioms a Theano program is written in, ported line by line (issue #17, items 2-4).

``x.dimshuffle``, ``x.flatten(ndim)``, ``sum/mean/prod(..., dtype=, acc_dtype=)``,
``sg.grad(..., consider_constant=)``, ``sg.In(x, value=)`` and the errors a Theano or
NumPy habit meets. Values are checked against NumPy in mode "py" (sg.evaluate) and in
one compiled function per group (few cold compiles: the suite's budget).
"""

import re

import numpy as np
import pytest

import symgrad as sg

RNG = np.random.default_rng(17)


# ---------------------------------------------------------------- dimshuffle and flatten

def _shuffles():
    x = sg.tensor("x", shape=(None, 3))
    b = sg.vector("b")
    t4 = sg.tensor4("t4")
    col = sg.tensor("col", shape=(None, 1))
    outs = {
        "row": x.dimshuffle("x", 0, 1),
        "T": x.dimshuffle(1, 0),
        "tuple": x.dimshuffle((1, "x", 0)),
        "bias": t4 + b.dimshuffle("x", 0, "x", "x"),
        "drop": col.dimshuffle(0),
        "flat2": t4.flatten(2),
        "flat3": t4.flatten(3),
        "flat1": t4.flatten(),
    }
    return [x, b, t4, col], outs


def _shuffle_values():
    return [RNG.standard_normal((4, 3)), RNG.standard_normal(5), RNG.standard_normal((2, 5, 3, 2)),
            RNG.standard_normal((4, 1))]


def _shuffle_expected(x, b, t4, col):
    return {"row": x[None], "T": x.T, "tuple": x.T[:, None, :], "bias": t4 + b[None, :, None, None],
            "drop": col[:, 0], "flat2": t4.reshape(2, -1), "flat3": t4.reshape(2, 5, -1),
            "flat1": t4.reshape(-1)}


@pytest.fixture(scope="module")
def shuffles_c():
    ins, outs = _shuffles()
    return sg.function(ins, outs)


@pytest.mark.parametrize("mode", ["py", "c"])
def test_dimshuffle_and_flatten_values(mode, shuffles_c):
    vals = _shuffle_values()
    if mode == "c":
        got = shuffles_c(*vals)
    else:
        ins, outs = _shuffles()
        got = dict(zip(outs, sg.evaluate(list(outs.values()), dict(zip(ins, vals)))))
    for k, want in _shuffle_expected(*vals).items():
        assert got[k].shape == want.shape, k
        np.testing.assert_array_equal(got[k], want, err_msg=k)


def test_dimshuffle_static_shapes_and_gradient():
    ins, outs = _shuffles()
    assert outs["row"].type.shape == (1, None, 3)
    assert outs["tuple"].type.shape == (3, 1, None)
    assert outs["flat2"].type.shape == (None, None)
    assert sg.tensor(shape=(2, 3, 4, 5)).flatten(2).type.shape == (2, 60)
    sg.verify_grad(lambda m: (m.dimshuffle(1, "x", 0) * np.arange(3.0)[:, None, None]).sum(),
                   [RNG.standard_normal((4, 3))])


def test_dimshuffle_errors():
    x = sg.tensor("x", shape=(None, 3))
    with pytest.raises(sg.ShapeError, match=r"cannot drop axis 1 of length 3.*test_theano_idioms"):
        x.dimshuffle(0)
    with pytest.raises(TypeError, match=r"axis number or 'x'.*'y'"):
        x.dimshuffle(0, "y", 1)
    with pytest.raises(sg.ShapeError, match=r"axis -1 .*no negative axes"):
        x.dimshuffle(0, -1)
    with pytest.raises(sg.ShapeError, match="repeated"):
        x.dimshuffle(0, 0, 1)
    # a length known only at call time is checked then
    col = sg.matrix("col")
    with pytest.raises(sg.ShapeError, match="cannot drop axis 1 of length 2"):
        sg.evaluate(col.dimshuffle(0), {col: np.ones((3, 2))})


# ---------------------------------------------------------------- accumulation dtypes

def test_reduction_dtypes_follow_numpy():
    xb = sg.vector("xb", dtype="bool")
    xi = sg.matrix("xi", dtype="int32")
    x32 = sg.matrix("x32", dtype="float32")
    x64 = sg.vector("x64")
    vb = np.array([True, False, True])
    vi = RNG.integers(-5, 6, size=(3, 4)).astype(np.int32)
    v32 = RNG.standard_normal((3, 4)).astype(np.float32)
    v64 = np.array([1.5, 2.5, -0.75])
    cases = [  # (expr, expected from NumPy)
        (xb.sum(dtype="float32"), np.sum(vb, dtype=np.float32)),
        (sg.sum(xi, axis=1, dtype="float64"), np.sum(vi, axis=1, dtype=np.float64)),
        (xi.mean(dtype="float32"), np.mean(vi, dtype=np.float32)),
        (xi.mean(axis=0, dtype="int64"), np.mean(vi, axis=0, dtype=np.int64)),  # truncates
        (sg.mean(x32, axis=0, dtype="float64"), np.mean(v32.astype(np.float64), axis=0)),
        (x64.sum(dtype="int64"), np.sum(v64, dtype=np.int64)),  # unsafe, as NumPy
        (x64.sum(dtype="float32"), np.sum(v64, dtype=np.float32)),
        (xi.prod(axis=1, dtype="float64", keepdims=True),
         np.prod(vi, axis=1, dtype=np.float64, keepdims=True)),
        # Theano's acc_dtype: the accumulation only, the result keeps the default dtype
        (x32.sum(acc_dtype="float64"), np.float32(np.sum(v32, dtype=np.float64))),
        (xi.sum(axis=0, acc_dtype="int64"), np.sum(vi, axis=0)),
        (sg.mean(xi, acc_dtype="float64", dtype="float32"), np.float32(np.mean(vi))),
    ]
    got = sg.evaluate([e for e, _ in cases], {xb: vb, xi: vi, x32: v32, x64: v64})
    for k, ((expr, want), g) in enumerate(zip(cases, got)):
        assert expr.dtype == np.asarray(want).dtype.name and g.dtype == want.dtype, k
        np.testing.assert_allclose(g, want, rtol=1e-6, err_msg=str(k))


def test_reduction_dtype_compiled_and_differentiated():
    x32 = sg.vector("x32", dtype="float32")
    cost = (x32 * x32).sum(dtype="float64")
    assert cost.dtype == "float64"
    g = sg.grad(cost, x32)
    assert g.dtype == "float32"
    f = sg.function([x32], [cost, g, x32.mean(dtype="float64")])
    v = np.array([1.0, 2.0, 3.5], np.float32)
    c, gv, m = f(v)
    assert c.dtype == np.float64 and c == 1 + 4 + 12.25
    np.testing.assert_array_equal(gv, 2 * v)
    assert m.dtype == np.float64 and m == pytest.approx(6.5 / 3)


def test_reduction_dtype_errors():
    with pytest.raises(TypeError, match=r"acc_dtype=float32 would lose precision on the float64"):
        sg.matrix("m").sum(acc_dtype="float32")
    with pytest.raises(TypeError, match=r"acc_dtype=int32 would lose precision on the int64"):
        sg.vector(dtype="int64").mean(acc_dtype="int32")
    with pytest.raises(TypeError, match="dtype complex128 is not supported"):
        sg.vector().sum(dtype="complex128")


# ---------------------------------------------------------------- consider_constant

def test_consider_constant_stops_at_the_given_values():
    x = sg.vector("x")
    h = x ** 2
    cost = (h * x).sum()
    v = np.array([1.0, -2.0, 3.0])
    full, partial, stopped = sg.evaluate(
        [sg.grad(cost, x), sg.grad(cost, x, consider_constant=[h]),
         sg.grad((sg.stop_gradient(h) * x).sum(), x)], {x: v})
    np.testing.assert_allclose(full, 3 * v ** 2)
    np.testing.assert_allclose(partial, v ** 2)  # d/dx through h is left out
    np.testing.assert_allclose(partial, stopped)
    # the cotangent still reaches the constant itself (a wrt may be one of them)
    gx, gh = sg.grad(cost, [x, h], consider_constant=[h])
    np.testing.assert_allclose(sg.evaluate([gx, gh], {x: v})[1], v)
    np.testing.assert_allclose(sg.evaluate(gx, {x: v}), v ** 2)


def test_consider_constant_disconnects_and_checks_its_argument():
    x = sg.vector("x")
    h = sg.exp(x)
    with pytest.raises(sg.DisconnectedInputError, match="consider_constant"):
        sg.grad(h.sum(), x, consider_constant=[h])
    z = sg.grad(h.sum(), x, consider_constant=(h,), disconnected="ignore")
    np.testing.assert_array_equal(sg.evaluate(z, {x: np.ones(2)}), np.zeros(2))
    with pytest.raises(TypeError, match=r"consider_constant\[0\] must be a symbolic Variable"):
        sg.grad(h.sum(), x, consider_constant=[np.ones(2)])
    # an integer value treated as a constant is no longer a path without gradient
    k = sg.argmax(x)
    cost = (x * sg.cast(k, "float64")).sum()
    np.testing.assert_array_equal(sg.evaluate(sg.grad(cost, x, consider_constant=[k]),
                                              {x: np.array([0.0, 5.0, 1.0])}), [1.0, 1.0, 1.0])


def test_consider_constant_rbm_style_compiled():
    """The RBM tutorial's cost: free energy of the data minus that of a chain end treated
    as a constant; the gradient matches the one with stop_gradient, compiled."""
    W = sg.shared(RNG.standard_normal((4, 3)) * 0.1, name="W")
    v = sg.matrix("v")
    chain_end = sg.sigmoid(sg.sigmoid(v @ W) @ W.T)

    def free_energy(u):
        return -sg.softplus(u @ W).sum(axis=1)
    cost = free_energy(v).mean() - free_energy(chain_end).mean()
    want = free_energy(v).mean() - free_energy(sg.stop_gradient(chain_end)).mean()
    f = sg.function([v], [sg.grad(cost, W, consider_constant=[chain_end]), sg.grad(want, W)])
    a, b = f(RNG.random((5, 4)))
    np.testing.assert_allclose(a, b, rtol=1e-12)
