"""sg.nn.batch_norm and layer_norm against PyTorch (values, gradients, second order, running
statistics), in modes py, c and debug; their errors; float32 accuracy far from zero.

The functions are compiled once per module (one kernel holds every case of a dtype and
mode), so the file costs a few compiles."""

import numpy as np
import pytest

import symgrad as sg

torch = pytest.importorskip("torch")
F = torch.nn.functional

MODES = ["py", "c", "debug"]
TOL = {"float64": 1e-10, "float32": 2e-5}
# (shape, normalised axes for layer norm); batch 1 only where batch norm allows it
SHAPES = [((5, 3), 1), ((4, 3, 6), 1), ((2, 3, 4, 5), 2), ((1, 2, 3, 4), 3)]


def _data(dtype, seed=0):
    rng = np.random.default_rng(seed)
    cases = []
    for shape, k in SHAPES:
        x = (rng.standard_normal(shape) * 2 + 3).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        c, ns = shape[1], shape[len(shape) - k:]
        cases.append(dict(x=x, g=g, k=k, w=rng.standard_normal(c).astype(dtype),
                          b=rng.standard_normal(c).astype(dtype),
                          lw=rng.standard_normal(ns).astype(dtype),
                          lb=rng.standard_normal(ns).astype(dtype)))
    # non-contiguous: a transposed batch and a strided spatial axis
    base = (rng.standard_normal((6, 3, 4, 2)) + 1).astype(dtype)
    cases.append(dict(x=base.transpose(3, 1, 2, 0)[:, :, ::2], k=2,
                      g=rng.standard_normal((2, 3, 2, 6)).astype(dtype)[:, :, :, ::-1],
                      w=rng.standard_normal(3).astype(dtype), b=rng.standard_normal(3).astype(dtype),
                      lw=rng.standard_normal((2, 6)).astype(dtype),
                      lb=rng.standard_normal((2, 6)).astype(dtype)))
    # (N, C) batches go row by row into per-channel sums: channels strided (a transposed
    # batch, its gradient reversed), an odd channel count past the vector width, and a
    # batch broadcast from one row (stride 0)
    rows = (rng.standard_normal((5, 9)) * 2 + 1).astype(dtype)
    odd = (rng.standard_normal((13, 37)) + 4).astype(dtype)
    bcast = np.broadcast_to((rng.standard_normal((1, 4, 3)) + 1).astype(dtype), (5, 4, 3))
    for x, k in ((rows.T, 1), (odd, 1), (bcast, 2)):
        c, ns = x.shape[1], x.shape[x.ndim - k:]
        cases.append(dict(x=x, k=k, g=rng.standard_normal(x.shape[::-1]).astype(dtype).T[::-1],
                          w=rng.standard_normal(c).astype(dtype),
                          b=rng.standard_normal(c).astype(dtype),
                          lw=rng.standard_normal(ns).astype(dtype),
                          lb=rng.standard_normal(ns).astype(dtype)))
    return cases


def _graph(cases, dtype):
    """One graph: per case, batch norm (training and inference) and layer norm with their
    gradients to x, weight and bias for the output gradient g."""
    ins, outs, stats = [], [], []
    for i, c in enumerate(cases):
        nd = c["x"].ndim
        x, g = sg.tensor(f"x{i}", dtype, (None,) * nd), sg.tensor(f"g{i}", dtype, (None,) * nd)
        w, b = sg.vector(f"w{i}", dtype), sg.vector(f"b{i}", dtype)
        lw = sg.tensor(f"lw{i}", dtype, (None,) * c["k"])
        lb = sg.tensor(f"lb{i}", dtype, (None,) * c["k"])
        C = c["x"].shape[1]
        rm = sg.shared(np.zeros(C, dtype), trainable=False, name=f"rm{i}")
        rv = sg.shared(np.ones(C, dtype), trainable=False, name=f"rv{i}")
        out, upd = sg.nn.batch_norm(x, rm, rv, w, b, training=True, momentum=0.3)
        infer = sg.nn.batch_norm(x, rm, rv, w, b, eps=1e-3)
        lo = sg.nn.layer_norm(x, c["lw"].shape, lw, lb)
        outs += [out, *sg.grad(None, [x, w, b], known_grads={out: g}), infer, lo,
                 *sg.grad(None, [x, lw, lb], known_grads={lo: g}), upd[0][1], upd[1][1]]
        ins += [x, g, w, b, lw, lb]
        stats.append((rm, rv))
    return ins, outs


def _torch_reference(c):
    t = {k: torch.tensor(np.ascontiguousarray(v), dtype=torch.float64, requires_grad=True)
         for k, v in c.items() if k != "k"}
    C = c["x"].shape[1]
    rm, rv = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    out = F.batch_norm(t["x"], rm, rv, t["w"], t["b"], training=True, momentum=0.3)
    grads = torch.autograd.grad(out, [t["x"], t["w"], t["b"]], t["g"])
    infer = F.batch_norm(t["x"], torch.zeros(C, dtype=torch.float64),
                         torch.ones(C, dtype=torch.float64), t["w"], t["b"], eps=1e-3)
    lo = F.layer_norm(t["x"], c["lw"].shape, t["lw"], t["lb"])
    lgrads = torch.autograd.grad(lo, [t["x"], t["lw"], t["lb"]], t["g"])
    return [v.detach().numpy() for v in (out, *grads, infer, lo, *lgrads, rm, rv)]


NAMES = ["bn", "bn d/dx", "bn d/dw", "bn d/db", "bn inference", "ln", "ln d/dx", "ln d/dw",
         "ln d/db", "running_mean", "running_var"]


@pytest.fixture(scope="module", params=[(m, d) for d in ("float64", "float32") for m in MODES],
                ids=lambda p: f"{p[0]}-{p[1]}")
def compiled(request):
    mode, dtype = request.param
    cases = _data(dtype)
    ins, outs = _graph(cases, dtype)
    return cases, sg.function(ins, outs, mode=mode)


def test_values_and_gradients_match_pytorch(compiled):
    cases, f = compiled
    args = [c[k] for c in cases for k in ("x", "g", "w", "b", "lw", "lb")]
    got = f(*args)
    per = len(NAMES)
    for i, c in enumerate(cases):
        tol = TOL[c["x"].dtype.name]
        for name, a, want in zip(NAMES, got[i * per:(i + 1) * per], _torch_reference(c)):
            assert a.dtype == c["x"].dtype, name
            np.testing.assert_allclose(a, want, rtol=tol, atol=tol * 10,
                                       err_msg=f"case {i} {c['x'].shape}: {name}")


def test_float32_statistics_keep_their_precision_far_from_zero():
    # a channel near 1e4 with spread 1: E[x^2] - E[x]^2 in float32 would keep no digit
    rng = np.random.default_rng(2)
    X = (1e4 + rng.standard_normal((64, 2, 8, 8))).astype("float32")
    x = sg.tensor4("x", "float32")
    rm = sg.shared(np.zeros(2, "float32"), trainable=False)
    rv = sg.shared(np.ones(2, "float32"), trainable=False)
    out, upd = sg.nn.batch_norm(x, rm, rv, training=True, momentum=1.0)
    for mode in ("c", "py"):
        got = sg.function([x], out, updates=upd, mode=mode)(X)
        want = F.batch_norm(torch.tensor(X, dtype=torch.float64), None, None, training=True)
        np.testing.assert_allclose(got, want.numpy(), atol=2e-3)
        np.testing.assert_allclose(rv.get_value(), X.astype(np.float64).var(axis=(0, 2, 3),
                                                                              ddof=1), rtol=1e-5)
        lo = sg.function([x], sg.nn.layer_norm(x, (8, 8)), mode=mode)(X)
        want = F.layer_norm(torch.tensor(X, dtype=torch.float64), (8, 8))
        np.testing.assert_allclose(lo, want.numpy(), atol=2e-3)


def test_verify_grad_first_and_second_order():
    rng = np.random.default_rng(3)
    X, W, B = rng.standard_normal((3, 2, 4)), rng.standard_normal(2), rng.standard_normal(2)
    P = rng.standard_normal((3, 2, 4))

    def bn(x, w, b):
        return (sg.nn.batch_norm(x, None, None, w, b, training=True)[0] * P).sum()

    def ln(x, w, b):
        return (sg.nn.layer_norm(x, 4, sg.concatenate([w, w]), sg.concatenate([b, b])) * P).sum()

    def bn_grad(x, w):  # second order through the gradient op
        out, _ = sg.nn.batch_norm(x, None, None, w, training=True)
        gx, gw = sg.grad((out * P).sum() + (out ** 3).sum(), [x, w])
        return (gx * P).sum() + (gw ** 2).sum()

    def ln_grad(x, w):
        out = sg.nn.layer_norm(x, (2, 4), w.reshape((2, 1)) * sg.ones((2, 4)))
        gx, gw = sg.grad((out ** 3 * P).sum(), [x, w])
        return (gx * P).sum() + (gw ** 2).sum()

    for mode in ("py", "c"):
        sg.verify_grad(bn, [X, W, B], rng=rng, mode=mode)
        sg.verify_grad(ln, [X, W, B], rng=rng, mode=mode)
        sg.verify_grad(bn_grad, [X, W], rng=rng, mode=mode)
        sg.verify_grad(ln_grad, [X, W], rng=rng, mode=mode)


def test_double_backward_matches_pytorch():
    rng = np.random.default_rng(4)
    X, W, B = rng.standard_normal((4, 3, 5)), rng.standard_normal(3), rng.standard_normal(3)
    x, w, b = sg.tensor3("x"), sg.vector("w"), sg.vector("b")
    out, _ = sg.nn.batch_norm(x, None, None, w, b, training=True)
    first = sg.grad((out ** 2).sum(), [x, w])
    second = sg.grad((first[0] ** 2).sum() + first[1].sum(), [x, w, b])
    got = sg.function([x, w, b], second)(X, W, B)
    t = [torch.tensor(v, requires_grad=True) for v in (X, W, B)]
    o = F.batch_norm(t[0], None, None, t[1], t[2], training=True)
    f = torch.autograd.grad((o ** 2).sum(), t[:2], create_graph=True)
    want = torch.autograd.grad((f[0] ** 2).sum() + f[1].sum(), t)
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e.numpy(), rtol=1e-9, atol=1e-9)


def test_gradient_graph_prints_the_gradient_op():
    x, w = sg.tensor4("x"), sg.shared(np.ones(3), name="gamma")
    out, _ = sg.nn.batch_norm(x, None, None, w, training=True)
    text = sg.debugprint(sg.grad(out.sum(), w))
    assert "grad of batch_norm" in text and "d(cost)/d(gamma)" in text
    assert "grad of layer_norm" in sg.debugprint(sg.grad(sg.nn.layer_norm(x, 5).sum(), x))


# --------------------------------------------------------------------------- errors

def test_shape_errors_at_build_time():
    x = sg.tensor("x", shape=(1, 3))
    with pytest.raises(sg.ShapeError, match="more than 1 value per channel.*test_norm.py"):
        sg.nn.batch_norm(x, None, None, training=True)
    y = sg.tensor("y", shape=(None, 3, 4))
    with pytest.raises(sg.ShapeError, match="weight must have shape"):
        sg.nn.batch_norm(y, None, None, sg.shared(np.ones(4)), training=True)
    with pytest.raises(sg.ShapeError, match="running_mean must have one entry per channel"):
        sg.nn.batch_norm(y, sg.shared(np.zeros(2)), sg.shared(np.ones(2)))
    with pytest.raises(ValueError, match="inference .* none were given"):
        sg.nn.batch_norm(y, None, None)
    with pytest.raises(TypeError, match="must be a shared variable"):
        sg.nn.batch_norm(y, sg.vector("m"), sg.vector("v"), training=True)
    with pytest.raises(sg.ShapeError, match="does not match the input's last axes"):
        sg.nn.layer_norm(y, (3, 5))
    with pytest.raises(sg.ShapeError, match="at least 2-d"):
        sg.nn.batch_norm(sg.vector("v"), None, None, training=True)


@pytest.mark.parametrize("mode", ["py", "c"])
def test_shape_errors_at_call_time_name_the_line(mode):
    x = sg.matrix("x")
    out, _ = sg.nn.batch_norm(x, None, None, sg.vector("w"), training=True)  # the line named
    f = sg.function([x, out.owner.inputs[1]], out, mode=mode)
    with pytest.raises(sg.ShapeError, match=r"test_norm.py:\d+: expected more than 1 value "):
        f(np.ones((1, 3)), np.ones(3))
    with pytest.raises(sg.ShapeError, match="test_norm.py"):
        f(np.ones((4, 3)), np.ones(2))
    lw = sg.vector("lw")
    g = sg.function([x, lw], sg.nn.layer_norm(x, 3, lw), mode=mode)
    with pytest.raises(sg.ShapeError, match="test_norm.py"):
        g(np.ones((2, 3)), np.ones(4))


@pytest.mark.slow
def test_random_shapes_against_pytorch():
    hyp = pytest.importorskip("hypothesis")
    st = hyp.strategies

    @hyp.settings(max_examples=25, deadline=None)
    @hyp.given(st.lists(st.integers(1, 5), min_size=2, max_size=5), st.integers(1, 3),
               st.sampled_from(["float64", "float32"]), st.integers(0, 2**31))
    def check(shape, k, dtype, seed):
        shape = tuple(shape)
        hyp.assume(np.prod(shape) // shape[1] > 1)
        k = min(k, len(shape))
        rng = np.random.default_rng(seed)
        X = (rng.standard_normal(shape) * 3 + rng.uniform(-5, 5)).astype(dtype)
        G = rng.standard_normal(shape).astype(dtype)
        x, g = sg.tensor("x", dtype, (None,) * len(shape)), sg.tensor("g", dtype,
                                                                       (None,) * len(shape))
        out, _ = sg.nn.batch_norm(x, None, None, training=True)
        lo = sg.nn.layer_norm(x, shape[len(shape) - k:])
        gb, gl = sg.grad(None, [x], known_grads={out: g}), sg.grad(None, [x], known_grads={lo: g})
        got = sg.function([x, g], [out, lo, gb[0], gl[0]])(X, G)
        t = torch.tensor(X.astype(np.float64), requires_grad=True)
        to, tl = F.batch_norm(t, None, None, training=True), F.layer_norm(t, shape[len(shape) - k:])
        tg = torch.tensor(G.astype(np.float64))
        want = [to, tl, *torch.autograd.grad(to, t, tg), *torch.autograd.grad(tl, t, tg)]
        tol = TOL[dtype] * 50
        for a, w in zip(got, want):
            np.testing.assert_allclose(a, w.detach().numpy(), rtol=tol, atol=tol)

    check()


@pytest.mark.parametrize("mode", ["py", "c"])
def test_batch_norm_without_channels_is_empty_in_every_mode(mode):
    # No channels (axis 1 of length 0): nothing to normalise, an empty result and empty
    # gradients. The reference divided the size (0) by the channels (0).
    x = sg.matrix("x")
    w = sg.vector("w")
    out = sg.nn.batch_norm(x, None, None, w, training=True)[0]
    f = sg.function([x, w], [out, sg.grad((out * out).sum(), w)], mode=mode)
    got, gw = f(np.ones((5, 0)), np.ones(0))
    assert got.shape == (5, 0) and gw.shape == (0,)


@pytest.mark.parametrize("mode", ["py", "c"])
def test_an_empty_batch_is_an_empty_result_as_pytorch(mode):
    """N = 0 in training: PyTorch returns an empty result, leaves the running statistics as
    they were and gives zero gradients to the weight and bias; a layer still counts the
    batch (num_batches_tracked, so momentum=None's average too). A batch of values after it
    updates as before. (One value per channel stays an error.)"""
    rng = np.random.default_rng(5)
    x2, x4 = sg.matrix("x2"), sg.tensor4("x4")
    rm = sg.shared(np.full(3, 0.5), trainable=False, name="rm_empty")
    rv = sg.shared(np.full(3, 2.0), trainable=False, name="rv_empty")
    w, b = sg.vector("w"), sg.vector("b")
    out2, upd = sg.nn.batch_norm(x2, rm, rv, w, b, training=True, momentum=0.3)
    bn = sg.layers.BatchNorm2D(3, momentum=None, dtype="float64", name="bn_empty")
    out4 = bn(x4, training=True)
    loss = (out2 * out2).sum() + (out4 * out4).sum()
    grads = sg.grad(loss, [x2, x4, w, b, bn.weight, bn.bias])
    f = sg.function([x2, x4, w, b], [out2, out4, *grads],
                    updates=upd + sg.nn.collect_updates(out4), mode=mode)
    tbn = torch.nn.BatchNorm2d(3, momentum=None).double()
    bn.load_state_dict(tbn.state_dict())
    t_rm, t_rv = torch.full((3,), 0.5, dtype=torch.float64), torch.full((3,), 2.0, dtype=torch.float64)
    wv, bv = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)
    for n in (0, 4, 0, 3):
        X2, X4 = rng.standard_normal((n, 3)) + 1, rng.standard_normal((n, 3, 2, 5)) - 1
        got = f(X2, X4, wv, bv)
        t2 = torch.tensor(X2, requires_grad=True)
        t4 = torch.tensor(X4, requires_grad=True)
        tw, tb = torch.tensor(wv, requires_grad=True), torch.tensor(bv, requires_grad=True)
        o2 = F.batch_norm(t2, t_rm, t_rv, tw, tb, training=True, momentum=0.3)
        o4 = tbn(t4)
        tl = (o2 * o2).sum() + (o4 * o4).sum()
        want = [o2, o4, *torch.autograd.grad(tl, [t2, t4, tw, tb, tbn.weight, tbn.bias])]
        for name, a, t in zip(["out2", "out4", "gx2", "gx4", "gw", "gb", "bn gw", "bn gb"],
                              got, want):
            assert a.shape == tuple(t.shape), (n, name)
            np.testing.assert_allclose(a, t.detach().numpy(), rtol=1e-10, atol=1e-12,
                                       err_msg=f"N={n}: {name}")
        np.testing.assert_allclose(rm.get_value(), t_rm.numpy(), rtol=1e-12)
        np.testing.assert_allclose(rv.get_value(), t_rv.numpy(), rtol=1e-12)
        for key, value in tbn.state_dict().items():
            np.testing.assert_allclose(bn.state_dict()[key], value.numpy(), rtol=1e-12,
                                       err_msg=f"N={n}: {key}")
    assert bn.num_batches_tracked.get_value() == 4
    with pytest.raises(sg.ShapeError, match="more than 1 value per channel"):
        f(np.ones((1, 3)), np.ones((2, 3, 1, 1)), wv, bv)
    # a batch known to be empty when the graph is built: its updates change nothing
    e = sg.tensor("e", shape=(0, 3))
    out, upd = sg.nn.batch_norm(e, rm, rv, training=True)
    assert out.type.shape == (0, 3) and all(new is target for target, new in upd)
