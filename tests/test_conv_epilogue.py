"""A convolution's epilogue (codegen/lower.py's plan_epilogues, sg_conv.c): the fused loop
that reads conv2d's or conv1d's output -- a bias, an activation -- runs inside the
convolution as each channel plane leaves the product, the output never stored; max
pooling's likewise (sg_pool.c: LeNet's tanh after pooling), its indices stored as before. Values
and gradients against PyTorch, on every path of sg_conv.c's forward (panels of whole
images, bands of output rows, 1x1 without im2col, groups, conv1d, an operand laid out
across the plane); the same bits as the separate loop and on any thread count; the
printed graph; the graphs that keep the loop apart."""

import numpy as np
import pytest

import symgrad as sg
import symgrad.codegen.lower as lower
from symgrad.codegen.ir import EpilogueStep
from thread_counts import by_threads

ACTS = {"tanh": (sg.tanh, "tanh"), "relu": (sg.relu, "relu"), "sigmoid": (sg.sigmoid, "sigmoid"),
        "none": (lambda v: v, None)}

# (name, x shape, w shape, kwargs, activation, dtype): sg_conv.c's forward paths
CONFIGS = [
    # 3 small images: one panel, the product's rows copied out through the epilogue
    ("panel", (3, 3, 9, 8), (4, 3, 3, 3), {}, "tanh", "float32"),
    # an image whose im2col matrix exceeds 2^20 elements: bands of rows, epilogue in place
    ("bands", (1, 8, 140, 132), (2, 8, 3, 3), dict(padding=1), "relu", "float32"),
    # panels of 2 + 1 images
    ("two-panels", (3, 8, 80, 66), (2, 8, 3, 3), dict(padding=1), "sigmoid", "float64"),
    # 1x1, stride 1: each image its own matrix, no im2col, epilogue in place
    ("1x1", (2, 5, 4, 3), (3, 5, 1, 1), {}, "tanh", "float64"),
    ("depthwise-strided", (3, 4, 5, 5), (8, 1, 3, 3), dict(groups=4, stride=2, padding=1),
     "none", "float32"),
    ("conv1d", (2, 3, 11), (4, 3, 3), dict(stride=2, padding=1, dilation=2), "tanh",
     "float64"),
]


def _build(cfg, static_x=False):
    name, xs, ws, kw, act, dtype = cfg
    x = sg.tensor(f"x_{name}", dtype, xs if static_x else (None,) * len(xs))
    w = sg.tensor(f"w_{name}", dtype, ws)
    b = sg.tensor(f"b_{name}", dtype, (ws[0],))  # static lengths: the broadcast is settled
    fn = sg.nn.conv2d if len(xs) == 4 else sg.nn.conv1d
    out = ACTS[act][0](fn(x, w, b, **kw))
    r = sg.tensor(f"r_{name}", dtype, (None,) * len(xs))
    return [x, w, b, r], [out, *sg.grad((out * r).sum(), [x, w, b])]


def _values(cfg, rng):
    name, xs, ws, kw, act, dtype = cfg
    torch = pytest.importorskip("torch")
    v = [rng.standard_normal(s).astype(dtype) for s in (xs, ws, (ws[0],))]
    fn = torch.nn.functional.conv2d if len(xs) == 4 else torch.nn.functional.conv1d
    with torch.no_grad():
        oshape = fn(torch.tensor(v[0]), torch.tensor(v[1]), **kw).shape
    return v + [rng.standard_normal(tuple(oshape)).astype(dtype)]


def _torch(cfg, vals):
    torch = pytest.importorskip("torch")
    name, xs, ws, kw, act, dtype = cfg
    fn = torch.nn.functional.conv2d if len(xs) == 4 else torch.nn.functional.conv1d
    ts = [torch.tensor(v, requires_grad=True) for v in vals[:3]]
    out = fn(*ts, **kw)
    out = getattr(torch, ACTS[act][1])(out) if ACTS[act][1] else out
    (out * torch.tensor(vals[3])).sum().backward()
    return [out.detach().numpy()] + [t.grad.numpy() for t in ts]


def _epilogues(f):
    return [s for s in f.kernel.steps if isinstance(s, EpilogueStep)]


def _check(got, wants, labels):
    for label, g, w in zip(labels, got, wants):
        assert g.dtype == w.dtype and g.shape == w.shape, label
        tol = 2e-4 if g.dtype == np.float32 else 1e-10
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * np.abs(w).max(), err_msg=label)


def test_values_and_gradients_against_pytorch_and_the_separate_loop(monkeypatch):
    """Every configuration in one function: each convolution runs its bias and activation
    as its epilogue, matches PyTorch, and gives the bits of the unfused kernel."""
    rng = np.random.default_rng(0)
    ins, outs, vals, wants, labels = [], [], [], [], []
    for cfg in CONFIGS:
        i, o = _build(cfg)
        v = _values(cfg, rng)
        ins += i
        outs += o
        vals += v
        wants += _torch(cfg, v)
        labels += [f"{cfg[0]}: {what}" for what in ("out", "d/dx", "d/dw", "d/db")]
    f = sg.function(ins, outs)
    fused = _epilogues(f)
    assert sorted(s.site.op.name for s in fused) == sorted(
        "conv1d" if len(c[1]) == 3 else "conv2d" for c in CONFIGS)
    # the activation is in the epilogue where its gradient reads its own output
    assert {s.loop.root.op.name for s in fused} >= {"tanh", "sigmoid"}
    got = f(*vals)
    _check(got, wants, labels)
    monkeypatch.setattr(lower, "plan_epilogues", lambda *a, **k: {})
    apart = sg.function(ins, outs)
    assert not _epilogues(apart)
    for label, g, a in zip(labels, got, apart(*vals)):
        np.testing.assert_array_equal(g, a, err_msg=label)


def test_operand_across_the_plane_and_two_reads_of_the_output():
    """An epilogue operand with lengths along the output rows and columns, laid out
    transposed (its rows are not one run: the row function runs per output row), and a
    loop reading the convolution twice (silu); float32 and float64, forward only (the
    gradient of v * sigmoid(v) reads v again, which keeps the loop apart)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    outs, wants, ins, vals = [], [], [], []
    for dtype in ("float32", "float64"):
        x = sg.tensor(f"x{dtype}", dtype, (2, 3, 6, 7))
        w = sg.tensor(f"w{dtype}", dtype, (4, 3, 3, 2))
        pos = sg.tensor(f"pos{dtype}", dtype, (4, 8, 4))  # (channel, column, row)
        v = sg.nn.conv2d(x, w, padding=(0, 1))             # (2, 4, 4, 8)
        z = v + pos.dimshuffle("x", 0, 2, 1) * 0.5
        outs += [sg.tanh(z), ]
        x2 = sg.tensor(f"x2{dtype}", dtype, (None, 3, None, None))
        w2 = sg.tensor(f"w2{dtype}", dtype, (5, 3, 2, 2))
        v2 = sg.nn.conv2d(x2, w2)
        outs += [v2 * sg.sigmoid(v2)]
        ins += [x, w, pos, x2, w2]
        xv, wv, pv = (rng.standard_normal(s).astype(dtype) for s in ((2, 3, 6, 7), (4, 3, 3, 2),
                                                                        (4, 8, 4)))
        x2v, w2v = (rng.standard_normal(s).astype(dtype) for s in ((3, 3, 5, 6), (5, 3, 2, 2)))
        vals += [xv, wv, pv, x2v, w2v]
        F = torch.nn.functional
        t = F.conv2d(torch.tensor(xv), torch.tensor(wv), padding=(0, 1))
        t = torch.tanh(t + torch.tensor(pv).permute(0, 2, 1)[None] * 0.5)
        t2 = F.conv2d(torch.tensor(x2v), torch.tensor(w2v))
        wants += [t.numpy(), (t2 * torch.sigmoid(t2)).numpy()]
    f = sg.function(ins, outs)
    assert len(_epilogues(f)) == 4
    _check(f(*vals), wants, [f"output {k}" for k in range(4)])


def test_same_bits_on_any_thread_count(monkeypatch):
    """The panel and band paths (their epilogues shared among threads with the copies)."""
    rng = np.random.default_rng(2)
    ins, outs, vals = [], [], []
    for cfg in CONFIGS[:3]:
        i, o = _build(cfg)
        ins += i
        outs += o
        vals += _values(cfg, rng)
    by_threads(monkeypatch, ins, outs, vals)


def test_printed_graph_and_source_name_the_epilogue():
    x = sg.tensor("x", "float32", (None, 3, None, None))
    w = sg.tensor("w", "float32", (4, 3, 3, 3))
    b = sg.tensor("b", "float32", (4,))
    f = sg.function([x, w, b], sg.tanh(sg.nn.conv2d(x, w, b, padding=1)))
    (step,) = _epilogues(f)
    text = sg.debugprint(f)
    assert f"tanh [id A]  [{step.label}: conv2d + epilogue of 2 ops, BLAS]" in text
    assert f"add [id B]  [in {step.label}]" in text
    assert f"conv2d{{padding=1,1,1,1}} [id C]  [in {step.label}]" in text
    assert step.title() == "conv2d{padding=1,1,1,1} with an epilogue of 2 ops: add, tanh"
    assert (f"/* {step.label}: conv2d{{padding=1,1,1,1}} with an epilogue of 2 ops: add, tanh,"
            in f.source)
    assert "sg_conv2d_epi_f32" in f.source
    out = f(np.ones((1, 3, 2, 2), "float32"), np.full((4, 3, 3, 3), 0.1, "float32"),
            np.arange(4, dtype="float32"))
    want = np.tanh(np.array([[1.2, 1.2], [1.2, 1.2]], "float32") + np.arange(4)[:, None, None])
    np.testing.assert_allclose(out[0], want, rtol=1e-6)


def test_loops_the_convolution_cannot_take():
    """A bias whose length is known only at call time (its broadcast could grow the
    result), a convolution output that is also returned, a sum of it, a transposed
    convolution: each loop stays a loop of its own, with the same values."""
    x = sg.tensor("x", "float64", (None, 2, None, None))
    w = sg.tensor("w", "float64", (3, 2, 2, 2))
    b = sg.vector("b")
    v = sg.nn.conv2d(x, w)
    outs = [sg.nn.conv2d(x, w, b), sg.tanh(v) + 1, v, sg.nn.conv2d(x, w).sum(),
            sg.tanh(sg.nn.conv_transpose2d(v, w))]
    f = sg.function([x, w, b], outs)
    assert not _epilogues(f)
    rng = np.random.default_rng(3)
    vals = [rng.standard_normal((2, 2, 4, 5)), rng.standard_normal((3, 2, 2, 2)),
            rng.standard_normal(3)]
    for got, want in zip(f(*vals), sg.function([x, w, b], outs, mode="py")(*vals)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_steps_reading_the_shape_of_the_convolution_wait_for_its_epilogue():
    """LeNet's layer, tanh(max_pool2d(conv2d(x, w, b), 2)): the pooling's gradient reads
    the shape of the convolution's output, which only the epilogue's step describes (a
    view of its result); the step that reads it comes after that one. Against PyTorch."""
    torch = pytest.importorskip("torch")
    x = sg.tensor("x", "float32", (None, 1, None, None))
    w = sg.tensor("w", "float32", (6, 1, 5, 5))
    b = sg.tensor("b", "float32", (6,))
    r = sg.tensor4("r", "float32")
    out = sg.tanh(sg.nn.max_pool2d(sg.nn.conv2d(x, w, b), 2))
    f = sg.function([x, w, b, r], [out, *sg.grad((out * r).sum(), [x, w, b])])
    (epi,) = [s for s in _epilogues(f) if s.site.op.name == "conv2d"]
    conv_out = epi.site.outputs[0]
    readers = [s for s in f.kernel.steps
               if s is not epi and any(v is conv_out for v in s.root.inputs)]
    assert [s.root.op.name for s in readers] == ["shape"] and readers[0].index > epi.index
    rng = np.random.default_rng(5)
    vals = [rng.standard_normal(s).astype("float32") for s in ((3, 1, 14, 13), (6, 1, 5, 5),
                                                                (6,), (3, 6, 5, 4))]
    ts = [torch.tensor(v, requires_grad=True) for v in vals[:3]]
    t = torch.tanh(torch.nn.functional.max_pool2d(torch.nn.functional.conv2d(*ts), 2))
    (t * torch.tensor(vals[3])).sum().backward()
    _check(f(*vals), [t.detach().numpy()] + [v.grad.numpy() for v in ts],
           ["out", "d/dx", "d/dw", "d/db"])


def test_a_shape_read_before_the_loop_waits_for_its_step():
    """shape(conv2d(x, w)) comes before the loop in the graph's order: its step, and the
    product that reads it, move after the epilogue's step, which describes the output."""
    x = sg.tensor("x", "float32", (None, 1, None, None))
    w = sg.tensor("w", "float32", (6, 1, 5, 5))
    b = sg.tensor("b", "float32", (6,))
    v = sg.nn.conv2d(x, w)
    f = sg.function([x, w, b], [sg.shape(v) * 2, sg.tanh(v + b.dimshuffle("x", 0, "x", "x"))])
    assert [s.root.op.name for s in f.kernel.steps] == ["dimshuffle", "tanh", "shape", "mul"]
    shp, out = f(np.ones((2, 1, 7, 8), "float32"), np.ones((6, 1, 5, 5), "float32"),
                 np.ones(6, "float32"))
    assert shp.tolist() == [4, 12, 6, 8]
    np.testing.assert_allclose(out, np.full((2, 6, 3, 4), np.tanh(26.0), "float32"), rtol=1e-6)


def test_max_pooling_epilogue_against_pytorch_the_separate_loop_and_threads(monkeypatch):
    """tanh / sigmoid after max pooling (padding, ceil_mode, strides) runs as the pooling's
    epilogue, a plane at a time; the indices still route the gradient. Values and
    gradients against PyTorch, the bits of the separate loop, the same on 1, 2 and 3
    threads."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(6)
    cases = [((4, 5, 24, 24), dict(kernel_size=2), "tanh", "float32"),
             ((2, 3, 9, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
              "sigmoid", "float64")]
    ins, outs, vals, wants, labels = [], [], [], [], []
    for k, (shape, kw, act, dtype) in enumerate(cases):
        x = sg.tensor(f"x{k}", dtype, (None, shape[1], None, None))
        c = sg.tensor(f"c{k}", dtype, (shape[1],))
        out = ACTS[act][0](sg.nn.max_pool2d(x, **kw) * 2.0 + c.dimshuffle("x", 0, "x", "x"))
        r = sg.tensor(f"r{k}", dtype, (None,) * 4)
        ins += [x, c, r]
        outs += [out, *sg.grad((out * r).sum(), [x, c])]
        xv = rng.standard_normal(shape).astype(dtype)
        cv = rng.standard_normal(shape[1]).astype(dtype)
        tx, tc = torch.tensor(xv, requires_grad=True), torch.tensor(cv, requires_grad=True)
        t = getattr(torch, act)(F.max_pool2d(tx, **kw) * 2.0 + tc[None, :, None, None])
        rv = rng.standard_normal(tuple(t.shape)).astype(dtype)
        (t * torch.tensor(rv)).sum().backward()
        vals += [xv, cv, rv]
        wants += [t.detach().numpy(), tx.grad.numpy(), tc.grad.numpy()]
        labels += [f"case {k}: {what}" for what in ("out", "d/dx", "d/dc")]
    f = sg.function(ins, outs)
    assert sorted(s.fused_text() for s in _epilogues(f)) == ["max_pool2d + epilogue of 3 ops"] * 2
    got = by_threads(monkeypatch, ins, outs, vals)
    _check(got, wants, labels)
    monkeypatch.setattr(lower, "plan_epilogues", lambda *a, **k: {})
    for label, g, a in zip(labels, got, sg.function(ins, outs)(*vals)):
        np.testing.assert_array_equal(g, a, err_msg=label)
