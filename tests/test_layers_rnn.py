"""sg.layers.RNN, LSTM and GRU: values and gradients against a NumPy reference written
here (always run: finite differences of it give the gradients) and against PyTorch
(skipped where torch is not installed), in modes "py" and "c", float32 and float64,
masks, batch_first, stacked layers, unbatched inputs, state dicts, verify_grad, and
the errors.

The kernels are few on purpose (the suite has a time budget): one function per layer
kind computes three configurations at once, and the PyTorch test builds the same
graph again, which the kernel cache serves."""

import math

import numpy as np
import pytest

import symgrad as sg

KINDS = ["RNN", "LSTM", "GRU"]
T, B, I, H = 4, 3, 3, 4


@pytest.fixture(params=["py", "c"])
def mode(request):
    return request.param


def _line_of(marker):
    with open(__file__) as f:
        return next(i for i, text in enumerate(f, 1) if marker in text and "_line_of" not in text)


# --------------------------------------------------------------------------- NumPy reference

def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _cell(kind, nonlinearity, gi, gh, states):
    if kind == "RNN":
        z = gi + gh
        return [np.tanh(z) if nonlinearity == "tanh" else np.maximum(z, 0.0)]
    if kind == "LSTM":
        i, f, g, o = np.split(gi + gh, 4, axis=-1)
        c = _sigmoid(f) * states[1] + _sigmoid(i) * np.tanh(g)
        return [_sigmoid(o) * np.tanh(c), c]
    ir, iz, in_ = np.split(gi, 3, axis=-1)
    hr, hz, hn = np.split(gh, 3, axis=-1)
    r, z = _sigmoid(ir + hr), _sigmoid(iz + hz)
    n = np.tanh(in_ + r * hn)
    return [(1 - z) * n + z * states[0]]


def reference(kind, sd, x, hx=None, mask=None, num_layers=1, nonlinearity="tanh",
              batch_first=False):
    """PyTorch's recurrent layers in NumPy, with the mask convention of sg.layers:
    where the mask is 0 the state carries over and the output is 0."""
    n_states = 2 if kind == "LSTM" else 1
    if batch_first:
        x = x.swapaxes(0, 1)
        mask = None if mask is None else mask.T
    steps, batch = x.shape[:2]
    mask = np.ones((steps, batch), bool) if mask is None else np.asarray(mask) != 0
    hidden = sd["weight_hh_l0"].shape[1]
    if hx is None:
        hx = [np.zeros((num_layers, batch, hidden))] * n_states
    finals = [[] for _ in range(n_states)]
    for layer in range(num_layers):
        w_ih, w_hh = sd[f"weight_ih_l{layer}"], sd[f"weight_hh_l{layer}"]
        b_ih, b_hh = sd.get(f"bias_ih_l{layer}", 0.0), sd.get(f"bias_hh_l{layer}", 0.0)
        states, outs = [s[layer] for s in hx], []
        for t in range(steps):
            new = _cell(kind, nonlinearity, x[t] @ w_ih.T + b_ih, states[0] @ w_hh.T + b_hh,
                        states)
            keep = mask[t][:, None]
            states = [np.where(keep, a, b) for a, b in zip(new, states)]
            outs.append(states[0])
        x = np.stack(outs)
        for k in range(n_states):
            finals[k].append(states[k])
    out = x * mask[:, :, None]
    if batch_first:
        out = out.swapaxes(0, 1)
    return out, [np.stack(f) for f in finals]


def numeric_grad(cost, arrays, eps=1e-6):
    """Central differences of ``cost()`` with respect to every entry of ``arrays``
    (float64 arrays changed in place and restored)."""
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + eps
            up = cost()
            a[i] = old - eps
            down = cost()
            a[i] = old
            g[i] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


# --------------------------------------------------------------------------- the graphs

# Three configurations per kind, built into one function:
#   a: float64, two layers, initial states given, a (T, B) float mask, RNN with relu
#   b: float64, batch_first, a (B, T) bool mask, no initial state, no bias
#   c: float32, one layer, no mask, no initial state
CONFIGS = {
    "a": dict(dtype="float64", num_layers=2, bias=True, batch_first=False, hx=True,
              mask="float64", nonlinearity="relu"),
    "b": dict(dtype="float64", num_layers=1, bias=False, batch_first=True, hx=False,
              mask="bool", nonlinearity="tanh"),
    "c": dict(dtype="float32", num_layers=1, bias=True, batch_first=False, hx=False,
              mask=None, nonlinearity="tanh"),
}


def _build(kind, mode):
    """``(f, layers, symbolic inputs)``: ``f`` returns, per configuration, the output, the
    final states and the gradient of a weighted sum of them to the input, the initial
    states and every parameter."""
    n_states = 2 if kind == "LSTM" else 1
    layers, inputs, outputs = {}, [], []
    for key, cfg in CONFIGS.items():
        dt, L = cfg["dtype"], cfg["num_layers"]
        extra = {"nonlinearity": cfg["nonlinearity"]} if kind == "RNN" else {}
        lay = getattr(sg.layers, kind)(I, H, num_layers=L, bias=cfg["bias"],
                                       batch_first=cfg["batch_first"], rng=1, name=f"{key}",
                                       dtype=dt, **extra)
        x = sg.tensor3(f"x_{key}", dtype=dt)
        hx = [sg.tensor3(f"h0_{key}_{k}", dtype=dt) for k in range(n_states)] if cfg["hx"] else []
        mask = (sg.matrix(f"m_{key}", dtype=cfg["mask"]) if cfg["mask"] else None)
        r_out = sg.tensor3(f"r_out_{key}", dtype=dt)
        r_fin = [sg.tensor3(f"r_fin_{key}_{k}", dtype=dt) for k in range(n_states)]
        state = None if not hx else (tuple(hx) if n_states > 1 else hx[0])
        out, finals = lay(x, state, mask=mask)
        finals = list(finals) if n_states > 1 else [finals]
        cost = (out * r_out).sum() + sum((f * r).sum() for f, r in zip(finals, r_fin))
        grads = sg.grad(cost, [x, *hx, *lay.params])
        layers[key] = lay
        inputs += [x, *hx, *([mask] if mask is not None else []), r_out, *r_fin]
        outputs += [out, *finals, *grads]
    return sg.function(inputs, outputs, mode=mode), layers


def _values(kind, cfg, rng, masks):
    """Random call values of one configuration: x, initial states, mask, weights of the cost."""
    n_states = 2 if kind == "LSTM" else 1
    dt, L = cfg["dtype"], cfg["num_layers"]
    x = rng.standard_normal((B, T, I) if cfg["batch_first"] else (T, B, I)).astype(dt)
    hx = [rng.standard_normal((L, B, H)).astype(dt) for _ in range(n_states)] if cfg["hx"] else []
    mask = []
    if cfg["mask"]:
        m = masks.T if cfg["batch_first"] else masks
        mask = [m.astype(cfg["mask"])]
    r_out = rng.standard_normal((B, T, H) if cfg["batch_first"] else (T, B, H)).astype(dt)
    r_fin = [rng.standard_normal((L, B, H)).astype(dt) for _ in range(n_states)]
    return x, hx, mask, r_out, r_fin


def _run(kind, f, layers, rng, masks):
    """Call ``f`` with random values; per configuration: (the values, f's results)."""
    n_states = 2 if kind == "LSTM" else 1
    args, per_cfg = [], {}
    for key, cfg in CONFIGS.items():
        x, hx, mask, r_out, r_fin = _values(kind, cfg, rng, masks)
        per_cfg[key] = (x, hx, mask, r_out, r_fin)
        args += [x, *hx, *mask, r_out, *r_fin]
    got, results = list(f(*args)), {}
    for key, cfg in CONFIGS.items():
        n = 1 + n_states + 1 + (n_states if cfg["hx"] else 0) + len(layers[key].params)
        results[key], got = got[:n], got[n:]
    return per_cfg, results


# Sequence lengths 4, 2 and 3: padded at the end, as PyTorch's packed sequences are
LENGTH_MASK = np.arange(T)[:, None] < np.array([4, 2, 3])[None, :]
# An arbitrary mask: skipped steps in the middle, and one example never stepped
HOLES_MASK = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0]], bool)


@pytest.mark.parametrize("kind", KINDS)
def test_values_and_gradients_against_numpy_and_finite_differences(kind, mode):
    rng = np.random.default_rng(7)
    f, layers = _build(kind, mode)
    per_cfg, results = _run(kind, f, layers, rng, HOLES_MASK)
    for key, cfg in CONFIGS.items():
        x, hx, mask, r_out, r_fin = per_cfg[key]
        got = results[key]
        sd = {k: v.astype("float64") for k, v in layers[key].state_dict().items()}
        x64, hx64 = x.astype("float64"), [h.astype("float64") for h in hx]
        r_out64, r_fin64 = r_out.astype("float64"), [r.astype("float64") for r in r_fin]
        call = dict(mask=mask[0] if mask else None, num_layers=cfg["num_layers"],
                    nonlinearity=cfg["nonlinearity"] if kind == "RNN" else "tanh",
                    batch_first=cfg["batch_first"])

        def cost():
            out, finals = reference(kind, sd, x64, hx64 or None, **call)
            return (out * r_out64).sum() + sum((a * r).sum() for a, r in zip(finals, r_fin64))

        out, finals = reference(kind, sd, x64, hx64 or None, **call)
        want = [out, *finals, *numeric_grad(cost, [x64, *hx64, *sd.values()])]
        tol = dict(rtol=1e-4, atol=1e-4) if cfg["dtype"] == "float32" else dict(rtol=1e-6,
                                                                               atol=1e-7)
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want)):
            assert g.dtype == cfg["dtype"] and g.shape == w.shape, (key, i)
            np.testing.assert_allclose(g, w, **tol, err_msg=f"config {key}, result {i}")
        if mask:  # skipped steps: zero outputs, a never-stepped example keeps h0
            assert not np.take(got[0], 2, axis=0 if cfg["batch_first"] else 1).any()
        if cfg["hx"]:
            np.testing.assert_array_equal(got[1][:, 2], hx[0][:, 2])
    # a mask of the wrong length fails at call time, naming the line of the layer call
    x, hx, mask, r_out, r_fin = per_cfg["a"]
    bad = [v for key in CONFIGS for v in (
        [per_cfg[key][0], *per_cfg[key][1], *[m[:-1] if key == "a" else m
                                              for m in per_cfg[key][2]],
         per_cfg[key][3], *per_cfg[key][4]])]
    with pytest.raises(sg.ShapeError, match=r"different lengths \(sequence \d: [34], sequence "
                                            r"\d: [34]\)") as e:
        f(*bad)
    assert f"at {__file__}:{_line_of('out, finals = lay(x, state, mask=mask)')}:" in str(e.value)


@pytest.mark.parametrize("kind", KINDS)
def test_values_and_gradients_against_pytorch(kind, mode):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    f, layers = _build(kind, mode)
    modules = {}
    for key, cfg in CONFIGS.items():
        extra = {"nonlinearity": cfg["nonlinearity"]} if kind == "RNN" else {}
        torch.manual_seed(3)
        m = getattr(torch.nn, kind)(I, H, num_layers=cfg["num_layers"], bias=cfg["bias"],
                                    batch_first=cfg["batch_first"],
                                    dtype=getattr(torch, cfg["dtype"]), **extra)
        layers[key].load_state_dict(m.state_dict())
        modules[key] = m
    per_cfg, results = _run(kind, f, layers, rng, LENGTH_MASK)
    pack, unpack = torch.nn.utils.rnn.pack_padded_sequence, torch.nn.utils.rnn.pad_packed_sequence
    for key, cfg in CONFIGS.items():
        m, (x, hx, mask, r_out, r_fin) = modules[key], per_cfg[key]
        xt = torch.tensor(x, requires_grad=True)
        hxt = [torch.tensor(h, requires_grad=True) for h in hx]
        state = None if not hx else (tuple(hxt) if kind == "LSTM" else hxt[0])
        if mask:
            lengths = torch.tensor(LENGTH_MASK.sum(axis=0))
            packed = pack(xt, lengths, batch_first=cfg["batch_first"], enforce_sorted=False)
            out, finals = m(packed, state)
            out, _ = unpack(out, batch_first=cfg["batch_first"], total_length=T)
        else:
            out, finals = m(xt, state)
        finals = list(finals) if kind == "LSTM" else [finals]
        cost = (out * torch.tensor(r_out)).sum() + sum(
            (a * torch.tensor(r)).sum() for a, r in zip(finals, r_fin))
        cost.backward()
        want = [out, *finals, xt.grad, *[h.grad for h in hxt], *[p.grad for p in m.parameters()]]
        tol = dict(rtol=2e-4, atol=2e-5) if cfg["dtype"] == "float32" else dict(rtol=1e-9,
                                                                               atol=1e-11)
        for i, (g, w) in enumerate(zip(results[key], want)):
            np.testing.assert_allclose(g, w.detach().numpy(), **tol,
                                       err_msg=f"config {key}, result {i}")


# --------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("kind", KINDS)
def test_verify_grad_through_the_layers_with_a_mask(kind):
    lay = getattr(sg.layers, kind)(2, 3, num_layers=2, rng=0, dtype="float64")
    mask = np.array([[1, 1], [0, 1], [1, 0]], bool)
    rng = np.random.default_rng(1)

    def fun(x, h0, c0):
        state = (h0, c0) if kind == "LSTM" else h0 + c0
        out, finals = lay(x, state, mask=mask)
        h_n = finals[0] if kind == "LSTM" else finals
        return out.sum(axis=0) + h_n[1]

    pt = [rng.standard_normal((3, 2, 2)), rng.standard_normal((2, 2, 3)),
          rng.standard_normal((2, 2, 3))]
    sg.verify_grad(fun, pt, n_tests=1, mode="py")


@pytest.mark.parametrize("kind", KINDS)
def test_a_sequence_of_no_step_keeps_the_initial_states(kind, mode):
    # The final states were read as the stack's [-1]: an input of 0 time steps failed with
    # "subtensor[-1] ... index -1 is out of range for axis 0 with size 0", an index the user
    # never wrote. No step leaves the states as given, as a fully masked sequence does.
    lay = getattr(sg.layers, kind)(3, 4, num_layers=2, rng=0, dtype="float64")
    x = sg.tensor3("x")
    hx = [sg.tensor3(f"h{i}") for i in range(2 if kind == "LSTM" else 1)]
    out, finals = lay(x, tuple(hx) if kind == "LSTM" else hx[0])
    finals = list(finals) if kind == "LSTM" else [finals]
    cost = sum((f * np.arange(1.0, 5.0)).sum() for f in finals)
    f = sg.function([x, *hx], [out, *finals, *sg.grad(cost, hx)], mode=mode)
    rng = np.random.default_rng(3)
    states = [rng.standard_normal((2, 5, 4)) for _ in hx]
    got = f(np.zeros((0, 5, 3)), *states)
    assert got[0].shape == (0, 5, 4)
    for g, h in zip(got[1:1 + len(hx)], states):
        np.testing.assert_array_equal(g, h)
    for g in got[1 + len(hx):]:   # d(final)/d(initial) is the identity
        np.testing.assert_array_equal(g, np.broadcast_to(np.arange(1.0, 5.0), (2, 5, 4)))
    # one step and more: the last step's states, as before
    xs = rng.standard_normal((3, 5, 3))
    full = f(xs, *states)
    sd = lay.state_dict()
    want_out, want_finals = reference(kind, sd, xs, states, num_layers=2)
    np.testing.assert_allclose(full[0], want_out, rtol=1e-12)
    for g, w in zip(full[1:1 + len(hx)], want_finals):
        np.testing.assert_allclose(g, w, rtol=1e-12)


def test_unbatched_input_and_numpy_mask_match_the_batched_layer():
    gru = sg.layers.GRU(3, 2, rng=4)
    x, h0 = sg.matrix("x"), sg.matrix("h0")
    mask = np.array([1, 0, 1, 1], bool)
    out, h_n = gru(x, h0, mask=mask)
    assert out.type.shape == (4, 2) and h_n.type.shape == (1, 2)
    rng = np.random.default_rng(2)
    xv, hv = rng.standard_normal((4, 3)), rng.standard_normal((1, 2))
    got = sg.function([x, h0], [out, h_n], mode="py")(xv, hv)
    want_out, (want_h,) = reference("GRU", gru.state_dict(), xv[:, None], [hv[:, None]],
                                    mask=mask[:, None])
    np.testing.assert_allclose(got[0], want_out[:, 0], rtol=1e-12)
    np.testing.assert_allclose(got[1], want_h[:, 0], rtol=1e-12)


def test_the_input_product_of_every_step_is_one_product_before_the_loop():
    lstm = sg.layers.LSTM(3, 5, rng=0, name="enc")
    x = sg.tensor3("x")
    out, (h_n, _) = lstm(x)
    f = sg.function([x], [out, h_n], mode="py")
    loops = [n for n in sg.graph.toposort(f.graph.outputs) if n.op.name == "scan"]
    assert len(loops) == 1
    before = [n for n in sg.graph.toposort(loops[0].inputs) if n.op.name in ("matmul", "gemm")]
    assert len(before) == 1
    reads = {id(v) for n in sg.graph.toposort(before[0].outputs) for v in n.inputs}
    assert id(x) in reads and id(lstm.weight_ih_l0) in reads
    inner = [n.op.name for n in loops[0].op.inner.nodes()]
    assert inner.count("matmul") + inner.count("gemm") == 1    # only h @ W_hh.T stays


def test_a_train_step_finds_and_trains_the_parameters():
    rng = np.random.default_rng(0)
    lstm = sg.layers.LSTM(2, 8, batch_first=True, rng=0, name="lstm")
    head = sg.layers.Dense(8, 1, rng=0, name="head")
    x, y = sg.tensor3("x"), sg.matrix("y")
    out, (h_n, _) = lstm(x)
    loss = ((head(h_n[-1]) - y) ** 2).mean()
    step = sg.train_step(loss, [x, y], optimizer=sg.optim.Adam(lr=0.05), mode="py")
    assert step.params == lstm.params + head.params
    xv = rng.standard_normal((16, 5, 2))
    yv = xv.sum(axis=(1, 2))[:, None] * 0.2    # the sum of the sequence
    first = step(xv, yv)["loss"]
    for _ in range(40):
        last = step(xv, yv)["loss"]
    assert last < 0.2 * first


# --------------------------------------------------------------------------- state dicts

@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_round_trip_with_pytorch(kind):
    torch = pytest.importorskip("torch")
    m = getattr(torch.nn, kind)(3, 4, num_layers=2)            # float32
    lay = getattr(sg.layers, kind)(3, 4, num_layers=2, rng=0)  # float64
    lay.load_state_dict(m.state_dict())
    sd = lay.state_dict()
    assert list(sd) == list(m.state_dict())
    for k, v in m.state_dict().items():
        assert sd[k].dtype == np.float64
        np.testing.assert_array_equal(sd[k], v.numpy())
    # and back: a fresh PyTorch module takes the exported dict
    other = getattr(torch.nn, kind)(3, 4, num_layers=2, dtype=torch.float64)
    other.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    for (k, v), w in zip(other.state_dict().items(), sd.values()):
        np.testing.assert_array_equal(v.numpy(), w)
    # a whole model's dict, through a prefix
    model = torch.nn.Sequential()
    model.add_module("rec", other)
    model.add_module("out", torch.nn.Linear(4, 1))
    fresh = getattr(sg.layers, kind)(3, 4, num_layers=2, rng=5)
    fresh.load_state_dict(model.state_dict(), prefix="rec.")
    for k in sd:
        np.testing.assert_array_equal(fresh.state_dict()[k], sd[k])


def test_state_dict_names_shapes_and_refusals():
    a = sg.layers.LSTM(3, 2, num_layers=2, rng=0, name="enc")
    assert list(a.state_dict()) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                    "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"]
    assert [p.name for p in a.params] == [f"enc.{k}" for k in a.state_dict()]
    assert a.weight_ih_l0.get_value().shape == (8, 3) and a.weight_ih_l1.get_value().shape == (8, 2)
    assert all(p.trainable for p in a.params)
    k = 1 / math.sqrt(2)   # PyTorch's initialisation range
    assert all(np.abs(v).max() <= k for v in a.state_dict().values())
    b = sg.layers.LSTM(3, 2, num_layers=2, rng=1, dtype="float32")
    b.load_state_dict(a.state_dict())
    for key, v in a.state_dict().items():
        assert b.state_dict()[key].dtype == np.float32
        np.testing.assert_allclose(b.state_dict()[key], v, rtol=1e-7)
    np.testing.assert_array_equal(sg.layers.LSTM(3, 2, rng=3).state_dict()["weight_hh_l0"],
                                  sg.layers.LSTM(3, 2, rng=3).state_dict()["weight_hh_l0"])
    before = b.state_dict()
    sd = a.state_dict()
    bad_shape = dict(sd, weight_hh_l1=np.zeros((8, 3)))
    missing = {k: v for k, v in sd.items() if k != "bias_hh_l0"}
    extra = dict(sd, weight_hr_l0=np.zeros((2, 2)))
    ints = dict(sd, bias_ih_l0=np.zeros(8, dtype="int64"))
    for bad, pattern in ((bad_shape, r"weight_hh_l1 has shape \(8, 3\), expected \(8, 2\)"),
                         (missing, r"missing \['bias_hh_l0'\], unexpected none"),
                         (extra, r"missing none, unexpected \['weight_hr_l0'\]"),
                         (ints, r"bias_ih_l0 has dtype int64, expected floats")):
        with pytest.raises(sg.CheckpointError, match=pattern + ".*nothing was changed"):
            b.load_state_dict(bad)
        for key, v in b.state_dict().items():
            np.testing.assert_array_equal(v, before[key])
    b.load_state_dict(missing, strict=False)   # what it has is loaded
    np.testing.assert_allclose(b.state_dict()["weight_hh_l1"], sd["weight_hh_l1"], rtol=1e-7)
    with pytest.raises(TypeError, match="expected a dict"):
        b.load_state_dict([1, 2])


# --------------------------------------------------------------------------- errors

def test_bad_inputs_are_refused_where_the_layer_is_called():
    lstm = sg.layers.LSTM(3, 4, rng=0)
    here = f"(at {__file__}:"
    with pytest.raises(sg.ShapeError, match=r"LSTM 'lstm': expected an input of shape \(time, "
                                            r"batch, input_size\).*input_size = 3, got "
                                            r"float64\[\?, \?, 5\]") as e:
        lstm(sg.tensor("x", shape=(None, None, 5)))   # wrong input size
    assert str(e.value).endswith(f"{here}{_line_of('# wrong input size')})")
    with pytest.raises(sg.ShapeError, match="expected an input of shape"):
        lstm(sg.vector("x"))
    with pytest.raises(TypeError, match=r"the input is float32 and the parameters are float64: "
                                        r"cast the input .*astype\('float64'\)") as e:
        lstm(sg.tensor3("x", dtype="float32"))   # wrong dtype
    assert str(e.value).endswith(f"{here}{_line_of('# wrong dtype')})")
    with pytest.raises(TypeError, match="the input is int64"):
        lstm(sg.tensor3("x", dtype="int64"))
    with pytest.raises(TypeError, match="expected a symbolic Variable, got ndarray"):
        lstm(np.zeros((2, 2, 3)))
    x = sg.tensor("x", shape=(5, 2, 3))
    with pytest.raises(sg.ShapeError, match=r"the mask must have the shape \(time, batch\) of "
                                            r"the input's leading axes, \(5, 2\), got "
                                            r"bool\[2, 5\]") as e:
        lstm(x, mask=sg.tensor("m", dtype="bool", shape=(2, 5)))   # wrong mask shape
    assert str(e.value).endswith(f"{here}{_line_of('# wrong mask shape')})")
    with pytest.raises(sg.ShapeError, match=r"the mask must have the shape"):
        lstm(x, mask=sg.tensor3("m"))
    first = sg.layers.GRU(3, 4, batch_first=True, rng=0)
    with pytest.raises(sg.ShapeError,
                       match=r"shape \(batch, time\) .*\(2, 5\), got float64\[5, 2\]"):
        first(sg.tensor("x", shape=(2, 5, 3)), mask=np.ones((5, 2)))
    with pytest.raises(TypeError, match="mask must be a symbolic Variable or an array, got list"):
        lstm(x, mask=[[1, 0]])
    with pytest.raises(TypeError, match="hx must be a pair"):
        lstm(x, sg.tensor3("h0"))
    with pytest.raises(sg.ShapeError, match=r"c_0 must have the shape \(num_layers, batch, "
                                            r"hidden_size\) = \(1, 2, 4\), got float64\[1, 2, 3\]"):
        lstm(x, (sg.tensor3("h0"), sg.tensor("c0", shape=(1, 2, 3))))
    with pytest.raises(TypeError, match="h_0 is float32 and the parameters are float64"):
        sg.layers.RNN(3, 4)(x, sg.tensor3("h0", dtype="float32"))
    with pytest.raises(sg.ShapeError, match=r"h_0 must have the shape \(num_layers, hidden_size\)"):
        sg.layers.RNN(3, 4)(sg.matrix("x"), sg.tensor3("h0"))


def test_bad_constructor_arguments():
    with pytest.raises(TypeError, match="LSTM: hidden_size must be a positive int, got float"):
        sg.layers.LSTM(3, 4.0)
    with pytest.raises(ValueError, match="GRU: num_layers must be a positive int, got 0"):
        sg.layers.GRU(3, 4, num_layers=0)
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"):
        sg.layers.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="batch_first must be a bool"):
        sg.layers.RNN(3, 4, batch_first="yes")
    with pytest.raises(TypeError, match="parameters must be float, got dtype int32"):
        sg.layers.RNN(3, 4, dtype="int32")
    with pytest.raises(TypeError, match="rng must be"):
        sg.layers.RNN(3, 4, rng="seed")
    r = sg.layers.RNN(3, 4, nonlinearity="relu", name="r")
    assert repr(r) == ("RNN(3, 4, num_layers=1, bias=True, batch_first=False, name='r', "
                       "nonlinearity='relu')")
    assert [p.name for p in sg.layers.GRU(3, 4, bias=False).params] == [
        "gru.weight_ih_l0", "gru.weight_hh_l0"]


@pytest.mark.parametrize("mode", ["py", "c"])
def test_lstm_cell_is_pytorch_s_lstm_cell_with_the_layer_s_weights(mode):
    """``LSTM.cell(l, x_t, [h, c])``, the documented one step of a layer, is
    ``torch.nn.LSTMCell`` with that layer's weights (layer 1 reads layer 0's h)."""
    torch = pytest.importorskip("torch")
    lstm = sg.layers.LSTM(3, 5, num_layers=2, rng=4)
    r = np.random.default_rng(5)
    for l, I in ((0, 3), (1, 5)):
        x, h, c = sg.matrix("x"), sg.matrix("h"), sg.matrix("c")
        f = sg.function([x, h, c], lstm.cell(l, x, [h, c]), mode=mode)
        xv, hv, cv = r.standard_normal((2, I)), r.standard_normal((2, 5)), r.standard_normal((2, 5))
        cell = torch.nn.LSTMCell(I, 5).double()
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, name).copy_(torch.from_numpy(
                    getattr(lstm, f"{name}_l{l}").get_value()))
            want = cell(torch.from_numpy(xv), (torch.from_numpy(hv), torch.from_numpy(cv)))
        for got, w in zip(f(xv, hv, cv), want):
            np.testing.assert_allclose(got, w.numpy(), rtol=1e-12, atol=1e-12)
