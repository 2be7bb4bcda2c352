"""Cold compile time (issue #12, item 9): models, then graphs of 10 to 10,000 nodes.

Every measurement runs in a new process with a fresh, empty SYMGRAD_CACHE_DIR and
builds its functions with ``sg.function`` end to end; its time is split into
lowering (graph to C, Python) and the C compiler (the build: the kernel's
translation units compiled side by side, then linked; wall, and the CPU time of
the compiler processes, which other load on the machine disturbs less).

* models: the MLP train step of bench_mlp.py; the Theano tutorial's logistic
  regression (MNIST-sized, 784 -> 10 softmax) with its three functions, train,
  validate and test (the last two the same graph: the second is a cache hit);
  an LSTM (hidden 32, input 16, float32) unrolled over 8 and 16 steps, and 100
  with ``--lstm100``, its train step (loss, gradient of four parameters, SGD);
* for the MLP step: a cache hit in a new process, and the C compiler alone on the
  header only, as CPU time;
* compile time against graph size: generated graphs of about 10, 100, 1,000 and
  10,000 nodes (:func:`graph_of`), with the lines of generated C. A size whose
  time, extrapolated from the one before (linearly, with a margin of 1.5), would
  pass ``--limit`` seconds is skipped, and the table says so.

The package's modules are compiled to bytecode first (``__pycache__``, as an installed
package has it): under PYTHONDONTWRITEBYTECODE, or after an edit of the sources, the
modules the first ``sg.function`` imports would otherwise be compiled from source in
every run, inside the time measured (about 10 ms of the logistic regression's CPU).

    python bench/bench_compile.py [--repeat N] [--lstm100] [--max-nodes N] [--limit S]
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import symgrad as sg
import symgrad.backend as backend, symgrad.compiler as compiler
sys.path.insert(0, {bench!r})
import bench_compile
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
compiler._build = timed(compiler._build, "cc")
t1 = time.perf_counter()
build = bench_compile.WORKLOADS[{what!r}]
args = build.setup({arg!r})
t2 = time.perf_counter()
fs, nodes = build.functions(*args)
t3 = time.perf_counter()
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps(dict(import_s=t1 - t0, setup_s=t2 - t1, function_s=t3 - t2,
                      lower_s=spent["lower"], cc_s=spent["cc"], cc_cpu_s=ru.ru_utime + ru.ru_stime,
                      nodes=nodes, lines=sum(f.source.count("\n") for f in fs),
                      hits=sum(bool(f.cache_hit) for f in fs))))
"""


class _Workload:
    """``setup(arg)`` makes what is not timed (parameters); ``functions(*setup)`` builds
    the graph and its functions, timed, and returns ``(functions, nodes)``."""

    def __init__(self, setup, functions):
        self.setup, self.functions = setup, functions


def _nodes(fs):
    """Nodes of the functions' rewritten graphs (what is lowered to C)."""
    return sum(len(f.graph.nodes) for f in fs)


def _mlp_setup(_):
    sys.path.insert(0, HERE)
    from bench_mlp import init
    from common import rng
    return (init(rng()),)


def _mlp(params):
    from bench_mlp import symgrad_step
    f = symgrad_step(params)
    return [f], _nodes([f])


def _logreg_setup(_):
    import numpy as np
    return (np.zeros((784, 10)), np.zeros(10))


def _logreg(W0, b0):
    """The Theano tutorial's logistic regression (logistic_sgd.py): softmax of x @ W + b,
    the mean negative log-likelihood trained by SGD; validate and test give the error rate."""
    import symgrad as sg
    W, b = sg.shared(W0, name="W"), sg.shared(b0, name="b")
    x, y = sg.matrix("x"), sg.vector("y", dtype="int64")
    p_y_given_x = sg.nn.softmax(x @ W + b)
    y_pred = p_y_given_x.argmax(axis=1)
    nll = -sg.mean(sg.log(p_y_given_x)[sg.arange(sg.shape(y)[0]), y])
    errors = sg.mean(sg.neq(y_pred, y))
    g_W, g_b = sg.grad(nll, [W, b])
    train = sg.function([x, y], nll, updates=[(W, W - 0.13 * g_W), (b, b - 0.13 * g_b)])
    validate = sg.function([x, y], errors)
    test = sg.function([x, y], errors)
    fs = [train, validate, test]
    return fs, _nodes(fs)


def _lstm_setup(steps, hidden=32, inputs=16):
    import numpy as np
    r = np.random.default_rng(0)
    shapes = [(inputs, 4 * hidden), (hidden, 4 * hidden), (4 * hidden,), (hidden, 1)]
    return steps, hidden, [(r.standard_normal(s) * 0.1).astype("float32") for s in shapes]


def _lstm(steps, H, values):
    """An LSTM unrolled over ``steps`` (x of shape (steps, batch, inputs)), the squared
    error of a linear read-out of its last state, and its SGD train step."""
    import symgrad as sg
    Wx, Wh, b, Wo = params = [sg.shared(v) for v in values]
    x = sg.tensor("x", dtype="float32", shape=(None,) * 3)
    y = sg.matrix("y", dtype="float32")
    h = c = None
    for t in range(steps):
        z = x[t] @ Wx + b if h is None else x[t] @ Wx + h @ Wh + b
        i, f, o = (sg.sigmoid(z[:, k * H:(k + 1) * H]) for k in range(3))
        g = sg.tanh(z[:, 3 * H:])
        c = i * g if c is None else f * c + i * g
        h = o * sg.tanh(c)
    loss = ((h @ Wo - y) ** 2).mean()
    grads = sg.grad(loss, params)
    fn = sg.function([x, y], loss, updates=[(p, p - 0.1 * g) for p, g in zip(params, grads)])
    return [fn], _nodes([fn])


def _graph_setup(n):
    return (n,)


def _graph(n):
    import symgrad as sg
    inputs, out, nodes = graph_of(n)
    return [sg.function(inputs, out)], nodes


WORKLOADS = {"mlp": _Workload(_mlp_setup, _mlp), "logreg": _Workload(_logreg_setup, _logreg),
             "lstm": _Workload(_lstm_setup, _lstm), "graph": _Workload(_graph_setup, _graph)}

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


def run(what, arg=None, cache_dir=None, timeout=None):
    """One measurement in a new process (an empty cache unless ``cache_dir``): the
    child's numbers; None past ``timeout`` seconds; ``{"error": ...}`` on failure."""
    d = cache_dir or tempfile.mkdtemp()
    os.chmod(d, 0o700)
    try:
        env = dict(os.environ, SYMGRAD_CACHE_DIR=d)
        code = CHILD.format(bench=HERE, what=what, arg=arg)
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
        if cache_dir is None:
            shutil.rmtree(d, ignore_errors=True)


HEAD = (f"  {'':<26} {'nodes':>6} {'lines of C':>10} {'total s':>8} {'lowering s':>10} "
        f"{'cc s':>7} {'cc CPU s':>8} {'ms/node':>8}")


def row(label, r):
    return (f"  {label:<26} {r['nodes']:>6} {r['lines']:>10} {r['function_s']:>8.2f} "
            f"{r['lower_s']:>10.2f} {r['cc_s']:>7.2f} {r['cc_cpu_s']:>8.2f} "
            f"{r['function_s'] / max(r['nodes'], 1) * 1e3:>8.2f}")


def best_of(what, arg, repeat, timeout=None):
    runs = [run(what, arg, timeout=timeout) for _ in range(repeat)]
    bad = [r for r in runs if r is None or "error" in r]
    if bad:
        return bad[0]
    return min(runs, key=lambda r: r["function_s"])


def models(repeat, lstm100, timeout):
    print(f"Models, cold cache, a new process each (best of {repeat}; total = sg.function and "
          f"the graph it compiles, not the import)")
    print(HEAD)
    cases = [("MLP train step", "mlp", None), ("logistic regression x3", "logreg", None),
             ("LSTM unrolled 8 steps", "lstm", 8), ("LSTM unrolled 16 steps", "lstm", 16)]
    if lstm100:
        cases.append(("LSTM unrolled 100 steps", "lstm", 100))
    out = {}
    for label, what, arg in cases:
        r = best_of(what, arg, repeat if arg is None or arg <= 16 else 1, timeout)
        if r is None:
            print(f"  {label:<26} more than {timeout} s: stopped")
            continue
        if "error" in r:
            print(f"  {label:<26} failed: {r['error']}")
            continue
        out[what, arg] = r
        print(row(label, r), flush=True)
    return out


def mlp_details(repeat):
    d = tempfile.mkdtemp()
    try:
        run("mlp", cache_dir=d)
        hit = min((run("mlp", cache_dir=d) for _ in range(repeat)),
                  key=lambda r: r["function_s"])
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print(f"MLP train step, cache hit in a new process: {hit['function_s'] * 1e3:.0f} ms "
          f"(best of {repeat})")
    t_text = min(gcc_time(header_only(), pch=False) for _ in range(repeat))
    t_pch = min(gcc_time(header_only(), pch=True) for _ in range(repeat))
    print(f"C compiler on the headers alone (one unit, compile and link), CPU: "
          f"{t_text * 1e3:.0f} ms reading their text, {t_pch * 1e3:.0f} ms their precompiled "
          f"form" + ("" if t_pch < t_text else " (none built for this compiler and flags?)"))


def gcc_time(source, pch=True):
    """CPU time (user + system) of the symgrad compile command on one ``source`` (a
    one-unit kernel's: with the precompiled prelude when one fits, unless ``pch`` is
    false)."""
    from symgrad.compiler import PCH_ROOT, Unit, _commands, find_compiler

    cc = find_compiler()
    (argv,), _ = _commands(cc, "kernel", (Unit("kernel.c", source),))
    if not pch:
        argv = [a for a in argv if not a.startswith("-I" + PCH_ROOT)]
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "kernel.c"), "w") as f:
            f.write(source)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        res = subprocess.run(argv, cwd=d, capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise RuntimeError(res.stderr)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def header_only():
    """A kernel's includes with an empty body: what every unit pays before any code."""
    return '#include "sg_prelude.h"\nint sg_main(void) { return 0; }\n'


def scale_table(max_nodes, limit):
    print(f"Compile time against graph size (graph_of: chains of {CHAIN} elementwise ops, "
          f"matmuls and row reductions; a new process and an empty cache each; limit "
          f"{limit} s a size)")
    print(HEAD)
    n, per_node = 10, None
    while n <= max_nodes:
        if per_node is not None and 1.5 * per_node * n > limit:
            print(f"  {'graph_of(' + str(n) + ')':<26} skipped: about {per_node * n:.0f} s "
                  f"expected ({per_node * 1e3:.1f} ms a node), over the limit --limit {limit}")
            n *= 10
            continue
        r = run("graph", n, timeout=limit)
        if r is None:
            print(f"  {'graph_of(' + str(n) + ')':<26} more than {limit} s: stopped (--limit)")
            break
        if "error" in r:
            print(f"  {'graph_of(' + str(n) + ')':<26} failed: {r['error']}")
            break
        print(row(f"graph_of({n})", r), flush=True)
        per_node = r["function_s"] / r["nodes"]
        n *= 10


def bytecode():
    """Compile the package's modules to bytecode where they are (see the module's notes)."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("symgrad")
    folder = spec.submodule_search_locations[0]
    if not compileall.compile_dir(folder, quiet=2):
        print(f"note: the bytecode of {folder} could not all be written: its modules may be "
              f"compiled from source in each run, inside the time measured")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="take the best of N runs")
    ap.add_argument("--lstm100", action="store_true",
                    help="also the LSTM unrolled over 100 steps (tens of seconds)")
    ap.add_argument("--max-nodes", type=int, default=10_000,
                    help="the largest graph of the size table (0: no table)")
    ap.add_argument("--limit", type=int, default=600,
                    help="seconds one measurement may take")
    ap.add_argument("--no-models", action="store_true", help="the size table only")
    args = ap.parse_args()
    bytecode()
    if not args.no_models:
        out = models(args.repeat, args.lstm100, args.limit)
        if ("mlp", None) in out:
            mlp_details(args.repeat)
        print()
    if args.max_nodes >= 10:
        scale_table(args.max_nodes, args.limit)


if __name__ == "__main__":
    main()
