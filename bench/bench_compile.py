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

    python bench/bench_compile.py [--repeat N] [--report]
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

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import symgrad as sg
import symgrad.backend as backend, symgrad.compiler as compiler
t1 = time.perf_counter()
sys.path.insert(0, {bench!r})
from bench_mlp import init, symgrad_step
from common import rng

spent = {{"lower": 0.0, "cc": 0.0}}

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
params = init(rng())
t2 = time.perf_counter()
f = symgrad_step(params)
t3 = time.perf_counter()
import resource
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps(dict(import_s=t1 - t0, function_s=t3 - t2, lower_s=spent["lower"],
                      cc_s=spent["cc"], cc_cpu_s=ru.ru_utime + ru.ru_stime,
                      lines=f.source.count("\n"), source=f.source)))
"""


def run_child(cache_dir):
    env = dict(os.environ, SYMGRAD_CACHE_DIR=cache_dir)
    code = CHILD.format(bench=os.path.dirname(os.path.abspath(__file__)))
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


if __name__ == "__main__":
    main()
