"""Matrix products give the same bits on any number of threads.

OpenBLAS's own threads do not: on an AMD Zen 3, its threaded driver blocks the inner
dimension of a 40 x 300 by 300 x 64 double product otherwise than its one-thread
driver, and its single-precision kernels round an element by where its row falls in
the call. Products run OpenBLAS on one thread, cut into blocks of C by the shape alone
(sg_blas_gemm in sg_ops.c), the blocks shared among symgrad's threads."""
import numpy as np
import pytest

import symgrad as sg

from thread_counts import by_threads as _by_threads  # tests/ is on sys.path (conftest.py)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_products_of_every_layout_and_size_have_the_same_bits_on_1_2_and_3_threads(
        monkeypatch, dtype):
    r = np.random.default_rng(3)
    # (m, k, n): a long inner dimension with a small result (the shape OpenBLAS's
    # threads changed), results cut into blocks of rows and of columns, one too small
    # to cut.
    sizes = [(40, 300, 64), (600, 200, 300), (130, 150, 700), (7, 5, 3)]
    ins, outs, vals, want = [], [], [], []
    for m, k, n in sizes:
        a, b = sg.matrix(dtype=dtype), sg.matrix(dtype=dtype)
        c = sg.vector(dtype=dtype)
        A = r.standard_normal((m, k)).astype(dtype)
        B = r.standard_normal((k, n)).astype(dtype)
        C = r.standard_normal(n).astype(dtype)
        ins += [a, b, c]
        vals += [A, np.asfortranarray(B), C]
        outs += [a @ b, 0.5 * (a @ b) + c, a.T.T @ b[:, ::-1]]
        want += [A @ B, 0.5 * (A @ B) + C, A @ B[:, ::-1]]
    t = sg.tensor3(dtype=dtype)
    T = r.standard_normal((3, 90, 300)).astype(dtype)
    ins.append(t)
    vals.append(T)
    outs.append(t @ ins[1])                      # a stack times a matrix: one product
    want.append(T @ vals[1])
    got = _by_threads(monkeypatch, ins, outs, vals)
    tol = 2e-5 if dtype == "float32" else 1e-12
    for g, w in zip(got, want):
        assert g.dtype == np.dtype(dtype)
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * np.abs(w).max())


def test_gradients_through_products_and_convolutions_have_the_same_bits_on_1_2_and_3_threads(
        monkeypatch):
    r = np.random.default_rng(5)
    x = sg.tensor4("x", dtype="float32")
    y = sg.vector("y", dtype="int64")
    k = sg.shared((r.standard_normal((16, 3, 5, 5)) * 0.2).astype("float32"), name="k")
    w = sg.shared((r.standard_normal((16 * 24 * 24, 10)) * 0.01).astype("float32"), name="w")
    h = sg.tanh(sg.nn.conv2d(x, k))
    loss = sg.nn.cross_entropy(h.reshape((h.shape[0], -1)) @ w, y).mean()
    gk, gw = sg.grad(loss, [k, w])
    X = r.standard_normal((32, 3, 28, 28)).astype("float32")
    Y = r.integers(0, 10, 32)
    _by_threads(monkeypatch, [x, y], [loss, gk, gw], [X, Y])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_outer_products_are_blas_products_in_one_pass(monkeypatch, dtype):
    """A product over one term (k = 1) writes its result once, without BLAS's zeroing pass
    (sg_ops.c, SG_OUTER), and is what BLAS makes of it: the same bits as NumPy's, signed
    zeros included (a product of -0 accumulated onto zero is +0), on any layout, scaled
    (gemm's alpha), added to (beta, left to BLAS) and on 1, 2 and 3 threads."""
    r = np.random.default_rng(7)
    m, n = 300, 257
    A = r.standard_normal((m, 1)).astype(dtype)
    B = r.standard_normal((1, n)).astype(dtype)
    A[::7] = 0.0          # zeros times negative numbers: -0 in IEEE, +0 from BLAS
    B[0, ::5] = -0.0
    C = r.standard_normal(n).astype(dtype)
    a, b, c = sg.matrix(dtype=dtype), sg.matrix(dtype=dtype), sg.vector(dtype=dtype)
    outs = [a @ b, a.T.T @ b, (b.T @ a.T).T, 0.5 * (a @ b), 0.5 * (a @ b) + c,
            a @ b[:, ::-1], a[::2] @ b]
    want = [A @ B, A @ B, (B.T @ A.T).T, 0.5 * (A @ B), 0.5 * (A @ B) + C,
            A @ B[:, ::-1], A[::2] @ B]
    vals = [np.asfortranarray(A), B, C]
    for g, w in zip(_by_threads(monkeypatch, [a, b, c], outs, vals), want):
        assert g.dtype == np.dtype(dtype) and g.shape == w.shape
        np.testing.assert_array_equal(g, w)
        np.testing.assert_array_equal(np.signbit(g), np.signbit(w))
