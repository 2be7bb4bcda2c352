"""concatenate, stack and split: static shapes, errors at build and run time, runtime lengths."""

import sys

import numpy as np
import pytest

import symgrad as sg
from symgrad.ops.join import Concatenate, Split, split


def _line():
    return sys._getframe(1).f_lineno


def test_static_shape_and_dtype():
    a = sg.tensor(shape=(2, None), dtype="int32")
    b = sg.tensor(shape=(3, 4), dtype="float32")
    out = sg.concatenate([a, b])
    assert out.type == sg.TensorType("float64", (5, 4))
    assert sg.concatenate([a, sg.matrix()], axis=0).type.shape == (None, None)
    assert sg.stack([sg.scalar(), sg.scalar(), sg.scalar()]).type.shape == (3,)
    assert sg.stack([sg.tensor(shape=(2, 3))] * 4, axis=-1).type.shape == (2, 3, 4)


def test_static_mismatch_is_a_build_time_shape_error_at_the_users_line():
    a, b = sg.tensor(shape=(2, 3)), sg.tensor(shape=(2, 4))
    line = _line() + 2
    with pytest.raises(sg.ShapeError) as info:
        sg.concatenate([a, b], axis=0)
    msg = str(info.value)
    assert "concatenate" in msg and "(2, 3)" in msg and f"test_join.py:{line}" in msg


def test_runtime_mismatch_names_the_op_and_line():
    a, b = sg.matrix(), sg.matrix()
    line = _line() + 1
    out = sg.concatenate([a, b], axis=1)
    f = sg.function([a, b], out, mode="py")
    with pytest.raises(sg.ShapeError) as info:
        f(np.zeros((2, 3)), np.zeros((3, 3)))
    assert "concatenate" in str(info.value) and f"test_join.py:{line}" in str(info.value)


@pytest.mark.parametrize("xs,err", [
    ([], sg.ShapeError), (sg.matrix(), TypeError), ([sg.scalar(), sg.scalar()], sg.ShapeError),
    ([sg.vector(), sg.matrix()], sg.ShapeError),
], ids=["empty", "not-a-list", "0d", "ranks-differ"])
def test_concatenate_argument_checks(xs, err):
    with pytest.raises(err):
        sg.concatenate(xs)


def test_axis_checks():
    with pytest.raises(sg.ShapeError, match="axis"):
        sg.concatenate([sg.matrix()], axis=2)
    with pytest.raises(TypeError, match="axis"):
        sg.concatenate([sg.matrix()], axis=None)
    with pytest.raises(sg.ShapeError, match="axis"):
        sg.stack([sg.vector()], axis=3)


def test_stack_needs_equal_shapes():
    with pytest.raises(sg.ShapeError):
        sg.stack([sg.vector(), sg.matrix()])
    with pytest.raises(sg.ShapeError):
        sg.stack([sg.tensor(shape=(2,)), sg.tensor(shape=(3,))])
    a, b = sg.vector(), sg.vector()
    f = sg.function([a, b], sg.stack([a, b]), mode="py")
    with pytest.raises(sg.ShapeError):
        f(np.zeros(2), np.zeros(3))


def test_lengths_known_only_at_run_time():
    a, b = sg.matrix("a"), sg.matrix("b")
    out = sg.concatenate([a, b], axis=1)
    w = sg.constant(np.arange(5.0))
    ga, gb = sg.grad((out * w).sum(), [a, b])
    f = sg.function([a, b], [out, ga, gb], mode="py")
    for k in (1, 3):
        av, bv = np.ones((2, k)), np.ones((2, 5 - k))
        o, gav, gbv = f(av, bv)
        np.testing.assert_array_equal(o, np.ones((2, 5)))
        np.testing.assert_array_equal(gav, np.broadcast_to(np.arange(5.0)[:k], (2, k)))
        np.testing.assert_array_equal(gbv, np.broadcast_to(np.arange(5.0)[k:], (2, 5 - k)))


def test_gradient_dtypes_follow_the_inputs():
    a, b = sg.vector("a", dtype="float32"), sg.vector("b")
    ga, gb = sg.grad(sg.concatenate([a, b]).sum(), [a, b])
    assert (ga.dtype, gb.dtype) == ("float32", "float64")
    n = sg.vector("n", dtype="int64")
    with pytest.raises(sg.NonDifferentiableError):
        sg.grad(sg.concatenate([b, n]).sum(), n)


def test_split_pieces_and_runtime_check():
    x = sg.matrix("x")
    k = sg.scalar("k", dtype="int64")
    a, b = split(x, [k, 2], axis=0)
    assert a.type.shape == (None, None) and b.type.shape == (2, None)
    f = sg.function([x, k], [a, b], mode="py")
    av, bv = f(np.arange(8.0).reshape(4, 2), 2)
    np.testing.assert_array_equal(av, [[0, 1], [2, 3]])
    np.testing.assert_array_equal(bv, [[4, 5], [6, 7]])
    with pytest.raises(sg.ShapeError, match="split"):
        f(np.zeros((4, 2)), 1)


def test_split_static_mismatch():
    with pytest.raises(sg.ShapeError, match="add up"):
        split(sg.tensor(shape=(4,)), [1, 2])
    with pytest.raises(TypeError, match="int64 vector"):
        Split(0)(sg.vector(), sg.vector())


def test_split_gradient_fills_zeros_for_unused_pieces():
    x = sg.vector("x")
    a, b, c = split(x, [1, 2, 1])
    g = sg.grad((b * 3).sum(), x)
    np.testing.assert_array_equal(sg.evaluate(g, {x: np.ones(4)}), [0, 3, 3, 0])


def test_split_returns_fresh_arrays():
    x = np.arange(4.0)
    node = Split(0).make_node(sg.vector(), sg.constant(np.array([2, 2])))
    pieces = node.op.perform(node, x, np.array([2, 2]))
    assert all(not np.shares_memory(p, x) for p in pieces)


def test_concatenate_of_one_input_is_a_copy():
    x = np.arange(3.0)
    node = Concatenate(0).make_node(sg.vector())
    (out,) = node.op.perform(node, x)
    assert not np.shares_memory(out, x)


def test_ops_compare_by_axis():
    x = sg.matrix()
    assert sg.concatenate([x, x], axis=-1).owner.op == Concatenate(1)


def _placed_concatenation(extra=None):
    """A concatenation of static length along axis 0 of two products (one reshaped), a
    sum and an input: the products and the sum are made in their blocks of its result."""
    a = sg.tensor("a", shape=(5, 3), dtype="float32")
    b = sg.tensor("b", shape=(5, 4), dtype="float32")
    c = sg.tensor("c", shape=(2, 4), dtype="float32")
    ab = sg.dot(a.T, b)                                 # (3, 4), fresh memory: a BLAS call
    parts = [ab.reshape((12,)), sg.dot(c, b.T).reshape((10,)), b.sum(axis=0), c.reshape((8,))]
    out = sg.concatenate(parts)
    outs = [out] if extra is None else [extra(out, ab)]
    r = np.random.default_rng(3)
    args = [r.standard_normal(s).astype("float32") for s in ((5, 3), (5, 4), (2, 4))]
    A, B, C = (x.astype("float64") for x in args)
    ref = np.concatenate([(A.T @ B).ravel(), (C @ B.T).ravel(), B.sum(0), C.ravel()])
    return [a, b, c], outs, args, ref


def test_a_concatenation_of_static_length_gets_its_parts_made_in_place():
    inputs, outs, args, ref = _placed_concatenation()
    f = sg.function(inputs, outs, mode="c")
    # both products and the sum are written straight into the result, the input copied
    assert f.source.count("straight into its block of the concatenation") == 3
    assert f.source.count("written in its block already") == 3
    got = f(*args)[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got, sg.function(inputs, outs, mode="debug")(*args)[0])
    again = f(*args)[0]  # a second call: new blocks, the same values
    assert again is not got and np.array_equal(again, got)


def test_a_part_read_elsewhere_and_a_concatenation_inside_the_graph_stay_right():
    # the product ab is read again after the concatenation: it keeps its own memory
    inputs, outs, args, ref = _placed_concatenation(lambda out, ab: out[:12] * 2 + ab.sum())
    f = sg.function(inputs, outs, mode="c")
    assert f.source.count("straight into its block of the concatenation") == 2
    np.testing.assert_allclose(f(*args)[0], ref[:12] * 2 + ref[:12].sum(), rtol=1e-5,
                               atol=1e-5)
    # a concatenation that is no output (workspace memory), read by a later step
    inputs, outs, args, ref = _placed_concatenation(lambda out, ab: (out * out).sum())
    f = sg.function(inputs, outs, mode="c")
    assert "straight into its block of the concatenation" in f.source
    np.testing.assert_allclose(f(*args)[0], (ref * ref).sum(), rtol=1e-5)
