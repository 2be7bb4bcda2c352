"""The runtime extension: loading kernels, passing arrays, owning outputs, errors, threads.

The kernels here are small hand-written C against sg_abi.h, compiled with the
system compiler, so these tests depend on neither the code generator nor the
compile cache.
"""

import gc
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import symgrad
from symgrad import errors
from symgrad import _runtime
from symgrad._runtime import Kernel, KernelLoadError

INCLUDE = Path(symgrad.__file__).parent / "include"
CC = os.environ.get("SYMGRAD_CC", "cc")

# y = 2 * x for an NDIM-d float64 x of any strides; y is C-contiguous.
DOUBLE = r"""
int sg_main(const sg_arr *in, sg_arr *out, sg_ws *ws, sg_err *err)
{
    (void)ws; (void)err;
    int64_t n = 1, idx[NDIM + 1] = {0};
    for (int k = NDIM - 1; k >= 0; k--) {
        out[0].shape[k] = in[0].shape[k];
        out[0].strides[k] = n;
        n *= in[0].shape[k];
    }
    double *y = ws->out_alloc(n ? n * sizeof(double) : 1);
    if (!y)
        return SG_ENOMEM;
    const double *x = in[0].data;
    for (int64_t i = 0; i < n; i++) {
        int64_t off = 0;
        for (int k = 0; k < NDIM; k++)
            off += idx[k] * in[0].strides[k];
        y[i] = 2 * x[off];
        for (int k = NDIM - 1; k >= 0; k--) {
            if (++idx[k] < in[0].shape[k])
                break;
            idx[k] = 0;
        }
    }
    out[0].data = y;
    return SG_OK;
}
"""

# Fails with the code in its int64 0-d input and a message.
FAIL = r"""
int sg_main(const sg_arr *in, sg_arr *out, sg_ws *ws, sg_err *err)
{
    (void)out; (void)ws;
    int code = (int)*(const int64_t *)in[0].data;
    snprintf(err->msg, sizeof err->msg, "index 7 is out of range for axis 0 with size 3 (take at model.py:12)");
    err->code = code;
    return code;
}
"""

# Follows the workspace protocol: a scratch copy of x from the arena, or from
# `extra` when the arena is too small. Outputs: 2 * x (from the scratch), the
# arena's capacity seen by this call, and whether it had to use `extra`.
SCRATCH = r"""
int sg_main(const sg_arr *in, sg_arr *out, sg_ws *ws, sg_err *err)
{
    (void)err;
    int64_t n = in[0].shape[0];
    size_t bytes = (size_t)n * sizeof(double);
    double *tmp;
    int overflow = 0;
    ws->used = 0;
    ws->need = bytes;
    if (bytes <= ws->cap) {
        tmp = (double *)ws->base;
        if ((uintptr_t)tmp % 64) return SG_EVALUE;  /* the runtime promises 64-byte alignment */
    } else {
        overflow = 1;
        if (ws->n_extra == ws->cap_extra) {
            size_t cap = ws->cap_extra ? 2 * ws->cap_extra : 4;
            void **grown = realloc(ws->extra, cap * sizeof(void *));
            if (!grown) return SG_ENOMEM;
            ws->extra = grown;
            ws->cap_extra = cap;
        }
        tmp = malloc(bytes ? bytes : 1);
        if (!tmp) return SG_ENOMEM;
        ws->extra[ws->n_extra++] = tmp;
    }
    const double *x = in[0].data;
    for (int64_t i = 0; i < n; i++)
        tmp[i] = x[i * in[0].strides[0]];
    double *y = ws->out_alloc(bytes ? bytes : 1);
    int64_t *cap = ws->out_alloc(sizeof *cap);
    _Bool *ovf = ws->out_alloc(sizeof *ovf);
    for (int64_t i = 0; i < n; i++)
        y[i] = 2 * tmp[i];
    *cap = (int64_t)ws->cap;
    *ovf = overflow;
    for (size_t i = 0; i < ws->n_extra; i++)   /* the kernel frees its overflow blocks */
        free(ws->extra[i]);
    ws->n_extra = 0;
    out[0].data = y; out[0].shape[0] = n; out[0].strides[0] = 1;
    out[1].data = cap;
    out[2].data = ovf;
    return SG_OK;
}
"""

# Outputs of several dtypes and layouts from a float32 vector x of length n:
# x + 1 (float32), n (int64 0-d), x > 0 (bool), a (0, 3) float64 with NULL
# data, and a (2, 3) float64 in Fortran order holding 0..5 in C order.
MIXED = r"""
int sg_main(const sg_arr *in, sg_arr *out, sg_ws *ws, sg_err *err)
{
    (void)err;
    int64_t n = in[0].shape[0];
    const float *x = in[0].data;
    float *a = ws->out_alloc(n ? n * sizeof(float) : 1);
    int64_t *b = ws->out_alloc(sizeof *b);
    _Bool *c = ws->out_alloc(n ? n : 1);
    double *f = ws->out_alloc(6 * sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        a[i] = x[i * in[0].strides[0]] + 1;
        c[i] = x[i * in[0].strides[0]] > 0;
    }
    *b = n;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            f[i + 2 * j] = 3 * i + j;
    out[0].data = a; out[0].shape[0] = n; out[0].strides[0] = 1;
    out[1].data = b;
    out[2].data = c; out[2].shape[0] = n; out[2].strides[0] = 1;
    out[3].data = NULL; out[3].shape[0] = 0; out[3].shape[1] = 3;
    out[3].strides[0] = 3; out[3].strides[1] = 1;
    out[4].data = f; out[4].shape[0] = 2; out[4].shape[1] = 3;
    out[4].strides[0] = 1; out[4].strides[1] = 2;
    return SG_OK;
}
"""

# Busy-waits `seconds` (its float64 0-d input) without touching Python, returns it.
SLOW = r"""
#include <time.h>
int sg_main(const sg_arr *in, sg_arr *out, sg_ws *ws, sg_err *err)
{
    (void)err;
    double seconds = *(const double *)in[0].data;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) + 1e-9 * (t.tv_nsec - t0.tv_nsec) < seconds);
    double *y = ws->out_alloc(sizeof *y);
    *y = seconds;
    out[0].data = y;
    return SG_OK;
}
"""

HEADER = "#include <stdint.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include \"sg_abi.h\"\n"
VERSION = "int sg_abi_version(void) { return %s; }\n"


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """Compile C source into a shared library; returns its path."""
    if shutil.which(CC) is None:
        pytest.skip(f"no C compiler ({CC})")
    root = tmp_path_factory.mktemp("kernels")

    def build(name, body, version="SG_ABI_VERSION", defines=()):
        src = root / f"{name}.c"
        src.write_text(HEADER + (VERSION % version if version else "") + body)
        lib = root / f"{name}.so"
        cmd = [CC, "-shared", "-fPIC", "-O2", "-std=c11", "-D_POSIX_C_SOURCE=200809L",
               f"-I{INCLUDE}", *[f"-D{d}" for d in defines], str(src), "-o", str(lib)]
        subprocess.run(cmd, check=True, capture_output=True)
        return lib

    return build


@pytest.fixture(scope="module")
def double(build):
    """Kernels y = 2 * x, by ndim of x."""
    return {nd: Kernel(build(f"double{nd}", DOUBLE, defines=[f"NDIM={nd}"]), 1, ["float64"], [nd])
            for nd in (0, 1, 2, 3)}


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# --- values and strides ----------------------------------------------------------

def _strided_cases():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(5, 6))
    t = rng.normal(size=(4, 5, 6))
    return {
        "0-d": np.array(1.5),
        "contiguous": np.arange(7.0),
        "step": np.arange(20.0)[::3],
        "reversed": np.arange(9.0)[::-1],
        "transposed": m.T,
        "2-d slice": m[1:4, ::-2],
        "broadcast (stride 0)": np.broadcast_to(np.arange(3.0), (4, 3)),
        "3-d mixed": t[::-1, 1::2, ::3].transpose(2, 0, 1),
        "empty": np.zeros((0, 3)),
        "empty 3-d": np.zeros((2, 0, 4))[:, :, ::-1],
        "single": np.arange(5.0)[2:3],
    }


@pytest.mark.parametrize("name", list(_strided_cases()))
def test_values_for_any_strides(double, name):
    x = _strided_cases()[name]
    (y,) = double[x.ndim]([x])
    assert y.shape == x.shape and y.dtype == np.float64
    np.testing.assert_array_equal(y, 2 * x)


def test_misaligned_and_fractional_strides_are_copied(double):
    buf = np.zeros(8 * 6 + 1, np.uint8)
    buf[1:] = np.arange(6.0).view(np.uint8)
    x = np.frombuffer(buf, np.float64, count=6, offset=1)
    assert not x.flags.aligned
    np.testing.assert_array_equal(double[1]([x])[0], 2 * np.arange(6.0))

    rec = np.zeros(5, dtype=[("a", np.float64), ("b", np.int32)])  # itemsize 12
    rec["a"] = np.arange(5.0)
    v = rec["a"]
    assert v.strides[0] % 8
    np.testing.assert_array_equal(double[1]([v])[0], 2 * np.arange(5.0))


def test_tuple_or_list_of_inputs(double):
    x = np.arange(3.0)
    np.testing.assert_array_equal(double[1]((x,))[0], double[1]([x])[0])


def test_wrong_call_is_an_error_not_a_crash(double):
    with pytest.raises(TypeError, match="takes 1 arrays, got 2"):
        double[1]([np.zeros(2), np.zeros(2)])
    with pytest.raises(TypeError, match="not an ndarray"):
        double[1]([[1.0, 2.0]])
    with pytest.raises(TypeError, match="list or tuple"):
        double[1](np.zeros(1))
    with pytest.raises(TypeError, match="list or tuple"):
        double[1](None)


def test_mixed_outputs_dtypes_layouts_and_empty(build):
    k = Kernel(build("mixed", MIXED), 1, ["float32", "int64", "bool", "float64", "float64"],
               [1, 0, 1, 2, 2])
    x = np.array([-1.0, 0.5, 2.0, -3.0, 4.0], np.float32)[::-1]
    a, b, c, e, f = k([x])
    assert a.dtype == np.float32 and b.dtype == np.int64 and c.dtype == np.bool_
    np.testing.assert_array_equal(a, x + 1)
    assert b.shape == () and b == 5
    np.testing.assert_array_equal(c, x > 0)
    assert e.shape == (0, 3) and e.dtype == np.float64
    np.testing.assert_array_equal(f, np.arange(6.0).reshape(2, 3))
    assert f.flags.f_contiguous and not f.flags.c_contiguous
    a2, *_ = k([np.zeros(0, np.float32)])
    assert a2.shape == (0,)


# --- output ownership --------------------------------------------------------------

def test_outputs_are_owned_writeable_and_outlive_the_kernel(build):
    k = Kernel(build("double_own", DOUBLE, defines=["NDIM=1"]), 1, ["float64"], [1])
    x = np.arange(4.0)
    (y,) = k([x])
    (y2,) = k([x])
    assert y.flags.writeable and y.flags.c_contiguous and y.flags.aligned
    assert not np.shares_memory(y, x) and not np.shares_memory(y, y2)
    y[:] = -1  # the caller's to change; nothing else sees it
    np.testing.assert_array_equal(y2, 2 * x)
    np.testing.assert_array_equal(x, np.arange(4.0))
    del k
    gc.collect()
    np.testing.assert_array_equal(y2 + 0, 2 * x)
    v = y2[1:]  # a view keeps the output block alive through the base chain
    del y2
    gc.collect()
    np.testing.assert_array_equal(v, [2.0, 4.0, 6.0])


def test_no_leak_over_many_calls(double):
    x = np.ones(4096)  # 32 KiB per output: 10,000 leaked outputs would be 320 MiB
    for _ in range(200):
        double[1]([x])
    before = rss_mb()
    for _ in range(10_000):
        double[1]([x])
    assert rss_mb() - before < 8


def test_no_leak_on_errors(build):
    k = Kernel(build("fail_leak", FAIL), 1, [], [])
    code = np.array(2, np.int64)
    for _ in range(200):
        with pytest.raises(IndexError):
            k([code])
    before = rss_mb()
    for _ in range(10_000):
        try:
            k([code])
        except IndexError:
            pass
    assert rss_mb() - before < 4


# --- errors --------------------------------------------------------------------

@pytest.mark.parametrize("code, exc", [(1, errors.ShapeError), (2, errors.IndexError),
                                       (3, ValueError), (4, MemoryError), (42, RuntimeError)])
def test_kernel_errors_map_to_exceptions(build, code, exc):
    k = Kernel(build("fail", FAIL), 1, ["float64"], [1])
    with pytest.raises(exc, match="take at model.py:12") as info:
        k([np.array(code, np.int64)])
    if code in (1, 2):
        assert isinstance(info.value, symgrad.SymgradError)
    if code == 2:
        assert isinstance(info.value, IndexError)  # the builtin, too
    if code == 42:
        assert "unknown code 42" in str(info.value)


def test_abi_version_mismatch_is_refused(build):
    lib = build("future", DOUBLE, version="SG_ABI_VERSION + 1", defines=["NDIM=1"])
    with pytest.raises(KernelLoadError, match="ABI version") as info:
        Kernel(lib, 1, ["float64"], [1])
    assert str(lib) in str(info.value) and info.value.path == str(lib)
    assert isinstance(info.value, ImportError) and isinstance(info.value, RuntimeError)


def test_refused_library_is_reloaded_after_a_rebuild(build, tmp_path):
    # The loader reuses an open library of the same path: a refused one must be closed.
    lib = tmp_path / "k.so"
    shutil.copy(build("old", DOUBLE, version="SG_ABI_VERSION + 1", defines=["NDIM=1"]), lib)
    with pytest.raises(KernelLoadError):
        Kernel(lib, 1, ["float64"], [1])
    tmp = tmp_path / "k.so.tmp"
    shutil.copy(build("new", DOUBLE, defines=["NDIM=1"]), tmp)
    os.replace(tmp, lib)
    np.testing.assert_array_equal(Kernel(lib, 1, ["float64"], [1])([np.ones(2)])[0], [2.0, 2.0])


def test_bad_libraries_are_refused(build, tmp_path):
    with pytest.raises(KernelLoadError, match="no sg_main"):
        Kernel(build("nomain", "int unrelated(void) { return 0; }\n"), 0, [], [])
    with pytest.raises(KernelLoadError, match="no sg_abi_version"):
        Kernel(build("noversion", DOUBLE, version=None, defines=["NDIM=1"]), 1, ["float64"], [1])
    missing = tmp_path / "missing.so"
    with pytest.raises(KernelLoadError, match="missing.so"):
        Kernel(missing, 1, [], [])
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"\x7fELF truncated")
    with pytest.raises(KernelLoadError, match="junk.so"):
        Kernel(junk, 1, [], [])


def test_bad_signature_arguments(double):
    path = double[1].path
    with pytest.raises(ValueError, match="2 output dtypes but 1"):
        Kernel(path, 1, ["float64", "float64"], [1])
    with pytest.raises(TypeError, match="cannot have dtype"):
        Kernel(path, 1, [">f8"], [1])
    with pytest.raises(TypeError, match="cannot have dtype"):
        Kernel(path, 1, [object], [1])
    with pytest.raises(ValueError, match="ndim"):
        Kernel(path, 1, ["float64"], [17])


def test_introspection(double):
    k = double[2]
    assert k.n_in == 1 and k.out_dtypes == (np.dtype("float64"),) and k.out_ndims == (2,)
    assert k.path.endswith("double2.so") and "double2.so" in repr(k)


# --- workspace -------------------------------------------------------------------

def test_workspace_grows_to_what_a_call_needed(build):
    k = Kernel(build("scratch", SCRATCH), 1, ["float64", "int64", "bool"], [1, 0, 0])
    x = np.arange(100.0)
    y, cap, overflow = k([x])
    np.testing.assert_array_equal(y, 2 * x)
    assert cap == 0 and overflow  # the first call had no arena
    assert k.arena_sizes() == [800 + 32]  # grown to `need`, rounded up to 64 bytes
    y, cap, overflow = k([x[::2]])
    assert cap == 832 and not overflow
    np.testing.assert_array_equal(y, 2 * x[::2])
    y, cap, overflow = k([np.arange(1000.0)])  # bigger: overflows once more, then fits
    assert overflow and k.arena_sizes() == [8000]
    assert not k([np.arange(1000.0)])[2]
    assert k.arena_sizes() == [8000]  # never shrinks


# --- threads and the GIL -------------------------------------------------------

def test_many_threads_call_one_kernel(build):
    k = Kernel(build("scratch_mt", SCRATCH), 1, ["float64", "int64", "bool"], [1, 0, 0])
    failures = []
    barrier = threading.Barrier(8)

    def work(seed):
        rng = np.random.default_rng(seed)
        barrier.wait()
        for _ in range(300):
            x = rng.normal(size=rng.integers(0, 2000))
            y = k([x])[0]
            if not np.array_equal(y, 2 * x):
                failures.append(seed)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert 1 <= len(k.arena_sizes()) <= 8  # one workspace per concurrent call, all returned


def test_the_gil_is_released_while_a_kernel_runs(build):
    k = Kernel(build("slow", SLOW), 1, ["float64"], [0])
    done = threading.Event()
    result = []

    def call():
        result.append(k([np.array(0.3)])[0])
        done.set()

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.02)  # let the call reach the kernel
    ticks = 0
    while not done.is_set():
        ticks += 1
    t.join()
    assert result == [0.3]
    # Holding the GIL, the kernel would leave this thread a few switch intervals at most.
    assert ticks > 10_000


def test_large_output_blocks_are_recycled_not_refaulted():
    import symgrad as sg

    x = sg.vector("x")
    f = sg.function([x], x * 2.0)
    big = np.arange(1 << 17, dtype="float64")  # 1 MiB: above the recycling threshold
    _runtime.trim_output_cache()
    first = f(big)
    address = first.ctypes.data
    del first
    assert _runtime.cached_output_bytes() >= big.nbytes
    second = f(big + 1)
    assert second.ctypes.data == address  # the same block, its pages already mapped
    np.testing.assert_array_equal(second, (big + 1) * 2)
    keep = [f(big) for _ in range(3)]  # live outputs never share a block
    assert len({a.ctypes.data for a in keep + [second]}) == 4
    del keep, second
    _runtime.trim_output_cache()
    assert _runtime.cached_output_bytes() == 0


def _vm_flags(address):
    """The VmFlags of the mapping of /proc/self/smaps holding ``address``."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(h, 16) for h in head.split("-"))
            inside = lo <= address < hi
        elif inside and head == "VmFlags:":
            return line.split()[1:]
    return None


_THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@pytest.mark.skipif(not _THP.exists() or "[never]" in _THP.read_text()
                    or not Path("/proc/self/smaps").exists(),
                    reason="transparent huge pages are Linux's, and here they are off")
def test_large_output_blocks_ask_for_huge_pages():
    """A block of 4 MB or more is advised MADV_HUGEPAGE: faulted in 2 MB at a time, where
    the 4 KB faults of a few hundred MB output cost more than computing it."""
    import symgrad as sg

    x = sg.vector("x")
    f = sg.function([x], x * 2.0)
    big = np.arange(1 << 20, dtype="float64")  # 8 MiB
    _runtime.trim_output_cache()
    large = f(big)
    np.testing.assert_array_equal(large, big * 2)
    assert "hg" in _vm_flags(large.ctypes.data + large.nbytes // 2)  # (not its first page)
    del large
    _runtime.trim_output_cache()


def _placeable(nbytes):
    """(keeper, address): memory of ``nbytes`` at a 64-byte aligned address with 64 bytes
    before it (the runtime's header), inside the NumPy array ``keeper``."""
    keeper = np.zeros(nbytes + 192, dtype=np.uint8)
    address = (keeper.ctypes.data + 64 + 63) // 64 * 64
    return keeper, address


@pytest.mark.parametrize("n", [1 << 10, 1 << 17])  # below and above the recycling threshold
def test_a_placed_output_is_written_at_the_callers_memory_once_and_never_freed(n):
    import symgrad as sg

    x = sg.vector("x")
    f = sg.function([x], x * 2.0)
    data = np.arange(n, dtype="float64")
    keeper, address = _placeable(data.nbytes)
    start = address - keeper.ctypes.data
    _runtime.trim_output_cache()
    _runtime.place_output(address, data.nbytes)
    out = f(data)
    assert out.ctypes.data == address
    np.testing.assert_array_equal(out, data * 2)
    np.testing.assert_array_equal(keeper[start:start + data.nbytes].view("float64"), data * 2)
    del out  # the caller's memory: not freed, not kept for reuse
    assert _runtime.cached_output_bytes() == 0
    again = f(data + 1)  # taken once: the next output is a block of the runtime's own
    assert again.ctypes.data != address
    np.testing.assert_array_equal(again, (data + 1) * 2)
    np.testing.assert_array_equal(keeper[start:start + data.nbytes].view("float64"), data * 2)
    del again
    _runtime.trim_output_cache()


def test_a_placed_output_waits_for_its_size_and_its_thread_and_can_be_taken_back():
    import threading

    import symgrad as sg

    x = sg.vector("x")
    f = sg.function([x], x * 2.0)
    data = np.arange(256, dtype="float64")
    keeper, address = _placeable(data.nbytes)
    _runtime.place_output(address, data.nbytes)
    try:
        assert f(data[:100]).ctypes.data != address  # another size: not this one
        other = []
        t = threading.Thread(target=lambda: other.append(f(data)))
        t.start()
        t.join()
        assert other[0].ctypes.data != address  # another thread: not this one
        assert f(data).ctypes.data == address  # still placed for this thread
        _runtime.place_output(address, data.nbytes)
        _runtime.place_output(0, 0)  # taken back
        assert f(data).ctypes.data != address
    finally:
        _runtime.place_output(0, 0)
    with pytest.raises(ValueError, match="not 64-byte aligned"):
        _runtime.place_output(address + 8, data.nbytes)


# --- the build of the runtime itself (issue #11 item 16) ---------------------------

@pytest.mark.slow
def test_the_runtime_builds_without_warnings(tmp_path):
    # GCC 14 makes -Wincompatible-pointer-types an error; at -Wall -Wextra
    # neither the Cython output nor csrc/ may warn (about 10 s: cython + cc).
    import sysconfig

    pytest.importorskip("Cython")
    if shutil.which(CC) is None:
        pytest.skip(f"no C compiler ({CC})")
    repo = Path(symgrad.__file__).parent.parent
    if not (repo / "csrc" / "sg_runtime.c").exists():
        pytest.skip("needs the source tree (csrc/)")
    generated = tmp_path / "_runtime.c"
    subprocess.run([os.sys.executable, "-m", "cython", "-3", "-I", str(repo / "csrc"),
                    str(repo / "symgrad" / "_runtime.pyx"), "-o", str(generated)],
                   check=True, capture_output=True)
    cmd = [CC, "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
           "-DNPY_NO_DEPRECATED_API=NPY_2_0_API_VERSION", f"-I{np.get_include()}",
           f"-I{repo / 'csrc'}", f"-I{INCLUDE}", f"-I{sysconfig.get_paths()['include']}"]
    for src in (generated, repo / "csrc" / "sg_runtime.c"):
        proc = subprocess.run(cmd + [str(src)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-4000:]


# --- closing libraries (issue #11 item 12) -----------------------------------------

def maps_count():
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


needs_maps = pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc")


@needs_maps
@pytest.mark.parametrize("loads", [500, pytest.param(5000, marks=pytest.mark.slow)])
def test_distinct_libraries_leave_no_mappings(build, tmp_path, loads):
    # Loads of distinct files: copies of one kernel, each a library of its own to
    # the loader (which shares a library only by path or file). Never closed, each
    # would leave its 4-5 mappings: 2,000 more for 500 loads against the 20 allowed,
    # so the quick run catches a leak as surely; the slow run is the 5,000-load soak.
    lib = build("double_copies", DOUBLE, defines=["NDIM=1"])
    x = np.arange(5.0)
    k = Kernel(lib, 1, ["float64"], [1])  # the loader's own first-time mappings
    del k
    gc.collect()
    before = maps_count()
    for i in range(loads):
        copy = tmp_path / f"copy{i}.so"
        shutil.copyfile(lib, copy)
        k = Kernel(copy, 1, ["float64"], [1])
        y = k([x])[0]
        del k
        copy.unlink()
        assert np.array_equal(y, 2 * x)  # the output outlives its library
    gc.collect()
    assert maps_count() <= before + 20


@needs_maps
def test_a_library_stays_while_any_kernel_or_call_holds_it(build):
    path = build("slow_close", SLOW)
    first, second = (Kernel(path, 1, ["float64"], [0]) for _ in range(2))
    del first
    gc.collect()
    assert float(second([np.array(0.01)])[0]) == 0.01  # still loaded: one kernel left
    result = []
    t = threading.Thread(target=lambda k: result.append(float(k([np.array(0.3)])[0])),
                         args=(second,))
    t.start()
    time.sleep(0.05)  # the call is inside the library now
    del second
    gc.collect()  # the running call holds its kernel: nothing is closed under it
    t.join()
    assert result == [0.3]
    assert not any(path.name in line for line in open("/proc/self/maps"))


@needs_maps
def test_functions_close_their_kernels_when_collected():
    import symgrad as sg

    x = sg.vector("x")
    keep = sg.function([x], (sg.exp(x) * 0.5).sum())  # BLAS and the loader, loaded once
    gc.collect()
    before = maps_count()
    for salt in range(8):  # 8 distinct kernels, each built or found, called, dropped
        f = sg.function([x], (sg.exp(x) * (salt + 2.0)).sum())
        assert float(f(np.zeros(3))) == 3 * (salt + 2.0)
        del f
    gc.collect()
    # never closed, 8 libraries would leave about 40 mappings
    assert maps_count() <= before + 10
    assert float(keep(np.zeros(2))) == 1.0


@pytest.mark.slow
@needs_maps
def test_5000_distinct_graphs_leave_no_mappings():
    # The literal soak: different graphs compiled (or found), called, dropped. CI's slow
    # run compiles 300 (about 1.5 min); the 5,000 take about an hour with an
    # empty cache (0.2-0.8 s a compile): SYMGRAD_SOAK_GRAPHS=5000 by hand.
    import symgrad as sg

    n = int(os.environ.get("SYMGRAD_SOAK_GRAPHS", 300))
    x = sg.vector("x")
    keep = sg.function([x], x.sum())
    gc.collect()
    before = maps_count()
    for i in range(n):
        f = sg.function([x], (x * float(i + 1)).sum())
        assert float(f(np.ones(2))) == 2.0 * (i + 1)
        del f
        if i % 500 == 0:
            gc.collect()
    gc.collect()
    assert maps_count() <= before + 30
    del keep
