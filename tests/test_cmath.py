"""sg_math.h (exp, expm1, log, log1p, tanh, sigmoid, softplus) through compiled graphs.

Errors are in ulp of the exact result's binade: float32 against NumPy's
float64 functions, float64 against long double ones. Special values must
match NumPy's bit for bit (NaN for NaN). The sweeps here are bounded for CI;
``python bench/bench_math.py --points 50000000 --no-time`` runs long ones,
and ``SYMGRAD_CMATH_POINTS=...`` enlarges these.
"""

import functools
import os
import platform
import shutil
import subprocess

import numpy as np
import pytest

import symgrad as sg
from symgrad import compiler

POINTS = int(os.environ.get("SYMGRAD_CMATH_POINTS", "1000000"))


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


# name: (graph, exact reference on float64 / long double, NumPy in the input's dtype)
FUNCS = {
    "exp": (sg.exp, np.exp, np.exp),
    "expm1": (sg.expm1, np.expm1, np.expm1),
    "log": (sg.log, np.log, np.log),
    "log1p": (sg.log1p, np.log1p, np.log1p),
    "tanh": (sg.tanh, np.tanh, np.tanh),
    "sigmoid": (sg.sigmoid, _sigmoid, _sigmoid),
    "softplus": (sg.softplus, _softplus, lambda x: np.logaddexp(0, x)),
}

# a little above the maxima sg_math.h documents (with FMA; without, tanhf reaches 1.08)
MAX_ULP = {
    "float32": {**dict.fromkeys(FUNCS, 0.501), "exp": 1.25, "log": 1.25, "tanh": 1.25,
                "sigmoid": 1.0},
    "float64": {"exp": 1.5, "expm1": 1.5, "log": 1.5, "log1p": 2.0, "tanh": 2.0,
                "sigmoid": 2.5, "softplus": 2.5},
}

# where the functions change fastest: dense uniform samples, on top of the bit sweep
DOMAINS = {
    "float32": [(-104, 89), (-110, -85), (-1, 1), (-1e-3, 1e-3), (0, 4), (-1, -0.99),
                (0.999, 1.001), (-20, 20)],
    "float64": [(-746, 710), (-746, -700), (-1, 1), (-1e-3, 1e-3), (0, 4), (-1, -0.99),
                (0.999, 1.001), (-40, 40)],
}


def sweep(dtype, points):
    """Evenly spaced bit patterns over the whole line, dense samples, subnormals."""
    rng = np.random.default_rng(0)
    utype = np.uint32 if dtype == "float32" else np.uint64
    step = np.iinfo(utype).max // (points // 2)
    parts = [(np.arange(points // 2, dtype=utype) * utype(step)).view(dtype)]
    for lo, hi in DOMAINS[dtype]:
        parts.append(rng.uniform(lo, hi, points // (2 * len(DOMAINS[dtype]))).astype(dtype))
    sub = np.arange(1, 1 + points // 64, dtype=utype).view(dtype)
    x = np.concatenate(parts + [sub, -sub])
    return x[np.isfinite(x)]


@functools.cache
def compiled(dtype):
    x = sg.vector("x", dtype=dtype)
    return sg.function([x], [graph(x) for graph, _, _ in FUNCS.values()], mode="c")


@functools.cache
def results(dtype):
    x = sweep(dtype, POINTS)
    return x, dict(zip(FUNCS, compiled(dtype)(x)))


def ulp_error(y, x, name, dtype):
    """Per-element error of y in ulp where the exact result is finite in ``dtype``."""
    wide = np.float64 if dtype == "float32" else np.longdouble
    with np.errstate(all="ignore"):
        ref = FUNCS[name][1](x.astype(wide))
    info = np.finfo(dtype)
    finite = np.abs(ref) <= wide(info.max)
    e = np.frexp(np.where(finite, ref, 1))[1].astype(np.int64) - 1
    ulp = np.ldexp(wide(1), np.maximum(e, info.minexp) - info.nmant)
    with np.errstate(invalid="ignore"):
        err = np.where(finite, np.abs(y.astype(wide) - ref) / ulp, 0)
        beyond = ~finite & ~np.isnan(ref)           # overflows: must be inf of the right sign
        wrong = (beyond & (y != np.sign(ref) * np.inf)) | (np.isnan(ref) != np.isnan(y))
    return err, wrong


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", FUNCS)
def test_max_ulp_error_over_a_sweep(name, dtype):
    x, ys = results(dtype)
    y = ys[name]
    assert y.dtype == dtype
    err, wrong = ulp_error(y, x, name, dtype)
    worst = int(np.argmax(err))
    assert err[worst] <= MAX_ULP[dtype][name], (
        f"{name}({x[worst]!r}) = {y[worst]!r}: {err[worst]:.3f} ulp")
    assert not wrong.any(), f"{name} wrong at {x[wrong][:5]}: {y[wrong][:5]}"


def _specials(dtype):
    info = np.finfo(dtype)
    tiny = info.smallest_subnormal
    return np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, -2.0, tiny, -tiny,
                     info.tiny, -info.tiny, info.max, -info.max, 1e-30, -1e-30,
                     50.0, -50.0, 1000.0, -1000.0, 800.0, -800.0, 120.0, -120.0], dtype=dtype)


def _same(got, want):
    """Equal, NaN where NaN, and zeros of the same sign."""
    return ((got == want) & (np.signbit(got) == np.signbit(want))) | (np.isnan(got)
                                                                      & np.isnan(want))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_special_values_match_numpy(dtype):
    x = _specials(dtype)
    got = dict(zip(FUNCS, compiled(dtype)(x)))
    for name, (_, _, numpy_fn) in FUNCS.items():
        with np.errstate(all="ignore"):
            want = numpy_fn(x).astype(dtype)
        # only where NumPy's value is exact: the rest is the sweep's business
        exact = ~np.isfinite(want) | (want == 0) | (np.abs(want) == 1) | (want == x)
        ok = _same(got[name], want) | ~exact
        assert ok.all(), f"{name}({x[~ok]}) = {got[name][~ok]}, NumPy gives {want[~ok]}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_limits_and_signed_zeros(dtype):
    inf, nan = np.inf, np.nan
    tiny = np.finfo(dtype).smallest_subnormal
    cases = {
        "exp": [(-0.0, 1), (inf, inf), (-inf, 0), (1000, inf), (-1000, 0), (tiny, 1)],
        "expm1": [(-0.0, -0.0), (0.0, 0.0), (-inf, -1), (inf, inf), (-1000, -1), (-tiny, -tiny)],
        "log": [(0.0, -inf), (-0.0, -inf), (-1, nan), (-inf, nan), (inf, inf), (1, 0)],
        "log1p": [(-0.0, -0.0), (-1, -inf), (-2, nan), (inf, inf), (tiny, tiny)],
        "tanh": [(-0.0, -0.0), (inf, 1), (-inf, -1), (50, 1), (-tiny, -tiny)],
        "sigmoid": [(inf, 1), (-inf, 0), (-0.0, 0.5), (1000, 1)],
        "softplus": [(inf, inf), (-inf, 0), (-1000, 0), (1000, 1000)],
    }
    for name, pairs in cases.items():
        x = np.array([p[0] for p in pairs], dtype=dtype)
        want = np.array([p[1] for p in pairs], dtype=dtype)
        x = np.concatenate([x, [nan]]).astype(dtype)
        want = np.concatenate([want, [nan]]).astype(dtype)
        got = compiled(dtype)(x)[list(FUNCS).index(name)]
        assert _same(got, want).all(), f"{name}({x}) = {got}, expected {want}"


def test_gradual_underflow_to_subnormals():
    for dtype, lo, hi in (("float32", -103.9, -87.4), ("float64", -745.0, -708.5)):
        x = np.linspace(lo, hi, 10_001).astype(dtype)
        y = compiled(dtype)(x)[0]
        assert (y > 0).all() and (y < np.finfo(dtype).tiny).any()
        err, _ = ulp_error(y, x, "exp", dtype)
        assert err.max() <= 1.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernels_call_the_vectorisable_versions(dtype):
    f = "f" if dtype == "float32" else ""
    for name in FUNCS:
        assert f"sg_{name}{f}(" in compiled(dtype).source, f"no call of sg_{name}{f}"


_LOOPS = "\n".join(
    f"void loop_{name}{f}(const {t} *restrict x, {t} *restrict y, long n)\n"
    f"{{\n#pragma omp simd\n    for (long i = 0; i < n; i++) y[i] = sg_{name}{f}(x[i]);\n}}"
    for name in FUNCS for f, t in (("f", "float"), ("", "double")))
# the conversions of an int64 and to one (AVX2 has no vector instruction for them)
_CONVERSIONS = "\n".join(
    f"void loop_{name}(const {a} *restrict x, {b} *restrict y, long n)\n"
    f"{{\n#pragma omp simd\n    for (long i = 0; i < n; i++) y[i] = sg_{name}(x[i]);\n}}"
    for name, a, b in [("i64_to_f64", "int64_t", "double"), ("i64_to_f32", "int64_t", "float"),
                       ("u64_to_f64", "uint64_t", "double"), ("f64_to_i64", "double", "int64_t")])


@pytest.mark.skipif(platform.machine() != "x86_64" or shutil.which("gcc") is None,
                    reason="checks gcc's vectoriser on x86-64")
@pytest.mark.parametrize("march", ["native", "x86-64-v3", "skylake-avx512"])
def test_every_function_vectorises(tmp_path, march):
    """Every sg_ function in a `#pragma omp simd` loop is vectorised by gcc -O2 (AVX2, AVX-512),
    the conversions of an int64 included."""
    text = '#include "sg_math.h"\n' + _LOOPS + "\n" + _CONVERSIONS + "\n"
    src = tmp_path / "loops.c"
    src.write_text(text)
    flags = [f for f in compiler.BASE_FLAGS if f not in ("-march=native", "-shared", "-fPIC")]
    proc = subprocess.run(["gcc", *flags, f"-march={march}", "-fopenmp-simd",
                           f"-I{compiler.INCLUDE_DIR}", "-fopt-info-vec-optimized", "-c",
                           str(src), "-o", str(tmp_path / "loops.o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    done = {int(ln.split(":")[1]) for ln in proc.stderr.splitlines() if "loop vectorized" in ln}
    loops = {i + 1 for i, ln in enumerate(text.splitlines()) if ln.lstrip().startswith("for (")}
    missed = [text.splitlines()[i - 2] for i in sorted(loops - done)]
    assert not missed, f"not vectorised: {missed}"


_C_CONVERT = r"""
#include <stdio.h>
#include "sg_math.h"
int main(void) {   /* lines "i <int64>" and "d <double in hex>" */
    char kind;
    long long v;
    double x;
    while (scanf(" %c", &kind) == 1) {
        if (kind == 'i' && scanf("%lld", &v) == 1)
            printf("%a %a %a\n", sg_i64_to_f64(v), (double)sg_i64_to_f32(v),
                   sg_u64_to_f64((uint64_t)v));
        else if (kind == 'd' && scanf("%la", &x) == 1)
            printf("%lld\n", (long long)sg_f64_to_i64(x));
    }
    return 0;
}
"""


def int64_edges(seed=0):
    """int64 values where a conversion to float can go wrong: the ends of the range, around
    2^53 and the powers of two, float32 and float64 ties (to even, or broken by a low bit),
    and random values of every length, signed."""
    r = np.random.default_rng(seed)
    p = np.arange(64, dtype=object)
    vals = [-2 ** 63, 2 ** 63 - 1, 0, 1, -1]
    vals += [2 ** int(k) + d for k in p[1:63] for d in (-2, -1, 0, 1, 2)]
    for bits in (24, 53):  # `bits` significant bits (odd or even), a half, maybe a low 1
        for s in range(1, 63 - bits):
            m = int(r.integers(2 ** (bits - 1), 2 ** bits))
            for last, low in ((0, 0), (0, 1), (1, 0), (1, 1)):
                vals.append(((m & ~1 | last) << (s + 1)) | (1 << s) | low)
    vals += [int(x) >> int(s) for x, s in zip(r.integers(0, 2 ** 63, 4000, dtype=np.int64),
                                               r.integers(0, 63, 4000))]
    vals = np.array([v for v in vals if -2 ** 63 <= v < 2 ** 63], dtype=object)
    return np.concatenate([vals, -vals[vals > -2 ** 63]]).astype(np.int64)


def float_to_int64_edges(seed=0):
    """doubles in int64's range (|x| < 2^63) where truncation can go wrong: zeros, halves,
    just below and above integers and powers of two, subnormals, random ones of every size."""
    r = np.random.default_rng(seed)
    e = np.ldexp(1.0, np.arange(-1074, 63))
    vals = [0.0, 0.5, 1 - 2.0 ** -53, 1.0, 1.5, 2.0 ** 52 + 0.5, 2.0 ** 53, 2.0 ** 63 - 1024,
            *e, *np.nextafter(e, 0), *np.nextafter(e[e < 2.0 ** 62], np.inf)]
    vals += list(np.ldexp(r.random(6000), r.integers(-60, 64, 6000)))
    v = np.array(vals)
    v = v[v < 2.0 ** 63]
    return np.concatenate([v, -v])


@pytest.mark.skipif(shutil.which(os.environ.get("SYMGRAD_CC", "cc")) is None, reason="no C compiler")
@pytest.mark.parametrize("arch", ["generic", "avx2"])
def test_int64_conversions_give_the_hardware_bits(tmp_path, arch):
    """sg_i64_to_f64/f32, sg_u64_to_f64 and sg_f64_to_i64 (built from 32-bit halves and the
    bits of a double where the target has no vector conversion of an int64: below
    AVX-512DQ) give NumPy's astype: rounded to nearest, ties to even, and truncated."""
    src, exe = tmp_path / "convert.c", tmp_path / "convert"
    src.write_text(_C_CONVERT)
    flags = {"generic": [], "avx2": ["-march=native", "-mno-avx512f"]}[arch]
    cc = os.environ.get("SYMGRAD_CC", "cc")
    subprocess.run([cc, "-O2", *flags, *[f for f in compiler.BASE_FLAGS if f.startswith("-f")],
                    f"-I{compiler.INCLUDE_DIR}", str(src), "-o", str(exe), "-lm"], check=True)
    v, x = int64_edges(), float_to_int64_edges()
    lines = [f"i {k}" for k in v.tolist()] + [f"d {float.hex(d)}" for d in x.tolist()]
    out = subprocess.run([str(exe)], input="\n".join(lines), capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert len(out) == len(v) + len(x)
    got = np.array([[float.fromhex(t) for t in line.split()] for line in out[:len(v)]])
    np.testing.assert_array_equal(got[:, 0], v.astype(np.float64))
    np.testing.assert_array_equal(got[:, 1].astype(np.float32), v.astype(np.float32))
    np.testing.assert_array_equal(got[:, 2], v.view(np.uint64).astype(np.float64))
    np.testing.assert_array_equal(np.array([int(t) for t in out[len(v):]]), x.astype(np.int64))


_C_SIGMOIDF = r"""
#include <stdio.h>
#include "sg_math.h"
int main(void) {   /* float32s in on stdin, sg_sigmoidf of each out on stdout */
    float x[4096], y[4096];
    size_t n;
    while ((n = fread(x, sizeof(float), 4096, stdin)) > 0) {
#pragma omp simd
        for (size_t i = 0; i < n; i++) y[i] = sg_sigmoidf(x[i]);
        fwrite(y, sizeof(float), n, stdout);
    }
    return 0;
}
"""


@pytest.mark.skipif(platform.machine() != "x86_64" or shutil.which("gcc") is None,
                    reason="builds for x86-64 targets with gcc")
def test_sigmoidf_without_fma_evaluates_in_double(tmp_path):
    """Without FMA the float evaluation's remainder would not be exact: sg_sigmoidf falls back
    to the double one there, correctly rounded (the kernels here use FMA: the sweep above)."""
    src, exe = tmp_path / "sigmoidf.c", tmp_path / "sigmoidf"
    src.write_text(_C_SIGMOIDF)
    flags = [f for f in compiler.BASE_FLAGS if f not in ("-march=native", "-shared", "-fPIC")]
    subprocess.run(["gcc", *flags, "-march=x86-64", f"-I{compiler.INCLUDE_DIR}", str(src),
                    "-o", str(exe), "-lm"], check=True, timeout=120)
    x = sweep("float32", 200_000)
    out = subprocess.run([str(exe)], input=x.tobytes(), capture_output=True, check=True).stdout
    y = np.frombuffer(out, dtype=np.float32)
    err, wrong = ulp_error(y, x, "sigmoid", "float32")
    assert err.max() <= 0.501 and not wrong.any(), f"{err.max():.3f} ulp at {x[np.argmax(err)]!r}"
