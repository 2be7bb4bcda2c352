"""The benchmarks' workloads written for the peers, each where it is installed.

Every builder returns None when its library cannot be imported: none of the
peers is a dependency of symgrad. The models are the same as symgrad's in
``bench_mlp.py`` and ``bench_elementwise.py``: float32, the same layers and
loss, plain SGD with the same learning rate, updates kept by the framework
between calls (PyTensor shared variables; JAX arrays donated to the next
step), NumPy arrays in and a finished result out (JAX: ``block_until_ready``).

Thread counts: ``bench_mlp.main`` runs one child process per count; the
one-thread child is pinned to one core, since JAX's CPU backend takes every
core it may run on whatever its flags say.
"""

import functools
import os

import numpy as np


def _import(name):
    try:
        return __import__(name)
    except ImportError:
        return None


# --------------------------------------------------------------------------- MLP step

def jax_mlp_step(params, lr):
    """The MLP train step under ``jax.jit`` (forward, grad, SGD), or None."""
    if _import("jax") is None:
        return None
    import jax
    import jax.numpy as jnp

    def loss_fn(ps, X, y):
        h = X
        for i, (W, b) in enumerate(ps):
            h = h @ W + b
            if i < len(ps) - 1:
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h, axis=1)
        return -jnp.take_along_axis(logp, y[:, None], axis=1).mean()

    @functools.partial(jax.jit, donate_argnums=0)
    def step(ps, X, y):
        loss, g = jax.value_and_grad(loss_fn)(ps, X, y)
        return jax.tree_util.tree_map(lambda p, d: p - lr * d, ps, g), loss

    state = [[(jnp.asarray(W), jnp.asarray(b)) for W, b in params]]

    def run(X, y):
        state[0], loss = step(state[0], X, y)
        return loss.block_until_ready()

    return run


# PyTensor 3 compiles with Numba by default (also "FAST_RUN"); "CVM" is its C backend,
# which calls a BLAS only when it found one at install (a pip install does not:
# its gemm then goes through NumPy).
PYTENSOR_MODES = {"Numba, its default": None, "C backend": "CVM"}


def pytensor_mlp_step(params, lr, mode=None):
    """The MLP train step as one PyTensor function with updates, or None."""
    if _import("pytensor") is None:
        return None
    import pytensor
    import pytensor.tensor as pt

    X = pt.matrix("X", dtype="float32")
    y = pt.vector("y", dtype="int64")
    shared = [(pytensor.shared(W.copy()), pytensor.shared(b.copy())) for W, b in params]
    h = X
    for i, (W, b) in enumerate(shared):
        h = h @ W + b
        if i < len(shared) - 1:
            h = pt.maximum(h, 0)
    logp = h - pt.logsumexp(h, axis=1, keepdims=True)
    loss = -logp[pt.arange(y.shape[0]), y].mean()
    flat = [p for pair in shared for p in pair]
    grads = pytensor.grad(loss, flat)
    return pytensor.function([X, y], loss, mode=mode,
                             updates=[(p, p - np.float32(lr) * g) for p, g in zip(flat, grads)])


# --------------------------------------------------------------------------- elementwise

def jax_elementwise(a, b, c):
    """``x -> tanh(a*x + b)*c + exp(-x**2)`` under ``jax.jit`` on a JAX array, or None."""
    if _import("jax") is None:
        return None
    import jax
    import jax.numpy as jnp

    f = jax.jit(lambda x: jnp.tanh(a * x + b) * c + jnp.exp(-x ** 2))

    def run(x):
        return f(x).block_until_ready()

    return run, jnp.asarray


def pytensor_elementwise(a, b, c, mode=None):
    """The same loop as a PyTensor function (one fused loop), or None."""
    if _import("pytensor") is None:
        return None
    import pytensor
    import pytensor.tensor as pt

    x = pt.vector("x", dtype="float32")
    return pytensor.function([x], pt.tanh(a * x + b) * c + pt.exp(-x ** 2), mode=mode)


# --------------------------------------------------------------------------- call overhead

def overhead_calls():
    """``[(label, fn, arg)]``: a one-op graph on a scalar in each installed peer."""
    calls = []
    if _import("jax") is not None:
        import jax

        jf = jax.jit(lambda x: x + 1.0)
        calls.append(("JAX jit x + 1.0 on a Python float, result ready",
                      lambda v: jf(v).block_until_ready(), 1.5))
    if _import("pytensor") is not None:
        import pytensor
        import pytensor.tensor as pt

        x = pt.scalar("x", dtype="float64")
        for label, mode in PYTENSOR_MODES.items():
            f = pytensor.function([x], x + 1.0, mode=mode)
            calls.append((f"PyTensor ({label}) x + 1.0 on a Python float", f, 1.5))
            g = pytensor.function([x], x + 1.0, mode=mode)
            g.trust_input = True
            calls.append((f"PyTensor ({label}), trust_input (no input checks)", g,
                          np.array(1.5)))
    return calls


# --------------------------------------------------------------------------- compile time

PEER_COMPILE = {
    "jax": """
import time, sys, os
sys.path.insert(0, {bench!r})
t0 = time.perf_counter()
import numpy as np
from bench_mlp import init, LR
from common import rng
import peers
r = rng(); step = peers.jax_mlp_step(init(r), LR)
X = r.standard_normal((32, 784)).astype("float32"); y = r.integers(0, 10, 32)
t1 = time.perf_counter()
step(X, y)
print(time.perf_counter() - t1)
""",
    "pytensor": """
import time, sys
sys.path.insert(0, {bench!r})
from bench_mlp import init, LR
from common import rng
import peers
import pytensor
r = rng(); params = init(r)
X = r.standard_normal((32, 784)).astype("float32"); y = r.integers(0, 10, 32)
t1 = time.perf_counter()
peers.pytensor_mlp_step(params, LR, mode={mode!r})(X, y)  # Numba compiles at the first call
print(time.perf_counter() - t1)
""",
}


def compile_seconds(name, cache_dir, mode=None):
    """(cold, hit in a new process) seconds to build the MLP step in peer ``name``, or None.

    Both are timed to the end of the first call, where JAX traces and
    compiles and PyTensor's Numba backend compiles. JAX keeps no compiled
    code between processes by default. PyTensor compiles into
    ``base_compiledir``, set to the empty ``cache_dir`` (``mode`` as in
    ``PYTENSOR_MODES``).
    """
    import subprocess
    import sys

    if _import(name) is None:
        return None
    code = PEER_COMPILE[name].format(bench=os.path.dirname(os.path.abspath(__file__)),
                                     mode=mode)
    env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={cache_dir}")
    out = []
    for _ in range(2):
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, cwd="/")
        if res.returncode != 0:
            return None
        out.append(float(res.stdout.split()[-1]))
    return out
