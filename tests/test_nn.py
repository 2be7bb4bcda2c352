"""sg.nn: stability for huge logits, label checks at run time, argument checks at build time."""

import sys

import numpy as np
import pytest

import symgrad as sg


def _line():
    return sys._getframe(1).f_lineno


def _labels(name="y", dtype="int64"):
    return sg.tensor(name, dtype=dtype, shape=(None,))


HUGE = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]])


# --------------------------------------------------------------------------- stability

def test_cross_entropy_is_exact_and_finite_for_huge_logits():
    z, y = sg.matrix("z"), _labels()
    loss = sg.nn.cross_entropy(z, y)
    g = sg.grad(loss.sum(), z)
    f = sg.function([z, y], [loss, g], mode="py")
    got, grad = f(HUGE, np.array([1, 2, 0]))
    np.testing.assert_allclose(got, [2e4, np.log(3.0), np.log(2.0)], rtol=1e-12)
    assert np.all(np.isfinite(grad))
    want = np.array([[1.0, -1.0, 0.0], [1 / 3, 1 / 3, -2 / 3], [-0.5, 0.5, 0.0]])
    np.testing.assert_allclose(grad, want, atol=1e-12)


def test_cross_entropy_float32_huge_logits():
    z, y = sg.matrix("z", dtype="float32"), _labels()
    loss = sg.nn.cross_entropy(z, y)
    g = sg.grad(loss.sum(), z)
    f = sg.function([z, y], [loss, g], mode="py")
    got, grad = f(HUGE.astype("float32"), np.array([0, 1, 2]))
    assert got.dtype == grad.dtype == np.float32
    assert np.all(np.isfinite(got)) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(got, [0.0, np.log(3.0), 2e4 + np.log(2.0)], rtol=1e-6)


@pytest.mark.parametrize("fn", [sg.nn.softmax, sg.nn.log_softmax], ids=["softmax", "log_softmax"])
def test_softmax_family_is_finite_for_huge_logits(fn):
    x = sg.matrix("x")
    out = fn(x)
    w = sg.constant([[1.0, 2.0, 3.0]] * 3)
    g = sg.grad((out * w).sum(), x)
    val, grad = sg.function([x], [out, g], mode="py")(HUGE)
    assert np.all(np.isfinite(val)) and np.all(np.isfinite(grad))
    p = np.array([[1.0, 0.0, 0.0], [1 / 3] * 3, [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(np.exp(val) if fn is sg.nn.log_softmax else val, p, atol=1e-12)


def test_softmax_rows_sum_to_one_and_log_softmax_agrees():
    x = sg.tensor3("x")
    v = np.random.default_rng(0).standard_normal((2, 3, 4)) * 50
    s, ls = sg.function([x], [sg.nn.softmax(x, axis=1), sg.nn.log_softmax(x, axis=1)], mode="py")(v)
    np.testing.assert_allclose(s.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.exp(ls), s, atol=1e-15)


def test_binary_cross_entropy_with_logits_is_stable():
    x, t = sg.vector("x"), sg.vector("t")
    loss = sg.nn.binary_cross_entropy_with_logits(x, t)
    g = sg.grad(loss.sum(), x)
    xv, tv = np.array([1e4, -1e4, 1e4, -1e4, 0.0]), np.array([1.0, 0.0, 0.0, 1.0, 0.5])
    val, grad = sg.function([x, t], [loss, g], mode="py")(xv, tv)
    np.testing.assert_allclose(val, [0.0, 0.0, 1e4, 1e4, np.log(2.0)], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, [0.0, 0.0, 1.0, -1.0, 0.0], atol=1e-12)


def test_binary_cross_entropy_keeps_the_logits_dtype():
    x = sg.vector("x", dtype="float32")
    assert sg.nn.binary_cross_entropy_with_logits(x, sg.vector("t")).dtype == "float32"
    assert sg.nn.binary_cross_entropy_with_logits(x, 1).dtype == "float32"
    assert sg.nn.binary_cross_entropy_with_logits(x, np.ones(3)).dtype == "float32"


# --------------------------------------------------------------------------- labels at run time

@pytest.mark.parametrize("bad", [3, -1])
def test_cross_entropy_label_out_of_range(bad):
    z, y = sg.matrix("z"), _labels()
    line = _line() + 1
    loss = sg.nn.cross_entropy(z, y)
    f = sg.function([z, y], loss, mode="py")
    with pytest.raises(sg.IndexError) as info:
        f(np.zeros((2, 3)), np.array([0, bad]))
    assert isinstance(info.value, IndexError) and isinstance(info.value, sg.SymgradError)
    msg = str(info.value)
    assert "cross_entropy" in msg and f"test_nn.py:{line}" in msg and str(bad) in msg


def test_cross_entropy_label_checked_in_the_gradient_too():
    z, y = sg.matrix("z"), _labels()
    g = sg.grad(sg.nn.cross_entropy(z, y).sum(), z)
    with pytest.raises(sg.IndexError):
        sg.function([z, y], g, mode="py")(np.zeros((1, 2)), np.array([2]))


@pytest.mark.parametrize("bad", [4, -2])
def test_one_hot_label_out_of_range(bad):
    y = sg.tensor("y", dtype="int32", shape=(None, None))
    line = _line() + 1
    out = sg.one_hot(y, 4)
    f = sg.function([y], out, mode="py")
    with pytest.raises(IndexError) as info:
        f(np.array([[0, 1], [bad, 2]], dtype="int32"))
    assert isinstance(info.value, sg.IndexError)
    msg = str(info.value)
    assert "one_hot" in msg and f"test_nn.py:{line}" in msg and "(1, 0)" in msg


def test_one_hot_with_a_runtime_number_of_classes():
    y, n = _labels(), sg.scalar("n", dtype="int64")
    out = sg.one_hot(y, n)
    assert out.dtype == sg.config.floatX and out.type.shape == (None, None)
    f = sg.function([y, n], out, mode="py")
    np.testing.assert_array_equal(f(np.array([1, 0]), 2), np.eye(2)[[1, 0]])
    with pytest.raises(sg.IndexError):
        f(np.array([1, 2]), 2)


def test_one_hot_static_shape_and_dtype():
    y = sg.tensor("y", dtype="int64", shape=(5, 2))
    out = sg.one_hot(y, 3, dtype="bool")
    assert out.type == sg.TensorType("bool", (5, 2, 3))


def test_labels_are_not_differentiable():
    z, y = sg.matrix("z"), _labels()
    w = sg.vector("w")
    cost = sg.nn.cross_entropy(z, y).sum() + (sg.one_hot(y, 3) @ w).sum()
    with pytest.raises(sg.NonDifferentiableError):
        sg.grad(cost, y)
    gz, gw = sg.grad(cost, [z, w])  # the float inputs are fine
    assert gz.dtype == gw.dtype == "float64"


def test_second_order_gradient_of_cross_entropy():
    y = sg.constant(np.array([2, 0, 1]))
    z0 = np.random.default_rng(1).standard_normal((3, 4))
    sg.verify_grad(lambda z: (sg.grad(sg.nn.cross_entropy(z, y).sum(), z) ** 2).sum(), [z0])


def test_cross_entropy_of_an_empty_batch():
    z, y = sg.matrix("z"), _labels()
    f = sg.function([z, y], sg.nn.cross_entropy(z, y), mode="py")
    got = f(np.zeros((0, 3)), np.zeros(0, "int64"))
    assert got.shape == (0,) and got.dtype == np.float64


# --------------------------------------------------------------------------- build-time checks

def test_cross_entropy_static_batch_mismatch_at_the_users_line():
    z = sg.tensor("z", shape=(4, 3))
    y = sg.tensor("y", dtype="int64", shape=(5,))
    line = _line() + 2
    with pytest.raises(sg.ShapeError) as info:
        sg.nn.cross_entropy(z, y)
    msg = str(info.value)
    assert "cross_entropy" in msg and "4" in msg and "5" in msg and f"test_nn.py:{line}" in msg


@pytest.mark.parametrize("z,y,err", [
    (sg.vector(), _labels(), sg.ShapeError),
    (sg.matrix(), sg.matrix(dtype="int64"), sg.ShapeError),
    (sg.matrix(), sg.vector(), TypeError),
    (sg.matrix(dtype="int64"), _labels(), TypeError),
    (sg.matrix(), _labels(dtype="bool"), TypeError),
], ids=["1d-logits", "2d-labels", "float-labels", "int-logits", "bool-labels"])
def test_cross_entropy_argument_checks(z, y, err):
    with pytest.raises(err, match="cross_entropy"):
        sg.nn.cross_entropy(z, y)


@pytest.mark.parametrize("fn", [sg.nn.softmax, sg.nn.log_softmax], ids=["softmax", "log_softmax"])
def test_softmax_argument_checks(fn):
    with pytest.raises(TypeError, match="float"):
        fn(sg.vector(dtype="int64"))
    with pytest.raises(sg.ShapeError, match="axis"):
        fn(sg.matrix(), axis=2)
    with pytest.raises(TypeError, match="axis"):
        fn(sg.matrix(), axis=1.5)


def test_one_hot_argument_checks():
    with pytest.raises(TypeError, match="integers"):
        sg.one_hot(sg.vector(), 3)
    with pytest.raises(TypeError, match="n must be"):
        sg.one_hot(_labels(), 3.0)
    with pytest.raises(TypeError, match="integer scalar"):
        sg.one_hot(_labels(), sg.vector(dtype="int64"))
    with pytest.raises(sg.ShapeError, match=">= 0"):
        sg.one_hot(_labels(), -1)


def test_binary_cross_entropy_argument_checks():
    with pytest.raises(TypeError, match="float"):
        sg.nn.binary_cross_entropy_with_logits(sg.vector(dtype="int64"), sg.vector())
    with pytest.raises(sg.ShapeError):
        sg.nn.binary_cross_entropy_with_logits(sg.tensor(shape=(3,)), sg.tensor(shape=(4,)))


def test_axis_spellings_make_equal_ops():
    x = sg.matrix()
    assert sg.nn.softmax(x, axis=-1).owner.op == sg.nn.softmax(x, axis=1).owner.op
