"""Row functions of one variant (issue #12, item 9): a fused loop's row function computes
rows whose result and loaded operands have unit stride, and nothing else; the driver
(sg_ew_loop with SG_EW_DENSE, include/sg_drivers.c) copies a strided operand's elements and
a broadcast one's value into blocks for it, and runs loops of short rows across rows. A row
function of one variant compiles in about half the time of the unit-stride and strided
pair it replaces. Values are the same bits whatever the operands' layout."""

import ctypes

import numpy as np
import pytest

import symgrad as sg
from symgrad import compiler
from thread_counts import by_threads

# A dense row function that fails the loop (returns 1) when it is handed anything but
# unit strides, and counts its calls: o = 10 x + y.
_PROBE = r"""
#include "sg_kernel.h"
#include "sg_drivers.h"

static int64_t calls;

static int row(int64_t n, void *const *p, const int64_t *s, const void *aux)
{
    (void)aux;
    double *o = (double *)p[0];
    const double *a = (const double *)p[1], *b = (const double *)p[2];
    calls++;
    for (int64_t j = 0; j < n; j++)
        o[j] = 10 * a[j] + b[j];
    return s[0] != 1 || s[1] != 1 || s[2] != 1;
}

int probe(double *out, const sg_arr *x, const sg_arr *y, int nd, const int64_t *shape,
          int64_t *ncalls)
{
    int bad = 0;
    calls = 0;
    sg_ew_loop(NULL, 1, nd, shape, out, sizeof(double) | SG_EW_DENSE, 2,
               (const sg_arr *const[]){x, y}, (const int[]){nd, nd},
               (const size_t[]){8, 8}, row, NULL, &bad);
    *ncalls = calls;
    return bad;
}
"""


class _Arr(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("shape", ctypes.c_int64 * 16),
                ("strides", ctypes.c_int64 * 16)]


def _arr(a):
    d = _Arr()
    d.data = a.ctypes.data
    for k, (n, s) in enumerate(zip(a.shape, a.strides)):
        d.shape[k] = n
        d.strides[k] = s // a.itemsize if n > 1 else 0
    return d


@pytest.fixture(scope="module")
def probe():
    lib = ctypes.CDLL(compiler.compile_library(_PROBE, "dense_rows_probe"))
    lib.probe.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Arr), ctypes.POINTER(_Arr),
                          ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    return lib.probe


def _layouts():
    r = np.random.default_rng(0)
    big = r.standard_normal((300, 700))
    col = r.standard_normal((300, 1))
    row = r.standard_normal((1, 700))
    yield "contiguous", big, big[::-1].copy(), 1
    yield "transposed x", big.T.copy().T, np.ascontiguousarray(big[::-1]), None
    yield "x transposed", np.asfortranarray(big), big, None
    yield "column broadcast", big, np.broadcast_to(col, big.shape), None
    yield "row broadcast", big, np.broadcast_to(row, big.shape), None
    yield "every other column", r.standard_normal((300, 1400))[:, ::2], big, None
    yield "reversed", big[:, ::-1], big, None
    # rows of 2 and 3 whose second operand repeats along them: across rows, in blocks
    pairs = r.standard_normal((5000, 2))
    yield "short rows (n, 2) + (2,)", pairs, np.broadcast_to(r.standard_normal(2), pairs.shape), 40
    win = r.standard_normal((64, 50, 3))
    yield "short rows broadcast (n, m, 3)", win, np.broadcast_to(r.standard_normal((64, 50, 1)), win.shape), 38
    yield "short rows both strided", win[:, ::-1, :], np.broadcast_to(r.standard_normal((1, 50, 3)), win.shape), 38


@pytest.mark.parametrize("name,x,y,max_calls", list(_layouts()), ids=[c[0] for c in _layouts()])
def test_dense_driver_hands_rows_of_unit_strides(probe, name, x, y, max_calls):
    out = np.full(x.shape, np.nan)
    shape = np.array(x.shape, np.int64)
    calls = ctypes.c_int64()
    xd, yd = _arr(x), _arr(y)
    bad = probe(out.ctypes.data, ctypes.byref(xd), ctypes.byref(yd), x.ndim, shape.ctypes.data,
                ctypes.byref(calls))
    assert bad == 0, f"{name}: the row function was handed a stride other than 1"
    np.testing.assert_array_equal(out, 10 * x + y)
    if max_calls is not None:  # short rows: blocks across rows, not a call a row
        assert calls.value <= max_calls, (name, calls.value)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_any_layout_gives_the_bits_of_contiguous_operands(dtype):
    """Strided, transposed, broadcast and reversed operands go through the driver's blocks
    of copies: every element is computed by the same row function as for contiguous ones."""
    r = np.random.default_rng(1)
    x, y = sg.matrix("x", dtype=dtype), sg.matrix("y", dtype=dtype)
    b = sg.vector("b", dtype=dtype)
    f = sg.function([x, y, b], [sg.tanh(x * 1.7 + y) * sg.exp(-y * y) + b,
                                sg.where(x > y, sg.sigmoid(x), b / (1.0 + abs(y)))])
    X = r.standard_normal((97, 130)).astype(dtype)
    Y = r.standard_normal((97, 130)).astype(dtype)
    B = r.standard_normal(130).astype(dtype)
    want = f(X, Y, B)
    layouts = [(np.asfortranarray(X), Y), (X, np.asfortranarray(Y)),
               (np.asfortranarray(X), np.asfortranarray(Y))]
    for xs, ys in layouts:
        for got, w in zip(f(xs, ys, B), want):
            np.testing.assert_array_equal(got, w)
    Xw = np.zeros((97, 260), dtype)
    Xw[:, ::2] = X
    for got, w in zip(f(Xw[:, ::2], Y, B), want):
        np.testing.assert_array_equal(got, w)
    ref = sg.function([x, y, b], [sg.tanh(x * 1.7 + y) * sg.exp(-y * y) + b,
                                  sg.where(x > y, sg.sigmoid(x), b / (1.0 + abs(y)))], mode="py")
    for got, w in zip(want, ref(X, Y, B)):
        np.testing.assert_allclose(got, w, rtol=2e-6 if dtype == "float32" else 1e-13,
                                   atol=1e-6 if dtype == "float32" else 1e-15)


def test_a_loop_over_a_transpose_and_a_broadcast_column():
    """The transposed operand is strided along the loop's rows, the column repeats along them."""
    r = np.random.default_rng(2)
    x, c = sg.matrix("x"), sg.matrix("c")
    f = sg.function([x, c], sg.exp(x.T - c) * 2.0)
    X, C = r.standard_normal((60, 50)), r.standard_normal((50, 1))
    np.testing.assert_array_equal(f(X, C), f(np.ascontiguousarray(X), C))
    np.testing.assert_allclose(f(X, C), np.exp(X.T - C) * 2.0, rtol=1e-14)


def test_random_draws_read_their_index_with_its_stride():
    """A draw's index carrier has no memory to copy: its row function reads the element's
    index from the pointer with the stride it has, in a loop whose rows run across a
    transpose; the draw equals mode "py" bit for bit."""
    x = sg.matrix("x")
    draws = {}
    for mode in ("c", "py"):
        s = sg.random.RandomStream(7)
        f = sg.function([x], [s.normal(size=x.T.shape) + x.T,
                              sg.where(s.uniform(size=x.shape) < 0.3, x, 0.0)], mode=mode)
        draws[mode] = f(np.arange(12.0).reshape(3, 4))
    for got, want in zip(draws["c"], draws["py"]):
        np.testing.assert_array_equal(got, want)


def test_an_update_in_place_over_a_strided_read():
    """An update written over its variable's memory while a loop reads the variable through a
    transpose: the operands are copied before the block's results are written."""
    v = np.arange(16.0).reshape(4, 4)
    W = sg.shared(v.copy(), name="W")
    f = sg.function([], [], updates=[(W, W * 0.5 + W.T)])
    f()
    np.testing.assert_array_equal(W.get_value(), v * 0.5 + v.T)


def test_copied_and_across_rows_give_the_same_bits_on_any_thread_count(monkeypatch):
    """Large enough for the thread pool: a transposed operand (blocks of copies along long
    rows) and rows of 2 with a broadcast operand (blocks across rows)."""
    r = np.random.default_rng(3)
    x, p, w = sg.matrix("x"), sg.matrix("p"), sg.vector("w")
    X = r.standard_normal((700, 900))
    P, W = r.standard_normal((400000, 2)), r.standard_normal(2)
    got = by_threads(monkeypatch, [x, p, w], [sg.tanh(x.T * 3.0) + x.T, sg.exp(p * w) - w],
                     [X, P, W])
    np.testing.assert_allclose(got[0], np.tanh(X.T * 3.0) + X.T, rtol=1e-13)
    np.testing.assert_allclose(got[1], np.exp(P * W) - W, rtol=1e-13)
