"""sg.ifelse in modes "py" and "c": only the branch taken runs, values, gradients through
the branch taken (finite differences), lists of values, inside loops, and the errors."""

import numpy as np
import pytest

import symgrad as sg

RNG = np.random.default_rng(1)


@pytest.fixture(params=["py", "c"])
def mode(request):
    return request.param


def _f(mode, inputs, outputs):
    return sg.function(inputs, outputs, mode=mode)


def test_values_of_both_branches(mode):
    a, x = sg.scalar("a"), sg.vector("x")
    y = sg.ifelse(a > 0, sg.exp(x) * a, x - a)
    f = _f(mode, [a, x], y)
    xv = RNG.standard_normal(3)
    np.testing.assert_allclose(f(2.0, xv), np.exp(xv) * 2.0)
    np.testing.assert_allclose(f(-2.0, xv), xv + 2.0)
    assert y.type == sg.TensorType("float64", (None,))


def test_only_the_branch_taken_is_computed(mode):
    a, x = sg.scalar("a"), sg.vector("x")
    i = sg.scalar("i", dtype="int64")
    # x[i] with i out of range raises when it runs: it must not run unless chosen
    y = sg.ifelse(i < 3, x[i] * 2, a)
    f = _f(mode, [a, x, i], y)
    assert float(f(5.0, np.ones(3), 7)) == 5.0
    assert float(f(5.0, np.arange(3.0), 2)) == 4.0
    with pytest.raises(sg.IndexError):
        _f(mode, [a, x, i], sg.ifelse(i >= 3, x[i] * 2, a))(5.0, np.ones(3), 7)
    # and the counts say so: the inner graph of the untaken branch never ran
    node = y.owner
    assert node.op.name == "ifelse"
    then_ops = {n.op.name for n in node.op.then_graph.nodes()}
    assert "subtensor" in then_ops            # x[i] lives in the branch, not before it


def test_what_the_condition_needs_is_computed_before_the_choice(mode):
    x = sg.vector("x")
    s = x.sum()
    y = sg.ifelse(s > 0, s * 2, -s)
    node = y.owner
    assert any(i is s for i in node.inputs)   # s is an input, shared by the condition
    np.testing.assert_allclose(_f(mode, [x], y)(np.array([1.0, 2.0])), 6.0)


def test_lists_of_values_and_python_numbers(mode):
    a, x = sg.scalar("a"), sg.matrix("x")
    y, z = sg.ifelse(a > 0, [x.sum(axis=0), a * 2], [x.max(axis=0), 0.5])
    f = _f(mode, [a, x], [y, z])
    xv = RNG.standard_normal((3, 2))
    got = f(1.0, xv)
    np.testing.assert_allclose(got[0], xv.sum(axis=0))
    assert float(got[1]) == 2.0
    got = f(-1.0, xv)
    np.testing.assert_allclose(got[0], xv.max(axis=0))
    assert float(got[1]) == 0.5


def test_gradient_routes_through_the_branch_taken(mode):
    def fun(a, x, w):
        return sg.ifelse(a > 0, (sg.tanh(x) * w).sum(), (x ** 3).sum())

    xv, wv = RNG.standard_normal(4), RNG.standard_normal(4)
    for av in (0.5, -0.5):
        sg.verify_grad(fun, [np.array(av), xv, wv], mode=mode)
    a, x, w = sg.scalar("a"), sg.vector("x"), sg.vector("w")
    gw, gx = sg.grad(fun(a, x, w), [w, x])
    f = _f(mode, [a, x, w], [gw, gx])
    got_w, got_x = f(-1.0, xv, wv)
    np.testing.assert_array_equal(got_w, np.zeros(4))     # w only in the branch not taken
    np.testing.assert_allclose(got_x, 3 * xv ** 2)
    got_w, got_x = f(1.0, xv, wv)
    np.testing.assert_allclose(got_w, np.tanh(xv))
    np.testing.assert_allclose(got_x, (1 - np.tanh(xv) ** 2) * wv)
    # the gradient is itself an ifelse: only the branch taken computes its gradient
    assert gx.owner is not None
    assert "ifelse" in {n.op.name for n in sg.graph.toposort([gx])}


def test_second_order_through_ifelse(mode):
    def fun(a, x):
        y = sg.ifelse(a > 0, (sg.sin(x) * x).sum(), (x ** 4).sum())
        return (sg.grad(y, x) ** 2).sum()

    xv = RNG.standard_normal(3)
    for av in (0.5, -0.5):
        sg.verify_grad(fun, [np.array(av), xv], mode=mode, abs_tol=1e-4, rel_tol=1e-4)


def test_gradient_when_the_branches_share_values_that_depend_on_each_other(mode):
    def fun(x, W):
        c = (x @ W).sum()
        return sg.ifelse(c > 0, (x @ W.T * c).sum(), (W * c).sum())

    xv, Wv = RNG.standard_normal(3), RNG.standard_normal((3, 3))
    sg.verify_grad(fun, [xv, Wv], mode=mode)
    sg.verify_grad(fun, [-xv, Wv], mode=mode)


def test_ifelse_inside_a_scan_step_and_its_gradient(mode):
    def fun(x, h0):
        def step(x_t, h):
            return sg.ifelse(x_t > 0, sg.tanh(h * x_t), h - x_t)
        hs, _ = sg.scan(step, sequences=x, outputs_info=h0)
        return (hs ** 2).sum()

    xv = np.array([0.5, -0.3, 1.2, -0.8])
    sg.verify_grad(fun, [xv, np.array(0.7)], mode=mode)


# --------------------------------------------------------------------------- errors

def test_condition_must_be_a_0d_bool():
    x = sg.vector("x")
    with pytest.raises(TypeError, match=r"ifelse: the condition must be 0-d.*\(at .*test_ifelse"
                                        r".py:\d+\)"):
        sg.ifelse(x > 0, x, -x)
    with pytest.raises(TypeError, match=r"0-d bool.*compare first"):
        sg.ifelse(x.sum(), x, -x)


def test_branches_must_match():
    x, y = sg.vector("x"), sg.matrix("y")
    c = sg.scalar("c") > 0
    with pytest.raises(TypeError, match=r"value 0 is float64\[\?\] in then but float64\[\?, \?\] "
                                        r"in else_.*\(at .*test_ifelse.py:\d+\)"):
        sg.ifelse(c, x, y)
    with pytest.raises(TypeError, match=r"float32\[\?\] in else_.*astype\('float64'\)"):
        sg.ifelse(c, x, x.astype("float32"))
    with pytest.raises(ValueError, match="then has 2 values but else_ has 1"):
        sg.ifelse(c, [x, x], [x])
    with pytest.raises(TypeError, match="must both be Variables or both lists"):
        sg.ifelse(c, [x], x)
    with pytest.raises(sg.ShapeError, match=r"static shape float64\[3\] in then but float64\[4\]"):
        sg.ifelse(c, sg.zeros((3,)), sg.zeros((4,)))


def test_mode_c_runs_only_the_branch_taken_in_the_kernel():
    x = sg.vector("x")
    y = sg.ifelse(x.sum() > 0, sg.exp(x), -x)  # the line of the node
    with open(__file__) as f:
        line = next(i for i, t in enumerate(f, 1) if t.rstrip().endswith("# the line of the node"))
    f = sg.function([x], [y, sg.grad(y.sum(), x)], mode="c")
    assert f"ifelse at {__file__.split('/')[-1]}:{line}" in f.source
    assert "_then0(in, out, ws, err, F)" in f.source and "_else0(in, out, ws, err, F)" in f.source
    xv = np.array([0.5, -0.2])
    for v, want, dwant in [(xv, np.exp(xv), np.exp(xv)), (-xv, xv, -np.ones(2))]:
        got, g = f(v)
        np.testing.assert_allclose(got, want, rtol=1e-15)
        np.testing.assert_allclose(g, dwant, rtol=1e-15)
