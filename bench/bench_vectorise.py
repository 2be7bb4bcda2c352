"""Which fused loops vectorise, and what each workload costs against NumPy.

For each named workload the function is compiled, then its generated source
(``f.source``) is compiled again by gcc with the kernel's own flags
(``compiler.BASE_FLAGS``, the release -O2, not the test suite's -O1) plus
``-fopt-info-vec-optimized -fopt-info-vec-missed``. Every ``#pragma omp simd``
loop of the source -- the unit-stride inner loops the code generator means to
vectorise -- is matched with gcc's notes on the lines of its body: a
"loop vectorized" note there means it did, otherwise the first "missed" note
says why (e.g. ``no vectype for stmt``: a uint8_t widened to a double).
Each loop is named by the step (``K<n>``) that runs it: the step comment
nearest above the loop, or above the first call of the function holding it.

Times are the best of several rounds of calls (wall clock, the kernel's loops
on one thread, as NumPy's), the NumPy column the same computation written with
NumPy.

    python bench/bench_vectorise.py [--only NAME[,NAME...]] [--no-time] [--cpu]
                                    [--march haswell,skylake-avx512]

``--march`` reports the loops for those targets (gcc's -march names, one column each)
instead of this machine's -march=native: gcc compiles for any x86 target whatever the
host, so an AVX2 and an AVX-512 machine's report can be read on either.
``--cpu`` times the calling thread's CPU time instead of the wall clock (the kernel's
loops run on that thread), for a machine other processes load.

tests/test_vectorise.py uses :func:`vector_report` to keep the loop of a cast
of a comparison vectorised.
"""

import argparse
import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import best_time, rng, table  # noqa: E402

import symgrad as sg  # noqa: E402
from symgrad import compiler  # noqa: E402

_PRAGMA = re.compile(r"^\s*#\s*pragma\s+omp\s+simd\b(.*)$")
_FUNC = re.compile(r"^(?:static\s+)?(?:inline\s+)?[A-Za-z_][\w\s\*]*?\b([A-Za-z_]\w*)\s*\([^;]*$")
_STEP = re.compile(r"/\*\s*(K\d+):\s*(.*?)\s*(?:\*/)?$")
_NOTE = re.compile(r"^kernel\.c:(\d+):\d+: (optimized|missed): (.*)$")


# --------------------------------------------------------------------------- the report

def gcc_argv():
    """The kernel compiler's argv prefix when it is gcc, else None (clang's remarks differ)."""
    try:
        cc = compiler.find_compiler()
        out = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
    except (compiler.CompileError, OSError, subprocess.TimeoutExpired):
        return None
    text = out.stdout + out.stderr
    if "clang" in text.lower() or "Free Software Foundation" not in text:
        return None
    return cc


def simd_loops(source):
    """The ``#pragma omp simd`` loops of a C source, as dicts: ``pragma`` (its line, 1-based),
    ``first``/``last`` (the lines of the ``for`` and of its closing brace), ``clauses``."""
    lines = source.splitlines()
    loops = []
    for i, text in enumerate(lines):
        m = _PRAGMA.match(text)
        if not m:
            continue
        first = next((k for k in range(i + 1, len(lines)) if lines[k].strip()), None)
        if first is None or not lines[first].lstrip().startswith("for"):
            continue
        depth, last, opened = 0, first, False
        for k in range(first, len(lines)):
            code = re.sub(r'"(?:\\.|[^"\\])*"', '""', lines[k])
            depth += code.count("{") - code.count("}")
            opened = opened or "{" in code
            if (opened and depth <= 0) or (not opened and code.rstrip().endswith(";")):
                last = k
                break
        loops.append({"pragma": i + 1, "first": first + 1, "last": last + 1,
                      "clauses": m.group(1).strip()})
    return loops


def _enclosing_function(lines, line):
    """The name of the function whose definition most closely precedes 0-based ``line``."""
    for k in range(line, -1, -1):
        if lines[k][:1] not in (" ", "\t", "#", "/", "*", "}", "{", "") or lines[k].startswith(
                "static"):
            m = _FUNC.match(lines[k])
            if m:
                return m.group(1), k
    return None, None


def _step_above(lines, line):
    """The nearest ``/* K<n>: ...`` comment at or above 0-based ``line``: (label, what), what
    being the op for a single op, or the fused ops' names listed under the comment."""
    for k in range(line, -1, -1):
        m = _STEP.search(lines[k])
        if m:
            what = re.sub(r" at \S+:\d+.*$", "", m.group(2))
            if what.startswith("fused loop"):
                ops = []
                for text in lines[k + 1:]:
                    item = re.match(r"^\s*\*\s+(.+?) at \S+:\d+", text)
                    if not item:
                        break
                    ops.append(item.group(1))
                what = "fused: " + ", ".join(ops) if ops else what
            return m.group(1), what
    return None, None


def _step_of(lines, line):
    """The ``K<n>`` step (label, description) that runs the loop at 0-based ``line``."""
    name, start = _enclosing_function(lines, line)
    if name is not None and name != "sg_main":
        word = re.compile(rf"\b{re.escape(name)}\b")
        for k in range(len(lines)):
            if k != start and word.search(lines[k]) and not _FUNC.match(lines[k]):
                label = _step_above(lines, k)
                if label[0] is not None:
                    return label
    return _step_above(lines, line)


def release_flags(march=None):
    """The kernels' release flags (``compiler.BASE_FLAGS``) for compiling one unit, with
    ``-march=<march>`` in place of -march=native when ``march`` is given."""
    flags = [f for f in compiler.BASE_FLAGS if f != "-shared"]
    return [f"-march={march}" if march and f == "-march=native" else f for f in flags]


def gcc_notes(source, cc=None, flags=None, march=None):
    """gcc's vectoriser notes on ``source``: a list of (line, kind, text), kind "optimized" or
    "missed". ``flags``: the kernel's release flags by default, for ``march`` if given
    (e.g. "haswell" for AVX2, "skylake-avx512"; by default this machine's)."""
    cc = cc or gcc_argv()
    if cc is None:
        raise RuntimeError("the kernel compiler is not gcc: its vectoriser notes cannot be read")
    include, _, _ = compiler.blas_flags()
    flags = flags or release_flags(march)
    includes = [f"-I{compiler.INCLUDE_DIR}", f"-I{include}"]
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "kernel.c"), "w") as f:
            f.write(source)
        proc = subprocess.run(
            [*cc, *flags, *_prelude_pch(cc, flags, includes), *includes,
             "-fopt-info-vec-optimized", "-fopt-info-vec-missed", "-c", "kernel.c",
             "-o", os.devnull], cwd=tmp, capture_output=True, text=True, timeout=600,
            stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"gcc failed on the kernel source:\n{proc.stderr[-4000:]}")
    notes = []
    for text in proc.stderr.splitlines():
        m = _NOTE.match(text)
        if m:
            notes.append((int(m.group(1)), m.group(2), m.group(3)))
    return notes


_PCH = {}  # (compiler argv, flags) -> ["-I<folder of the precompiled prelude>"], or []


def _prelude_pch(cc, flags, includes):
    """The kernels' prelude header precompiled once per process for these flags (a
    report for another -march cannot use the installed one): without it every report
    reads ~0.4 s of headers before its few loops. [] when gcc cannot build it; the
    report then reads the text, with the same notes."""
    key = (tuple(cc), tuple(flags))
    if key not in _PCH:
        folder = tempfile.mkdtemp(prefix="sg-vec-pch-")
        atexit.register(shutil.rmtree, folder, True)
        prelude = os.path.join(compiler.INCLUDE_DIR, "sg_prelude.h")
        proc = subprocess.run(
            [*cc, *flags, *includes, "-x", "c-header", prelude,
             "-o", os.path.join(folder, "sg_prelude.h.gch")],
            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
        _PCH[key] = [f"-I{folder}"] if proc.returncode == 0 else []
    return _PCH[key]


def vector_report(source, cc=None, march=None):
    """One dict per ``omp simd`` loop of ``source``: its lines, ``step`` and ``what`` (the
    ``K<n>`` comment that runs it), ``vectorised`` (bool) and ``why`` (gcc's first missed note
    on the loop's lines, when it did not vectorise); compiled for ``march`` (gcc's -march
    name) if given, else for this machine."""
    notes = gcc_notes(source, cc, march=march)
    lines = source.splitlines()
    report = []
    for loop in simd_loops(source):
        inside = [n for n in notes if loop["first"] <= n[0] <= loop["last"]]
        done = any(kind == "optimized" and "loop vectorized" in text for _, kind, text in inside)
        missed = [text for _, kind, text in inside
                  if kind == "missed" and "couldn't vectorize loop" not in text]
        step, what = _step_of(lines, loop["pragma"] - 1)
        report.append({**loop, "step": step, "what": what, "vectorised": done,
                       "why": None if done else (missed[0] if missed else "no note")})
    return report


# --------------------------------------------------------------------------- workloads

def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def cast_of_comparison():
    x, u = sg.matrix("x"), sg.matrix("u")
    r = rng()
    args = r.standard_normal((20, 500)), r.random((20, 500))
    return ([x, u], sg.cast(u < sg.sigmoid(x), "float64"), args,
            lambda x, u: (u < _sigmoid(x)).astype(np.float64))


def where_of_comparison():
    x, u = sg.matrix("x"), sg.matrix("u")
    r = rng()
    args = r.standard_normal((20, 500)), r.random((20, 500))
    return ([x, u], sg.where(u < sg.sigmoid(x), 1.0, 0.0), args,
            lambda x, u: np.where(u < _sigmoid(x), 1.0, 0.0))


POOL = (32, 16, 32, 32)


def _pool(x):
    n, c, h, w = POOL
    return x.reshape((n, c, h // 2, 2, w // 2, 2)).max(axis=(3, 5))


def _pool_grad_numpy(v):
    n, c, h, w = POOL
    x6 = v.reshape(n, c, h // 2, 2, w // 2, 2)
    hit = x6 == x6.max(axis=(3, 5), keepdims=True)
    count = hit.sum(axis=(3, 5), keepdims=True, dtype=v.dtype)
    return np.where(hit, 1 / count, v.dtype.type(0)).reshape(v.shape)


def maxpool_forward():
    x = sg.tensor("x", "float32", POOL)
    return [x], _pool(x), (rng().standard_normal(POOL).astype("float32"),), _pool


def maxpool_backward():
    x = sg.tensor("x", "float32", POOL)
    return ([x], sg.grad(_pool(x).sum(), x), (rng().standard_normal(POOL).astype("float32"),),
            _pool_grad_numpy)


def maxpool_backward_input_order():
    """The max's gradient as its rule wrote it before issue #12: in the input's order, where
    every run of the fused loops is the window's last axis, 2 elements long."""
    x = sg.tensor("x", "float32", POOL)
    y = _pool(x)
    n, c, h, w = POOL
    x6 = x.reshape((n, c, h // 2, 2, w // 2, 2))
    hit = sg.eq(x6, sg.expand_dims(y, (3, 5)))
    count = sg.sum(sg.where(hit, np.float32(1), np.float32(0)), axis=(3, 5), keepdims=True)
    dx = sg.where(hit, sg.ones_like(sg.expand_dims(y, (3, 5))) / count, np.float32(0))
    return ([x], dx.reshape(POOL), (rng().standard_normal(POOL).astype("float32"),),
            _pool_grad_numpy)


def bias_relu():
    x, b = sg.matrix("x", "float32"), sg.vector("b", "float32")
    r = rng()
    args = r.standard_normal((256, 1024)).astype("float32"), r.standard_normal(1024).astype(
        "float32")
    return [x, b], sg.relu(x + b), args, lambda x, b: np.maximum(x + b, np.float32(0))


def relu_backward():
    x, g = sg.matrix("x", "float32"), sg.matrix("g", "float32")
    r = rng()
    args = tuple(r.standard_normal((256, 1024)).astype("float32") for _ in range(2))
    return ([x, g], sg.grad((sg.relu(x) * g).sum(), x), args,
            lambda x, g: np.where(x > 0, g, np.float32(0)))


def row_sum_f32():
    x = sg.matrix("x", "float32")
    return ([x], x.sum(axis=1), (rng().standard_normal((1000, 1000)).astype("float32"),),
            lambda x: x.sum(axis=1))


def softmax_f32():
    x = sg.matrix("x", "float32")

    def numpy_softmax(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return ([x], sg.nn.softmax(x), (rng().standard_normal((256, 1000)).astype("float32"),),
            numpy_softmax)


def select_by_bool_f64():
    """A bool array selecting between float64s: gcc 12 keeps this loop scalar at its default
    256-bit vector width (a uint8_t mask of 32 lanes over doubles of 4) unless the loop asks
    for 8 lanes (``simdlen(8)``, codegen/render_c.py), as it now does."""
    m, a, b = sg.matrix("m", "bool"), sg.matrix("a"), sg.matrix("b")
    r = rng()
    args = r.random((100, 1000)) < 0.5, r.standard_normal((100, 1000)), r.standard_normal(
        (100, 1000))
    return [m, a, b], sg.where(m, a, b), args, np.where


def max_minus_min_f64():
    """A select whose result meets a constant's: gcc 12 moved the subtraction into one
    arm, which AVX2 computes on every lane only under -fno-trapping-math."""
    x, y = sg.matrix("x"), sg.matrix("y")
    r = rng()
    args = r.standard_normal((256, 1024)), r.standard_normal((256, 1024))
    return ([x, y], sg.maximum(x, y) - sg.minimum(y, 0.0), args,
            lambda x, y: np.maximum(x, y) - np.minimum(y, 0.0))


def int64_to_f32():
    """An int64 converted to float32: no AVX2 instruction (sg_math.h's sg_i64_to_f32)."""
    k, x = sg.matrix("k", "int64"), sg.matrix("x", "float32")
    r = rng()
    args = r.integers(-1000, 1000, (256, 1024)), r.standard_normal((256, 1024)).astype("float32")
    return [k, x], sg.cast(k, "float32") + x, args, lambda k, x: k.astype(np.float32) + x


def _draws(make):
    """A workload adding a draw to x (256x1024 float32); the NumPy column draws its own
    numbers, so values are not compared."""
    stream = sg.random.RandomStream(0)
    x = sg.matrix("x", "float32")
    args = (rng().standard_normal((256, 1024)).astype("float32"),)
    gen = np.random.default_rng(0)
    sample, numpy_version = make(stream, x, gen)
    return [x], sample, args, numpy_version


def dropout_f32():
    return _draws(lambda s, x, g: (
        sg.nn.dropout(x, 0.5, s),
        lambda x: np.where(g.random(x.shape, np.float32) < 0.5, x * np.float32(2), 0)))


def uniform_f64_plus():
    return _draws(lambda s, x, g: (x + s.uniform(size=x.shape, dtype="float64"),
                                   lambda x: x + g.random(x.shape)))


def normal_f64_plus():
    return _draws(lambda s, x, g: (x + s.normal(size=x.shape, dtype="float64"),
                                   lambda x: x + g.standard_normal(x.shape)))


def normal_f32_plus():
    return _draws(lambda s, x, g: (x + s.normal(size=x.shape, dtype="float32"),
                                   lambda x: x + g.standard_normal(x.shape, np.float32)))


def integers_to_f32():
    return _draws(lambda s, x, g: (
        sg.cast(s.integers(0, 7, size=x.shape), "float32") + x,
        lambda x: g.integers(0, 7, x.shape).astype(np.float32) + x))


#: workloads whose NumPy version draws its own random numbers: values not compared
RANDOM = ("dropout_f32", "uniform_f64_plus", "normal_f64_plus", "normal_f32_plus",
          "integers_to_f32")

WORKLOADS = {f.__name__: f for f in (
    cast_of_comparison, where_of_comparison, maxpool_forward, maxpool_backward,
    maxpool_backward_input_order, bias_relu, relu_backward, row_sum_f32, softmax_f32,
    select_by_bool_f64, max_minus_min_f64, int64_to_f32, dropout_f32, uniform_f64_plus,
    normal_f64_plus, normal_f32_plus, integers_to_f32)}


def _best_cpu_time(fn, *args, repeat=7, min_time=0.2):
    """:func:`common.best_time` in CPU time of this thread (time.thread_time)."""
    fn(*args)
    n = 1
    while True:
        t0 = time.thread_time()
        for _ in range(n):
            fn(*args)
        t = time.thread_time() - t0
        if t >= min_time / repeat or n >= 1 << 20:
            break
        n *= 2
    best = t / n
    for _ in range(repeat - 1):
        t0 = time.thread_time()
        for _ in range(n):
            fn(*args)
        best = min(best, (time.thread_time() - t0) / n)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated workload names")
    parser.add_argument("--no-time", action="store_true", help="the loop report only")
    parser.add_argument("--cpu", action="store_true",
                        help="CPU time of the calling thread instead of the wall clock")
    parser.add_argument("--march", help="comma-separated gcc -march targets to report the "
                                        "loops for (default: this machine, -march=native)")
    opts = parser.parse_args()
    targets = opts.march.split(",") if opts.march else [None]
    names = opts.only.split(",") if opts.only else list(WORKLOADS)
    cc = gcc_argv()
    if cc is None:
        print("the kernel compiler is not gcc: no vectoriser report (times only)")
    loop_rows, time_rows = [], []
    for name in names:
        inputs, outputs, args, numpy_version = WORKLOADS[name]()
        f = sg.function(inputs, outputs)
        # a sanity check only: a float32 sum accumulates in float64 here, pairwise in NumPy
        if name not in RANDOM:
            np.testing.assert_allclose(f(*args), numpy_version(*args), rtol=1e-4, atol=1e-4)
        if cc is not None:
            reports = [vector_report(f.source, cc, march) for march in targets]
            if not reports[0]:
                loop_rows.append([name, "(no omp simd loop in f.source: a runtime routine)",
                                  "", *["-"] * len(targets), ""])
            for loops in zip(*reports):
                what = (loops[0]["what"] or "")[:48]
                missed = next((lp["why"] for lp in loops if not lp["vectorised"]), "")
                loop_rows.append([name, f"{loops[0]['step'] or '?'} {what}", loops[0]["first"],
                                  *["yes" if lp["vectorised"] else "NO" for lp in loops],
                                  missed[:60]])
        if not opts.no_time:
            f._kernel.kernel.set_num_threads(1)  # NumPy's loops run on one thread too
            timer = _best_cpu_time if opts.cpu else best_time
            t_sg = timer(f, *args)
            t_np = timer(numpy_version, *args)
            time_rows.append([name, f"{t_sg * 1e6:.1f}", f"{t_np * 1e6:.1f}",
                              f"{t_np / t_sg:.2f}x"])
    if loop_rows:
        marks = [f"vectorised ({march})" if march else "vectorised" for march in targets]
        table(loop_rows, ["workload", "step", "line", *marks, "gcc says"])
        print()
    if time_rows:
        print(f"one thread; best of 7 rounds, {'CPU time' if opts.cpu else 'wall clock'}")
        table(time_rows, ["workload", "symgrad (us)", "NumPy (us)", "speed-up"])


if __name__ == "__main__":
    main()
