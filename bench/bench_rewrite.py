"""The rewrite pipeline on the MLP train step: node counts before and after, and its time.

Model (as bench_mlp.py): float32 784 -> 512 relu -> 512 relu -> 10, the mean of
``sg.nn.cross_entropy``, gradients of every W and b, SGD updates. Prints the
graph's node count as ``sg.grad`` derives it and after each sweep of the
pipeline, what fired, duplicate subexpressions and identity ops before and
after, the time the pipeline takes (best of several), the ops of the final
graph, and with ``--step`` the compiled step's time at rewrite levels "none"
and "safe".

    python bench/bench_rewrite.py [--step]
"""

import collections
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import best_time, rng, table  # noqa: E402

import symgrad as sg  # noqa: E402
from symgrad.graph import Constant, toposort  # noqa: E402
from symgrad.rewrite import rewrite  # noqa: E402
from symgrad.rewrite.engine import all_equal  # noqa: E402
from symgrad.rewrite.shapes import Dims  # noqa: E402

SIZES = (784, 512, 512, 10)
LR = np.float32(0.01)


def mlp_step_graph(r):
    """(inputs, outputs, updates) of one SGD step, as a user would write it."""
    X = sg.matrix("X", dtype="float32")
    y = sg.vector("y", dtype="int64")
    params = []
    h = X
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        W = sg.shared((r.standard_normal((a, b)) * np.sqrt(2 / a)).astype("float32"), name=f"W{i}")
        bias = sg.shared(np.zeros(b, "float32"), name=f"b{i}")
        params += [W, bias]
        h = h @ W + bias
        if i < len(SIZES) - 2:
            h = sg.relu(h)
    loss = sg.nn.cross_entropy(h, y).mean()
    grads = sg.grad(loss, params)
    return [X, y], [loss], [(p, p - LR * g) for p, g in zip(params, grads)]


def duplicates(outputs):
    """Nodes equal to an earlier one (same op and props, same inputs), and repeated constants."""
    seen, dup = set(), 0
    consts = set()
    for node in toposort(outputs):
        key = (node.op, tuple(id(i) for i in node.inputs))
        dup += key in seen
        seen.add(key)
        for i in node.inputs:
            if isinstance(i, Constant):
                consts.add((id(i), i.dtype, i.data.shape, i.data.tobytes()))
    values = collections.Counter(k[1:] for k in consts)
    return dup + sum(n - 1 for n in values.values())


def identities(outputs):
    """Nodes that provably return their input's values: the ops the pipeline removes."""
    d = Dims()
    count = 0
    for node in toposort(outputs):
        name, ins = node.op.name, node.inputs
        out = node.outputs[0]
        same = [i for i in ins if i.ndim == out.ndim and d.same(d.of(i), d.of(out))]
        if name == "stop_gradient":
            count += 1
        elif name == "dimshuffle" and list(node.op.order) == list(range(node.op.in_ndim)):
            count += 1
        elif name in ("sum_to", "broadcast_to", "reshape") and d.same(d.of(ins[0]),
                                                                     d.vector(ins[1])):
            count += 1
        elif name in ("mul", "truediv", "pow") and same and all_equal(ins[-1] if name != "mul"
                                                                     else ins[0], 1):
            count += 1
        elif name == "mul" and same and all_equal(ins[1], 1):
            count += 1
        elif name in ("sum", "mean", "prod", "max", "min") and all(
                d.of(ins[0])[a] == 1 for a in node.op.axis):
            count += 1
    return count


def main():
    inputs, outs, updates = mlp_step_graph(rng())
    exprs = outs + [e for _, e in updates]
    report = []
    rewritten = rewrite(exprs, "safe", report=report)
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        rewrite(exprs, "safe")
        times.append(time.perf_counter() - t0)

    print(f"MLP train step graph, float32, {' -> '.join(map(str, SIZES))}: "
          f"loss, gradients of every W and b, SGD updates")
    rows = [[r["name"], r["nodes"], f"{r['seconds'] * 1e3:.2f}",
             ", ".join(f"{k} x{v}" for k, v in sorted(r["fired"].items()))]
            for r in report]
    table(rows, ["sweep", "nodes after", "ms", "rules fired"])
    print()
    table([["before (as sg.grad derives it)", len(toposort(exprs)), duplicates(exprs),
            identities(exprs)],
           ["after the pipeline", len(toposort(rewritten)), duplicates(rewritten),
            identities(rewritten)]],
          ["graph", "nodes", "duplicate subexpressions", "identity ops"])
    print(f"\nrewrite time: best {min(times) * 1e3:.2f} ms, median "
          f"{sorted(times)[len(times) // 2] * 1e3:.2f} ms over {len(times)} runs")
    ops = collections.Counter(str(n.op) for n in toposort(rewritten))
    print("\nops after: " + ", ".join(f"{k} x{v}" for k, v in ops.most_common()))

    if "--step" in sys.argv:
        r = rng(1)
        X = r.standard_normal((256, 784)).astype("float32")
        y = r.integers(0, 10, 256)
        rows = []
        for level in ("none", "safe"):
            ins, o, upd = mlp_step_graph(rng())
            f = sg.function(ins, o[0], updates=upd, rewrite=level)
            rows.append([level, len(f.graph.nodes), f"{best_time(f, X, y) * 1e3:.3f}"])
        print()
        table(rows, ["rewrite", "nodes", "step ms (batch 256)"])


if __name__ == "__main__":
    main()
