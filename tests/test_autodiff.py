"""sg.grad and friends: structures, seeds, disconnected and non-differentiable paths,
subgradients, higher order, vjp/jvp/jacobian/hessian, verify_grad."""

import inspect
import warnings

import numpy as np
import pytest

import symgrad as sg
from symgrad.graph import Op, TensorType


def test_wrt_structures_are_mirrored():
    x, y = sg.vector("x"), sg.scalar("y")
    cost = (x * y).sum()
    assert isinstance(sg.grad(cost, x), sg.Variable)
    assert isinstance(sg.grad(cost, [x, y]), list)
    gx, gy = sg.grad(cost, (x, y))
    f = sg.function([x, y], [gx, gy], mode="py")
    a, b = f(np.array([1.0, 2.0]), 3.0)
    np.testing.assert_allclose(a, [3.0, 3.0])
    assert b == 3.0
    assert gx.name == "d(cost)/d(x)" and gy.name == "d(cost)/d(y)"


def test_grad_names_use_the_cost_name():
    w = sg.shared(np.ones(3), name="W")
    loss = (w ** 2).sum()
    loss.name = "loss"
    assert sg.grad(loss, w).name == "d(loss)/d(W)"


def test_wrt_an_intermediate_result():
    x = sg.vector("x")
    h = sg.tanh(x)
    h.name = "h"
    cost = (h ** 2).sum()
    gh = sg.grad(cost, h)
    xv = np.array([0.3, -0.4])
    np.testing.assert_allclose(sg.evaluate(gh, {x: xv}), 2 * np.tanh(xv))


def test_broadcast_input_gradient_is_summed_back():
    X, b = sg.matrix("X"), sg.vector("b")
    gb = sg.grad((X + b).sum(), b)
    np.testing.assert_allclose(sg.evaluate(gb, {X: np.ones((4, 3)), b: np.zeros(3)}), [4, 4, 4])
    s = sg.scalar("s")
    gs = sg.grad((X * s).sum(), s)
    assert sg.evaluate(gs, {X: np.ones((4, 3)), s: 2.0}) == 12.0


def test_known_grads_and_cost_none():
    x = sg.vector("x")
    y = x * 3
    g = sg.grad(None, x, known_grads={y: sg.constant([1.0, 2.0])})
    np.testing.assert_allclose(sg.evaluate(g, {x: np.zeros(2)}), [3.0, 6.0])
    with pytest.raises(ValueError, match="known_grads"):
        sg.grad(None, x)


def test_disconnected_modes():
    x, y = sg.vector("x"), sg.vector("y")
    cost = (x ** 2).sum()
    with pytest.raises(sg.DisconnectedInputError, match="does not depend on"):
        sg.grad(cost, y)
    with pytest.warns(UserWarning, match="no gradient reaches y"):
        gy = sg.grad(cost, y, disconnected="warn")
    np.testing.assert_array_equal(sg.evaluate(gy, {y: np.ones(3)}), np.zeros(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sg.grad(cost, [x, y], disconnected="ignore")
    with pytest.raises(ValueError, match="disconnected"):
        sg.grad(cost, x, disconnected="zero")
    with pytest.raises(sg.DisconnectedInputError, match="cut"):
        sg.grad(sg.stop_gradient(x).sum(), x)


def test_non_scalar_cost_explains():
    X = sg.tensor("X", shape=(None, 3))
    with pytest.raises(sg.NonScalarCostError) as err:
        sg.grad(X * 2, X)
    msg = str(err.value)
    assert "(?, 3)" in msg and "one number" in msg
    assert ".mean()" in msg and ".sum()" in msg and "known_grads" in msg
    assert isinstance(err.value, TypeError)


def _line_of(marker):
    src = inspect.getsource(inspect.getmodule(_line_of)).splitlines()
    return next(i + 1 for i, s in enumerate(src) if marker in s)


def test_argmax_path_is_not_differentiable_and_names_the_line():
    x = sg.matrix("x")
    idx = x.argmax(axis=1)  # MARK-argmax
    cost = idx.astype("float64").sum()
    with pytest.raises(sg.NonDifferentiableError) as err:
        sg.grad(cost, x)
    assert "argmax" in str(err.value)
    assert f"test_autodiff.py:{_line_of('MARK-argmax')}" in str(err.value)


def test_comparison_and_integer_cast_paths():
    x = sg.vector("x")
    mask = x > 0  # MARK-gt
    with pytest.raises(sg.NonDifferentiableError, match=rf"gt .*:{_line_of('MARK-gt')}.* sg.where"):
        sg.grad((x * mask).sum(), x)
    as_int = x.astype("int64")  # MARK-cast
    with pytest.raises(sg.NonDifferentiableError, match=rf"cast.*:{_line_of('MARK-cast')}"):
        sg.grad((as_int * 2.0).sum(), x)
    n = sg.vector("n", dtype="int32")
    with pytest.raises(sg.NonDifferentiableError, match="int32 input n"):
        sg.grad((n * 2.0).sum(), n)


def test_where_selects_without_error():
    x = sg.vector("x")
    leaky = sg.where(x > 0, x, 0.1 * x)
    g = sg.grad(leaky.sum(), x)
    np.testing.assert_allclose(sg.evaluate(g, {x: np.array([-1.0, 2.0])}), [0.1, 1.0])


def test_integer_data_off_the_path_is_fine():
    x, n = sg.vector("x"), sg.vector("n", dtype="int64")
    g = sg.grad((x * n).sum(), x)
    np.testing.assert_allclose(sg.evaluate(g, {x: np.zeros(2), n: np.array([2, 3])}), [2, 3])


def test_documented_subgradients():
    x = sg.vector("x")
    z = np.array([0.0, -1.0, 2.0])
    np.testing.assert_array_equal(sg.evaluate(sg.grad(sg.relu(x).sum(), x), {x: z}), [0, 0, 1])
    np.testing.assert_array_equal(sg.evaluate(sg.grad(abs(x).sum(), x), {x: z}), [0, -1, 1])
    for fn in (sg.floor, sg.ceil, sg.round, sg.sign):
        np.testing.assert_array_equal(sg.evaluate(sg.grad(fn(x).sum(), x), {x: z}), [0, 0, 0])


def test_stop_gradient():
    x = sg.scalar("x")
    g = sg.grad(x * sg.stop_gradient(x), x)
    assert sg.evaluate(g, {x: 3.0}) == 3.0


def test_stop_gradient_cuts_an_integer_path_as_the_error_advises():
    # An argmax of the model's own output used as an index (greedy decoding, hard
    # attention): the path through the index raises, and the error says to wrap the value
    # in sg.stop_gradient -- which used to raise the same error, now about stop_gradient.
    W = sg.shared(np.array([[1.0, -2.0, 0.5], [0.3, 0.2, -1.0]]), name="W")
    x = sg.matrix("x")
    logits = x @ W
    logp = sg.nn.log_softmax(logits)
    rows = sg.arange(x.shape[0])
    with pytest.raises(sg.NonDifferentiableError, match=r"argmax.* sg.stop_gradient"):
        sg.grad(logp[rows, logits.argmax(axis=1)].sum(), W)
    best = sg.stop_gradient(logits.argmax(axis=1))
    costs = [logp[rows, best].sum(), (sg.one_hot(best, 3) * logp).sum(), W.T[best].sum()]
    X = np.array([[1.0, 2.0], [-1.0, 0.5], [0.0, 3.0]])
    got = sg.function([x], [sg.grad(c, W) for c in costs])(X)
    # the same with the chosen indices as data
    y = sg.vector("y", dtype="int64")
    fixed = [logp[rows, y].sum(), (sg.one_hot(y, 3) * logp).sum(), W.T[y].sum()]
    want = sg.function([x, y], [sg.grad(c, W) for c in fixed])(X, (X @ W.get_value()).argmax(1))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-14)
    assert np.abs(got[0]).sum() > 0


def test_grad_of_grad():
    x = sg.scalar("x")
    g1 = sg.grad(x ** 3, x)
    g2 = sg.grad(g1, x)
    g3 = sg.grad(g2, x)
    assert sg.evaluate([g1, g2, g3], {x: 2.0}) == [12.0, 12.0, 6.0]
    v = sg.vector("v")
    gg = sg.grad(sg.grad(sg.tanh(v).sum(), v).sum(), v)
    t = np.tanh(np.array([0.3, -0.7]))
    np.testing.assert_allclose(sg.evaluate(gg, {v: np.array([0.3, -0.7])}), -2 * t * (1 - t ** 2))


def test_relu_network_second_order_has_no_false_error():
    x = sg.vector("x")
    g = sg.grad((sg.relu(x) ** 2).sum(), x)
    h = sg.grad(g.sum(), x)
    np.testing.assert_allclose(sg.evaluate(h, {x: np.array([-1.0, 2.0])}), [0.0, 2.0])


def test_vjp_and_jvp():
    x = sg.vector("x")
    y = sg.sin(x) * 2
    xv, tv = np.array([0.1, 0.5, 1.0]), np.array([1.0, -1.0, 0.5])
    np.testing.assert_allclose(sg.evaluate(sg.vjp(y, x, sg.constant(tv)), {x: xv}),
                               2 * np.cos(xv) * tv)
    np.testing.assert_allclose(sg.evaluate(sg.jvp(y, x, sg.constant(tv)), {x: xv}),
                               2 * np.cos(xv) * tv)
    W = sg.matrix("W")
    z = W @ x
    Wv, dW = np.arange(6.0).reshape(2, 3), np.ones((2, 3))
    jz = sg.jvp([z], [W, x], [sg.constant(dW), sg.constant(tv)])
    np.testing.assert_allclose(sg.evaluate(jz[0], {W: Wv, x: xv}), dW @ xv + Wv @ tv)


def test_jacobian_and_hessian():
    x = sg.tensor("x", shape=(3,))
    y = x ** 2
    J = sg.jacobian(y, x)
    assert J.type.shape == (3, 3)
    xv = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(sg.evaluate(J, {x: xv}), np.diag(2 * xv))
    H = sg.hessian((x ** 3).sum(), x)
    np.testing.assert_allclose(sg.evaluate(H, {x: xv}), np.diag(6 * xv))
    # a length known only at call time: a loop over the rows (tests/test_scan.py has more)
    v = sg.vector("v")
    Jv = sg.jacobian(v ** 2, v)
    np.testing.assert_allclose(sg.evaluate(Jv, {v: xv}), np.diag(2 * xv))
    Hv = sg.hessian((v ** 3).sum(), v)
    np.testing.assert_allclose(sg.evaluate(Hv, {v: xv}), np.diag(6 * xv))


class _BadSquare(Op):
    """x**2 with a wrong gradient (3x instead of 2x), to test verify_grad."""

    name = "bad_square_for_tests"
    register = False

    def infer(self, x):
        return [x.type]

    def perform(self, node, x):
        return [x ** 2]

    def grad(self, node, inputs, outputs, gouts):
        return [gouts[0] * 3 * inputs[0]]


def test_verify_grad():
    sg.verify_grad(lambda a, b: (a * sg.exp(b)), [np.array([0.5, 1.0]), np.array([0.1, -0.2])])
    with pytest.raises(sg.GradientError, match=r"input #0 at index \(\d\,\)") as err:
        sg.verify_grad(lambda a: _BadSquare()(a), [np.array([0.5, 1.0])], mode="py")
    assert isinstance(err.value, AssertionError) and err.value.abs_err > 0.1


def test_gradient_nodes_carry_the_forward_line():
    x = sg.vector("x")
    y = sg.tanh(x)  # MARK-tanh
    g = sg.grad(y.sum(), x)
    nodes = sg.graph.toposort([g])
    from_tanh = [n for n in nodes if n.grad_of is y.owner]
    assert from_tanh and all(n.trace.lineno == _line_of("MARK-tanh") for n in from_tanh)
