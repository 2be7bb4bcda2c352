"""Shared variables have a static shape, and nothing changes it silently.

By default it is the initial value's shape, so a shape error in a graph of
shared variables surfaces at the line that builds it; ``shape=`` with None
entries lets an axis change length. ``set_value`` and updates must keep it:
an update that cannot is a TypeError when the function is compiled, or, when
only the call shows it, a ShapeError naming the update and its line, raised
before any shared variable of that call is changed (in mode "c" too, where
updates may be written over their variable's own memory).
"""

import pickle
import sys

import numpy as np
import pytest

import symgrad as sg
from symgrad.checkpoint import CheckpointError

MODES = ["c", "py"]


def _line():
    return sys._getframe(1).f_lineno


# --------------------------------------------------------------------------- graph build

def test_a_shared_variable_has_its_values_static_shape():
    W = sg.shared(np.zeros((4, 3)), name="W")
    assert W.type.shape == (4, 3) and W.shape == (4, 3)
    assert sg.shared(np.float32(2.0)).type.shape == ()
    x = sg.matrix("x")
    assert (x @ W).type.shape == (None, 3)
    assert (W.T @ W).type.shape == (3, 3)
    assert "float64[4, 3]" in sg.debugprint(W * 2.0, print_type=True)


def test_product_of_mismatched_shared_variables_fails_where_it_is_built():
    W = sg.shared(np.ones((4, 3)), name="W")
    V = sg.shared(np.ones((5, 2)), name="V")
    line = _line() + 2
    with pytest.raises(sg.ShapeError) as info:
        W @ V
    msg = str(info.value)
    assert f"test_shared_shapes.py:{line}" in msg
    assert "(4, 3)" in msg and "(5, 2)" in msg


def test_lengths_left_open_fail_at_call_time_as_before():
    W = sg.shared(np.ones((4, 3)), name="W", shape=(None, None))
    V = sg.shared(np.ones((5, 2)), name="V", shape=(None, None))
    f = sg.function([], W @ V, mode="py")
    with pytest.raises(sg.ShapeError, match="matmul"):
        f()


# --------------------------------------------------------------------------- shape= argument

def test_shape_argument_opts_axes_out():
    W = sg.shared(np.zeros((4, 3)), name="W", shape=(None, 3))
    assert W.type.shape == (None, 3)
    assert sg.shared(np.zeros((4, 3)), shape=[np.int64(4), None]).type.shape == (4, None)
    assert sg.shared(np.zeros(2), shape=(None,)).type.shape == (None,)


@pytest.mark.parametrize("shape, error, words", [
    ((4,), sg.ShapeError, ["shape=(4,)", "1 entries", "2-d", "(4, 3)"]),
    ((4, 3, None), sg.ShapeError, ["3 entries", "2-d"]),
    ((5, None), sg.ShapeError, ["shape=(5, None)", "length 5 on axis 0", "(4, 3)"]),
    ((None, 2), sg.ShapeError, ["length 2 on axis 1", "(4, 3)"]),
    ((4.0, 3), TypeError, ["ints or None", "4.0"]),
    ((True, 3), TypeError, ["ints or None", "True"]),
    (("4", 3), TypeError, ["ints or None"]),
    (4, TypeError, ["shape= must be a tuple", "int"]),
])
def test_shape_argument_is_checked_against_the_value(shape, error, words):
    with pytest.raises(error) as info:
        sg.shared(np.zeros((4, 3)), name="W", shape=shape)
    msg = str(info.value)
    assert "sg.shared('W')" in msg
    for w in words:
        assert w in msg, (w, msg)


# --------------------------------------------------------------------------- set_value

@pytest.mark.parametrize("borrow", [False, True])
def test_set_value_of_another_shape_is_refused_and_changes_nothing(borrow):
    W = sg.shared(np.arange(12.0).reshape(4, 3), name="W")
    with pytest.raises(sg.ShapeError) as info:
        W.set_value(np.ones((2, 3)), borrow=borrow)
    msg = str(info.value)
    assert "set_value on W" in msg and "expected shape (4, 3)" in msg and "got (2, 3)" in msg
    assert "shape=" in msg  # says how to allow it
    np.testing.assert_array_equal(W.get_value(), np.arange(12.0).reshape(4, 3))
    with pytest.raises(sg.ShapeError):
        W.set_value([[1.0, 2.0, 3.0, 4.0]] * 4)
    with pytest.raises(TypeError, match="expected a 2-d array"):
        W.set_value(np.ones(12))
    W.set_value(np.zeros((4, 3)), borrow=borrow)
    np.testing.assert_array_equal(W.get_value(), np.zeros((4, 3)))


def test_set_value_may_change_a_length_left_open():
    W = sg.shared(np.zeros((4, 3)), name="W", shape=(None, 3))
    x = sg.matrix("x")
    f = sg.function([x], x @ W.T)
    W.set_value(np.ones((6, 3)))
    assert f(np.ones((2, 3))).shape == (2, 6)
    with pytest.raises(sg.ShapeError, match=r"expected shape \(None, 3\).*got \(6, 4\)"):
        W.set_value(np.ones((6, 4)))
    assert W.get_value().shape == (6, 3)


def test_a_checkpoint_of_another_shape_changes_nothing(tmp_path):
    path = tmp_path / "ck.npz"
    sg.save(path, {"W": sg.shared(np.ones((2, 3)), name="W")})
    W = sg.shared(np.zeros((4, 3)), name="W", shape=(None, 3))
    with pytest.raises(CheckpointError, match="shape of W"):
        sg.load(path, {"W": W})
    np.testing.assert_array_equal(W.get_value(), np.zeros((4, 3)))


# --------------------------------------------------------------------------- updates: compile time

def test_an_update_of_another_static_shape_is_a_type_error_at_compile_time():
    W = sg.shared(np.ones((4, 3)), name="W")
    x = sg.vector("x")
    new = x.reshape((2, 6)); line = _line()  # noqa: E702
    with pytest.raises(TypeError) as info:
        sg.function([x], [], updates=[(W, new)])
    msg = str(info.value)
    assert "'W'" in msg and "(4, 3)" in msg and "(2, 6)" in msg
    assert f"test_shared_shapes.py:{line}" in msg
    with pytest.raises(TypeError, match=r"'W' has the static shape \(4, 3\)"):
        sg.function([], [], updates={W: W[:2]})
    with pytest.raises(TypeError, match=r"static shape \(4, 3\)"):
        sg.function([x], [], updates={W: sg.broadcast_to(x, (1, 3))})


def test_givens_that_change_an_updates_shape_are_caught_at_compile_time():
    W = sg.shared(np.ones((4, 3)), name="W")
    x = sg.matrix("x")
    y = sg.tensor("y", shape=(2, 3))
    with pytest.raises(TypeError, match=r"'W' has the static shape \(4, 3\)"):
        sg.function([y], [], updates={W: x * 2.0}, givens={x: y})


def test_a_train_step_whose_optimizer_breaks_a_shape_is_a_type_error():
    class Halving:
        def updates(self, params, grads):
            return [(p, (p - g)[:2]) for p, g in zip(params, grads)]

    W = sg.shared(np.ones((4, 3)), name="W")
    x = sg.matrix("x")
    loss = (x @ W.T).sum()
    with pytest.raises(TypeError, match=r"'W' has the static shape \(4, 3\).*\(2, 3\)"):
        sg.train_step(loss, [x], optimizer=Halving())


# --------------------------------------------------------------------------- updates: call time

def _two_updates(mode, first="gemm", **kw):
    """A first update that the kernel can write in place, and a second, W, whose
    length only the call knows: W <- X[:n] * 2 (X a shared (6, 3) matrix)."""
    h, g = sg.matrix("h"), sg.matrix("g")
    n = sg.scalar("n", dtype="int64")
    A = sg.shared(np.arange(12.0).reshape(4, 3), name="A")
    W = sg.shared(np.arange(12.0).reshape(4, 3) + 100, name="W")
    X = sg.shared(np.arange(18.0).reshape(6, 3), name="X")
    new_A = A - 0.5 * (h.T @ g) if first == "gemm" else A * 0.5 + (h.sum() + g.sum())
    new_W = X[:n] * 2.0; line = _line()  # noqa: E702
    f = sg.function([h, g, n], [], updates=[(A, new_A), (W, new_W)], mode=mode, **kw)
    return f, A, W, X, line


@pytest.mark.parametrize("mode", MODES + ["debug"])
@pytest.mark.parametrize("first", ["gemm", "loop"])
def test_an_update_of_another_length_raises_and_changes_no_variable(mode, first):
    f, A, W, X, line = _two_updates(mode, first)
    hv, gv = np.ones((2, 4)), np.ones((2, 3))
    a0, w0, x0 = A.get_value(), W.get_value(), X.get_value()
    for n in (2, 6, 0):
        with pytest.raises(sg.ShapeError) as info:
            f(hv, gv, n)
        msg = str(info.value)
        assert "update of 'W'" in msg and f"test_shared_shapes.py:{line}" in msg
        assert f"({n}, 3)" in msg and "static shape (4, 3)" in msg
        assert "no shared variable was changed" in msg
        np.testing.assert_array_equal(A.get_value(), a0)
        np.testing.assert_array_equal(W.get_value(), w0)
        np.testing.assert_array_equal(X.get_value(), x0)
        assert not A._busy and not W._busy
    # the right length works, and the first update is then written in place (mode "c")
    before = id(A.get_value(borrow=True))
    f(hv, gv, 4)
    want_A = a0 - 0.5 * hv.T @ gv if first == "gemm" else a0 * 0.5 + (hv.sum() + gv.sum())
    np.testing.assert_allclose(A.get_value(), want_A, rtol=1e-12)
    np.testing.assert_array_equal(W.get_value(), x0[:4] * 2.0)
    if mode == "c":
        assert id(A.get_value(borrow=True)) == before  # written over A's own array


@pytest.mark.parametrize("mode", MODES)
def test_an_update_that_is_an_input_of_unknown_shape(mode):
    """The issue's example: W (4, 3) updated with a (2, 3) value kept its old shape? No: it raised."""
    W = sg.shared(np.ones((4, 3)), name="W")
    x = sg.matrix("x")
    f = sg.function([x], [], updates={W: x}, mode=mode); line = _line()  # noqa: E702
    with pytest.raises(sg.ShapeError, match=rf"update of 'W' \(at .*test_shared_shapes.py:{line}\)"):
        f(np.zeros((2, 3)))
    assert W.get_value().shape == (4, 3)
    np.testing.assert_array_equal(W.get_value(), np.ones((4, 3)))
    f(np.zeros((4, 3)))
    np.testing.assert_array_equal(W.get_value(), np.zeros((4, 3)))


@pytest.mark.parametrize("how", ["profile", "keywords", "pickled"])
def test_every_call_path_checks_the_updates(how):
    f, A, W, X, line = _two_updates("c", profile=how == "profile")
    if how == "pickled":
        f = pickle.loads(pickle.dumps(f))
        A, W = (sv for sv, _ in f.graph.updates)
    a0, w0 = A.get_value(), W.get_value()
    args = dict(h=np.ones((2, 4)), g=np.ones((2, 3)), n=2)
    with pytest.raises(sg.ShapeError, match=rf"update of 'W' .*test_shared_shapes.py:{line}"):
        f(**args) if how == "keywords" else f(*args.values())
    np.testing.assert_array_equal(A.get_value(), a0)
    np.testing.assert_array_equal(W.get_value(), w0)


@pytest.mark.parametrize("mode", MODES)
def test_updates_may_change_a_length_left_open(mode):
    rows = sg.shared(np.zeros((1, 3)), name="rows", shape=(None, 3))
    x = sg.matrix("x")
    f = sg.function([x], [], updates={rows: sg.concatenate([rows, x])}, mode=mode)
    f(np.ones((2, 3)))
    f(np.full((1, 3), 2.0))
    np.testing.assert_array_equal(rows.get_value(), [[0.0] * 3, [1.0] * 3, [1.0] * 3, [2.0] * 3])
    bad = sg.function([x], [], updates={rows: x}, mode=mode)
    with pytest.raises(sg.ShapeError, match=r"update of 'rows'.*\(2, 4\).*\(None, 3\)"):
        bad(np.ones((2, 4)))
    assert rows.get_value().shape == (4, 3)


def test_a_fully_static_update_needs_no_check_at_call_time():
    W = sg.shared(np.ones((4, 3)), name="W")
    x = sg.matrix("x")
    f = sg.function([x], [], updates={W: (x.T @ x)[:4, :3]})
    assert f._update_shapes.checks == [(0, ((0, 4), (1, 3)))]  # the slices' lengths are not static
    # broadcasting against W's own (4, 3) settles both lengths; so does a gradient
    for new in (W - 0.1 * (x.T @ x)[:4], W - 0.1 * sg.grad((x @ W.T).sum(), W)):
        assert new.type.shape == (4, 3)
        g = sg.function([x], [], updates={W: new})
        assert g._update_shapes.checks == [] and "static shape" not in g.source
