"""sg.nn.max_pool2d, avg_pool2d and adaptive_avg_pool2d against PyTorch (skipped where
torch is not installed): values, gradients and second order, modes "py", "c" and
"debug", float32 and float64, odd sizes, batch 1, non-contiguous inputs; the errors.

One compiled function per mode computes every configuration (the suite's time budget)."""

import numpy as np
import pytest

import symgrad as sg

CONFIGS = [
    ("max", dict(kernel_size=2), (2, 3, 7, 9), "float64"),
    ("max", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), (1, 2, 8, 7), "float32"),
    ("max", dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1)), (2, 2, 6, 9), "float64"),
    ("avg", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
     (2, 3, 7, 8), "float64"),
    ("avg", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), (1, 2, 6, 7), "float32"),
    ("avg", dict(kernel_size=(2, 3)), (2, 2, 5, 7), "float64"),
    ("adaptive", dict(output_size=(3, 2)), (2, 3, 7, 5), "float64"),
    ("adaptive", dict(output_size=4), (1, 2, 3, 9), "float32"),
    ("adaptive", dict(output_size=1), (2, 4, 5, 5), "float64"),
]
FUNCS = {"max": "max_pool2d", "avg": "avg_pool2d", "adaptive": "adaptive_avg_pool2d"}


def _value(shape, dtype, rng, k):
    # distinct values (no ties for the maximum); every other one transposed in memory
    v = (rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0 - 3).astype(dtype)
    return v if k % 2 == 0 else np.swapaxes(np.ascontiguousarray(np.swapaxes(v, 2, 3)), 2, 3)


@pytest.mark.parametrize("mode", ["py", "c", "debug"])
def test_values_and_gradients_against_pytorch(mode):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    ins, outs, vals, wants = [], [], [], []
    for k, (kind, kw, shape, dtype) in enumerate(CONFIGS):
        X = _value(shape, dtype, rng, k)
        xt = torch.tensor(np.ascontiguousarray(X), requires_grad=True)
        ot = getattr(torch.nn.functional, FUNCS[kind])(xt, **kw)
        R = rng.standard_normal(tuple(ot.shape)).astype(dtype)
        gxt, = torch.autograd.grad((torch.tanh(ot) * torch.tensor(R)).sum(), xt,
                                   create_graph=True)
        g2t, = torch.autograd.grad((gxt * gxt * xt).sum(), xt)
        x = sg.tensor4(f"x{k}", dtype)
        out = getattr(sg.nn, FUNCS[kind])(x, **kw)
        gx = sg.grad((sg.tanh(out) * R).sum(), x)
        g2 = sg.grad((gx * gx * x).sum(), x)
        ins.append(x)
        outs += [out, gx, g2]
        vals.append(X)
        wants += [t.detach().numpy() for t in (ot, gxt, g2t)]
    got = sg.function(ins, outs, mode=mode)(*vals)
    for i, (g, w) in enumerate(zip(got, wants)):
        label = f"{CONFIGS[i // 3][:2]} {['out', 'd/dx', 'd2'][i % 3]}"
        assert g.dtype == w.dtype and g.shape == w.shape, label
        tol = 1e-5 if g.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=label)


def test_verify_grad_float64():
    rng = np.random.default_rng(1)
    X = rng.permutation(2 * 3 * 6 * 7).reshape(2, 3, 6, 7) / 11.0
    sg.verify_grad(lambda x: sg.nn.max_pool2d(x, 3, 2, 1, ceil_mode=True), [X], rng=rng)
    sg.verify_grad(lambda x: sg.nn.avg_pool2d(x, 3, 2, 1, ceil_mode=True,
                                              count_include_pad=False), [X], rng=rng)
    sg.verify_grad(lambda x: sg.nn.adaptive_avg_pool2d(x, (4, 3)), [X], rng=rng)


def test_sizes_change_between_calls_and_the_graph_reads():
    x = sg.tensor4("x", "float32")
    out = sg.nn.max_pool2d(x, 2)
    gx = sg.grad(out.sum(), x)
    f = sg.function([x], [out, gx])
    for shape in [(1, 1, 2, 2), (3, 2, 5, 7), (0, 2, 4, 4)]:
        o, g = f(np.ones(shape, "float32"))
        assert o.shape == shape[:2] + (shape[2] // 2, shape[3] // 2) and g.shape == shape
    assert "grad of max_pool2d" in sg.debugprint(gx)


def test_errors_at_build_and_at_call_time():
    x = sg.tensor("x", shape=(None, 3, 4, 4))
    with pytest.raises(sg.ShapeError, match=r"kernel's height 5 \(dilated: 5\) is larger than "
                                            r"the padded input's height 4 \(at .*test_conv_pool"):
        sg.nn.max_pool2d(x, 5)
    with pytest.raises(sg.ShapeError, match="padding 2 should be at most half"):
        sg.nn.avg_pool2d(x, 3, padding=2)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        sg.nn.max_pool2d(x, 0)
    with pytest.raises(TypeError, match="output_size must be an int or a tuple of 2 ints"):
        sg.nn.adaptive_avg_pool2d(x, (1, 2, 3))
    with pytest.raises(sg.ShapeError, match="must be 4-d"):
        sg.nn.max_pool2d(sg.matrix(), 2)
    y = sg.tensor4("y")
    out = sg.nn.max_pool2d(y, 3)  # the line errors name
    # adaptive_avg_pool2d's errors and printed graph name it so (not "avg_pool2d")
    ad = sg.nn.adaptive_avg_pool2d(y, 2)
    assert "grad of adaptive_avg_pool2d{output_size=2x2}" in sg.debugprint(sg.grad(ad.sum(), y))
    with pytest.raises(sg.ShapeError, match=r"^adaptive_avg_pool2d: an input of height or width "
                                            r"0 has no windows to average \(at .*test_conv_pool"):
        sg.nn.adaptive_avg_pool2d(sg.tensor("z", shape=(1, 2, 0, 3)), 2)
    for mode in ["py", "c"]:
        f = sg.function([y], out, mode=mode)
        with pytest.raises(sg.ShapeError, match=r"max_pool2d\{kernel=3x3\} at .*test_conv_pool"
                                                r"\.py:\d+: the kernel's width 3"):
            f(np.ones((1, 1, 4, 2)))
        with pytest.raises(sg.ShapeError, match=r"^adaptive_avg_pool2d\{output_size=2x2\} at "
                                                r".*test_conv_pool\.py:\d+: an input of height"):
            sg.function([y], ad, mode=mode)(np.ones((1, 1, 0, 2)))


@pytest.mark.parametrize("mode", ["c", "py"])
def test_a_huge_batch_of_empty_planes_returns_at_once(mode):
    # 2**40 images of no channel: nothing to compute, and no loop over the batch either
    # (the compiled loops once ran 2**60 empty iterations: the huge-length fuzz row).
    x = sg.tensor4("x")
    outs = [sg.nn.max_pool2d(x, 2), sg.nn.avg_pool2d(x, 2, padding=1)]
    grads = sg.grad(sum(o.sum() for o in outs), x)
    f = sg.function([x], [*outs, grads], mode=mode)
    xv = np.zeros((2 ** 40, 0, 4, 4))
    mx, av, gx = f(xv)
    assert mx.shape == (2 ** 40, 0, 2, 2) and av.shape == (2 ** 40, 0, 3, 3)
    assert gx.shape == xv.shape


@pytest.mark.parametrize("mode", ["py", "c"])
def test_max_pool_ties_and_nans_pick_the_tap_pytorch_picks(mode):
    # Ties: the first maximum in window order; a NaN wins (the last one): values and
    # where the gradient goes, for windows inside the input (the kernel's vector passes,
    # 8 float32 or 4 float64 outputs at a time, the last overlapping, with steps 2, 1
    # and 3 between windows) and at its edges (padding, dilation). One function.
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    kws = (dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
           dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1), padding=(1, 0)),
           dict(kernel_size=3, stride=3))
    ins, outs, vals, wants = [], [], [], []
    for dtype in ("float32", "float64"):
        X = rng.integers(0, 3, (2, 3, 9, 30)).astype(dtype)
        X[0, 1, 2, 3] = X[1, 2, 6, 7] = X[1, 2, 6, 8] = X[1, 0, 4, 20] = np.nan
        x = sg.tensor4(f"x_{dtype}", dtype)
        ins.append(x)
        vals.append(X)
        for kw in kws:
            xt = torch.tensor(X, requires_grad=True)
            ot = torch.nn.functional.max_pool2d(xt, **kw)
            R = rng.standard_normal(tuple(ot.shape)).astype(dtype)
            gxt, = torch.autograd.grad((ot * torch.tensor(R)).sum(), xt)
            out = sg.nn.max_pool2d(x, **kw)
            outs += [out, sg.grad((out * R).sum(), x)]
            wants += [(ot.detach().numpy(), f"{dtype} {kw}"), (gxt.numpy(), f"{dtype} {kw} grad")]
    got = sg.function(ins, outs, mode=mode)(*vals)
    for g, (w, label) in zip(got, wants):
        np.testing.assert_array_equal(g, w, err_msg=label)


@pytest.mark.parametrize("mode", ["py", "c"])
def test_ceil_mode_keeps_a_window_that_overhangs_a_small_input(mode):
    # PyTorch's ceil_mode gives one window where the kernel is larger than the padded input
    # by less than a stride (a 2x2 map under a 3x3 pool of stride 2: one output): the
    # window starts inside the input and overhangs it. It was refused as "larger than the
    # padded input", at build time and at call time.
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(4)
    X = rng.standard_normal((2, 3, 2, 5))
    cases = [("max_pool2d", dict(kernel_size=3, stride=2, ceil_mode=True)),
             ("max_pool2d", dict(kernel_size=(2, 3), stride=(1, 2), dilation=(1, 2),
                                 ceil_mode=True)),
             ("avg_pool2d", dict(kernel_size=3, stride=2, ceil_mode=True)),
             ("avg_pool2d", dict(kernel_size=(3, 4), stride=3, padding=1, ceil_mode=True,
                                 count_include_pad=False))]
    for static in (True, False):
        x = sg.tensor("x", shape=X.shape) if static else sg.tensor4("x")
        outs, wants = [], []
        for name, kw in cases:
            xt = torch.tensor(X, requires_grad=True)
            ot = getattr(F, name)(xt, **kw)
            R = rng.standard_normal(tuple(ot.shape))
            gxt, = torch.autograd.grad((ot * torch.tensor(R)).sum(), xt)
            out = getattr(sg.nn, name)(x, **kw)
            assert not static or out.type.shape == tuple(ot.shape), (name, kw)
            outs += [out, sg.grad((out * R).sum(), x)]
            wants += [ot.detach().numpy(), gxt.numpy()]
        for g, w in zip(sg.function([x], outs, mode=mode)(X), wants):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    # PyTorch has no output here either: a kernel larger by a stride or more
    y = sg.tensor4("y")
    f = sg.function([y], sg.nn.max_pool2d(y, 3, stride=2, ceil_mode=True), mode=mode)
    with pytest.raises(sg.ShapeError, match=r"max_pool2d\{.*\} at .*test_conv_pool\.py:\d+: "
                                            r"the kernel's height 3 .* padded input's height 1"):
        f(np.ones((1, 1, 1, 4)))


@pytest.mark.parametrize("mode", ["py", "c"])
def test_padding_is_bounded_by_half_the_undilated_kernel(mode):
    # PyTorch's bound is half the kernel, not half the dilated kernel: with padding 2 for a
    # kernel of 2 dilated by 3, the window of a 1x1 input holds no tap of it, and its
    # maximum came back as -inf (PyTorch refuses the padding).
    x = sg.tensor("x", shape=(None, 1, None, None))
    with pytest.raises(sg.ShapeError, match=r"max_pool2d: the padding 2 should be at most half "
                                            r"of the kernel's width 2 \(at .*test_conv_pool"):
        sg.nn.max_pool2d(x, (1, 2), stride=1, padding=(0, 2), dilation=(1, 3))
    # as much padding as PyTorch allows still works with dilation
    torch = pytest.importorskip("torch")
    X = np.random.default_rng(5).standard_normal((2, 1, 5, 6))
    want = torch.nn.functional.max_pool2d(torch.tensor(X), 3, 1, 1, 2).numpy()
    got = sg.function([x], sg.nn.max_pool2d(x, 3, 1, 1, 2), mode=mode)(X)
    np.testing.assert_array_equal(got, want)


def test_a_kernel_far_larger_than_the_input_costs_its_taps_inside_only():
    # max pooling's rows at an edge passed over every tap of the kernel once per row with
    # no window to update: a 2**31 - 1 kernel with the padding PyTorch allows (half of it)
    # on a 3x3 image ran 2**62 empty steps (it never returned). Compiled only: the NumPy
    # reference lays every tap out.
    k = 2 ** 31 - 1
    x = sg.tensor4("x")
    out = sg.nn.max_pool2d(x, k, stride=1, padding=k // 2, ceil_mode=True)
    f = sg.function([x], [out, sg.grad(out.sum(), x)], mode="c")
    X = np.array([[[[1.0, 5.0, 2.0], [5.0, 0.0, 3.0], [4.0, 1.0, 5.0]]]])
    o, g = f(X)
    # every window holds the whole image: its first maximum, (0, 1), takes every gradient
    np.testing.assert_array_equal(o, np.full((1, 1, 3, 3), 5.0))
    np.testing.assert_array_equal(g, np.where(np.arange(9).reshape(1, 1, 3, 3) == 1, 9.0, 0.0))
