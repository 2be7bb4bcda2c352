"""Fused loops whose innermost axis is a couple of elements long (issue #12, item 10).

Pooling by reshape, ``x.reshape((n, c, h//2, 2, w//2, 2))``, leaves the loops of a max's
gradient written in the input's order with runs of 2 elements between broadcasts: every
row then cost a driver step, a call and the loop's set-up for two elements, and the
vectorised loops' per-lane epilogues (or-ing a ``bad`` flag per lane, adding a partial sum
per lane) after each. Now the elementwise driver runs such rows along the axis before
(strided, the result too), an accumulation's row of one or two elements adds in a plain
loop, the per-lane flags exist only in loops that can fail, and copies merge axes. Values
are unchanged: checked here against NumPy, bit for bit where NumPy's order is the same.
"""

import ctypes

import numpy as np
import pytest

import symgrad as sg
from symgrad import compiler

# A row function recording its calls, and sg_ew_loop driven with it over (outer, 16, inner)
# (x contiguous, y broadcast along the last axis): o = 10 x + y.
_PROBE = r"""
#include "sg_kernel.h"
#include "sg_drivers.h"

static int64_t calls, elements, out_stride;

static int row(int64_t n, void *const *p, const int64_t *s, const void *aux)
{
    (void)aux;
    double *o = (double *)p[0];
    const double *a = (const double *)p[1], *b = (const double *)p[2];
    calls++;
    elements += n;
    out_stride = s[0];
    for (int64_t j = 0; j < n; j++)
        o[j * s[0]] = 10 * a[j * s[1]] + b[j * s[2]];
    return 0;
}

int probe(double *out, double *x, double *y, int64_t outer, int64_t inner, int64_t *stats)
{
    sg_arr X = {x, {outer, 16, inner}, {16 * inner, inner, 1}};
    sg_arr Y = {y, {outer, 16, 1}, {16, 1, 1}};
    int64_t shape[3] = {outer, 16, inner};
    int bad = 0;
    calls = elements = out_stride = 0;
    sg_ew_loop(NULL, 1, 3, shape, out, sizeof(double), 2, (const sg_arr *const[]){&X, &Y},
               (const int[]){3, 3}, (const size_t[]){8, 8}, row, NULL, &bad);
    stats[0] = calls;
    stats[1] = elements;
    stats[2] = out_stride;
    return bad;
}
"""


@pytest.fixture(scope="module")
def probe():
    lib = ctypes.CDLL(compiler.compile_library(_PROBE, "short_rows_probe"))
    lib.probe.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                          ctypes.c_int64, ctypes.c_void_p]
    return lib.probe


@pytest.mark.parametrize("outer,inner,calls,stride", [
    (8, 2, 2, 2), (8, 4, 4, 4), (8, 5, 128, 1), (8, 1, 1, 1),
    (256, 2, 4096, 1)])  # (4096, 2): more than 4096 elements, rows of 2 kept (cache)
def test_elementwise_rows_run_along_the_axis_before_a_short_one(probe, outer, inner, calls,
                                                                stride):
    r = np.random.default_rng(inner)
    x = r.standard_normal((outer, 16, inner))
    y = r.standard_normal((outer, 16, 1))
    out = np.full((outer, 16, inner), np.nan)
    stats = np.zeros(3, np.int64)
    assert probe(out.ctypes.data, x.ctypes.data, y.ctypes.data, outer, inner,
                 stats.ctypes.data) == 0
    np.testing.assert_array_equal(out, 10 * x + y)
    # (outer, 16) merge; a last axis of 2 or 4 is short: rows of 16 outer at stride `inner`
    # (of 5, it stays: rows of 5; of 1, the axis is dropped: one row)
    assert stats.tolist() == [calls, out.size, stride]


def _pool_rule_in_input_order(x, shape):
    """The max's gradient as written before issue #12 (bench_vectorise's input order)."""
    n, c, h, w = shape
    x6 = x.reshape((n, c, h // 2, 2, w // 2, 2))
    y = x6.max(axis=(3, 5), keepdims=True)
    hit = sg.eq(x6, y)
    count = sg.sum(sg.where(hit, 1.0, 0.0), axis=(3, 5), keepdims=True)
    return sg.where(hit, sg.ones_like(y) / count, 0.0).reshape(shape)


def _pool_grad_numpy(v, shape):
    n, c, h, w = shape
    x6 = v.reshape(n, c, h // 2, 2, w // 2, 2)
    hit = x6 == x6.max(axis=(3, 5), keepdims=True)
    count = hit.sum(axis=(3, 5), keepdims=True).astype(v.dtype)
    return np.where(hit, 1 / count, v.dtype.type(0)).reshape(v.shape)


@pytest.mark.parametrize("threads", [1, 2])
def test_pooling_gradients_in_both_orders_on_threads(threads):
    """Large enough for the loops to go to the thread pool when it has 2 threads."""
    shape = (8, 16, 64, 64)
    x = sg.tensor("x", "float64", shape)
    by_rule = sg.grad(x.reshape((8, 16, 32, 2, 32, 2)).max(axis=(3, 5)).sum(), x)
    f = sg.function([x], [by_rule, _pool_rule_in_input_order(x, shape)])
    f._kernel.kernel.set_num_threads(threads)
    v = np.round(np.random.default_rng(3).standard_normal(shape) * 2)  # many ties
    v[0, 0, :2, :2] = np.nan
    want = _pool_grad_numpy(v, shape)
    want[0, 0, :2, :2] = 0  # a NaN maximum: no element gets a share
    for got in f(v):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("length", [1, 2, 3])
def test_sums_of_short_rows_keep_their_values(dtype, length):
    """Rows of one or two elements take the plain loop: the same sums, signed zeros, NaN and
    infinities included (NumPy adds two terms the same way)."""
    x = sg.tensor("x", dtype, (None, 4, length))
    f = sg.function([x], [x.sum(axis=2), (x * 2.0).sum(axis=(0, 2)), x.mean(axis=-1)])
    r = np.random.default_rng(length)
    v = (r.standard_normal((50, 4, length)) * 10.0 ** r.integers(-8, 9, (50, 4, length)))
    v = v.astype(dtype)
    v[0, 0] = -0.0
    v[1, 1, 0] = np.inf
    v[2, 2, -1] = np.nan
    v[3, 3] = [np.inf, -np.inf, 1.0][:length]
    s, s2, m = f(v)
    with np.errstate(invalid="ignore"):
        want = v.astype(np.float64).sum(axis=2).astype(dtype)
        want2 = (2.0 * v.astype(np.float64)).sum(axis=(0, 2))
        want_mean = v.astype(np.float64).mean(axis=-1).astype(dtype)
    if length <= 2:
        np.testing.assert_array_equal(s, want)
        np.testing.assert_array_equal(np.signbit(s), np.signbit(want))
    else:
        np.testing.assert_allclose(s, want, rtol=1e-6)
    np.testing.assert_allclose(s2, want2, rtol=1e-6)
    np.testing.assert_allclose(m, want_mean, rtol=1e-6)


def test_only_loops_that_can_fail_keep_per_lane_flags():
    """``reduction(|:bad)`` gives a loop a flag per vector lane, or-ed after every row: only
    a loop with a member that can flag a value error (an integer power) has it."""
    x = sg.tensor("x", "float32", (4, 3, 8, 8))
    f = sg.function([x], sg.grad(x.reshape((4, 3, 4, 2, 4, 2)).max(axis=(3, 5)).sum(), x))
    assert "#pragma omp simd" in f.source
    assert "reduction(|:bad)" not in f.source
    a, b = sg.matrix("a", "int64"), sg.matrix("b", "int64")
    g = sg.function([a, b], a ** b)
    assert "reduction(|:bad)" in g.source
    with pytest.raises(ValueError, match="negative integer powers"):
        g(np.ones((2, 2), np.int64), -np.ones((2, 2), np.int64))


@pytest.mark.parametrize("dtype", ["float64", "float32", "int32", "bool"])
def test_copies_of_any_layout(dtype):
    """Outputs handed over as copies (sg_copy) and reshapes of views (sg_copy_nd): axes
    merged, rows along a longer axis where the last is short, negative steps."""
    x = sg.tensor("x", dtype, (3, 4, 5, 2))
    outs = [x.transpose((3, 1, 0, 2)), x[:, ::-1, :, ::-1], x.transpose((0, 2, 1, 3)).reshape((3, -1)),
            x[::2, 1:, ::-2].transpose((2, 0, 3, 1)).reshape((-1,)), x.T]
    f = sg.function([x], outs)
    v = (np.random.default_rng(5).standard_normal((3, 4, 5, 2)) * 5).astype(dtype)
    want = [v.transpose((3, 1, 0, 2)), v[:, ::-1, :, ::-1], v.transpose((0, 2, 1, 3)).reshape((3, -1)),
            v[::2, 1:, ::-2].transpose((2, 0, 3, 1)).reshape((-1,)), v.T]
    for got, w in zip(f(v), want):
        assert got.flags.c_contiguous
        np.testing.assert_array_equal(got, w)
