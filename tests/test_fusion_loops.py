"""The fused elementwise loop: collapsed axes, blocks, threads, broadcasts, strides.

Values are checked against NumPy on layouts that take each path of the loop
(see ``symgrad/include/sg_loops.h``): one flat axis, a unit-stride inner axis
under a broadcast, a strided inner axis, blocks that split a row, the thread
team above the size threshold.
"""

import numpy as np
import pytest

import symgrad as sg
from symgrad.codegen import ir

BLOCK = 16384  # SG_BLOCK in sg_loops.h
PAR_WORK = 1 << 21  # SG_PAR_WORK in sg_loops.h: elements x work units per element


def threaded_len(units):
    """A length whose loop, of ``units`` work units per element, goes to the thread pool."""
    return PAR_WORK // units + 3 * BLOCK + 5


def fused(a, b):
    return sg.tanh(a * 0.5 + b) * 2.0 - sg.exp(-(a * b))


def ref(a, b):
    return np.tanh(a * 0.5 + b) * 2.0 - np.exp(-(a * b))


@pytest.mark.parametrize("shape_a, shape_b", [
    ((3 * BLOCK + 7,), (3 * BLOCK + 7,)),      # one flat axis over several blocks
    ((5, BLOCK + 3), (BLOCK + 3,)),             # rows longer than a block, bias-like broadcast
    ((BLOCK // 2 + 5, 7), (BLOCK // 2 + 5, 1)), # column broadcast: inner stride 0
    ((4, 1, 300), (1, 50, 300)),                # broadcast on both sides
    ((0, 5), (5,)),                             # zero-size
    ((), ()),                                   # 0-d
])
def test_layouts_match_numpy(shape_a, shape_b):
    r = np.random.default_rng(0)
    A, B = r.standard_normal(shape_a), r.standard_normal(shape_b)
    a = sg.tensor("a", shape=(None,) * len(shape_a))
    b = sg.tensor("b", shape=(None,) * len(shape_b))
    f = sg.function([a, b], fused(a, b))
    np.testing.assert_allclose(f(A, B), ref(A, B), rtol=1e-12, atol=1e-12)


def test_non_contiguous_and_negative_strides():
    r = np.random.default_rng(1)
    big, other = r.standard_normal((300, 400)), r.standard_normal((800, 600))
    a, b = sg.matrix("a"), sg.matrix("b")
    f = sg.function([a, b], fused(a, b))
    for A, B in [(big.T, other[::2, ::2]), (big[::-2, ::3], other[:150, ::-3][:, :134]),
                 (big[:, 5:6], big[:, :400]), (other[::-1, ::-1], other.T.T)]:
        np.testing.assert_allclose(f(A, B), ref(A, B), rtol=1e-12, atol=1e-12)


def test_constant_and_static_scalar_operands():
    r = np.random.default_rng(2)
    x, s = sg.vector("x"), sg.scalar("s")
    one = sg.tensor("one", shape=(1,))
    f = sg.function([x, s, one], (x * s + one) ** 2)
    X = r.standard_normal(2 * BLOCK + 1)
    np.testing.assert_allclose(f(X, 1.5, np.array([0.25])), (X * 1.5 + 0.25) ** 2, rtol=1e-14)


def test_threads_give_the_same_result(monkeypatch):
    r = np.random.default_rng(3)
    X = r.standard_normal((64, 70001)).astype("float32")
    x = sg.matrix("x", dtype="float32")
    results = []
    for n in (1, 2, 3):
        monkeypatch.setattr(sg.config, "_num_threads", n)
        f = sg.function([x], sg.tanh(x) * x + 1)
        results.append(f(X))
    for res in results[1:]:
        np.testing.assert_array_equal(res, results[0])
    np.testing.assert_allclose(results[0], np.tanh(X) * X + 1, rtol=1e-6, atol=1e-6)


def test_integer_power_error_still_raised_from_a_big_loop():
    x, k = sg.vector("x", dtype="int64"), sg.vector("k", dtype="int64")
    f = sg.function([x, k], x ** k)
    K = np.ones(3 * BLOCK, "int64")
    K[-1] = -1
    with pytest.raises(ValueError, match="negative integer powers"):
        f(np.full(3 * BLOCK, 2, "int64"), K)


@pytest.mark.parametrize("k", [0, 1, 2, -1, 0.0, 2.0, 3, 0.5])
def test_float_power_by_constant_matches_numpy_bitwise(k):
    x = sg.vector("x")
    f = sg.function([x], x ** k)
    v = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -2.5, 1e-300, 1e300, 3.0])
    with np.errstate(all="ignore"):
        expected = np.power(v, k)
    got = f(v)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))


def test_block_and_thread_threshold_match_the_header():
    from pathlib import Path

    header = (Path(sg.__file__).parent / "include" / "sg_loops.h").read_text()
    assert f"#define SG_BLOCK {BLOCK}\n" in header
    assert "#define SG_PAR_WORK (INT64_C(1) << 21)\n" in header


def test_only_loops_with_enough_work_go_to_threads():
    """The threshold divides SG_PAR_WORK by the loop's work per element: costly ops thread sooner."""
    x = sg.vector("x")
    cheap = sg.function([x], x + 1.0).source        # load, store, add: 3 units
    costly = sg.function([x], sg.tanh(x)).source    # load, store, tanh: 10 units
    assert "SG_PAR_WORK / 3 &&" in cheap
    assert "SG_PAR_WORK / 10 &&" in costly


def test_num_threads_setting_is_checked():
    with pytest.raises(ValueError, match="num_threads"):
        sg.config.num_threads = -1
    with pytest.raises(ValueError, match="num_threads"):
        sg.config.num_threads = "4"
    assert sg.config.threads() >= 1


# --------------------------------------------------------------------------- accumulations

@pytest.mark.parametrize("axis, keepdims", [(None, False), (0, False), (1, True), ((0, 2), False),
                                            (2, False), ((), False)])
@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_reduction_of_a_fused_expression(axis, keepdims, reduce):
    r = np.random.default_rng(4)
    X = r.standard_normal((37, 5, 300))
    x = sg.tensor3("x")
    f = sg.function([x], getattr(sg, reduce)(sg.exp(x) * x + 1.0, axis=axis, keepdims=keepdims))
    want = getattr(np, reduce)(np.exp(X) * X + 1.0, axis=axis, keepdims=keepdims)
    for view, ref_view in [(X, want), (X[::-1, :, ::2], None)]:
        expected = ref_view if ref_view is not None else getattr(np, reduce)(
            np.exp(view) * view + 1.0, axis=axis, keepdims=keepdims)
        got = f(view)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-11)


def test_empty_reductions_follow_numpy():
    x = sg.matrix("x")
    f = sg.function([x], [sg.sum(x * 2.0, axis=0), sg.mean(x * 2.0, axis=0), sg.mean(x * 2.0)])
    s, m, total = f(np.zeros((0, 3)))
    np.testing.assert_array_equal(s, np.zeros(3))
    assert np.isnan(m).all() and m.shape == (3,) and np.isnan(total)


def test_bias_gradient_sums_rows_in_one_pass():
    r = np.random.default_rng(5)
    X, B = r.standard_normal((257, 130)).astype("float32"), r.standard_normal(130).astype("float32")
    x, b = sg.matrix("x", dtype="float32"), sg.vector("b", dtype="float32")
    gb = sg.grad((sg.relu(x + b) ** 2).sum(), b)
    f = sg.function([x, b], gb)
    want = (2 * np.maximum(X + B, 0)).astype("float64").sum(axis=0)
    np.testing.assert_allclose(f(X, B), want, rtol=2e-5, atol=1e-4)
    assert "sum_to" in f.source and "omp simd" in f.source


def test_sum_to_mismatch_names_the_node():
    g = sg.matrix("g")
    like = sg.matrix("like")
    from symgrad.ops import shape_ops
    f = sg.function([g, like], shape_ops.SumTo()(g * 2.0, sg.shape(like)))
    np.testing.assert_allclose(f(np.ones((4, 3)), np.ones((1, 3))), np.full((1, 3), 8.0))
    with pytest.raises(sg.ShapeError, match=r"sum_to at .*test_fusion_loops.py:\d+.*not a broadcast"):
        f(np.ones((4, 3)), np.ones((2, 3)))


# --------------------------------------------------------------------------- the thread pool

def test_many_threads_share_the_pool_and_get_right_results(monkeypatch):
    import threading

    monkeypatch.setattr(sg.config, "_num_threads", 2)
    x = sg.vector("x")
    f = sg.function([x], sg.tanh(x) * 3.0 + x)  # above the parallel threshold below
    # 1 load + 1 store + tanh 8 + mul + add = 12 units
    inputs = [np.random.default_rng(i).standard_normal(threaded_len(12) + i) for i in range(8)]
    results, errors = [None] * 8, []

    def work(i):
        try:
            for _ in range(20):
                results[i] = f(inputs[i])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for X, got in zip(inputs, results):
        np.testing.assert_allclose(got, np.tanh(X) * 3.0 + X, rtol=1e-13)


def test_back_to_back_jobs_with_more_threads_than_cores(monkeypatch):
    """Workers woken late must not run blocks of a later job with an earlier job's data."""
    monkeypatch.setattr(sg.config, "_num_threads", 4)
    x, c = sg.vector("x"), sg.scalar("c")
    f = sg.function([x, c], x * c + 1.0)
    X = np.arange(threaded_len(4), dtype="float64")  # load, store, mul, add (c is hoisted)
    for k in range(200):
        got = f(X, float(k))
        assert got[0] == 1.0 and got[-1] == X[-1] * k + 1.0
        np.testing.assert_array_equal(got, X * k + 1.0)


def test_a_forked_child_runs_parallel_loops(monkeypatch):
    import os

    monkeypatch.setattr(sg.config, "_num_threads", 2)
    x = sg.vector("x")
    f = sg.function([x], sg.exp(x) + 1.0)
    X = np.linspace(-1, 1, threaded_len(11))
    f(X)  # the parent's pool has started its workers
    pid = os.fork()
    if pid == 0:  # the child: no workers exist here; a fresh pool must start
        ok = np.allclose(f(X), np.exp(X) + 1.0)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# --------------------------------------------------------------------------- in place

def test_a_dead_intermediate_is_overwritten_in_place_only_when_it_fits():
    x, W, B, W2 = sg.matrix("x"), sg.matrix("W"), sg.matrix("B"), sg.matrix("W2")
    f = sg.function([x, W, B, W2], (sg.tanh(x @ W) * 2.0 + B) @ W2)
    assert "in place of its operand" in f.source  # the product's buffer takes the loop's result
    r = np.random.default_rng(6)
    X, Wv, W2v = r.standard_normal((50, 40)), r.standard_normal((40, 30)), r.standard_normal((30, 2))
    for Xv, Bv in [(X, r.standard_normal((50, 30))),   # same shape: in place
                   (X, r.standard_normal((1, 30))),    # B broadcast: still in place
                   (X[:1], r.standard_normal((50, 30)))]:  # the product is broadcast: new buffer
        np.testing.assert_allclose(f(Xv, Wv, Bv, W2v), (np.tanh(Xv @ Wv) * 2 + Bv) @ W2v,
                                   rtol=1e-12)


def test_no_in_place_over_a_value_read_again_or_returned():
    x, W = sg.matrix("x"), sg.matrix("W")
    h = x @ W
    f = sg.function([x, W], [(sg.tanh(h) + 1.0) @ W.T, h])  # h is an output
    g = sg.function([x, W], (sg.tanh(h) + 1.0) @ W.T + h @ W.T)  # h read twice
    assert "in place of its operand" not in f.source + g.source
    r = np.random.default_rng(7)
    X, Wv = r.standard_normal((6, 5)), r.standard_normal((5, 5))
    got, hv = f(X, Wv)
    np.testing.assert_allclose(hv, X @ Wv, rtol=1e-13)
    np.testing.assert_allclose(got, (np.tanh(X @ Wv) + 1) @ Wv.T, rtol=1e-12)
    np.testing.assert_allclose(g(X, Wv), (np.tanh(X @ Wv) + 1) @ Wv.T + X @ Wv @ Wv.T,
                               rtol=1e-12)


def _loops(f):
    return [[n.op.name for n in s.members] for s in f.kernel.steps if isinstance(s, ir.FusedLoop)]


def test_a_value_read_twice_by_one_loop_is_computed_inside_it():
    """A node all of whose readers are in one fused loop joins it -- a square (t * t), a
    where reading a value its condition reads too (negative indices wrapped, as advanced
    indexing does) -- computed once per element there, not stored by a loop of its own."""
    x, y = sg.vector("x"), sg.vector("y", dtype="int64")
    t = sg.tanh(x)
    w = y + 5
    f = sg.function([x, y], [t * t + 1.0, sg.where((y < 0) * (w >= 0), w, y)])
    assert _loops(f) == [["tanh", "mul", "add"], ["lt", "add", "ge", "mul", "where"]]
    xv = np.linspace(-3, 3, 7)
    yv = np.array([-7, -5, -1, 0, 3, -6, 4])
    sq, wrapped = f(xv, yv)
    np.testing.assert_allclose(sq, np.tanh(xv) ** 2 + 1.0, rtol=1e-15)
    assert wrapped.tolist() == [-7, 0, 4, 0, 3, -6, 4]


def test_a_value_two_loops_read_is_stored_once():
    x = sg.vector("x")
    t = sg.tanh(x)
    f = sg.function([x], [sg.exp(t) + 1.0, t * 2.0 - 1.0])
    assert _loops(f) == [["tanh"], ["exp", "add"], ["mul", "sub"]]
    xv = np.linspace(-3, 3, 7)
    a, b = f(xv)
    np.testing.assert_allclose(a, np.exp(np.tanh(xv)) + 1.0, rtol=1e-15)
    np.testing.assert_allclose(b, np.tanh(xv) * 2.0 - 1.0, rtol=1e-15)
