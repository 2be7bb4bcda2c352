"""The worked examples the design comes from."""

import numpy as np
import pytest

import symgrad as sg


def test_three_layer_tutorial_model():
    # L1 identity, L2 linear with fixed weights, L3 relu, Loss = 1/2 (X4 - Y)^2 per row.
    X = sg.matrix("X")
    Y = sg.vector("Y")
    w = sg.shared(np.array([1 / 200, -3000 / 11600000, 1 / 5800]), name="w")
    x2 = X                      # L1: identity
    x3 = x2 @ w                 # L2: linear
    x4 = sg.relu(x3)            # L3: relu
    x4.name = "X4"
    losses = 0.5 * (x4 - Y) ** 2
    total = losses.sum()
    total.name = "Loss"
    delta4 = sg.grad(total, x4)
    f = sg.function([X, Y], [x4, losses, delta4], mode="py")
    rows = np.array([[100, 2000, 100], [200, 0, 0], [0, 2000, 3000]], dtype=float)
    truth = np.array([0.0, 1.0, 1.0])
    out, loss, d4 = f(rows, truth)
    np.testing.assert_allclose(out, [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(loss, [0, 0, 0.5], atol=1e-12)
    np.testing.assert_allclose(d4, out - truth, atol=1e-12)     # delta4 = o3 - y
    text = sg.debugprint(sg.grad(total, w))
    assert "d(Loss)/d(w)" in text and "relu" in text


def test_gradient_of_mean_equals_mean_of_per_example_gradients():
    rng = np.random.default_rng(0)
    X = sg.tensor("X", shape=(32, 5))
    Y = sg.tensor("Y", shape=(32, 3))
    W = sg.shared(rng.standard_normal((5, 3)), name="W")
    b = sg.shared(rng.standard_normal(3), name="b")
    per_example = ((sg.tanh(X @ W + b) - Y) ** 2).sum(axis=1)
    assert per_example.type.shape == (32,)
    g_mean = sg.grad(per_example.mean(), [W, b])
    J = sg.jacobian(per_example, [W, b])
    f = sg.function([X, Y], g_mean + [J[0].mean(axis=0), J[1].mean(axis=0), J[0]], mode="py")
    gW, gb, jW, jb, per = f(rng.standard_normal((32, 5)), rng.standard_normal((32, 3)))
    assert per.shape == (32, 5, 3)
    np.testing.assert_allclose(gW, jW, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gb, jb, rtol=1e-10, atol=1e-12)


def test_matrix_cost_raises_with_the_explanation():
    X = sg.matrix("X")
    W = sg.shared(np.ones((3, 2)), name="W")
    with pytest.raises(sg.NonScalarCostError, match=r"(?s)0-d cost.*one number.*\.mean\(\)"
                                                    r".*known_grads"):
        sg.grad(X @ W, W)
