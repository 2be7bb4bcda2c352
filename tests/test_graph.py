"""The IR: types, constants, broadcasting and dtype rules, user lines on nodes."""

import numpy as np
import pytest

import symgrad as sg


def test_constructors_and_types():
    assert sg.scalar("s").type.shape == ()
    assert sg.matrix("m", dtype="int32").type == sg.TensorType("int32", (None, None))
    t = sg.tensor("t", shape=(None, 3))
    assert t.type.shape == (None, 3) and t.ndim == 2 and t.dtype == "float64" and t.owner is None
    assert sg.tensor4().ndim == 4
    with pytest.raises(TypeError, match="not supported"):
        sg.vector(dtype="float16")
    with pytest.raises(TypeError, match="shape"):
        sg.tensor("x")


def test_floatx_config(monkeypatch):
    monkeypatch.setattr(sg.config, "_floatX", "float32")
    assert sg.vector().dtype == "float32"
    with pytest.raises(ValueError, match="floatX"):
        sg.config.floatX = "int32"


def test_nep50_promotion():
    f32, i32 = sg.vector(dtype="float32"), sg.vector(dtype="int32")
    assert (f32 * 2).dtype == "float32"
    assert (f32 * 2.5).dtype == "float32"
    assert (i32 + 1).dtype == "int32"
    assert (i32 + 1.5).dtype == "float64"
    assert (i32 / i32).dtype == "float64"
    assert (f32 + sg.vector(dtype="float64")).dtype == "float64"
    assert (f32 > 0).dtype == "bool"
    with pytest.raises(TypeError, match="cannot be represented as int32"):
        i32 + 2 ** 40


def test_static_broadcasting():
    a = sg.tensor(shape=(None, 3))
    assert (a + sg.tensor(shape=(4, 1))).type.shape == (4, 3)
    assert (a + sg.vector()).type.shape == (None, 3)
    with pytest.raises(sg.ShapeError, match=r"cannot be broadcast .*test_graph.py"):
        a + sg.tensor(shape=(5,))


def test_nodes_record_the_user_line():
    x = sg.vector("x")
    y = sg.exp(x); line = __import__("inspect").currentframe().f_lineno  # noqa: E702
    assert y.owner.trace.filename == __file__ and y.owner.trace.lineno == line


def test_constants():
    c = sg.constant([1, 2], dtype="float32")
    assert c.type == sg.TensorType("float32", (2,))
    with pytest.raises(TypeError, match="cannot be represented"):
        sg.constant(1.5, dtype="int32")
    with pytest.raises(TypeError, match="numeric"):
        sg.constant(["a"])
    x = sg.vector("x")
    assert (x + np.float32(1)).dtype == "float64"


def test_shared_refuses_bad_values():
    with pytest.raises(TypeError, match="numeric"):
        sg.shared(np.array(["a"]))
    with pytest.raises(TypeError, match="symbolic"):
        sg.shared(sg.vector())


def test_evaluate():
    x = sg.vector("x")
    np.testing.assert_array_equal(sg.evaluate(x * 3, {x: np.array([1.0])}), [3.0])


def test_trace_formats_file_and_line_once():
    from symgrad.graph import Trace

    t = Trace("/home/u/model.py", 12, "build")
    assert str(t) == t.file_line() == "/home/u/model.py:12"
    assert t.file_line(short=True) == "model.py:12"


def test_shape_text():
    from symgrad.graph import shape_text

    assert shape_text((4, 3)) == "(4, 3)"
    assert shape_text((3,)) == "(3,)"
    assert shape_text(()) == "()"
    assert shape_text((None, 3)) == "(None, 3)"
    assert shape_text((None, 3), unknown="?") == "(?, 3)"


def test_graph_leaves_order_inputs_shared_constants():
    """One order for every evaluator: inputs, then shared variables, then constants, each
    as a walk of the graph first meets it; an output that is a leaf comes last."""
    from symgrad.graph import graph_leaves
    from symgrad.interp import Program

    x, y = sg.vector("x"), sg.vector("y")
    a, b = sg.shared(np.ones(2), name="a"), sg.shared(np.ones(2), name="b")
    c1, c2 = sg.constant(np.array([2.0, 2.0])), sg.constant(np.array([3.0, 3.0]))
    out = (x * c1 + b) * c2 + a
    assert graph_leaves([y, x], [out, c1, b]) == [y, x, b, a, c1, c2]
    d = sg.shared(np.ones(2), name="d")
    leaves = graph_leaves([x], [x + 1.0, d])  # an output that is a leaf is one too
    assert leaves[:2] == [x, d] and isinstance(leaves[2], sg.Constant) and len(leaves) == 3
    # The reference evaluator numbers its slots in that order.
    prog = Program([y, x], [out])
    assert [s for s, _ in prog.shared] == [2, 3] and [s for s, _ in prog.constants] == [4, 5]
    assert [v for _, v in prog.shared] == [b, a]
