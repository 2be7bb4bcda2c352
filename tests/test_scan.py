"""sg.scan and sg.map in mode "py" (the NumPy reference) and mode "c" (the loop runs
inside the compiled kernel): values against NumPy loops, gradients (back-propagation
through time) against finite differences, second order, jvp, truncate_gradient, the
loop-based jacobian/hessian, printing, and the errors."""

import collections
import re
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symgrad as sg

RNG = np.random.default_rng(0)


@pytest.fixture(params=["py", "c"])
def mode(request):
    return request.param


def _f(mode, inputs, outputs, **kw):
    return sg.function(inputs, outputs, mode=mode, **kw)


def _rnn_ref(X, h0, U, W):
    h, out = h0, []
    for x in X:
        h = np.tanh(x @ U + h @ W)
        out.append(h)
    return np.array(out).reshape((len(X), len(h0)))


# --------------------------------------------------------------------------- values

def test_rnn_with_a_shared_weight_read_inside_the_step(mode):
    Wv = RNG.standard_normal((3, 3)) * 0.5
    W = sg.shared(Wv, name="W")
    X, h0, U = sg.matrix("X"), sg.vector("h0"), sg.matrix("U")
    hs, updates = sg.scan(lambda x_t, h, U: sg.tanh(x_t @ U + h @ W), sequences=X,
                          outputs_info=h0, non_sequences=U, name="rnn")
    assert isinstance(updates, collections.OrderedDict) and not updates
    assert hs.type == sg.TensorType("float64", (None, 3))   # W's static length
    Xv, h0v, Uv = RNG.standard_normal((5, 2)), RNG.standard_normal(3), RNG.standard_normal((2, 3))
    np.testing.assert_allclose(_f(mode, [X, h0, U], hs)(Xv, h0v, Uv), _rnn_ref(Xv, h0v, Uv, Wv),
                               rtol=1e-12)
    # the shared variable is an explicit input of the node: its new value is seen
    W.set_value(Wv * 2)
    np.testing.assert_allclose(_f(mode, [X, h0, U], hs)(Xv, h0v, Uv), _rnn_ref(Xv, h0v, Uv, Wv * 2),
                               rtol=1e-12)
    (node,) = [n for n in sg.graph.toposort([hs]) if n.op.name == "scan"]
    assert any(i is W for i in node.inputs)


def test_several_outputs_of_different_dtypes_and_ranks_and_one_not_fed_back(mode):
    x = sg.vector("x")

    def step(x_t, total, count):
        outer = sg.outer(sg.stack([x_t, total]), sg.stack([x_t, 1.0]))   # not fed back
        return [total + x_t, count + 1, outer]

    (totals, counts, outers), _ = sg.scan(
        step, sequences=x, outputs_info=[sg.constant(0.0), sg.constant(0, dtype="int32"), None])
    assert (totals.dtype, counts.dtype, outers.dtype) == ("float64", "int32", "float64")
    assert (totals.ndim, counts.ndim, outers.ndim) == (1, 1, 3)
    xv = np.array([1.0, -2.0, 0.5])
    t, c, o = _f(mode, [x], [totals, counts, outers])(xv)
    np.testing.assert_allclose(t, np.cumsum(xv))
    np.testing.assert_array_equal(c, np.array([1, 2, 3], dtype="int32"))
    prev = np.concatenate([[0.0], np.cumsum(xv)[:-1]])
    want = np.stack([np.outer([a, p], [a, 1.0]) for a, p in zip(xv, prev)])
    np.testing.assert_allclose(o, want)


def test_outputs_info_none_and_map(mode):
    X = sg.matrix("X")
    w = sg.vector("w")
    rows, _ = sg.scan(lambda r: (r * w).sum(), sequences=X)
    mapped, upd = sg.map(lambda r, w: r * w, X, non_sequences=w)
    assert not upd
    Xv, wv = RNG.standard_normal((4, 3)), RNG.standard_normal(3)
    got = _f(mode, [X, w], [rows, mapped])(Xv, wv)
    np.testing.assert_allclose(got[0], Xv @ wv)
    np.testing.assert_allclose(got[1], Xv * wv)


def test_symbolic_n_steps_without_sequences(mode):
    n = sg.scalar("n", dtype="int64")
    x = sg.vector("x")
    powers, _ = sg.scan(lambda p, x: p * x, outputs_info=sg.ones_like(x), non_sequences=x,
                        n_steps=n)
    f = _f(mode, [n, x], powers)
    xv = np.array([2.0, 3.0])
    np.testing.assert_allclose(f(4, xv), np.stack([xv ** k for k in range(1, 5)]))
    assert f(1, xv).shape == (1, 2)


def test_zero_steps_give_an_empty_stack(mode):
    n = sg.scalar("n", dtype="int64")
    h0 = sg.vector("h0")
    hs, _ = sg.scan(lambda h: sg.tanh(h), outputs_info=h0, n_steps=n)
    out = _f(mode, [n, h0], hs)(0, np.ones(3))
    assert out.shape == (0, 3) and out.dtype == np.float64
    X = sg.matrix("X")
    ys, _ = sg.map(lambda r: sg.outer(r, r), X)          # per-step shape not static
    assert _f(mode, [X], ys)(np.zeros((0, 4))).shape == (0, 4, 4)
    # and the gradient of a loop of zero steps is zeros of the right shapes
    g = sg.grad(hs.sum() + h0.sum(), h0)
    np.testing.assert_array_equal(_f(mode, [n, h0], g)(0, np.ones(3)), np.ones(3))


def test_go_backwards_and_n_steps_with_sequences(mode):
    x = sg.vector("x")
    acc, _ = sg.scan(lambda x_t, a: 0.5 * a + x_t, sequences=x, outputs_info=sg.constant(0.0),
                     go_backwards=True)
    xv = np.array([1.0, 2.0, 3.0, 4.0])
    want, a = [], 0.0
    for v in xv[::-1]:
        a = 0.5 * a + v
        want.append(a)
    np.testing.assert_allclose(_f(mode, [x], acc)(xv), want)
    first, _ = sg.scan(lambda x_t: x_t * 2, sequences=x, n_steps=2)
    np.testing.assert_allclose(_f(mode, [x], first)(xv), [2.0, 4.0])


def test_a_loop_inside_a_loop(mode):
    X = sg.matrix("X")

    def row_cumsum(r):
        out, _ = sg.scan(lambda v, a: a + v, sequences=r, outputs_info=sg.constant(0.0))
        return out

    sums, _ = sg.map(row_cumsum, X)
    Xv = RNG.standard_normal((3, 4))
    np.testing.assert_allclose(_f(mode, [X], sums)(Xv), np.cumsum(Xv, axis=1))
    sg.verify_grad(lambda X: (sg.map(row_cumsum, X)[0] ** 2).sum(), [Xv], mode=mode)


def test_a_function_with_a_loop_pickles(mode):
    x = sg.vector("x")
    acc, _ = sg.scan(lambda x_t, a: a * 0.5 + x_t, sequences=x, outputs_info=sg.constant(0.0))
    f = _f(mode, [x], [acc, sg.grad(acc.sum(), x)])
    g = pickle.loads(pickle.dumps(f))
    xv = np.array([1.0, 2.0, 3.0])
    for a, b in zip(f(xv), g(xv)):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- gradients

def _rnn_cost(X, h0, U, W):
    hs, _ = sg.scan(lambda x_t, h: sg.tanh(x_t @ U + h @ W), sequences=X, outputs_info=h0)
    return (hs * sg.arange(1.0, 1.0 + 3.0)).sum() + (hs[-1] ** 2).sum()


def test_bptt_matches_finite_differences_for_sequences_initial_values_and_weights(mode):
    vals = [RNG.standard_normal((4, 2)), RNG.standard_normal(3), RNG.standard_normal((2, 3)),
            RNG.standard_normal((3, 3)) * 0.5]
    sg.verify_grad(_rnn_cost, vals, mode=mode)


def test_gradient_of_a_shared_parameter_read_inside_the_step(mode):
    Wv = RNG.standard_normal((3, 3)) * 0.5
    W = sg.shared(Wv.copy(), name="W")
    X, h0, U = sg.matrix("X"), sg.vector("h0"), sg.matrix("U")
    cost = _rnn_cost(X, h0, U, W)
    gW = sg.grad(cost, W)
    assert gW.name == "d(cost)/d(W)"
    Xv, h0v, Uv = RNG.standard_normal((4, 2)), RNG.standard_normal(3), RNG.standard_normal((2, 3))
    got = _f(mode, [X, h0, U], gW)(Xv, h0v, Uv)
    c = _f(mode, [X, h0, U], cost)
    num, eps = np.zeros_like(Wv), 1e-6
    for idx in np.ndindex(Wv.shape):
        for sign in (1, -1):
            w = Wv.copy()
            w[idx] += sign * eps
            W.set_value(w)
            num[idx] += sign * float(c(Xv, h0v, Uv)) / (2 * eps)
    np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-8)


def test_gradient_reaches_every_output_and_integer_outputs_are_skipped(mode):
    def fun(x, a):
        def step(x_t, s, k):
            return [s * a + x_t, k + 1, sg.sin(x_t * s)]
        (s, _, z), _ = sg.scan(step, sequences=x,
                               outputs_info=[sg.constant(0.0), sg.constant(0, "int64"), None])
        return s.sum() + z.sum()

    sg.verify_grad(fun, [RNG.standard_normal(5), np.array(0.7)], mode=mode)


def test_go_backwards_gradient(mode):
    def fun(X, h0):
        hs, _ = sg.scan(lambda x_t, h: sg.tanh(x_t + h * 0.5), sequences=X, outputs_info=h0,
                        go_backwards=True)
        return (hs ** 2).sum()

    sg.verify_grad(fun, [RNG.standard_normal((4, 3)), RNG.standard_normal(3)], mode=mode)


def test_second_order_grad_of_grad_through_a_scan(mode):
    def fun(X, h0, U, W):
        gU = sg.grad(_rnn_cost(X, h0, U, W), U)
        return (gU ** 2).sum()

    vals = [RNG.standard_normal((3, 2)), RNG.standard_normal(3), RNG.standard_normal((2, 3)),
            RNG.standard_normal((3, 3)) * 0.5]
    sg.verify_grad(fun, vals, mode=mode, abs_tol=1e-4, rel_tol=1e-4)


def test_hessian_through_a_scan_matches_finite_differences_of_the_gradient(mode):
    x = sg.vector("x")
    a = sg.tensor("a", shape=(3,))
    ys, _ = sg.scan(lambda x_t, h: sg.tanh(h * a + x_t), sequences=x,
                    outputs_info=sg.zeros((3,)))
    cost = (ys ** 2).sum()
    H = _f(mode, [x, a], sg.hessian(cost, a))
    g = _f(mode, [x, a], sg.grad(cost, a))
    xv, av = RNG.standard_normal(4), RNG.standard_normal(3)
    num = np.stack([(g(xv, av + e) - g(xv, av - e)) / 2e-6 for e in np.eye(3) * 1e-6], axis=1)
    np.testing.assert_allclose(H(xv, av), num, rtol=1e-5, atol=1e-7)


def test_jvp_through_a_scan(mode):
    X, h0, U = sg.matrix("X"), sg.vector("h0"), sg.matrix("U")
    W = sg.constant(RNG.standard_normal((3, 3)) * 0.5)
    tU = RNG.standard_normal((2, 3))
    hs, _ = sg.scan(lambda x_t, h: sg.tanh(x_t @ U + h @ W), sequences=X, outputs_info=h0)
    t = sg.jvp(hs, U, sg.constant(tU))
    Xv, h0v, Uv = RNG.standard_normal((4, 2)), RNG.standard_normal(3), RNG.standard_normal((2, 3))
    f = _f(mode, [X, h0, U], hs)
    num = (f(Xv, h0v, Uv + 1e-6 * tU) - f(Xv, h0v, Uv - 1e-6 * tU)) / 2e-6
    np.testing.assert_allclose(_f(mode, [X, h0, U], t)(Xv, h0v, Uv), num, rtol=1e-6, atol=1e-8)


def test_truncate_gradient_back_propagates_through_the_last_steps_only(mode):
    T, k = 6, 2
    W = sg.constant(RNG.standard_normal((3, 3)) * 0.5)
    X = sg.matrix("X")
    h0 = sg.vector("h0")

    def step(x_t, h):
        return sg.tanh(x_t + h @ W)

    hs, _ = sg.scan(step, sequences=X, outputs_info=h0, truncate_gradient=k)
    cost = (hs ** 2).sum()
    gX, gh0 = sg.grad(cost, [X, h0])
    # the same, by hand: the first T - k steps' state held constant, the cost of the last k
    early, _ = sg.scan(step, sequences=X[:T - k], outputs_info=h0)
    late, _ = sg.scan(step, sequences=X[T - k:], outputs_info=sg.stop_gradient(early[-1]))
    g_late = sg.grad((late ** 2).sum(), X)
    Xv, h0v = RNG.standard_normal((T, 3)), RNG.standard_normal(3)
    got_X, got_h0, want = _f(mode, [X, h0], [gX, gh0, g_late])(Xv, h0v)
    np.testing.assert_allclose(got_X, want, rtol=1e-12, atol=1e-14)
    assert np.all(got_X[:T - k] == 0) and np.any(got_X[T - k:] != 0)
    np.testing.assert_array_equal(got_h0, np.zeros(3))
    # a loop no longer than the truncation gets the full gradient
    full = sg.grad(cost, h0)
    short_X = Xv[:k]
    hs_full, _ = sg.scan(step, sequences=X, outputs_info=h0)
    np.testing.assert_allclose(_f(mode, [X, h0], full)(short_X, h0v),
                               _f(mode, [X, h0], sg.grad((hs_full ** 2).sum(), h0))(short_X, h0v),
                               rtol=1e-12)


def test_the_backward_loop_is_a_printable_scan_that_names_its_forward_loop(mode):
    X, h0 = sg.matrix("X"), sg.vector("h0")
    W = sg.shared(np.eye(3) * 0.5, name="W")
    hs, _ = sg.scan(lambda x_t, h: sg.tanh(x_t + h @ W), sequences=X, outputs_info=h0,
                    name="rnn")
    gW = sg.grad((hs ** 2).sum(), W)
    text = sg.debugprint(gW)
    line = next(ln for ln in text.splitlines() if "scan{grad of rnn}" in ln)
    fwd_line = _line_of("hs, _ = sg.scan(lambda x_t, h: sg.tanh(x_t + h @ W), sequences=X, o")
    assert f"\u2190 grad of scan (test_scan.py:{fwd_line})" in line
    assert "inner graphs:" in text
    assert "step: inputs X[t], h0[t-1]" in text         # the forward step, by names
    assert "scan{rnn} [id" in text and "scan{grad of rnn} [id" in text
    # an ordinary graph: it compiles (mode py) and differentiates again
    assert _f(mode, [X, h0], gW)(np.ones((2, 3)), np.zeros(3)).shape == (3, 3)


def _line_of(text):
    with open(__file__) as f:
        for i, line in enumerate(f, 1):
            if text in line and "_line_of" not in line:
                return i
    raise AssertionError(text)


def test_greedy_decoding_feeds_its_argmax_back_and_differentiates_the_chosen_log_probs(mode):
    # The step picks its next token with a stop_gradient'd argmax and feeds it back (an int
    # recurrent output, read as an embedding index): the gradient of the chosen tokens' log
    # probabilities must be that of teacher forcing with those tokens.
    rng = np.random.default_rng(4)
    E, W, O = (sg.shared(rng.standard_normal(s) * 0.5, name=n)
               for s, n in (((5, 3), "E"), ((3, 3), "W"), ((3, 5), "O")))

    def cell(tok, h):
        h = sg.tanh(E[tok] + h @ W)
        return h, sg.nn.log_softmax(h @ O)

    def greedy(tok, h):
        h, logp = cell(tok, h)
        nxt = sg.stop_gradient((h @ O).argmax(axis=1))
        return nxt, h, logp[sg.arange(tok.shape[0]), nxt]

    start = sg.vector("start", dtype="int64")
    (toks, _, lps), _ = sg.scan(greedy, outputs_info=[start, sg.zeros((2, 3)), None],
                                n_steps=4)
    params = [E, W, O]
    f = _f(mode, [start], [toks, *sg.grad(-lps.sum(), params)])
    chosen, *got = f(np.array([1, 3]))

    inputs, targets = sg.matrix("inputs", dtype="int64"), sg.matrix("targets", dtype="int64")

    def forced(tok, target, h):
        h, logp = cell(tok, h)
        return h, logp[sg.arange(tok.shape[0]), target]

    (_, lps2), _ = sg.scan(forced, sequences=[inputs, targets],
                           outputs_info=[sg.zeros((2, 3)), None])
    g = _f(mode, [inputs, targets], sg.grad(-lps2.sum(), params))
    want = g(np.concatenate([[[1, 3]], chosen[:-1]]), chosen)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- jacobian

def _per_example_losses(X, y, W, b):
    logits = sg.tanh(X @ W + b)
    return sg.nn.cross_entropy(logits, y)


@pytest.mark.parametrize("batch", [1, 5, 8])
def test_jacobian_of_per_example_losses_equals_the_gradients_one_at_a_time(batch, mode):
    W = sg.shared(RNG.standard_normal((4, 3)), name="W")
    b = sg.shared(RNG.standard_normal(3), name="b")
    X, y = sg.matrix("X"), sg.vector("y", dtype="int64")
    losses = _per_example_losses(X, y, W, b)
    assert losses.type.shape == (None,)                 # the batch size is not known
    JW, Jb = sg.jacobian(losses, [W, b])
    f = _f(mode, [X, y], [JW, Jb])
    x1, y1 = sg.tensor("x1", shape=(1, 4)), sg.vector("y1", dtype="int64")
    one = _f(mode, [x1, y1], sg.grad(_per_example_losses(x1, y1, W, b)[0], [W, b]))
    Xv = RNG.standard_normal((batch, 4))
    yv = RNG.integers(0, 3, size=batch)
    jW, jb = f(Xv, yv)
    assert jW.shape == (batch, 4, 3) and jb.shape == (batch, 3)
    for i in range(batch):
        gW, gb = one(Xv[i:i + 1], yv[i:i + 1])
        np.testing.assert_allclose(jW[i], gW, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(jb[i], gb, rtol=1e-12, atol=1e-14)


def test_jacobian_of_a_matrix_valued_expression_and_the_hessian_of_unknown_size(mode):
    x = sg.vector("x")
    A = sg.matrix("A")
    J = sg.jacobian(sg.outer(x, x) * 2, x)
    xv = np.array([1.0, 2.0, 3.0])
    got = _f(mode, [x], J)(xv)
    want = 2 * (np.einsum("ik,j->ijk", np.eye(3), xv) + np.einsum("i,jk->ijk", xv, np.eye(3)))
    np.testing.assert_allclose(got, want)
    H = sg.hessian(((A @ x) ** 2).sum(), x)
    Av = RNG.standard_normal((4, 3))
    np.testing.assert_allclose(_f(mode, [A, x], H)(Av, xv), 2 * Av.T @ Av, rtol=1e-12)
    # an empty batch: an empty Jacobian
    assert _f(mode, [x], sg.jacobian(x * 2, x))(np.zeros(0)).shape == (0, 0)


# --------------------------------------------------------------------------- updates

def test_random_stream_state_advances_inside_the_loop_and_comes_back_as_an_update(mode):
    state = sg.shared(np.array(3.0), name="state")
    state.is_random_state = True          # what a random stream's state says of itself
    x = sg.vector("x")
    out, updates = sg.scan(lambda x_t: (x_t * state, {state: state + 1}), sequences=x)
    assert list(updates) == [state]
    f = _f(mode, [x], out, updates=updates)
    np.testing.assert_allclose(f(np.ones(4)), [3.0, 4.0, 5.0, 6.0])
    assert float(state.get_value()) == 7.0
    np.testing.assert_allclose(f(np.ones(2)), [7.0, 8.0])


# --------------------------------------------------------------------------- errors

def test_an_empty_outputs_info_is_a_map_as_in_theano(mode):
    # Theano reads outputs_info=[] as "nothing fed back"; it used to be an error here
    # ("returned 2 outputs but outputs_info has 0 entries")
    x = sg.vector("x")
    for info in ([], ()):
        (a, b), _ = sg.scan(lambda v: [v * 2, v + 1], sequences=x, outputs_info=info)
        got = _f(mode, [x], [a, b])(np.arange(3.0))
        np.testing.assert_array_equal(got[0], [0, 2, 4])
        np.testing.assert_array_equal(got[1], [1, 2, 3])


def test_a_step_may_return_its_updates_before_its_outputs_as_in_theano():
    x = sg.vector("x")
    got = []
    for first in (False, True):
        rng = sg.random.RandomStream(0)

        def step(v):
            out = v + rng.uniform()
            upd = {rng.state: rng.state + np.array([0, 5])}
            return (upd, out) if first else (out, upd)
        out, upd = sg.scan(step, sequences=x)
        assert list(upd) == [rng.state]
        got.append(sg.function([x], out)(np.zeros(3)))
    np.testing.assert_array_equal(got[0], got[1])


def test_wrong_number_of_outputs_names_the_step_and_the_line():
    x = sg.vector("x")

    def step(x_t, a):
        return [a + x_t, a * x_t]

    with pytest.raises(ValueError, match=r"returned 2 outputs but outputs_info has 1 entry") as e:
        sg.scan(step, sequences=x, outputs_info=[sg.constant(0.0)])
    msg = str(e.value)
    assert f"step at {__file__}:" in msg and f"(at {__file__}:" in msg


def test_recurrent_output_must_keep_the_type_of_its_initial_value():
    x = sg.vector("x")
    with pytest.raises(TypeError, match=r"output 0 .* is float32.* but its initial value "
                                        r"outputs_info\[0\] is float64.*\.astype\('float64'\)"):
        sg.scan(lambda x_t, a: (a + x_t).astype("float32"), sequences=x,
                outputs_info=sg.constant(0.0))
    with pytest.raises(TypeError, match=r"is float64\[\?\].*initial value outputs_info\[0\] is "
                                        r"float64\[\]"):
        sg.scan(lambda x_t, a: a + x, sequences=x, outputs_info=sg.constant(0.0))
    h0 = sg.tensor("h0", shape=(3,))
    W = sg.tensor("W", shape=(3, 4))
    with pytest.raises(TypeError, match=r"float64\[4\].*outputs_info\[0\] is float64\[3\]"):
        sg.scan(lambda h: h @ W, outputs_info=h0, n_steps=2)
    with pytest.raises(TypeError) as err:
        sg.scan(lambda h: h @ W, outputs_info=h0, n_steps=3)  # the line the error names
    assert str(err.value).endswith(f"(at {__file__}:{_line_of('# the line the error names')})")
    assert "make the initial value the shape of one step's value" in str(err.value)
    # the advice fits what differs: a number 0 as the initial value of a float output
    with pytest.raises(TypeError, match=r"is float64\[\].*outputs_info\[0\] is int64\[\]; .*"
                                        r"give the initial value the output's dtype, "
                                        r"sg.cast\(h0, 'float64'\) \(for a number: 0.0, not 0\)"):
        sg.scan(lambda x_t, a: a + x_t, sequences=x, outputs_info=0)


def test_a_step_function_that_cannot_take_the_arguments_says_what_scan_passes():
    # A Theano user who forgets an argument used to get Python's bare "takes 1
    # positional argument but 2 were given", with no word of scan's calling convention.
    x, h0 = sg.vector("x"), sg.constant(0.0)
    with pytest.raises(TypeError) as e:
        sg.scan(lambda x_t: x_t * 2, sequences=x, outputs_info=h0)  # the line named
    msg = str(e.value)
    assert f"step function (<lambda> at {__file__}:" in msg
    assert "cannot be called with the 2 arguments scan passes" in msg
    assert ("1 slice of the sequences" in msg and "1 previous value of the recurrent outputs"
            in msg and "then 0 non-sequences" in msg)
    assert msg.endswith(f"(at {__file__}:{_line_of('# the line named')})")
    W = sg.matrix("W")
    with pytest.raises(TypeError, match=r"the 3 arguments scan passes \(too many positional "
                                        r"arguments\).*2 slices.*0 previous values.*then 1 "
                                        r"non-sequence;"):
        sg.scan(lambda a, b: a + b, sequences=[x, x], non_sequences=W)
    # what the step itself raises stays its own error
    def step(x_t):
        raise TypeError("the user's own")
    with pytest.raises(TypeError, match="^the user's own$"):
        sg.scan(step, sequences=x)
    # *args steps and steps without a signature (a ufunc) are called as they are
    assert sg.scan(lambda *a: a[0] + a[1], sequences=[x, x])[0].ndim == 1
    assert sg.scan(np.negative, sequences=[np.arange(3.0)])[0].type.shape == (3,)


def _tap_reference(xv, taps, backwards):
    """Theano's taps: step t reads x[t + k] per tap k, for every t where all are inside x."""
    low, high = min(min(taps), 0), max(max(taps), 0)
    ts = list(range(-low, len(xv) - high))
    return ts[::-1] if backwards else ts


@pytest.mark.parametrize("taps", [[-1, 0], [0, 1], [-3, 2, -1], [-1], [1], 2, [0]])
@pytest.mark.parametrize("backwards", [False, True])
def test_sequence_taps_read_theano_s_offsets_and_their_gradient(mode, taps, backwards):
    # dict(input=x, taps=...) used to fail with "a constant must be numeric or bool, got an
    # array of object"
    x = sg.vector("x")
    tl = taps if isinstance(taps, list) else [taps]
    out, _ = sg.scan(lambda *a: sum(v * 10.0 ** i for i, v in enumerate(a)),
                     sequences=dict(input=x, taps=taps), go_backwards=backwards)
    f = _f(mode, [x], [out, sg.grad((out ** 2).sum(), x)])
    for n in (8, 3, 1, 0):
        xv = RNG.standard_normal(n)
        ts = _tap_reference(xv, tl, backwards)
        ref = np.array([sum(xv[t + k] * 10.0 ** i for i, k in enumerate(tl)) for t in ts])
        gref = np.zeros(n)
        for t, r in zip(ts, ref):
            for i, k in enumerate(tl):
                gref[t + k] += 2 * r * 10.0 ** i
        got, g = f(xv)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-13)
        np.testing.assert_allclose(g, gref, rtol=1e-13)


def test_sequence_taps_mix_with_plain_sequences_recurrent_outputs_and_non_sequences(mode):
    x, y, w = sg.vector("x"), sg.matrix("y"), sg.scalar("w")
    out, _ = sg.scan(lambda prev, cur, y_t, h, w: h * w + prev - cur + y_t.sum(),
                     sequences=[dict(input=x, taps=[-1, 0]), dict(input=y[1:])],
                     outputs_info=sg.constant(0.0), non_sequences=w)
    xv, yv = RNG.standard_normal(5), RNG.standard_normal((5, 2))
    h, ref = 0.0, []
    for t in range(1, 5):
        h = h * 0.5 + xv[t - 1] - xv[t] + yv[t].sum()
        ref.append(h)
    np.testing.assert_allclose(_f(mode, [x, y, w], out)(xv, yv, 0.5), ref, rtol=1e-13)


def test_output_taps_read_earlier_steps_as_theano_does(mode):
    # dict(initial=x0, taps=[-2, -1]) used to be refused ("only the previous value is
    # supported"). The step reads out[t-2], out[t-1]; out[-2], out[-1] are x0[0], x0[1]
    # (the first -min(taps) entries of the initial value, as Theano reads them); the
    # result is the n_steps new values.
    x0, n = sg.vector("x0"), sg.scalar("n", dtype="int64")
    fib, _ = sg.scan(lambda a, b: a + b, outputs_info=dict(initial=x0, taps=[-2, -1]),
                     n_steps=n)
    f = _f(mode, [x0, n], [fib, sg.grad(fib[-1], x0)])
    got, g = f(np.array([0.0, 1.0]), 8)
    np.testing.assert_array_equal(got, [1, 2, 3, 5, 8, 13, 21, 34])
    np.testing.assert_array_equal(g, [21, 34])    # out[8] = 21 x0[0] + 34 x0[1]
    got, g = f(np.array([0.0, 1.0, 99.0]), 3)     # an entry past the taps: never read
    np.testing.assert_array_equal(got, [1, 2, 3])
    np.testing.assert_array_equal(g, [2, 3, 0])
    assert _f(mode, [x0, n], fib)(np.array([0.0, 1.0]), 0).shape == (0,)


@pytest.mark.parametrize("backwards, truncate", [(False, -1), (True, -1), (False, 2), (True, 3)])
def test_output_taps_with_other_outputs_and_their_gradient(mode, backwards, truncate):
    # taps in any order ([-1, -3]: out[t-1], then out[t-3]), beside a plain recurrent output
    # and one not fed back; values and gradients against the loop written out in NumPy
    # (finite differences), truncation included
    W = sg.shared(np.array([[0.5, -0.2], [0.3, 0.4]]), name="W")
    x, h0, c0 = sg.matrix("x"), sg.matrix("h0"), sg.vector("c0")

    def step(x_t, h1, h3, c):
        h = sg.tanh(x_t + h1 @ W + 0.5 * h3 + c)
        return h, c * 0.5 + h, (h ** 2).sum()

    (hs, cs, e), _ = sg.scan(step, sequences=x, outputs_info=[dict(initial=h0, taps=[-1, -3]),
                                                               c0, None],
                             go_backwards=backwards, truncate_gradient=truncate)
    cost = (hs ** 2).sum() + cs.sum() + e.sum()
    f = _f(mode, [x, h0, c0], [hs, cs, e, *sg.grad(cost, [x, h0, c0])])
    rng = np.random.default_rng(5)
    xv, h0v, c0v = rng.standard_normal((5, 2)), rng.standard_normal((3, 2)), rng.standard_normal(2)
    Wv = W.get_value()

    def loop(xv, h0v, c0v, cut=None):
        """(stacks, cost, the window and c carried into each step); with ``cut``, the
        steps before it and what they carry into it are the given constants."""
        win, c, out, carried = list(h0v), c0v, [], []
        for k, t in enumerate(range(4, -1, -1) if backwards else range(5)):
            if cut is not None and k == cut[0]:
                win, c = cut[2]
            carried.append((list(win), c))
            if cut is not None and k < cut[0]:
                h, c = cut[1][k]
            else:
                h = np.tanh(xv[t] + win[-1] @ Wv + 0.5 * win[-3] + c)
                c = c * 0.5 + h
            win = win[1:] + [h]
            out.append((h, c))
        hs_, cs_ = np.array([h for h, _ in out]), np.array([c for _, c in out])
        return hs_, cs_, (hs_ ** 2).sum() + cs_.sum() + (hs_ ** 2).sum(), carried

    hs_, cs_, _, carried = loop(xv, h0v, c0v)
    got = f(xv, h0v, c0v)
    np.testing.assert_allclose(got[0], hs_, rtol=1e-13)
    np.testing.assert_allclose(got[1], cs_, rtol=1e-13)
    np.testing.assert_allclose(got[2], (hs_ ** 2).sum(axis=1), rtol=1e-13)
    # truncation: back-propagation goes through the last k steps only; what is carried
    # into them (the window of earlier values, initial entries included) is constant
    first = 5 - truncate if truncate > 0 else 0
    fixed = (first, list(zip(hs_[:first], cs_[:first])), carried[first]) if first else None
    for got_g, arg in zip(got[3:], range(3)):
        vals = [xv, h0v, c0v]
        want = np.zeros_like(vals[arg])
        for i in np.ndindex(*vals[arg].shape):
            hi, lo = [v.copy() for v in vals], [v.copy() for v in vals]
            hi[arg][i] += 1e-6
            lo[arg][i] -= 1e-6
            want[i] = (loop(*hi, cut=fixed)[2] - loop(*lo, cut=fixed)[2]) / 2e-6
        np.testing.assert_allclose(got_g, want, rtol=1e-6, atol=1e-8)


def test_bad_output_taps_are_refused_at_the_user_s_line():
    m = sg.matrix("m")
    for bad in ([-2, 0], [], [-1, -1], [1.5]):
        with pytest.raises(ValueError, match=r"outputs_info\[0\] asks for taps .*distinct "
                                             r"negative ints.*\(at .*test_scan.py:\d+\)"):
            sg.scan(lambda *a: a[0], outputs_info=dict(initial=m, taps=bad), n_steps=2)
    with pytest.raises(ValueError, match=r"read the output 3 steps back, but its initial value "
                                         r"is float64\[2, 3\]; give the 3 values"):
        sg.scan(lambda a, b: a + b, outputs_info=dict(initial=sg.tensor(shape=(2, 3)),
                                                      taps=[-3, -1]), n_steps=2)
    with pytest.raises(ValueError, match=r"asks for taps \[-2\] but gives no initial value"):
        sg.scan(lambda a: a, outputs_info=dict(initial=None, taps=[-2]), n_steps=2)
    with pytest.raises(TypeError, match=r"an entry of its initial value outputs_info\[0\] \(for "
                                        r"taps \[-2, -1\], one value per step back\) is "
                                        r"float64\[\?\]"):
        sg.scan(lambda a, b: (a + b).astype("float32"),
                outputs_info=dict(initial=m, taps=[-2, -1]), n_steps=2)
    # Theano's dict() and dict(initial=None): an output that is not fed back
    out, _ = sg.scan(lambda v: v * 2, sequences=sg.vector("v"), outputs_info=[dict()])
    assert out.ndim == 1


def test_bad_sequence_taps_are_refused_at_the_user_s_line():
    x = sg.vector("x")
    for bad in ([], [0, 0], [0.5], True):
        with pytest.raises(ValueError, match=r"sequences\[0\] has taps .*taps are distinct ints"
                                             r".*\(at .*test_scan.py:\d+\)"):
            sg.scan(lambda *a: a[0], sequences=dict(input=x, taps=bad))
    for bad in (dict(inputs=x), dict(input=x, tap=[1])):
        with pytest.raises(ValueError, match=r"sequences\[0\] is a dict with keys .*"
                                             r"dict\(input=x, taps=\[-1, 0\]\)"):
            sg.scan(lambda *a: a[0], sequences=[bad])


def test_assigning_a_shared_variable_inside_the_step_is_refused():
    W = sg.shared(np.zeros(3), name="W")
    x = sg.vector("x")
    with pytest.raises(ValueError, match=r"assigns the shared variable 'W'.*may read shared "
                                         r"variables but not assign them.*\(at .*test_scan.py:"):
        sg.scan(lambda x_t: (x_t * W, {W: W + x_t}), sequences=x)


def test_a_training_mode_batch_norm_inside_the_step_is_refused_not_dropped():
    # Its running statistics used to be silently never updated (the updates sat on a node
    # inside the step, where train_step does not look): inference then normalised by the
    # initial zeros and ones.
    bn = sg.layers.BatchNorm1D(3, name="bn")
    x, W = sg.tensor3("x"), sg.shared(np.eye(3), name="W")

    def step(x_t, h):
        return sg.tanh(bn(x_t, training=True) + h)  # the batch norm's line

    with pytest.raises(ValueError) as e:
        sg.scan(step, sequences=x, outputs_info=sg.zeros((2, 3)))  # the scan's line
    msg = str(e.value)
    assert f"step function (step at {__file__}:" in msg
    assert f"training-mode batch_norm (made at {__file__}:{_line_of('# the batch norm')})" in msg
    assert "'bn.running_mean', 'bn.running_var', 'bn.num_batches_tracked' at every step" in msg
    assert "layer_norm" in msg and "track_running_stats=False" in msg and "training=False" in msg
    assert msg.endswith(f"(at {__file__}:{_line_of('# the scan')})")
    with pytest.raises(ValueError, match=r"training-mode batch_norm .* would update "
                                         r"'running_mean'"):
        rm = sg.shared(np.zeros(3), name="running_mean", trainable=False)
        sg.scan(lambda x_t: sg.nn.batch_norm(x_t, rm, sg.shared(np.ones(3), trainable=False),
                                             training=True)[0], sequences=x)
    # what may be computed in a step: the running statistics, the batch's without keeping
    # any, and a training-mode batch norm of an outer value (computed once, before the loop,
    # and updated by the train step as anywhere else)
    free = sg.layers.BatchNorm1D(3, track_running_stats=False)
    for f in (lambda x_t: bn(x_t, training=False), lambda x_t: free(x_t, training=True),
              lambda x_t: x_t @ bn(W, training=True)):
        out, _ = sg.map(f, x)
        step_ = sg.train_step((out ** 2).mean(), [x])
        step_(RNG.standard_normal((4, 2, 3)))
    assert not np.array_equal(bn.running_mean.get_value(), np.zeros(3))


def test_n_steps_is_required_without_sequences():
    with pytest.raises(ValueError, match=r"n_steps is required when there is no sequence.*"
                                         r"\(at .*test_scan.py:\d+\)"):
        sg.scan(lambda a: a * 2, outputs_info=sg.constant(1.0))
    with pytest.raises(TypeError, match="n_steps must be an int or a 0-d integer"):
        sg.scan(lambda a: a * 2, outputs_info=sg.constant(1.0), n_steps=sg.scalar("n"))


def test_sequences_of_different_lengths_fail_at_call_time(mode):
    x, y = sg.vector("x"), sg.vector("y")
    out, _ = sg.scan(lambda a, b: a * b, sequences=[x, y])
    f = _f(mode, [x, y], out)
    with pytest.raises(sg.ShapeError, match=r"scan at .*test_scan.py:\d+: the sequences have "
                                            r"different lengths \(sequence 0: 3, sequence 1: 2\)"):
        f(np.ones(3), np.ones(2))
    m = sg.scalar("m", dtype="int64")
    more, _ = sg.scan(lambda a: a * 2, sequences=x, n_steps=m)
    with pytest.raises(sg.ShapeError, match=r"the sequences have 3 entries but the loop runs "
                                            r"n_steps=5 steps"):
        _f(mode, [x, m], more)(np.ones(3), 5)


@pytest.mark.parametrize("rewrite", ["basic", "safe"])
def test_lengths_are_checked_as_the_user_numbered_the_sequences(mode, rewrite):
    W = sg.shared(np.eye(3), name="W")
    X, M, unused = sg.tensor3("X"), sg.matrix("M"), sg.vector("unused")
    # x_t @ W moves out of the loop at "safe"; the step never reads `unused`
    hs, _ = sg.scan(lambda x_t, m_t, u, h: sg.tanh(x_t @ W + h) * m_t[:, None],
                    sequences=[X, M, unused], outputs_info=sg.zeros((2, 3)))
    f = sg.function([X, M, unused], hs, mode=mode, rewrite=rewrite)
    assert f(np.zeros((4, 2, 3)), np.ones((4, 2)), np.ones(4)).shape == (4, 2, 3)
    with pytest.raises(sg.ShapeError, match=r"different lengths \(sequence 0: 4, sequence 1: 3, "
                                            r"sequence 2: 4\)"):
        f(np.zeros((4, 2, 3)), np.ones((3, 2)), np.ones(4))
    with pytest.raises(sg.ShapeError, match=r"different lengths \(sequence 0: 4, sequence 1: 4, "
                                            r"sequence 2: 5\)"):
        f(np.zeros((4, 2, 3)), np.ones((4, 2)), np.ones(5))


def test_static_lengths_that_disagree_fail_when_the_graph_is_built():
    x = sg.tensor("x", shape=(4,))
    with pytest.raises(sg.ShapeError, match="sequence 0 has 3 steps but the loop runs "
                                            "n_steps=5"):
        sg.scan(lambda a: a * 2, sequences=x[:3], n_steps=5)


def test_mode_c_runs_every_step_inside_one_kernel_compiled_once(monkeypatch):
    x, h0 = sg.matrix("x"), sg.vector("h0")
    hs, _ = sg.scan(lambda x_t, h: sg.tanh(x_t + h), sequences=x, outputs_info=h0)
    line = _line_of("hs, _ = sg.scan(lambda x_t, h: sg.tanh(x_t + h), sequences=x, outputs_")
    f = sg.function([x, h0], [hs, sg.grad((hs ** 2).sum(), x)], mode="c")
    # the loop is a C loop over the step's own steps, labelled within the loop's label
    assert f"scan at {__file__.split('/')[-1]}:{line}" in f.source
    assert "for (int64_t t" in f.source and "_step0(in, out, ws, err, F)" in f.source
    from symgrad import compiler
    monkeypatch.setattr(compiler, "compile_library",
                        lambda *a, **k: pytest.fail("recompiled for another number of steps"))
    for n in (0, 1, 7):
        xv, h0v = RNG.standard_normal((n, 3)), RNG.standard_normal(3)
        h, ref = h0v, []
        for row in xv:
            h = np.tanh(row + h)
            ref.append(h)
        got, g = f(xv, h0v)
        np.testing.assert_allclose(got, np.array(ref).reshape((n, 3)), rtol=1e-13)
        assert g.shape == (n, 3)


def test_mode_debug_compares_the_loops_with_the_reference():
    X, h0, W = sg.matrix("X"), sg.vector("h0"), sg.matrix("W")
    hs, _ = sg.scan(lambda x_t, h: sg.tanh(x_t @ W + h), sequences=X, outputs_info=h0)
    cost = (hs ** 2).sum()
    f = sg.function([X, h0, W], [cost, *sg.grad(cost, [X, h0, W])], mode="debug")
    vals = [RNG.standard_normal((4, 3)), RNG.standard_normal(3), RNG.standard_normal((3, 3))]
    ref = sg.function([X, h0, W], [cost, *sg.grad(cost, [X, h0, W])], mode="py")(*vals)
    for a, b in zip(f(*vals), ref):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("mode", ["py", "c"])
def test_a_step_value_that_changes_shape_is_an_error_naming_the_loop(mode):
    h0 = sg.vector("h0")
    grown, _ = sg.scan(lambda h: sg.concatenate([h, h]), outputs_info=h0, n_steps=2)
    line = _line_of("grown, _ = sg.scan(lambda h: sg.concatenate([h, h]), outputs_info=h0")
    with pytest.raises(sg.ShapeError, match=rf"^scan at {__file__}:{line}: recurrent output 0 "
                       rf"has shape \(4,\) at step 0 but its previous value had shape "
                       rf"\(2,\); a value fed back must keep its shape"):
        _f(mode, [h0], grown)(np.ones(2))
    n = sg.vector("n", dtype="int64")
    ranges, _ = sg.map(lambda k: sg.arange(k), n)
    line = _line_of("ranges, _ = sg.map(lambda k: sg.arange(k), n)")
    f = _f(mode, [n], ranges)
    np.testing.assert_array_equal(f(np.array([2, 2])), [[0, 1], [0, 1]])
    with pytest.raises(sg.ShapeError, match=rf"^scan at {__file__}:{line}: output 0 has shape "
                       rf"\(3,\) at step 1 but \(2,\) at step 0; every step's value must "
                       rf"have the same shape"):
        f(np.array([2, 3]))


@pytest.mark.parametrize("mode", ["py", "c"])
def test_an_error_inside_the_step_names_the_step_s_line(mode):
    E, ids = sg.matrix("E"), sg.vector("ids", dtype="int64")
    rows, _ = sg.map(lambda i: E[i] * 2, ids)
    line = _line_of("rows, _ = sg.map(lambda i: E[i] * 2, ids)")
    f = _f(mode, [E, ids], rows)
    np.testing.assert_array_equal(f(np.eye(3), np.array([2, 0])), [[0, 0, 2], [2, 0, 0]])
    with pytest.raises(IndexError, match=rf"at {__file__}:{line}: .*index 5 is out of range for axis 0 with size 3"):
        f(np.eye(3), np.array([0, 5]))


# --------------------------------------------------------------------------- oracle

def test_rnn_cell_against_pytorch(mode):
    torch = pytest.importorskip("torch")
    T, B, I, H = 5, 2, 3, 4
    cell = torch.nn.RNNCell(I, H, dtype=torch.float64)
    Xv = RNG.standard_normal((T, B, I))
    h0v = RNG.standard_normal((B, H))
    Xt = torch.tensor(Xv, requires_grad=True)
    h = torch.tensor(h0v)
    outs = []
    for t in range(T):
        h = cell(Xt[t], h)
        outs.append(h)
    loss = torch.stack(outs).pow(2).sum()
    loss.backward()
    Wih, Whh = cell.weight_ih.detach().numpy(), cell.weight_hh.detach().numpy()
    bih, bhh = cell.bias_ih.detach().numpy(), cell.bias_hh.detach().numpy()
    X, h0 = sg.tensor3("X"), sg.matrix("h0")
    hs, _ = sg.scan(lambda x_t, h: sg.tanh(x_t @ Wih.T + bih + h @ Whh.T + bhh), sequences=X,
                    outputs_info=h0)
    cost = (hs ** 2).sum()
    got_h, got_g = _f(mode, [X, h0], [hs, sg.grad(cost, X)])(Xv, h0v)
    np.testing.assert_allclose(got_h, torch.stack(outs).detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(got_g, Xt.grad.numpy(), rtol=1e-10)


def test_flop_count_of_a_loop_is_the_steps_times_the_step():
    from symgrad.report import node_flops

    X = sg.matrix("X")
    ys, _ = sg.map(lambda r: sg.tanh(r) * 2.0, X)
    assert node_flops(ys.owner, [(), (4, 3)], [(4, 3)]) == 4 * (3 + 3)


# --------------------------------------------------------------------------- random steps

_UNARY = [("tanh", sg.tanh, np.tanh), ("sin", sg.sin, np.sin), ("neg", lambda a: -a, np.negative)]
_BINARY = [("add", lambda a, b: a + b, np.add), ("sub", lambda a, b: a - b, np.subtract),
           ("mul", lambda a, b: a * b, np.multiply)]


@st.composite
def _step_exprs(draw, depth=3):
    """A random expression over the step's leaves: 0 x_t, 1 h (previous value), 2 w."""
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return ("leaf", draw(st.integers(0, 2)))
    if draw(st.booleans()):
        return ("u", draw(st.sampled_from(range(len(_UNARY)))), draw(_step_exprs(depth=depth - 1)))
    return ("b", draw(st.sampled_from(range(len(_BINARY)))), draw(_step_exprs(depth=depth - 1)),
            draw(_step_exprs(depth=depth - 1)))


def _evaluate(expr, leaves, table):
    kind = expr[0]
    if kind == "leaf":
        return leaves[expr[1]]
    if kind == "u":
        return table[0][expr[1]](_evaluate(expr[2], leaves, table))
    return table[1][expr[1]](_evaluate(expr[2], leaves, table), _evaluate(expr[3], leaves, table))


_SYM = ([f for _, f, _ in _UNARY], [f for _, f, _ in _BINARY])
_NUM = ([f for _, _, f in _UNARY], [f for _, _, f in _BINARY])


@pytest.mark.filterwarnings("ignore::symgrad.UnusedInputWarning")  # a step need not read w
@settings(max_examples=25, deadline=None, derandomize=True)
@given(_step_exprs(), st.integers(0, 4), st.booleans())
def test_random_step_functions_against_numpy_and_finite_differences(expr, steps, backwards):
    _random_step_function(expr, steps, backwards, "py")


@pytest.mark.filterwarnings("ignore::symgrad.UnusedInputWarning")
@settings(max_examples=8, deadline=None, derandomize=True)
@given(_step_exprs(), st.integers(0, 4), st.booleans())
def test_random_step_functions_compiled(expr, steps, backwards):
    """Fewer examples: each compiles two kernels (the values, the gradient check's)."""
    _random_step_function(expr, steps, backwards, "c")


def _random_step_function(expr, steps, backwards, mode):
    # the new state: a bounded function of the random expression, so long loops stay finite
    def step(x_t, h, w):
        return sg.tanh(_evaluate(expr, [x_t, h, w], _SYM)) * 0.9 + h * 0.1

    def ref(xv, h0v, wv):
        h, out = h0v, []
        for x_t in (xv[::-1] if backwards else xv):
            h = np.tanh(_evaluate(expr, [x_t, h, wv], _NUM)) * 0.9 + h * 0.1
            out.append(h)
        return np.array(out).reshape((len(xv), 2))

    def loop(x, h0, w):
        hs, _ = sg.scan(step, sequences=x, outputs_info=h0, non_sequences=w,
                        go_backwards=backwards)
        return hs

    rng = np.random.default_rng(steps)
    vals = [rng.standard_normal((steps, 2)), rng.standard_normal(2), rng.standard_normal(2)]
    syms = [sg.matrix("x"), sg.vector("h0"), sg.vector("w")]
    np.testing.assert_allclose(_f(mode, syms, loop(*syms))(*vals), ref(*vals), rtol=1e-12, atol=1e-14)
    sg.verify_grad(lambda *a: (loop(*a) ** 2).sum() + loop(*a).sum(), vals, n_tests=1,
                   mode=mode)


# --------------------------------------------------------------------------- rewrites

def _loops(outputs):
    return [n for n in sg.graph.toposort(outputs) if n.op.name == "scan"]


def test_rewrites_see_inside_the_step():
    x, W = sg.tensor3("x"), sg.shared(RNG.standard_normal((3, 3)) * 0.5, name="W")
    acc = sg.matrix("acc")
    # log(1 + v) is stabilised into log1p, the scaled product plus the carry is one gemm
    out, _ = sg.scan(lambda x_t, a: a + 0.5 * (sg.log(1 + a * a) @ W) + x_t, sequences=x,
                     outputs_info=acc)
    f = sg.function([x, acc], out)
    (loop,) = _loops(f.graph.outputs)
    names = [n.op.name for n in loop.op.inner.nodes()]
    assert "log1p" in names and "gemm" in names and "log" not in names
    xv, av = RNG.standard_normal((4, 2, 3)), RNG.standard_normal((2, 3))
    a, want = av, []
    for x_t in xv:
        a = a + 0.5 * (np.log1p(a * a) @ W.get_value()) + x_t
        want.append(a)
    np.testing.assert_allclose(f(xv, av), want, rtol=1e-12)


def test_the_backward_step_reads_the_stored_forward_values():
    X, h0 = sg.matrix("X"), sg.vector("h0")
    W = sg.shared(RNG.standard_normal((3, 3)) * 0.5, name="W")
    hs, _ = sg.scan(lambda x_t, h: sg.tanh(x_t + h @ W), sequences=X, outputs_info=h0)
    (g,) = sg.grad((hs ** 2).sum(), [W])
    back = [n for n in _loops([g]) if "grad" in str(n.op)]
    assert len(back) == 1
    inner = [n.op.name for n in back[0].op.inner.nodes()]
    # tanh's derivative reads the stored h[t]: no tanh, and only the two products of the
    # step's gradient (to h[t-1] and to W), not the forward's product again
    assert "tanh" not in inner and inner.count("matmul") + inner.count("gemm") == 2


def _rnn_numpy(Xv, h0v, Wx, Wh, b):
    h, out = h0v, []
    for x_t in Xv:
        h = np.tanh(x_t @ Wx + h @ Wh + b)
        out.append(h)
    return np.array(out)


@pytest.mark.parametrize("batched", [True, False])
def test_products_of_the_sequence_move_out_of_the_loop_as_one_product(batched):
    rng = np.random.default_rng(5)
    Wxv, Whv, bv = rng.standard_normal((3, 4)), rng.standard_normal((4, 4)) * 0.4, \
        rng.standard_normal(4)
    Wx, Wh, b = (sg.shared(v, name=n) for v, n in ((Wxv, "Wx"), (Whv, "Wh"), (bv, "b")))
    X = sg.tensor3("X") if batched else sg.matrix("X")
    h0 = sg.matrix("h0") if batched else sg.vector("h0")
    hs, _ = sg.scan(lambda x_t, h: sg.tanh(x_t @ Wx + h @ Wh + b), sequences=X,
                    outputs_info=h0, go_backwards=True)
    cost = (hs ** 2).sum()
    outs = [hs, *sg.grad(cost, [Wx, Wh, b, X])]
    f = sg.function([X, h0], outs)
    (fwd,) = [n for n in _loops(f.graph.outputs) if "grad" not in str(n.op)]
    # x_t @ Wx for every step is one matmul of the (reversed) sequence, before the loop
    before = [n for n in sg.graph.toposort(fwd.inputs) if n.op.name == "matmul"]
    assert len(before) == 1 and before[0].inputs[1] is Wx
    step_products = [n for n in fwd.op.inner.nodes() if n.op.name in ("matmul", "gemm")]
    assert len(step_products) == 1                      # h @ Wh (with the bias) stays
    # backwards, the weight gradients summed over the steps are one product each after the
    # loop (over the stacked factors), not a product per step inside it
    (back,) = [n for n in _loops(f.graph.outputs) if "grad" in str(n.op)]
    assert not [n for n in back.op.inner.nodes() if n.op.name in ("gemm", "matmul")
                and n.outputs[0].ndim == 2 and n.outputs[0].type.shape[0] == 3]
    after = [n for n in sg.graph.toposort(f.graph.outputs) if n.op.name == "gemm"
             and any(i.owner is not None and i.owner.op.name == "reshape" for i in n.inputs)]
    assert len(after) == 2
    if batched:  # and dX = dZ @ Wx.T over the stacked dz: only dz @ Wh.T stays in the loop
        assert len([n for n in back.op.inner.nodes() if n.op.name in ("gemm", "matmul")]) == 1
    shape = (6, 2, 3) if batched else (6, 3)
    Xv, h0v = rng.standard_normal(shape), rng.standard_normal(shape[1:-1] + (4,))
    got = f(Xv, h0v)
    np.testing.assert_allclose(got[0], _rnn_numpy(Xv[::-1], h0v, Wxv, Whv, bv), rtol=1e-12)
    # the same values as the loop left as written (rewrite level "basic" does not move it)
    plain = sg.function([X, h0], outs, rewrite="basic")
    assert not [n for n in sg.graph.toposort(
        [n for n in _loops(plain.graph.outputs) if "grad" not in str(n.op)][0].inputs)
        if n.op.name == "matmul"]
    for a, c in zip(got, plain(Xv, h0v)):
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-13)


def test_an_lstm_s_backward_loop_reads_the_saved_gates_and_one_forward_loop_runs():
    rng = np.random.default_rng(7)
    H = 3
    Wx = sg.shared(rng.standard_normal((2, 4 * H)) * 0.5, name="Wx")
    Wh = sg.shared(rng.standard_normal((H, 4 * H)) * 0.5, name="Wh")
    X, h0 = sg.tensor3("X"), sg.matrix("h0")

    def cell(x_t, h, c):
        z = x_t @ Wx + h @ Wh
        i, f = sg.sigmoid(z[:, :H]), sg.sigmoid(z[:, H:2 * H])
        g, o = sg.tanh(z[:, 2 * H:3 * H]), sg.sigmoid(z[:, 3 * H:])
        c = f * c + i * g
        return [o * sg.tanh(c), c]

    (hs, cs), _ = sg.scan(cell, sequences=X, outputs_info=[h0, h0])
    cost = (hs ** 2).sum() + cs[-1].sum()
    grads = sg.grad(cost, [Wx, Wh, X, h0])
    f = sg.function([X, h0], [cost, *grads])
    loops = _loops(f.graph.outputs)
    assert len(loops) == 2                    # one forward loop (the gradient's merged in)
    (back,) = [n for n in loops if "grad" in str(n.op)]
    products = [n for n in back.op.inner.nodes() if n.op.name in ("gemm", "matmul")]
    assert len(products) == 1                 # dz @ Wh.T: the gates are read, not recomputed
    vals = [rng.standard_normal((5, 2, 2)), rng.standard_normal((2, H))]
    plain = sg.function([X, h0], [cost, *grads], rewrite="basic", mode="py")
    for a, b in zip(f(*vals), plain(*vals)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)


def test_debugprint_labels_the_steps_of_a_loop_s_body():
    X, h0 = sg.matrix("X"), sg.vector("h0")
    W = sg.shared(RNG.standard_normal((3, 3)), name="W")
    hs, _ = sg.scan(lambda x_t, h: sg.tanh(x_t + h @ W), sequences=X, outputs_info=h0,
                    name="rnn")
    f = sg.function([X, h0], hs)
    text = sg.debugprint(f)
    (loop,) = [s for s in f.kernel.steps if s.title().startswith("scan")]
    inner = text[text.index("inner graphs:"):]
    # the step's nodes carry the labels of the body's steps, as f.source heads them
    labels = sorted(set(re.findall(rf"\[(?:in )?({loop.label}\.step\.\d+)", inner)))
    assert labels and all(f"/* {lab}: " in f.source for lab in labels)
    assert f"[{loop.label}: BLAS]" in text          # the loop runs a product in its body


# --------------------------------------------------------------------------- packed weights

def _packed_rnn(B, H, n_out, scale):
    """A float32 RNN whose step multiplies by loop-invariant weights: h @ W (forward), and
    in the gradient loop dz @ W.T (a transposed view) -- products by a weight packed once."""
    W = sg.matrix("W", dtype="float32")
    V = sg.matrix("V", dtype="float32")
    X = sg.tensor3("X", dtype="float32")
    h0 = sg.matrix("h0", dtype="float32")
    hs, _ = sg.scan(lambda x_t, h: sg.tanh(x_t + scale * (h @ W)) @ V, sequences=X,
                    outputs_info=h0, name="packed")
    loss = (hs ** 2).sum()
    return [X, h0, W, V], [hs] + sg.grad(loss, [h0, W, V])


@pytest.mark.parametrize("B,H,steps,threads", [(5, 37, 4, 1), (32, 200, 3, 2), (3, 40, 1, 1),
                                               (8, 33, 0, 1)])
def test_products_by_a_loop_invariant_weight_read_it_packed_once(B, H, steps, threads,
                                                                monkeypatch):
    """Mode "c" packs a float32 weight that the step's products take as their right operand
    once before the loop (sg_panels.h): results as BLAS's, for row counts that are not a
    multiple of the micro-kernel's (5, 3), columns not a multiple of its panels (37, 33),
    alpha != 1, a transposed weight, one step (no packing: BLAS) and no step, on 1 and 2
    threads (32 x 200 x 200 is past the size at which the panels go to the thread pool)."""
    monkeypatch.setattr(sg.config, "_num_threads", threads)
    r = np.random.default_rng(7)
    ins, outs = _packed_rnn(B, H, H, 0.5)
    vals = [r.standard_normal((steps, B, H)).astype("float32"),
            r.standard_normal((B, H)).astype("float32"),
            (r.standard_normal((H, H)) * 0.3).astype("float32"),
            (r.standard_normal((H, H)) * 0.3).astype("float32")]
    fc = sg.function(ins, outs, mode="c")
    src = fc.source
    assert src.count("sg_panels_pack_f32(") == 4   # W and V forward, W.T and V.T backward
    assert "sg_panels_gemm_f32(ws, sg_nthreads" in src
    got = fc(*vals)
    want = sg.function(ins, outs, mode="py")(*vals)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        # float32 sums of terms up to |w|.max(): rounding relative to that scale
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5 * max(1.0, np.abs(w).max(initial=0)))
    if threads > 1:   # the threads share the panels out: the same bits as one thread
        monkeypatch.setattr(sg.config, "_num_threads", 1)
        for g, one in zip(got, sg.function(ins, outs, mode="c")(*vals)):
            np.testing.assert_array_equal(g, one)
