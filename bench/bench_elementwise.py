"""Fused elementwise z = tanh(a*x + b)*c + exp(-x**2) over 10M float32, against NumPy and the copy floor.

Peers (PyTorch eager, JAX jit, PyTensor) add their rows where installed.

    python bench/bench_elementwise.py
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import best_time, rng, table  # noqa: E402

import symgrad as sg  # noqa: E402

N = 10_000_000


def main():
    r = rng()
    x = r.standard_normal(N).astype("float32")
    a, b, c = np.float32(0.7), np.float32(0.1), np.float32(1.3)
    X = sg.vector("x", dtype="float32")
    f = sg.function([X], sg.tanh(a * X + b) * c + sg.exp(-X ** 2))

    def numpy_version(x):
        return np.tanh(a * x + b) * c + np.exp(-x ** 2)

    np.testing.assert_allclose(f(x), numpy_version(x), rtol=1e-5, atol=1e-6)
    dst = np.empty_like(x)
    t_copy = best_time(np.copyto, dst, x, repeat=5)
    t_np = best_time(numpy_version, x, repeat=5)
    threads = sg.config.threads()
    # The loop's thread count belongs to the compiled library: set it, then time.
    f._kernel.kernel.set_num_threads(1)
    t_sg1 = best_time(f, x, repeat=5)
    f._kernel.kernel.set_num_threads(threads)
    t_sg = best_time(f, x, repeat=5)
    rows = [["copy floor (np.copyto)", f"{t_copy * 1e3:.2f}", f"{t_np / t_copy:.2f}x"],
            ["NumPy", f"{t_np * 1e3:.2f}", "1.00x"],
            ["symgrad, 1 thread", f"{t_sg1 * 1e3:.2f}", f"{t_np / t_sg1:.2f}x"],
            [f"symgrad, {threads} threads", f"{t_sg * 1e3:.2f}", f"{t_np / t_sg:.2f}x"]]
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:  # a peer, where installed: eager PyTorch on the same data
        xt = torch.from_numpy(x)
        # Python floats: a NumPy scalar on the left would make NumPy run the product
        fa, fb, fc = float(a), float(b), float(c)

        def torch_version(x):
            return torch.tanh(fa * x + fb) * fc + torch.exp(-x ** 2)

        for n in sorted({1, threads}):
            torch.set_num_threads(n)
            t = best_time(torch_version, xt, repeat=5)
            rows.append([f"PyTorch eager, {n} thread{'s' * (n > 1)}", f"{t * 1e3:.2f}",
                         f"{t_np / t:.2f}x"])
    import peers

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    jx = peers.jax_elementwise(float(a), float(b), float(c))
    if jx is not None:
        run, to_device = jx
        xj = to_device(x)
        np.testing.assert_allclose(np.asarray(run(xj)), numpy_version(x), rtol=1e-5, atol=1e-6)
        t = best_time(run, xj, repeat=5)
        rows.append([f"JAX jit, its default threads ({cores} cores)", f"{t * 1e3:.2f}",
                     f"{t_np / t:.2f}x"])
    for label, mode in peers.PYTENSOR_MODES.items():
        pf = peers.pytensor_elementwise(a, b, c, mode)
        if pf is not None:
            np.testing.assert_allclose(pf(x), numpy_version(x), rtol=1e-5, atol=1e-6)
            t = best_time(pf, x, repeat=5)
            rows.append([f"PyTensor ({label})", f"{t * 1e3:.2f}", f"{t_np / t:.2f}x"])
    table(rows, ["10M float32", "ms", "speed-up over NumPy"])


if __name__ == "__main__":
    main()
