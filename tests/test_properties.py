"""Hypothesis: broadcasting, dtype promotion and random elementwise graphs against NumPy."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import symgrad as sg

DTYPES = ["float32", "float64", "int32", "int64", "bool"]
ARITH = [("add", lambda a, b: a + b, np.add), ("sub", lambda a, b: a - b, np.subtract),
         ("mul", lambda a, b: a * b, np.multiply), ("maximum", sg.maximum, np.maximum),
         ("lt", lambda a, b: a < b, np.less), ("truediv", lambda a, b: a / b, np.true_divide)]


def _value(draw, dtype, shape):
    if dtype == "bool":
        return draw(hnp.arrays(np.bool_, shape))
    if dtype.startswith("int"):
        return draw(hnp.arrays(dtype, shape, elements=st.integers(-50, 50)))
    return draw(hnp.arrays(dtype, shape, elements=st.floats(-10, 10, width=32)))


@st.composite
def binary_case(draw):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4))
    d1, d2 = draw(st.sampled_from(DTYPES)), draw(st.sampled_from(DTYPES))
    op = draw(st.sampled_from(ARITH))
    a, b = _value(draw, d1, shapes.input_shapes[0]), _value(draw, d2, shapes.input_shapes[1])
    static = draw(st.booleans())
    return op, a, b, static


@settings(max_examples=150, deadline=None)
@given(binary_case())
def test_binary_ops_match_numpy_types_shapes_and_values(case):
    _check_binary(case, "py")


@settings(max_examples=60, deadline=None)
@given(binary_case())
def test_binary_ops_compiled_match_numpy(case):
    _check_binary(case, "c")


def _check_binary(case, mode):
    (name, fn, ref), a, b, static = case
    with np.errstate(all="ignore"):
        try:
            want = np.asarray(ref(a, b))
        except TypeError:            # NumPy refuses it (e.g. bool - bool): so must we
            want = None
    x = sg.tensor("a", a.dtype.name, a.shape if static else (None,) * a.ndim)
    y = sg.tensor("b", b.dtype.name, b.shape if static else (None,) * b.ndim)
    if want is None or want.dtype.name not in DTYPES:
        try:
            fn(x, y)
        except TypeError:
            return
        raise AssertionError(f"{name}({a.dtype}, {b.dtype}) should be refused")
    out = fn(x, y)
    assert out.dtype == want.dtype.name
    assert out.type.accepts_shape(want.shape)
    got = sg.function([x, y], out, mode=mode)(a, b)
    np.testing.assert_array_equal(got, want)


UNARY = [(sg.tanh, np.tanh), (sg.exp, np.exp), (sg.sin, np.sin), (sg.sigmoid, None),
         (sg.softplus, None), (abs, np.abs), (sg.square, np.square)]


@st.composite
def chain_case(draw):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3,
                                                    min_side=1))
    steps = draw(st.lists(st.tuples(st.integers(0, len(UNARY) - 1), st.integers(0, 2)),
                          min_size=1, max_size=5))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    a = rng.uniform(-1, 1, shapes.input_shapes[0])
    b = rng.uniform(-1, 1, shapes.input_shapes[1])
    return steps, a, b


_NUMPY_ONLY = {sg.sigmoid: lambda v: 0.5 * (1 + np.tanh(0.5 * v)),
               sg.softplus: lambda v: np.logaddexp(0, v)}   # both free of overflow


def _build(steps, x, y, lib, sizes=None):
    """The chain in symgrad (lib is sg) or NumPy; `sizes` collects max |z| per step."""
    z = x
    for u, combine in steps:
        fn = UNARY[u][0] if lib is sg else (UNARY[u][1] or _NUMPY_ONLY[UNARY[u][0]])
        z = fn(z)
        z = z + y if combine == 0 else z * y if combine == 1 else z - 0.5 * y
        if sizes is not None:
            sizes.append(float(np.max(np.abs(z))))
    return z


def _random_chains(examples):
    @settings(max_examples=examples, deadline=None)
    @given(chain_case())
    def test(case):
        _check_chain(case)
    return test


# Each example compiles a kernel: a dozen in the default run, ten times as many in the
# slow one (.ci/run's second command).
test_random_chains_values_and_gradients = _random_chains(12)
test_random_chains_values_and_gradients_long = pytest.mark.slow(_random_chains(120))


def _check_chain(case):
    steps, a, b = case
    x, y = sg.tensor("x", shape=(None,) * a.ndim), sg.tensor("y", shape=(None,) * b.ndim)
    out = _build(steps, x, y, sg)
    value = sg.function([x, y], out, mode="py")(a, b)
    sizes = []
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(value, _build(steps, a, b, np, sizes), rtol=1e-12, atol=1e-12)
    # Chains such as exp(exp(exp(x))) reach 1e14 and beyond, and sin(exp(exp(x)))
    # stays small while its derivatives do not: a central difference of step 1e-7
    # is then dominated by the third derivative and by rounding. Such chains have
    # their gradient checked against the reference (below), not finite differences.
    if max(sizes) < 30:
        sg.verify_grad(lambda p, q: _build(steps, p, q, sg), [a, b], n_tests=1, mode="py")
    # compiled against the reference, values and gradients
    grads = sg.grad(out.sum(), [x, y])
    got = sg.function([x, y], [out] + grads, mode="c")(a, b)
    want = sg.function([x, y], [out] + grads, mode="py")(a, b)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
