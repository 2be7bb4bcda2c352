"""Run time of kernels compiled at -O2 (the default) against -O1, op family by op family.

-O1 roughly halves gcc's time on a kernel (``bench_compile.py``), but does not
auto-vectorise loops that carry no ``omp simd`` annotation. This measures
what that costs where it could: one workload per family of ops at sizes
where the loop, not the call, dominates. Each level runs in its own process
with its own empty cache (``SYMGRAD_CFLAGS=-O1`` comes after the default
``-O2`` and wins). Only the kernel's own code changes level: the helpers it
calls (the reductions, copies and products of sg_ops.h) are in the support
library, compiled once at install time.

    python bench/bench_optlevel.py
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import best_time, rng, table  # noqa: E402


def workloads():
    """``[(name, build)]``; ``build()`` returns ``(function, args)``."""
    import symgrad as sg

    r = rng(3)
    f32 = "float32"

    def m(shape, dtype=f32):
        return r.standard_normal(shape).astype(dtype)

    def one(name, inputs, expr_fn, args):
        def build():
            return sg.function(inputs, expr_fn(*inputs)), args
        return name, build

    X = sg.matrix("X", dtype=f32)
    v = sg.vector("v", dtype=f32)
    I = sg.vector("I", dtype="int64")
    J = sg.vector("J", dtype="int64")
    E = sg.matrix("E", dtype=f32)
    Xi = sg.matrix("Xi", dtype="int32")
    Yi = sg.matrix("Yi", dtype="int32")
    big, wide = m((2048, 2048)), m((4096, 1000))
    labels = r.integers(0, 1000, 4096)
    return [
        one("elementwise tanh/exp chain, 4M", [X], lambda x: sg.tanh(x * 0.5) + sg.exp(-x * x),
            (big,)),
        one("add a broadcast row, 4M", [X, v], lambda x, b: x + b, (big, m(2048))),
        one("integer (a*b + 7) // 3 % 5, 2M", [I, J], lambda a, b: (a * b + 7) // 3 % 5,
            (r.integers(-1000, 1000, 2 ** 21), r.integers(-1000, 1000, 2 ** 21))),
        one("where(x > 0, x, 0.1 x), 4M", [X], lambda x: sg.where(x > 0, x, 0.1 * x), (big,)),
        one("transposed operand x.T + x, 4M", [X], lambda x: x.T + x, (big,)),
        one("strided slice x[::2, 1:] * 2", [X], lambda x: x[::2, 1:] * 2.0, (big,)),
        one("sum over axis 0", [X], lambda x: x.sum(axis=0), (big,)),
        one("sum over axis 1", [X], lambda x: x.sum(axis=1), (big,)),
        one("max over axis 1", [X], lambda x: x.max(axis=1), (big,)),
        one("argmax over axis 1", [X], lambda x: sg.argmax(x, axis=1), (big,)),
        one("max over axis 0", [X], lambda x: x.max(axis=0), (big,)),
        one("argmax over axis 0", [X], lambda x: sg.argmax(x, axis=0), (big,)),
        one("max of all 4M elements", [X], lambda x: x.max(), (big,)),
        one("prod over axis 1", [X], lambda x: (x * 0.001 + 1.0).prod(axis=1), (big,)),
        one("softmax rows 4096x1000", [X], lambda x: sg.nn.softmax(x), (wide,)),
        one("log_softmax rows", [X], lambda x: sg.nn.log_softmax(x), (wide,)),
        one("logsumexp rows", [X], lambda x: sg.logsumexp(x, axis=1), (wide,)),
        one("cross_entropy 4096x1000", [X, I], lambda x, y: sg.nn.cross_entropy(x, y),
            (wide, labels)),
        one("gather E[ids], 100K rows of 128", [E, I], lambda e, i: e[i],
            (m((50000, 128)), r.integers(0, 50000, 100000))),
        one("gradient of a gather (inc_subtensor)", [E, I],
            lambda e, i: sg.grad((e[i] * e[i]).sum(), e), (m((50000, 128)),
                                                           r.integers(0, 50000, 100000))),
        one("one_hot 20000 x 1000", [I], lambda i: sg.nn.one_hot(i, 1000),
            (r.integers(0, 1000, 20000),)),
        one("concatenate two 2048x2048", [X], lambda x: sg.concatenate([x, x * 2.0], axis=1),
            (big,)),
        one("int32 matmul 256x256 (no BLAS)", [Xi, Yi], lambda a, b: a @ b,
            (r.integers(-9, 9, (256, 256)).astype("int32"),
             r.integers(-9, 9, (256, 256)).astype("int32"))),
    ]


def child():
    import symgrad as sg

    out = {}
    for name, build in workloads():
        f, args = build()
        out[name] = best_time(f, *args, repeat=5)
    x = sg.scalar("x")
    out["_flags"] = sg.config.cflags
    del x
    print(json.dumps(out))


def main():
    results = {}
    for label, flags in (("-O2", ""), ("-O1", "-O1")):
        with tempfile.TemporaryDirectory() as d:
            os.chmod(d, 0o700)
            env = dict(os.environ, SYMGRAD_CFLAGS=flags, SYMGRAD_CACHE_DIR=d)
            res = subprocess.run([sys.executable, __file__, "--child"], env=env, check=True,
                                 capture_output=True, text=True)
            results[label] = json.loads(res.stdout.splitlines()[-1])
    rows = []
    for name in results["-O2"]:
        if name.startswith("_"):
            continue
        a, b = results["-O2"][name], results["-O1"][name]
        rows.append([name, f"{a * 1e3:.3f}", f"{b * 1e3:.3f}", f"{b / a:.2f}x"])
    ratios = [float(r[3][:-1]) for r in rows]
    table(rows, ["workload", "-O2 ms", "-O1 ms", "-O1 / -O2"])
    print(f"geometric mean -O1 / -O2: {np.exp(np.mean(np.log(ratios))):.3f}; "
          f"worst {max(ratios):.2f}x")


if __name__ == "__main__":
    child() if "--child" in sys.argv else main()
