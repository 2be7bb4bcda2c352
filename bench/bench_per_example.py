"""Per-example gradients, float32 (issue #13): every example's gradient of bench_mlp.py's MLP.

256 examples of the MLP 784 -> 512 relu -> 512 relu -> 10 (softmax
cross-entropy per example); the gradient of each example's loss with
respect to every weight and bias (256 x 669,706 numbers, 686 MB). Computed:

- symgrad ``sg.jacobian(losses, params)``: one compiled call (a loop over
  vector-Jacobian products inside the kernel);
- symgrad, a Python loop over the examples calling a compiled one-example
  gradient (``sg.grad`` of one example's loss) 256 times;
- JAX ``jit(vmap(grad(loss)))`` and PyTorch ``torch.func.vmap(grad(loss))``,
  where installed.

For scale, one row gives the minibatch's mean gradient (one backward pass,
``sg.grad`` of the mean loss), which is what training needs. Every method's
gradients of the first 8 examples are checked against NumPy's (float64,
written out by hand) before anything is timed. Each thread count runs in a
child process (BLAS reads its thread count when it loads).

    python bench/bench_per_example.py
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_mlp import init, symgrad_model  # noqa: E402
from common import best_time, rng, run_per_thread_count, start_child, table  # noqa: E402

import symgrad as sg  # noqa: E402

N = 256


def logits_of(X, flat, relu):
    h = X
    pairs = list(zip(flat[::2], flat[1::2]))
    for i, (W, b) in enumerate(pairs):
        h = h @ W + b
        if i < len(pairs) - 1:
            h = relu(h)
    return h


def numpy_per_example(params, X, y):
    """Each example's gradient, float64: ``[(n, *p.shape) for p in W0, b0, W1, ...]``."""
    acts = [X.astype("float64")]
    Ps = [(W.astype("float64"), b.astype("float64")) for W, b in params]
    for i, (W, b) in enumerate(Ps):
        z = acts[-1] @ W + b
        acts.append(np.maximum(z, 0) if i < len(Ps) - 1 else z)
    z = acts[-1] - acts[-1].max(axis=1, keepdims=True)
    g = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    g[np.arange(len(y)), y] -= 1                  # d(loss_k)/d(logits_k), row k
    grads = []
    for i in range(len(Ps) - 1, -1, -1):
        grads[:0] = [np.einsum("ki,kj->kij", acts[i], g), g]
        if i:
            g = (g @ Ps[i][0].T) * (acts[i] > 0)
    return grads


# --------------------------------------------------------------------------- the methods

def symgrad_methods(params):
    X, y, flat, _ = symgrad_model(params)
    losses = sg.nn.cross_entropy(logits_of(X, flat, sg.relu), y)
    jacobian = sg.function([X, y], sg.jacobian(losses, flat))
    mean_grad = sg.function([X, y], sg.grad(losses.mean(), flat))
    x1 = sg.matrix("x1", dtype="float32")
    y1 = sg.vector("y1", dtype="int64")
    one = sg.function([x1, y1], sg.grad(sg.nn.cross_entropy(logits_of(x1, flat, sg.relu),
                                                            y1).sum(), flat))

    def loop(X, y):
        per = [one(X[k:k + 1], y[k:k + 1]) for k in range(len(X))]
        return [np.stack(g) for g in zip(*per)]

    return [("symgrad sg.jacobian", jacobian), ("symgrad, a Python loop over examples", loop)], \
        ("symgrad mean gradient (one backward pass)", mean_grad)


def jax_method(params):
    try:
        import jax
    except ImportError:
        return []
    ps = [jax.numpy.asarray(p) for pair in params for p in pair]

    def loss(ps, x, y):
        return -jax.nn.log_softmax(logits_of(x, ps, jax.nn.relu))[y]

    fn = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0, 0)))
    return [("JAX jit(vmap(grad))", lambda X, y: [np.asarray(g) for g in fn(ps, X, y)])]


def torch_method(params):
    try:
        import torch
        from torch.func import grad, vmap
    except ImportError:
        return []
    torch.set_num_threads(int(os.environ.get("SYMGRAD_NUM_THREADS", "1")))
    ps = [torch.from_numpy(p.copy()) for pair in params for p in pair]

    def loss(ps, x, y):
        logits = logits_of(x[None], ps, torch.relu)       # vmap gives one example
        return torch.nn.functional.cross_entropy(logits, y[None])

    fn = vmap(grad(loss), in_dims=(None, 0, 0))

    def run(X, y):
        return [g.numpy() for g in fn(ps, torch.from_numpy(X), torch.from_numpy(y))]

    return [("PyTorch torch.func vmap(grad)", run)]


# --------------------------------------------------------------------------- driver

def run_one():
    start_child(torch_first=False)
    r = rng(2)
    params = init(r)
    X = r.standard_normal((N, 784)).astype("float32")
    y = r.integers(0, 10, N)
    methods, mean_row = symgrad_methods(params)
    methods += jax_method(params) + torch_method(params)
    want = numpy_per_example(params, X[:8], y[:8])
    for label, fn in methods:   # the same numbers from every method before any is timed
        for g, w in zip(fn(X[:8], y[:8]), want):
            np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4, err_msg=label)
    rows = methods + [mean_row]
    best = [float("inf")] * len(rows)
    for _ in range(3):            # interleaved rounds: a drift in load hits every row alike
        for i, (_, fn) in enumerate(rows):
            best[i] = min(best[i], best_time(fn, X, y, repeat=2, min_time=0.3))
    print(f"threads: {os.environ.get('SYMGRAD_NUM_THREADS', '1')}; {N} examples, MLP "
          f"784-512-512-10, float32")
    table([[name, f"{t * 1e3:.1f}", f"{t / best[0]:.3g}x"] for (name, _), t in zip(rows, best)],
          ["per-example gradients", "ms", "vs sg.jacobian"])


if __name__ == "__main__":
    run_one() if "--child" in sys.argv else run_per_thread_count(__file__)
