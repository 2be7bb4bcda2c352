"""sg.layers.Conv2D, MaxPool2D, AvgPool2D, Flatten and Sequential: a small LeNet against
the same torch.nn.Sequential with its state dict loaded (skipped without torch), state
dicts both ways, a few train steps, and the errors."""

import re

import numpy as np
import pytest

import symgrad as sg
from symgrad import layers as L


def _net(dtype="float64"):
    return L.Sequential(L.Conv2D(1, 4, 3, padding=1, rng=0, dtype=dtype, name="c1"),
                        L.MaxPool2D(2), L.Conv2D(4, 6, (2, 3), rng=1, dtype=dtype, name="c2"),
                        L.AvgPool2D(2, ceil_mode=True), L.Flatten())


def test_lenet_like_against_pytorch():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    tnet = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(4, 6, (2, 3)),
                         nn.AvgPool2d(2, ceil_mode=True), nn.Flatten()).double()
    net = _net()
    assert list(net.state_dict()) == list(tnet.state_dict())
    net.load_state_dict(tnet.state_dict())
    X = np.random.default_rng(0).standard_normal((3, 1, 9, 10))
    x = sg.tensor4("x")
    out = net(x)
    gs = sg.grad((out ** 2).sum(), net.params)
    got = sg.function([x], [out] + gs)(X)
    t = tnet(torch.tensor(X))
    (t ** 2).sum().backward()
    np.testing.assert_allclose(got[0], t.detach().numpy(), rtol=1e-10, atol=1e-12)
    for g, p in zip(got[1:], tnet.parameters()):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-10, atol=1e-12)
    # and back: our state dict loads into PyTorch
    tnet.load_state_dict({k: torch.tensor(v) for k, v in net.state_dict().items()})


def test_initialisation_bounds_and_training():
    net = _net("float32")
    w = net[0].weight.get_value()
    assert w.dtype == np.float32 and w.shape == (4, 1, 3, 3) and np.abs(w).max() <= 1 / 3
    assert np.abs(net[2].bias.get_value()).max() <= 1 / np.sqrt(4 * 2 * 3)
    x = sg.tensor4("x", "float32")
    y = sg.vector("y", dtype="int64")
    head = L.Dense(6 * 2 * 2, 3, rng=0, dtype="float32")
    loss = sg.nn.cross_entropy(head(net(x)), y).mean()
    step = sg.train_step(loss, [x, y], optimizer=sg.optim.SGD(0.1))
    assert set(step.params) == set(net.params + head.params)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((8, 1, 9, 10)).astype("float32")
    Y = rng.integers(0, 3, 8)
    losses = [step(X, Y)["loss"] for _ in range(15)]
    assert losses[-1] < losses[0]


def test_errors():
    # every one names the user's line, the layer's arguments as conv2d's did
    here = rf"\(at {re.escape(__file__)}:\d+"
    with pytest.raises(ValueError, match="divisible by groups 2 " + here):
        L.Conv2D(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="stride must be >= 1.* " + here):
        L.Conv2D(3, 4, 3, stride=0)
    with pytest.raises(TypeError, match="kernel_size must be a positive int, got float " + here):
        L.Conv2D(3, 4, 2.5)
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\].* " + here):
        L.BatchNorm2D(4, momentum=2)
    with pytest.raises(TypeError, match="BatchNorm2D: parameters must be float.* " + here):
        L.BatchNorm2D(4, dtype="int32")
    with pytest.raises(ValueError, match="Dropout: p must be .* " + here):
        L.Dropout(1.5)
    with pytest.raises(TypeError, match="Sequential: layer 1 is not callable.* " + here):
        L.Sequential(L.Flatten(), 3)
    # a float32 batch through float64 layers: the convolution's weight is the mistake to
    # report (not its bias), and Dense refuses as the other layers do (it promoted the
    # batch, and everything after it, to float64 silently)
    with pytest.raises(TypeError, match=r"conv2d: takes float operands of one dtype, got "
                                        r"float32\[.*\] and float64\[4, 3, 3, 3\]; cast one of "
                                        r"them \(a layer's dtype= sets its parameters'\) " + here):
        L.Conv2D(3, 4, 3, dtype="float64")(sg.tensor4("x", "float32"))
    with pytest.raises(TypeError, match=r"Dense 'fc': the input is float32 and the parameters "
                                        r"are float64: cast the input \(x.astype\('float64'\)\) "
                                        r"or build the layer with dtype='float32' " + here):
        L.Dense(3, 4, name="fc", dtype="float64")(sg.matrix("m", "float32"))
    # the usual slip: a flattened size that is not the dense layer's
    with pytest.raises(sg.ShapeError, match=r"Dense 'fc': expected an input of shape \(\.\.\., "
                                            r"800\), got float64\[\?, 1250\] " + here):
        L.Dense(800, 10, name="fc")(L.Flatten()(sg.tensor("x", shape=(None, 50, 5, 5))))
    net = _net()
    before = [p.get_value() for p in net.params]
    bad = dict(net.state_dict())
    bad["2.weight"] = np.zeros((6, 4, 3, 3))
    with pytest.raises(sg.CheckpointError, match=r"2.weight has shape \(6, 4, 3, 3\)"):
        net.load_state_dict({k: v + 1 for k, v in bad.items()})
    assert all((a == p.get_value()).all() for a, p in zip(before, net.params))
    with pytest.raises(sg.CheckpointError, match="unexpected entries"):
        net.load_state_dict(dict(net.state_dict(), **{"7.weight": np.zeros(1)}))
    with pytest.raises(sg.ShapeError, match="Flatten: start_dim 1 needs"):
        L.Flatten()(sg.vector("v"))
