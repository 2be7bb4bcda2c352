"""Cold compile time of the MLP train step (bench_mlp.py), and where it goes.

Each measurement runs in a new process with a fresh, empty SYMGRAD_CACHE_DIR:

* cold: ``sg.function(...)`` end to end, split into building the graph and
  its gradient, lowering it to C (Python), the C compiler, and the rest
  (cache bookkeeping, loading the library);
* hit: the same in another new process, the library now in the cache;
* the generated source: its line count;
* the C compiler alone on the header only (an empty kernel body) and on the
  whole kernel, at -O2 (the default) and -O1, as CPU time (other processes
  on the machine disturb it less than wall time), and with ``-ftime-report``
  for the share of parsing versus optimisation.

Then compile time against graph size (issue #12, item 9: it should grow
linearly): generated graphs of about 10, 100, 1,000 and 10,000 nodes (see
:func:`graph_of`), each compiled in a new process with an empty cache; the
table gives the nodes, the lines of generated C, and the seconds of lowering
(Python) and of the C compiler (wall, and CPU of the compiler processes).

    python bench/bench_compile.py [--repeat N] [--report] [--max-nodes N] [--timeout S]
"""

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile

# Both children time lowering and the C compiler by wrapping them (formatted in below).
TIMING = r"""
spent = {"lower": 0.0, "cc": 0.0}

def timed(fn, key):
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent[key] += time.perf_counter() - t
    return wrapper

backend.lower = timed(backend.lower, "lower")
compiler._run_compiler = timed(compiler._run_compiler, "cc")
"""

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import symgrad as sg
import symgrad.backend as backend, symgrad.compiler as compiler
t1 = time.perf_counter()
sys.path.insert(0, {bench!r})
from bench_mlp import init, symgrad_step
from common import rng

{timing}params = init(rng())
t2 = time.perf_counter()
f = symgrad_step(params)
t3 = time.perf_counter()
import resource
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps(dict(import_s=t1 - t0, function_s=t3 - t2, lower_s=spent["lower"],
                      cc_s=spent["cc"], cc_cpu_s=ru.ru_utime + ru.ru_stime,
                      lines=f.source.count("\n"), source=f.source)))
"""


SCALE_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import symgrad as sg
import symgrad.backend as backend, symgrad.compiler as compiler
sys.path.insert(0, {bench!r})
from bench_compile import graph_of

{timing}t1 = time.perf_counter()
inputs, out, nodes = graph_of({n})
t2 = time.perf_counter()
f = sg.function(inputs, out)
t3 = time.perf_counter()
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps(dict(nodes=nodes, build_s=t2 - t1, function_s=t3 - t2, lower_s=spent["lower"],
                      cc_s=spent["cc"], cc_cpu_s=ru.ru_utime + ru.ru_stime,
                      lines=f.source.count("\n"))))
"""

CHAIN = 50  # ops per chain: the graph's depth stays about CHAIN + log2(chains)


def graph_of(n):
    """A forward graph of about ``n`` op nodes over a float32 matrix X (m, 16) and
    W (16, 16): chains of up to CHAIN ops, each op in turn a matmul, tanh, an
    affine map, a row centring (a mean over axis 1 broadcast back), exp(-v*v), a
    maximum, v * sigmoid(v) or v / (1 + |v|), constants differing by chain so
    that no two chains are merged; the chains' sums added up as a balanced tree.
    Returns ``(inputs, output, nodes)``, nodes counted as the ops built."""
    import symgrad as sg

    X = sg.matrix("X", dtype="float32")
    W = sg.matrix("W", dtype="float32")
    made, heads, c = 0, [], 0
    while made < max(n, 1):
        c += 1
        v = X * (1.0 + c / 1024)
        made += 1
        for j in range(min(CHAIN, n - made)):
            k = j % 8
            a = 1.0 + (c * CHAIN + j) / 65536
            if k == 0:
                v, d = v @ W, 1
            elif k == 1:
                v, d = sg.tanh(v), 1
            elif k == 2:
                v, d = v * a + 0.5, 2
            elif k == 3:
                v, d = v - v.mean(axis=1, keepdims=True), 2
            elif k == 4:
                v, d = sg.exp(-(v * v) * a), 4
            elif k == 5:
                v, d = sg.maximum(v, -a), 1
            elif k == 6:
                v, d = v * sg.sigmoid(v * a), 3
            else:
                v, d = v / (1.0 + sg.abs(v)), 3
            made += d
            if made >= n:
                break
        heads.append(v.sum())
        made += 1
    while len(heads) > 1:
        heads = [heads[i] + heads[i + 1] if i + 1 < len(heads) else heads[i]
                 for i in range(0, len(heads), 2)]
        made += len(heads) // 2
    return [X, W], heads[0], made


def run_scale(n, timeout):
    """One size, in a new process and an empty cache: the child's numbers, or None
    when it ran past ``timeout`` seconds."""
    d = tempfile.mkdtemp()
    os.chmod(d, 0o700)
    try:
        env = dict(os.environ, SYMGRAD_CACHE_DIR=d)
        code = SCALE_CHILD.format(timing=TIMING, n=n,
                                  bench=os.path.dirname(os.path.abspath(__file__)))
        try:
            res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, check=True, cwd="/", timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        except subprocess.CalledProcessError as e:  # e.g. the compiler's own time limit
            lines = [line for line in e.stderr.splitlines() if line.strip()]
            return {"error": lines[-1][:300] if lines else f"exit status {e.returncode}"}
        return json.loads(res.stdout)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def scale_table(max_nodes, timeout):
    print(f"Compile time against graph size (graph_of: chains of {CHAIN} elementwise ops, "
          f"matmuls and row reductions; a new process and an empty cache each)")
    print(f"  {'nodes':>6} {'lines of C':>10} {'lowering s':>10} {'cc s':>8} {'cc CPU s':>8} "
          f"{'total s':>8} {'ms/node':>8}")
    n = 10
    while n <= max_nodes:
        r = run_scale(n, timeout)
        if r is None:
            print(f"  {n:>6} more than {timeout} s: stopped (--timeout)")
            break
        if "error" in r:
            print(f"  {n:>6} failed: {r['error']}")
            break
        print(f"  {r['nodes']:>6} {r['lines']:>10} {r['lower_s']:>10.2f} {r['cc_s']:>8.2f} "
              f"{r['cc_cpu_s']:>8.2f} {r['function_s']:>8.2f} "
              f"{r['function_s'] / r['nodes'] * 1e3:>8.2f}", flush=True)
        n *= 10


def run_child(cache_dir):
    env = dict(os.environ, SYMGRAD_CACHE_DIR=cache_dir)
    code = CHILD.format(timing=TIMING, bench=os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd="/")
    return json.loads(res.stdout)


def gcc_time(source, drop=(), extra=(), keep_output=False):
    """CPU time (user + system) of the symgrad compile command on ``source``, without the
    flags in ``drop`` and with those in ``extra``: less sensitive than wall time to other
    processes on the machine."""
    from symgrad.compiler import compiler_argv, find_compiler

    argv = compiler_argv(find_compiler(), "kernel")
    argv = [a for a in argv if a not in drop] + list(extra)
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "kernel.c"), "w") as f:
            f.write(source)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        res = subprocess.run(argv, cwd=d, capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise RuntimeError(res.stderr)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, res.stderr if keep_output else ""


def header_only(source):
    """The kernel's includes with an empty body: what every compile pays before any code."""
    head = [line for line in source.splitlines() if line.startswith("#include")]
    return "\n".join(head) + "\nint sg_main(void) { return 0; }\n"


def time_report_summary(report):
    """Phase wall times from ``-ftime-report``: ``phase parsing``, ``phase opt and generate``..."""
    phases = {}
    for line in report.splitlines():
        m = re.match(r"\s*(phase [a-z ]+?|TOTAL)\s*:(.*)", line)
        if m:
            nums = re.findall(r"(\d+\.\d+)", m.group(2))
            if len(nums) >= 3:
                phases[m.group(1)] = float(nums[2])  # usr, sys, wall
    return phases


def best(fn, repeat):
    return min(fn() for _ in range(repeat))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="take the best of N runs")
    ap.add_argument("--report", action="store_true", help="print gcc -ftime-report phases")
    ap.add_argument("--max-nodes", type=int, default=10_000,
                    help="the largest graph of the size table (0: no table)")
    ap.add_argument("--timeout", type=int, default=900,
                    help="seconds one size of the table may take")
    args = ap.parse_args()

    colds, hits = [], []
    for _ in range(args.repeat):
        d = tempfile.mkdtemp()
        os.chmod(d, 0o700)
        try:
            colds.append(run_child(d))
            hits.append(run_child(d))
        finally:
            shutil.rmtree(d, ignore_errors=True)
    cold = min(colds, key=lambda r: r["function_s"])
    hit = min(hits, key=lambda r: r["function_s"])
    src = cold["source"]
    print(f"MLP train step ({cold['lines']} generated lines, {len(src)} characters)")
    print(f"  cold, end to end        {cold['function_s'] * 1e3:7.0f} ms"
          f"   (best of {args.repeat}; import symgrad {cold['import_s'] * 1e3:.0f} ms not counted)")
    print(f"    lowering (Python)     {cold['lower_s'] * 1e3:7.0f} ms")
    print(f"    C compiler            {cold['cc_s'] * 1e3:7.0f} ms"
          f"   (CPU time of compiler processes {cold['cc_cpu_s'] * 1e3:.0f} ms)")
    print(f"    graph, grad, rest     "
          f"{(cold['function_s'] - cold['lower_s'] - cold['cc_s']) * 1e3:7.0f} ms")
    print(f"  cache hit, new process  {hit['function_s'] * 1e3:7.0f} ms")

    print(f"C compiler alone, CPU time (best of {args.repeat}):")
    for level in ("-O2", "-O1"):
        t_head = best(lambda: gcc_time(header_only(src), ("-O2",), [level])[0], args.repeat)
        t_all = best(lambda: gcc_time(src, ("-O2",), [level])[0], args.repeat)
        print(f"  {level}: header only {t_head * 1e3:6.0f} ms, whole kernel {t_all * 1e3:6.0f} ms")
    if args.report:
        _, rep = gcc_time(src, (), ["-ftime-report"], keep_output=True)
        for name, wall in time_report_summary(rep).items():
            print(f"  -ftime-report {name:<28} {wall * 1e3:6.0f} ms")
    if args.max_nodes >= 10:
        print()
        scale_table(args.max_nodes, args.timeout)


if __name__ == "__main__":
    main()
