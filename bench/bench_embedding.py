"""Embedding lookup and its gradient, float32: a language model's input layer.

A table of V = 10,000 rows of 256 features, a batch of 32 sequences of 50 token ids
(ids drawn Zipf-like, as words are: a few ids hold most positions), and the gradient
with respect to the table given ``g``, the gradient reaching the lookup's output (a
vector-Jacobian product: ``known_grads``, PyTorch's ``out.backward(g)``) -- what one
training step of the input layer computes. Measured: symgrad (``sg.nn.embedding`` and its gradient, one compiled
call); NumPy written by hand (``np.take``, then ``np.add.at`` into zeros); and, where
installed, PyTorch eager (``F.embedding`` forward and backward). The floor is the memory
the step must write: the (V, 256) gradient (10 MB), through ``np.zeros`` of that size,
plus the gathered rows.

Every method's gradient must match NumPy's float64 result (rtol 1e-5) before anything
is timed. symgrad sums each row in double; NumPy's ``add.at`` and PyTorch add in float32.
Each thread count runs in a child process.

    python bench/bench_embedding.py
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import best_time, rng, run_per_thread_count, start_child, table  # noqa: E402

import symgrad as sg  # noqa: E402

V, D, B, T = 10_000, 256, 32, 50


def data(r):
    ids = np.minimum(r.zipf(1.3, (B, T)) - 1, V - 1).astype("int64")
    return (r.standard_normal((V, D)).astype("float32"), ids,
            r.standard_normal((B, T, D)).astype("float32"))


def symgrad_step(table_v):
    W = sg.shared(table_v.copy(), name="table")
    ids = sg.matrix("ids", dtype="int64")
    g = sg.tensor3("g", dtype="float32")
    out = sg.nn.embedding(ids, W)
    # the gradient reaching the lookup's output is given, as a layer above would give it
    f = sg.function([ids, g], [out, sg.grad(None, W, known_grads={out: g})])
    return lambda ids_v, g_v: f(ids_v, g_v)[1]


def numpy_step(table_v):
    def run(ids_v, g_v):
        np.take(table_v, ids_v, axis=0)
        out = np.zeros_like(table_v)
        np.add.at(out, ids_v.reshape(-1), g_v.reshape(-1, D))
        return out
    return run


def torch_step(table_v):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(int(os.environ.get("SYMGRAD_NUM_THREADS", "1")))
    w = torch.tensor(table_v, requires_grad=True)

    def run(ids_v, g_v):
        w.grad = None
        out = torch.nn.functional.embedding(torch.from_numpy(ids_v), w)
        out.backward(torch.from_numpy(g_v))
        return w.grad.numpy()
    return run


def floor_step(table_v):
    rows = np.empty((B * T, D), dtype="float32")

    def run(ids_v, g_v):
        np.copyto(rows, g_v.reshape(-1, D))
        return np.zeros_like(table_v)
    return run


def run_one():
    start_child()
    r = rng(4)
    table_v, ids_v, g_v = data(r)
    want = np.zeros((V, D))
    np.add.at(want, ids_v.reshape(-1), g_v.reshape(-1, D).astype(np.float64))
    steps = [("symgrad", symgrad_step(table_v)), ("NumPy (take, add.at)", numpy_step(table_v)),
             ("PyTorch eager", torch_step(table_v)), ("floor: zeros + the rows", floor_step(table_v))]
    steps = [(k, f) for k, f in steps if f is not None]
    for label, fn in steps[:-1]:
        np.testing.assert_allclose(fn(ids_v, g_v), want, rtol=1e-5, atol=1e-5, err_msg=label)
    best = [float("inf")] * len(steps)
    for _ in range(3):  # interleaved rounds
        for i, (_, fn) in enumerate(steps):
            best[i] = min(best[i], best_time(fn, ids_v, g_v, repeat=5, min_time=0.2))
    top = np.bincount(ids_v.ravel()).max()
    print(f"threads: {os.environ.get('SYMGRAD_NUM_THREADS', '1')}; table {V} x {D}, ids {B} x "
          f"{T} (the most frequent id at {top} positions), float32")
    table([[label, f"{t * 1e3:.3f}", f"{t / best[0]:.2f}x"] for (label, _), t in zip(steps, best)],
          ["lookup + gradient", "ms", "vs symgrad"])


if __name__ == "__main__":
    run_one() if "--child" in sys.argv else run_per_thread_count(__file__)
