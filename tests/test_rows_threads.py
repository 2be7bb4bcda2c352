"""softmax, log_softmax and cross_entropy share their rows among the runtime's threads
(sg_rows.c's ``*_on`` entries, through sg_run_units): each row is one thread's, so the
results are the same bits on 1, 2 and 3 threads, and NumPy's to rounding. A bad label is
reported as on one thread: the first one, by its row."""
import numpy as np
import pytest

import symgrad as sg

from thread_counts import THREADS, by_threads  # tests/ is on sys.path (conftest.py)

RNG = np.random.default_rng(5)


def _log_softmax(z, axis):
    z = z.astype("float64")
    m = z.max(axis=axis, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape, axis", [((1600, 100), 1), ((100, 1600), 0), ((6, 40, 300), 1),
                                         ((7,), 0)])
def test_softmax_rows_on_threads(monkeypatch, dtype, shape, axis):
    x = sg.tensor("x", dtype, (None,) * len(shape))
    outs = [sg.nn.softmax(x, axis=axis), sg.nn.log_softmax(x, axis=axis)]
    xv = (RNG.standard_normal(shape) * 4).astype(dtype)
    sm, lsm = by_threads(monkeypatch, [x], outs, [xv])
    tol = 1e-5 if dtype == "float32" else 1e-13
    ref = _log_softmax(xv, axis)
    np.testing.assert_allclose(lsm, ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(sm, np.exp(ref), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_rows_on_threads(monkeypatch, dtype):
    z, y = sg.tensor("z", dtype, (None, None)), sg.tensor("y", "int64", (None,))
    loss = sg.nn.cross_entropy(z, y)
    outs = [loss, sg.grad(loss.mean(), z)]
    zv = (RNG.standard_normal((1600, 100)) * 3).astype(dtype)
    yv = RNG.integers(0, 100, 1600)
    got, _ = by_threads(monkeypatch, [z, y], outs, [zv, yv])
    want = -_log_softmax(zv, 1)[np.arange(1600), yv]
    tol = 1e-5 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_the_first_bad_label_is_named_on_any_number_of_threads(monkeypatch):
    z, y = sg.matrix("z"), sg.tensor("y", "int64", (None,))
    zv, yv = RNG.standard_normal((2000, 50)), RNG.integers(0, 50, 2000)
    yv[1500], yv[700] = 99, -3   # two bad labels, in different threads' rows
    for n in THREADS:
        monkeypatch.setattr(sg.config, "_num_threads", n)
        f = sg.function([z, y], sg.nn.cross_entropy(z, y))
        with pytest.raises(sg.IndexError, match=r"label -3 at index \(700,\) is out of range"):
            f(zv, yv)
