"""Indexing: NumPy equivalence of every index form, static shapes, errors, gradients."""

import builtins
import linecache
import pickle
import re

import numpy as np
import pytest

import symgrad as sg
from hypothesis import given, settings
from hypothesis import strategies as st

from symgrad.ops.advanced import AdvancedIncSubtensor, AdvancedSubtensor
from symgrad.ops.shape import ShapeAt
from symgrad.ops.subtensor import IncSubtensor, Subtensor

X = np.arange(4 * 5 * 6, dtype="float64").reshape(4, 5, 6) * 0.5 - 7.0


def run(out, givens=None):
    return sg.evaluate(out, givens or {})


def assert_names_line(err, opname, snippet):
    """The message names ``opname`` and a line of this file that holds ``snippet``."""
    msg = str(err)
    assert opname in msg, msg
    found = re.search(r"test_indexing\.py:(\d+)", msg)
    assert found, f"no line of this file in: {msg}"
    assert snippet in linecache.getline(__file__, int(found.group(1))), msg


# ---------------------------------------------------------------- NumPy equivalence

BASIC = [
    0, -1, (1, 2), (1, 2, 3), (-4, -5, -6), slice(None), slice(1, 3), slice(None, None, -1),
    slice(-2, None, -2), slice(10, -10, -1), slice(3, 1), slice(-100, 100),
    (slice(1, None, 2), slice(None, 2), 0), None, (None, 0, None), Ellipsis, (Ellipsis, 1),
    (0, Ellipsis, None), (slice(None), None, Ellipsis, -1), (), (slice(None), slice(None)),
    np.int32(2), (slice(0, 4, 1), 1),
]

ADVANCED = [
    [0, 2, 0], [[0, 1], [3, -1]], ([0, 1], [1, 2]), ([0, 1], slice(None), [1, 2]),
    (slice(None), [0, 1], [1, 2]), ([0, 1], 2), ([1, 0], slice(None), 0),
    (0, slice(None), [0, 1]), (slice(None), [0, 1], Ellipsis, [1, 2]), (Ellipsis, [0, 2]),
    (None, [0, 1], None, [1, 2]), ([[0], [1]], [0, 1, 2]), ([0, 1], slice(1, 3), None),
    np.array([1, 3]), [], ([], slice(None)), (np.array([[1]]), [0, 1], [2]),
    (slice(None, None, -1), [4, -5]), ([-1, -4], Ellipsis), ([0, 1], 1, [2, 3]),
    (1, [0, 1], 2), ([2], None, 0), ([[1, 2]], slice(None), [[0], [5]]),
    (Ellipsis, [0, 0], 0, slice(None)),
]


FORMS = [(k, Subtensor) for k in BASIC] + [(k, AdvancedSubtensor) for k in ADVANCED]


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("key, op", FORMS, ids=[repr(k) for k, _ in FORMS])
def test_matches_numpy(key, op, static):
    x = sg.tensor("x", shape=X.shape if static else (None,) * 3)
    out = x[key]
    want = X[key]
    got = run(out, {x: X})
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert isinstance(out.owner.op, op)
    if static:
        assert out.type.shape == want.shape  # every length is computable from constants
    else:
        assert out.type.accepts_shape(want.shape)


@pytest.mark.parametrize("key", BASIC + ADVANCED, ids=repr)
def test_gradient_scatters_like_numpy(key):
    """The cotangent of x[key] is the seed added back at those positions (repeats add up)."""
    x = sg.tensor("x", shape=(None,) * 3)
    out = x[key]
    seed = np.random.default_rng(0).standard_normal(X[key].shape)
    g = run(sg.vjp(out, x, sg.constant(seed)), {x: X})
    want = np.zeros_like(X)
    np.add.at(want, key if isinstance(key, tuple) else (key,), seed)
    np.testing.assert_allclose(g, want)


SYMBOLIC = [  # (build from x, i, j, ids; the same on NumPy arrays)
    ("x[i]", lambda x, i, j, ids: x[i]),
    ("x[i, j]", lambda x, i, j, ids: x[i, j]),
    ("x[i:j]", lambda x, i, j, ids: x[i:j]),
    ("x[::j]", lambda x, i, j, ids: x[::j]),
    ("x[j:i:-1, i]", lambda x, i, j, ids: x[j:i:-1, i]),
    ("x[ids]", lambda x, i, j, ids: x[ids]),
    ("x[i, ids]", lambda x, i, j, ids: x[i, ids]),
    ("x[ids, :, i]", lambda x, i, j, ids: x[ids, :, i]),
    ("x[:, ids, ids]", lambda x, i, j, ids: x[:, ids, ids]),
    ("x[i:, ids]", lambda x, i, j, ids: x[i:, ids]),
]


@pytest.mark.parametrize("build", [b for _, b in SYMBOLIC], ids=[n for n, _ in SYMBOLIC])
@pytest.mark.parametrize("i, j", [(0, 3), (-2, 1), (3, -4), (1, 2)])
@pytest.mark.filterwarnings("ignore::symgrad.UnusedInputWarning")  # each case reads some of x, i, j, ids
def test_symbolic_indices_match_numpy(build, i, j):
    x = sg.tensor3("x")
    si, sj = sg.scalar("i", "int64"), sg.scalar("j", "int32")
    sids = sg.matrix("ids", "int64")
    ids = np.array([[0, -1], [3, 2]])
    f = sg.function([x, si, sj, sids], build(x, si, sj, sids), mode="py")
    want = build(X, i, j, ids)
    got = f(X, i, j, ids)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@st.composite
def _index(draw):
    """A random NumPy index for X: ints, slices, None, integer arrays, maybe an Ellipsis.

    Positions lie in [-4, 4), valid on every axis of X, so an Ellipsis may go anywhere.
    """
    position = st.integers(-4, 3)
    bound = st.none() | st.integers(-8, 8)
    step = st.sampled_from([None, 1, 2, -1, -3])
    item = st.one_of(
        position, st.none(),
        st.builds(slice, bound, bound, step),
        st.builds(lambda v, shape: np.array(v).reshape(shape),
                  st.lists(position, min_size=2, max_size=2),
                  st.sampled_from([(2,), (1, 2), (2, 1)])))
    items = draw(st.lists(item, max_size=4))
    items = [i for i in items if i is None][:2] + [i for i in items if i is not None][:X.ndim]
    items = draw(st.permutations(items))
    if draw(st.booleans()):
        items.insert(draw(st.integers(0, len(items))), Ellipsis)
    return tuple(items)


@settings(max_examples=150, deadline=None)
@given(_index())
def test_random_indices_match_numpy(key):
    try:
        want = X[key]
    except (IndexError, ValueError):
        return  # NumPy refuses it too (e.g. index arrays that do not broadcast)
    x = sg.tensor("x", shape=X.shape)
    out = x[key]
    assert out.type.shape == want.shape
    np.testing.assert_array_equal(run(out, {x: X}), want)
    seed = np.arange(want.size, dtype="float64").reshape(want.shape) + 1
    expect = np.zeros_like(X)
    np.add.at(expect, key, seed)
    np.testing.assert_array_equal(run(sg.vjp(out, x, sg.constant(seed)), {x: X}), expect)


def test_results_are_fresh_arrays():
    x = sg.matrix("x")
    value = np.ones((3, 4))
    f = sg.function([x], [x[1:], x[0], x[()], x[[0, 1]]], mode="py")
    for out in f(value):
        assert not np.shares_memory(out, value)


def test_dtypes_and_zero_size():
    x = sg.vector("x", dtype="int32")
    assert x[1:].dtype == "int32" and x[sg.vector("i", "int32")].dtype == "int32"
    m = sg.matrix("m")
    empty = np.zeros((0, 3))
    assert run(m[1:], {m: empty}).shape == (0, 3)
    assert run(m[[]], {m: empty}).shape == (0, 3)
    assert run(m[:, [2, 0]], {m: empty}).shape == (0, 2)


# ---------------------------------------------------------------- static shapes

def test_static_shapes():
    x = sg.tensor("x", shape=(5, None, 3))
    i = sg.scalar("i", "int64")
    assert x[1:4].type.shape == (3, None, 3)
    assert x[::-2].type.shape == (3, None, 3)
    assert x[i:].type.shape == (None, None, 3)
    assert x[:, 0].type.shape == (5, 3)
    assert x[None].type.shape == (1, 5, None, 3)
    assert x[..., 1:].type.shape == (5, None, 2)
    assert x[sg.tensor("ids", "int64", (2, 3))].type.shape == (2, 3, None, 3)
    assert x[[0, 1], :, [1, 2]].type.shape == (2, None)
    assert x[sg.arange(4)].type.shape == (4, None, 3)
    assert x[:, sg.constant(1)].type.shape == (5, 3)


def test_shape_entry_is_shape_at():
    x = sg.tensor("x", shape=(5, None))
    n = sg.shape(x)[0]
    assert isinstance(n.owner.op, ShapeAt) and n.owner.inputs[0] is x
    assert sg.shape(x)[-1].owner.op == ShapeAt(1)
    assert sg.broadcast_to(sg.constant(0.0), (sg.shape(x)[0], 2)).type.shape == (5, 2)
    assert run(sg.shape(x)[1], {x: np.zeros((5, 7))}) == 7
    assert run(sg.shape(x)[1:], {x: np.zeros((5, 7))}).tolist() == [7]
    with pytest.raises(sg.IndexError) as err:
        sg.shape(x)[2]
    assert_names_line(err.value, "subtensor", "sg.shape(x)[2]")


def test_arange():
    assert sg.arange(5).type == sg.TensorType("int64", (5,))
    assert sg.arange(2, 11, 3).type.shape == (3,)
    assert sg.arange(0, 1, 0.1).type == sg.TensorType("float64", (10,))
    assert sg.arange(3, dtype="float32").dtype == "float32"
    assert sg.arange(sg.scalar("n", "int32")).type == sg.TensorType("int64", (None,))
    assert sg.arange(sg.scalar("a", "float32"), 4).dtype == "float64"  # as np.arange
    np.testing.assert_array_equal(run(sg.arange(5, 0, -2)), np.arange(5, 0, -2))
    np.testing.assert_array_equal(run(sg.arange(1, 1.3, 0.1)), np.arange(1, 1.3, 0.1))
    assert run(sg.arange(3, 1)).shape == (0,)
    with pytest.raises(ValueError, match="step must not be zero"):
        sg.arange(0, 5, 0)
    s = sg.scalar("s", "int64")
    with pytest.raises(ValueError, match="step must not be zero") as err:
        sg.function([s], sg.arange(0, 5, s), mode="py")(0)
    assert_names_line(err.value, "arange", "sg.arange(0, 5, s)")
    with pytest.raises(TypeError, match="stop must be a number"):
        sg.arange("3")
    with pytest.raises(TypeError):
        sg.arange(sg.vector("v"))


def test_arange_gradient():
    a, c = sg.scalar("a"), sg.scalar("c")
    r = sg.arange(a, 2.5, c)  # [a, a + c, a + 2c] at the point below
    ga, gc = sg.grad(None, [a, c], known_grads={r: sg.constant([1.0, 2.0, 3.0])})
    assert run(ga, {a: 0.5, c: 0.75}) == 6.0
    assert run(gc, {a: 0.5, c: 0.75}) == 0 * 1 + 1 * 2 + 2 * 3


# ---------------------------------------------------------------- errors

def test_out_of_range_at_build_time():
    x = sg.tensor("x", shape=(3, 4))
    with pytest.raises(sg.IndexError) as err:
        x[3]
    assert isinstance(err.value, builtins.IndexError) and isinstance(err.value, sg.SymgradError)
    assert_names_line(err.value, "subtensor", "x[3]")
    with pytest.raises(sg.IndexError) as err:
        x[:, -5]
    assert_names_line(err.value, "subtensor", "x[:, -5]")
    with pytest.raises(sg.IndexError) as err:
        x[[0, 3]]
    assert_names_line(err.value, "advanced_subtensor", "x[[0, 3]]")
    assert "index 3" in str(err.value) and "size 3" in str(err.value)


def test_out_of_range_at_run_time():
    x, i = sg.matrix("x"), sg.scalar("i", "int64")
    ids = sg.vector("ids", "int64")
    f = sg.function([x, i, ids], [x[i], x[2], x[:, ids]], mode="py")
    f(np.zeros((3, 4)), -3, np.array([3, -4]))
    for args, op, snippet in [((np.zeros((3, 4)), 3, [0]), "subtensor", "f = sg.function"),
                              ((np.zeros((2, 4)), 0, [0]), "subtensor", "f = sg.function"),
                              ((np.zeros((3, 4)), 0, [0, 4]), "advanced_subtensor", "f = sg"),
                              ((np.zeros((3, 4)), 0, [-5]), "advanced_subtensor", "f = sg")]:
        with pytest.raises(sg.IndexError) as err:
            f(*args)
        assert isinstance(err.value, builtins.IndexError)
        assert_names_line(err.value, op, snippet)


def test_label_out_of_range_names_the_gather():
    logp, y = sg.matrix("logp"), sg.vector("y", "int64")
    picked = logp[sg.arange(sg.shape(logp)[0]), y]
    f = sg.function([logp, y], picked, mode="py")
    with pytest.raises(sg.IndexError, match=r"index 4 is out of range for axis 1 with size 4") \
            as err:
        f(np.zeros((2, 4)), np.array([1, 4]))
    assert_names_line(err.value, "advanced_subtensor", "picked = logp[")


def test_scatter_out_of_range_at_run_time():
    x, ids = sg.vector("x"), sg.vector("ids", "int64")
    out = sg.inc_subtensor(x[ids], 1.0)
    with pytest.raises(sg.IndexError) as err:
        sg.function([x, ids], out, mode="py")(np.zeros(3), np.array([0, 3]))
    assert_names_line(err.value, "advanced_inc_subtensor", "out = sg.inc_subtensor")


def test_too_many_indices_and_ellipses():
    x = sg.matrix("x")
    with pytest.raises(sg.IndexError, match="too many indices"):
        x[0, 0, 0]
    with pytest.raises(sg.IndexError, match="single ellipsis"):
        x[..., ...]
    with pytest.raises(ValueError, match="step cannot be zero"):
        x[::0]


@pytest.mark.parametrize("make", [
    lambda x: x[x > 0], lambda x: x[np.array([True, False, True])],
    lambda x: x[[True, False, True]], lambda x: x[True],
    lambda x: x[sg.vector("m", "bool")],
], ids=["variable", "ndarray", "list", "python-bool", "bool-input"])
def test_bool_masks_are_refused(make):
    with pytest.raises(TypeError, match=r"boolean mask.*sg\.where"):
        make(sg.vector("x"))


@pytest.mark.parametrize("make", [
    lambda x: x[1.0], lambda x: x[sg.scalar("f")], lambda x: x[np.array([0.5])],
    lambda x: x[0.5:], lambda x: x[[1.0, 2.0]], lambda x: x[sg.vector("v")],
], ids=["float", "float-scalar", "float-array", "float-bound", "float-list", "float-vector"])
def test_float_indices_are_refused(make):
    with pytest.raises(TypeError, match="integer"):
        make(sg.vector("x"))


def test_other_index_errors():
    x, i = sg.vector("x"), sg.scalar("i", "int64")
    with pytest.raises(TypeError, match=r"sg\.stack"):
        x[[i, 0]]
    with pytest.raises(TypeError, match="unsupported index"):
        x["a"]
    with pytest.raises(sg.ShapeError, match="broadcast"):
        sg.matrix("m")[sg.constant([0, 1]), sg.constant([0, 1, 2])]
    m, r, c = sg.matrix("m"), sg.vector("r", "int64"), sg.vector("c", "int64")
    f = sg.function([m, r, c], m[r, c], mode="py")
    with pytest.raises(sg.ShapeError, match="cannot be broadcast") as err:
        f(np.zeros((3, 3)), np.array([0, 1]), np.array([0, 1, 2]))
    assert_names_line(err.value, "advanced_subtensor", "m[r, c]")


def test_region_update_errors():
    x = sg.tensor("x", shape=(4, 3))
    with pytest.raises(TypeError, match="result of indexing"):
        sg.inc_subtensor(x, 1.0)
    with pytest.raises(sg.ShapeError, match="does not fit"):
        sg.set_subtensor(x[1:3], sg.constant(np.zeros((3, 3))))
    with pytest.raises(TypeError, match="cannot put float64"):
        sg.inc_subtensor(sg.vector("v", "int64")[1:], sg.vector("w"))
    v, w = sg.vector("v"), sg.vector("w")
    f = sg.function([v, w], sg.inc_subtensor(v[1:], w), mode="py")
    with pytest.raises(sg.ShapeError, match="does not fit"):
        f(np.zeros(4), np.zeros(2))


# ---------------------------------------------------------------- region updates and gradients

def test_inc_and_set_subtensor():
    x, y = sg.matrix("x"), sg.vector("y")
    val = np.arange(6.0).reshape(2, 3)
    got = run(sg.set_subtensor(x[:, 1], y), {x: val, y: np.array([9.0, 8.0])})
    np.testing.assert_array_equal(got, [[0, 9, 2], [3, 8, 5]])
    got = run(sg.inc_subtensor(x[[1, 1], [0, 0]], 1.0), {x: val})
    np.testing.assert_array_equal(got, [[0, 1, 2], [5, 4, 5]])
    assert sg.inc_subtensor(x[1:], 1).dtype == "float64"


def test_gather_gradient_accumulates_repeated_rows():
    E = sg.matrix("E")
    rows = E[[0, 2, 0]]
    g = sg.grad(None, E, known_grads={rows: sg.constant(np.ones((3, 2)))})
    np.testing.assert_array_equal(run(g, {E: np.zeros((3, 2))}), [[2, 2], [0, 0], [1, 1]])
    assert isinstance(g.owner.op, AdvancedIncSubtensor)


def test_pair_gradient_accumulates():
    M = sg.matrix("M")
    r, c = sg.vector("r", "int64"), sg.vector("c", "int64")
    picked = M[r, c]
    g = sg.grad(None, M, known_grads={picked: sg.constant([1.0, 2.0, 4.0])})
    got = run(g, {M: np.zeros((2, 3)), r: np.array([0, 0, 1]), c: np.array([1, 1, -3])})
    np.testing.assert_array_equal(got, [[0, 3, 0], [4, 0, 0]])


def test_logp_of_labels():
    logp, y = sg.matrix("logp"), sg.vector("y", "int64")
    picked = logp[sg.arange(sg.shape(logp)[0]), y]
    lv, yv = np.log(np.full((3, 4), 0.25)) + np.arange(12).reshape(3, 4), np.array([3, 0, 2])
    np.testing.assert_array_equal(run(picked, {logp: lv, y: yv}), lv[np.arange(3), yv])
    g = sg.grad(None, logp, known_grads={picked: sg.constant(np.ones(3))})
    np.testing.assert_array_equal(run(g, {logp: lv, y: yv}), np.eye(4)[yv])


def test_set_gradient_zeroes_the_region():
    x, y = sg.vector("x"), sg.scalar("y")
    out = sg.set_subtensor(x[1:3], y)
    gx, gy = sg.grad(None, [x, y], known_grads={out: sg.constant([1.0, 2.0, 3.0, 4.0])})
    givens = {x: np.zeros(4), y: 0.0}
    np.testing.assert_array_equal(run(gx, givens), [1, 0, 0, 4])
    assert run(gy, givens) == 5.0


def test_second_order_gather_scatter():
    """The vjp of a gather is a scatter-add; the vjp of that, w.r.t. the seed, is the gather."""
    E, u = sg.matrix("E"), sg.matrix("u")
    ids = sg.constant([1, 1, 0])
    scattered = sg.vjp(E[ids], E, u)
    back = sg.vjp(scattered, u, sg.constant(np.arange(4.0).reshape(2, 2)))
    np.testing.assert_array_equal(run(back, {E: np.zeros((2, 2)), u: np.zeros((3, 2))}),
                                  [[2, 3], [2, 3], [0, 1]])


def test_forward_mode_and_hessian_through_indexing():
    E, t = sg.matrix("E"), sg.constant(np.arange(6.0).reshape(3, 2))
    ids = sg.constant([2, 0, 2])
    np.testing.assert_array_equal(run(sg.jvp(E[ids], E, t), {E: np.zeros((3, 2))}),
                                  np.arange(6.0).reshape(3, 2)[[2, 0, 2]])
    np.testing.assert_array_equal(run(sg.jvp(E[1:, ::-1], E, t), {E: np.zeros((3, 2))}),
                                  [[3, 2], [5, 4]])
    x = sg.tensor("x", shape=(3,))
    h = sg.hessian((x[[0, 0, 2]] ** 2).sum(), x)
    np.testing.assert_array_equal(run(h, {x: np.ones(3)}), np.diag([4.0, 0.0, 2.0]))


def test_index_inputs_are_not_differentiable():
    x, f = sg.vector("x"), sg.scalar("f")
    out = x[sg.cast(f, "int64")]
    with pytest.raises(sg.NonDifferentiableError):
        sg.grad(out, f)


# ---------------------------------------------------------------- ops as values

def test_equal_indexing_gives_equal_ops():
    x = sg.matrix("x")
    assert x[1:3].owner.op == x[1:3:1].owner.op == x[1:3, :].owner.op == x[1:3, ...].owner.op
    assert hash(x[1:3].owner.op) == hash(x[1:3, :].owner.op)
    assert x[1:3].owner.op != x[1:4].owner.op
    assert x[[0, 1]].owner.op == x[np.array([2])].owner.op  # the values are inputs
    assert str(x[1:, ::-1, None].owner.op) == "subtensor[1:, ::-1, None]"
    assert str(x[sg.scalar("i", "int64"), [0]].owner.op) == "advanced_subtensor[?, [?]]"
    assert str(sg.set_subtensor(x[0], 1.0).owner.op) == "set_subtensor[0]"
    assert isinstance(sg.inc_subtensor(x[0], 1.0).owner.op, IncSubtensor)


def test_ops_pickle():
    x, i = sg.matrix("x"), sg.scalar("i", "int64")
    outs = [x[1:, None, i], x[[0], ..., 1], sg.inc_subtensor(x[[0, 0]], 1.0),
            sg.set_subtensor(x[::-1], 0.0), sg.arange(i, 9, 2)]
    for out in outs:
        assert pickle.loads(pickle.dumps(out.owner.op)) == out.owner.op


@pytest.mark.parametrize("layout", ["contiguous", "reversed rows", "strided columns", "3d"])
def test_gathering_whole_rows_matches_numpy_on_every_layout(layout):
    """E[ids] copies whole rows as blocks when a row is contiguous, element by element else."""
    r = np.random.default_rng(11)
    base = r.standard_normal((40, 6, 3) if layout == "3d" else (40, 12))
    E = {"contiguous": base, "reversed rows": base[::-1], "strided columns": base[:, ::2],
         "3d": base}[layout]
    x = sg.tensor("E", shape=(None,) * E.ndim)
    for ids in (r.integers(-40, 40, 25), r.integers(-40, 40, (4, 5)).astype("int32"),
                r.integers(0, 40, 50)[::3], np.zeros(0, "int64")):
        i = sg.tensor("i", dtype=ids.dtype.name, shape=(None,) * ids.ndim)
        got = sg.function([x, i], x[i])(E, ids)
        np.testing.assert_array_equal(got, E[ids])
    i = sg.vector("i", dtype="int64")
    with pytest.raises(sg.IndexError, match="out of range"):
        sg.function([x, i], x[i])(E, np.array([3, 40]))
