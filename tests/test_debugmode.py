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


def test_each_step_is_checked_on_the_values_the_compiled_step_read():
    """Indices chosen among values an ulp apart are not a difference (a saturated tanh).

    tanh(3x) for x in [2, 6] is 1 or the float32 just below it, and the C and NumPy
    tanh round a few arguments differently: each picks its own maximum in a window
    and its own argmax. The reference pools and takes the argmax of the values the
    compiled steps computed, so the indices agree and the gradient, scattered
    through them, lands on the same elements.
    """
    x = sg.tensor4("x", dtype="float32")
    t = sg.tanh(x * 3)
    y = sg.nn.max_pool2d(t, 2)
    am = t.reshape((4, -1)).argmax(axis=1)
    g = sg.grad((y * y).sum(), x)
    xv = np.random.default_rng(0).uniform(2, 6, size=(4, 3, 8, 8)).astype(np.float32)
    c = sg.function([x], [y, am, g])
    d = sg.function([x], [y, am, g], mode="debug")
    for got, want in zip(d(xv), c(xv)):
        np.testing.assert_array_equal(got, want)
    # The case is a real one: NumPy's tanh on the same input picks other elements.
    ref = sg.function([x], [y, am, g], mode="py")(xv)
    assert not all(np.array_equal(r, w) for r, w in zip(ref, c(xv)))


def test_a_step_that_differs_still_raises_after_carrying_compiled_values():
    x = sg.vector("x")
    y = _Halves()(sg.exp(x) @ sg.ones((2, 2)))
    f = sg.function([x], y, mode="debug")
    with pytest.raises(DebugModeError, match="halves_for_tests at .*test_debugmode.py"):
        f([1.0, 2.0])


def test_a_mean_over_no_element_is_nan_in_debug_mode_as_in_the_others():
    """A mean over an empty batch is NaN by definition (NumPy's, the kernel's): mode "debug"
    gives it as the other modes do instead of calling it a NaN made from finite inputs,
    while a NaN made by an op from elements still raises (0 / 0 below)."""
    import warnings

    x = sg.matrix("x")
    outs = [x.mean(), (x * 2).mean(axis=0), x.sum(axis=0).mean()]
    empty = np.zeros((0, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = sg.function([x], outs, mode="py")(empty)
        got = sg.function([x], outs, mode="debug")(empty)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert np.isnan(got[0]) and np.isnan(got[1]).all() and got[2] == 0
    f = sg.function([x], (x - x) / (x - x), mode="debug")
    with pytest.raises(DebugModeError, match="made NaN or Inf from finite inputs"):
        f(np.ones((2, 3)))


def test_a_division_by_a_count_of_no_element_is_what_the_other_modes_give():
    """The gradient of a mean over an empty batch divides by its count, 0: NaN or Inf
    spread over no element (a data-parallel step seeds it with the shard's count, 0 / 0:
    issue #16). Mode "debug" gives what modes "py" and "c" give; a division by a value of
    the data that is 0 still raises."""
    import warnings

    x = sg.matrix("x")
    w = sg.shared(np.ones((3, 2)), name="w")
    n = sg.cast(x.shape[0], "float64")
    outs = [sg.grad(sg.tanh(x @ w).mean() * n, w),  # 0 / 0, then spread over no row
            sg.grad(x.mean(), x),                     # 1 / 0
            x.sum() / x.shape[0], (x * 2).sum(axis=0) / (n * 2)]
    empty = np.zeros((0, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = sg.function([x], outs, mode="py")(empty)
        for mode in ("c", "debug"):
            got = sg.function([x], outs, mode=mode)(empty)
            for g, v in zip(got, want):
                assert g.shape == v.shape
                np.testing.assert_array_equal(g, v)
    np.testing.assert_array_equal(want[0], np.zeros((3, 2)))
    assert want[1].shape == (0, 3) and np.isnan(want[2]) and np.isnan(want[3]).all()
    # the same divisions by a count that is not 0: finite, and checked as ever
    full = np.ones((2, 3))
    for g, v in zip(sg.function([x], outs, mode="debug")(full),
                    sg.function([x], outs, mode="py")(full)):
        np.testing.assert_allclose(g, v, rtol=1e-12)
    # a divisor from the data, 0: a NaN made from finite inputs
    f = sg.function([x], x.sum() / (x * 0).sum(), mode="debug")
    with pytest.raises(DebugModeError, match="truediv at .*test_debugmode.py.* made NaN or Inf "
                                             "from finite inputs"):
        f(full)
    # a divisor from a length and the data (not a count alone): still raises
    f = sg.function([x], x.sum() / (n * (x * 0).sum()), mode="debug")
    with pytest.raises(DebugModeError, match="made NaN or Inf from finite inputs"):
        f(full)


def _line(marker):
    import inspect
    src = inspect.getsource(inspect.getmodule(_line)).splitlines()
    return next(i + 1 for i, s in enumerate(src) if marker in s)


def test_a_nan_made_inside_a_loop_names_the_op_of_the_step_and_the_step():
    # A recurrent net's NaN used to be reported as "scan at <line> made NaN or Inf": the
    # whole loop, not which op of the step, nor at which step.
    x = sg.vector("x")
    hs, _ = sg.scan(lambda x_t, h: sg.log(h - x_t),  # LOG-STEP
                    sequences=x, outputs_info=sg.constant(5.0))  # THE-LOOP
    f = sg.function([x], hs, mode="debug")
    np.testing.assert_allclose(f(np.array([1.0])), [np.log(4.0)])
    # h: 5 -> log 4 -> log(log 4 - 1) < 0 -> log of a negative number at step 2
    with pytest.raises(DebugModeError, match=rf"^log at .*{THIS_FILE}:{_line('LOG-STEP')}, at "
                                             rf"step 2 of scan at .*{THIS_FILE}:"
                                             rf"{_line('THE-LOOP') - 1} made NaN or Inf from "
                                             rf"finite inputs$"):
        f(np.array([1.0, 1.0, 1.0, 3.0]))
    # a loop inside the step: both steps named, the innermost op first
    m = sg.matrix("m")

    def outer(row, acc):
        inner, _ = sg.scan(lambda v, a: a + sg.log(v),  # INNER-LOG
                           sequences=row, outputs_info=sg.constant(0.0))
        return acc + inner[-1]

    out, _ = sg.scan(outer, sequences=m, outputs_info=sg.constant(0.0))  # OUTER-LOOP
    g = sg.function([m], out, mode="debug")
    with pytest.raises(DebugModeError, match=rf"^log at .*:{_line('INNER-LOG')}, at step 1 of "
                                             rf"scan at .*, at step 1 of scan at "
                                             rf".*:{_line('OUTER-LOOP')} made NaN"):
        g(np.array([[1.0, 2.0], [3.0, 0.0]]))
    # the backward loop of the gradient is searched the same way
    s = sg.vector("s")
    roots, _ = sg.scan(lambda x_t, h: sg.sqrt(h * x_t), sequences=s,
                       outputs_info=sg.constant(2.0))
    d = sg.function([s], sg.grad(roots.sum(), s), mode="debug")
    with pytest.raises(DebugModeError, match=r"^truediv at .*, at step 0 of scan\{grad of "
                                             r"scan\} at .* made NaN or Inf"):
        d(np.array([1.0, 0.0, 1.0]))
