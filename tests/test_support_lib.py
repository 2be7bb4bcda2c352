"""The kernels' support library (issue #12, item 9): the helpers every kernel calls
(sg_kernel.h, sg_ops.h) are compiled once into ``symgrad/libsg_support.so`` and
kernels link against it, instead of each kernel compiling them again.

Checked here: the library is there and exports the ABI the runtime has; the
headers only declare the helpers (no body reaches a kernel's compiler); a
compiled function runs its helpers from the library, with the values NumPy
gives; the cache key follows the library's bytes; the runtime refuses a kernel
whose support library has another ABI; and under a sanitizer kernels link a
copy of the library built with their flags, once per cache (so the helpers
are instrumented too).
"""

import os
import re
import subprocess

import numpy as np
import pytest

import symgrad as sg
from symgrad import compiler
from symgrad._runtime import ABI_VERSION, Kernel, KernelLoadError

pytestmark = pytest.mark.skipif(not os.path.isfile(compiler.SUPPORT_LIB),
                                reason="the support library is not built (setup.py build_ext)")

# Helpers the MLP step calls (issue #12's measurement), and others of each family.
HELPERS = ["sg_fail", "sg_ws_alloc", "sg_alloc", "sg_overlaps", "sg_broadcast_shapes",
           "sg_broadcast_strides", "sg_gemm_f32", "sg_gemm_shape", "sg_sum_to_f32",
           "sg_sum_to_check", "sg_gemm_ready", "sg_sum_into_f32", "sg_broadcast_view",
           "sg_read_shape", "sg_shape_str", "sg_copy_nd", "sg_reshape", "sg_max_f64_f64",
           "sg_argmax_f32_i64", "sg_put_f64", "sg_matmul_i32", "sg_check_indices"]


def preprocessed_header():
    cc = compiler.find_compiler()
    inc, _, _ = compiler.blas_flags()
    proc = subprocess.run([*cc, "-E", "-P", "-x", "c", f"-I{compiler.INCLUDE_DIR}", f"-I{inc}",
                           "-"], input='#include "sg_kernel.h"\n', capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_headers_declare_the_helpers_and_define_none_of_them():
    text = preprocessed_header()
    for name in HELPERS:
        assert re.search(rf"\b{name}\s*\(", text), f"{name} is not declared"
        body = re.search(rf"\b{name}\s*\([^;{{}}]*\)\s*\{{", text)
        assert body is None, f"{name}'s body is compiled into every kernel: {body.group(0)!r}"
    # The per-element arithmetic inside fused loops stays inline, to vectorise.
    for name in ["sg_floordiv_i64", "sg_mod_f64", "sg_pow_i32", "sg_f2i64", "sg_expf", "sg_log"]:
        assert re.search(rf"\b{name}\s*\([^;{{}}]*\)\s*\{{", text), f"{name} is not inline"


def test_a_kernel_calls_the_library_and_gets_its_abi():
    src = '#include "sg_kernel.h"\nint probe(void) { return sg_support_abi(); }\n'
    import ctypes
    lib = ctypes.CDLL(compiler.compile_library(src, "support_probe"))
    assert lib.probe() == ABI_VERSION
    with open("/proc/self/maps") if os.path.exists("/proc/self/maps") else open(os.devnull) as f:
        maps = f.read()
    if maps:
        assert os.path.realpath(compiler.SUPPORT_LIB) in maps


def test_functions_run_their_helpers_from_the_library_with_numpys_values():
    r = np.random.default_rng(12)
    X = sg.matrix("X")
    W = sg.matrix("W", dtype="float32")
    A = sg.matrix("A", dtype="float32")
    ids = sg.vector("ids", dtype="int64")
    f = sg.function([X, W, A, ids], [
        X.sum(axis=0), X.T.sum(axis=1), X.max(axis=1), sg.argmax(X, axis=0), X.min(),
        (A @ W), sg.reshape(X.T, (-1,)), sg.concatenate([X, 2 * X], axis=1),
        sg.inc_subtensor(X[1:3], 1.0), X[ids]])
    x = r.standard_normal((50, 37))
    w = r.standard_normal((37, 11)).astype("float32")
    a = r.standard_normal((6, 37)).astype("float32")
    i = np.array([3, -1, 0, 3])
    out = f(x, w, a, i)
    expect = [x.sum(axis=0), x.T.sum(axis=1), x.max(axis=1), x.argmax(axis=0), x.min(),
              a @ w, x.T.reshape(-1), np.concatenate([x, 2 * x], axis=1), None, x[i]]
    inc = x.copy()
    inc[1:3] += 1.0
    expect[8] = inc
    for got, want in zip(out, expect):
        assert got.shape == np.shape(want) and got.dtype == np.asarray(want).dtype
        np.testing.assert_allclose(got, want, rtol=1e-5 if got.dtype == np.float32 else 1e-12)
    # A failing helper still reports through err (sg_fail lives in the library too).
    with pytest.raises(sg.ShapeError, match="cannot be multiplied"):
        f(x, w[:5], a, i)


@pytest.fixture
def library_copy(tmp_path, monkeypatch):
    """compiler.SUPPORT_LIB pointed at a copy of the library; its digest recomputed."""
    copy = tmp_path / "libsg_support.so"
    copy.write_bytes(open(compiler.SUPPORT_LIB, "rb").read())
    monkeypatch.setattr(compiler, "SUPPORT_LIB", str(copy))
    compiler._support_digest.cache_clear()
    yield copy
    compiler._support_digest.cache_clear()


def test_the_cache_key_follows_the_librarys_bytes(library_copy):
    src = "int f(void) { return 1; }"
    argv = compiler.compiler_argv(compiler.find_compiler(), "kernel")
    key, neutral = compiler.cache_key(src, "kernel", argv), compiler.neutral_key(src, "kernel")
    assert compiler.cache_key(src, "kernel", argv) == key  # computed once per process
    data = bytearray(library_copy.read_bytes())
    data[-1] ^= 1
    library_copy.write_bytes(bytes(data))
    assert compiler.cache_key(src, "kernel", argv) == key  # still the digest read before
    compiler._support_digest.cache_clear()
    assert compiler.cache_key(src, "kernel", argv) != key
    assert compiler.neutral_key(src, "kernel") != neutral


def test_a_missing_library_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setattr(compiler, "SUPPORT_LIB", str(tmp_path / "absent.so"))
    compiler._support_digest.cache_clear()
    try:
        with pytest.raises(sg.CompileError, match="build_ext --inplace"):
            compiler.compile_library("int f(void) { return 1; }", "absent_support")
    finally:
        compiler._support_digest.cache_clear()


def test_the_runtime_refuses_a_kernel_whose_support_library_has_another_abi():
    # The kernel's own sg_support_abi comes first among its dependencies' symbols.
    src = ('#include "sg_abi.h"\n'
           "int sg_abi_version(void) { return SG_ABI_VERSION; }\n"
           "int sg_support_abi(void) { return SG_ABI_VERSION + 1; }\n"
           "int sg_main(const sg_arr *in, sg_arr *out, sg_ws *ws, sg_err *err)\n"
           "{ (void)in, (void)out, (void)ws, (void)err; return 0; }\n")
    path = compiler.compile_library(src, "support_abi_mismatch")
    with pytest.raises(KernelLoadError, match="support library .* ABI version"):
        Kernel(path, 0, [], [])


@pytest.mark.slow  # builds the support library under UBSan: 12-40 s, the README suite's costliest
def test_under_a_sanitizer_kernels_link_a_sanitized_copy_built_once(monkeypatch, tmp_path):
    flags = compiler._flags("kernel")
    assert "-lsg_support" in flags
    monkeypatch.setattr(sg.config, "cflags", ["-fsanitize=undefined", "-O0"])
    monkeypatch.setattr(sg.config, "cache_dir", str(tmp_path / "cache"))
    flags = compiler._flags("kernel")
    assert "-lsg_support" not in flags and "-lsg_support_sanitized" in flags
    lib = compiler._sanitized_support(tuple(compiler._cc_words()), ("-fsanitize=undefined", "-O0"))
    assert lib.startswith(str(tmp_path / "cache")) and os.path.isfile(lib)
    built = os.stat(lib).st_mtime_ns
    src = '#include "sg_kernel.h"\nint probe(void) { return sg_support_abi(); }\n'
    path = compiler.compile_library(src, "support_sanitized")
    assert os.stat(lib).st_mtime_ns == built  # not built again
    needed = subprocess.run(["readelf", "-d", path], capture_output=True, text=True).stdout
    if needed:
        assert "libsg_support_sanitized.so" in needed and "libsg_support.so" not in needed
        ubsan = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True).stdout
        assert "libubsan" in ubsan  # the helpers are instrumented
    import ctypes
    assert ctypes.CDLL(path).probe() == ABI_VERSION
