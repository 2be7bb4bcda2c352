"""sg.layers.BatchNorm1D / BatchNorm2D / LayerNorm against torch.nn's: state dicts both ways,
running statistics after several sg.train_step calls, inference mode, the updates
sg.function users collect, checkpoints."""

import numpy as np
import pytest

import symgrad as sg
from symgrad import layers as L

torch = pytest.importorskip("torch")
nn = torch.nn


def _torch_steps(tmodel, batches, lr, loss_fn):
    opt = torch.optim.SGD(tmodel.parameters(), lr=lr)
    losses = []
    for X in batches:
        opt.zero_grad()
        loss = loss_fn(tmodel(torch.tensor(X)))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm2d_running_statistics_after_train_steps_equal_pytorch(momentum):
    rng = np.random.default_rng(0)
    tnet = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3, momentum=momentum),
                         nn.ReLU()).double()
    net = L.Sequential(L.Conv2D(2, 3, 3, padding=1, name="conv"),
                       L.BatchNorm2D(3, momentum=momentum, name="bn"), sg.relu)
    net.load_state_dict(tnet.state_dict())
    assert list(net.state_dict()) == list(tnet.state_dict())
    x = sg.tensor4("x")
    loss = (net(x) ** 2).mean()
    step = sg.train_step(loss, [x], optimizer=sg.optim.SGD(0.1))
    bn = net[1]
    assert {v.name for v in step.state} >= {"bn.running_mean", "bn.running_var",
                                            "bn.num_batches_tracked"}
    assert [p.name for p in step.params] == ["conv.weight", "conv.bias", "bn.weight", "bn.bias"]
    batches = [rng.standard_normal((4, 2, 5, 6)) * 2 + 1 for _ in range(4)]
    got = [step(X)["loss"] for X in batches]
    want = _torch_steps(tnet, batches, 0.1, lambda o: (o ** 2).mean())
    np.testing.assert_allclose(got, want, rtol=1e-10)
    for key, value in tnet.state_dict().items():
        np.testing.assert_allclose(net.state_dict()[key], value.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=key)
    assert bn.num_batches_tracked.get_value() == 4
    # inference: the running statistics, the same variables
    tnet.eval()
    X = rng.standard_normal((3, 2, 5, 6))
    infer = sg.function([x], net(x, training=False))
    np.testing.assert_allclose(infer(X), tnet(torch.tensor(X)).detach().numpy(), rtol=1e-10,
                               atol=1e-12)


@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5)], ids=["2d", "3d"])
def test_batchnorm1d_train_and_eval_against_pytorch(shape):
    rng = np.random.default_rng(1)
    tbn = nn.BatchNorm1d(4, momentum=0.2).double()
    with torch.no_grad():
        tbn.weight.uniform_(0.5, 1.5)
        tbn.bias.uniform_(-1, 1)
    bn = L.BatchNorm1D(4, momentum=0.2, dtype="float64")
    bn.load_state_dict(tbn.state_dict())
    x = sg.tensor("x", shape=(None,) * len(shape))
    out = bn(x)
    # sg.function users collect the pending updates themselves
    updates = sg.nn.collect_updates(out)
    assert [v.name for v, _ in updates] == ["batchnorm.running_mean", "batchnorm.running_var",
                                            "batchnorm.num_batches_tracked"]
    train = sg.function([x], out, updates=updates)
    for _ in range(3):
        X = rng.standard_normal(shape) + 2
        np.testing.assert_allclose(train(X), tbn(torch.tensor(X)).detach().numpy(), rtol=1e-10,
                                   atol=1e-12)
    for key, value in tbn.state_dict().items():
        np.testing.assert_allclose(bn.state_dict()[key], value.numpy(), rtol=1e-12, err_msg=key)
    tbn.eval()
    X = rng.standard_normal(shape)
    got = sg.function([x], bn(x, training=False))(X)
    np.testing.assert_allclose(got, tbn(torch.tensor(X)).detach().numpy(), rtol=1e-10,
                               atol=1e-12)


@pytest.mark.parametrize("momentum,mode", [(0.1, "py"), (None, "py"), (None, "c")])
def test_layer_used_twice_chains_its_updates_as_pytorch(momentum, mode):
    # momentum=None (a cumulative average): the second call weighs its batch by
    # 1 / (batches seen, the first call's included); it read the counter from before the
    # step, so both calls weighed theirs alike and the running statistics were wrong
    rng = np.random.default_rng(2)
    tbn = nn.BatchNorm1d(3, momentum=momentum).double()
    bn = L.BatchNorm1D(3, momentum=momentum, dtype="float64")
    a, b = sg.matrix("a"), sg.matrix("b")
    out = bn(a).sum() + bn(b).sum()
    f = sg.function([a, b], out, updates=sg.nn.collect_updates(out), mode=mode)
    for _ in range(2):
        A, B = rng.standard_normal((5, 3)), rng.standard_normal((4, 3)) * 3 + 1
        f(A, B)
        tbn(torch.tensor(A)), tbn(torch.tensor(B))
    for key, value in tbn.state_dict().items():
        np.testing.assert_allclose(bn.state_dict()[key], value.numpy(), rtol=1e-12, err_msg=key)


def test_options_without_affine_or_running_statistics():
    bn = L.BatchNorm2D(3, affine=False)
    assert list(bn.state_dict()) == list(nn.BatchNorm2d(3, affine=False).state_dict())
    assert bn.params == [] and bn.weight is None
    free = L.BatchNorm2D(3, track_running_stats=False)
    assert list(free.state_dict()) == ["weight", "bias"]
    x = sg.tensor4("x")
    X = np.random.default_rng(3).standard_normal((2, 3, 2, 2))
    # without running statistics the inference graph normalises by the batch too
    got = sg.function([x], free(x, training=False), mode="py")(X)
    want = nn.BatchNorm2d(3, track_running_stats=False).double().eval()(torch.tensor(X))
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert sg.nn.collect_updates(free(x)) == []


def test_layernorm_layer_against_pytorch():
    rng = np.random.default_rng(4)
    tln = nn.LayerNorm((3, 4)).double()
    with torch.no_grad():
        tln.weight.normal_()
        tln.bias.normal_()
    ln = L.LayerNorm((3, 4), dtype="float64")
    assert list(ln.state_dict()) == list(tln.state_dict())
    ln.load_state_dict(tln.state_dict())
    x = sg.tensor3("x")
    out = ln(x)
    X = rng.standard_normal((2, 3, 4))
    got, gw = sg.function([x], [out, sg.grad((out ** 3).sum(), ln.weight)])(X)
    t = tln(torch.tensor(X))
    (t ** 3).sum().backward()
    np.testing.assert_allclose(got, t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gw, tln.weight.grad.numpy(), rtol=1e-9, atol=1e-12)
    assert list(L.LayerNorm(4, bias=False).state_dict()) == ["weight"]


def test_state_dict_errors_and_round_trip(tmp_path):
    bn = L.BatchNorm2D(2)
    sd = nn.BatchNorm2d(2).state_dict()
    sd["num_batches_tracked"] = torch.tensor(7)
    bn.load_state_dict(sd)
    assert bn.num_batches_tracked.get_value() == 7
    assert bn.num_batches_tracked.dtype == "int64"
    bad = dict(sd, num_batches_tracked=torch.tensor(1.5))
    with pytest.raises(sg.CheckpointError, match="num_batches_tracked .* expected integers"):
        bn.load_state_dict(bad)
    with pytest.raises(sg.CheckpointError, match="running_var has shape"):
        bn.load_state_dict(dict(sd, running_var=torch.ones(3)))
    assert bn.num_batches_tracked.get_value() == 7  # nothing changed
    # into PyTorch
    nn.BatchNorm2d(2).load_state_dict({k: torch.tensor(v) for k, v in bn.state_dict().items()})
    with pytest.raises(sg.ShapeError, match="2 channels on axis 1, got float64.2, 3, 4, 4"):
        bn(sg.tensor("x", shape=(2, 3, 4, 4)))
    with pytest.raises(ValueError, match="momentum"):
        L.BatchNorm1D(3, momentum=2.0)


def test_checkpoint_keeps_the_running_statistics(tmp_path):
    bn = L.BatchNorm1D(2, name="ckbn")
    w = sg.shared(np.ones(2), name="ckw")
    x = sg.matrix("x")
    step = sg.train_step(((bn(x) * w) ** 2).mean(), [x], mode="py")
    step(np.array([[1.0, 2.0], [3.0, 5.0]]))
    sg.save(tmp_path / "ck.npz", step)
    saved = bn.running_mean.get_value()
    step(np.array([[10.0, 2.0], [30.0, 5.0]]))
    assert not np.allclose(bn.running_mean.get_value(), saved)
    sg.load(tmp_path / "ck.npz", step)
    np.testing.assert_array_equal(bn.running_mean.get_value(), saved)
    assert bn.num_batches_tracked.get_value() == 1


def test_sequential_load_failure_restores_the_running_statistics():
    net = L.Sequential(L.BatchNorm1D(2, name="a"), L.BatchNorm1D(3, name="b"))
    good = {f"{i}.{k}": v for i, c in enumerate((2, 3))
            for k, v in nn.BatchNorm1d(c).state_dict().items()}
    good["0.running_mean"] = torch.tensor([5.0, 6.0])
    bad = dict(good, **{"1.running_var": torch.ones(4)})
    with pytest.raises(sg.CheckpointError, match="1.running_var has shape"):
        net.load_state_dict(bad)
    np.testing.assert_array_equal(net[0].running_mean.get_value(), [0.0, 0.0])
    net.load_state_dict(good)
    np.testing.assert_array_equal(net[0].running_mean.get_value(), [5.0, 6.0])
