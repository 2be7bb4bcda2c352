"""sg.nn.conv2d and conv1d: values and gradients (first and second order) against PyTorch
(skipped where torch is not installed), modes "py", "c" and "debug", sizes that change
from call to call, verify_grad in float64, the errors at build and at call time, and
how the gradient graph prints.

Kernels are few on purpose (the suite has a time budget): one function computes every
configuration of the PyTorch comparison at once."""

import numpy as np
import pytest

import symgrad as sg


def _line_of(marker):
    with open(__file__) as f:
        return next(i for i, text in enumerate(f, 1) if marker in text and "_line_of" not in text)


# (name, x shape, w shape, bias, kwargs, dtype, layout of x): every argument form, odd
# sizes, batch 1, depthwise, 1x1 (no im2col), an image whose im2col matrix is more than
# one panel (2^20 elements: made in bands of output rows), a batch in two panels of
# whole images (2 + 1), non-contiguous inputs.
CONFIGS = [
    ("plain", (2, 3, 7, 6), (4, 3, 3, 3), True, {}, "float64", "c"),
    ("stride-pad-tuple", (1, 2, 9, 8), (3, 2, 2, 3), False,
     dict(stride=(2, 3), padding=(1, 2)), "float64", "c"),
    ("dilation-groups", (2, 4, 8, 7), (6, 2, 3, 2), True,
     dict(dilation=(2, 1), groups=2, padding=1), "float32", "c"),
    ("depthwise", (3, 4, 5, 5), (8, 1, 3, 3), True, dict(groups=4, stride=2), "float32", "c"),
    ("same-even-kernel", (2, 3, 6, 5), (2, 3, 4, 2), False, dict(padding="same"), "float64",
     "c"),
    ("same-runtime-kernel", (2, 3, 6, 5), (2, 3, 3, 4), True,
     dict(padding="same", dilation=(1, 2)), "float64", "transposed"),
    ("valid-1x1", (2, 5, 4, 3), (3, 5, 1, 1), True, dict(padding="valid"), "float32", "c"),
    ("1x1-stride", (1, 3, 5, 5), (2, 3, 1, 1), False, dict(stride=2), "float64", "c"),
    ("noncontiguous", (2, 3, 6, 7), (4, 3, 3, 2), True, dict(padding=(0, 1)), "float64",
     "transposed"),
    ("one-band-more", (1, 8, 140, 132), (2, 8, 3, 3), False, dict(padding=1), "float32", "c"),
    ("two-panels", (3, 8, 80, 66), (2, 8, 3, 3), True, dict(padding=1), "float32", "c"),
    ("conv1d", (2, 3, 11), (4, 3, 3), True, dict(stride=2, padding=1, dilation=2), "float64",
     "c"),
    ("conv1d-same", (1, 4, 6), (4, 2, 4), False, dict(padding="same", groups=2), "float32",
     "transposed"),
]


def _value(shape, dtype, layout, rng):
    v = rng.standard_normal(shape).astype(dtype)
    if layout == "transposed":  # the same values, laid out with the last two axes swapped
        v = np.swapaxes(np.ascontiguousarray(np.swapaxes(v, -1, -2)), -1, -2)
        assert not v.flags.c_contiguous
    return v


def _build(cfg):
    name, xs, ws, bias, kw, dtype, _ = cfg
    nd = len(xs) - 2
    x = sg.tensor(f"x_{name}", dtype, (None,) * len(xs))
    # 'same' pads in the op when the kernel's size is static, else x with zeros (the graph)
    w = sg.tensor(f"w_{name}", dtype, ws if name == "same-even-kernel" else (None,) * len(ws))
    b = sg.tensor(f"b_{name}", dtype, (None,)) if bias else None
    r = sg.tensor(f"r_{name}", dtype, (None,) * len(xs))
    fn = sg.nn.conv2d if nd == 2 else sg.nn.conv1d
    out = fn(x, w, b, **kw)
    wrt = [x, w] + ([b] if bias else [])
    grads = sg.grad((out * r).sum(), wrt)
    return [x, w] + ([b] if bias else []) + [r], [out, *grads]


def _torch_reference(torch, cfg, vals):
    name, xs, ws, bias, kw, dtype, _ = cfg
    fn = torch.nn.functional.conv2d if len(xs) == 4 else torch.nn.functional.conv1d
    ts = [torch.tensor(np.ascontiguousarray(v), requires_grad=True) for v in vals[:-1]]
    out = fn(*ts[:2], ts[2] if bias else None, **kw)
    (out * torch.tensor(vals[-1])).sum().backward()
    return [out.detach().numpy()] + [t.grad.numpy() for t in ts]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("mode", ["py", "c"])
def test_values_and_gradients_against_pytorch(mode):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    ins, outs, vals, wants, labels = [], [], [], [], []
    for cfg in CONFIGS:
        i, o = _build(cfg)
        name, xs, ws, bias, kw, dtype, layout = cfg
        v = [_value(xs, dtype, layout, rng), _value(ws, dtype, layout, rng)]
        v += [rng.standard_normal(ws[0]).astype(dtype)] if bias else []
        with torch.no_grad():
            fn = torch.nn.functional.conv2d if len(xs) == 4 else torch.nn.functional.conv1d
            oshape = fn(torch.tensor(np.ascontiguousarray(v[0])),
                        torch.tensor(np.ascontiguousarray(v[1])), **kw).shape
        v.append(rng.standard_normal(tuple(oshape)).astype(dtype))
        ins += i
        outs += o
        vals += v
        wants += _torch_reference(torch, cfg, v)
        labels += [f"{name}: {what}" for what in ["out", "d/dx", "d/dw", "d/db"][:len(o)]]
    got = sg.function(ins, outs, mode=mode)(*vals)
    for label, g, w in zip(labels, got, wants):
        assert g.dtype == w.dtype and g.shape == w.shape, label
        tol = 2e-4 if g.dtype == np.float32 else 1e-10
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * np.abs(w).max(), err_msg=label)


def test_second_order_against_pytorch():
    """Double backward: the gradient of a function of conv's input gradient, to x and w."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    kw = dict(stride=2, padding=(1, 0), dilation=(1, 2), groups=2)
    X, W = rng.standard_normal((2, 4, 7, 8)), rng.standard_normal((4, 2, 3, 2))
    x, w = sg.tensor4("x"), sg.tensor4("w")
    out = sg.nn.conv2d(x, w, **kw)
    gx, gw = sg.grad((sg.tanh(out)).sum(), [x, w])
    cost2 = (gx * gx).sum() + (gw * gw * gw).sum()
    outs = sg.grad(cost2, [x, w])
    xt, wt = (torch.tensor(v, requires_grad=True) for v in (X, W))
    ot = torch.nn.functional.conv2d(xt, wt, **kw)
    gxt, gwt = torch.autograd.grad(torch.tanh(ot).sum(), [xt, wt], create_graph=True)
    want = torch.autograd.grad((gxt * gxt).sum() + (gwt ** 3).sum(), [xt, wt])
    for mode in ["py", "c"]:
        got = sg.function([x, w], outs, mode=mode)(X, W)
        for g, t in zip(got, want):
            np.testing.assert_allclose(g, t.numpy(), rtol=1e-10, atol=1e-10)


def test_verify_grad_float64_first_and_second_order():
    rng = np.random.default_rng(2)
    X, W = rng.standard_normal((2, 4, 5, 6)), rng.standard_normal((6, 2, 2, 3))
    kw = dict(stride=(1, 2), padding=(2, 1), dilation=(2, 1), groups=2)
    sg.verify_grad(lambda x, w: sg.nn.conv2d(x, w, **kw), [X, W], rng=rng)
    # the input gradient (a transposed convolution) and the weight gradient, as functions
    # of the weight and of the input: their own gradients are checked too
    def input_grad(x, w):
        return sg.grad(sg.tanh(sg.nn.conv2d(x, w, **kw)).sum(), x)
    def weight_grad(x, w):
        return sg.grad(sg.tanh(sg.nn.conv2d(x, w, **kw)).sum(), w)
    sg.verify_grad(input_grad, [X, W], rng=rng, n_tests=1)
    sg.verify_grad(weight_grad, [X, W], rng=rng, n_tests=1)


def test_debug_mode_and_sizes_that_change_between_calls():
    """One compiled function takes any batch and spatial size; "debug" runs both modes."""
    x, w = sg.tensor4("x", "float32"), sg.tensor4("w", "float32")
    out = sg.nn.conv2d(x, w, stride=2, padding=1)
    gw = sg.grad((out * out).sum(), w)
    f = sg.function([x, w], [out, gw], mode="debug")
    rng = np.random.default_rng(3)
    W = rng.standard_normal((3, 2, 3, 3)).astype("float32")
    for shape in [(1, 2, 5, 5), (4, 2, 9, 6), (2, 2, 1, 1), (0, 2, 4, 4)]:
        o, g = f(rng.standard_normal(shape).astype("float32"), W)
        oh, ow = (shape[2] + 2 - 3) // 2 + 1, (shape[3] + 2 - 3) // 2 + 1
        assert o.shape == (shape[0], 3, oh, ow) and g.shape == W.shape
    assert shape[0] == 0 and not g.any()


def test_gradient_graph_reads_as_convolution_ops():
    x, w = sg.tensor4("x"), sg.tensor4("w")
    gx, gw = sg.grad(sg.nn.conv2d(x, w, stride=2).sum(), [x, w])
    text = sg.debugprint([gx, gw])
    assert "grad of conv2d wrt input{stride=2x2}" in text
    assert "grad of conv2d wrt weight{stride=2x2}" in text
    f = sg.function([x, w], [gx, gw])
    assert "sg_conv2d_grad_input_f64" in f.source and "sg_conv2d_grad_weight_f64" in f.source
    # conv1d, a conv2d over a height of 1, prints as conv1d with its own parameters
    x1, w1 = sg.tensor3("x1"), sg.tensor3("w1")
    out = sg.nn.conv1d(x1, w1, stride=2, padding=1)
    text = sg.debugprint([out] + sg.grad(out.sum(), [x1, w1]))
    assert "conv1d{stride=2, padding=1,1}" in text and "conv2d" not in text
    assert "grad of conv1d wrt input{stride=2, padding=1,1}" in text
    assert "grad of conv1d wrt weight{stride=2, padding=1,1}" in text


TRANSPOSED = [
    ((2, 4, 3, 5), (4, 3, 3, 2), True, dict(stride=2, padding=1, output_padding=1)),
    ((1, 4, 4, 3), (4, 1, 2, 3), False, dict(stride=(1, 2), padding=(0, 1), groups=2,
                                             dilation=(2, 1), output_padding=(0, 1))),
    # output_padding below the dilation but not the stride: rows no window reaches
    ((1, 2, 3, 4), (2, 3, 3, 2), True, dict(stride=(1, 2), dilation=(3, 2),
                                            output_padding=(2, 1))),
]


def test_conv_transpose2d_against_pytorch():
    """Values, and gradients to input, weight and bias, in modes "py" and "c"."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    ins, outs, vals, wants = [], [], [], []
    for k, (xs, ws, bias, kw) in enumerate(TRANSPOSED):
        v = [rng.standard_normal(xs), rng.standard_normal(ws)]
        v += [rng.standard_normal(ws[1] * kw.get("groups", 1))] if bias else []
        ts = [torch.tensor(a, requires_grad=True) for a in v]
        ot = torch.nn.functional.conv_transpose2d(*ts[:2], ts[2] if bias else None, **kw)
        r = rng.standard_normal(tuple(ot.shape))
        (ot * torch.tensor(r)).sum().backward()
        wants += [ot.detach().numpy()] + [t.grad.numpy() for t in ts]
        x, w = sg.tensor4(f"x{k}"), sg.tensor4(f"w{k}")
        b = sg.vector(f"b{k}") if bias else None
        out = sg.nn.conv_transpose2d(x, w, b, **kw)
        wrt = [x, w] + ([b] if bias else [])
        outs += [out] + sg.grad((out * r).sum(), wrt)
        ins += wrt
        vals += v
    assert "conv_transpose2d{stride=2x2, padding=1,1,1,1}" in sg.debugprint(outs[0])
    for mode in ["py", "c"]:
        got = sg.function(ins, outs, mode=mode)(*vals)
        for g, w in zip(got, wants):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10)


def test_conv_transpose2d_errors():
    x, w = sg.tensor("x", shape=(None, 3, 4, 4)), sg.tensor("w", shape=(4, 2, 3, 3))
    with pytest.raises(sg.ShapeError, match=r"has 3 channels but the weight of shape "
                                            r"\(4, 2, 3, 3\) expects 4 \(at .*test_conv"):
        sg.nn.conv_transpose2d(x, w)
    with pytest.raises(ValueError, match=r"output_padding \(2, 2\) must be smaller than the "
                                         r"stride \(2, 2\) or the dilation \(1, 1\)"):
        sg.nn.conv_transpose2d(sg.tensor4("x"), w, stride=2, output_padding=2)
    # PyTorch's "Output size is too small": (H - 1) * stride - 2 * padding + ... below 1
    # (a static shape with a negative length was refused in words about static shapes)
    with pytest.raises(sg.ShapeError, match=r"conv_transpose2d: the output's width would be 0: "
                                            r"\(W - 1\) .* = \(4 - 1\) \* 1 - 2 \* 3 \+ 1 \* \(3 - 1\) "
                                            r"\+ 0 \+ 1 must be at least 1; use less padding.* "
                                            r"\(at .*test_conv\.py"):
        sg.nn.conv_transpose2d(sg.tensor("x", shape=(None, 4, 9, 4)), w, padding=(0, 3))
    with pytest.raises(sg.ShapeError, match=r"the weight's 3 input channels \(its first axis\) "
                                            r"are not divisible by groups=2 \(at .*test_conv"):
        sg.nn.conv_transpose2d(sg.tensor("x", shape=(1, 3, 4, 4)),
                               sg.tensor("w", shape=(3, 2, 3, 3)), groups=2)


@pytest.mark.parametrize("mode", ["py", "c"])
def test_conv_transpose2d_call_time_errors_in_its_own_terms(mode):
    # An output height or width below 1 came back as an empty or clipped array ("py") or
    # as a "too large" shape ("c"); channels and groups were reported in the terms of the
    # convolution it transposes ("the output gradient has shape ...").
    x, w = sg.tensor4("x"), sg.tensor4("w")
    out = sg.nn.conv_transpose2d(x, w, stride=2, padding=2, dilation=2, groups=2)  # mark: ct
    f = sg.function([x, w], out, mode=mode)
    where = (f"conv_transpose2d{{stride=2x2, padding=2,2,2,2, dilation=2x2, groups=2}} at "
             f"{__file__}:{_line_of('mark: ct')}: ")
    for xs, ws, text in [
            ((1, 4, 6, 1), (4, 1, 3, 2), "the output would have height 11 and width -1: (H - 1) "
                                         "* stride - 2 * padding + dilation * (kernel - 1) + "
                                         "output_padding + 1 must be at least 1 on each axis"),
            ((1, 4, 1, 3), (4, 1, 2, 2), "the output would have height -1 and width 3"),
            ((1, 3, 4, 4), (4, 1, 3, 3), "the input has 3 channels but the weight, of shape "
                                         "(C_in, C_out // groups, kh, kw), expects C_in = 4"),
            ((1, 3, 4, 4), (3, 1, 3, 3), "the weight's 3 input channels are not divisible by "
                                         "groups=2")]:
        with pytest.raises(sg.ShapeError) as e:
            f(np.ones(xs), np.ones(ws))
        assert str(e.value) == where + text or str(e.value).startswith(where + text), str(e.value)
    assert f(np.ones((1, 4, 1, 3)), np.ones((4, 1, 3, 2))).shape == (1, 2, 1, 3)


# --------------------------------------------------------------------------- errors

def test_build_time_errors_name_the_users_line():
    x = sg.tensor("x", shape=(None, 3, 5, 5))
    w = sg.tensor("w", shape=(4, 2, 3, 3))
    cases = [
        (lambda: sg.nn.conv2d(x, w), sg.ShapeError,  # mark: channels
         "input has 3 channels but the weight of shape (4, 2, 3, 3) with groups=1 expects 2",
         "mark: channels"),
        (lambda: sg.nn.conv2d(x, sg.tensor("w", shape=(4, 3, 6, 3))), sg.ShapeError,  # mark: big
         "kernel's height 6 (dilated: 6) is larger than the padded input's height 5", "mark: big"),
        (lambda: sg.nn.conv2d(x, sg.tensor("w", shape=(4, 1, 3, 3)), groups=3),  # mark: groups
         sg.ShapeError,
         "4 output channels are not divisible by groups=3", "mark: groups"),
        (lambda: sg.nn.conv2d(x, w, groups=0), ValueError, "groups must be >= 1", None),
        (lambda: sg.nn.conv2d(x, w, stride=(1, 0)), ValueError, "stride must be >= 1", None),
        (lambda: sg.nn.conv2d(x, w, padding=-1), ValueError, "padding must be >= 0", None),
        (lambda: sg.nn.conv2d(x, w, padding="full"), ValueError, "'valid' or 'same'", None),
        (lambda: sg.nn.conv2d(x, w, padding="same", stride=2), ValueError, "needs stride 1",
         None),
        (lambda: sg.nn.conv2d(x, w, stride=1.5), TypeError, "stride must be an int", None),
        (lambda: sg.nn.conv2d(sg.matrix(), w), sg.ShapeError, "input must be 4-d", None),
        (lambda: sg.nn.conv2d(x, sg.tensor4("w", "float32")), TypeError,
         "one dtype, got float64[?, 3, 5, 5] and float32[?, ?, ?, ?]; cast one of them", None),
        (lambda: sg.nn.conv2d(x, sg.tensor("w", shape=(4, 3, 3, 3)), sg.tensor("b", shape=(5,))),
         sg.ShapeError,
         "one entry per output channel (4)", None),
        (lambda: sg.nn.conv1d(x, w), sg.ShapeError, "conv1d: the input must be 3-d", None),
        # a bias of another dtype was promoted with the output: a float64 bias made a
        # float32 network float64 from there on (PyTorch refuses it, as batch_norm does)
        (lambda: sg.nn.conv2d(x.astype("float32"), w.astype("float32"), sg.vector("b")),
         TypeError, "conv2d: the bias is float64[?] but the input is float32[?, 3, 5, 5]; "
                    "cast one of them", None),
        (lambda: sg.nn.conv1d(sg.tensor3("x", "float32"), sg.tensor3("w", "float32"),
                              np.zeros(4)),
         TypeError, "conv1d: the bias is float64[4] but the input is float32", None),
        (lambda: sg.nn.conv_transpose2d(x, sg.tensor("w", shape=(3, 2, 3, 3)),
                                        sg.vector("b", "float32")),
         TypeError, "conv_transpose2d: the bias is float32[?] but the input is float64", None),
    ]
    for make, kind, text, marker in cases:
        with pytest.raises(kind) as e:
            make()
        assert text in str(e.value), str(e.value)
        assert f"{__file__}:" in str(e.value), str(e.value)
        if marker:
            assert f"test_conv.py:{_line_of(marker)}" in str(e.value)


@pytest.mark.parametrize("mode", ["py", "c"])
def test_call_time_errors_name_the_op_and_line(mode):
    x, w = sg.tensor4("x"), sg.tensor4("w")
    out = sg.nn.conv2d(x, w, padding=1)  # mark: runtime
    gx, gw = sg.grad(out.sum(), [x, w])
    f = sg.function([x, w], [out, gx, gw], mode=mode)
    where = f"conv2d{{padding=1,1,1,1}} at {__file__}:{_line_of('mark: runtime')}: "
    with pytest.raises(sg.ShapeError) as e:
        f(np.ones((1, 3, 4, 4)), np.ones((2, 2, 3, 3)))
    assert str(e.value).startswith(where), str(e.value)
    assert ("has 3 channels but the weight of shape (2, 2, 3, 3) with groups=1 expects 2"
            in str(e.value))
    with pytest.raises(sg.ShapeError) as e:
        f(np.ones((1, 2, 2, 4)), np.ones((2, 2, 5, 3)))
    assert str(e.value).startswith(where), str(e.value)
    assert ("kernel's height 5 (dilated: 5) is larger than the padded input's height 4"
            in str(e.value))
    assert [a.shape for a in f(np.ones((1, 2, 2, 4)), np.ones((2, 2, 4, 3)))] == [
        (1, 2, 1, 4), (1, 2, 2, 4), (2, 2, 4, 3)]


@pytest.mark.parametrize("mode", ["py", "c"])
def test_conv1d_errors_speak_of_its_own_shapes(mode):
    # conv1d runs as a conv2d over a height of 1: its errors printed the 4-d shapes
    # ((1, 3, 1, 10) for the user's (1, 3, 10)) and called the length a width
    x, w = sg.tensor3("x"), sg.tensor3("w")
    out = sg.nn.conv1d(x, w, padding=1)  # mark: conv1d
    f = sg.function([x, w], [out, sg.grad(out.sum(), x)], mode=mode)
    where = f"conv1d{{padding=1,1}} at {__file__}:{_line_of('mark: conv1d')}: "
    for xs, ws, text in [
            ((1, 3, 10), (4, 2, 3), "has 3 channels but the weight of shape (4, 2, 3) with "
                                    "groups=1 expects 2"),
            ((1, 2, 2), (4, 2, 7), "the kernel's length 7 (dilated: 7) is larger than the "
                                   "padded input's length 4"),
            ((1, 2, 2), (4, 2, 0), "the kernel of shape (4, 2, 0) is empty")]:
        with pytest.raises(sg.ShapeError) as e:
            f(np.ones(xs), np.ones(ws))
        assert str(e.value).startswith(where) and text in str(e.value), str(e.value)
        assert ", 1, " not in str(e.value), str(e.value)
    with pytest.raises(sg.ShapeError, match=r"conv1d: the input has 3 channels but the weight "
                                            r"of shape \(2, 2, 3\) with groups=1 expects 2"):
        sg.nn.conv1d(sg.tensor("x", shape=(1, 3, 4)), sg.tensor("w", shape=(2, 2, 3)))
