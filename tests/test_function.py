"""sg.function in mode "py": structures, updates, givens, argument checks, ownership, pickle."""

import pickle
import re

import numpy as np
import pytest

import symgrad as sg


@pytest.mark.parametrize("mode", ["py", "c"])
def test_output_structures(mode):
    x = sg.vector("x")
    f = sg.function([x], {"double": x * 2, "square": x ** 2}, mode=mode)
    out = f(np.array([1.0, 3.0]))
    assert list(out) == ["double", "square"]
    np.testing.assert_array_equal(out["square"], [1.0, 9.0])
    assert isinstance(sg.function([x], (x, x + 1), mode=mode)([1.0]), tuple)
    assert isinstance(sg.function([x], [x, x + 1], mode=mode)([1.0]), list)
    single = sg.function([x], x + 1, mode=mode)([1.0])
    assert isinstance(single, np.ndarray)


@pytest.mark.parametrize("mode", ["py", "c"])
def test_scalar_outputs_are_0d_arrays(mode):
    s = sg.scalar("s")
    out = sg.function([s], s * 2, mode=mode)(3.0)
    assert isinstance(out, np.ndarray) and out.shape == () and out == 6.0


@pytest.mark.parametrize("mode", ["py", "c"])
def test_updates_see_old_values(mode):
    a = sg.shared(np.array(1.0), name="a")
    b = sg.shared(np.array(10.0), name="b")
    f = sg.function([], [a, b], updates={a: b, b: a}, mode=mode)
    va, vb = f()
    assert (va, vb) == (1.0, 10.0)
    assert a.get_value() == 10.0 and b.get_value() == 1.0


def test_update_type_mismatch_is_a_type_error_at_compile_time():
    w = sg.shared(np.zeros(3, dtype="float32"), name="w")
    x = sg.vector("x", dtype="float64")
    with pytest.raises(TypeError, match=r"w holds 1-d float32 .* float64"):
        sg.function([x], updates=[(w, w + x)], mode="py")
    with pytest.raises(TypeError, match="shared variable"):
        sg.function([x], updates=[(x, x)], mode="py")


@pytest.mark.parametrize("mode", ["py", "c"])
def test_givens_substitute(mode):
    x, y = sg.vector("x"), sg.vector("y")
    f = sg.function([y], x * 2, givens={x: y + 1}, mode=mode)
    np.testing.assert_array_equal(f([1.0, 2.0]), [4.0, 6.0])
    with pytest.raises(TypeError, match="replacement"):
        sg.function([y], x * 2, givens={x: sg.matrix()}, mode=mode)


@pytest.mark.parametrize("mode", ["py", "c"])
def test_positional_and_keyword_calls(mode):
    x, y = sg.scalar("x"), sg.scalar("y")
    f = sg.function([x, y], x - y, mode=mode)
    assert f(5.0, 3.0) == 2.0
    assert f(y=3.0, x=5.0) == 2.0
    assert f(5.0, y=3.0) == 2.0
    with pytest.raises(sg.InputError, match="unknown keyword 'z'"):
        f(1.0, z=2.0)
    with pytest.raises(sg.InputError, match="twice"):
        f(1.0, x=2.0)
    with pytest.raises(sg.InputError, match="missing input 'y'"):
        f(1.0)
    with pytest.raises(sg.InputError, match="takes 2 inputs, got 3"):
        f(1.0, 2.0, 3.0)


@pytest.mark.parametrize("mode", ["py", "c"])
def test_input_errors_name_input_expectation_and_value(mode):
    x = sg.tensor("x", dtype="float32", shape=(None, 3))
    f = sg.function([x], x * 2, mode=mode)
    with pytest.raises(sg.InputError, match=r"input 'x' expects a 2-d float32 array of shape "
                                            r"\(\?, 3\), got a 1-d array of shape \(3,\)"):
        f(np.zeros(3, dtype="float32"))
    with pytest.raises(sg.InputError, match=r"'x' .* got shape \(2, 4\)"):
        f(np.zeros((2, 4), dtype="float32"))
    with pytest.raises(sg.InputError, match="got float64, which does not convert to float32"):
        f(np.zeros((2, 3)))
    with pytest.raises(sg.InputError, match="<U"):
        f(np.array([["a", "b", "c"]]))
    assert isinstance(sg.InputError("m"), TypeError)


@pytest.mark.parametrize("mode", ["py", "c"])
def test_safe_and_weak_conversions_are_accepted(mode):
    x32 = sg.vector("x", dtype="float32")
    f = sg.function([x32], x32 + 1, mode=mode)
    assert f([0.1, 0.2]).dtype == np.float32          # Python floats are weak
    assert f(np.array([1, 2], dtype="int8") if False else np.array([1.0], "float32")).dtype == np.float32
    i32 = sg.vector("i", dtype="int32")
    g = sg.function([i32], i32 * 2, mode=mode)
    np.testing.assert_array_equal(g([1, 2]), [2, 4])
    with pytest.raises(sg.InputError):
        g(np.array([1, 2], dtype="int64"))            # lossy for arrays
    with pytest.raises(sg.InputError):
        g([2 ** 40])                                   # does not fit
    d = sg.vector("d")
    np.testing.assert_array_equal(sg.function([d], d, mode=mode)(np.array([1, 2], "int32")), [1, 2])


@pytest.mark.parametrize("mode", ["py", "c"])
def test_outputs_belong_to_the_caller(mode):
    x = sg.vector("x")
    w = sg.shared(np.ones(2), name="w")
    f = sg.function([x], [x, w, x * 2], mode=mode)
    xv = np.array([1.0, 2.0])
    a, b, c = f(xv)
    assert not np.shares_memory(a, xv)
    assert not np.shares_memory(b, w.get_value(borrow=True))
    c2 = f(xv)[2]
    c[:] = -1
    np.testing.assert_array_equal(c2, [2.0, 4.0])
    assert a.flags.writeable


@pytest.mark.parametrize("mode", ["py", "c"])
def test_non_contiguous_and_zero_size_inputs(mode):
    x = sg.matrix("x")
    f = sg.function([x], sg.exp(x) + 1, mode=mode)
    big = np.arange(12.0).reshape(3, 4)
    np.testing.assert_allclose(f(big[:, ::2]), np.exp(big[:, ::2]) + 1)
    np.testing.assert_allclose(f(big[::-1]), np.exp(big[::-1]) + 1)
    assert f(np.zeros((0, 4))).shape == (0, 4)


def test_missing_input_is_reported_with_its_user():
    x, y = sg.vector("x"), sg.vector("y")
    with pytest.raises(sg.InputError, match=r"needs the input y, used by add at .*test_function"):
        sg.function([x], x + y, mode="py")


def test_bad_inputs_argument():
    x = sg.vector("x")
    with pytest.raises(TypeError, match="computed by"):
        sg.function([x * 2], x, mode="py")
    with pytest.raises(TypeError, match="shared variable"):
        sg.function([sg.shared(np.zeros(2))], x, mode="py")
    with pytest.raises(ValueError, match="mode"):
        sg.function([x], x, mode="fast")
    with pytest.raises(TypeError, match="expected a symbolic Variable"):
        sg.function([x], ["not a variable"], mode="py")


@pytest.mark.parametrize("mode", ["py", "c"])
def test_pickle_round_trip(mode):
    x = sg.vector("x")
    w = sg.shared(np.array([1.0, 2.0]), name="w")
    f = sg.function([x], (x * w + 1), updates={w: w * 2}, mode=mode, name="f")
    g = pickle.loads(pickle.dumps(f))
    np.testing.assert_array_equal(g(np.array([1.0, 1.0])), [2.0, 3.0])
    np.testing.assert_array_equal(f(np.array([1.0, 1.0])), [2.0, 3.0])
    assert g.name == "f" and [v.name for v in g.inputs] == ["x"]


def test_graph_and_source():
    x = sg.vector("x")
    f = sg.function([x], sg.tanh(x) * 2, mode="py")
    assert f.source is None
    assert f.graph.outputs[0].owner.op.name == "mul"
    assert "tanh" in str(f.graph)


def test_profile_report():
    x = sg.vector("x")
    f = sg.function([x], sg.tanh(x) * 2, mode="py", profile=True)
    f([1.0, 2.0])
    f([1.0, 2.0])
    report = f.profile_report()
    assert re.search(r"tanh .* 2 ", report) and "share" in report
    with pytest.raises(RuntimeError, match="profile=True"):
        sg.function([x], x, mode="py").profile_report()


def test_shared_variable_values():
    w = sg.shared(np.zeros((2, 3)), name="W")
    v = w.get_value()
    v[0, 0] = 5
    assert w.get_value()[0, 0] == 0
    with pytest.raises(sg.ShapeError, match=r"set_value on W: expected shape \(2, 3\)"):
        w.set_value(np.ones((4, 3)))  # the static shape is the value's
    assert w.get_value().shape == (2, 3)
    with pytest.raises(TypeError, match=r"set_value on W: expected a 2-d array"):
        w.set_value(np.ones(3))
    with pytest.raises(TypeError, match="expected dtype float64, got int64"):
        w.set_value(np.ones((2, 3), dtype="int64"))
    assert w.type.shape == (2, 3) and w.trainable
    rows = sg.shared(np.zeros((2, 3)), name="rows", shape=(None, 3))
    rows.set_value(np.ones((4, 3)))
    assert rows.get_value().shape == (4, 3) and rows.type.shape == (None, 3)


def test_symbolic_variables_have_no_truth_value():
    x = sg.vector("x")
    with pytest.raises(TypeError, match="truth value"):
        bool(x > 0)
    with pytest.raises(TypeError, match="iterated"):
        list(x)
    assert {x: 1}[x] == 1                  # == is identity, variables stay hashable
