"""sg.nn's activations beyond relu (leaky_relu, elu, silu, gelu) and sg.erf, against PyTorch."""

import math

import numpy as np
import pytest

import symgrad as sg

MODES = ["c", "py", "debug"]
# the kinks and tails as well as ordinary values
POINTS = np.concatenate([np.linspace(-6, 6, 49), [0.0, -0.0, 1e-8, -1e-8, -30.0, 30.0]])

ACTIVATIONS = [
    ("leaky_relu", lambda x: sg.nn.leaky_relu(x), "leaky_relu", {}),
    ("leaky_relu(0.2)", lambda x: sg.nn.leaky_relu(x, 0.2), "leaky_relu", {"negative_slope": 0.2}),
    ("elu", lambda x: sg.nn.elu(x), "elu", {}),
    ("elu(0.5)", lambda x: sg.nn.elu(x, alpha=0.5), "elu", {"alpha": 0.5}),
    ("silu", sg.nn.silu, "silu", {}),
    ("gelu", sg.nn.gelu, "gelu", {}),
    ("gelu(tanh)", lambda x: sg.nn.gelu(x, approximate="tanh"), "gelu", {"approximate": "tanh"}),
]


def _torch_values_and_grads(name, kwargs, x):
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x, requires_grad=True)
    y = getattr(torch.nn.functional, name)(xt, **kwargs)
    y.sum().backward()
    return y.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("label, fn, name, kwargs", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_the_functions_are_pytorchs(label, fn, name, kwargs, mode):
    x = sg.vector("x")
    y = fn(x)
    got, dx = sg.function([x], [y, sg.grad(y.sum(), x)], mode=mode)(POINTS)
    want, dwant = _torch_values_and_grads(name, kwargs, POINTS)
    # PyTorch's gelu computes 1 + erf and 1 + tanh, which cancel for negative x: an error of
    # about |x| 1e-16 (8 digits of gelu(-6) = -5.9e-9 lost, gelu(-30) = -1.5e-196 is -0.0);
    # the other rows agree to rounding
    atol = 1e-14 if name == "gelu" else 1e-300
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=atol)
    np.testing.assert_allclose(dx, dwant, rtol=1e-13, atol=max(atol, 1e-15))


SQRT2PI = math.sqrt(2 * math.pi)


def _exact(label, x):
    """(value, derivative, the derivative's scale) from formulas in the math module that
    cancel nowhere but where the derivative itself crosses 0 (hence its scale: the size of
    the terms it sums)."""
    sig = 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))
    if label.startswith("gelu(tanh)"):
        u = 2 * math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
        s = 1 / (1 + math.exp(-u)) if u >= 0 else math.exp(u) / (1 + math.exp(u))
        s_minus = 1 / (1 + math.exp(u)) if u <= 0 else math.exp(-u) / (1 + math.exp(-u))
        t = x * s * s_minus * 2 * math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x * x)
        return x * s, s + t, abs(s) + abs(t)
    if label.startswith("gelu"):
        phi = 0.5 * math.erfc(-x / math.sqrt(2))
        t = x * math.exp(-x * x / 2) / SQRT2PI
        return x * phi, phi + t, abs(phi) + abs(t)
    if label == "silu":
        s_minus = 1 / (1 + math.exp(x)) if x <= 0 else math.exp(-x) / (1 + math.exp(-x))
        t = x * sig * s_minus
        return x * sig, sig + t, abs(sig) + abs(t)
    raise ValueError(label)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("label, fn", [(a[0], a[1]) for a in ACTIVATIONS
                                       if a[0].startswith(("gelu", "silu"))])
def test_values_and_gradients_are_accurate_in_the_tails(label, fn, dtype):
    x = sg.vector("x", dtype=dtype)
    y = fn(x)
    v = POINTS.astype(dtype)
    got, dx = sg.function([x], [y, sg.grad(y.sum(), x)])(v)
    assert got.dtype == dx.dtype == np.dtype(dtype)
    eps = np.finfo(dtype).eps
    for xi, yi, di in zip(v, got, dx):
        want, dwant, scale = _exact(label, float(xi))
        tiny = np.finfo(dtype).tiny
        # sigmoid's gradient s * (1 - s) is PyTorch's: 1 - s loses digits where s rounds
        # near 1, an error of about |d(argument)/dx| |x| eps against the terms' size; erfc's
        # argument x / sqrt(2), rounded, moves erfc by x**2 / 2 eps
        xf = float(xi)
        inner = {"gelu(tanh)": 2 * math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * xf * xf),
                 "gelu": abs(xf) / 2}.get(label, 1.0)
        # (the function's own conditioning: the rounding of x / sqrt(2) or of sigmoid's
        # argument is an input error of eps / 2, which the value feels as much -- in symgrad's
        # result and in this reference's, hence twice)
        allowed = (8 + 2 * abs(xf) * inner) * eps
        if dtype == "float32" and label.startswith("gelu"):
            allowed = eps  # evaluated in double, rounded once to float32
        assert abs(yi - want) <= allowed * abs(want) + tiny, (label, xi, yi, want)
        assert abs(di - dwant) <= allowed * scale + tiny, (label, xi, di, dwant)


@pytest.mark.parametrize("label, fn, name, kwargs", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_float32_follows_float64(label, fn, name, kwargs):
    x32, x64 = sg.vector("x", dtype="float32"), sg.vector("x")
    v = POINTS.astype("float32")
    got = sg.function([x32], fn(x32))(v)
    want = sg.function([x64], fn(x64))(v.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=8 * 2.0 ** -23, atol=1e-37)


def test_the_kinks_have_pytorchs_subgradients():
    x = sg.vector("x")
    zero = np.array([0.0])
    for y, want in [(sg.nn.leaky_relu(x, 0.3), 0.3), (sg.nn.elu(x, alpha=2.0), 2.0),
                    (sg.relu(x), 0.0)]:
        assert sg.function([x], sg.grad(y.sum(), x))(zero)[0] == want


def test_nan_passes_through():
    x = sg.vector("x")
    fns = [sg.nn.leaky_relu, sg.nn.elu, sg.nn.silu, sg.nn.gelu]
    out = sg.function([x], [f(x) for f in fns])(np.array([np.nan]))
    assert all(np.isnan(o[0]) for o in out)


def test_second_order():
    rs = np.random.default_rng(0)
    for fn in (sg.nn.elu, sg.nn.silu, sg.nn.gelu, lambda x: sg.nn.gelu(x, approximate="tanh")):
        sg.verify_grad(lambda x: (fn(x) ** 2).sum() + (sg.grad(fn(x).sum(), x) ** 2).sum(),
                       [rs.uniform(-3, 3, 7)], rng=rs)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["erf", "erfc"])
def test_erf_and_erfc_are_libms_rounded_once_in_every_mode(mode, dtype, name):
    # the same bits as C's erf / erfc in double (CPython's math module calls them), rounded
    # to dtype
    v = np.concatenate([POINTS, [1e-300, 5e-324, 0.5, 1.0, 3.9, 6.0, 27.0, np.inf, -np.inf,
                                 np.nan]])
    v = v.astype(dtype)
    x = sg.vector("x", dtype=dtype)
    got = sg.function([x], getattr(sg, name)(x), mode=mode)(v)
    want = np.array([getattr(math, name)(float(t)) for t in v]).astype(dtype)
    np.testing.assert_array_equal(got, want)


def test_erf_and_erfc_gradients():
    rs = np.random.default_rng(1)
    sg.verify_grad(sg.erf, [rs.uniform(-3, 3, 9)], rng=rs)
    sg.verify_grad(sg.erfc, [rs.uniform(-3, 3, 9)], rng=rs)
    x = sg.vector("x")
    g, gc = sg.function([x], [sg.grad(sg.erf(x).sum(), x),
                              sg.grad(sg.erfc(x).sum(), x)])(np.array([0.0, 1.0]))
    np.testing.assert_allclose(g, 2 / math.sqrt(math.pi) * np.exp([0.0, -1.0]), rtol=1e-15)
    np.testing.assert_array_equal(gc, -g)


def test_arguments_are_checked_at_the_users_line():
    x = sg.vector("x")
    with pytest.raises(TypeError, match=r"gelu: x must be float, got int64\[\?\].*astype"
                       r".*test_activations.py"):
        sg.nn.gelu(sg.vector("i", dtype="int64"))
    with pytest.raises(ValueError, match=r"approximate must be 'none' or 'tanh', got 'erf'"):
        sg.nn.gelu(x, approximate="erf")
    with pytest.raises(TypeError, match=r"negative_slope must be a number, got '0.1'"):
        sg.nn.leaky_relu(x, "0.1")
    with pytest.raises(TypeError, match=r"alpha must be a number, got None"):
        sg.nn.elu(x, alpha=None)
