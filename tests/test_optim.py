"""sg.optim: each update rule, several steps, against a NumPy re-implementation (float64)."""

import numpy as np
import pytest

import symgrad as sg

MODES = ["py", "c"]
STEPS = 4


# --------------------------------------------------------------------------- the problem

def make_problem(seed=0, dtype="float64"):
    """A least-squares model with two parameters; NumPy gives its loss and gradients."""
    rng = np.random.default_rng(seed)
    data = (rng.normal(size=(5, 3)), rng.normal(size=(5, 2)))
    init = [rng.normal(size=(3, 2)), rng.normal(size=2)]
    X, Y = sg.matrix("X", dtype=dtype), sg.matrix("Y", dtype=dtype)
    W = sg.shared(init[0].astype(dtype), name="W")
    b = sg.shared(init[1].astype(dtype), name="b")
    loss = ((X @ W + b - Y) ** 2).mean()
    return (X, Y), (W, b), loss, data, init


def np_loss_grads(params, data):
    (Wv, bv), (x, y) = params, data
    r = x @ Wv + bv - y
    d = 2 * r / r.size
    return float((r ** 2).mean()), [x.T @ d, d.sum(axis=0)]


def np_clip(grads, max_norm):
    norm = np.sqrt(sum((g ** 2).sum() for g in grads))
    return [g * min(1.0, max_norm / (norm + 1e-6)) for g in grads]


def np_sgd(lr, momentum=0.0, nesterov=False, weight_decay=0.0, clip_norm=None):
    def run(params, data, steps, lrs=None):
        params = [p.copy() for p in params]
        bufs = [np.zeros_like(p) for p in params]
        losses = []
        for k in range(steps):
            rate = lr if lrs is None else lrs[k]
            loss, grads = np_loss_grads(params, data)
            losses.append(loss)
            if clip_norm is not None:
                grads = np_clip(grads, clip_norm)
            for i, (p, g) in enumerate(zip(params, grads)):
                g = g + weight_decay * p
                if momentum:
                    bufs[i] = momentum * bufs[i] + g
                    g = g + momentum * bufs[i] if nesterov else bufs[i]
                params[i] = p - rate * g
        return losses, params
    return run


def np_adam(lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False,
            clip_norm=None):
    def run(params, data, steps, lrs=None):
        params = [p.copy() for p in params]
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros_like(p) for p in params]
        losses = []
        for t in range(1, steps + 1):
            rate = lr if lrs is None else lrs[t - 1]
            loss, grads = np_loss_grads(params, data)
            losses.append(loss)
            if clip_norm is not None:
                grads = np_clip(grads, clip_norm)
            for i, (p, g) in enumerate(zip(params, grads)):
                if not decoupled:
                    g = g + weight_decay * p
                m[i] = beta1 * m[i] + (1 - beta1) * g
                v[i] = beta2 * v[i] + (1 - beta2) * g ** 2
                m_hat, v_hat = m[i] / (1 - beta1 ** t), v[i] / (1 - beta2 ** t)
                base = p * (1 - rate * weight_decay) if decoupled else p
                params[i] = base - rate * m_hat / (np.sqrt(v_hat) + eps)
        return losses, params
    return run


CASES = {
    "sgd": (lambda: sg.optim.SGD(lr=0.1), np_sgd(0.1)),
    "sgd_momentum": (lambda: sg.optim.SGD(lr=0.05, momentum=0.9), np_sgd(0.05, 0.9)),
    "sgd_nesterov_wd": (lambda: sg.optim.SGD(lr=0.05, momentum=0.8, nesterov=True,
                                             weight_decay=0.1),
                        np_sgd(0.05, 0.8, True, 0.1)),
    "sgd_clip": (lambda: sg.optim.SGD(lr=0.1, momentum=0.5, clip_norm=0.3),
                 np_sgd(0.1, 0.5, clip_norm=0.3)),
    "adam": (lambda: sg.optim.Adam(lr=0.05), np_adam(0.05)),
    "adam_l2": (lambda: sg.optim.Adam(lr=0.05, beta1=0.8, beta2=0.99, eps=1e-6,
                                      weight_decay=0.1),
                np_adam(0.05, 0.8, 0.99, 1e-6, 0.1)),
    "adamw": (lambda: sg.optim.AdamW(lr=0.05, weight_decay=0.2),
              np_adam(0.05, weight_decay=0.2, decoupled=True)),
    "adamw_clip": (lambda: sg.optim.AdamW(lr=0.05, clip_norm=0.5),
                   np_adam(0.05, weight_decay=0.01, decoupled=True, clip_norm=0.5)),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_rule_matches_numpy(case, mode):
    make_opt, reference = CASES[case]
    inputs, params, loss, data, init = make_problem()
    step = sg.train_step(loss, list(inputs), optimizer=make_opt(), mode=mode)
    got = [step(*data)["loss"] for _ in range(STEPS)]
    want_losses, want_params = reference(init, data, STEPS)
    np.testing.assert_allclose(got, want_losses, rtol=1e-10)
    for p, want in zip(params, want_params):
        np.testing.assert_allclose(p.get_value(), want, rtol=1e-10, atol=1e-12)
    assert got[-1] < got[0]


def test_clipping_is_active_in_the_clip_cases():
    _, grads = np_loss_grads(make_problem()[4], make_problem()[3])
    norm = np.sqrt(sum((g ** 2).sum() for g in grads))
    assert norm > 0.5  # so clip_norm=0.3 and 0.5 above really scale the gradients


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_shared_learning_rate_is_a_schedule(kind, mode):
    inputs, params, loss, data, init = make_problem(1)
    lr = sg.shared(np.float64(0.1), name="lr", trainable=False)
    opt = sg.optim.SGD(lr=lr, momentum=0.9) if kind == "sgd" else sg.optim.Adam(lr=lr)
    step = sg.train_step(loss, list(inputs), optimizer=opt, mode=mode)
    rates = [0.1, 0.05, 0.02, 0.0]
    got = []
    for rate in rates:
        lr.set_value(rate)
        got.append(step(*data)["loss"])
    ref = np_sgd(None, 0.9) if kind == "sgd" else np_adam(None)
    want_losses, want_params = ref(init, data, len(rates), lrs=rates)
    np.testing.assert_allclose(got, want_losses, rtol=1e-10)
    for p, want in zip(params, want_params):
        np.testing.assert_allclose(p.get_value(), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_float32_parameters_keep_their_dtype(mode):
    # Hyperparameters such as 0.9 are weak Python floats: rounded to float32, as in NumPy.
    assert (0.9 * sg.vector(dtype="float32")).dtype == "float32"
    inputs, params, loss, data, init = make_problem(2, dtype="float32")
    lr = sg.shared(np.float64(0.05), name="lr", trainable=False)   # float64 lr, float32 params
    opt = sg.optim.Adam(lr=lr)
    step = sg.train_step(loss, list(inputs), optimizer=opt, mode=mode)
    data32 = [d.astype("float32") for d in data]
    got = [step(*data32)["loss"] for _ in range(STEPS)]
    want_losses, want_params = np_adam(0.05)(init, data, STEPS)
    np.testing.assert_allclose(got, want_losses, rtol=1e-4)
    for p, want in zip(params, want_params):
        assert p.get_value().dtype == np.float32
        np.testing.assert_allclose(p.get_value(), want, rtol=1e-4, atol=1e-5)
    assert {s.dtype for s in opt.state} == {"float32", "int64"}


def test_state_is_named_shared_and_untrainable():
    _, (W, b), _, _, _ = make_problem()
    gW, gb = sg.matrix("gW"), sg.vector("gb")
    adam = sg.optim.Adam()
    pairs = adam.updates([W, b], [gW, gb])
    assert [s.name for s in adam.state] == ["W.m", "W.v", "W.t", "b.m", "b.v", "b.t"]
    assert all(isinstance(s, sg.SharedVariable) and not s.trainable for s in adam.state)
    assert adam.state[2].get_value() == 0 and adam.state[2].dtype == "int64"
    updated = [sv for sv, _ in pairs]
    assert updated == [adam.state[0], adam.state[1], adam.state[2], W,
                       adam.state[3], adam.state[4], adam.state[5], b]
    # A second call (another step built with the same optimizer) reuses the state.
    adam.updates([W], [gW])
    assert len(adam.state) == 6
    sgd = sg.optim.SGD(momentum=0.5)
    sgd.updates([W, b], {W: gW, b: gb})
    assert [s.name for s in sgd.state] == ["W.momentum", "b.momentum"]
    assert sg.optim.SGD().updates([W], [gW]) and sg.optim.SGD().state == []


def test_unnamed_parameters_get_positional_state_names():
    p = sg.shared(np.zeros(2))
    opt = sg.optim.Adam()
    opt.updates([p], [sg.vector()])
    assert [s.name for s in opt.state] == ["param0.m", "param0.v", "param0.t"]


@pytest.mark.parametrize("mode", MODES)
def test_any_object_with_updates_is_an_optimizer(mode):
    class SignSGD:
        def __init__(self, lr):
            self.lr = lr

        def updates(self, params, grads):
            return [(p, p - self.lr * sg.sign(g)) for p, g in zip(params, grads)]

    inputs, (W, b), loss, data, init = make_problem(3)
    step = sg.train_step(loss, list(inputs), optimizer=SignSGD(0.01), mode=mode)
    step(*data)
    _, grads = np_loss_grads(init, data)
    np.testing.assert_allclose(W.get_value(), init[0] - 0.01 * np.sign(grads[0]))
    np.testing.assert_allclose(b.get_value(), init[1] - 0.01 * np.sign(grads[1]))


def test_clip_by_global_norm():
    a, b = sg.vector("a"), sg.matrix("b")
    (ca, cb), norm = sg.optim.clip_by_global_norm([a, b], 1.0)
    va, vb = np.array([3.0, 0.0]), np.array([[0.0, 4.0]])
    got = sg.function([a, b], [ca, cb, norm], mode="py")(va, vb)
    np.testing.assert_allclose(got[2], 5.0)
    np.testing.assert_allclose(got[0], va / (5.0 + 1e-6))
    np.testing.assert_allclose(got[1], vb / (5.0 + 1e-6))
    small = sg.function([a, b], [ca, cb], mode="py")(va / 10, vb / 10)
    np.testing.assert_allclose(small[0], va / 10)   # under the limit: unchanged
    with pytest.raises(ValueError, match="positive"):
        sg.optim.clip_by_global_norm([a], 0.0)
    with pytest.raises(TypeError, match="float Variables"):
        sg.optim.clip_by_global_norm([], 1.0)


@pytest.mark.parametrize("make, err, match", [
    (lambda: sg.optim.SGD(lr=-0.1), ValueError, r"lr must lie in"),
    (lambda: sg.optim.SGD(lr="0.1"), TypeError, r"lr must be a number, got str"),
    (lambda: sg.optim.SGD(lr=True), TypeError, r"lr must be a number, got bool"),
    (lambda: sg.optim.SGD(lr=float("nan")), ValueError, r"lr must lie in"),
    (lambda: sg.optim.SGD(lr=sg.shared(np.ones(2))), TypeError, r"0-d float"),
    (lambda: sg.optim.SGD(lr=sg.shared(np.int64(1))), TypeError, r"0-d float"),
    # lr may read an input of the step (Theano's In(lr, value=)), which must list it
    (lambda: sg.train_step((sg.shared(np.ones(2)) ** 2).sum(), [], mode="py",
                           optimizer=sg.optim.SGD(lr=sg.scalar("s") * 2)),
     sg.InputError, r"needs the input s, used by .*test_optim\.py"),
    (lambda: sg.optim.SGD(momentum=1.5), ValueError, r"momentum must lie in"),
    (lambda: sg.optim.SGD(nesterov=True), ValueError, r"nesterov=True needs momentum > 0"),
    (lambda: sg.optim.SGD(momentum=0.9, nesterov=1), TypeError, r"nesterov must be True"),
    (lambda: sg.optim.SGD(weight_decay=-1), ValueError, r"weight_decay must lie in"),
    (lambda: sg.optim.Adam(beta1=1.0), ValueError, r"beta1 must lie in \[0.0, 1.0\)"),
    (lambda: sg.optim.Adam(beta2=-0.1), ValueError, r"beta2 must lie in"),
    (lambda: sg.optim.Adam(eps=-1e-8), ValueError, r"eps must lie in"),
    (lambda: sg.optim.AdamW(clip_norm=0), ValueError, r"clip_norm must be positive"),
    (lambda: sg.optim.AdamW(clip_norm="1"), TypeError, r"clip_norm must be a number"),
])
def test_hyperparameters_are_checked(make, err, match):
    with pytest.raises(err, match=match):
        make()


def test_updates_arguments_are_checked():
    W = sg.shared(np.zeros((2, 2)), name="W")
    opt = sg.optim.SGD()
    with pytest.raises(TypeError, match="params must be a list"):
        opt.updates(W, [sg.matrix()])
    with pytest.raises(TypeError, match="as long as params"):
        opt.updates([W], [])
    with pytest.raises(TypeError, match=r"params\[0\] must be a float shared variable"):
        opt.updates([sg.matrix("m")], [sg.matrix()])
    with pytest.raises(TypeError, match="gradient of W must be a 2-d Variable"):
        opt.updates([W], [sg.vector()])
    with pytest.raises(TypeError, match="no gradient for W"):
        opt.updates([W], {})


def test_shared_lr_expression_and_repr():
    base = sg.shared(np.float64(0.1), name="base", trainable=False)
    opt = sg.optim.SGD(lr=base * 0.5, momentum=0.9, clip_norm=1.0)
    assert repr(opt).startswith("SGD(lr=<variable>, momentum=0.9")
    assert "clip_norm=1.0" in repr(opt)
    assert repr(sg.optim.AdamW()) == ("AdamW(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-08, "
                                      "weight_decay=0.01)")
    assert repr(sg.optim.Adam(lr=base)).startswith("Adam(lr=base,")
