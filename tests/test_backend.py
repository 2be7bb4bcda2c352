"""Mode "c" and mode "debug": one compiled kernel per function, shape-generic, errors that
name the user's line, threads, and the node-by-node checks of debug mode."""

import inspect
import threading

import numpy as np
import pytest

import symgrad as sg
from symgrad.debugmode import DebugModeError
from symgrad.graph import Op


def _line(marker):
    src = inspect.getsource(inspect.getmodule(_line)).splitlines()
    return next(i + 1 for i, s in enumerate(src) if marker in s)


def test_default_mode_is_c_and_source_is_c():
    x = sg.vector("x")
    f = sg.function([x], sg.exp(x) * 2)
    assert f.mode == "c"
    assert "int sg_main(" in f.source and "exp(" in f.source
    np.testing.assert_allclose(f([0.0, 1.0]), 2 * np.exp([0.0, 1.0]))


def test_one_kernel_serves_every_shape(monkeypatch):
    X = sg.matrix("X")
    W = sg.shared(np.ones((3, 2)), name="W")
    f = sg.function([X], sg.tanh(X @ W).sum(axis=0))
    from symgrad import compiler
    monkeypatch.setattr(compiler, "compile_library",
                        lambda *a, **k: pytest.fail("recompiled for a new shape"))
    for n in (1, 7, 64, 0):
        got = f(np.ones((n, 3)))
        np.testing.assert_allclose(got, np.tanh(np.ones((n, 3)) @ np.ones((3, 2))).sum(axis=0))


def test_elementwise_chain_is_one_loop():
    x, y = sg.vector("x"), sg.vector("y")
    f = sg.function([x, y], sg.tanh(x * 2 + y) * sg.exp(-y))
    # one fused group: a single result buffer, loops over it alone
    assert f.source.count("sg_alloc(") == 1 and f.source.count(", &F->own") == 1


def test_broadcast_mismatch_names_op_and_line():
    x, y = sg.vector("x"), sg.vector("y")
    z = x * y  # MARK-mul
    f = sg.function([x, y], sg.exp(z))
    with pytest.raises(sg.ShapeError, match=rf"mul at .*test_backend.py:{_line('MARK-mul')}: "
                                            r"shapes \(3,\) and \(4,\)"):
        f(np.ones(3), np.ones(4))


def test_gather_out_of_range_names_op_and_line():
    E = sg.matrix("E")
    ids = sg.vector("ids", dtype="int64")
    rows = E[ids]  # MARK-gather
    f = sg.function([E, ids], rows.sum())
    with pytest.raises(sg.IndexError, match=rf"at .*test_backend.py:{_line('MARK-gather')}"):
        f(np.ones((3, 2)), np.array([0, 5]))
    with pytest.raises(IndexError):
        f(np.ones((3, 2)), np.array([-4]))
    assert f(np.ones((3, 2)), np.array([-3, 2])) == 4.0


def test_cross_entropy_label_out_of_range():
    logits, y = sg.matrix("logits"), sg.vector("y", dtype="int64")
    loss = sg.nn.cross_entropy(logits, y)  # MARK-ce
    f = sg.function([logits, y], loss.mean())
    with pytest.raises(sg.IndexError, match=rf"cross_entropy at .*:{_line('MARK-ce')}"):
        f(np.zeros((2, 3)), np.array([0, 3]))


def test_calls_from_threads():
    X = sg.matrix("X")
    f = sg.function([X], (sg.tanh(X) ** 2).sum(axis=1))
    data = [np.random.default_rng(i).standard_normal((50, 20)) for i in range(8)]
    want = [(np.tanh(d) ** 2).sum(axis=1) for d in data]
    errors = []

    def work(i):
        for _ in range(50):
            if not np.allclose(f(data[i]), want[i]):
                errors.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_debug_mode_names_the_node_that_makes_nan():
    x = sg.vector("x")
    y = sg.log(x - 1.0)  # MARK-log
    f = sg.function([x], y * 2, mode="debug")
    np.testing.assert_allclose(f([3.0]), 2 * np.log(2.0))
    with pytest.raises(DebugModeError, match=rf"log at .*:{_line('MARK-log')} made NaN or Inf"):
        f([1.0])


def test_debug_mode_passes_nan_and_inf_that_come_in_through_inputs_and_shared_values():
    # An input or shared value that already holds NaN/Inf is not a node making them.
    x = sg.vector("x")
    W = sg.shared(np.array([np.inf, 1.0]), name="W")
    f = sg.function([x], sg.exp(x) * 2 + W, mode="debug")
    got = f(np.array([np.nan, 1.0]))
    assert np.isnan(got[0]) and got[1] == pytest.approx(2 * np.e + 1)


class _Disagrees(Op):
    """Reference says x + 1, the C lowering says x: debug mode must catch it."""

    name = "disagrees_for_tests"
    register = False

    def infer(self, x):
        return [x.type]

    def perform(self, node, x):
        return [x + 1]

    def c_scalar(self, node, args, bad):
        return args[0]


def test_debug_mode_names_the_node_that_differs():
    x = sg.vector("x")
    y = _Disagrees()(x)  # MARK-bad
    f = sg.function([x], sg.exp(y), mode="debug")
    with pytest.raises(DebugModeError, match=rf"disagrees_for_tests at .*:{_line('MARK-bad')}"):
        f([1.0])


def test_no_compiler_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(sg.config, "cc", str(tmp_path / "no-such-cc"))
    monkeypatch.setattr(sg.config, "cache_dir", str(tmp_path / "cache"))
    x = sg.vector("x")
    with pytest.raises(sg.CompileError, match='mode="py"'):
        sg.function([x], x * 3.25 + 1.5)


def test_profile_in_c_mode_times_nodes_inside_the_kernel():
    x = sg.vector("x")
    f = sg.function([x], x + 1, profile=True)
    f([1.0])
    report = f.profile_report()
    assert report.splitlines()[1].startswith("add (test_backend.py:")
    assert "sg_prof[0] +=" in f.source
