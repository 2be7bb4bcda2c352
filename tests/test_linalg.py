"""matmul, dot and outer: NumPy's shape semantics, build-time and runtime errors, gradients."""

import itertools

import numpy as np
import pytest

import symgrad as sg
from symgrad.ops.linalg import MatMul

RNG = np.random.default_rng(0)
LEN = {"m": 3, "k": 4, "n": 2}
# Operand shapes by rank, named by letters; "k" is the contracted axis.
OPERANDS = {0: (), 1: ("k",), 2: ("m", "k")}
RIGHT = {0: (), 1: ("k",), 2: ("k", "n")}


def _value(letters):
    return RNG.standard_normal(tuple(LEN[c] for c in letters))


def _sym(shape, static):
    return sg.tensor(shape=shape if static else (None,) * len(shape))


def _run(fn, a, b, static):
    x, y = _sym(a.shape, static), _sym(b.shape, static)
    out = fn(x, y)
    got = sg.function([x, y], out, mode="py")(a, b)
    return out, got


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
@pytest.mark.parametrize("nd_a,nd_b", list(itertools.product([0, 1, 2], repeat=2)))
def test_dot_matches_numpy_for_every_rank_up_to_2(nd_a, nd_b, static):
    a, b = _value(OPERANDS[nd_a]), _value(RIGHT[nd_b])
    want = np.dot(a, b)
    out, got = _run(sg.dot, a, b, static)
    assert got.shape == want.shape and out.ndim == want.ndim
    np.testing.assert_allclose(got, want, rtol=1e-12)
    if static:
        assert out.type.shape == want.shape


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
@pytest.mark.parametrize("nd_a,nd_b", list(itertools.product([1, 2], repeat=2)))
def test_matmul_matches_numpy_for_vectors_and_matrices(nd_a, nd_b, static):
    a, b = _value(OPERANDS[nd_a]), _value(RIGHT[nd_b])
    out, got = _run(sg.matmul, a, b, static)
    want = a @ b
    assert got.shape == want.shape and out.ndim == want.ndim
    np.testing.assert_allclose(got, want, rtol=1e-12)
    if static:
        assert out.type.shape == want.shape


@pytest.mark.parametrize("sa,sb", [
    ((2, 3, 4), (4,)), ((4,), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((1, 3, 4), (6, 4, 2)),
    ((3, 4), (2, 2, 4, 5)), ((7, 3, 4), (4, 5)),
])
@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
def test_matmul_broadcasts_batch_axes_like_numpy(sa, sb, static):
    a, b = RNG.standard_normal(sa), RNG.standard_normal(sb)
    out, got = _run(sg.matmul, a, b, static)
    np.testing.assert_allclose(got, np.matmul(a, b), rtol=1e-12)
    if static:
        assert out.type.shape == np.matmul(a, b).shape


@pytest.mark.parametrize("sa,sb", [((2, 3, 4), (4,)), ((2, 3, 4), (4, 5)), ((5, 2, 3, 4), (4, 1))])
def test_dot_of_nd_with_vector_or_matrix_is_np_dot(sa, sb):
    a, b = RNG.standard_normal(sa), RNG.standard_normal(sb)
    _, got = _run(sg.dot, a, b, static=False)
    np.testing.assert_allclose(got, np.dot(a, b), rtol=1e-12)


@pytest.mark.parametrize("nd_a", [1, 2, 3])
def test_dot_with_a_batched_second_operand_points_to_matmul(nd_a):
    with pytest.raises(TypeError, match="matmul"):
        sg.dot(sg.tensor(shape=(None,) * nd_a), sg.tensor3())


def test_operators_and_ndarrays_on_either_side():
    A = sg.matrix("A")
    M = RNG.standard_normal((3, 3))
    f = sg.function([A], [A @ M, M @ A], mode="py")
    left, right = f(np.eye(3))
    np.testing.assert_allclose(left, M)
    np.testing.assert_allclose(right, M)


def test_static_contracted_mismatch_is_a_build_time_shape_error_at_the_users_line():
    a, b = sg.tensor(shape=(3, 4)), sg.tensor(shape=(5, 2))
    line = _line() + 2
    with pytest.raises(sg.ShapeError) as info:
        a @ b
    msg = str(info.value)
    assert "matmul" in msg and "4" in msg and "5" in msg
    assert f"test_linalg.py:{line}" in msg


@pytest.mark.parametrize("sa,sb", [((3,), (4,)), ((3,), (4, 2)), ((2, 3), (4,)),
                                   ((2, 2, 3), (4, 1))])
def test_every_rank_checks_contracted_lengths(sa, sb):
    with pytest.raises(sg.ShapeError, match="not aligned"):
        sg.matmul(sg.tensor(shape=sa), sg.tensor(shape=sb))
    with pytest.raises(ValueError):  # NumPy raises ValueError too
        np.matmul(np.zeros(sa), np.zeros(sb))


def test_dot_checks_contracted_lengths_too():
    with pytest.raises(sg.ShapeError, match="dot"):
        sg.dot(sg.tensor(shape=(3,)), sg.tensor(shape=(4, 2)))


def test_static_batch_mismatch_is_a_build_time_shape_error():
    with pytest.raises(sg.ShapeError, match="broadcast"):
        sg.tensor(shape=(2, 3, 4)) @ sg.tensor(shape=(3, 4, 5))


def test_scalars_are_refused_by_matmul():
    with pytest.raises(sg.ShapeError, match=r"\*"):
        sg.matmul(sg.scalar(), sg.matrix())


def test_runtime_mismatch_names_the_op_and_line():
    a, b = sg.matrix(), sg.matrix()
    line = _line() + 1
    out = a @ b
    f = sg.function([a, b], out, mode="py")
    with pytest.raises(sg.ShapeError) as info:
        f(np.zeros((2, 3)), np.zeros((4, 2)))
    assert "matmul" in str(info.value) and f"test_linalg.py:{line}" in str(info.value)


@pytest.mark.parametrize("da,db", [("int64", "int64"), ("int32", "int32"), ("int32", "float32"),
                                   ("float32", "float64"), ("bool", "bool"), ("int64", "float32")])
def test_dtype_follows_numpy(da, db):
    a = (RNG.standard_normal((2, 3)) * 3).astype(da)
    b = (RNG.standard_normal((3, 2)) * 3).astype(db)
    x, y = sg.matrix(dtype=da), sg.matrix(dtype=db)
    out = x @ y
    got = sg.function([x, y], out, mode="py")(a, b)
    assert out.dtype == got.dtype.name == np.matmul(a, b).dtype.name


def test_integer_operands_have_no_gradient():
    x = sg.matrix("x", dtype="int64")
    w = sg.matrix("w")
    cost = sg.cast(x @ x, "float64").sum() + (w * 2).sum()
    with pytest.raises(sg.NonDifferentiableError):
        sg.grad(cost, [x])


def test_gradient_of_a_float_matrix_times_an_int_matrix():
    w, k = sg.matrix("w", dtype="float32"), sg.matrix("k", dtype="int64")
    g = sg.grad((w @ k).sum(), w)
    assert g.dtype == "float32"
    kv = np.arange(6).reshape(3, 2)
    got = sg.function([w, k], g, mode="py")(np.ones((2, 3), "float32"), kv)
    np.testing.assert_allclose(got, np.ones((2, 2)) @ kv.T)


def test_gradient_graph_is_matmuls_and_transposes():
    # The C backend lowers MatMul to gemm; the transposes must stay separate dimshuffles.
    a, b = sg.matrix("a"), sg.matrix("b")
    ga, gb = sg.grad((a @ b).sum(), [a, b])
    names = {n.op.name for n in sg.graph.toposort([ga, gb])}
    assert "matmul" in names and "dimshuffle" in names


def test_gradient_of_broadcast_batch_is_summed_back():
    a, b = sg.tensor(shape=(None, None)), sg.tensor3()
    av, bv = RNG.standard_normal((3, 4)), RNG.standard_normal((5, 4, 2))
    ga, gb = sg.grad((a @ b).sum(), [a, b])
    got_a, got_b = sg.function([a, b], [ga, gb], mode="py")(av, bv)
    ones = np.ones((5, 3, 2))
    np.testing.assert_allclose(got_a, (ones @ bv.transpose(0, 2, 1)).sum(0))
    np.testing.assert_allclose(got_b, av.T @ ones)


def test_second_order_through_matmul():
    sg.verify_grad(lambda a, b: sg.grad(((a @ b) ** 2).sum(), a).sum(),
                   [RNG.standard_normal((2, 3)), RNG.standard_normal((3, 2))])


def test_outer_flattens_like_numpy():
    a, b = sg.tensor(shape=(2, 2)), sg.vector()
    out = sg.outer(a, b)
    assert out.type.shape == (4, None)
    av, bv = RNG.standard_normal((2, 2)), RNG.standard_normal(3)
    np.testing.assert_allclose(sg.function([a, b], out, mode="py")(av, bv), np.outer(av, bv))


def test_matmul_op_returns_a_fresh_array():
    a = np.eye(2)
    node = MatMul().make_node(sg.matrix(), sg.matrix())
    out = node.op.perform(node, a, np.eye(2))[0]
    assert not np.shares_memory(out, a) and out.dtype == np.float64


def test_empty_contraction_gives_zeros():
    a, b = sg.matrix(), sg.matrix()
    got = sg.function([a, b], a @ b, mode="py")(np.zeros((2, 0)), np.zeros((0, 3)))
    np.testing.assert_array_equal(got, np.zeros((2, 3)))


def _line():
    import sys
    return sys._getframe(1).f_lineno
