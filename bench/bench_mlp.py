"""MLP train step, float32: 784 -> 512 relu -> 512 relu -> 10, softmax cross-entropy mean, SGD.

Reports, per batch size, the symgrad step, a hand-written NumPy step and the
GEMM floor (the step's eight matrix products alone through NumPy with
preallocated outputs), and the ratios. Where PyTorch, JAX or PyTensor are
installed, their steps (same model, same SGD, in float32; ``peers.py``) are
measured too; none of the peers is a dependency.

    python bench/bench_mlp.py
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import (best_time, cores, rng, run_per_thread_count, start_child,  # noqa: E402
                    table)

import symgrad as sg  # noqa: E402

SIZES = (784, 512, 512, 10)
LR = np.float32(0.01)


def init(r):
    return [(r.standard_normal((a, b)).astype("float32") * np.float32(np.sqrt(2 / a)),
             np.zeros(b, "float32")) for a, b in zip(SIZES[:-1], SIZES[1:])]


def symgrad_model(params):
    """``(X, y, flat parameters, loss)``: the model as a symgrad graph."""
    X = sg.matrix("X", dtype="float32")
    y = sg.vector("y", dtype="int64")
    shared = [(sg.shared(W, name=f"W{i}"), sg.shared(b, name=f"b{i}")) for i, (W, b) in
              enumerate(params)]
    h = X
    for i, (W, b) in enumerate(shared):
        h = h @ W + b
        if i < len(shared) - 1:
            h = sg.relu(h)
    loss = sg.nn.cross_entropy(h, y).mean()
    return X, y, [p for pair in shared for p in pair], loss


def symgrad_step(params):
    X, y, flat, loss = symgrad_model(params)
    grads = sg.grad(loss, flat)
    return sg.function([X, y], loss, updates=[(p, p - LR * g) for p, g in zip(flat, grads)])


def numpy_step(params):
    params = [(W.copy(), b.copy()) for W, b in params]

    def step(X, y):
        acts = [X]
        for i, (W, b) in enumerate(params):
            z = acts[-1] @ W + b
            acts.append(np.maximum(z, 0) if i < len(params) - 1 else z)
        z = acts[-1]
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        n = X.shape[0]
        loss = -np.log(p[np.arange(n), y]).mean()
        g = p
        g[np.arange(n), y] -= 1
        g /= n
        for i in range(len(params) - 1, -1, -1):
            W, b = params[i]
            gW, gb = acts[i].T @ g, g.sum(axis=0)
            if i:
                g = (g @ W.T) * (acts[i] > 0)
            W -= LR * gW
            b -= LR * gb
        return loss

    return step


def gemm_floor(params, n):
    """The eight matrix products of one step, alone, into preallocated outputs."""
    r = rng(1)
    Ws = [W for W, _ in params]
    acts = [r.standard_normal((n, a)).astype("float32") for a in SIZES]
    outs_f = [np.empty((n, b), "float32") for b in SIZES[1:]]
    outs_w = [np.empty(W.shape, "float32") for W in Ws]
    outs_b = [np.empty((n, a), "float32") for a in SIZES[1:-1]]

    def run():
        for i, W in enumerate(Ws):
            np.matmul(acts[i], W, out=outs_f[i])
        for i, W in enumerate(Ws):
            np.matmul(acts[i].T, acts[i + 1], out=outs_w[i])
        for i in (1, 2):
            np.matmul(acts[i + 1], Ws[i].T, out=outs_b[i - 1])

    return run


def measure(fns, args, rounds=7):
    """Best time of each function, measured in interleaved rounds (load drifts hit all alike)."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, (fn, a) in enumerate(zip(fns, args)):
            best[i] = min(best[i], best_time(fn, *a, repeat=3))
    return best


def torch_step(params):
    """The same step in PyTorch eager mode, or None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(int(os.environ.get("SYMGRAD_NUM_THREADS", "1")))
    ps = [(torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True))
          for W, b in params]
    flat = [p for pair in ps for p in pair]
    opt = torch.optim.SGD(flat, lr=float(LR))

    def step(X, y):
        X, y = torch.from_numpy(X), torch.from_numpy(y)
        h = X
        for i, (W, b) in enumerate(ps):
            h = h @ W + b
            if i < len(ps) - 1:
                h = torch.relu(h)
        loss = torch.nn.functional.cross_entropy(h, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def run_one():
    start_child()
    import peers

    r = rng()
    params = init(r)
    rows = []
    for n in (32, 256):
        X = r.standard_normal((n, 784)).astype("float32")
        y = r.integers(0, 10, n)
        steps = [("GEMM floor", gemm_floor(params, n), ()),
                 ("symgrad", symgrad_step(params), (X, y)),
                 ("NumPy by hand", numpy_step(params), (X, y)),
                 ("PyTorch eager", torch_step(params), (X, y)),
                 ("JAX jit", peers.jax_mlp_step(params, LR), (X, y))]
        steps += [(f"PyTensor ({label})", peers.pytensor_mlp_step(params, LR, mode), (X, y))
                  for label, mode in peers.PYTENSOR_MODES.items()]
        steps = [s for s in steps if s[1] is not None]
        times = measure([fn for _, fn, _ in steps], [a for _, _, a in steps])
        for (name, _, _), t in zip(steps, times):
            rows.append([n, name, f"{t * 1e3:.3f}", f"{t / times[0]:.2f}x"])
    print(f"threads: {os.environ.get('SYMGRAD_NUM_THREADS')} (symgrad loops and BLAS, "
          f"NumPy's BLAS, and every peer)")
    table(rows, ["batch", "step", "ms", "vs GEMM floor"])


def main():
    print(f"MLP train step, float32, {' -> '.join(map(str, SIZES))}, softmax cross-entropy, "
          f"SGD; {cores()} cores")
    run_per_thread_count(__file__)


if __name__ == "__main__":
    run_one() if "--child" in sys.argv else main()
