"""Mode "debug" checks the kernel mode "c" runs: its fused loops, step by step (issue #12, item 7)."""

import numpy as np
import pytest

import symgrad as sg
from symgrad.debugmode import DebugModeError
from symgrad.graph import Op

THIS_FILE = "test_debugmode.py"


def _titles(f):
    return [(type(s).__name__, s.title()) for s in f.kernel.steps]


def test_debug_mode_runs_the_steps_mode_c_runs():
    X, y = sg.matrix("X"), sg.vector("y")
    W = sg.shared(np.ones((3, 2)), name="W")
    loss = ((sg.tanh(X @ W).sum(axis=1) - y) ** 2).mean()
    upd = [(W, W - 0.1 * sg.grad(loss, W))]
    c = sg.function([X, y], loss, updates=upd)
    d = sg.function([X, y], loss, updates=upd, mode="debug")
    assert _titles(d) == _titles(c)
    assert any(s.fused for s in d.kernel.steps)  # fusion stays on
    xv, yv = np.arange(12.0).reshape(4, 3) / 10, np.ones(4)
    W.set_value(np.ones((3, 2)))
    want = c(xv, yv)
    W_c = W.get_value()
    W.set_value(np.ones((3, 2)))
    np.testing.assert_allclose(d(xv, yv), want)
    np.testing.assert_allclose(W.get_value(), W_c)


class _Halves(Op):
    """Reference says x / 2, the C lowering says x: a fused loop computes it wrong."""

    name = "halves_for_tests"
    register = False

    def infer(self, x):
        return [x.type]

    def perform(self, node, x):
        return [x / 2]

    def c_scalar(self, node, args, bad):
        return args[0]


def test_a_fused_loop_that_differs_is_named_with_its_ops():
    x = sg.vector("x")
    y = sg.exp(_Halves()(x) + 1.0)
    f = sg.function([x], y * 3.0, mode="debug")
    (step,) = f.kernel.steps
    assert step.fused and len(step.members) == 4  # halves, add, exp, mul in one loop
    with pytest.raises(DebugModeError) as info:
        f([1.0, 2.0])
    msg = str(info.value)
    assert msg.startswith(f"{step.label}, fused loop of 4 ops (")
    for op in ("halves_for_tests", "add", "exp", "mul"):
        assert f"{op} at " in msg and THIS_FILE in msg
    assert "differ at index (0,)" in msg
