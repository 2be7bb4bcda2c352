"""Convolutions, pooling and normalisation give the same bits on 1, 2 and 3 threads, and
PyTorch's values (skipped where torch is not installed).

Their support-library calls share their copies, windows and channels among the
runtime's threads (sg_run_units in sg_ops.c: every unit writes memory of its own); a
convolution's panels go to the threads in chunks, and its weight gradient is summed per
chunk, or, for one chunk with a long inner dimension, over slices of the batch, both
chosen from the shape alone (sg_conv_chunks, kparts in sg_conv.c). The sizes here are
large enough that 2 and 3 threads do split the work (below about 32K elements one thread
does it all): LeNet's two layers, a large image cut into bands of output rows (alone, and
three of them), groups with stride, padding and dilation (in one chunk and in two), a 1x1
kernel; max pooling rows of 2 to 12 outputs
(half vectors, whole ones, a pass per tap), with its second order; average pooling;
batch and layer norm with their gradients."""
import numpy as np
import pytest

import symgrad as sg

from thread_counts import by_threads as _by_threads  # tests/ is on sys.path (conftest.py)


def _close(got, want, label):
    tol = 2e-4 if got.dtype == np.float32 else 1e-10
    assert got.dtype == want.dtype and got.shape == want.shape, label
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.abs(want).max()),
                               err_msg=label)


CONVS = [  # x shape, w shape, conv2d arguments, dtype
    ((64, 1, 28, 28), (20, 1, 5, 5), {}, "float32"),            # LeNet 1: 8 chunks' sums of gw
    ((64, 20, 12, 12), (50, 20, 5, 5), {}, "float32"),          # LeNet 2: 16 panels
    ((1, 16, 100, 100), (8, 16, 3, 3), dict(padding=1), "float32"),  # bands of rows
    ((3, 16, 100, 100), (8, 16, 3, 3), dict(padding=1), "float32"),  # a chunk an image
    ((8, 4, 33, 31), (6, 2, 3, 3), dict(stride=2, padding=1, dilation=2, groups=2),
     "float64"),
    ((40, 4, 33, 31), (6, 2, 3, 3), dict(stride=2, padding=1, dilation=2, groups=2),
     "float64"),                                                # 2 chunks of 20 images
    ((4, 16, 20, 20), (8, 16, 1, 1), {}, "float64"),            # 1x1: no im2col
    ((1, 32, 128, 128), (16, 32, 1, 1), {}, "float32"),         # 1x1, 2 slices of gw
]


def test_convolutions_and_their_gradients_have_the_same_bits_on_1_2_and_3_threads(
        monkeypatch):
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(7)
    ins, outs, vals, wants = [], [], [], []
    for k, (xs, wsh, kw, dtype) in enumerate(CONVS):
        X = r.standard_normal(xs).astype(dtype)
        W = (r.standard_normal(wsh) / np.sqrt(np.prod(wsh[1:]))).astype(dtype)
        B = r.standard_normal(wsh[0]).astype(dtype)
        x, w, b = sg.tensor4(f"x{k}", dtype), sg.tensor4(f"w{k}", dtype), sg.vector(f"b{k}", dtype)
        out = sg.nn.conv2d(x, w, b, **kw)
        R = r.standard_normal(tuple(torch.nn.functional.conv2d(
            torch.tensor(X), torch.tensor(W), **kw).shape)).astype(dtype)
        gx, gw, gb = sg.grad((sg.tanh(out) * R).sum(), [x, w, b])
        ins += [x, w, b]
        vals += [X, W, B]
        outs += [out, gx, gw, gb]
        xt, wt, bt = (torch.tensor(v, requires_grad=True) for v in (X, W, B))
        ot = torch.nn.functional.conv2d(xt, wt, bt, **kw)
        grads = torch.autograd.grad((torch.tanh(ot) * torch.tensor(R)).sum(), [xt, wt, bt])
        wants += [ot.detach().numpy()] + [t.numpy() for t in grads]
    got = _by_threads(monkeypatch, ins, outs, vals)
    for i, (g, w) in enumerate(zip(got, wants)):
        _close(g, w, f"conv {CONVS[i // 4][:3]} {['out', 'd/dx', 'd/dw', 'd/db'][i % 4]}")


POOLS = [  # kind, arguments, x shape, dtype (outputs a row: see each line)
    ("max", dict(kernel_size=2), (32, 16, 8, 8), "float32"),              # 4: half vector
    ("max", dict(kernel_size=2), (32, 16, 11, 11), "float32"),            # 5, overlapping
    ("max", dict(kernel_size=3, stride=1), (16, 16, 9, 9), "float32"),    # 7, stride 1
    ("max", dict(kernel_size=2, stride=3), (16, 16, 14, 20), "float32"),  # 7, stride 3
    ("max", dict(kernel_size=2), (64, 20, 24, 24), "float32"),            # 12: LeNet 1
    ("max", dict(kernel_size=3, stride=2, padding=1), (16, 16, 13, 13), "float32"),
    ("max", dict(kernel_size=2), (32, 16, 6, 6), "float64"),              # 3: half (2)
    ("max", dict(kernel_size=2), (32, 16, 4, 5), "float64"),              # 2
    ("max", dict(kernel_size=2), (32, 16, 3, 3), "float32"),              # 1: passes
    ("avg", dict(kernel_size=3, stride=2, padding=1), (16, 16, 13, 13), "float64"),
]


def test_pooling_and_its_gradients_have_the_same_bits_on_1_2_and_3_threads(monkeypatch):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    r = np.random.default_rng(8)
    ins, outs, vals, wants = [], [], [], []
    for k, (kind, kw, xs, dtype) in enumerate(POOLS):
        # distinct values: no ties for the maximum
        X = (r.permutation(int(np.prod(xs))).reshape(xs) / 7.0 - 3).astype(dtype)
        fn = "max_pool2d" if kind == "max" else "avg_pool2d"
        xt = torch.tensor(X, requires_grad=True)
        ot = getattr(F, fn)(xt, **kw)
        R = r.standard_normal(tuple(ot.shape)).astype(dtype)
        gxt, = torch.autograd.grad((torch.tanh(ot) * torch.tensor(R)).sum(), xt,
                                   create_graph=True)
        g2t, = torch.autograd.grad((gxt * gxt * xt).sum(), xt)
        x = sg.tensor4(f"x{k}", dtype)
        out = getattr(sg.nn, fn)(x, **kw)
        gx = sg.grad((sg.tanh(out) * R).sum(), x)
        g2 = sg.grad((gx * gx * x).sum(), x)          # through max pooling's select
        ins.append(x)
        vals.append(X)
        outs += [out, gx, g2]
        wants += [t.detach().numpy() for t in (ot, gxt, g2t)]
    got = _by_threads(monkeypatch, ins, outs, vals)
    for i, (g, w) in enumerate(zip(got, wants)):
        _close(g, w, f"pool {POOLS[i // 3][:3]} {['out', 'd/dx', 'd2'][i % 3]}")


def test_batch_and_layer_norm_and_their_gradients_have_the_same_bits_on_1_2_and_3_threads(
        monkeypatch):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    r = np.random.default_rng(9)
    ins, outs, vals, wants = [], [], [], []
    for k, (xs, dtype) in enumerate([((16, 32, 12, 12), "float32"), ((8, 24, 9, 10), "float64")]):
        C = xs[1]
        X = (r.standard_normal(xs) * 3 + 1).astype(dtype)
        Wb, Bb = r.standard_normal(C).astype(dtype), r.standard_normal(C).astype(dtype)
        Wl = r.standard_normal(xs[2:]).astype(dtype)
        Bl = r.standard_normal(xs[2:]).astype(dtype)
        R = r.standard_normal(xs).astype(dtype)
        x = sg.tensor4(f"x{k}", dtype)
        wb, bb = sg.vector(f"wb{k}", dtype), sg.vector(f"bb{k}", dtype)
        wl, bl = sg.matrix(f"wl{k}", dtype), sg.matrix(f"bl{k}", dtype)
        bn, _ = sg.nn.batch_norm(x, None, None, wb, bb, training=True)
        ln = sg.nn.layer_norm(x, xs[2:], wl, bl)
        outs += [bn, ln, *sg.grad((sg.tanh(bn) * R).sum() + (sg.tanh(ln) * R).sum(),
                                  [x, wb, bb, wl, bl])]
        ins += [x, wb, bb, wl, bl]
        vals += [X, Wb, Bb, Wl, Bl]
        t = [torch.tensor(v, requires_grad=True) for v in (X, Wb, Bb, Wl, Bl)]
        bt = F.batch_norm(t[0], None, None, t[1], t[2], training=True)
        lt = F.layer_norm(t[0], xs[2:], t[3], t[4])
        Rt = torch.tensor(R)
        grads = torch.autograd.grad((torch.tanh(bt) * Rt).sum() + (torch.tanh(lt) * Rt).sum(),
                                    t)
        wants += [bt.detach().numpy(), lt.detach().numpy()] + [g.numpy() for g in grads]
    got = _by_threads(monkeypatch, ins, outs, vals)
    names = ["batch norm", "layer norm", "d/dx", "d/dw bn", "d/db bn", "d/dw ln", "d/db ln"]
    for i, (g, w) in enumerate(zip(got, wants)):
        _close(g, w, f"norm {i // 7}: {names[i % 7]}")


def test_a_residual_adds_gradient_has_the_same_bits_on_1_2_and_3_threads(monkeypatch):
    """relu(tanh(a) + x): the add's gradient is a sum_to x's shape, which the graph cannot
    prove equal to the value's (both known only at call time), fused with the gradients
    of relu and of the square into one accumulating loop (sg_acc_run); at run time
    nothing is summed, and that loop's elements are shared among the threads."""
    r = np.random.default_rng(10)
    a, x = sg.tensor4("a", "float32"), sg.tensor4("x", "float32")
    A = r.standard_normal((8, 32, 32, 32)).astype("float32")
    X = r.standard_normal((8, 32, 32, 32)).astype("float32")
    loss = (sg.relu(sg.tanh(a) + x) ** 2).mean()
    outs = sg.grad(loss, [a])
    assert "sg_acc_run" in sg.function([a, x], outs).source
    ga, = _by_threads(monkeypatch, [a, x], outs, [A, X])
    t = np.tanh(A.astype("float64"))
    g = 2 * np.maximum(t + X, 0) / A.size
    _close(ga, (g * (1 - t * t)).astype("float32"), "d/da")
