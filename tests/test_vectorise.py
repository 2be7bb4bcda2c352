"""The unit-stride inner loops of fused loops vectorise (gcc's -fopt-info-vec notes).

A loop the compiler leaves scalar still gives the right values, so no other test sees it:
``cast(u < sigmoid(x), "float64")`` ran 4-9x slower than the same values through ``where``
because gcc 12 does not vectorise a comparison's uint8_t converted straight to a double
(issue #12, item 10). The kernel's source is compiled again with the release flags
(compiler.BASE_FLAGS) and ``-fopt-info-vec-optimized``; each ``#pragma omp simd`` loop is
found by its lines in the source, however the code generator lays loops out, and must have
gcc's "loop vectorized" note on one of them, for two targets whatever the machine running
the tests: AVX2 (``-march=haswell``: every AMD before Zen 4, Intel's client CPUs) and
AVX-512 (``-march=skylake-avx512``), where gcc vectorises differently (AVX-512 masks an
operation that AVX2 must compute on every lane). Besides the loops that once stayed scalar,
one function per float dtype gathers the common kinds of fused loops (broadcasts, the
math library, selects, conversions, each kind of accumulation) and every loop of it must
vectorise. bench/bench_vectorise.py holds the parser and prints the same report for more
workloads.
"""

import importlib.util
import platform
from pathlib import Path

import numpy as np
import pytest

import symgrad as sg
from test_cmath import float_to_int64_edges, int64_edges

_BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_vectorise.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_vectorise", _BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_bench()
CC = bench.gcc_argv()
needs_gcc = pytest.mark.skipif(
    CC is None or platform.machine().lower() not in ("x86_64", "amd64"),
    reason="the kernel compiler (sg.config.cc, SYMGRAD_CC, else `cc`) is not gcc for x86-64: "
           "this test reads gcc's -fopt-info-vec notes for two x86 targets")
#: gcc's -march for each instruction set the loops must vectorise for, by test id
TARGETS = {"avx2": "haswell", "avx512": "skylake-avx512"}
each_target = pytest.mark.parametrize("march", list(TARGETS.values()), ids=list(TARGETS))


def test_simd_loops_are_found_by_their_lines():
    source = "\n".join([
        "static int row1(int64_t n)",                   # 1
        "{",                                            # 2
        "    if (unit) {",                              # 3
        "        #pragma omp simd reduction(|:bad)",    # 4
        "        for (int64_t j = 0; j < n; j++) {",    # 5
        '            if (x) { f("}"); }',               # 6: braces in a string do not count
        "            o[j] = x;",                        # 7
        "        }",                                    # 8
        "    }",                                        # 9
        "    #pragma omp simd",                         # 10
        "    for (int64_t j = 0; j < n; j++)",          # 11
        "        o[j] = 0;",                            # 12
        "}",
    ])
    loops = bench.simd_loops(source)
    assert [(lp["pragma"], lp["first"], lp["last"]) for lp in loops] == [(4, 5, 8), (10, 11, 12)]
    assert loops[0]["clauses"] == "reduction(|:bad)"


def _loops_of(f, step_has, march):
    report = bench.vector_report(f.source, CC, march)
    mine = [lp for lp in report if lp["what"] and step_has in lp["what"]]
    assert mine, f"no omp simd loop of a step with {step_has!r} in the source:\n{f.source}"
    return mine


@needs_gcc
@each_target
@pytest.mark.parametrize("src,dst", [("float64", "float64"), ("float32", "float32"),
                                     ("float64", "int64")])
def test_cast_of_a_comparison_vectorises(src, dst, march):
    x, u = sg.matrix("x", src), sg.matrix("u", src)
    f = sg.function([x, u], sg.cast(u < sg.sigmoid(x), dst))
    r = np.random.default_rng(0)
    xv, uv = r.standard_normal((3, 5)).astype(src), r.random((3, 5)).astype(src)
    np.testing.assert_array_equal(f(xv, uv), (uv < 1 / (1 + np.exp(-xv))).astype(dst))
    for loop in _loops_of(f, "cast", march):
        assert loop["vectorised"], (f"the loop at lines {loop['first']}-{loop['last']} of "
                                    f"{loop['step']} did not vectorise: {loop['why']}")


@needs_gcc
@each_target
def test_max_pooling_gradient_loops_vectorise(march):
    """Every loop of the gradient, the sum counting the ties (a bool widened into double
    accumulators) and the select dividing by that count included."""
    x = sg.tensor("x", "float32", (2, 3, 8, 8))
    y = x.reshape((2, 3, 4, 2, 4, 2)).max(axis=(3, 5))
    f = sg.function([x], sg.grad(y.sum(), x))
    report = bench.vector_report(f.source, CC, march)
    assert report
    missed = [f"{lp['step']} ({lp['what']}) lines {lp['first']}-{lp['last']}: {lp['why']}"
              for lp in report if not lp["vectorised"]]
    assert not missed, "\n".join(missed)


@needs_gcc
@each_target
@pytest.mark.parametrize("dtype", ["float64", "int64", "float32"])
def test_a_loaded_bool_selecting_wide_values_vectorises(dtype, march):
    """``where(mask, a, b)`` with a bool array as mask: gcc 12 kept this loop scalar for
    8-byte values (a uint8_t of 32 lanes beside doubles of 4) until the loop asked for 8
    lanes; 7x slower than vectorised (bench_vectorise.py's select_by_bool_f64)."""
    m, a, b = sg.matrix("m", "bool"), sg.matrix("a", dtype), sg.matrix("b", dtype)
    f = sg.function([m, a, b], sg.where(m, a, b))
    r = np.random.default_rng(1)
    mv = r.random((3, 7)) < 0.5
    av, bv = (r.standard_normal((3, 7)) * 100).astype(dtype), r.standard_normal((3, 7)).astype(
        dtype)
    np.testing.assert_array_equal(f(mv, av, bv), np.where(mv, av, bv))
    for loop in _loops_of(f, "where", march):
        assert loop["vectorised"], (f"the loop at lines {loop['first']}-{loop['last']} of "
                                    f"{loop['step']} did not vectorise: {loop['why']}")


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
@pytest.mark.parametrize("op", ["max", "min"])
def test_small_window_extremes_fold_window_positions_like_numpy(dtype, op):
    """max/min over the window axes of pooling by reshape fold each window position into
    every result (sg_ops.c): NaN wins, a zero extreme has the sign of the window's last zero
    in C order, on contiguous and strided (every other column) inputs."""
    r = np.random.default_rng(4)
    v = r.integers(-3, 3, (2, 3, 8, 34)).astype(dtype)
    if dtype != "int64":
        v[0, 0, 0, :4] = [np.nan, 1, 2, 3]
        v[0, 1, :2, :2] = [[0.0, -0.0], [-0.0, 0.0]]
        v[1, 2, :2, 2:4] = [[-0.0, -0.0], [0.0, -0.0]]
    x = sg.tensor("x", dtype, (2, 3, 8, 32))
    red = getattr(x.reshape((2, 3, 4, 2, 16, 2)), op)(axis=(3, 5))
    f = sg.function([x], red)
    for xv in (np.ascontiguousarray(v[..., :32]), v[..., 1:33], v[..., ::2][..., :16].repeat(2, -1)):
        want = getattr(np, op)(xv.reshape(2, 3, 4, 2, 16, 2), axis=(3, 5))
        got = f(xv)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))



def _representative_loops(d):
    """Fused loops of the kinds models run, in dtype ``d``, as one function's outputs."""
    x, y, b = sg.matrix("x", d), sg.matrix("y", d), sg.vector("b", d)
    i32, i64 = sg.matrix("i", "int32"), sg.matrix("k", "int64")
    return [x, y, b, i32, i64], [
        sg.relu(x + b),                                  # a broadcast operand
        sg.tanh(x) * y + sg.exp(-x),                     # the math library's functions
        sg.log1p(sg.sigmoid(x)) - sg.softplus(y),
        sg.grad((sg.relu(x) * y).sum(), x),              # a select
        sg.grad(((x + b) ** 2).sum(), b),                # sum_to over the leading axis
        (x * y).sum(axis=1),                             # a horizontal sum
        (x - y).sum(axis=0),                             # a sum into a row of results
        ((x - 1.0) ** 2).mean(axis=1),
        sg.cast(x > y, d) * y,                           # a comparison converted
        sg.clip(abs(y), 0.1, 2.0),
        sg.maximum(x, y) - sg.minimum(y, 0.0),
        sg.cast(i32, d) * x,                             # an int32 converted
        sg.cast(i64, d) + y,                             # an int64 (no AVX2 instruction)
        sg.cast(x * 1e3, "int64"),                       # to an int64 (none either)
        sg.where(x > 0, y / x, 0.0),                     # a division one arm uses
    ]


@needs_gcc
@each_target
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_representative_fused_loops_vectorise(dtype, march):
    """Every unit-stride loop (``#pragma omp simd``) of common fused loops -- elementwise
    with broadcasts, the math library's functions, selects, conversions, and each kind of
    accumulation -- gets gcc's "loop vectorized" note at the release flags. A loop left
    scalar gives the same values, so only this sees it (issue #12, item 10)."""
    ins, outs = _representative_loops(dtype)
    f = sg.function(ins, outs)
    report = bench.vector_report(f.source, CC, march)
    assert len(report) >= len(outs), f"fewer omp simd loops than outputs:\n{f.source}"
    missed = [f"{lp['step']} ({lp['what']}) lines {lp['first']}-{lp['last']}: {lp['why']}"
              for lp in report if not lp["vectorised"]]
    assert not missed, "\n".join(missed)


@pytest.mark.parametrize("dst", ["float64", "float32"])
def test_an_int64_converted_to_a_float_rounds_as_numpy(dst):
    """``cast(int64, float)`` in a fused loop: sg_math.h's conversion (from 32-bit halves
    below AVX-512DQ, so that the loop vectorises on AVX2) gives NumPy's bits, ties to even,
    on the unit-stride loop and the strided one."""
    k, y = sg.vector("k", "int64"), sg.vector("y", dst)
    f = sg.function([k, y], [sg.cast(k, dst), sg.cast(k, dst) + y])
    v = int64_edges()
    for kv in (v, v[::3]):
        zero = np.zeros(len(kv), dst)
        want = kv.astype(dst)
        got, plus = f(kv, zero)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(plus, want)


@needs_gcc
@each_target
def test_an_int64_converted_to_a_float_vectorises(march):
    k, y = sg.matrix("k", "int64"), sg.matrix("y", "float32")
    f = sg.function([k, y], [sg.cast(k, "float32") * y, sg.cast(k, "float64")])
    for loop in _loops_of(f, "cast", march):
        assert loop["vectorised"], (f"the loop at lines {loop['first']}-{loop['last']} of "
                                    f"{loop['step']} did not vectorise: {loop['why']}")


@pytest.mark.parametrize("src", ["float64", "float32"])
def test_a_float_converted_to_an_int64_truncates_as_numpy(src):
    """``cast(float, int64)`` in a fused loop (sg_math.h's sg_f64_to_i64 below AVX-512DQ):
    truncated toward zero as NumPy's astype; NaN, infinities and values out of int64's range
    give its minimum, as x86 does."""
    x = sg.vector("x", src)
    f = sg.function([x], sg.cast(x, "int64"))
    v = float_to_int64_edges().astype(src)
    v = v[np.abs(v) < 2.0 ** 63]
    odd = np.array([np.nan, np.inf, -np.inf, 2.0 ** 63, -2.0 ** 64, 1e300 if src == "float64"
                    else 3e38], src)
    for xv in (v, v[::3]):
        np.testing.assert_array_equal(f(xv), xv.astype(np.int64))
    np.testing.assert_array_equal(f(odd), np.full(len(odd), np.iinfo(np.int64).min))
