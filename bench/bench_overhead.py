"""Call overhead of a one-op graph on a scalar, with full input checking, and compile times.

Peers (PyTorch eager, JAX, PyTensor) add their rows where installed.

    python bench/bench_overhead.py
"""

import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import best_time, table  # noqa: E402

import symgrad as sg  # noqa: E402

COMPILE_SNIPPET = """
import time, sys
t0 = time.perf_counter()
import symgrad as sg
t1 = time.perf_counter()
sys.path.insert(0, {bench!r})
from bench_mlp import init, symgrad_step
from common import rng
symgrad_step(init(rng()))
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def compile_times(cache_dir):
    env = dict(os.environ, SYMGRAD_CACHE_DIR=cache_dir)
    code = COMPILE_SNIPPET.format(bench=os.path.dirname(os.path.abspath(__file__)))
    out = []
    for _ in range(2):  # cold, then a hit in a new process
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, cwd="/")
        out.append([float(v) for v in res.stdout.split()])
    return out


def main():
    x = sg.scalar("x")
    rows = []
    for mode in ("c", "py"):
        f = sg.function([x], x + 1.0, mode=mode)
        rows.append([f"one-op graph, mode {mode}", f"{best_time(f, 1.5) * 1e6:.2f} us"])
    rows.append(["NumPy np.add(x, 1.0) on a 0-d array",
                 f"{best_time(np.add, np.array(1.5), 1.0) * 1e6:.2f} us"])
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:  # a peer, where installed
        rows.append(["PyTorch eager x + 1.0 on a 0-d tensor",
                     f"{best_time(torch.add, torch.tensor(1.5), 1.0) * 1e6:.2f} us"])
    import tempfile

    import peers

    for label, fn, arg in peers.overhead_calls():
        rows.append([label, f"{best_time(fn, arg) * 1e6:.2f} us"])
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o700)
        (imp, cold), (_, hit) = compile_times(d)
    rows.append(["import symgrad", f"{imp * 1e3:.0f} ms"])
    rows.append(["MLP train step compile, cold cache", f"{cold * 1e3:.0f} ms"])
    rows.append(["MLP train step compile, cache hit, new process", f"{hit * 1e3:.0f} ms"])
    peer_builds = [("JAX", "jax", None)] + [(f"PyTensor ({label})", "pytensor", mode)
                                            for label, mode in peers.PYTENSOR_MODES.items()]
    for label, name, mode in peer_builds:
        with tempfile.TemporaryDirectory() as d:
            got = peers.compile_seconds(name, d, mode)
        if got is not None:
            rows.append([f"{label} MLP step compile, cold", f"{got[0] * 1e3:.0f} ms"])
            if name != "jax":
                rows.append([f"{label} MLP step compile, its cache hit, new process",
                             f"{got[1] * 1e3:.0f} ms"])
    table(rows, ["what", "time"])


if __name__ == "__main__":
    main()
