"""sg_math.h against glibc and NumPy: ns per element, and the worst error in ulp over long sweeps.

    python bench/bench_math.py             # sweeps of 2M points; timings
    python bench/bench_math.py --points 30000000 --no-time   # the long sweeps
    python bench/bench_math.py --exhaustive --no-time        # every float32 (~10 min)

Each function runs in a loop compiled like a kernel's (symgrad's compiler
flags, ``#pragma omp simd``), beside the same loop calling glibc. Errors are
in units in the last place of the exact result's binade: float32 results
against double ones (NumPy's, or glibc's for --exhaustive), float64 results
against long double (x87, 64-bit significand) ones. ``SYMGRAD_CFLAGS=-mno-fma``
measures the code a CPU without FMA runs.
"""

import argparse
import ctypes
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import best_time, table  # noqa: E402

from symgrad.compiler import compile_library  # noqa: E402

N_TIME = 10_000_000


def _stable_sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


# name: (exact reference on float64 or long double arrays, the glibc C expression, NumPy ufunc)
FUNCS = {
    "exp": (np.exp, "exp{F}(v)", np.exp),
    "expm1": (np.expm1, "expm1{F}(v)", np.expm1),
    "log": (np.log, "log{F}(v)", np.log),
    "log1p": (np.log1p, "log1p{F}(v)", np.log1p),
    "tanh": (np.tanh, "tanh{F}(v)", np.tanh),
    "sigmoid": (_stable_sigmoid, "(v >= 0 ? 1 / (1 + exp{F}(-v)) : exp{F}(v) / (1 + exp{F}(v)))",
                None),
    "softplus": (_softplus, "(fmax{F}(v, 0) + log1p{F}(exp{F}(-fabs{F}(v))))", None),
}

# where each function changes fastest: dense uniform samples there, on top of the bit sweep
DOMAINS = {
    "exp": [(-750, 710), (-1, 1), (-104, -87), (87, 89)],
    "expm1": [(-40, 710), (-1, 1), (-1e-3, 1e-3)],
    "log": [(0, 4), (0.5, 2), (0.999, 1.001)],
    "log1p": [(-1, 4), (-1e-3, 1e-3), (-1, -0.99)],
    "tanh": [(-20, 20), (-1, 1), (-1e-3, 1e-3)],
    "sigmoid": [(-750, 40), (-20, 20), (-110, -85)],
    "softplus": [(-750, 40), (-20, 20), (-110, -85)],
}

_LOOP = """
void loop_sg_{name}{F}(const {T} *restrict x, {T} *restrict y, int64_t n)
{{
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = sg_{name}{F}(x[i]);
}}
void libm_{name}{F}(const {T} *restrict x, {T} *restrict y, int64_t n)
{{
    for (int64_t i = 0; i < n; i++) {{ {T} v = x[i]; y[i] = {expr}; }}
}}
"""


# every float32: blocks of 4096 through the vectorised loops, against glibc's double functions
_EXHAUSTIVE = """
static double ref_sigmoid(double v) { return v >= 0 ? 1 / (1 + exp(-v)) : exp(v) / (1 + exp(v)); }
static double ref_softplus(double v) { return fmax(v, 0) + log1p(exp(-fabs(v))); }
static double ulp_err(float y, double ref, int *bad)
{
    if (ref != ref) { *bad += y == y; return 0; }
    if (fabs(ref) > FLT_MAX) { *bad += y != (ref > 0 ? INFINITY : -INFINITY); return 0; }
    int e = ref == 0 ? -126 : ilogb(ref);
    return fabs((double)y - ref) / ldexp(1.0, (e < -126 ? -126 : e) - 23);
}
double all_floats(int which, float *at, int *bad)
{
    static float x[4096], y[4096];
    double worst = 0;
    *bad = 0;
    for (uint64_t base = 0; base < (1ULL << 32); base += 4096) {
        for (int j = 0; j < 4096; j++) { uint32_t u = (uint32_t)(base + j); memcpy(&x[j], &u, 4); }
        switch (which) {
%(calls)s
        }
        for (int j = 0; j < 4096; j++) {
            double v = x[j], ref;
            switch (which) {
%(refs)s
            }
            double err = ulp_err(y[j], ref, bad);
            if (err > worst) { worst = err; *at = x[j]; }
        }
    }
    return worst;
}
"""


def build():
    src = ['#include "sg_kernel.h"', "#include <math.h>"]
    for name, (_, expr, _) in FUNCS.items():
        for f, t in (("f", "float"), ("", "double")):
            src.append(_LOOP.format(name=name, F=f, T=t, expr=expr.format(F=f)))
    refs = {"sigmoid": "ref_sigmoid(v)", "softplus": "ref_softplus(v)"}
    src.append("#include <float.h>")
    src.append(_EXHAUSTIVE % {
        "calls": "\n".join(f"        case {i}: loop_sg_{n}f(x, y, 4096); break;"
                           for i, n in enumerate(FUNCS)),
        "refs": "\n".join(f"            case {i}: ref = {refs.get(n, n + '(v)')}; break;"
                          for i, n in enumerate(FUNCS))})
    lib = ctypes.CDLL(compile_library("\n".join(src), "bench_math"))
    lib.all_floats.restype = ctypes.c_double
    return lib


def call(lib, sym, x):
    y = np.empty_like(x)
    getattr(lib, sym)(x.ctypes.data_as(ctypes.c_void_p), y.ctypes.data_as(ctypes.c_void_p),
                      ctypes.c_int64(x.size))
    return y


def sweep(name, dtype, points, seed=0):
    """Evenly spaced bit patterns over the whole range (both signs) plus dense samples."""
    rng = np.random.default_rng(seed)
    utype = np.uint32 if dtype == np.float32 else np.uint64
    top = np.iinfo(utype).max
    bits = np.arange(points // 2, dtype=utype) * utype(top // (points // 2))
    parts = [bits.view(dtype)]
    for lo, hi in DOMAINS[name]:
        parts.append(rng.uniform(lo, hi, points // (2 * len(DOMAINS[name]))).astype(dtype))
    sub = np.arange(1, 1 + points // 64, dtype=utype).view(dtype)  # subnormals, both signs
    parts += [sub, -sub]
    x = np.concatenate(parts)
    return x[np.isfinite(x)]


def ulp_error(y, x, name, dtype):
    """The worst error (ulp), where, and how many results are wrong beyond rounding: a
    finite value for an overflowing result, NaN for a number or a number for NaN."""
    wide = np.float64 if dtype == np.float32 else np.longdouble
    info = np.finfo(dtype)
    with np.errstate(all="ignore"):
        ref = FUNCS[name][0](x.astype(wide))
        finite = np.abs(ref) <= wide(info.max)
        e = np.frexp(np.where(finite, ref, 1))[1].astype(np.int64) - 1
        ulp = np.ldexp(wide(1), np.maximum(e, info.minexp) - info.nmant)
        err = np.where(finite, np.abs(y.astype(wide) - ref) / ulp, 0)
        over = ~finite & ~np.isnan(ref)
        wrong = (over & (y != np.sign(ref) * np.inf)) | (np.isnan(ref) != np.isnan(y))
    worst = int(np.argmax(err))
    return float(err[worst]), x[worst], int(wrong.sum())


def accuracy(lib, points, chunk=1 << 21):
    rows = []
    for name in FUNCS:
        row = [name]
        for f, dtype in (("f", np.float32), ("", np.float64)):
            x = sweep(name, dtype, points)
            worst, at, bad = 0.0, None, 0
            for i in range(0, x.size, chunk):
                part = x[i:i + chunk]
                w, a, b = ulp_error(call(lib, f"loop_sg_{name}{f}", part), part, name, dtype)
                worst, at = (w, a) if at is None or w > worst else (worst, at)
                bad += b
            row += [f"{worst:.3f}", f"{at:.9g}", str(bad)]
        rows.append(row)
    print(f"max error in ulp over {points} points per function and type")
    table(rows, ["function", "f32 max ulp", "at", "f32 bad", "f64 max ulp", "at", "f64 bad"])


def exhaustive(lib, only):
    rows = []
    for i, name in enumerate(FUNCS):
        if only and name not in only:
            continue
        at, bad = ctypes.c_float(), ctypes.c_int()
        worst = lib.all_floats(i, ctypes.byref(at), ctypes.byref(bad))
        rows.append([name, f"{worst:.3f}", f"{at.value:.9g}", str(bad.value)])
        print(*rows[-1], flush=True)
    print("every float32 input")
    table(rows, ["function", "max ulp", "at", "bad"])


def timing(lib, n):
    """ns per element on n elements (10M: from memory; 4096: from L1, the arithmetic alone)."""
    rng = np.random.default_rng(1)
    rows = []
    for name, (_, _, ufunc) in FUNCS.items():
        row = [name]
        for f, dtype in (("f", np.float32), ("", np.float64)):
            lo, hi = (0.01, 10) if name == "log" else (-0.99, 10) if name == "log1p" else (-5, 5)
            x = rng.uniform(lo, hi, n).astype(dtype)
            y = np.empty_like(x)
            args = (x.ctypes.data_as(ctypes.c_void_p), y.ctypes.data_as(ctypes.c_void_p),
                    ctypes.c_int64(x.size))
            t_sg = best_time(getattr(lib, f"loop_sg_{name}{f}"), *args, repeat=3)
            t_libm = best_time(getattr(lib, f"libm_{name}{f}"), *args, repeat=3)
            if ufunc is not None:
                t_np = best_time(ufunc, x, y, repeat=3)  # into y: no allocation
            else:
                t_np = best_time(FUNCS[name][0], x, repeat=3)
            row += [f"{t * 1e9 / n:.2f}" for t in (t_sg, t_libm, t_np)]
        rows.append(row)
    print(f"ns/element, {n} elements")
    table(rows, ["function", "sg f32", "glibc f32", "numpy f32", "sg f64", "glibc f64",
                 "numpy f64"])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=2_000_000)
    p.add_argument("--no-time", action="store_true")
    p.add_argument("--exhaustive", action="store_true", help="every float32 (minutes)")
    p.add_argument("--only", default="", help="comma-separated functions (exhaustive)")
    args = p.parse_args()
    lib = build()
    if args.exhaustive:
        exhaustive(lib, [n for n in args.only.split(",") if n])
    accuracy(lib, args.points)
    if not args.no_time:
        for n in (N_TIME, 4096):
            print()
            timing(lib, n)


if __name__ == "__main__":
    main()
