"""Stabilisation: the naive formula with logits of +-1000 gives finite values and gradients.

``sg.grad`` is taken before ``sg.function``, so the naive gradient graph is in
the function too; both must come out finite and equal to what the stable
formula gives. Without the rewrites (level "none") the same graphs give inf or
NaN, which shows each test exercises what it claims.
"""

import numpy as np
import pytest

import symgrad as sg
import symgrad.rewrite as rw

Z = np.array([[1000.0, -1000.0, 0.0, 3.0], [-1000.0, 1000.0, 500.0, -500.0],
              [0.5, -0.25, 1000.0, 999.0]])
LABELS = np.array([1, 0, 3])
X = np.array([-1000.0, -40.0, -1.0, 0.0, 2.0, 40.0, 1000.0])
TARGETS = np.array([1.0, 0.0, 1.0, 0.5, 0.0, 1.0, 0.0])


@pytest.fixture(autouse=True)
def strict_rules(monkeypatch):
    monkeypatch.setattr(rw, "strict", True)


def _check(build_naive, build_stable, inputs, values, dtype="float64", rtol=1e-12):
    syms = [sg.tensor(f"a{i}", dtype=(dtype if v.dtype.kind == "f" else v.dtype.name),
                      shape=(None,) * v.ndim) for i, v in enumerate(values)]
    values = [v.astype(dtype) if v.dtype.kind == "f" else v for v in values]
    wrt = syms[0]
    naive, stable = build_naive(*syms), build_stable(*syms)
    outs = [naive, sg.grad(naive, wrt)]
    want = sg.function(syms, [stable, sg.grad(stable, wrt)], mode="py")(*values)
    raw = sg.function(syms, outs, mode="py", rewrite="none")(*values)
    assert not all(np.isfinite(r).all() for r in raw), "the naive graph is already finite"
    for mode in ("py", "c"):
        got = sg.function(syms, outs, mode=mode)(*values)
        for g, w in zip(got, want):
            assert np.isfinite(g).all(), f"mode {mode}: {g}"
            assert g.dtype == np.dtype(dtype)
            np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol)


def _rows(z):
    return sg.arange(sg.shape(z)[0])


NAIVE_CE = {
    "log-softmax-picked": lambda z, y: -sg.log(sg.nn.softmax(z))[_rows(z), y].mean(),
    "log-of-picked-softmax": lambda z, y: -sg.log(sg.nn.softmax(z)[_rows(z), y]).mean(),
    "one-hot": lambda z, y: -(sg.one_hot(y, sg.shape(z)[1], dtype=z.dtype)
                              * sg.log(sg.nn.softmax(z))).sum(axis=1).mean(),
    "one-hot-constant-classes": lambda z, y: (-(sg.one_hot(y, 4, dtype=z.dtype)
                                                * sg.log(sg.nn.softmax(z))).sum(axis=1)).mean(),
    "sum-of-picked": lambda z, y: -sg.log(sg.nn.softmax(z))[_rows(z), y].sum(),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(NAIVE_CE))
def test_naive_softmax_cross_entropy(name, dtype):
    stable = (lambda z, y: sg.nn.cross_entropy(z, y).sum()) if name == "sum-of-picked" else \
        (lambda z, y: sg.nn.cross_entropy(z, y).mean())
    _check(NAIVE_CE[name], stable, None, [Z, LABELS], dtype,
           rtol=1e-12 if dtype == "float64" else 1e-5)


def test_the_indexing_form_becomes_the_fused_cross_entropy():
    z, y = sg.matrix("z"), sg.vector("y", dtype="int64")
    loss = NAIVE_CE["log-softmax-picked"](z, y)
    f = sg.function([z, y], [loss, sg.grad(loss, z)], mode="py")
    names = [n.op.name for n in f.graph.nodes]
    assert "cross_entropy" in names and "log_softmax" not in names and "log" not in names


def test_log_softmax_of_huge_logits_in_any_position():
    # not a loss: log(softmax) itself, and its gradient through a weighted sum
    w = np.array([[1.0, 2.0, 0.0, -1.0]])
    _check(lambda z: (sg.log(sg.nn.softmax(z)) * w).sum(),
           lambda z: (sg.nn.log_softmax(z) * w).sum(), None, [Z])


def test_naive_log_sigmoid_and_binary_cross_entropy():
    _check(lambda x: sg.log(sg.sigmoid(x)).sum(), lambda x: (-sg.softplus(-x)).sum(), None, [X])
    _check(lambda x: sg.log(1 - sg.sigmoid(x)).sum(), lambda x: (-sg.softplus(x)).sum(),
           None, [X])
    _check(lambda x, t: -(t * sg.log(sg.sigmoid(x)) + (1 - t) * sg.log(1 - sg.sigmoid(x))).sum(),
           lambda x, t: sg.nn.binary_cross_entropy_with_logits(x, t).sum(), None, [X, TARGETS])


@pytest.mark.parametrize("axis,keepdims", [(None, False), (1, False), (1, True), (0, True)])
def test_naive_log_sum_exp(axis, keepdims):
    _check(lambda z: sg.log(sg.sum(sg.exp(z), axis=axis, keepdims=keepdims)).sum(),
           lambda z: sg.logsumexp(z, axis=axis, keepdims=keepdims).sum(), None, [Z])


def test_log1p_and_expm1_keep_tiny_values():
    x = sg.vector("x")
    v = np.array([1e-20, -3e-18, 1e-10])
    f = sg.function([x], [sg.log(1 + x), sg.exp(x) - 1, sg.log(1 - x)], mode="py")
    log1p, expm1, log1m = f(v)
    np.testing.assert_allclose(log1p, np.log1p(v), rtol=1e-15)
    np.testing.assert_allclose(expm1, np.expm1(v), rtol=1e-15)
    np.testing.assert_allclose(log1m, np.log1p(-v), rtol=1e-15)
    raw = sg.function([x], sg.log(1 + x), mode="py", rewrite="none")(v)
    assert raw[0] == 0.0  # what the naive formula gives


def test_a_train_step_on_the_naive_formula_stays_finite():
    rng = np.random.default_rng(0)
    X_in = sg.matrix("X")
    y = sg.vector("y", dtype="int64")
    W = sg.shared(rng.standard_normal((5, 4)) * 300, name="W")  # logits in the thousands
    b = sg.shared(np.zeros(4), name="b")
    z = X_in @ W + b
    loss = -sg.log(sg.nn.softmax(z))[sg.arange(sg.shape(z)[0]), y].mean()
    gW, gb = sg.grad(loss, [W, b])
    step = sg.function([X_in, y], loss, updates=[(W, W - 1e-3 * gW), (b, b - 1e-3 * gb)])
    for _ in range(3):
        value = step(rng.standard_normal((6, 5)), rng.integers(0, 4, 6))
        assert np.isfinite(value)
        assert np.isfinite(W.get_value()).all() and np.isfinite(b.get_value()).all()
