"""Shared helpers for the benchmarks: timing with repeats, a small table printer."""

import time

import numpy as np


def best_time(fn, *args, repeat=7, min_time=0.2):
    """The best per-call time in seconds over ``repeat`` rounds of enough calls to last ``min_time``."""
    fn(*args)
    n, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn(*args)
        t = time.perf_counter() - t0
        if t >= min_time / repeat or n >= 1 << 20:
            break
        n *= 2
    best = t / n
    for _ in range(repeat - 1):
        t0 = time.perf_counter()
        for _ in range(n):
            fn(*args)
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def blas_kernels():
    """Which OpenBLAS kernels run: symgrad's (scipy-openblas32) and NumPy's, as a line.

    OpenBLAS picks its kernels for the CPU when it loads unless
    ``OPENBLAS_CORETYPE`` forces a choice. Some machines set it to an older
    core (Haswell: AVX2) for old OpenBLAS builds' sake, which halves a
    current OpenBLAS's float32 gemm on an AVX-512 CPU; comparisons with
    peers that bring their own gemm (JAX) are only fair without it:
    ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/...``.
    """
    import ctypes
    import glob
    import os

    import numpy  # noqa: F401 - loads NumPy's OpenBLAS

    names = {}
    try:
        import scipy_openblas32 as so

        lib = ctypes.CDLL(glob.glob(os.path.join(so.get_lib_dir(), "libscipy_openblas*"))[0])
        lib.scipy_openblas_get_corename.restype = ctypes.c_char_p
        names["symgrad"] = lib.scipy_openblas_get_corename().decode()
    except (ImportError, IndexError, OSError, AttributeError):
        names["symgrad"] = "?"
    try:
        with open("/proc/self/maps") as maps:
            path = next(line.split()[-1] for line in maps if "openblas" in line
                        and "numpy" in line and line.split()[-1].endswith(".so"))
        lib = ctypes.CDLL(path)
        fn = next(getattr(lib, n) for n in ("scipy_openblas_get_corename64_",
                                            "openblas_get_corename64_", "openblas_get_corename")
                  if hasattr(lib, n))
        fn.restype = ctypes.c_char_p
        names["NumPy"] = fn().decode()
    except (StopIteration, OSError):
        names["NumPy"] = "?"
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return ("OpenBLAS kernels: " + ", ".join(f"{k} {v}" for k, v in names.items())
            + (f" (OPENBLAS_CORETYPE={forced} forces them)" if forced else ""))


def table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join(f"{h:<{w}}" for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(f"{str(c):<{w}}" for c, w in zip(r, widths)))


def rng(seed=0):
    return np.random.default_rng(seed)


def cores():
    """The cores this process may run on."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_per_thread_count(script):
    """Run ``script --child`` once per thread count (1, then every core), each in a process
    of its own with SYMGRAD_NUM_THREADS, OPENBLAS_NUM_THREADS and OMP_NUM_THREADS set:
    BLAS reads its thread count when it loads."""
    import os
    import subprocess
    import sys

    for t in sorted({1, cores()}):
        env = dict(os.environ, SYMGRAD_NUM_THREADS=str(t), OPENBLAS_NUM_THREADS=str(t),
                   OMP_NUM_THREADS=str(t))
        subprocess.run([sys.executable, script, "--child"], env=env, check=True)


def start_child(torch_first=True):
    """What a child of :func:`run_per_thread_count` does first: with one thread, keep the
    whole process on one core (JAX ignores thread settings); print the BLAS kernels; and
    import PyTorch, where installed, before any kernel loads, as a user of both would."""
    import os

    if os.environ.get("SYMGRAD_NUM_THREADS") == "1" and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(blas_kernels())
    if torch_first:
        try:
            import torch  # noqa: F401
        except ImportError:
            pass
