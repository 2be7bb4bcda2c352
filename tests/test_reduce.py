"""Reductions: what the registry table cannot express (errors, static types, ties, zeros, -inf)."""

import numpy as np
import pytest

import symgrad as sg

HERE = __file__.rsplit("/", 1)[-1]


def run(outputs, inputs, *values):
    return sg.function(inputs, outputs, mode="py")(*values)


# --------------------------------------------------------------------------- argument errors

@pytest.mark.parametrize("fn", [sg.sum, sg.mean, sg.prod, sg.max, sg.min, sg.logsumexp, sg.var])
def test_axis_out_of_range_names_op_axis_and_line(fn):
    x = sg.matrix("x")
    with pytest.raises(sg.ShapeError) as e:
        fn(x, axis=2)
    msg = str(e.value)
    assert fn.__name__ in msg and "axis 2" in msg and "2-d" in msg and HERE in msg


def test_negative_axis_out_of_range():
    with pytest.raises(sg.ShapeError, match=r"axis -3 is out of range for a 2-d input"):
        sg.sum(sg.matrix(), axis=-3)


def test_out_of_range_inside_a_tuple_shows_the_whole_argument():
    with pytest.raises(sg.ShapeError, match=r"axis=\(0, 5\)"):
        sg.mean(sg.tensor3(), axis=(0, 5))


@pytest.mark.parametrize("axis", [(0, 0), (1, -2), [0, 2, 2]])
def test_repeated_axis(axis):
    with pytest.raises(sg.ShapeError, match="repeats an axis") as e:
        sg.sum(sg.tensor3("x"), axis=axis)
    assert HERE in str(e.value)


@pytest.mark.parametrize("axis", [1.0, "0", True, (0, None)])
def test_axis_of_wrong_type(axis):
    with pytest.raises(TypeError, match="axis must be an int"):
        sg.max(sg.matrix(), axis=axis)


def test_argmax_takes_one_axis():
    with pytest.raises(TypeError, match=r"argmax: axis must be None or an int, got \(0, 1\)"):
        sg.argmax(sg.matrix(), axis=(0, 1))
    with pytest.raises(sg.ShapeError, match="argmin: axis 2 is out of range"):
        sg.argmin(sg.matrix(), axis=2)


def test_keepdims_and_ddof_are_checked():
    with pytest.raises(TypeError, match="keepdims must be True or False, got 1"):
        sg.sum(sg.vector(), keepdims=1)
    with pytest.raises(TypeError, match="ddof must be a number"):
        sg.var(sg.vector(), ddof="1")


def test_axis_on_a_scalar_is_out_of_range():
    with pytest.raises(sg.ShapeError):
        sg.sum(sg.scalar(), axis=0)


# --------------------------------------------------------------------------- static types

@pytest.mark.parametrize("axis, keepdims, expected", [
    (None, False, ()), (None, True, (1, 1, 1)), (1, False, (2, 4)), (1, True, (2, 1, 4)),
    (-1, False, (2, None)), ((0, 2), False, (None,)), ((2, 0), True, (1, None, 1)),
    ((), False, (2, None, 4)),
])
def test_static_shape(axis, keepdims, expected):
    x = sg.tensor("x", shape=(2, None, 4))
    for fn in (sg.sum, sg.mean, sg.prod, sg.max, sg.min, sg.logsumexp, sg.var, sg.std):
        assert fn(x, axis=axis, keepdims=keepdims).type.shape == expected, fn.__name__


def test_argmax_static_shape():
    x = sg.tensor("x", shape=(2, None, 4))
    assert sg.argmax(x).type.shape == ()
    assert sg.argmax(x, keepdims=True).type.shape == (1, 1, 1)
    assert sg.argmin(x, axis=-1).type.shape == (2, None)
    assert sg.argmin(x, axis=1, keepdims=True).type.shape == (2, 1, 4)


@pytest.mark.parametrize("fn, dtype", [
    (sg.sum, "int32"), (sg.sum, "bool"), (sg.prod, "int32"), (sg.mean, "int32"), (sg.mean, "bool"),
    (sg.mean, "float32"), (sg.max, "bool"), (sg.min, "int32"), (sg.sum, "float32"),
    (sg.var, "int64"), (sg.std, "float32"), (sg.logsumexp, "int32"), (sg.argmax, "float32"),
])
def test_dtype_is_numpys(fn, dtype):
    ref = np.logaddexp.reduce if fn is sg.logsumexp else getattr(np, fn.__name__)
    value = np.array([[1, 0], [1, 1]], dtype=dtype)
    x = sg.matrix("x", dtype=dtype)
    out = fn(x, axis=0)
    assert out.dtype == ref(value, axis=0).dtype.name
    assert run(out, [x], value).dtype == out.dtype


def test_equal_axes_give_equal_ops():
    x = sg.matrix()
    assert sg.sum(x, axis=-1).owner.op == sg.sum(x, axis=1).owner.op
    assert sg.max(x, axis=(1, 0)).owner.op == sg.max(x).owner.op


# --------------------------------------------------------------------------- empty axes

def test_max_of_static_empty_axis_fails_at_build_time():
    with pytest.raises(sg.ShapeError, match="max") as e:
        sg.max(sg.tensor("x", shape=(3, 0)), axis=1)
    assert HERE in str(e.value)
    assert sg.max(sg.tensor("x", shape=(0, 3)), axis=1).type.shape == (0,)  # empty output is fine


@pytest.mark.parametrize("fn", [sg.max, sg.min, sg.argmax, sg.argmin])
def test_empty_axis_at_call_time_names_op_and_line(fn):
    x = sg.matrix("x")
    out = fn(x, axis=1)
    line = f"{HERE}:"
    with pytest.raises(sg.ShapeError, match=fn.__name__) as e:
        run(out, [x], np.zeros((2, 0)))
    assert line in str(e.value)
    assert run(out, [x], np.zeros((0, 2))).shape == (0,)


def test_sum_and_logsumexp_of_nothing():
    x = sg.vector("x")
    assert run(sg.sum(x), [x], np.zeros(0)) == 0.0
    assert run(sg.prod(x), [x], np.zeros(0)) == 1.0
    assert run(sg.logsumexp(x), [x], np.zeros(0)) == -np.inf


# --------------------------------------------------------------------------- gradients by hand

def test_max_gradient_is_split_among_ties():
    x = sg.matrix("x")
    w = np.array([1.0, 2.0])
    g = sg.grad((sg.max(x, axis=1) * w).sum(), x)
    value = np.array([[3.0, 1.0, 3.0], [2.0, 2.0, 2.0], ])
    want = np.array([[0.5, 0.0, 0.5], [2 / 3, 2 / 3, 2 / 3]])
    np.testing.assert_allclose(run(g, [x], value), want)


def test_min_gradient_ties_over_all_axes_and_keepdims():
    x = sg.matrix("x")
    value = np.array([[-1.0, 4.0], [-1.0, -1.0]])
    g = sg.grad(sg.min(x, keepdims=True).sum() * 3.0, x)
    np.testing.assert_allclose(run(g, [x], value), [[1.0, 0.0], [1.0, 1.0]])


def test_max_gradient_keeps_float32():
    x = sg.vector("x", dtype="float32")
    g = sg.grad(sg.max(x), x)
    assert g.dtype == "float32"
    out = run(g, [x], np.array([2.0, 2.0, 1.0, 2.0, 2.0], dtype="float32"))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.25, 0.25, 0.0, 0.25, 0.25])



# Pooling by reshape: the gradient is computed with the reduced axes first (reduce._ties_layout),
# where the static lengths say so. Unknown lengths keep the input's order: both give the same bits.

def _pool_input(dtype):
    r = np.random.default_rng(3)
    v = r.integers(-2, 3, (2, 3, 4, 2, 5, 2)).astype(dtype)  # many ties within a window
    v[0, 1, 2, :, 3, :] = [[np.nan, 1.0], [1.0, 1.0]]       # a NaN window: no gradient
    v[1, 2, 0, :, 4, :] = -np.inf
    return v


def _pool_gradient_reference(v, fn, w, keepdims):
    ext = np.where(np.isnan(v).any(axis=(3, 5), keepdims=True), np.nan,
                   (np.max if fn is sg.max else np.min)(v, axis=(3, 5), keepdims=True))
    hit = v == ext
    with np.errstate(divide="ignore"):  # a NaN window has no ties: its shares are not used
        share = (w if keepdims else np.expand_dims(w, (3, 5))) / hit.sum(axis=(3, 5), keepdims=True)
    return np.where(hit, share, 0).astype(v.dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fn", [sg.max, sg.min])
@pytest.mark.parametrize("keepdims", [False, True])
def test_pooling_gradient_in_either_layout_splits_ties_and_skips_nan(dtype, fn, keepdims):
    v = _pool_input(dtype)
    w = np.random.default_rng(4).standard_normal(
        (2, 3, 4, 1, 5, 1) if keepdims else (2, 3, 4, 5)).astype(dtype)
    want = _pool_gradient_reference(v, fn, w, keepdims)
    got = {}
    for static in (True, False):
        x = sg.tensor("x", dtype, v.shape if static else (None,) * 6)
        g = sg.grad((fn(x, axis=(3, 5), keepdims=keepdims) * w).sum(), x)
        for mode in ("c", "py"):
            got[static, mode] = sg.function([x], g, mode=mode)(v)
            assert got[static, mode].dtype == v.dtype
            np.testing.assert_allclose(got[static, mode], want, rtol=1e-6, err_msg=f"{static} {mode}")
    for key, value in got.items():
        np.testing.assert_array_equal(value, got[False, "c"], err_msg=str(key))


def test_pooling_gradient_layout_is_chosen_on_static_lengths():
    from symgrad.ops.reduce import _ties_layout

    assert _ties_layout((32, 16, 16, 2, 16, 2), (3, 5)) == (3, 5, 0, 1, 2, 4)
    assert _ties_layout((32, 16, 16, 2, None, 2), (3, 5)) == (3, 5, 0, 1, 2, 4)
    assert _ties_layout((8, 30, 7), (0, 2)) == (0, 2, 1)
    assert _ties_layout((8, 3, 7), (0, 2)) is None                   # the kept run is shorter
    assert _ties_layout((32, 16, 16, 2, 16, None), (3, 5)) is None  # unknown trailing run
    assert _ties_layout((4, 2, 4, 64), (1, 3)) is None               # a long trailing run
    assert _ties_layout((4, 2, 1, 2), (1, 3)) is None                # a kept run of one
    assert _ties_layout((100, 10), (1,)) is None                     # a plain row reduction
    assert _ties_layout((10, 100), (0,)) is None                     # last axis kept
    assert _ties_layout((3, 4, 5), (0, 1, 2)) is None                # everything reduced
    assert _ties_layout((3, 4, 5, 6), (2, 3)) is None                # reduced axes all last


def test_pooling_gradient_has_a_second_derivative():
    """d/dw of |d max(x * w-weighted) / dx|^2: a window whose maximum is tied k ways gives each
    tied element w/k, so the sum of squares is w^2/k and its derivative 2w/k."""
    v = np.zeros((1, 1, 2, 2, 3, 2))
    v[0, 0, 0, :, 0, :] = [[1.0, 0.0], [0.0, 0.0]]  # one maximum
    v[0, 0, 1, :, 1, :] = [[5.0, 5.0], [5.0, 0.0]]  # three tied
    k = np.array([[1.0, 4.0, 4.0], [4.0, 3.0, 4.0]]).reshape(1, 1, 2, 3)  # zeros: four tied
    for static in (True, False):
        x = sg.tensor("x", "float64", v.shape if static else (None,) * 6)
        w = sg.tensor4("w")
        dx = sg.grad((sg.max(x, axis=(3, 5)) * w).sum(), x)
        dw = sg.grad((dx ** 2).sum(), w)
        wv = np.arange(1.0, 7.0).reshape(1, 1, 2, 3)
        np.testing.assert_allclose(sg.function([x, w], dw)(v, wv), 2 * wv / k)


def test_prod_gradient_with_zeros_by_hand():
    x = sg.matrix("x")
    value = np.array([[2.0, 0.0, 3.0], [0.0, 5.0, 0.0], [1.0, 2.0, 4.0]])
    g = sg.grad(sg.prod(x, axis=1).sum(), x)
    want = np.array([[0.0, 6.0, 0.0], [0.0, 0.0, 0.0], [8.0, 4.0, 2.0]])
    got = run(g, [x], value)
    np.testing.assert_array_equal(got, want)
    assert np.all(np.isfinite(got))


def test_prod_second_derivative_is_finite_at_a_zero():
    x = sg.tensor("x", shape=(3,))
    h = sg.hessian(sg.prod(x), x)
    got = run(h, [x], np.array([2.0, 0.0, 3.0]))
    np.testing.assert_allclose(got, [[0.0, 3.0, 0.0], [3.0, 0.0, 2.0], [0.0, 2.0, 0.0]])
    two = run(h, [x], np.array([0.0, 0.0, 3.0]))
    assert np.all(np.isfinite(two))
    np.testing.assert_allclose(two[2], [0.0, 0.0, 0.0])  # every product of two others has a zero


def test_mean_gradient_uses_runtime_count_and_keeps_float32():
    x = sg.tensor("x", dtype="float32", shape=(None, 4))
    g = sg.grad(sg.mean(x, axis=0).sum(), x)
    assert g.dtype == "float32" and g.type.shape == (None, 4)
    for n in (2, 5):
        out = run(g, [x], np.ones((n, 4), dtype="float32"))
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, np.full((n, 4), 1.0 / n, dtype="float32"))


def test_var_gradient_by_hand():
    x = sg.vector("x")
    value = np.array([1.0, 2.0, 6.0])
    g = run(sg.grad(sg.var(x, ddof=1), x), [x], value)
    np.testing.assert_allclose(g, 2 * (value - value.mean()) / 2)


def test_argmax_is_not_differentiable():
    x = sg.vector("x")
    with pytest.raises(sg.NonDifferentiableError, match="argmax"):
        sg.grad(sg.argmax(x).astype("float64"), x)


def test_gradient_of_int_reduction_is_refused():
    x = sg.vector("x")
    with pytest.raises(sg.NonDifferentiableError):
        sg.grad(sg.sum(x.astype("int32")).astype("float64"), x)


# --------------------------------------------------------------------------- logsumexp

def test_logsumexp_of_all_neg_inf_is_neg_inf():
    x = sg.matrix("x")
    value = np.array([[-np.inf, -np.inf], [0.0, np.log(3.0)]])
    got = run(sg.logsumexp(x, axis=1), [x], value)
    np.testing.assert_allclose(got, [-np.inf, np.log(4.0)])
    assert run(sg.logsumexp(x), [x], np.full((2, 2), -np.inf)) == -np.inf


def test_logsumexp_gradient_of_masked_entries_is_zero_not_nan():
    x = sg.matrix("x")
    value = np.array([[-np.inf, -np.inf], [-np.inf, 0.0]])
    g = run(sg.grad(sg.logsumexp(x, axis=1).sum(), x), [x], value)
    np.testing.assert_array_equal(g, [[0.0, 0.0], [0.0, 1.0]])


def test_logsumexp_of_huge_values_is_finite_and_gradient_is_softmax():
    x = sg.vector("x")
    value = np.array([1000.0, 1000.0, -1000.0])
    out = sg.logsumexp(x)
    got, g = run([out, sg.grad(out, x)], [x], value)
    np.testing.assert_allclose(got, 1000.0 + np.log(2.0))
    np.testing.assert_allclose(g, [0.5, 0.5, 0.0])
    assert run(sg.logsumexp(x), [x], np.array([np.inf, 1.0])) == np.inf


# --------------------------------------------------------------------------- methods and results

def test_methods():
    x = sg.matrix("x")
    value = np.array([[1.0, 5.0, 2.0], [4.0, 0.5, 3.0]])
    outs = [x.sum(), x.max(axis=1, keepdims=True), x.mean(axis=0), x.prod(axis=-1),
            x.min(axis=(0, 1)), x.argmax(axis=1), x.argmin()]
    got = run(outs, [x], value)
    want = [value.sum(), value.max(axis=1, keepdims=True), value.mean(axis=0), value.prod(axis=-1),
            value.min(), value.argmax(axis=1), value.argmin()]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w)
        assert g.shape == np.shape(w)
    assert x.max(axis=1, keepdims=True).type.shape == (None, 1)


def test_results_are_fresh_arrays():
    x = sg.matrix("x")
    value = np.ones((2, 3))
    for out in (sg.sum(x, axis=()), sg.max(x, axis=()), sg.mean(x, axis=())):
        got = run(out, [x], value)
        assert not np.shares_memory(got, value)


# --------------------------------------------------------------------------- vectorised extremes

@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
@pytest.mark.parametrize("layout", ["rows", "columns", "strided", "flat", "3d"])
def test_max_min_argmax_argmin_match_numpy_on_every_path(dtype, layout):
    """Contiguous rows (vectorised passes, a search in blocks of 64), a reduced leading axis
    (rows folded into all results at once), strided rows, one long row; NaNs and ties."""
    r = np.random.default_rng(7)
    shape = {"rows": (9, 300), "columns": (300, 9), "strided": (9, 600), "flat": (5000,),
             "3d": (4, 70, 3)}[layout]
    if dtype.startswith("float"):
        v = r.standard_normal(shape).astype(dtype)
        flat = v.reshape(-1)
        flat[r.integers(0, flat.size, 6)] = np.nan
        flat[r.integers(0, flat.size, 4)] = np.inf
        flat[r.integers(0, flat.size, 4)] = -np.inf
    else:
        v = r.integers(-3, 3, shape).astype(dtype)  # many ties
    if layout == "strided":
        v = v[:, ::2]
    axis = {"rows": 1, "columns": 0, "strided": 1, "flat": 0, "3d": 1}[layout]
    x = sg.tensor("x", dtype=dtype, shape=(None,) * v.ndim)
    for fn, ref in ((sg.max, np.max), (sg.min, np.min), (sg.argmax, np.argmax),
                    (sg.argmin, np.argmin)):
        f = sg.function([x], fn(x, axis=axis))
        np.testing.assert_array_equal(f(v), ref(v, axis=axis), err_msg=f"{fn.__name__}")
    for fn, ref in ((sg.max, np.max), (sg.argmax, np.argmax)):  # every axis at once
        np.testing.assert_array_equal(sg.function([x], fn(x))(v), ref(v))


def test_logsumexp_rows_match_the_reference_with_infinities():
    r = np.random.default_rng(8)
    v = r.standard_normal((6, 200))
    v[1, :] = -np.inf      # a fully masked row: -inf
    v[2, 5] = np.inf       # +inf wins
    v[3, 7] = np.nan
    x = sg.matrix("x")
    got = sg.function([x], sg.logsumexp(x, axis=1))(v)
    want = sg.function([x], sg.logsumexp(x, axis=1), mode="py")(v)
    np.testing.assert_allclose(got, want, rtol=1e-14)
    assert got[1] == -np.inf and got[2] == np.inf and np.isnan(got[3])
