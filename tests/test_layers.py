"""sg.layers: initialisers and the Dense layer."""

import math

import numpy as np
import pytest

import symgrad as sg
from symgrad import layers

INITS = ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal"]


def test_fans():
    assert layers.fans((5,)) == (5, 5)
    assert layers.fans((64, 10)) == (64, 10)
    assert layers.fans((3, 3, 16, 32)) == (9 * 16, 9 * 32)
    assert layers.fans(7) == (7, 7)
    with pytest.raises(ValueError, match="positive ints"):
        layers.fans((0, 3))
    with pytest.raises(ValueError, match="positive ints"):
        layers.fans(())


@pytest.mark.parametrize("name", INITS)
def test_initialisers_are_seeded_typed_and_scaled(name):
    init = layers.INITIALISERS[name]
    a = init((400, 300), rng=3)
    assert a.shape == (400, 300) and a.dtype == np.float64
    np.testing.assert_array_equal(a, init((400, 300), rng=np.random.default_rng(3)))
    assert not np.array_equal(a, init((400, 300), rng=4))
    assert init((4, 2), rng=0, dtype="float32").dtype == np.float32
    fan_in, fan_out = 400, 300
    std = {"glorot_uniform": math.sqrt(2 / (fan_in + fan_out)),
           "glorot_normal": math.sqrt(2 / (fan_in + fan_out)),
           "he_uniform": math.sqrt(2 / fan_in), "he_normal": math.sqrt(2 / fan_in)}[name]
    assert a.std() == pytest.approx(std, rel=0.02)
    assert abs(a.mean()) < 0.01 * std * 10
    if name.endswith("uniform"):
        assert np.abs(a).max() <= std * math.sqrt(3)


def test_glorot_gain_and_zeros():
    a = layers.glorot_uniform((50, 50), rng=0, gain=2.0)
    assert np.abs(a).max() <= 2.0 * math.sqrt(6 / 100) and np.abs(a).max() > math.sqrt(6 / 100)
    z = layers.zeros((2, 3), rng=0)
    assert z.shape == (2, 3) and not z.any() and z.dtype == np.float64


def test_rng_argument_is_checked():
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        layers.he_normal((2, 2), rng="seed")
    with pytest.raises(TypeError, match="got a bool"):
        layers.he_normal((2, 2), rng=True)
    with pytest.raises(TypeError, match="dtype"):
        layers.he_normal((2, 2), dtype="float16")
    assert layers.he_normal((2, 2)).shape == (2, 2)     # None: unseeded


@pytest.mark.parametrize("mode", ["py", "c"])
def test_dense_forward_matches_numpy(mode):
    layer = sg.layers.Dense(3, 4, activation=sg.tanh, rng=0, name="hid")
    assert [p.name for p in layer.params] == ["hid.W", "hid.b"]
    assert layer.W.get_value().shape == (3, 4) and not layer.b.get_value().any()
    layer.b.set_value(np.arange(4.0))
    x = sg.matrix("x")
    f = sg.function([x], layer(x), mode=mode)
    xv = np.random.default_rng(1).normal(size=(5, 3))
    np.testing.assert_allclose(f(xv), np.tanh(xv @ layer.W.get_value() + np.arange(4.0)),
                               rtol=1e-12)
    assert "Dense(3, 4, activation=tanh, name='hid')" == repr(layer)


def test_dense_options():
    linear = sg.layers.Dense(2, 2, bias=False, init="zeros", name="lin")
    assert linear.b is None and linear.params == [linear.W] and not linear.W.get_value().any()
    x = sg.matrix("x")
    assert sg.evaluate(linear(x), {x: np.ones((1, 2))}).tolist() == [[0.0, 0.0]]
    custom = sg.layers.Dense(2, 3, init=lambda shape, rng, dtype: np.full(shape, 0.5, dtype))
    assert custom.W.get_value().tolist() == [[0.5] * 3] * 2
    f32 = sg.layers.Dense(2, 3, rng=0, dtype="float32")
    assert f32.W.dtype == "float32" and f32.b.dtype == "float32"
    assert f32(sg.matrix(dtype="float32")).dtype == "float32"
    same = sg.layers.Dense(3, 2, rng=7)
    assert np.array_equal(same.W.get_value(), sg.layers.Dense(3, 2, rng=7).W.get_value())
    # A batch of sequences: (batch, time, features) @ W.
    seq = sg.tensor("s", shape=(None, None, 3))
    assert same(seq).ndim == 3      # shared weights have no static shape


def test_dense_arguments_are_checked():
    with pytest.raises(TypeError, match="n_in must be a positive int, got float"):
        sg.layers.Dense(2.0, 3)
    with pytest.raises(ValueError, match="n_out must be a positive int, got 0"):
        sg.layers.Dense(2, 0)
    with pytest.raises(TypeError, match="activation must be callable"):
        sg.layers.Dense(2, 3, activation="relu")
    with pytest.raises(ValueError, match="unknown initialiser 'xavier'"):
        sg.layers.Dense(2, 3, init="xavier")
    with pytest.raises(TypeError, match="init must be an initialiser name or a function"):
        sg.layers.Dense(2, 3, init=3)
    with pytest.raises(ValueError, match=r"initialiser returned shape \(2,\)"):
        sg.layers.Dense(2, 3, init=lambda shape, rng, dtype: np.zeros(2))
    with pytest.raises(TypeError, match="parameters must be float"):
        sg.layers.Dense(2, 3, dtype="int32")
    with pytest.raises(TypeError, match="name must be a non-empty str"):
        sg.layers.Dense(2, 3, name="")
    layer = sg.layers.Dense(2, 3, rng=0, name="d")
    with pytest.raises(sg.ShapeError, match=r"Dense 'd': expected an input of shape \(\.\.\., 2\)"):
        layer(sg.tensor("x", shape=(None, 5)))
    with pytest.raises(sg.ShapeError):
        layer(sg.scalar("s"))
    with pytest.raises(TypeError, match="expected a symbolic Variable, got ndarray"):
        layer(np.ones((1, 2)))


def test_dense_called_twice_shares_parameters_and_trains():
    rng = np.random.default_rng(2)
    xv = rng.normal(size=(32, 4))
    yv = xv @ np.array([1.0, -2.0, 0.5, 3.0]) + 1.0
    layer = sg.layers.Dense(4, 1, rng=0, name="reg")
    X, y = sg.matrix("X"), sg.vector("y")
    step = sg.train_step(((layer(X)[:, 0] - y) ** 2).mean(), [X, y],
                         optimizer=sg.optim.SGD(lr=0.1), mode="py")
    assert step.params == layer.params
    predict = sg.function([X], layer(X)[:, 0], mode="py")
    for _ in range(200):
        step(xv, yv)
    np.testing.assert_allclose(predict(xv), yv, atol=1e-3)
    np.testing.assert_allclose(layer.b.get_value(), [1.0], atol=1e-3)


LAYER_ERRORS = [
    (TypeError, "activation must be callable", lambda: layers.Dense(3, 2, activation=5)),
    (TypeError, "name must be a non-empty str", lambda: layers.Dense(3, 2, name="")),
    (TypeError, "parameters must be float", lambda: layers.Dense(3, 2, dtype="int64")),
    (ValueError, "unknown initialiser 'nope'", lambda: layers.Dense(3, 2, init="nope")),
    (TypeError, "must be an initialiser name or a function", lambda: layers.Dense(3, 2, init=5)),
    (ValueError, "the initialiser returned shape", lambda: layers.Dense(
        3, 2, init=lambda shape, rng=None, dtype=None: np.zeros((2, 2)))),
    (ValueError, "a shape of positive ints", lambda: layers.glorot_uniform((0, 3))),
    (ValueError, "nonlinearity must be 'tanh' or 'relu'",
     lambda: layers.RNN(3, 4, nonlinearity="sigmoid")),
    (TypeError, "bias must be a bool", lambda: layers.LSTM(3, 4, bias="yes")),
    (ValueError, r"padding_idx must be in \[-3, 3\)", lambda: layers.Embedding(3, 2, padding_idx=5)),
    (sg.CheckpointError, "does not match the layer", lambda: layers.LSTM(3, 4).load_state_dict({})),
    (sg.CheckpointError, "has shape", lambda: layers.Embedding(3, 2).load_state_dict(
        {"weight": np.zeros((2, 2))})),
    (TypeError, "expected a dict of names to arrays", lambda: layers.GRU(3, 4).load_state_dict(5)),
    (TypeError, "prefix must be a str", lambda: layers.GRU(3, 4).load_state_dict({}, prefix=1)),
    (sg.CheckpointError, "unexpected entries", lambda: layers.Sequential(
        layers.Conv2D(1, 2, 3)).load_state_dict({"9.weight": np.zeros(1)})),
]


@pytest.mark.parametrize("kind, message, make", LAYER_ERRORS, ids=[m for _, m, _ in LAYER_ERRORS])
def test_layer_argument_errors_name_the_users_line(kind, message, make):
    with pytest.raises(kind, match=message + r".* \(at .*test_layers.py:\d+\)"):
        make()
