"""How a compiled loop's step writes its results: the parts of a concatenation made in
their place in the loop's stack, and a step's elementwise loops shared among threads.

A gradient loop concatenates the gradients of an LSTM's four gates into ``dz`` along
axis 1 every step; each gate's fused loop writes its columns of the stack's entry
directly (codegen/render_c.py ``_concatenation_views``, sg_drivers.h
``sg_ew_loop_to``) and the concatenation's copy finds them there (``sg_copy_block``).
Inside a step, a fused loop of a few thousand elements goes to the runtime's threads
(``SG_PAR_WORK_STEP``, sg_loops.h), each thread a share of whole vectors: every
element's value is the same on 1, 2 and 3 threads.
"""
import numpy as np
import pytest

import symgrad as sg

from thread_counts import by_threads  # tests/ is on sys.path (conftest.py)

RNG = np.random.default_rng(11)


@pytest.mark.parametrize("static", [True, False])
def test_the_parts_of_a_concatenation_in_a_step_are_written_in_its_stack(static):
    """Stacked, the concatenation's parts are written into the stack's entry (with a static
    shape, from the first step; without one, the first step's stack does not exist yet and
    the parts take memory of their own and are copied), and the values are NumPy's."""
    # the parts' widths are static either way (4 columns); the rows only when `static`
    X = sg.tensor("X", "float64", (6, 3, 4) if static else (None, None, 4))
    h0 = sg.tensor("h0", "float64", (3, 4) if static else (None, 4))

    def step(x, h):
        z = sg.concatenate([x * h, x + 2.0 * h, x * x - h], axis=1)
        return [z[:, :4] * 0.5 + x, z]

    (hs, zs), _ = sg.scan(step, sequences=X, outputs_info=[h0, None])
    f = sg.function([X, h0], [hs, zs])
    assert f.source.count("straight into its part of the loop's result") == 3
    Xv, hv = RNG.standard_normal((6, 3, 4)), RNG.standard_normal((3, 4))
    got_h, got_z = f(Xv, hv)
    h, zs_ref = hv, []
    for x in Xv:
        z = np.concatenate([x * h, x + 2.0 * h, x * x - h], axis=1)
        h = z[:, :4] * 0.5 + x
        zs_ref.append(z)
    ref = sg.function([X, h0], [hs, zs], mode="py")(Xv, hv)
    np.testing.assert_array_equal(got_z, ref[1])
    np.testing.assert_array_equal(got_h, ref[0])
    np.testing.assert_allclose(got_z, np.array(zs_ref), rtol=1e-14, atol=1e-15)


def test_a_part_read_elsewhere_and_a_final_value_only():
    """A part the step also reads is made in memory of its own (copied), the others in
    place; a concatenation kept only at the last step alternates between its two
    buffers, parts included."""
    X, h0 = sg.tensor("X", "float64", (None, None, 4)), sg.tensor("h0", "float64", (None, 4))

    def step(x, h):
        a = x * h
        z = sg.concatenate([a, x + h, x - h], axis=1)
        return [z[:, 2:6] + a, z]

    (hs, zs), _ = sg.scan(step, sequences=X, outputs_info=[h0, None])
    outs = [hs, zs[-1]]
    f = sg.function([X, h0], outs)
    assert f.source.count("straight into its part of the loop's result") == 2
    Xv, hv = RNG.standard_normal((7, 5, 4)), RNG.standard_normal((5, 4))
    for got, want in zip(f(Xv, hv), sg.function([X, h0], outs, mode="py")(Xv, hv)):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(f(Xv[:1], hv), sg.function([X, h0], outs, mode="py")(Xv[:1], hv)):
        np.testing.assert_array_equal(got, want)


def _lstm_grads(B, H, T, I, dtype, batch_known=True, wrt_x=True):
    # (the batch of X unknown when the graph is built, h0's known: as bench_lstm.py's)
    X = sg.tensor("X", dtype, (None, B if batch_known else None, I))
    Wx = sg.shared(RNG.uniform(-0.1, 0.1, (I, 4 * H)).astype(dtype), name="Wx")
    Wh = sg.shared(RNG.uniform(-0.1, 0.1, (H, 4 * H)).astype(dtype), name="Wh")
    b = sg.shared(RNG.uniform(-0.1, 0.1, 4 * H).astype(dtype), name="b")
    h0 = sg.zeros((B, H), dtype=dtype)

    def cell(x, h, c):
        z = x @ Wx + h @ Wh + b
        i, f, g, o = (sg.sigmoid(z[:, :H]), sg.sigmoid(z[:, H:2 * H]),
                      sg.tanh(z[:, 2 * H:3 * H]), sg.sigmoid(z[:, 3 * H:]))
        c = f * c + i * g
        return [o * sg.tanh(c), c]

    (hs, cs), _ = sg.scan(cell, sequences=X, outputs_info=[h0, h0])
    cost = (hs ** 2).sum() + cs[-1].sum()
    return X, [cost, hs] + sg.grad(cost, [Wx, Wh, b] + [X] * wrt_x)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_an_lstm_steps_loops_give_the_same_bits_on_1_2_and_3_threads(monkeypatch, dtype):
    """32 x 256 gates: each gate's loop (8,192 elements) is shared among the threads in a
    step, forward and backward; the results are those of one thread bit for bit, and the
    reference's to rounding."""
    X, outs = _lstm_grads(B=32, H=256, T=3, I=8, dtype=dtype)
    xv = RNG.standard_normal((3, 32, 8)).astype(dtype)
    got = by_threads(monkeypatch, [X], outs, [xv])
    want = sg.function([X], outs, mode="py")(xv)
    tol = 2e-5 if dtype == "float32" else 1e-12
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * max(1.0, np.abs(w).max()))
    f = sg.function([X], outs)
    assert "sg_ew_loop_to(" in f.source and "SG_PAR_WORK_STEP" in f.source


def test_a_recurrent_weights_gradient_is_one_gemm_that_the_update_takes_in():
    """BPTT sums ``h[t-1].T @ dz[t]`` from zero; after the loop that sum is one product over
    every step (rewrite/loops.py), begun at zero, so nothing is added to it, and SGD's
    ``W - lr * g`` becomes that gemm into ``W`` itself (rewrite/gemm.py). Values as the
    reference's (float64, a stable recurrence)."""
    from symgrad.graph import toposort
    from symgrad.ops.gemm import Gemm
    from symgrad.rewrite import rewrite

    X = sg.tensor("X", "float64", (None, 5, 3))
    Wx = sg.shared(RNG.standard_normal((3, 4)) * 0.3, name="Wx")
    Wh = sg.shared(RNG.standard_normal((4, 4)) * 0.3, name="Wh")
    h0 = sg.zeros((5, 4))
    hs, _ = sg.scan(lambda x, h: sg.tanh(x @ Wx + h @ Wh), sequences=X, outputs_info=[h0])
    cost = (hs ** 2).mean()
    g = sg.grad(cost, Wh)
    new = Wh - 0.1 * g
    gemms = [n for n in toposort(rewrite([new])) if isinstance(n.op, Gemm)]
    into_w = [n for n in gemms if len(n.inputs) == 3 and n.inputs[2] is Wh]
    assert len(into_w) == 1 and into_w[0].op.alpha == -0.1 and into_w[0].op.beta == 1.0
    assert not any(len(n.inputs) == 3 and n.inputs[2].owner is not None
                   and n.inputs[2].owner.op.name == "broadcast_to" for n in gemms)
    xv = RNG.standard_normal((6, 5, 3))
    want = sg.function([X], [new, g], mode="py")(xv)
    got = sg.function([X], [new, g])(xv)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # the gradient itself, by finite differences of the cost
    sg.verify_grad(lambda w: _rnn_cost(xv, Wx.get_value(), w), [Wh.get_value()], rng=RNG)


def _rnn_cost(xv, wx, wh):
    X = sg.constant(xv)
    hs, _ = sg.scan(lambda x, h: sg.tanh(x @ wx + h @ wh), sequences=X,
                    outputs_info=[sg.zeros((5, 4))])
    return (hs ** 2).mean()


def test_the_gradient_loop_stacks_dz_once_for_both_weight_gradients():
    """``x_t @ Wx`` is computed before the loop, so its cotangent in the step is
    ``sum_to(dz, shape(x_t @ Wx))`` (the shapes may differ: ``x`` of one row broadcast).
    The loop stacks ``dz`` once (it is the recurrent weight's factor too), and the input
    weight's gradient sums each step's entry after the loop -- nothing, here, a view -- not
    a second stack copied every step (as bench_lstm.py's step, which does not ask for the
    input's gradient; with it, the cotangent of x_t @ Wx is stacked for ``dX`` still).
    Values as the reference's."""
    from symgrad.graph import toposort
    from symgrad.ops.scan import Scan
    from symgrad.ops.shape import SumTo
    from symgrad.rewrite import rewrite

    X, outs = _lstm_grads(B=4, H=8, T=3, I=5, dtype="float64", batch_known=False,
                          wrt_x=False)
    loops = [n for n in toposort(rewrite(outs)) if isinstance(n.op, Scan) and "grad" in str(n.op)]
    assert len(loops) == 1
    inner = loops[0].op.inner.outputs
    assert not any(o.owner is not None and isinstance(o.owner.op, SumTo) for o in inner)
    xv = RNG.standard_normal((3, 4, 5))
    for got, want in zip(sg.function([X], outs)(xv), sg.function([X], outs, mode="py")(xv)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("steps", [0, 1, 4])
def test_the_gradient_loop_reads_the_forward_stack_after_its_initial_value_in_place(steps):
    """BPTT reads the previous values ``concatenate([h0[None], hs])[:-1]``: the forward loop
    writes ``hs`` straight after ``h0`` in that concatenation's block (nothing copied),
    also for a loop of no step or one; where ``hs`` is an output of the function too it
    keeps a block of its own. (``c``'s previous values are not read: its gradient through
    ``0.5 * c`` is a constant.) Values as the reference's."""
    X = sg.tensor("X", "float64", (None, 3, 2))
    Wx = sg.shared(RNG.standard_normal((2, 4)) * 0.4, name="Wx")
    Wh = sg.shared(RNG.standard_normal((4, 4)) * 0.4, name="Wh")
    h0 = sg.matrix("h0")

    def cell(x, h, c):
        c = sg.tanh(x @ Wx + h @ Wh) + 0.5 * c
        return [sg.tanh(c) * 0.9, c]

    (hs, cs), _ = sg.scan(cell, sequences=X, outputs_info=[h0, h0])
    cost = (hs ** 2).sum() + cs.sum()
    grads = sg.grad(cost, [Wx, Wh, h0])
    xv, hv = RNG.standard_normal((steps, 3, 2)), RNG.standard_normal((3, 4))
    for outs, placed in (([cost] + grads, 1), ([cost, hs] + grads, 0)):
        f = sg.function([X, h0], outs)
        assert f.source.count("written after its initial value") == placed
        for got, want in zip(f(xv, hv), sg.function([X, h0], outs, mode="py")(xv, hv)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_a_stack_after_its_initial_value_of_too_many_steps_is_a_shape_error():
    """n_steps known only when called: the block of n + 1 entries is computed without
    overflowing (INT64_MAX steps), and too large is a ShapeError naming the loop."""
    n, h0 = sg.scalar("n", dtype="int64"), sg.vector("h0")
    W = sg.shared(np.eye(2) * 0.5, name="W")
    hs, _ = sg.scan(lambda h: sg.tanh(h @ W), outputs_info=[h0], n_steps=n)
    cost = (hs ** 2).sum()
    outs = [cost] + sg.grad(cost, [h0, W])
    f = sg.function([n, h0], outs)
    assert f.source.count("written after its initial value") == 1
    for got, want in zip(f(3, np.ones(2)), sg.function([n, h0], outs, mode="py")(3, np.ones(2))):
        np.testing.assert_allclose(got, want, rtol=1e-13)
    for steps in (2**63 - 1, 2**62):
        with pytest.raises(sg.ShapeError, match=r"scan at .*test_scan_steps.py:\d+: .* too large"):
            f(steps, np.ones(2))


@pytest.mark.parametrize("mode", ["py", "c"])
def test_a_stack_too_large_for_memory_names_the_loop_in_every_mode(mode):
    # Mode "py" used to let NumPy's bare "Unable to allocate 7.11 PiB ..." through, with no
    # word of which op or line; mode "c" names the loop.
    n = sg.scalar("n", dtype="int64")
    hs, _ = sg.scan(lambda h: h * 0.5, outputs_info=sg.ones((1000,)), n_steps=n)
    f = sg.function([n], hs, mode=mode)
    assert f(2).shape == (2, 1000)
    with pytest.raises(MemoryError, match=r"^scan at .*test_scan_steps.py:\d+: out of memory"):
        f(10**12)
