"""Ops whose work is a loop over their operands call the support library (sg_rows.h) instead
of writing the loop into the kernel: the generated C stays proportional to the graph, not to
the loops' variants (issue #12, item 9). A kernel of these ops alone has no loop over data;
their values are checked against mode "py" here and, per op, in the op's own tests."""

import re

import numpy as np
import pytest

import symgrad as sg
from symgrad.ops.join import split

# sg_main's own bookkeeping: loops over a number of outputs fixed when the kernel is written
FIXED_COUNT = re.compile(r"for \(int k = 0; k < \d+; k\+\+\)")


def _data_loops(source):
    return [line.strip() for line in source.splitlines()
            if re.search(r"\b(for|while)\s*\(", line) and not FIXED_COUNT.search(line)]


def _check(inputs, outputs, args):
    f = sg.function(inputs, outputs)
    assert _data_loops(f.source) == []
    ref = sg.function(inputs, outputs, mode="py")
    for got, want in zip(f(*args), ref(*args)):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-6 if got.dtype == np.float32 else 1e-13)
    return f


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_row_ops_write_no_loop(dtype):
    r = np.random.default_rng(0)
    x = sg.matrix("x", dtype=dtype)
    y = sg.tensor("y", dtype="int64", shape=(None,))
    labels = sg.tensor("labels", dtype="int32", shape=(None, None))
    outputs = [sg.nn.cross_entropy(sg.nn.softmax(x), y), sg.nn.log_softmax(x, axis=0),
               sg.logsumexp(x, axis=1), sg.logsumexp(x), sg.one_hot(labels, 7, dtype=dtype)]
    X = r.standard_normal((5, 7)).astype(dtype)
    args = [X, r.integers(0, 7, 5), r.integers(0, 7, (3, 4)).astype("int32")]
    f = _check([x, y, labels], outputs, args)
    # a strided input takes the strided path of the same calls
    strided = [X.T.copy().T, args[1], args[2]]
    for got, want in zip(f(*strided), f(*args)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(sg.IndexError, match=r"label 9 at index \(1, 2\) is out of range"):
        bad = args[2].copy()
        bad[1, 2] = 9
        f(X, args[1], bad)


def test_conversions_fills_and_lengths_write_no_loop():
    r = np.random.default_rng(1)
    x = sg.matrix("x", dtype="float32")
    xi = sg.matrix("xi", dtype="int32")
    outputs = [sg.concatenate([x, xi], axis=0), xi @ x.T, *split(x, [1, 2], axis=1),
               sg.arange(0.5, 10.0, 0.75, dtype="float32"), sg.arange(3, 40, 7, dtype="int64")]
    f = _check([x, xi], outputs, [r.standard_normal((2, 3)).astype("float32"),
                                  r.integers(-5, 5, (2, 3)).astype("int32")])
    with pytest.raises(sg.ShapeError, match=r"lengths differ on axis 1 \(only axis 0 may "
                                            r"differ\): shapes \(2, 3\), \(2, 4\)"):
        f(np.zeros((2, 3), "float32"), np.zeros((2, 4), "int32"))


def test_gathers_and_scatters_write_no_loop():
    r = np.random.default_rng(2)
    E = sg.matrix("E", dtype="float32")
    ids = sg.tensor("ids", dtype="int64", shape=(None,))
    v = sg.matrix("v", dtype="float64")
    w = sg.matrix("w", dtype="float32")
    outputs = [E[ids], E[ids, 1:], sg.inc_subtensor(E[ids], w), sg.set_subtensor(E[ids], w),
               sg.inc_subtensor(E[1:3], v[:2, :])]
    _check([E, ids, v, w], outputs,
           [r.standard_normal((6, 4)).astype("float32"), np.array([1, -1, 1, 0]),
            r.standard_normal((4, 4)), r.standard_normal((4, 4)).astype("float32")])
