"""sg.random against its peers (issue #14): samples per second, dropout, an MLP step.

    python bench/bench_random.py [--n 10000000] [--skip-peers]

Rows, each the best of several rounds (``common.best_time``), ratios in one run:

- 10M float32 ``uniform`` and ``normal``: symgrad (a compiled function returning the
  sample), NumPy's ``Generator`` (PCG64), PyTorch's and JAX's generators when installed,
  and the copy floor (NumPy copying 10M float32: what writing the result costs at least);
- dropout forward and backward on a 256x1024 float32 array: symgrad (the mask drawn inside
  the loops, kept as bools for the backward) against NumPy drawing a mask and multiplying;
- an MLP train step (784-1024-1024-10, ReLU, batch 256, SGD) with dropout 0.5 on both
  hidden layers against the same step without dropout.

Timings on a machine shared with other work are noisy: run it on a quiet one, or compare
ratios from one run.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import symgrad as sg  # noqa: E402
from common import best_time  # noqa: E402


def samples(n, peers):
    rows = []
    src, dst = np.ones(n, np.float32), np.empty(n, np.float32)
    floor = best_time(np.copyto, dst, src)
    rows.append(("copy floor (NumPy copyto)", floor, floor))
    rng = sg.random.RandomStream(0)
    f_u = sg.function([], rng.uniform(size=(n,), dtype="float32"))
    f_n = sg.function([], rng.normal(size=(n,), dtype="float32"))
    gen = np.random.default_rng(0)
    t_u, t_n = best_time(f_u), best_time(f_n)
    rows.append(("symgrad uniform", t_u, floor))
    rows.append(("symgrad normal", t_n, floor))
    rows.append(("NumPy PCG64 random", best_time(lambda: gen.random(n, dtype=np.float32)), floor))
    rows.append(("NumPy PCG64 standard_normal",
                 best_time(lambda: gen.standard_normal(n, dtype=np.float32)), floor))
    if peers:
        try:
            import torch
            torch.manual_seed(0)
            rows.append((f"PyTorch rand ({torch.get_num_threads()} threads)",
                         best_time(lambda: torch.rand(n)), floor))
            rows.append(("PyTorch randn", best_time(lambda: torch.randn(n)), floor))
        except ImportError:
            print("(PyTorch not installed)")
        try:
            import jax
            key = jax.random.PRNGKey(0)
            ju = jax.jit(lambda k: jax.random.uniform(k, (n,), dtype="float32"))
            jn = jax.jit(lambda k: jax.random.normal(k, (n,), dtype="float32"))
            rows.append(("JAX uniform (threefry)", best_time(lambda: ju(key).block_until_ready()),
                         floor))
            rows.append(("JAX normal", best_time(lambda: jn(key).block_until_ready()), floor))
        except ImportError:
            print("(JAX not installed)")
    return rows


def dropout(shape=(256, 1024), p=0.5):
    x, gy = sg.matrix("x", dtype="float32"), sg.matrix("gy", dtype="float32")
    h = sg.nn.dropout(x, p, sg.random.RandomStream(0))
    (gx,) = sg.grad(None, [x], known_grads={h: gy})
    f = sg.function([x, gy], [h, gx])
    r = np.random.default_rng(0)
    X, GY = r.standard_normal(shape, np.float32), r.standard_normal(shape, np.float32)
    scale = np.float32(1 / (1 - p))

    def numpy_dropout():
        mask = (r.random(shape, dtype=np.float32) >= p) * scale
        return X * mask, GY * mask

    t_sg, t_np = best_time(f, X, GY), best_time(numpy_dropout)
    return [("dropout fwd+bwd 256x1024 f32: symgrad", t_sg, t_np),
            ("dropout fwd+bwd 256x1024 f32: NumPy mask-multiply", t_np, t_np)]


def mlp(p, batch=256, sizes=(784, 1024, 1024, 10)):
    r = np.random.default_rng(0)
    Ws = [sg.shared(sg.layers.he_normal((a, b), rng=r, dtype="float32"), name=f"W{k}")
          for k, (a, b) in enumerate(zip(sizes, sizes[1:]))]
    bs = [sg.shared(np.zeros(b, np.float32), name=f"b{k}") for k, b in enumerate(sizes[1:])]
    x, y = sg.matrix("x", dtype="float32"), sg.vector("y", dtype="int64")
    rng = sg.random.RandomStream(0)
    h = x
    for k, (W, b) in enumerate(zip(Ws, bs)):
        h = h @ W + b
        if k < len(Ws) - 1:
            h = sg.relu(h)
            if p:
                h = sg.nn.dropout(h, p, rng)
    step = sg.train_step(sg.nn.cross_entropy(h, y).mean(), [x, y],
                         optimizer=sg.optim.SGD(0.01))
    X = r.standard_normal((batch, sizes[0])).astype(np.float32)
    Y = r.integers(0, sizes[-1], batch)
    return lambda: step(X, Y)


def interleaved(fns, rounds=7):
    """The best time of each function over ``rounds`` rounds that run them in turn (a
    machine whose load changes slows them alike)."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for k, fn in enumerate(fns):
            best[k] = min(best[k], best_time(fn, repeat=1, min_time=0.3))
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--skip-peers", action="store_true")
    args = ap.parse_args()
    print(f"threads: SYMGRAD_NUM_THREADS={sg.config.num_threads}")
    rows = samples(args.n, not args.skip_peers) + dropout()
    t_plain, t_drop = interleaved([mlp(0.0), mlp(0.5)])
    rows += [("MLP step, no dropout", t_plain, t_plain), ("MLP step, dropout 0.5 x2", t_drop, t_plain)]
    print(f"{'row':<52} {'ms':>9} {'ratio':>7}")
    for name, t, ref in rows:
        print(f"{name:<52} {t * 1e3:9.3f} {t / ref:7.2f}")


if __name__ == "__main__":
    main()
