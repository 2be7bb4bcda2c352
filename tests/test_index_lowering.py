"""The C lowering of indexing, concatenate and split: its run-time errors are mode "py"'s
(kind and message, the op and the user's line), and its mixed-dtype updates match NumPy."""

import numpy as np
import pytest

import symgrad as sg
from symgrad.codegen import ir
from symgrad.ops.join import Split, split


def _error(mode, inputs, out, args):
    """The error of a call: its type, and its message cut after the user's line."""
    with pytest.raises(Exception) as err:
        sg.function(inputs, out, mode=mode)(*args)
    head, line, tail = str(err.value).partition(" at " + __file__ + ":")
    assert line, str(err.value)  # the user's line
    return type(err.value), head, line + tail


def _both_modes_fail_alike(inputs, out, args, kind, text):
    (c, c_op, c_msg), (py, py_op, py_msg) = (_error("c", inputs, out, args),
                                             _error("py", inputs, out, args))
    assert c is py and issubclass(c, kind)
    assert c_op == str(out.owner.op) and py_op == out.owner.op.name  # the op
    assert text in c_msg and text in py_msg, (c_msg, py_msg)
    if not isinstance(out.owner.op, Split):  # mode "py" shows split's lengths as a list
        assert c_msg == py_msg


M, R, C, V = sg.matrix("m"), sg.vector("r", "int64"), sg.vector("c", "int32"), sg.vector("v")
T = sg.tensor3("t")
I, J = sg.scalar("i", "int64"), sg.scalar("j", "int32")

ERRORS = [  # (inputs, output, arguments, error kind, part of the message)
    ([M, R, C], M[R, C], (np.zeros((3, 3)), np.array([0, 1]), np.array([0, 1, 2], "int32")),
     sg.ShapeError, "index arrays of shapes (2,) and (3,) cannot be broadcast together"),
    ([T, R, C], T[R, 1:, C], (np.zeros((3, 3, 3)), np.array([0, 1]), np.array([0, 1, 2], "int32")),
     sg.ShapeError, "index arrays of shapes (2,) and (3,) cannot be broadcast together"),
    ([M, R, C], sg.inc_subtensor(M[R, C], 1.0),
     (np.zeros((3, 3)), np.array([0, 1]), np.array([0, 1, 2], "int32")),
     sg.ShapeError, "cannot be broadcast together"),
    ([M, R], M[R, -4], (np.zeros((3, 3)), np.array([0])),
     sg.IndexError, "index -4 is out of range for axis 1 with size 3"),
    ([M, R, I], M[I, R], (np.zeros((3, 3)), np.array([0, 3]), 0),
     sg.IndexError, "index 3 is out of range for axis 1 with size 3"),
    ([M, I, J], M[I:, J], (np.zeros((3, 3)), 0, np.int32(5)),
     sg.IndexError, "index 5 is out of range for axis 1 with size 3"),
    ([M, I], M[::I], (np.zeros((3, 3)), 0), ValueError, "slice step cannot be zero"),
    ([M, R, V], sg.inc_subtensor(M[R], V), (np.zeros((3, 3)), np.array([0, 1]), np.zeros(2)),
     sg.ShapeError, "a value of shape (2,) does not fit the region of shape (2, 3)"),
    ([M, R, V], sg.set_subtensor(M[R, 1:], V), (np.zeros((3, 3)), np.array([0]), np.zeros(3)),
     sg.ShapeError, "a value of shape (3,) does not fit the region of shape (1, 2)"),
    ([M, V], sg.inc_subtensor(M[1:, 0], V), (np.zeros((3, 3)), np.zeros(3)),
     sg.ShapeError, "a value of shape (3,) does not fit the region of shape (2,)"),
    ([M, R], sg.inc_subtensor(M[R], 1.0), (np.zeros((3, 3)), np.array([-4])),
     sg.IndexError, "index -4 is out of range for axis 0 with size 3"),
    ([M, V], sg.concatenate([M, V[None, :]], axis=0), (np.zeros((3, 3)), np.zeros(2)),
     sg.ShapeError, "the inputs' lengths differ on axis 1 (only axis 0 may differ)"),
    ([M, I], split(M, [I, 1], axis=1)[0], (np.zeros((3, 3)), 3),
     sg.ShapeError, "do not cut axis 1 of an array of shape (3, 3)"),
    ([M, I], split(M, [I, 4], axis=0)[1], (np.zeros((3, 3)), -1),
     sg.ShapeError, "(they must be >= 0 and add up to 3)"),
]


@pytest.mark.parametrize("inputs, out, args, kind, text", ERRORS,
                         ids=[f"{e[1].owner.op}-{k}" for k, e in enumerate(ERRORS)])
@pytest.mark.filterwarnings("ignore::symgrad.UnusedInputWarning")
def test_run_time_errors_are_mode_py_s(inputs, out, args, kind, text):
    _both_modes_fail_alike(inputs, out, args, kind, text)


@pytest.mark.parametrize("xdt", ["float32", "float64", "int32", "int64", "bool"])
@pytest.mark.parametrize("ydt", ["float32", "float64", "int32", "bool"])
@pytest.mark.parametrize("set_", [False, True])
def test_updates_of_every_dtype_pair_match_numpy(xdt, ydt, set_):
    """Basic and advanced updates whose value has another dtype than x (converted, or
    summed in float64 for a float32 scatter-add) give mode "py"'s values."""
    if not np.can_cast(ydt, xdt, "same_kind"):
        pytest.skip("refused when built")
    rng = np.random.default_rng(1)
    x = sg.tensor("x", xdt, shape=(None, None))
    y = sg.tensor("y", ydt, shape=(None,))
    ids = sg.vector("ids", "int64")
    put = sg.set_subtensor if set_ else sg.inc_subtensor
    outs = [put(x[ids, 1], y), put(x[1:, ::-1][:, 0], y[:2]), put(x[ids], y[None, :3])]
    xv = (rng.standard_normal((3, 3)) * 3).astype(xdt)
    yv = (rng.standard_normal(4) * 3).astype(ydt)[:4]
    args = (xv, np.resize(yv, 4), np.array([2, 0, 2, -1]))
    f_c = sg.function([x, y, ids], outs, mode="c")
    f_py = sg.function([x, y, ids], outs, mode="py")
    for got, want in zip(f_c(*args), f_py(*args)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtypes", [("float64", "float32", "int32"), ("int64", "int32", "bool"),
                                    ("float32", "bool", "float32")])
def test_concatenate_converts_each_input_into_its_block(dtypes):
    xs = [sg.tensor(f"x{k}", dt, shape=(2, None)) for k, dt in enumerate(dtypes)]
    vals = [(np.arange(2 * (k + 1)).reshape(2, k + 1) - 1).astype(dt)
            for k, dt in enumerate(dtypes)]
    out = sg.concatenate(xs, axis=1)
    got = sg.function(xs, out, mode="c")(*vals)
    want = np.concatenate(vals, axis=1)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------- their statements (codegen.ir)

def _steps(inputs, outs):
    f = sg.function(inputs, outs)
    return f, {str(s.root.op).split("[")[0].split("{")[0]: s for s in f.kernel.steps}


def _calls(step):
    return [s for s in step.statements if isinstance(s, ir.Call)]


def test_index_steps_fail_through_the_calls_that_resolve_the_index():
    """Every indexing step can fail (an index out of range, arrays that do not broadcast, a
    value that does not fit): its failing statements are the calls resolving the index
    and the update, in the index's order; the view, the gather and the copy cannot fail."""
    x, ids, i = sg.matrix("x"), sg.vector("ids", "int64"), sg.scalar("i", "int32")
    outs = [x[1:, i] * 1, x[ids, ::-1] * 1, sg.inc_subtensor(x[ids], 1.0),
            sg.set_subtensor(x[i:], 2.0), sg.concatenate([x, x]), split(x, [i, 1], 1)[0] * 1]
    f, steps = _steps([x, ids, i], outs)
    failing = {k: [c.name for c in _calls(s) if c.can_fail] for k, s in steps.items()}
    assert failing["subtensor"] == ["sg_index_slice", "sg_index_int", "sg_index_done"]
    assert failing["advanced_subtensor"] == ["sg_index_array", "sg_index_slice", "sg_index_done"]
    assert failing["advanced_inc_subtensor"] == ["sg_index_array", "sg_index_done",
                                                 "sg_index_scatter"]
    assert failing["set_subtensor"] == ["sg_index_slice", "sg_index_done", "sg_index_put"]
    assert failing["concatenate"] == ["sg_concat_starts"]
    assert failing["split"] == ["sg_split_at"]
    for k, s in steps.items():
        if k in failing:
            assert s.can_fail and s.blas == []
    assert not [c for c in _calls(steps["advanced_subtensor"])
                if c.name in ("sg_index_gather", "sg_index_begin") and c.can_fail]
    # the views make no memory; the gather, the updates and the join make their result
    assert steps["subtensor"].allocs == steps["split"].allocs == []
    for k in ("advanced_subtensor", "advanced_inc_subtensor", "set_subtensor", "concatenate"):
        assert steps[k].allocs == [steps[k].root.outputs[0]]
    (scatter,) = [c for c in _calls(steps["advanced_inc_subtensor"]) if c.name == "sg_index_scatter"]
    assert scatter.dtypes == ("float64", "float64")
    # and the errors they report are the index errors of mode "py"
    with pytest.raises(sg.IndexError, match="index 3 is out of range for axis 0 with size 3"):
        f(np.zeros((3, 2)), np.array([3]), np.int32(0))


def test_a_split_is_views_of_its_input():
    x, n = sg.matrix("x"), sg.scalar("n", "int64")
    a, b = split(x, [n, 2], 0)
    f, steps = _steps([x, n], [a * 1, b * 1])
    views = [s for s in steps["split"].statements if isinstance(s, ir.View)]
    assert [v.var for v in views] == steps["split"].root.outputs
    assert all(v.base is steps["split"].root.inputs[0] for v in views)
    got = f(np.arange(10.0).reshape(5, 2), 3)
    np.testing.assert_array_equal(got[1], [[6, 7], [8, 9]])
