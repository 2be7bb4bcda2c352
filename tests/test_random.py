"""sg.random: the generator (known answers), bit-identity across modes and threads, fresh
numbers per call, seeds, errors, rewrites, gradients, dropout, checkpoints (SPEC section 11).

The distributions themselves are checked against scipy in tests/test_random_stats.py.
"""

import os
import platform
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import symgrad as sg
from symgrad.ops import random as R
from bad_inputs import child_env

HERE = os.path.dirname(os.path.abspath(__file__))
INCLUDE = os.path.join(os.path.dirname(HERE), "symgrad", "include")

# Random123's known-answer vectors for Philox4x32-10 (kat_vectors): counter, key, result.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff,) * 4, (0xffffffff,) * 2, (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
]


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view(f"u{a.dtype.itemsize}") if a.dtype.kind == "f" else a


def assert_same_bits(a, b, msg=""):
    assert a.dtype == b.dtype and a.shape == b.shape, msg
    np.testing.assert_array_equal(_bits(a), _bits(b), err_msg=msg)


# --------------------------------------------------------------------------- the generator

def test_philox_known_answers_numpy():
    for counter, key, want in KAT:
        got = R.philox4x32_10([np.array([c], dtype=np.uint64) for c in counter], key)
        assert tuple(int(w[0]) for w in got) == want


C_KAT = r"""
#include <stdio.h>
#include "sg_random.h"
int main(void) {
    unsigned c[3][4] = {{0, 0, 0, 0}, {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                        {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}};
    unsigned k[3][2] = {{0, 0}, {0xffffffffu, 0xffffffffu}, {0xa4093822u, 0x299f31d0u}};
    for (int i = 0; i < 3; i++) {
        sg_rand4 w = {c[i][0], c[i][1], c[i][2], c[i][3]};
        w = sg_philox4x32_10(w, k[i][0], k[i][1]);
        printf("%08x %08x %08x %08x\n", w.w0, w.w1, w.w2, w.w3);
    }
    /* log, cos(2 pi u) and sin(2 pi u) of the Box-Muller transform, bit for bit (hex) */
    double x;
    while (scanf("%lf", &x) == 1)
        printf("%a %a %a\n", sg_rand_log(x), sg_rand_cos2pi(x), sg_rand_sin2pi(x));
    return 0;
}
"""


def test_philox_known_answers_and_transcendentals_in_c(tmp_path):
    """The header's Philox gives the published answers, and its log and cos are the NumPy
    reference's bit for bit (compiled with the kernels' -ffp-contract=off)."""
    src, exe = tmp_path / "kat.c", tmp_path / "kat"
    src.write_text(C_KAT)
    cc = os.environ.get("SYMGRAD_CC", "cc")
    subprocess.run([cc, "-O2", "-march=native", "-ffp-contract=off", "-fno-math-errno",
                    f"-I{INCLUDE}", str(src), "-o", str(exe), "-lm"], check=True)
    u = np.random.default_rng(0).random(2000)
    u = np.concatenate([u, [1.0, 0.5, 0.25, 0.125, 0.75, 2.0 ** -53, 1 - 2.0 ** -53, 0.0]])
    out = subprocess.run([str(exe)], input="\n".join(repr(float(v)) for v in u),
                         capture_output=True, text=True, check=True).stdout.split("\n")
    for line, (_, _, want) in zip(out[:3], KAT):
        assert tuple(int(w, 16) for w in line.split()) == want
    rows = [line.split() for line in out[3:] if line]
    logs, coss, sins = (np.array([float.fromhex(r[k]) for r in rows]) for k in range(3))
    pos = u > 0
    assert_same_bits(logs[pos], R.rand_log(u[pos]), "log")
    assert_same_bits(coss, R.rand_cos2pi(u), "cos")
    assert_same_bits(sins, R.rand_sin2pi(u), "sin")


C_FILL = r"""
#include <stdio.h>
#include <string.h>
#include "sg_random.h"
/* Each run filler against the element functions: starts at every offset within a block,
 * lengths across SG_RAND_BLOCK and the vector paths' 2 x 8 blocks, strides 1, 0 and 3. */
int main(void) {
    enum { N = 3 * SG_RAND_BLOCK + 77 };
    static float f[N]; static double d[N]; static uint32_t b32[N]; static uint64_t b64[N];
    const uint64_t key = 0x0123456789abcdefULL, pos = 0xfffffffffffffff0ULL;
    long bad = 0, runs = 0;
    int64_t lens[] = {0, 1, 2, 3, 5, 31, 63, 64, 65, 255, 256, 257, N - 8};
    for (int64_t i0 = ((int64_t)1 << 32) - 3; i0 < ((int64_t)1 << 32) + 5; i0++)
        for (unsigned a = 0; a < sizeof lens / sizeof *lens; a++)
            for (int64_t s = 0; s < 4; s += 1 + (s == 1)) {  /* 0, 1, 3 */
                int64_t n = lens[a];
                runs++;
#define CHECK(fill, T, buf, one)                                                  \
                fill(key, pos, (uint64_t)i0, s, n, buf);                          \
                for (int64_t j = 0; j < n; j++) {                                 \
                    T want = one(key, pos, (uint64_t)(i0 + j * s));              \
                    if (memcmp(&want, &buf[j], sizeof want)) bad++;               \
                }
                CHECK(sg_rand_fill_uniform_f32, float, f, sg_rand_uniform_f32)
                CHECK(sg_rand_fill_uniform_f64, double, d, sg_rand_uniform_f64)
                CHECK(sg_rand_fill_normal_f32, float, f, sg_rand_normal_f32)
                CHECK(sg_rand_fill_normal_f64, double, d, sg_rand_normal_f64)
                CHECK(sg_rand_fill_bits32, uint32_t, b32, sg_rand_bits32)
                CHECK(sg_rand_fill_bits64, uint64_t, b64, sg_rand_bits64)
            }
    printf("%ld %ld\n", runs, bad);
    /* the first elements of a draw, to compare with the NumPy reference */
    static float g[40];
    sg_rand_fill_uniform_f32(key, pos, 5, 1, 40, f);
    sg_rand_fill_normal_f64(key, pos, 5, 1, 40, d);
    sg_rand_fill_normal_f32(key, pos, 5, 1, 40, g);
    for (int j = 0; j < 40; j++)
        printf("%a %a %a\n", (double)f[j], d[j], (double)g[j]);
    return 0;
}
"""


def _host_runs(isa_flag):
    """Whether this CPU has the instruction-set flag of /proc/cpuinfo (False elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(isa_flag in line.split() for line in f if line.startswith("flags"))
    except OSError:
        return False


# Each path of the fillers once, by explicit target (-march=native is one of them on any
# host: testing it as well built and ran the same program twice on an AVX2 machine).
FILL_TARGETS = {"avx512": ("avx512f", ["-march=skylake-avx512"]),
                "avx2": ("avx2", ["-march=haswell"]),
                "generic": (None, [])}


@pytest.mark.parametrize("arch", list(FILL_TARGETS))
def test_run_fillers_give_the_elements_bits(tmp_path, arch):
    """sg_rand_fill_* (a fused loop's runs of a draw, each Philox block made once; by hand
    for AVX-512 and AVX2, else a loop gcc vectorises) give the element functions' bits and
    the NumPy reference's, whatever the run's start, length and stride."""
    needs, flags = FILL_TARGETS[arch]
    if needs and not _host_runs(needs):
        pytest.skip(f"this CPU cannot run {arch} code")
    src, exe = tmp_path / "fill.c", tmp_path / "fill"
    src.write_text(C_FILL)
    cc = os.environ.get("SYMGRAD_CC", "cc")
    subprocess.run([cc, "-O2", *flags, "-ffp-contract=off", "-fno-math-errno", "-fopenmp-simd",
                    f"-I{INCLUDE}", str(src), "-o", str(exe), "-lm"], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split("\n")
    runs, bad = map(int, out[0].split())
    assert runs == 8 * 13 * 3 and bad == 0
    rows = [line.split() for line in out[1:] if line]
    idx = np.arange(5, 45)
    key, pos = 0x0123456789abcdef, 0xfffffffffffffff0
    assert_same_bits(np.array([float.fromhex(r[0]) for r in rows], dtype=np.float32),
                     R.uniform_f32(key, pos, idx))
    assert_same_bits(np.array([float.fromhex(r[1]) for r in rows]), R.normal_f64(key, pos, idx))
    assert_same_bits(np.array([float.fromhex(r[2]) for r in rows], dtype=np.float32),
                     R.normal_f32(key, pos, idx))


def test_blocks_serve_consecutive_elements():
    """Element i reads block i // 4 (32-bit draws) or i // 2 (64-bit ones): the four or two
    words of one Philox call, in order."""
    key, pos = 99, 12
    w = R.words(key, pos, np.arange(3))
    assert R.bits32(key, pos, np.arange(12)).tolist() == [int(w[q][c]) for c in range(3)
                                                          for q in range(4)]
    assert R.bits64(key, pos, np.arange(6)).tolist() == [
        int(w[q + 1][c]) << 32 | int(w[q][c]) for c in range(3) for q in (0, 2)]
    z = R.normal_f64(key, pos, np.arange(6))
    u1 = ((np.array(R.bits64(key, pos, np.arange(0, 6, 2))) >> np.uint64(11)) + np.uint64(1)
          ).astype(np.float64) * 2.0 ** -53
    u2 = (np.array(R.bits64(key, pos, np.arange(1, 6, 2))) >> np.uint64(11)).astype(
        np.float64) * 2.0 ** -53
    r = np.sqrt(-2 * np.log(u1))
    np.testing.assert_allclose(z[0::2], r * np.cos(2 * np.pi * u2), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(z[1::2], r * np.sin(2 * np.pi * u2), rtol=1e-13, atol=1e-15)
    # float normals: four a block, (w0, w1) and (w2, w3), computed in float
    a, b = R.bits32(key, pos, np.arange(0, 12, 2)), R.bits32(key, pos, np.arange(1, 12, 2))
    u1, u2 = (a.astype(np.float64) + 0.5) * 2.0 ** -32, (b >> np.uint64(8)) * 2.0 ** -24
    r = np.sqrt(-2 * np.log(u1))
    zf = R.normal_f32(key, pos, np.arange(12)).astype(np.float64)
    np.testing.assert_allclose(zf[0::2], r * np.cos(2 * np.pi * u2), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(zf[1::2], r * np.sin(2 * np.pi * u2), rtol=1e-6, atol=1e-6)


def test_float_transcendentals_are_accurate():
    """The float log on (0, 1] and sin/cos(2 pi u) of the float normals: within a few float
    ulp (the sample's error is below its float rounding, a few units of 2^-24)."""
    r = np.random.default_rng(2)
    x = np.concatenate([r.random(100000), 2.0 ** -r.uniform(0, 33, 100000)]).astype(np.float32)
    x = x[x > 0]
    ref = np.log(x.astype(np.float64))
    err = np.abs(R.rand_logf(x).astype(np.float64) - ref)
    assert np.max(err / np.maximum(np.spacing(np.abs(ref).astype(np.float32)), 1e-45)) <= 3
    u = (r.integers(0, 2 ** 24, 200000) * 2.0 ** -24).astype(np.float32)
    sn, cs = R.rand_sincos2pif(u)
    assert np.max(np.abs(sn - np.sin(2 * np.pi * u.astype(np.float64)))) < 2e-7
    assert np.max(np.abs(cs - np.cos(2 * np.pi * u.astype(np.float64)))) < 2e-7


def test_transcendentals_are_accurate():
    """A few ulp from NumPy's log and cos over their whole use: log on (0, 1], cos(2 pi u)."""
    r = np.random.default_rng(1)
    x = np.concatenate([r.random(100000), 2.0 ** -r.uniform(0, 53, 100000)])
    x = x[x > 0]
    ulp = np.spacing(np.abs(np.log(x)))
    assert np.max(np.abs(R.rand_log(x) - np.log(x)) / ulp) <= 4
    assert R.rand_log(np.array([1.0]))[0] == 0.0
    u = r.random(200000)
    assert np.max(np.abs(R.rand_cos2pi(u) - np.cos(2 * np.pi * u))) < 1e-15
    assert np.max(np.abs(R.rand_sin2pi(u) - np.sin(2 * np.pi * u))) < 1e-15


def test_an_element_depends_on_key_counter_and_index_only():
    a = R.uniform_f64(123, 7, np.arange(10))
    b = R.uniform_f64(123, 7, np.arange(10)[::-1])[::-1]
    assert_same_bits(a, b)
    assert not np.array_equal(a, R.uniform_f64(123, 8, np.arange(10)))
    assert not np.array_equal(a, R.uniform_f64(124, 7, np.arange(10)))


# --------------------------------------------------------------------------- bit-identity

def _all_draws(rng, x, s):
    """Every distribution and dtype, static and symbolic sizes, broadcast parameters, fused
    with other work and read transposed."""
    n = x.shape[0]
    return [
        rng.uniform(size=(37, 53)),
        rng.uniform(-2.0, x[:, None], size=(n, 7), dtype="float32"),
        rng.normal(size=(n, 40)),
        rng.normal(x, s, dtype="float32"),
        rng.normal(size=(9, 5)).T * x[:5, None] + 1.0,
        rng.bernoulli(0.3, size=(n, 3)),
        rng.bernoulli(sg.sigmoid(x), dtype="bool"),
        rng.integers(-5, 17, size=(n, 11)),
        rng.integers(3, size=(4,), dtype="int32"),
        rng.integers(-(2 ** 62), 2 ** 62, size=(6,)),
        rng.permutation(n),
        (rng.uniform(size=(n, 64)) * x[:, None]).sum(axis=0),
        rng.uniform(size=()),
    ]


@pytest.mark.parametrize("mode", ["c", "debug"])
def test_modes_give_the_same_bits(mode):
    x, s = sg.vector("x"), sg.scalar("s")
    X = np.linspace(-1, 1, 29)
    got = {}
    for m in ("py", mode):
        rng = sg.random.RandomStream(42)
        f = sg.function([x, s], _all_draws(rng, x, s), mode=m)
        got[m] = [f(X, 0.5), f(X, 2.0)]
    for call in range(2):
        for k, (a, b) in enumerate(zip(got["py"][call], got[mode][call])):
            assert_same_bits(a, b, f"draw {k}, call {call}")


THREADS_SCRIPT = textwrap.dedent("""
    import hashlib, numpy as np, symgrad as sg
    rng = sg.random.RandomStream(7)
    x = sg.matrix("x", dtype="float32")
    outs = [sg.nn.dropout(x, 0.25, rng), rng.normal(size=x.shape) * 2 + 1,
            rng.uniform(size=(x.shape[1], x.shape[0])).T + x, rng.integers(0, 1000, size=(400000,))]
    f = sg.function([x], outs)
    X = np.ones((300, 1001), dtype="float32")
    h = hashlib.sha256()
    for _ in range(2):
        for a in f(X):
            h.update(np.ascontiguousarray(a).tobytes())
    print(h.hexdigest())
""")


def test_thread_counts_give_the_same_bits(tmp_path):
    """Loops big enough for the thread pool, run by 1 and 2 threads (a process each, as
    SYMGRAD_NUM_THREADS is read when symgrad is imported). The children import the
    symgrad this process tests (child_env), from a folder that is not the source tree:
    `python -c` puts the working directory first on the path, and a fresh clone's
    symgrad has no compiled runtime."""
    digests = []
    for n in (1, 2):
        out = subprocess.run([sys.executable, "-c", THREADS_SCRIPT],
                             env=child_env(SYMGRAD_NUM_THREADS=str(n)), cwd=tmp_path,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        digests.append(out.stdout.strip())
    assert digests[0] == digests[1]


def test_thread_counts_in_process(monkeypatch):
    x = sg.vector("x")
    results = []
    for n in (1, 2, 3):
        monkeypatch.setattr(sg.config, "_num_threads", n)
        rng = sg.random.RandomStream(5)
        f = sg.function([x], [rng.normal(size=x.shape) + x, rng.bernoulli(0.5, size=x.shape)])
        results.append(f(np.zeros(300001)))
    for res in results[1:]:
        for a, b in zip(res, results[0]):
            assert_same_bits(a, b)


# --------------------------------------------------------------------------- streams and calls

@pytest.mark.parametrize("mode", ["py", "c"])
def test_each_call_draws_fresh_numbers_and_seed_resets(mode):
    rng = sg.random.RandomStream(3)
    f = sg.function([], [rng.uniform(size=5), rng.uniform(size=5)], mode=mode)
    a1, b1 = f()
    a2, b2 = f()
    assert not np.array_equal(a1, a2) and not np.array_equal(b1, b2)
    assert not np.array_equal(a1, b1)  # two draws of one call: two samples
    rng.seed(3)
    assert_same_bits(f()[0], a1)
    # a new stream with the seed, the same graph: the same numbers
    rng2 = sg.random.RandomStream(3)
    g = sg.function([], [rng2.uniform(size=5), rng2.uniform(size=5)], mode=mode)
    r1 = g()
    assert_same_bits(r1[0], a1) and assert_same_bits(r1[1], b1)
    # another seed, another sample
    assert not np.array_equal(sg.function([], sg.random.RandomStream(4).uniform(size=5),
                                          mode=mode)(), a1)


def test_the_state_is_advanced_by_the_function_itself():
    rng = sg.random.RandomStream(0)
    key, ctr = rng.state.get_value()
    assert ctr == 0
    f = sg.function([], [rng.normal(size=3), rng.normal(size=3)])
    assert rng.state in f.random_states
    f()
    assert rng.state.get_value().tolist() == [key, 2]
    f()
    assert rng.state.get_value().tolist() == [key, 4]


def test_two_functions_on_one_stream_never_share_counters():
    rng = sg.random.RandomStream(0)
    f = sg.function([], rng.uniform(size=1000))
    g = sg.function([], rng.uniform(size=1000))
    samples = [f(), g(), f(), g(), f()]
    flat = np.concatenate(samples)
    assert len(np.unique(flat)) == len(flat)


def test_default_stream_and_seed():
    sg.random.seed(11)
    f = sg.function([], sg.random.default_stream().uniform(size=4))
    a = f()
    sg.random.seed(11)
    assert_same_bits(f(), a)
    assert sg.random.default_stream() is sg.random.default_stream()


# --------------------------------------------------------------------------- bad input

def test_build_time_errors_name_the_line():
    rng = sg.random.RandomStream(0)
    line = sys._getframe().f_lineno
    cases = [
        (ValueError, "scale must be >= 0", lambda: rng.normal(scale=-1.0)),
        (ValueError, r"p must be in \[0, 1\]", lambda: rng.bernoulli(1.5)),
        (ValueError, "low must be < high", lambda: rng.uniform(2.0, 1.0)),
        (ValueError, "low must be < high", lambda: rng.integers(5, 5)),
        (TypeError, "size must be an int", lambda: rng.uniform(size=2.5)),
        (TypeError, r"size\[1\] must be an integer", lambda: rng.uniform(size=(2, 2.0))),
        (TypeError, r"size\[0\] must be an integer length", lambda: rng.uniform(size=(sg.scalar(),))),
        (ValueError, "must not be negative", lambda: rng.normal(size=(-1,))),
        (sg.ShapeError, "do not broadcast to size", lambda: rng.normal(np.zeros(3), size=(2,))),
        (TypeError, "dtype must be float32 or float64", lambda: rng.uniform(dtype="int64")),
        (TypeError, "integer", lambda: rng.integers(0.5, 3)),
        (ValueError, "does not fit int32", lambda: rng.integers(0, 2 ** 40, dtype="int32")),
    ]
    for k, (kind, message, thunk) in enumerate(cases):
        with pytest.raises(kind, match=message) as info:
            thunk()
        assert f"test_random.py:{line + 2 + k}" in str(info.value), str(info.value)


@pytest.mark.parametrize("mode", ["py", "c", "debug"])
def test_call_time_errors_name_the_line_and_update_nothing(mode):
    rng = sg.random.RandomStream(0)
    s, p, lo = sg.scalar("s"), sg.vector("p"), sg.scalar("lo", dtype="int64")
    n = sg.scalar("n", dtype="int64")
    line = sys._getframe().f_lineno
    f = sg.function([s, p, lo, n], [rng.normal(0.0, s, size=3),
                                   rng.bernoulli(p),
                                   rng.integers(lo, 10, size=2),
                                   rng.uniform(size=(n, 2))], mode=mode)
    before = rng.state.get_value()
    for args, message, at in [((-1.0, [0.5], 0, 1), "scale must be >= 0", line + 1),
                              ((np.nan, [0.5], 0, 1), "scale must be >= 0", line + 1),
                              ((1.0, [0.5, 1.5], 0, 1), r"p must be in \[0, 1\]", line + 2),
                              ((1.0, [0.5], 10, 1), "low must be < high", line + 3),
                              ((1.0, [0.5], 0, -2), "must not be negative", line + 4)]:
        with pytest.raises(ValueError, match=message) as info:
            f(*args)
        assert f"test_random.py:{at}" in str(info.value), str(info.value)
        assert rng.state.get_value().tolist() == before.tolist()
    f(1.0, [0.0, 1.0], 9, 0)
    assert rng.state.get_value()[1] == before[1] + 4


# --------------------------------------------------------------------------- rewrites

def test_rewrites_never_merge_or_fold_draws():
    rng = sg.random.RandomStream(0)
    a, b = rng.normal(size=4), rng.normal(size=4)
    f = sg.function([], [a, b, a + 0.0])  # equal graphs: still two draws
    draws = [n for n in sg.graph.toposort(f.graph.outputs) if n.op.name == "normal"]
    assert len(draws) == 2
    va, vb, va2 = f()
    assert not np.array_equal(va, vb)
    assert_same_bits(va, va2)
    # constant parameters and sizes: no constant folding, a fresh sample per call
    g = sg.function([], rng.uniform(0.0, 2.0, size=(3,)))
    assert not np.array_equal(g(), g())


# --------------------------------------------------------------------------- gradients

def _fd_check(params, build, values, seed=0):
    """The symbolic gradient of sum(build(*params)**2) against central differences, the
    stream reseeded before every evaluation so every one sees the same sample."""
    rng = sg.random.RandomStream(seed)
    out = build(rng, *params)
    cost = (out ** 2).sum()
    grads = sg.grad(cost, list(params))
    f = sg.function(list(params), cost)
    g = sg.function(list(params), grads)
    rng.seed(seed)
    symbolic = g(*values)
    for k, v in enumerate(values):
        v = np.asarray(v, dtype="float64")
        num = np.zeros_like(v)
        for i in np.ndindex(v.shape or ()):
            hi, lo = v.copy(), v.copy()
            hi[i] += 1e-6
            lo[i] -= 1e-6
            rng.seed(seed)
            fh = f(*[hi if j == k else values[j] for j in range(len(values))])
            rng.seed(seed)
            fl = f(*[lo if j == k else values[j] for j in range(len(values))])
            num[i] = (fh - fl) / 2e-6
        np.testing.assert_allclose(symbolic[k], num, rtol=1e-5, atol=1e-6)


def test_reparameterised_gradients():
    loc, scale = sg.vector("loc"), sg.scalar("scale")
    _fd_check([loc, scale], lambda r, m, s: r.normal(m, s, size=(5, 3)),
              [np.array([0.1, -0.3, 0.7]), 1.3])
    low, high = sg.vector("low"), sg.vector("high")
    _fd_check([low, high], lambda r, a, b: r.uniform(a, b),
              [np.array([-1.0, 0.0, 2.0]), np.array([1.0, 0.5, 4.0])])


def test_gradient_of_scale_is_the_sample():
    rng = sg.random.RandomStream(1)
    loc, scale = sg.scalar("loc"), sg.scalar("scale")
    y = rng.normal(loc, scale, size=(50,))
    gl, gs = sg.grad(y.sum(), [loc, scale])
    f = sg.function([loc, scale], [y, gl, gs])
    yv, glv, gsv = f(0.5, 2.0)
    assert glv == 50
    np.testing.assert_allclose(gsv, ((yv - 0.5) / 2.0).sum(), rtol=1e-12)


def test_bernoulli_is_not_differentiable():
    rng = sg.random.RandomStream(0)
    w = sg.vector("w")
    line = sys._getframe().f_lineno + 1
    cost = rng.bernoulli(sg.sigmoid(w)).sum()
    with pytest.raises(sg.NonDifferentiableError, match="bernoulli") as info:
        sg.grad(cost, w)
    assert f"test_random.py:{line}" in str(info.value)
    # a path through x alone is fine: the mask is a constant for it
    x = sg.vector("x")
    g = sg.grad((x * rng.bernoulli(0.5, size=x.shape)).sum(), x)
    rng.seed(0)
    gv = sg.function([x], g)(np.ones(6))
    assert set(np.unique(gv)) <= {0.0, 1.0}


def test_integer_samples_block_a_gradient_through_them():
    rng = sg.random.RandomStream(0)
    w = sg.scalar("w")
    k = rng.integers(0, 5, size=(3,))
    with pytest.raises(sg.NonDifferentiableError):
        sg.grad((k.astype("float64") * w).sum() + (w * k.astype("float64")).sum(), k)


# --------------------------------------------------------------------------- fusion

def _steps(f):
    return f.kernel.steps


def test_samples_are_drawn_inside_the_fused_loop():
    """Dropout's forward graph is one loop: the mask is never an array of its own."""
    rng = sg.random.RandomStream(0)
    x = sg.matrix("x", dtype="float32")
    f = sg.function([x], sg.relu(sg.nn.dropout(x, 0.5, rng)) * 2.0)
    # (the other loop advances the stream's state)
    loops = [s for s in _steps(f) if any(n.op.name == "bernoulli" for n in s.members)]
    assert len(loops) == 1 and loops[0].root.outputs[0] is f.graph.outputs[0], _steps(f)
    assert not [s for s in _steps(f) if s.root.op.name == "bernoulli"]
    X = np.ones((64, 33), dtype="float32")
    got = f(X)
    assert set(np.unique(got)) == {0.0, 4.0}


# --------------------------------------------------------------------------- samples

@pytest.mark.parametrize("mode", ["py", "c"])
def test_permutation_and_integers(mode):
    rng = sg.random.RandomStream(9)
    n = sg.scalar("n", dtype="int64")
    f = sg.function([n], [rng.permutation(n), rng.integers(-3, 4, size=(n,)),
                          rng.integers(7, size=(2, n), dtype="int32")], mode=mode)
    p, k, k32 = f(1000)
    assert sorted(p.tolist()) == list(range(1000)) and not np.array_equal(p, np.arange(1000))
    assert k.dtype == np.int64 and k.min() == -3 and k.max() == 3
    assert k32.dtype == np.int32 and k32.shape == (2, 1000) and set(np.unique(k32)) == set(range(7))
    assert f(0)[0].shape == (0,)


def test_symbolic_sizes_and_broadcast_parameters():
    rng = sg.random.RandomStream(0)
    x = sg.matrix("x")
    loc = sg.vector("loc")
    y = rng.normal(loc, 1e-9, size=(x.shape[0], 4))
    f = sg.function([x, loc], y)
    got = f(np.zeros((3, 2)), np.arange(4.0))
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, np.broadcast_to(np.arange(4.0), (3, 4)), atol=1e-7)
    u = rng.uniform(sg.zeros_like(x), 1.0)  # size from the parameters' shape
    assert sg.function([x], u)(np.zeros((5, 6))).shape == (5, 6)


# --------------------------------------------------------------------------- dropout

@pytest.mark.parametrize("mode", ["py", "c"])
def test_dropout(mode):
    rng = sg.random.RandomStream(0)
    x = sg.matrix("x")
    h = sg.nn.dropout(x, 0.25, rng)
    g = sg.grad((h * 3).sum(), x)
    f = sg.function([x], [h, g], mode=mode)
    X = np.full((200, 100), 2.0)
    hv, gv = f(X)
    kept = hv != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(hv[kept], 2.0 / 0.75)
    np.testing.assert_allclose(gv, np.where(kept, 3 / 0.75, 0.0))
    assert sg.nn.dropout(x, 0.25, rng, training=False) is x
    assert sg.nn.dropout(x, 0.0, rng) is x
    np.testing.assert_array_equal(sg.function([x], sg.nn.dropout(x, 1.0, rng), mode=mode)(X), 0)
    with pytest.raises(ValueError, match="p must be in"):
        sg.nn.dropout(x, 1.5, rng)


def test_dropout_layer_uses_the_default_stream():
    drop = sg.layers.Dropout(0.5)
    assert drop.params == []
    x = sg.matrix("x")
    assert drop(x, training=False) is x
    sg.random.seed(5)
    f = sg.function([x], drop(x))
    a = f(np.ones((10, 10)))
    sg.random.seed(5)
    assert_same_bits(f(np.ones((10, 10))), a)
    assert set(np.unique(a)) <= {0.0, 2.0}


def test_train_step_with_dropout_resumes_from_a_checkpoint(tmp_path):
    """sg.save keeps the stream's state: a resumed run draws the same masks."""
    rng = sg.random.RandomStream(1)
    x, y = sg.matrix("x"), sg.vector("y")
    W = sg.shared(np.full((4, 1), 0.1), name="W")
    h = sg.nn.dropout(x, 0.5, rng) @ W
    step = sg.train_step(((h[:, 0] - y) ** 2).mean(), [x, y])
    assert rng.state in step.state
    X, Y = np.arange(32.0).reshape(8, 4) / 10, np.ones(8)
    step(X, Y)
    sg.save(tmp_path / "ck.npz", step)
    first = [step(X, Y)["loss"] for _ in range(3)]
    sg.load(tmp_path / "ck.npz", step)
    assert [step(X, Y)["loss"] for _ in range(3)] == first


def test_pickled_function_keeps_drawing():
    import pickle
    rng = sg.random.RandomStream(2)
    f = sg.function([], rng.uniform(size=3))
    g = pickle.loads(pickle.dumps(f))
    a, b = g(), g()
    assert not np.array_equal(a, b)


# --------------------------------------------------------------------------- loops

@pytest.mark.parametrize("mode", ["py", "c"])
def test_each_step_of_a_scan_draws_fresh_numbers(mode):
    rng = sg.random.RandomStream(0)
    x = sg.matrix("x")
    out, upd = sg.scan(lambda v: v + rng.normal(size=(3,)), sequences=x)
    assert list(upd) == [rng.state]
    f = sg.function([x], out, mode=mode)
    a = f(np.zeros((4, 3)))
    assert len({tuple(r) for r in a}) == 4  # every step its own sample
    b = f(np.zeros((4, 3)))
    assert not np.array_equal(a, b)  # and every call
    rng.seed(0)
    assert_same_bits(f(np.zeros((4, 3))), a)


def test_scan_samples_are_the_same_bits_in_every_mode_with_or_without_its_updates():
    got = []
    for mode, listed in [("py", False), ("c", False), ("c", True), ("debug", True)]:
        rng = sg.random.RandomStream(3)
        x = sg.vector("x")
        before = rng.uniform(size=(5,))
        out, upd = sg.map(lambda v: sg.nn.dropout(v + rng.uniform(size=(2,)), 0.5, rng),
                          sequences=x)
        after = rng.normal(size=(2,))
        f = sg.function([x], [before, out, after], updates=upd if listed else None, mode=mode)
        got.append([f(np.arange(6.0)) for _ in range(3)])
    for other in got[1:]:
        for call_a, call_b in zip(got[0], other):
            for a, b in zip(call_a, call_b):
                assert_same_bits(a, b)


def test_scan_and_outer_draws_never_share_counters():
    rng = sg.random.RandomStream(1)
    n = sg.scalar("n", dtype="int64")
    outer = rng.uniform(size=(1000,))
    steps, _ = sg.scan(lambda: rng.uniform(size=(50,)), n_steps=n)
    steps2, _ = sg.scan(lambda: rng.uniform(size=(50,)), n_steps=n)
    f = sg.function([n], [outer, steps, steps2])
    values = np.concatenate([np.concatenate([a.ravel() for a in f(k)]) for k in (0, 7, 3, 12)])
    assert len(np.unique(values)) == len(values)


def test_gradient_through_noise_inside_a_scan():
    rng = sg.random.RandomStream(2)
    x, s = sg.vector("x"), sg.scalar("s")
    out, _ = sg.scan(lambda v, h: h * 0.5 + v + s * rng.normal(), sequences=x,
                     outputs_info=sg.constant(0.0))
    cost = (out ** 2).sum()
    gs = sg.grad(cost, s)
    f, g = sg.function([x, s], cost), sg.function([x, s], gs)
    X = np.array([0.3, -0.2, 0.5, 0.1])
    rng.seed(2)
    symbolic = g(X, 1.5)
    rng.seed(2)
    hi = f(X, 1.5 + 1e-6)
    rng.seed(2)
    lo = f(X, 1.5 - 1e-6)
    np.testing.assert_allclose(symbolic, (hi - lo) / 2e-6, rtol=1e-6)


def _nested_dropout_loop(rng, returns_inner_updates):
    """A scan whose step runs a scan drawing a sample per inner step, and draws one itself."""
    x = sg.tensor3("x")
    w = sg.shared(np.linspace(0.5, 1.5, 6), name="w")

    def outer(x_t, acc):
        def inner(e, a):
            m = rng.uniform(size=e.shape)
            return a * 0.9 + e * m * w, m
        (sums, masks), inner_updates = sg.scan(inner, sequences=x_t,
                                                outputs_info=[sg.zeros_like(x_t[0]), None])
        noise = rng.normal(size=acc.shape)
        outs = (sg.tanh(acc + sums[-1] + noise * 0.1), masks, noise)
        return (outs, inner_updates) if returns_inner_updates else outs

    (hs, masks, noise), upd = sg.scan(outer, sequences=x,
                                      outputs_info=[sg.zeros((x.shape[2],)), None, None])
    return x, w, hs, masks, noise, upd


@pytest.mark.parametrize("mode", ["py", "c", "debug"])
@pytest.mark.parametrize("returns_inner_updates", [False, True])
def test_samples_inside_a_loop_inside_a_loop_s_step(mode, returns_inner_updates):
    # used to be refused (NotImplementedError); a hierarchical RNN with dropout needs it
    rng = sg.random.RandomStream(5)
    x, w, hs, masks, noise, upd = _nested_dropout_loop(rng, returns_inner_updates)
    assert list(upd) == [rng.state]
    after = rng.uniform(size=(3,))
    f = sg.function([x], [hs, masks, noise, after, sg.grad((hs ** 2).sum(), w)], updates=upd,
                    mode=mode)
    X = np.random.default_rng(0).standard_normal((3, 4, 6))
    a, b = f(X), f(X)
    assert a[1].shape == (3, 4, 6)
    # every inner step of every outer step, the outer steps' and the outer draws: fresh
    # numbers, and fresh again at the next call
    drawn = np.concatenate([v.ravel() for v in a[1:4] + b[1:4]])
    assert len(np.unique(drawn)) == len(drawn)
    # the forward and the gradient read the masks the outputs show
    W = w.get_value()

    def cost(W):
        acc, c = np.zeros(6), 0.0
        for t in range(3):
            s = np.zeros(6)
            for j in range(4):
                s = s * 0.9 + X[t, j] * a[1][t, j] * W
            acc = np.tanh(acc + s + a[2][t] * 0.1)
            c += (acc ** 2).sum()
        return c

    np.testing.assert_allclose((a[0] ** 2).sum(), cost(W), rtol=1e-12)
    eye = np.eye(6) * 1e-6
    fd = [(cost(W + e) - cost(W - e)) / 2e-6 for e in eye]
    np.testing.assert_allclose(a[4], fd, rtol=1e-6)
    rng.seed(5)
    for p, q in zip(f(X), a):
        assert_same_bits(p, q)


def test_samples_inside_nested_loops_are_the_same_bits_in_every_mode():
    got = []
    for mode in ("py", "c", "debug"):
        rng = sg.random.RandomStream(8)
        x, _, _, masks, noise, upd = _nested_dropout_loop(rng, False)
        f = sg.function([x], [masks, noise], mode=mode)
        X = np.ones((2, 3, 6))
        got.append([f(X) for _ in range(2)])
    for other in got[1:]:
        for call_a, call_b in zip(got[0], other):
            for a, b in zip(call_a, call_b):
                assert_same_bits(a, b)


# --------------------------------------------------------------------------- vectorised

def _gcc():
    import importlib.util
    from pathlib import Path
    path = Path(HERE).parent / "bench" / "bench_vectorise.py"
    spec = importlib.util.spec_from_file_location("bench_vectorise", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_VEC = _gcc()
needs_gcc = pytest.mark.skipif(
    _VEC.gcc_argv() is None or platform.machine().lower() not in ("x86_64", "amd64"),
    reason="reads gcc's -fopt-info-vec notes for two x86 targets")
#: the loops must vectorise for AVX2 and for AVX-512, whatever machine runs the tests
each_target = pytest.mark.parametrize("march", ["haswell", "skylake-avx512"],
                                      ids=["avx2", "avx512"])
_FILLS = {"uniform_f32": "float", "uniform_f64": "double", "normal_f32": "float",
          "normal_f64": "double", "bits32": "uint32_t", "bits64": "uint64_t"}


@needs_gcc
@each_target
@pytest.mark.parametrize("fill", sorted(_FILLS))
def test_run_fillers_vectorise(tmp_path, fill, march):
    """gcc vectorises the loop making Philox blocks (past the hand-written AVX-512/AVX2 part)
    and each filler's loop turning words into values (or copies it to memcpy): at the
    kernels' release flags, gcc's "loop vectorized" notes on the header's lines."""
    header = open(os.path.join(INCLUDE, "sg_random.h")).read().split("\n")
    blocks = 1 + next(k for k, line in enumerate(header)
                      if "sg_rand4 r = sg_rand_words(key, pos, c0 + (uint64_t)k);" in line)
    start = 1 + next(k for k, line in enumerate(header)
                     if line.startswith(f"SG__RINLINE void sg_rand_fill_{fill}("))
    end = start + next(k for k, line in enumerate(header[start:]) if line == "}")
    src = tmp_path / "v.c"
    src.write_text(f'#include "sg_random.h"\nvoid g({_FILLS[fill]} *o, int64_t n, uint64_t i0)'
                   f'{{ sg_rand_fill_{fill}(1, 2, i0, 1, n, o); }}\n')
    notes = subprocess.run([*_VEC.gcc_argv(), *_VEC.release_flags(march), f"-I{INCLUDE}", "-c", str(src), "-o",
                            os.devnull, "-fopt-info-vec-optimized"],
                           capture_output=True, text=True, check=True).stderr
    lines = {int(m) for m in re.findall(r"sg_random\.h:(\d+):\d+: optimized: loop vectorized",
                                        notes)}
    assert blocks in lines, notes
    if fill != "bits32":  # its conversion is a copy: memcpy
        assert any(start < k <= end for k in lines), notes


@needs_gcc
@each_target
def test_loops_reading_draws_vectorise(march):
    """The fused loops that read filled runs (dropout's mask, noise added to an input)."""
    rng = sg.random.RandomStream(0)
    x = sg.matrix("x", "float32")
    f = sg.function([x], [sg.nn.dropout(x, 0.5, rng), x + rng.normal(size=x.shape, dtype="float32"),
                          x * rng.uniform(size=x.shape, dtype="float32"),
                          sg.cast(rng.integers(0, 7, size=x.shape), "float32") + x])
    report = _VEC.vector_report(f.source, _VEC.gcc_argv(), march)
    assert report
    missed = [f"{lp['step']} ({lp['what']}) lines {lp['first']}-{lp['last']}: {lp['why']}"
              for lp in report if not lp["vectorised"]]
    assert not missed, "\n".join(missed)
