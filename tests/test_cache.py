"""The compile driver and the on-disk kernel cache (symgrad.compiler, symgrad.cache)."""

import ctypes
import json
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

import symgrad as sg
from symgrad import _runtime, cache, compiler

# Children import the same symgrad as this process (installed or source tree).
SYMGRAD_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(sg.__file__)))

SOURCE = r"""
#include <cblas.h>
#include "sg_abi.h"
int sg_abi_version(void) { return SG_ABI_VERSION; }
double twice(double x) { return x * 2; }
double dot(const double *a, const double *b, int n) { return scipy_cblas_ddot(n, a, 1, b, 1); }
"""

# A child process that must find `source` in the cache: compiling is made to fail.
HIT_CHILD = r"""
import sys, time
from symgrad import compiler
def no_compile(*args, **kwargs):
    raise AssertionError("the compiler ran on a cache hit")
compiler._run_compiler = no_compile
source = open(sys.argv[1]).read()
t = time.perf_counter()
path = compiler.compile_library(source)
print(path, time.perf_counter() - t)
"""

# A child that waits at a file barrier, then compiles, so that all start together.
RACE_CHILD = r"""
import os, sys, time
from symgrad import compiler
source, ready, go = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3]
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
print(compiler.compile_library(source))
"""


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    path = str(tmp_path / "c")
    monkeypatch.setattr(sg.config, "cache_dir", path)
    return path


@pytest.fixture
def compiles(monkeypatch):
    """Count the libraries this test builds: the compiler runs that write a ``.so`` (a
    kernel's units compile in runs of their own, then one links them)."""
    calls = []
    real = compiler._run_compiler

    def counting(argv, cwd):
        if any(a.endswith(".so") for a in argv):
            calls.append(argv)
        return real(argv, cwd)

    monkeypatch.setattr(compiler, "_run_compiler", counting)
    return calls


def child(args, cache_path, **kwargs):
    """Start a Python child with this process's symgrad; run outside the source
    tree, since ``-c`` and ``-m`` put the working directory first on sys.path."""
    return subprocess.Popen([sys.executable, *args], env=child_env(cache_path),
                            cwd=os.path.dirname(cache_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def run_child(args, cache_path):
    proc = child(args, cache_path)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def child_env(cache_path):
    env = dict(os.environ, SYMGRAD_CACHE_DIR=cache_path)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SYMGRAD_PARENT, env.get("PYTHONPATH")]))
    return env


def load(path):
    lib = ctypes.CDLL(path)
    lib.twice.restype = ctypes.c_double
    lib.twice.argtypes = [ctypes.c_double]
    lib.dot.restype = ctypes.c_double
    lib.dot.argtypes = [ctypes.POINTER(ctypes.c_double)] * 2 + [ctypes.c_int]
    return lib


def entries(cache_path):
    return list(cache.entries(cache_path))


def listing(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def test_compiles_loads_and_links_blas(cache_dir):
    path = compiler.compile_library(SOURCE)
    lib = load(path)
    assert lib.sg_abi_version() == _runtime.ABI_VERSION
    assert lib.twice(3.5) == 7.0
    a = (ctypes.c_double * 3)(1, 2, 3)
    b = (ctypes.c_double * 3)(4, 5, 6)
    assert lib.dot(a, b, 3) == 32.0
    [entry] = entries(cache_dir)
    assert path == os.path.join(entry, "kernel.so")
    assert sorted(os.listdir(entry)) == ["kernel.c", "kernel.so", "meta.json"]
    with open(os.path.join(entry, "meta.json")) as f:
        meta = json.load(f)
    assert meta["key"] == os.path.basename(entry) and meta["size"] == os.path.getsize(path)
    assert "-march=native" in meta["flags"] and meta["compiler"]["path"]
    assert stat.S_IMODE(os.stat(cache_dir).st_mode) == 0o700
    assert listing(os.path.join(cache_dir, "tmp")) == []


def test_second_compile_is_a_hit(cache_dir, monkeypatch):
    path = compiler.compile_library(SOURCE)

    def no_compile(*args, **kwargs):
        raise AssertionError("the compiler ran on a cache hit")

    monkeypatch.setattr(compiler, "_run_compiler", no_compile)
    assert compiler.compile_library(SOURCE) == path


def test_hit_from_a_new_process(cache_dir, tmp_path):
    path = compiler.compile_library(SOURCE)
    before = os.stat(path)
    src = tmp_path / "k.c"
    src.write_text(SOURCE)
    rc, out, err = run_child(["-c", HIT_CHILD, str(src)], cache_dir)
    assert rc == 0, err
    child_path, seconds = out.split()
    assert child_path == path
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    print(f"cache hit in a new process: {float(seconds) * 1e3:.1f} ms")


def test_four_processes_compile_one_source_at_once(cache_dir, tmp_path):
    src = tmp_path / "k.c"
    src.write_text(SOURCE + "/* raced */\n")
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(4)]
    procs = [child(["-c", RACE_CHILD, str(src), str(r), str(go)], cache_dir) for r in ready]
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        time.sleep(0.005)
    go.touch()
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in results]
    paths = {out.strip() for out, _ in results}
    [entry] = entries(cache_dir)
    assert paths == {os.path.join(entry, "kernel.so")}
    assert cache.verify_entry(entry) is None
    assert listing(os.path.join(cache_dir, "tmp")) == []
    assert listing(os.path.join(cache_dir, "trash")) == []


def test_a_builder_that_loses_the_race_uses_the_winner(cache_dir, monkeypatch):
    real = compiler._run_compiler

    def beaten(argv, cwd):
        # Another builder publishes the same key while this one compiles.
        monkeypatch.setattr(compiler, "_run_compiler", real)
        winner.append(compiler.compile_library(SOURCE))
        return real(argv, cwd)

    winner = []
    monkeypatch.setattr(compiler, "_run_compiler", beaten)
    path = compiler.compile_library(SOURCE)
    assert [path] == winner
    [entry] = entries(cache_dir)
    assert cache.verify_entry(entry) is None
    assert listing(os.path.join(cache_dir, "tmp")) == []


def _lib(entry):
    [name] = [f for f in os.listdir(entry) if f.endswith(".so")]
    return os.path.join(entry, name)


def _truncate(entry):
    lib = _lib(entry)
    os.truncate(lib, os.path.getsize(lib) // 2)


def _flip_byte(entry):
    with open(_lib(entry), "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))


def _garbage_meta(entry):
    with open(os.path.join(entry, "meta.json"), "w") as f:
        f.write("{not json")


def _no_library(entry):
    os.remove(_lib(entry))


@pytest.mark.parametrize("corrupt", [_truncate, _flip_byte, _garbage_meta, _no_library])
def test_a_corrupt_entry_is_rebuilt(cache_dir, compiles, corrupt):
    path = compiler.compile_library(SOURCE)
    [entry] = entries(cache_dir)
    corrupt(entry)
    assert cache.verify_entry(entry) is not None
    assert compiler.compile_library(SOURCE) == path
    assert len(compiles) == 2
    assert cache.verify_entry(entry) is None
    assert load(path).twice(1.0) == 2.0
    assert listing(os.path.join(cache_dir, "trash")) == []


def test_an_abandoned_build_leaves_the_cache_usable(cache_dir, compiles):
    # A compiler killed mid-write leaves a half-written build directory behind.
    stale = cache.new_build_dir(cache.root(), "0" * 64)
    with open(os.path.join(stale, "kernel.so"), "wb") as f:
        f.write(b"\x7fELF half")
    assert load(compiler.compile_library(SOURCE)).twice(2.0) == 4.0
    old = time.time() - cache.STALE_BUILD_S - 10
    os.utime(stale, (old, old))
    assert cache.main(["verify"]) == 0
    assert not os.path.exists(stale)


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_a_cache_dir_writable_by_others_is_refused(cache_dir, mode):
    os.mkdir(cache_dir)
    os.chmod(cache_dir, mode)
    with pytest.raises(sg.CompileError) as info:
        compiler.compile_library(SOURCE)
    message = str(info.value)
    assert cache_dir in message and f"{mode:o}" in message
    assert "chmod 700" in message and "SYMGRAD_CACHE_DIR" in message
    assert listing(cache_dir) == []


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="chown needs root")
def test_a_cache_dir_owned_by_another_user_is_refused(cache_dir):
    os.mkdir(cache_dir, 0o700)
    os.chown(cache_dir, 65534, 65534)
    with pytest.raises(sg.CompileError, match="owned by uid 65534"):
        compiler.compile_library(SOURCE)


def test_missing_parents_are_created_private(tmp_path, monkeypatch):
    monkeypatch.setattr(sg.config, "cache_dir", str(tmp_path / "a" / "b" / "c"))
    cache.root()
    for d in ("a", "a/b", "a/b/c"):
        assert stat.S_IMODE(os.stat(tmp_path / d).st_mode) == 0o700


def test_a_compiler_error_names_stderr_and_keeps_the_source(cache_dir):
    bad = "int broken(void) { return undeclared_variable_xyz; }\n"
    with pytest.raises(sg.CompileError) as info:
        compiler.compile_library(bad, name="broken")
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert "undeclared_variable_xyz" in message and "error" in message
    [kept] = [w for w in message.split() if w.endswith(".c") and os.path.isabs(w)]
    with open(kept) as f:
        assert f.read() == bad
    assert entries(cache_dir) == [] and listing(os.path.join(cache_dir, "tmp")) == []


def test_long_compiler_output_is_trimmed():
    proc = subprocess.CompletedProcess(["cc"], 1, stdout="", stderr="e" * 20000)
    message = compiler._failure_message(["cc"], proc, "/x/k.c")
    assert len(message) < compiler.STDERR_CHARS + 500 and "12000 more characters" in message


def test_a_missing_compiler_says_what_to_do(cache_dir, monkeypatch):
    monkeypatch.setattr(sg.config, "cc", "/nonexistent/cc")
    with pytest.raises(sg.CompileError) as info:
        compiler.compile_library(SOURCE)
    message = str(info.value)
    for words in ("no C compiler", "/nonexistent/cc", "SYMGRAD_CC", "apt-get install gcc",
                  'mode="py"'):
        assert words in message


def test_extra_cflags_reach_the_compiler_and_the_key(cache_dir, monkeypatch):
    source = "int value(void) { return SG_TEST_VALUE; }\n"
    monkeypatch.setattr(sg.config, "cflags", "-DSG_TEST_VALUE=41")
    first = compiler.compile_library(source)
    monkeypatch.setattr(sg.config, "cflags", ["-DSG_TEST_VALUE=42"])
    second = compiler.compile_library(source)
    assert first != second
    assert (ctypes.CDLL(first).value(), ctypes.CDLL(second).value()) == (41, 42)


def test_the_key_covers_source_name_and_flags():
    argv = compiler.compiler_argv(compiler.find_compiler(), "kernel")
    key = compiler.cache_key(SOURCE, "kernel", argv)
    assert key == compiler.cache_key(SOURCE, "kernel", argv)
    assert key != compiler.cache_key(SOURCE + " ", "kernel", argv)
    assert key != compiler.cache_key(SOURCE, "other", argv)
    assert key != compiler.cache_key(SOURCE, "kernel", argv + ["-g"])


def test_a_name_that_is_not_an_identifier_is_refused(cache_dir):
    with pytest.raises(ValueError, match="C identifier"):
        compiler.compile_library(SOURCE, name="../escape")


def test_blas_flags_agree_with_the_package():
    scipy_openblas32 = pytest.importorskip("scipy_openblas32")
    expected = (scipy_openblas32.get_include_dir(), scipy_openblas32.get_lib_dir(),
                scipy_openblas32.get_library())
    assert tuple(map(os.path.realpath, compiler.blas_flags()[:2])) == tuple(
        map(os.path.realpath, expected[:2]))
    assert compiler.blas_flags()[2] == expected[2]


def test_cli_info_verify_clear(cache_dir, capsys):
    assert cache.main(["info"]) == 0  # the directory does not exist yet
    compiler.compile_library(SOURCE)
    compiler.compile_library(SOURCE, name="second")
    assert cache.main(["info"]) == 0
    out = capsys.readouterr().out
    assert cache_dir in out and "entries:   2" in out
    assert cache.main(["verify"]) == 0
    _truncate(entries(cache_dir)[0])
    assert cache.main(["verify"]) == 1
    assert "corrupt, removed" in capsys.readouterr().out
    assert len(entries(cache_dir)) == 1
    assert cache.main(["clear"]) == 0
    assert entries(cache_dir) == [] and listing(cache_dir) == ["tmp"]


def test_cli_refuses_an_unsafe_directory(cache_dir, capsys):
    os.mkdir(cache_dir)
    os.chmod(cache_dir, 0o777)
    assert cache.main(["info"]) == 2
    assert "chmod 700" in capsys.readouterr().err


def test_cli_runs_as_a_module(cache_dir):
    compiler.compile_library(SOURCE)
    rc, out, err = run_child(["-m", "symgrad.cache", "info"], cache_dir)
    assert rc == 0 and "entries:   1" in out
    assert "Warning" not in err, err


def test_comments_do_not_change_the_key():
    """The renderer hands comments over apart from the code (``CWriter.comment``): the key
    hashes the code, never a text searched for comments."""
    from symgrad.codegen.writer import Comment

    argv = compiler.compiler_argv(compiler.find_compiler(), "kernel")

    def key(*lines):
        return compiler.cache_key(compiler.CSource([compiler.Unit("kernel.c", list(lines))]),
                                  "kernel", argv)

    a = key(Comment('/* K1: add at "x/*y.py":3 */'), "int f(void) { return 1; }")
    b = key(Comment("/* K1: add at x.py:3 (gradient of mul) */"), "int f(void) { return 1; }")
    c = key(Comment('/* K1: add at "x/*y.py":3 */'), "int f(void) { return 2; }")
    assert a == b != c
    # a comment marker inside a string is code, and so is the text of a plain string
    d = key('const char *s = "/* x */"; int f(void) { return 1; }')
    e = key('const char *s = "/* y */"; int f(void) { return 1; }')
    assert d != e
    assert compiler.cache_key("int f; /* x */", "kernel", argv) != \
        compiler.cache_key("int f; /* y */", "kernel", argv)


def test_an_unpickled_train_step_with_rewritten_updates_is_a_cache_hit(cache_dir, compiles):
    import pickle

    X, y = sg.matrix("X"), sg.vector("y", dtype="int64")
    W, b = sg.shared(np.ones((4, 3)), name="W"), sg.shared(np.zeros(3), name="b")
    loss = sg.nn.cross_entropy(X @ W + b, y).mean()
    gW, gb = sg.grad(loss, [W, b])  # the update becomes one gemm whose errors name X @ W's line
    f = sg.function([X, y], loss, updates=[(W, W - 0.1 * gW), (b, b - 0.1 * gb)])
    assert "gemm" in f.source and len(compiles) == 1
    g = pickle.loads(pickle.dumps(f))
    assert g.cache_hit and len(compiles) == 1
    assert [u.code for u in g.source.units] == [u.code for u in f.source.units]


def _units_source(broken=False):
    """A library of a header and three units: two of glue (-O0), one computed (-O2)."""
    from symgrad.codegen.writer import Comment

    head = compiler.Unit("lib_frame.h", ["int twice(int v);", "int thrice(int v);"])
    body = "return undeclared_xyz;" if broken else "return twice(v) + v;"
    return compiler.CSource([
        head,
        compiler.Unit("lib_rows.c", [Comment("/* computed */"), "int twice(int v) { return 2 * v; }"]),
        compiler.Unit("lib_steps0.c", [f"int thrice(int v) {{ {body} }}"], glue=True),
        compiler.Unit("lib_steps1.c", ["int sg_abi_version(void) { return thrice(1); }"],
                      glue=True)])


def test_units_compile_side_by_side_then_link(cache_dir, monkeypatch):
    import threading
    import time

    running, most = [0], [0]
    lock = threading.Lock()
    real = compiler._run_compiler

    def slow(argv, cwd):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.3 if "-c" in argv else 0)
        try:
            return real(argv, cwd)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(compiler, "_run_compiler", slow)
    monkeypatch.setattr(compiler, "_jobs", lambda: 3)
    source = _units_source()
    assert str(source).startswith("/* ==== lib_frame.h ==== */\n")
    path = compiler.compile_library(source, name="lib")
    assert most[0] == 3
    assert ctypes.CDLL(path).sg_abi_version() == 3
    # other comments, the same key
    from symgrad.codegen.writer import Comment

    other = compiler.CSource([u if u.name != "lib_rows.c" else compiler.Unit(
        "lib_rows.c", [Comment("/* other */"), "int twice(int v) { return 2 * v; }"])
        for u in source.units])
    assert compiler.cache_key(source, "lib", ["cc"]) == compiler.cache_key(other, "lib", ["cc"])


def test_a_failing_unit_names_itself_and_keeps_the_whole_source(cache_dir):
    source = _units_source(broken=True)
    with pytest.raises(sg.CompileError) as info:
        compiler.compile_library(source, name="lib")
    message = str(info.value)
    assert "lib_steps0.c" in message and "undeclared_xyz" in message and "-O0" in message
    [kept] = [w for w in message.split() if w.endswith(".c") and os.path.isabs(w)]
    with open(kept) as f:
        assert f.read() == str(source)
