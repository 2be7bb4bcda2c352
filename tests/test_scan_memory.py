"""Where a loop's values live in mode "c": each iteration's value written straight into its
place in the loop's result (no copy per step), and the values unchanged by it."""

import numpy as np
import pytest

import symgrad as sg
from symgrad.codegen import ir

RNG = np.random.default_rng(7)


def _loops(f):
    return [s for s in f.kernel.steps if isinstance(s, ir.Loop)]


def _lstm(X, h0, c0, Wx, Wh, H):
    def cell(x_t, h, c):
        z = x_t @ Wx + h @ Wh
        i, f_ = sg.sigmoid(z[:, :H]), sg.sigmoid(z[:, H:2 * H])
        g, o = sg.tanh(z[:, 2 * H:3 * H]), sg.sigmoid(z[:, 3 * H:])
        c = f_ * c + i * g
        return [o * sg.tanh(c), c]

    (hs, cs), _ = sg.scan(cell, sequences=X, outputs_info=[h0, c0])
    return hs, cs


def _lstm_values(H=3, T=4, B=2, I=2):
    return [RNG.standard_normal((T, B, I)), RNG.standard_normal((B, H)),
            RNG.standard_normal((B, H)), RNG.standard_normal((I, 4 * H)) * 0.5,
            RNG.standard_normal((H, 4 * H)) * 0.5]


def test_stacked_outputs_are_written_in_place_with_the_same_values():
    H = 3
    X, h0, c0 = sg.tensor3("X"), sg.matrix("h0"), sg.matrix("c0")
    Wx, Wh = sg.matrix("Wx"), sg.matrix("Wh")
    hs, cs = _lstm(X, h0, c0, Wx, Wh, H)
    f = sg.function([X, h0, c0, Wx, Wh], [hs, cs])
    (loop,) = _loops(f)
    # both stacks are made by the body's last steps writing into entry t
    assert all(isinstance(s, ir.Step) for s in loop.written)
    for s, o in zip(loop.written, loop.outputs):
        assert s.root.outputs[0] is o and s in loop.body.steps
    ref = sg.function([X, h0, c0, Wx, Wh], [hs, cs], mode="py")
    for vals in (_lstm_values(H), _lstm_values(H, T=1), _lstm_values(H, T=0)):
        for a, b in zip(f(*vals), ref(*vals)):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


def test_the_gradient_loop_writes_its_values_in_place_too():
    H = 2
    X, h0, c0 = sg.tensor3("X"), sg.matrix("h0"), sg.matrix("c0")
    Wx, Wh = sg.matrix("Wx"), sg.matrix("Wh")
    hs, cs = _lstm(X, h0, c0, Wx, Wh, H)
    cost = (hs ** 2).sum() + cs[-1].sum()
    wrt = [X, h0, c0, Wx, Wh]
    outs = [cost, *sg.grad(cost, wrt)]
    f = sg.function(wrt, outs)
    loops = _loops(f)
    assert len(loops) == 2
    for loop in loops:
        # every output a body step makes in memory of its own is written in place (a sum
        # accumulated in double is rounded into memory the support library allocates)
        for s, o in zip(loop.written, loop.outputs):
            made = [st for st in loop.body.steps if st.root.outputs[0] is o]
            if made and getattr(made[0], "accumulation", None) is None:
                assert s is made[0]
        assert sum(s is not None for s in loop.written) >= len(loop.written) - 1
    ref = sg.function(wrt, outs, mode="py")
    for vals in (_lstm_values(H), _lstm_values(H, T=1)):
        for a, b in zip(f(*vals), ref(*vals)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_values_passed_through_or_returned_twice_are_copied():
    x, h0 = sg.matrix("x"), sg.vector("h0")

    def step(x_t, h):
        y = sg.tanh(h + x_t)
        return [y, h, y, x_t]      # new value; the previous one; y again; the slice

    (ys, hs, ys2, xs), _ = sg.scan(step, sequences=x, outputs_info=[h0, None, None, None])
    f = sg.function([x, h0], [ys, hs, ys2, xs])
    (loop,) = _loops(f)
    assert loop.written[0] is not None
    assert loop.written[1] is None and loop.written[3] is None   # no step makes them
    assert loop.written[2] is None                               # y's place is output 0's
    ref = sg.function([x, h0], [ys, hs, ys2, xs], mode="py")
    for T in (3, 1, 0):
        vals = [RNG.standard_normal((T, 2)), RNG.standard_normal(2)]
        for a, b in zip(f(*vals), ref(*vals)):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=1e-14)


def test_a_stack_whose_shape_the_first_step_tells_is_in_place_from_the_second():
    # the step's value has a length known only at run time: the first iteration's value
    # is copied into the stack it allocates, the others are written into it
    x, v = sg.matrix("x"), sg.vector("v")
    ys, _ = sg.map(lambda x_t, v: sg.exp(x_t.sum() * v), sequences=x, non_sequences=v)
    f = sg.function([x, v], ys)
    (loop,) = _loops(f)
    assert loop.written[0] is not None
    ref = sg.function([x, v], ys, mode="py")
    for T, n in ((4, 3), (1, 2), (0, 5)):
        vals = [RNG.standard_normal((T, 2)), RNG.standard_normal(n)]
        a, b = f(*vals), ref(*vals)
        assert a.shape == b.shape == (T, n)
        np.testing.assert_allclose(a, b, rtol=1e-14)


def test_a_step_value_of_changing_shape_is_still_an_error_in_place():
    x = sg.vector("x")
    # the value's length depends on the step: entry t cannot hold it
    ys, _ = sg.map(lambda x_t: sg.ones((sg.cast(x_t, "int64") + 1,)) * 2.0, sequences=x)
    f = sg.function([x], ys)
    with pytest.raises(sg.ShapeError, match="every step's value must have the same shape"):
        f(np.array([1.0, 2.0]))
    np.testing.assert_array_equal(f(np.array([1.0, 1.0])), np.full((2, 2), 2.0))


# --------------------------------------------------------------------------- updates in place

def _op_steps(program, name):
    return [s for s in program.steps if isinstance(s, ir.OpStep) and s.root.op.name == name]


def test_an_increment_of_an_array_nothing_reads_afterwards_takes_its_memory():
    x, a, b = sg.matrix("x"), sg.matrix("a"), sg.vector("b")
    z = sg.exp(x)                                  # a block of its own, read only below
    y = sg.inc_subtensor(z[:, :2], a)
    y = sg.set_subtensor(y[1], b)                  # y, again, read by nothing else
    y = sg.inc_subtensor(y[[0, 2]], 1.0)           # a scatter too
    f = sg.function([x, a, b], y)
    incs = _op_steps(f.kernel, "inc_subtensor") + _op_steps(f.kernel, "advanced_inc_subtensor")
    assert len(incs) == 3
    assert all(s.donor is s.root.inputs[0] for s in incs)
    vals = [RNG.standard_normal((3, 4)), RNG.standard_normal((3, 2)), RNG.standard_normal(4)]
    want = np.exp(vals[0])
    want[:, :2] += vals[1]
    want[1] = vals[2]
    want[[0, 2]] += 1.0
    np.testing.assert_allclose(f(*vals), want, rtol=1e-14)
    np.testing.assert_allclose(sg.function([x, a, b], y, mode="py")(*vals), want, rtol=1e-14)


def test_an_increment_of_an_array_read_again_copies_it():
    x, a = sg.matrix("x"), sg.matrix("a")
    z = sg.exp(x)
    y = sg.inc_subtensor(z[:, :2], a)
    w = sg.inc_subtensor(x[:, 1:3], a)             # x: the caller's, never written
    f = sg.function([x, a], [y, z * 2.0, w, x + 0.0])
    incs = _op_steps(f.kernel, "inc_subtensor")
    assert [s.donor for s in incs] == [None, None]
    vals = [RNG.standard_normal((3, 4)), RNG.standard_normal((3, 2))]
    keep = vals[0].copy()
    got = f(*vals)
    want_y = np.exp(keep)
    want_y[:, :2] += vals[1]
    want_w = keep.copy()
    want_w[:, 1:3] += vals[1]
    for g, wv in zip(got, [want_y, 2 * np.exp(keep), want_w, keep]):
        np.testing.assert_allclose(g, wv, rtol=1e-14)
    np.testing.assert_array_equal(vals[0], keep)


def test_the_gradient_loop_adds_its_gates_gradients_into_one_array_in_place():
    H = 2
    X, h0, c0 = sg.tensor3("X"), sg.matrix("h0"), sg.matrix("c0")
    Wx, Wh = sg.shared(_lstm_values(H)[3], name="Wx"), sg.shared(_lstm_values(H)[4], name="Wh")
    hs, cs = _lstm(X, h0, c0, Wx, Wh, H)
    cost = (hs ** 2).sum()
    wrt = [X, h0, c0, Wx, Wh]
    outs = [cost, *sg.grad(cost, wrt)]
    f = sg.function([X, h0, c0], outs)
    (back,) = [s for s in _loops(f) if "grad" in str(s.root.op)]
    incs = _op_steps(back.body, "inc_subtensor")
    assert len(incs) == 4                 # dz: the four gates' gradients into one array
    # each adds into the array the one before made; the first copies zeros, and one whose
    # result is written straight into the loop's stack copies its operand there
    assert sum(s.donor is not None for s in incs) >= 2
    vals = _lstm_values(H, T=5)[:3]
    ref = sg.function([X, h0, c0], outs, mode="py")
    for a, b in zip(f(*vals), ref(*vals)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    dbg = sg.function([X, h0, c0], outs, mode="debug")
    for a, b in zip(dbg(*vals), ref(*vals)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- last values only

def _rnn_last(X, h0, W):
    (hs, cs), _ = sg.scan(lambda x, h, c: [sg.tanh(x + h @ W), c + h], sequences=X,
                          outputs_info=[h0, h0])
    return hs, cs


def _rnn_ref(X, h0, W):
    h, c = h0, h0
    for x in X:
        h, c = np.tanh(x + h @ W), c + h
    return h, c


def _scans(outputs):
    from symgrad.graph import toposort
    from symgrad.ops.scan import Scan
    from symgrad.rewrite import rewrite

    return [n for n in toposort(rewrite(outputs)) if isinstance(n.op, Scan)]


@pytest.mark.parametrize("mode", ["py", "c", "debug"])
def test_a_loop_read_only_at_its_last_step_keeps_only_the_last_value(mode):
    X, h0 = sg.matrix("X"), sg.vector("h0")
    W = sg.shared(RNG.standard_normal((3, 3)) * 0.5, name="W")
    hs, cs = _rnn_last(X, h0, W)
    outs = [hs[-1] * 2.0, hs[-1, 1:]]           # cs: read by nothing
    (node,) = _scans(outs)
    assert node.op.last == (True, True)          # neither output is a stack any more
    f = sg.function([X, h0], outs, mode=mode)
    for T in (5, 1):
        vals = [RNG.standard_normal((T, 3)), RNG.standard_normal(3)]
        h, _ = _rnn_ref(*vals, W.get_value())
        a, b = f(*vals)
        np.testing.assert_allclose(a, 2 * h, rtol=1e-13)
        np.testing.assert_allclose(b, h[1:], rtol=1e-13)
    with pytest.raises(sg.IndexError, match="index -1 is out of range for axis 0 with size 0"):
        f(np.zeros((0, 3)), np.zeros(3))       # as hs[-1] of an empty stack


@pytest.mark.parametrize("mode", ["py", "c"])
def test_a_loop_read_only_as_its_last_step_slice_keeps_only_the_last_value(mode):
    # hs[-1:] (0 or 1 entries) is what the recurrent layers read for their final states,
    # so that a sequence of length 0 keeps the initial state rather than failing
    X, h0 = sg.matrix("X"), sg.vector("h0")
    W = sg.shared(RNG.standard_normal((3, 3)) * 0.5, name="W")
    hs, cs = _rnn_last(X, h0, W)
    outs = [hs[-1:] * 2.0, cs[-1:, 1:]]
    (node,) = _scans(outs)
    assert node.op.last == (True, True)
    f = sg.function([X, h0], outs, mode=mode)
    for T in (5, 1):
        vals = [RNG.standard_normal((T, 3)), RNG.standard_normal(3)]
        h, c = _rnn_ref(*vals, W.get_value())
        a, b = f(*vals)
        np.testing.assert_allclose(a, [2 * h], rtol=1e-13)
        np.testing.assert_allclose(b, [c[1:]], rtol=1e-13)
    a, b = f(np.zeros((0, 3)), np.zeros(3))
    assert a.shape == (0, 3) and b.shape == (0, 2)


def test_the_memory_of_a_loop_read_at_its_last_step_does_not_grow_with_its_steps():
    X, h0 = sg.matrix("X"), sg.vector("h0")
    W = sg.shared(RNG.standard_normal((64, 64)) * 0.1, name="W")
    hs, cs = _rnn_last(X, h0, W)
    f = sg.function([X, h0], [hs[-1], cs[-1]])
    (loop,) = _loops(f)
    assert loop.stacked == [False, False]
    arena = f._kernel.kernel.arena_sizes
    sizes = []
    for T in (10, 4000):
        vals = [RNG.standard_normal((T, 64)), RNG.standard_normal(64)]
        got = f(*vals)
        # c sums 4000 values of |h| < 1: an element near 0 keeps an absolute error of up to
        # 4000 roundings (~4.4e-13), as NumPy's does; h itself is within rtol
        for a, b in zip(got, _rnn_ref(*vals, W.get_value())):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)
        sizes.append(sum(arena()))
    assert sizes[1] == sizes[0] < 64 * 8 * 20   # a stack of 4000 steps would be 2 MB


def test_a_stack_read_elsewhere_or_returned_stays_a_stack():
    X, h0 = sg.matrix("X"), sg.vector("h0")
    W = sg.shared(RNG.standard_normal((3, 3)) * 0.5, name="W")
    hs, cs = _rnn_last(X, h0, W)
    assert _scans([hs[-1], hs.sum()])[0].op.last == (False, True)
    assert _scans([hs[-1], cs])[0].op.last == (True, False)
    assert _scans([hs[-2]])[0].op.last == (False, True)
    # a gradient reads every step: the loop keeps its stack, and the values are right
    cost = hs[-1].sum()
    g = sg.grad(cost, W)
    f = sg.function([X, h0], [cost, g])
    vals = [RNG.standard_normal((4, 3)), RNG.standard_normal(3)]
    ref = sg.function([X, h0], [cost, g], mode="py", rewrite="none")
    for a, b in zip(f(*vals), ref(*vals)):
        np.testing.assert_allclose(a, b, rtol=1e-11)


def test_a_sum_to_its_own_shape_at_run_time_is_a_copy():
    # a gradient loop's input slice: a batch length unknown when built, equal at run time
    from symgrad.ops.shape import sum_to

    g, like = sg.matrix("g", dtype="float32"), sg.matrix("like", dtype="float32")
    f = sg.function([g, like], sum_to(g, like))
    x = RNG.standard_normal((5, 3)).astype("float32")
    np.testing.assert_array_equal(f(x, np.zeros((5, 3), "float32")), x)
    np.testing.assert_allclose(f(x, np.zeros((1, 3), "float32")),
                               x.astype("float64").sum(0, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(f(x, np.zeros((5, 1), "float32")),
                               x.astype("float64").sum(1, keepdims=True), rtol=1e-6)
    with pytest.raises(sg.ShapeError):
        f(x, np.zeros((4, 3), "float32"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_reshape_that_copies_in_a_step_gives_its_block_back_every_step(dtype):
    # x.T is not contiguous: its reshape is a copy, whose block used to stay taken until
    # the call ended, so the workspace grew by one block a step
    X = sg.tensor3("X", dtype=dtype)
    acc0 = sg.matrix("acc0", dtype=dtype)

    def step(x, acc):
        flat = x.T.reshape((-1,))
        return acc + flat.reshape(x.shape) * 0.5 + x.reshape((-1,)).reshape(x.shape)

    out, _ = sg.scan(step, sequences=X, outputs_info=[acc0])
    f = sg.function([X, acc0], out[-1])
    arena = f._kernel.kernel.arena_sizes
    sizes = []
    for T in (3, 300):
        x = RNG.standard_normal((T, 8, 8)).astype(dtype)
        want = x.sum(0) + 0.5 * np.transpose(x, (0, 2, 1)).sum(0)
        np.testing.assert_allclose(f(x, np.zeros((8, 8), dtype)), want,
                                   rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-5)
        sizes.append(sum(arena()))
    assert sizes[1] == sizes[0] < 8 * 8 * 8 * 20   # a block a step would be 300 of them
    with pytest.raises(sg.ShapeError, match="cannot reshape"):
        sg.function([X], X.T.reshape((7, -1)))(np.ones((2, 3, 4), dtype))


@pytest.mark.parametrize("mode", ["py", "c"])
def test_reshapes_no_array_can_have_are_refused_as_numpy_refuses_them(mode):
    # an empty result whose other lengths multiply past INT64_MAX (its strides would
    # overflow), and a -1 beside a 0 (any length would do): errors in every mode
    x, s = sg.vector("x"), sg.vector("s", dtype="int64")
    f = sg.function([x, s], (x.reshape((s[0], s[1], s[2])) * 2).sum(), mode=mode)
    for shape in ([0, 2 ** 40, 2 ** 40], [0, 2 ** 62, 4], [0, -1, 4]):
        with pytest.raises(sg.ShapeError, match=r"cannot reshape an array of shape \(0,\) to"):
            f(np.zeros(0), np.array(shape))
    assert f(np.zeros(0), np.array([0, 5, 7])) == 0
    assert f(np.ones(12), np.array([2, -1, 3])) == 24
