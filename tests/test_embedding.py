"""sg.nn.embedding and sg.layers.Embedding: PyTorch's lookup table, its gradient and errors."""

import re

import numpy as np
import pytest

import symgrad as sg
from thread_counts import by_threads  # tests/ is on sys.path (conftest.py)

MODES = ["c", "py", "debug"]


def _reference_grad(ids, g, v, pad=None):
    """The table's gradient in float64: g's rows added at their ids, the padding's left out."""
    flat, rows = ids.reshape(-1), g.reshape(-1, g.shape[-1]).astype(np.float64)
    keep = flat != pad if pad is not None else np.ones(flat.shape, bool)
    out = np.zeros((v, g.shape[-1]))
    np.add.at(out, flat[keep], rows[keep])
    return out


def _lookup(dtype, pad=None, ids_shape=(None, None), ids_dtype="int64", mode="c"):
    """(f, W): f(ids, g) -> (table[ids], d(sum(table[ids] * g))/d(table))."""
    rs = np.random.default_rng(0)
    W = sg.shared(rs.standard_normal((7, 5)).astype(dtype), name="table")
    ids = sg.tensor("ids", dtype=ids_dtype, shape=ids_shape)
    g = sg.tensor("g", dtype=dtype, shape=ids_shape + (5,))
    out = sg.nn.embedding(ids, W, padding_idx=pad)
    return sg.function([ids, g], [out, sg.grad((out * g).sum(), W)], mode=mode), W


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pad", [None, 2, -1])
def test_rows_and_gradient_are_pytorchs(mode, pad):
    torch = pytest.importorskip("torch")
    rs = np.random.default_rng(1)
    f, W = _lookup("float64", pad, mode=mode)
    ids = rs.integers(0, 7, (4, 9))
    ids[0, :3] = 6  # the padding row (-1 is row 6) in use, repeated
    g = rs.standard_normal((4, 9, 5))
    out, dW = f(ids, g)
    w = torch.tensor(W.get_value(), requires_grad=True)
    t_out = torch.nn.functional.embedding(torch.tensor(ids), w, padding_idx=pad)
    (t_out * torch.tensor(g)).sum().backward()
    np.testing.assert_array_equal(out, t_out.detach().numpy())
    np.testing.assert_allclose(dW, w.grad.numpy(), rtol=1e-13, atol=1e-14)
    if pad is not None:
        assert not dW[pad % 7].any()  # the padding row is never trained


@pytest.mark.parametrize("mode", MODES)
def test_float32_gradient_rows_are_summed_in_double_and_rounded_once(mode):
    # one id at 4000 positions: summed in float32 the row would drift by many ulps
    rs = np.random.default_rng(2)
    f, W = _lookup("float32", mode=mode)
    ids = np.where(rs.random((40, 100)) < 0.9, 3, rs.integers(0, 7, (40, 100)))
    g = rs.standard_normal((40, 100, 5)).astype("float32")
    _, dW = f(ids, g)
    want = _reference_grad(ids, g, 7)
    np.testing.assert_array_equal(dW, want.astype("float32"))


def test_the_gradient_has_the_same_bits_on_1_2_and_3_threads(monkeypatch):
    rs = np.random.default_rng(3)
    # rows of 100 features: the columns go in blocks of 64 and a partial one
    W = sg.shared(rs.standard_normal((300, 100)).astype("float32"), name="table")
    ids = sg.matrix("ids", dtype="int64")
    g = sg.tensor3("g", dtype="float32")
    dW = sg.grad((sg.nn.embedding(ids, W, padding_idx=0) * g).sum(), W)
    vals = [rs.integers(0, 300, (64, 50)), rs.standard_normal((64, 50, 100)).astype("float32")]
    (got,) = by_threads(monkeypatch, [ids, g], [dW], vals)
    np.testing.assert_array_equal(got, _reference_grad(*vals, 300, pad=0).astype("float32"))


@pytest.mark.parametrize("mode", MODES)
def test_strided_ids_and_a_transposed_table(mode):
    rs = np.random.default_rng(4)
    V = sg.shared(rs.standard_normal((5, 6)), name="V")  # the table is V.T: (6, 5), strided
    ids = sg.matrix("ids", dtype="int32")
    g = sg.tensor3("g")
    out = sg.nn.embedding(ids, V.T)
    f = sg.function([ids, g], [out, sg.grad((out * g).sum(), V)], mode=mode)
    ids_v = rs.integers(0, 6, (3, 8)).astype("int32")[:, ::2]        # every other column
    g_v = np.moveaxis(rs.standard_normal((5, 3, 4)), 0, -1)          # last axis strided
    got, dV = f(ids_v, g_v)
    np.testing.assert_array_equal(got, V.get_value().T[ids_v])
    np.testing.assert_allclose(dV, _reference_grad(ids_v, g_v, 6).T, rtol=1e-14)


@pytest.mark.parametrize("mode", MODES)
def test_reversed_views_of_the_table(mode):
    rs = np.random.default_rng(8)
    T = sg.shared(rs.standard_normal((6, 4)), name="T")
    ids = sg.vector("ids", dtype="int64")
    out = sg.nn.embedding(ids, T[::-1, ::-1])  # negative strides on both axes
    g = sg.matrix("g")
    f = sg.function([ids, g], [out, sg.grad((out * g).sum(), T)], mode=mode)
    ids_v, g_v = rs.integers(0, 6, 9), rs.standard_normal((9, 4))
    got, dT = f(ids_v, g_v)
    np.testing.assert_array_equal(got, T.get_value()[::-1, ::-1][ids_v])
    np.testing.assert_allclose(dT, _reference_grad(ids_v, g_v, 6)[::-1, ::-1], rtol=1e-14)


@pytest.mark.parametrize("mode", MODES)
def test_no_ids_give_no_rows_and_a_zero_gradient(mode):
    f, _ = _lookup("float64", pad=1, ids_shape=(None,), mode=mode)
    out, dW = f(np.zeros(0, dtype="int64"), np.zeros((0, 5)))
    assert out.shape == (0, 5)
    np.testing.assert_array_equal(dW, np.zeros((7, 5)))


@pytest.mark.parametrize("mode", MODES)
def test_a_huge_table_of_empty_rows(mode):
    # 2**40 rows of no features: nothing to look up or to add, whatever the ids
    T = sg.shared(np.zeros((2 ** 40, 0)), name="T")
    ids = sg.vector("ids", dtype="int64")
    out = sg.nn.embedding(ids, T)
    g = sg.matrix("g")
    got, dT = sg.function([ids, g], [out, sg.grad(None, T, known_grads={out: g})],
                          mode=mode)(np.array([5, 2 ** 39]), np.zeros((2, 0)))
    assert got.shape == (2, 0) and dT.shape == (2 ** 40, 0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bad", [7, -1])
def test_an_id_outside_the_table_is_an_index_error_naming_the_line(mode, bad):
    f, W = _lookup("float64", mode=mode)
    before = W.get_value()
    ids = np.zeros((2, 3), dtype="int64")
    ids[1, 2] = bad  # NumPy would read row 6 for -1; PyTorch refuses it, and so do we
    with pytest.raises(sg.IndexError, match=r"embedding.* at .*test_embedding.py:\d+: "
                       + re.escape(f"id {bad} at index (1, 2) is out of range [0, 7) (a table "
                                   f"of 7 rows)")):
        f(ids, np.zeros((2, 3, 5)))
    np.testing.assert_array_equal(W.get_value(), before)


def test_build_time_errors_name_the_line_and_say_what_is_wrong():
    W = sg.shared(np.zeros((4, 3)), name="W")
    with pytest.raises(TypeError, match=r"ids must be integers .*float64.*test_embedding.py"):
        sg.nn.embedding(sg.vector("x"), W)
    with pytest.raises(sg.ShapeError, match=r"2-d table .*float64\[4\].*test_embedding.py"):
        sg.nn.embedding(sg.vector("i", dtype="int64"), sg.shared(np.zeros(4)))
    with pytest.raises(TypeError, match=r"weight must be float"):
        sg.nn.embedding(sg.vector("i", dtype="int64"), sg.shared(np.zeros((4, 3), "int64")))
    with pytest.raises(ValueError, match=r"padding_idx must be in \[-4, 4\) for a table of 4 "
                       r"rows, got 4 .*test_embedding.py"):
        sg.nn.embedding(sg.vector("i", dtype="int64"), W, padding_idx=4)
    with pytest.raises(TypeError, match=r"padding_idx must be an int or None, got 1.5"):
        sg.nn.embedding(sg.vector("i", dtype="int64"), W, padding_idx=1.5)
    with pytest.raises(ValueError, match=r"negative padding_idx \(-1\) counts from the end.*"
                       r"give the row's number"):
        sg.nn.embedding(sg.vector("i", dtype="int64"), sg.matrix("T"), padding_idx=-1)


def test_the_ids_have_no_gradient():
    W = sg.shared(np.ones((4, 3)), name="W")
    ids = sg.vector("ids", dtype="int64")
    with pytest.raises(sg.NonDifferentiableError, match="ids"):
        sg.grad(sg.nn.embedding(ids, W).sum(), ids)


def test_second_order_through_the_table():
    rs = np.random.default_rng(5)
    ids = np.array([[0, 2, 2], [1, 0, 2]])
    x = rs.standard_normal((3, 4))
    # a cost whose gradient with respect to the table is not constant: second order flows
    # back through embedding_grad to the looked-up rows
    sg.verify_grad(lambda t: (sg.nn.embedding(ids, t) ** 3).sum()
                   + (sg.grad((sg.nn.embedding(ids, t, padding_idx=1) ** 2).sum(), t) ** 2).sum(),
                   [x], rng=rs)
    T = sg.shared(x, name="T")
    h = sg.function([], sg.hessian((sg.nn.embedding(ids, T) ** 3).sum(), T))()
    want = np.zeros((3, 4, 3, 4))
    counts = np.bincount(ids.ravel(), minlength=3)
    for r in range(3):
        for c in range(4):
            want[r, c, r, c] = 6 * counts[r] * x[r, c]
    np.testing.assert_allclose(h, want, rtol=1e-12)


def test_per_example_gradients_of_a_lookup():
    rs = np.random.default_rng(6)
    T = sg.shared(rs.standard_normal((5, 2)), name="T")
    ids = sg.matrix("ids", dtype="int64")
    losses = (sg.nn.embedding(ids, T) ** 2).sum(axis=(1, 2))  # one loss per example (row)
    J = sg.function([ids], sg.jacobian(losses, T))(np.array([[0, 1], [1, 1], [4, 4]]))
    t = T.get_value()
    for k, row in enumerate([[0, 1], [1, 1], [4, 4]]):
        np.testing.assert_allclose(J[k], _reference_grad(np.array(row), 2 * t[row], 5))


def test_the_layer_is_pytorchs_and_trains_without_touching_the_padding_row():
    torch = pytest.importorskip("torch")
    emb = sg.layers.Embedding(10, 4, padding_idx=-2, rng=0, name="tok")
    assert emb.padding_idx == 8 and emb.params == [emb.weight]
    assert emb.weight.name == "tok.weight" and emb.weight.type.shape == (10, 4)
    assert not emb.weight.get_value()[8].any()
    ref = torch.nn.Embedding(10, 4, padding_idx=-2).double()
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in emb.state_dict().items()})
    ids = sg.matrix("ids", dtype="int64")
    y = sg.matrix("y")
    step = sg.train_step(((emb(ids).sum(axis=-1) - y) ** 2).mean(), [ids, y],
                         optimizer=sg.optim.SGD(0.1))
    opt = torch.optim.SGD(ref.parameters(), 0.1)
    rs = np.random.default_rng(7)
    for _ in range(5):
        ids_v, y_v = rs.integers(0, 10, (3, 6)), rs.standard_normal((3, 6))
        step(ids_v, y_v)
        opt.zero_grad()
        ((ref(torch.tensor(ids_v)).sum(-1) - torch.tensor(y_v)) ** 2).mean().backward()
        opt.step()
    np.testing.assert_allclose(emb.weight.get_value(), ref.weight.detach().numpy(), rtol=1e-12)
    assert not emb.weight.get_value()[8].any()
    emb.load_state_dict({"weight": np.ones((10, 4))})
    np.testing.assert_array_equal(emb.weight.get_value(), np.ones((10, 4)))


def test_layer_arguments_are_checked():
    with pytest.raises(ValueError, match=r"padding_idx must be in \[-3, 3\) for 3 embeddings, "
                       r"got 3"):
        sg.layers.Embedding(3, 2, padding_idx=3)
    with pytest.raises(TypeError, match="padding_idx must be an int or None"):
        sg.layers.Embedding(3, 2, padding_idx="0")
    with pytest.raises((TypeError, ValueError), match="num_embeddings"):
        sg.layers.Embedding(0, 2)
    with pytest.raises((TypeError, ValueError), match="embedding_dim"):
        sg.layers.Embedding(3, 2.5)
    with pytest.raises(TypeError, match="parameters must be float"):
        sg.layers.Embedding(3, 2, dtype="int64")
    with pytest.raises(sg.CheckpointError, match="weight has shape"):
        sg.layers.Embedding(3, 2).load_state_dict({"weight": np.zeros((2, 3))})
