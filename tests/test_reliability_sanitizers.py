"""AddressSanitizer and UndefinedBehaviorSanitizer over generated kernels and the runtime.

The runtime extension is built again with ``-fsanitize=address,undefined``
into a temporary directory (Cython, then the C compiler), and child
processes load it in place of the installed one (a ``sitecustomize`` module
registers it as ``symgrad._runtime`` before anything imports symgrad). The
kernels they compile get the same flags through ``SYMGRAD_CFLAGS``, into a
cache directory of their own. Python itself is not built with ASan, so the
children preload the compiler's ``libasan`` (``LD_PRELOAD``) and run with
``detect_leaks=0`` (the interpreter keeps memory on purpose); UBSan findings
abort (``-fno-sanitize-recover=undefined``), and so does every ASan report.

What runs: two canaries (a kernel writing past its buffer, a kernel with a
signed overflow) that must be caught, which proves the setup live; then the
registry fuzzing (every registered op, in groups, compiled, values and
gradients), a batch of random graphs, the runtime's tests and the in-place
update tests, alongside the
whole bad-input matrix in mode "c" (the two children run at once).
``SYMGRAD_SANITIZE=full`` adds more random graphs and the op registry's
compiled cases (slow: for a run by hand).

Skipped, saying why, only where the C compiler has no sanitizer runtime or
the runtime's sources (Cython, ``symgrad/_runtime.pyx``, ``csrc/``) are absent.
"""

import os
import shlex
import subprocess
import sys
import sysconfig
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import symgrad as sg
from symgrad.compiler import find_compiler

import bad_inputs  # tests/ is on sys.path (conftest.py)

# A sanitizer build and its runs take minutes: out of the default run, in `.ci/run`'s second.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
SYMGRAD_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(sg.__file__)))
FULL = os.environ.get("SYMGRAD_SANITIZE") == "full"
SANITIZE = "-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# Kernels: -O1 (ASan's advice) after the default -O2, which halves the compile time.
KERNEL_FLAGS = SANITIZE + " -O1"
ASAN_OPTIONS = ("detect_leaks=0:halt_on_error=1:abort_on_error=0:allocator_may_return_null=1:"
                "detect_stack_use_after_return=0")
UBSAN_OPTIONS = "print_stacktrace=1:halt_on_error=1"
FINDINGS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")

SITECUSTOMIZE = '''\
"""Load the sanitized runtime as symgrad._runtime (tests/test_reliability_sanitizers.py)."""
import importlib.util
import os
import sys

_path = os.environ.get("SYMGRAD_SANITIZED_RUNTIME")
if _path:
    _spec = importlib.util.spec_from_file_location("symgrad._runtime", _path)
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["symgrad._runtime"] = _module
    _spec.loader.exec_module(_module)
'''


def _runtime_library(cc, name):
    """The path of the compiler's ``lib<name>.so``, or None."""
    try:
        out = subprocess.run([*cc, f"-print-file-name=lib{name}.so"], capture_output=True,
                             text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out if os.path.isabs(out) and os.path.exists(out) else None


def _run(argv, cwd, **kw):
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory):
    """(environment, folder): Python children with it run the sanitized runtime and compile
    sanitized kernels."""
    try:
        cc = find_compiler()
    except sg.CompileError as e:
        pytest.skip(f"no C compiler: {e}")
    libasan = _runtime_library(cc, "asan")
    if libasan is None or _runtime_library(cc, "ubsan") is None:
        pytest.skip(f"the C compiler {cc[0]} has no ASan/UBSan runtime (libasan.so, libubsan.so)")
    pyx, csrc = ROOT / "symgrad" / "_runtime.pyx", ROOT / "csrc"
    if not pyx.exists() or not (csrc / "sg_runtime.c").exists():
        pytest.skip(f"the runtime's sources are not here ({pyx}, {csrc})")
    try:
        import Cython  # noqa: F401
    except ImportError:
        pytest.skip("Cython is not installed (it is in the [test] extra): the runtime cannot "
                    "be rebuilt")
    work = tmp_path_factory.mktemp("sanitized")
    probe = work / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    if _run([*cc, *shlex.split(SANITIZE), str(probe), "-o", str(work / "probe")], work).returncode:
        pytest.skip(f"the C compiler {cc[0]} cannot link -fsanitize=address,undefined programs")

    c_file = work / "_runtime.c"
    proc = _run([sys.executable, "-m", "cython", "-3", str(pyx), "-o", str(c_file)], work)
    assert proc.returncode == 0, proc.stderr
    import numpy
    lib = work / f"_runtime{sysconfig.get_config_var('EXT_SUFFIX')}"
    proc = _run([*cc, "-shared", "-fPIC", "-O1", *shlex.split(SANITIZE), "-w",
                 f"-I{sysconfig.get_paths()['include']}", f"-I{numpy.get_include()}",
                 f"-I{csrc}", f"-I{ROOT / 'symgrad' / 'include'}",
                 "-DNPY_NO_DEPRECATED_API=NPY_2_0_API_VERSION", str(c_file),
                 str(csrc / "sg_runtime.c"), "-o", str(lib), "-ldl", "-lpthread"], work)
    assert proc.returncode == 0, proc.stderr[-4000:]
    site = work / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ, LD_PRELOAD=libasan, ASAN_OPTIONS=ASAN_OPTIONS,
               UBSAN_OPTIONS=UBSAN_OPTIONS, SYMGRAD_SANITIZED_RUNTIME=str(lib),
               SYMGRAD_CFLAGS=KERNEL_FLAGS, SYMGRAD_CACHE_DIR=str(work / "cache"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(site), SYMGRAD_PARENT, str(TESTS),
                                                        os.environ.get("PYTHONPATH")])))
    env.pop("SYMGRAD_MODE", None)
    check = _run([sys.executable, "-c", "import symgrad._runtime as r; print(r.__file__)"], work,
                 env=env)
    assert check.returncode == 0 and check.stdout.strip() == str(lib), check.stderr
    return env, work


def _findings(text):
    return [line for line in text.splitlines() if any(f in line for f in FINDINGS)]


# A kernel with a bug of each kind; the sanitizers must stop the process.
CANARY = textwrap.dedent(r"""
    import sys
    import numpy as np
    from symgrad import compiler
    from symgrad._runtime import Kernel
    body = {
        "heap": "double *y = malloc(n * sizeof *y); for (int64_t i = 0; i <= n; i++) y[i] = i;",
        "overflow": "double *y = malloc(sizeof *y); int32_t big = (int32_t)n; "
                    "big += 2147483647; y[0] = big;",
    }[sys.argv[1]]
    src = '''#include <stdint.h>
    #include <stdlib.h>
    #include "sg_abi.h"
    int sg_abi_version(void) { return SG_ABI_VERSION; }
    int sg_main(const sg_arr *in, sg_arr *out, sg_ws *ws, sg_err *err)
    {
        (void)ws; (void)err;
        int64_t n = *(const int64_t *)in[0].data;
        %s
        out[0].data = y;
        return SG_OK;
    }
    ''' % body
    k = Kernel(compiler.compile_library(src, name="canary"), 1, ["float64"], [0])
    print("returned", k([np.array(4, np.int64)]))
""")


@pytest.mark.parametrize("bug, report", [("heap", "AddressSanitizer: heap-buffer-overflow"),
                                         ("overflow", "runtime error: signed integer overflow")])
def test_the_sanitizers_catch_a_bad_kernel(sanitized, bug, report):
    env, work = sanitized
    proc = _run([sys.executable, "-c", CANARY, bug], work, env=env)
    assert proc.returncode != 0 and "returned" not in proc.stdout, proc.stdout + proc.stderr
    assert report in proc.stderr, proc.stderr[-3000:]


def _pytest_child(env, work):
    # Every group of the registry fuzzing: each registered op runs compiled under the
    # sanitizers, values and gradients.
    env = dict(env, SYMGRAD_FUZZ_EXAMPLES="20" if FULL else "3")
    # ... and updates written over their shared variable's memory (ownership of
    # a donated block passes between the runtime and the kernel).
    tests = [str(TESTS / "test_reliability_fuzz.py"), str(TESTS / "test_runtime.py"),
             str(TESTS / "test_inplace_updates.py")]
    if FULL:
        tests.append(str(TESTS / "test_registry.py") + "::test_compiled_matches_reference")
    # Leak tests measure RSS, which ASan's quarantine of freed blocks inflates on purpose.
    # The registry groups are marked slow, so the marker filter is lifted; the other slow
    # tests of these files (huge lengths, the 5,000-graph soak, the runtime's warning-free
    # build) are not sanitizer work. One process: the children share one sanitized build.
    skip = "not leak and not huge_lengths and not 5000_distinct and not without_warnings"
    return _run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                 "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"), "-n", "0",
                 "-m", "", "-k", skip, *tests], work, env=env)


@pytest.fixture(scope="module")
def children(sanitized):
    """The two sanitized runs, started together (each is mostly one compiler at a time)."""
    env, work = sanitized
    ids = [c.id for c in bad_inputs.cases()]
    pool = ThreadPoolExecutor(2)
    runs = {"pytest": pool.submit(_pytest_child, env, work),
            "matrix": pool.submit(bad_inputs.run_matrix, "c", ids, env, work)}
    yield runs, ids
    pool.shutdown(wait=True)


def test_registry_fuzzing_and_runtime_under_sanitizers(children):
    runs, _ = children
    proc = runs["pytest"].result()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and not _findings(out), out[-6000:]
    print(out.strip().splitlines()[-1])


def test_bad_input_matrix_under_sanitizers(children):
    runs, ids = children
    results = runs["matrix"].result()
    bad = {i: r["detail"] for i, r in results.items() if not r["ok"]}
    assert not bad, "\n".join(f"{i}: {d[-1500:]}" for i, d in bad.items())
    assert sorted(results) == sorted(ids)
