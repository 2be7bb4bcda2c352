"""Per-example gradients: ``sg.jacobian`` of per-example values computes each example's
row from that example alone (``autodiff.row_of``, ops' ``row_inputs``), so a step of its
loop costs one example's forward and backward pass, not the whole batch's.

Checked: the rows' values equal the gradients computed one example at a time, in modes
"py" and "c"; the step reads the batch only through one row (the structure that makes it
cheap); broadcasting operands whose leading length is known only at call time; variables
differentiated with respect to that lie where the row would be pushed through; an empty
batch; ops that mix rows keep the whole-batch computation.
"""

import numpy as np
import pytest

import symgrad as sg
from symgrad.autodiff import row_of
from symgrad.graph import toposort

RNG = np.random.default_rng(7)


@pytest.fixture(params=["py", "c"])
def mode(request):
    return request.param


def _mlp():
    W1 = sg.shared(RNG.standard_normal((5, 6)), name="W1")
    b1 = sg.shared(RNG.standard_normal(6), name="b1")
    W2 = sg.shared(RNG.standard_normal((6, 3)), name="W2")
    b2 = sg.shared(RNG.standard_normal(3), name="b2")
    return [W1, b1, W2, b2]


def _losses(X, y, params):
    W1, b1, W2, b2 = params
    h = sg.relu(X @ W1 + b1)
    logits = sg.nn.log_softmax(h @ W2 + b2, axis=1) * 0.5 + sg.tanh(h).mean(axis=1, keepdims=True)
    return sg.nn.cross_entropy(logits, y) + (h ** 2).sum(axis=1)


def test_rows_equal_the_gradients_computed_one_example_at_a_time(mode):
    params = _mlp()
    X, y = sg.matrix("X"), sg.vector("y", dtype="int64")
    J = sg.jacobian(_losses(X, y, params), params)
    f = sg.function([X, y], J, mode=mode)
    one = sg.function([X, y], sg.grad(_losses(X, y, params)[0], params), mode=mode)
    Xv, yv = RNG.standard_normal((7, 5)), RNG.integers(0, 3, size=7)
    rows = f(Xv, yv)
    for i in range(7):
        for got, want in zip(rows, one(Xv[i:i + 1], yv[i:i + 1])):
            np.testing.assert_allclose(got[i], want, rtol=1e-13, atol=1e-15)
    # ... and their mean is the minibatch gradient
    mean = sg.function([X, y], sg.grad(_losses(X, y, params).mean(), params), mode=mode)
    for got, want in zip(rows, mean(Xv, yv)):
        np.testing.assert_allclose(got.mean(axis=0), want, rtol=1e-12, atol=1e-14)


def test_the_row_reads_the_batch_through_one_row_only():
    params = _mlp()
    X, y = sg.matrix("X"), sg.vector("y", dtype="int64")
    i = sg.scalar("i", dtype="int64")
    row = row_of(_losses(X, y, params), i)
    for node in toposort([row]):
        for x in node.inputs:
            if x is X or x is y:
                # a row of it (subtensor), or its length (to index a broadcast safely)
                assert node.op.name in ("subtensor", "shape_at"), node.op
    # one example's products: no matrix product has the batch's rows
    f = sg.function([X, y, i], row, mode="py")
    Xv, yv = RNG.standard_normal((4, 5)), RNG.integers(0, 3, size=4)
    full = sg.function([X, y], _losses(X, y, params), mode="py")(Xv, yv)
    for k in range(4):
        np.testing.assert_allclose(f(Xv, yv, k), full[k:k + 1], rtol=1e-14)


def test_an_operand_of_unknown_length_that_broadcasts_at_call_time(mode):
    # B's leading length is not known when the graph is built; at call time it is 1 (it
    # broadcasts over the batch) or the batch's (row by row): both give the right rows.
    W = sg.shared(RNG.standard_normal((3, 2)), name="W")
    X, B = sg.matrix("X"), sg.matrix("B")
    losses = ((sg.tanh(X * B) @ W) ** 2).sum(axis=1)
    f = sg.function([X, B], sg.jacobian(losses, W), mode=mode)
    one = sg.function([X, B], sg.grad(losses.sum(), W), mode=mode)
    Xv = RNG.standard_normal((4, 3))
    for Bv in (RNG.standard_normal((1, 3)), RNG.standard_normal((4, 3))):
        rows = f(Xv, Bv)
        for i in range(4):
            np.testing.assert_allclose(rows[i], one(Xv[i:i + 1], Bv[i:i + 1] if len(Bv) > 1
                                                    else Bv), rtol=1e-13)


def test_with_respect_to_a_variable_the_row_would_pass_through(mode):
    # The hidden layer h is itself differentiated with respect to: the row stops at it,
    # and row i of the Jacobian is the whole (batch, 6) gradient of example i's loss.
    W1, b1, W2, b2 = _mlp()
    X, y = sg.matrix("X"), sg.vector("y", dtype="int64")
    h = sg.tanh(X @ W1 + b1)
    losses = sg.nn.cross_entropy(h @ W2 + b2, y)
    f = sg.function([X, y], sg.jacobian(losses, [h, W2]), mode=mode)
    Xv, yv = RNG.standard_normal((3, 5)), RNG.integers(0, 3, size=3)
    Jh, JW2 = f(Xv, yv)
    assert Jh.shape == (3, 3, 6) and JW2.shape == (3, 6, 3)
    hv = np.tanh(Xv @ W1.get_value() + b1.get_value())
    z = hv @ W2.get_value() + b2.get_value()
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dz = p - np.eye(3)[yv]
    for i in range(3):
        want = np.zeros((3, 6))
        want[i] = dz[i] @ W2.get_value().T
        np.testing.assert_allclose(Jh[i], want, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(JW2[i], np.outer(hv[i], dz[i]), rtol=1e-12, atol=1e-15)


def test_an_empty_batch_has_an_empty_jacobian(mode):
    params = _mlp()
    X, y = sg.matrix("X"), sg.vector("y", dtype="int64")
    J = sg.jacobian(_losses(X, y, params), params)
    # every row's shape is the parameter's: the loop knows its empty stacks itself
    assert [j.type.shape[1:] for j in J] == [p.type.shape for p in params]
    rows = sg.function([X, y], J, mode=mode)(np.zeros((0, 5)), np.zeros(0, dtype="int64"))
    assert [r.shape for r in rows] == [(0, *p.get_value().shape) for p in params]


def test_ops_that_mix_rows_keep_the_whole_batch(mode):
    # A softmax over the batch axis and a product with the batch as its second operand
    # mix examples: the row is taken after them, and the values stay right.
    W = sg.shared(RNG.standard_normal((3, 3)), name="W")
    X = sg.matrix("X")
    mixed = sg.nn.softmax(X @ W, axis=0) + (W @ X.T).T
    losses = (mixed ** 2).sum(axis=1)
    i = sg.scalar("i", dtype="int64")
    row = row_of(losses, i)
    products = [n for n in toposort([row]) if n.op.name == "matmul"]
    assert products and all(n.inputs[0] is X or n.inputs[0] is W for n in products)
    f = sg.function([X], sg.jacobian(losses, W), mode=mode)
    Xv = RNG.standard_normal((4, 3))
    rows = f(Xv)
    one = sg.function([X], [sg.grad(losses[k], W) for k in range(4)], mode=mode)(Xv)
    for k in range(4):
        np.testing.assert_allclose(rows[k], one[k], rtol=1e-12, atol=1e-14)


def test_sum_to_of_an_unproven_but_equal_shape_copies_the_values(mode):
    # g's leading length is not known when the graph is built, so sum_to stays in the
    # graph; at call time nothing is summed (the compiled helper copies) or rows are.
    W = sg.shared(RNG.standard_normal((3, 2)).astype("float32"), name="W")
    X = sg.matrix("X", dtype="float32")
    g = sg.grad((X @ W).sum() * 1.5, W)
    assert any(n.op.name == "sum_to" for n in toposort([sg.grad((X[None] @ W).sum(), W)]))
    f = sg.function([X], [g, sg.grad((X[None] @ W).sum(), W)], mode=mode)
    for n in (1, 4):
        Xv = RNG.standard_normal((n, 3)).astype("float32")
        gW, gW3 = f(Xv)
        assert gW.dtype == gW3.dtype == np.float32
        # float32 sums of n terms: within a few roundings of the sum of their magnitudes
        # (a column that nearly cancels has no relative accuracy to speak of)
        col = np.broadcast_to(Xv.astype("float64").sum(0)[:, None], (3, 2))
        atol = 1e-6 * np.abs(Xv).sum()
        np.testing.assert_allclose(gW, 1.5 * col, rtol=1e-6, atol=1.5 * atol)
        np.testing.assert_allclose(gW3, col, rtol=1e-6, atol=atol)
