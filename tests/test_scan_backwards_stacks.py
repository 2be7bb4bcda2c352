"""Stacks a loop keeps last step first (``Scan.flipped``; issue #13, item 7).

A gradient loop walks the steps backwards, so its stacks hold the last step first, and
its sequences are the forward values read backwards (``h[::-1]``). A weight gradient
summed over the steps is one product after the loop over those factors
(``rewrite.loops.accumulations_after_the_loop``); reshaping a backwards view for it
copied it at every call (1.6 MB in bench_lstm.py's step). The loop now keeps such a stack
in step order and the product reads both factors forwards, views that reshape keeps; a
stack that is read only backwards (a sequence's cotangents, a user's ``ys[::-1]``) is
kept so too (``rewrite.loops.stacks_read_backwards``).

Checked here: values against NumPy (plain, ``go_backwards``, ``truncate_gradient``; 6, 1
and 0 steps) in modes "py", "c" and "debug"; the same bits in the three modes and on 1, 2
and 3 threads; the workspace without the copy; a user's stack read backwards, also one
whose shape the first step tells; an output of the graph kept as it is; the gradient of
a loop that keeps a stack backwards; printing.
"""

import numpy as np
import pytest

import symgrad as sg
import symgrad.rewrite as rewrite
from symgrad.codegen import ir
from symgrad.graph import toposort
from symgrad.ops.scan import Scan
from symgrad.rewrite import loops
from thread_counts import by_threads  # tests/ is on sys.path (conftest.py)

RNG = np.random.default_rng(13)
B, I, H = 3, 4, 5


def _kernel_loops(f):
    return [s for s in f.kernel.steps if isinstance(s, ir.Loop)]


def _rnn(go_backwards=False, truncate=-1, linear=False, dtype="float64", batch=B):
    """An RNN's cost (weighted sum of the hidden states) and its gradients."""
    # entries of static shapes: with go_backwards, which factor to copy is chosen by them
    X = sg.tensor("X", dtype=dtype, shape=(None, batch, I))
    h0 = sg.tensor("h0", dtype=dtype, shape=(batch, H))
    Wx, Wh, C = sg.matrix("Wx", dtype=dtype), sg.matrix("Wh", dtype=dtype), \
        sg.tensor3("C", dtype=dtype)

    def step(x_t, h):
        z = x_t @ Wx + h @ Wh
        return z * 0.5 if linear else sg.tanh(z)

    hs, _ = sg.scan(step, sequences=X, outputs_info=h0, go_backwards=go_backwards,
                    truncate_gradient=truncate)
    cost = (hs * C).sum()
    ins = [X, h0, Wx, Wh, C]
    return ins, [cost, *sg.grad(cost, [X, h0, Wx, Wh])]


def _rnn_values(T, dtype="float64"):
    return [RNG.standard_normal((T, B, I)).astype(dtype),
            RNG.standard_normal((B, H)).astype(dtype),
            (RNG.standard_normal((I, H)) * 0.5).astype(dtype),
            (RNG.standard_normal((H, H)) * 0.5).astype(dtype),
            RNG.standard_normal((T, B, H)).astype(dtype)]


def _rnn_numpy(X, h0, Wx, Wh, C, go_backwards, truncate):
    """Cost and gradients (X, h0, Wx, Wh) by hand: back-propagation through time over the
    last ``truncate`` steps (all for -1), as Theano truncates."""
    S = X[::-1] if go_backwards else X
    T = len(S)
    hs, h = [], h0
    for s in S:
        h = np.tanh(s @ Wx + h @ Wh)
        hs.append(h)
    prev = [h0] + hs[:-1]
    dS, dWx, dWh, dh = np.zeros_like(S), np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(h0)
    back = T if truncate <= 0 else min(T, truncate)
    for t in range(T - 1, T - 1 - back, -1):
        dz = (dh + C[t]) * (1 - hs[t] ** 2)
        dWx += S[t].T @ dz
        dWh += prev[t].T @ dz
        dS[t] = dz @ Wx.T
        dh = dz @ Wh.T
    cost = sum((c * h).sum() for c, h in zip(C, hs))
    return [cost, dS[::-1] if go_backwards else dS, dh if back == T else np.zeros_like(h0),
            dWx, dWh]


# --------------------------------------------------------------------------- values

@pytest.mark.parametrize("mode", ["py", "c", "debug"])
@pytest.mark.parametrize("go_backwards,truncate", [(False, -1), (True, -1), (False, 3),
                                                    (True, 3)])
def test_gradients_through_stacks_kept_backwards_match_numpy(mode, go_backwards, truncate):
    ins, outs = _rnn(go_backwards, truncate)
    f = sg.function(ins, outs, mode=mode)
    for T in (6, 1, 0):
        vals = _rnn_values(T)
        got = f(*vals)
        want = _rnn_numpy(*vals, go_backwards, truncate)
        for i, (a, b) in enumerate(zip(got, want)):
            assert np.shape(a) == np.shape(b), (i, T)
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"output {i}, T={T}")


@pytest.mark.parametrize("go_backwards,truncate", [(False, -1), (True, -1), (False, 3)])
def test_the_gradient_loop_keeps_its_stacks_in_step_order(go_backwards, truncate):
    ins, outs = _rnn(go_backwards, truncate)
    f = sg.function(ins, outs)
    (back,) = [s for s in _kernel_loops(f) if "grad" in str(s.root.op)]
    stacks = [k for k in range(len(back.recurrent), len(back.outputs))]
    # dX (read in step order by the gradient of X) is kept last step first; without
    # go_backwards dz too, the factor of dWx's and dWh's products with x[::-1] and h[::-1]
    assert stacks and any(back.flipped[k] for k in stacks)
    if not go_backwards:
        assert all(back.flipped[k] for k in stacks)
    # the products after the loop reshape no backwards view (a copy), each a value in
    # step order (a forward loop's stack, the input, a stack kept so); but with
    # go_backwards, where dz pairs with x forwards and with h backwards, the smaller one:
    # x (4 a row) read backwards, not h (5)
    copied = []
    for n in toposort(f.graph.outputs):
        if n.op.name == "gemm":
            for x in n.inputs[:2]:
                if x.owner is not None and x.owner.op.name == "reshape":
                    if loops._backwards_view(x.owner.inputs[0]):
                        copied.append(x.owner.inputs[0])
    assert len(copied) == (1 if go_backwards else 0)
    for v in copied:
        while v.owner is not None:
            v = v.owner.inputs[0]
        assert v is ins[0]


# --------------------------------------------------------------------------- bits

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("go_backwards,truncate", [(False, -1), (True, -1), (False, 3)])
def test_the_same_bits_in_every_mode(dtype, go_backwards, truncate):
    # a linear step: NumPy's tanh and the kernel's may differ in the last bit, the
    # products and sums of the gradients must not
    ins, outs = _rnn(go_backwards, truncate, linear=True, dtype=dtype)
    vals = _rnn_values(6, dtype)
    got = {m: sg.function(ins, outs[1:], mode=m)(*vals) for m in ("py", "c", "debug")}
    for m in ("c", "debug"):
        for i, (a, b) in enumerate(zip(got[m], got["py"])):
            np.testing.assert_array_equal(a, b, err_msg=f"mode {m}, gradient {i}")


def test_the_same_bits_on_every_thread_count(monkeypatch):
    ins, outs = _rnn(linear=True, dtype="float32", batch=16)
    big = [RNG.standard_normal((20, 16, I)), RNG.standard_normal((16, H)),
           RNG.standard_normal((I, H)) * 0.5, RNG.standard_normal((H, H)) * 0.5,
           RNG.standard_normal((20, 16, H))]
    vals = [v.astype("float32") for v in big]
    got = by_threads(monkeypatch, ins, outs[1:], vals)
    ref = sg.function(ins, outs[1:], mode="py")(*vals)
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- no copy

def _unflipped(monkeypatch):
    """The rewrites as before: no stack kept backwards."""
    monkeypatch.setattr(loops, "_stacks_to_flip", lambda *a: set())
    monkeypatch.setattr(rewrite, "stacks_read_backwards", lambda outputs: list(outputs))


def test_the_weight_gradient_product_copies_no_backwards_view(monkeypatch):
    T, Bb, Hh = 40, 16, 64
    X, h0, Wx, Wh = sg.tensor3("X"), sg.matrix("h0"), sg.matrix("Wx"), sg.matrix("Wh")
    hs, _ = sg.scan(lambda x_t, h: sg.tanh(x_t @ Wx + h @ Wh), sequences=X, outputs_info=h0)
    cost = (hs ** 2).sum()
    ins, outs = [X, h0, Wx, Wh], sg.grad(cost, [Wh])
    vals = [RNG.standard_normal((T, Bb, 8)), RNG.standard_normal((Bb, Hh)),
            RNG.standard_normal((8, Hh)) * 0.3, RNG.standard_normal((Hh, Hh)) * 0.1]
    f = sg.function(ins, outs)
    got = f(*vals)
    flipped = sg.explain(f, *vals).workspace_bytes
    with monkeypatch.context() as m:
        _unflipped(m)
        g = sg.function(ins, outs)
        before = g(*vals)
        copied = sg.explain(g, *vals).workspace_bytes
    assert not any(any(s.flipped) for s in _kernel_loops(g))
    # the copy of h[::-1] (T * B * H float64) for dWh's product is gone
    assert flipped <= copied - T * Bb * Hh * 8, (flipped, copied)
    for a, b in zip(got, before):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_an_lstm_s_weight_gradients_read_forward_views():
    # bench_lstm.py's model, small: dz is kept in step order, and dWx's and dWh's
    # products read X and the previous hidden states forwards
    T, Bb, Ii, Hh = 5, 2, 3, 4
    Wx = sg.shared((RNG.standard_normal((Ii, 4 * Hh)) * 0.5).astype("float32"), name="Wx")
    Wh = sg.shared((RNG.standard_normal((Hh, 4 * Hh)) * 0.5).astype("float32"), name="Wh")
    X = sg.tensor3("X", dtype="float32")
    h0 = sg.zeros((Bb, Hh), dtype="float32")

    def cell(x_t, h, c):
        z = x_t @ Wx + h @ Wh
        i, f = sg.sigmoid(z[:, :Hh]), sg.sigmoid(z[:, Hh:2 * Hh])
        g, o = sg.tanh(z[:, 2 * Hh:3 * Hh]), sg.sigmoid(z[:, 3 * Hh:])
        c = f * c + i * g
        return [o * sg.tanh(c), c]

    (hs, _), _ = sg.scan(cell, sequences=X, outputs_info=[h0, h0])
    cost = (hs ** 2).mean()
    grads = sg.grad(cost, [Wx, Wh])
    f = sg.function([X], grads)
    (back,) = [s for s in _kernel_loops(f) if "grad" in str(s.root.op)]
    assert any(back.flipped)
    products = [n for n in toposort(f.graph.outputs) if n.op.name == "gemm"]
    assert len(products) == 2
    for n in products:
        for x in n.inputs[:2]:
            assert x.owner.op.name == "reshape"
            assert not loops._backwards_view(x.owner.inputs[0])
    Xv = RNG.standard_normal((T, Bb, Ii)).astype("float32")
    plain = sg.function([X], grads, rewrite="basic", mode="py")
    for a, b in zip(f(Xv), plain(Xv)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


# --------------------------------------------------------------------------- any stack read backwards

def test_a_user_s_stack_read_backwards_is_kept_backwards():
    X, h0, W = sg.tensor3("X"), sg.matrix("h0"), sg.matrix("W")

    def step(x_t, h):
        h = sg.tanh(x_t @ W + h)
        return [h, h * x_t.sum()]

    (hs, ys), _ = sg.scan(step, sequences=X, outputs_info=[h0, None])
    T = ys.shape[0]
    out = ys[::-1].reshape((T * ys.shape[1], H)) @ W.T + ys[::-1, 1:].sum()
    outs = [out, sg.grad(out.sum(), W), hs.sum()]
    f = sg.function([X, h0, W], outs)
    (fwd,) = [s for s in _kernel_loops(f) if "grad" not in str(s.root.op)]
    assert fwd.flipped == [False, True]
    py = sg.function([X, h0, W], outs, mode="py")
    for T in (4, 1, 0):
        Xv, h0v, Wv = RNG.standard_normal((T, B, I)), RNG.standard_normal((B, H)), \
            RNG.standard_normal((I, H)) * 0.5
        h, ysv = h0v, []
        for x in Xv:
            h = np.tanh(x @ Wv + h)
            ysv.append(h * x.sum())
        ysv = np.array(ysv).reshape((T, B, H))[::-1]
        want = ysv.reshape((T * B, H)) @ Wv.T + ysv[:, 1:].sum()
        got = f(Xv, h0v, Wv)
        np.testing.assert_allclose(got[0], want, rtol=1e-12, atol=1e-12)
        for a, b in zip(got, py(Xv, h0v, Wv)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_a_stack_whose_shape_the_first_step_tells_kept_backwards():
    x, v = sg.matrix("x"), sg.vector("v")
    ys, _ = sg.map(lambda x_t, v: sg.exp(x_t.sum() * v), sequences=x, non_sequences=v)
    f = sg.function([x, v], ys[::-1] * 2.0)
    (loop,) = _kernel_loops(f)
    assert loop.flipped == [True]
    for T, n in ((4, 3), (1, 2), (0, 5)):
        xv, vv = RNG.standard_normal((T, 2)), RNG.standard_normal(n)
        got = f(xv, vv)
        assert got.shape == (T, n)
        np.testing.assert_allclose(got, np.exp(xv.sum(axis=1)[::-1, None] * vv) * 2.0,
                                   rtol=1e-14)


def test_a_stack_the_graph_returns_stays_in_step_order():
    x = sg.matrix("x")
    ys, _ = sg.map(lambda x_t: x_t * 3.0, sequences=x)
    f = sg.function([x], [ys, ys[::-1]])
    (loop,) = _kernel_loops(f)
    assert loop.flipped == [False]
    xv = RNG.standard_normal((3, 2))
    a, b = f(xv)
    np.testing.assert_array_equal(a, xv * 3.0)
    np.testing.assert_array_equal(b, (xv * 3.0)[::-1])


def test_the_gradient_of_a_loop_that_keeps_a_stack_backwards():
    # a graph already rewritten (its loop keeps ys last step first) differentiated again
    x, w = sg.matrix("x"), sg.vector("w")
    ys, _ = sg.map(lambda x_t, w: sg.tanh(x_t * w), sequences=x, non_sequences=w)
    c = sg.constant(np.arange(8.0).reshape(4, 2))
    cost = (ys[::-1] * c).sum()
    (flipped,) = loops.stacks_read_backwards([cost])
    (node,) = [n for n in toposort([flipped]) if isinstance(n.op, Scan)]
    assert node.op.flipped == (True,)
    xv, wv = RNG.standard_normal((4, 2)), RNG.standard_normal(2)
    want = sg.function([x, w], [cost, *sg.grad(cost, [x, w])], mode="py")(xv, wv)
    for mode in ("py", "c"):
        got = sg.function([x, w], [flipped, *sg.grad(flipped, [x, w])], mode=mode)(xv, wv)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


def test_printing_says_which_stacks_are_kept_backwards():
    ins, outs = _rnn()
    f = sg.function(ins, outs)
    assert "(stacked last step first)" in sg.debugprint(f)
    x = sg.matrix("x")
    ys, _ = sg.map(lambda x_t: x_t * 3.0, sequences=x)
    assert "stacked last step first" not in sg.debugprint(sg.function([x], ys))
