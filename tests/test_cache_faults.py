"""Faults of the kernel cache and of the machine around it (issue #11 items 6, 8-11).

Damaged entries (FIFOs, links to /dev/zero, files where folders belong,
unreadable libraries) are ignored and rebuilt; an unusable cache directory
raises ``sg.CacheError`` naming the path, the problem and SYMGRAD_CACHE_DIR;
a filled cache needs no compiler; abandoned builds and failed sources stay
bounded. Whatever could hang runs in a child process with a timeout.

Permission tests need a process the permission bits apply to. As root, the
child drops CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER from its
bounding set before exec: it keeps uid 0 (so it can still read the Python
and the headers under /root) but obeys the mode bits, like any user.
"""

import ctypes
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

import symgrad as sg
from symgrad import cache, compiler

SYMGRAD_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(sg.__file__)))

SOURCE = r"""
#include "sg_abi.h"
int sg_abi_version(void) { return SG_ABI_VERSION; }
double twice(double x) { return x * 2; }
"""

# Compiles SOURCE (argv[1]: a file holding it) and prints the library's path.
COMPILE = r"""
import ctypes, sys
from symgrad import compiler
path = compiler.compile_library(open(sys.argv[1]).read())
lib = ctypes.CDLL(path)
lib.twice.restype, lib.twice.argtypes = ctypes.c_double, [ctypes.c_double]
assert lib.twice(2.0) == 4.0
print(path)
"""


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    path = str(tmp_path / "c")
    monkeypatch.setattr(sg.config, "cache_dir", path)
    return path


def python(code, *args, env=None, drop_privileges=False, timeout=60):
    """Run `code` in a child Python with this symgrad; return the CompletedProcess."""
    full_env = dict(os.environ if env is None else env)
    full_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [SYMGRAD_PARENT, full_env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=full_env,
                          cwd="/", capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_drop_dac if drop_privileges else None)


def _drop_dac():
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            os._exit(97)


def _bits_apply():
    """Skip unless a child can be made that obeys permission bits."""
    if not hasattr(os, "getuid"):
        pytest.skip("POSIX permissions only")
    if os.getuid() != 0:
        return False
    probe = python("open('/proc/self/status').read()", drop_privileges=True)
    if probe.returncode == 97:
        pytest.skip("root, and the capabilities that bypass permission bits cannot be dropped")
    return True


def source_file(tmp_path, text=SOURCE):
    path = tmp_path / "source.c"
    path.write_text(text)
    return path


def fill(cache_dir, tmp_path):
    """Compile SOURCE into the cache (`cache_dir`); return (entry, library path)."""
    path = compiler.compile_library(SOURCE)
    return os.path.dirname(path), path


def twice(path):
    lib = ctypes.CDLL(path)
    lib.twice.restype, lib.twice.argtypes = ctypes.c_double, [ctypes.c_double]
    return lib.twice(21.0)


# --- item 6: no trigraphs ---------------------------------------------------------

def test_trigraphs_in_string_literals_stay_as_written(cache_dir):
    # Under -std=c99 "??/" is a backslash: the first string would read "a\b=c"
    # and the second would not end (a compile error).
    src = ('const char *text(void) { return "a??/b??=c"; }\n'
           'const char *tail(void) { return "x??/"; }\n')
    lib = ctypes.CDLL(compiler.compile_library(src))
    lib.text.restype = lib.tail.restype = ctypes.c_char_p
    assert (lib.text(), lib.tail()) == (b"a??/b??=c", b"x??/")


def test_kernels_keep_iso_rounding_without_trigraphs():
    # GNU modes would contract a*b+c into fma unless told not to.
    assert "-std=gnu11" in compiler.BASE_FLAGS and "-ffp-contract=off" in compiler.BASE_FLAGS


# --- item 8: damaged entries are rebuilt, never followed or read unbounded ---------

def _meta_fifo(entry):
    os.remove(os.path.join(entry, "meta.json"))
    os.mkfifo(os.path.join(entry, "meta.json"))


def _meta_dev_zero(entry):
    os.remove(os.path.join(entry, "meta.json"))
    os.symlink("/dev/zero", os.path.join(entry, "meta.json"))


def _meta_huge(entry):
    with open(os.path.join(entry, "meta.json"), "ab") as f:
        f.write(b" " * (cache.META_MAX_BYTES + 1))


def _library_fifo(entry):
    os.remove(os.path.join(entry, "kernel.so"))
    os.mkfifo(os.path.join(entry, "kernel.so"))


def _library_symlink(entry):
    lib = os.path.join(entry, "kernel.so")
    os.rename(lib, lib + ".real")  # the same bytes, but reached through a link
    os.symlink(lib + ".real", lib)


def _entry_is_a_file(entry):
    _remove_tree(entry)
    with open(entry, "w") as f:
        f.write("x")


def _shard_is_a_file(entry):
    shard = os.path.dirname(entry)
    _remove_tree(shard)
    with open(shard, "w") as f:
        f.write("x")


def _shard_is_a_symlink(entry):
    # A shard linked elsewhere must be neither listed nor emptied through the link.
    shard = os.path.dirname(entry)
    elsewhere = shard + ".elsewhere"
    os.rename(shard, elsewhere)
    os.symlink(elsewhere, shard)


def _tmp_is_a_file(entry):
    root = os.path.dirname(os.path.dirname(entry))
    _remove_tree(entry)
    for d in ("tmp", "trash"):
        _remove_tree(os.path.join(root, d))
        with open(os.path.join(root, d), "w") as f:
            f.write("x")


def _remove_tree(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


DAMAGE = [_meta_fifo, _meta_dev_zero, _meta_huge, _library_fifo, _library_symlink,
          _entry_is_a_file, _shard_is_a_file, _shard_is_a_symlink, _tmp_is_a_file]


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_entry_is_rebuilt_in_a_new_process(cache_dir, tmp_path, damage):
    entry, path = fill(cache_dir, tmp_path)
    damage(entry)
    proc = python(COMPILE, source_file(tmp_path), env=dict(os.environ, SYMGRAD_CACHE_DIR=cache_dir),
                  timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == path
    assert cache.verify_entry(entry) is None
    # no link any more, on the way or at the end
    assert stat.S_ISDIR(os.lstat(os.path.dirname(entry)).st_mode)
    assert stat.S_ISREG(os.lstat(path).st_mode)
    if damage is _shard_is_a_symlink:  # what the link pointed at is untouched
        assert os.listdir(os.path.dirname(entry) + ".elsewhere") == [os.path.basename(entry)]


def test_verify_reports_and_repairs_every_damage(cache_dir, tmp_path):
    sources = [SOURCE + f"int variant{i}(void) {{ return {i}; }}\n" for i in range(4)]
    entries = [os.path.dirname(compiler.compile_library(s)) for s in sources]
    _meta_fifo(entries[0])
    _meta_dev_zero(entries[1])
    _library_symlink(entries[3])
    _remove_tree(os.path.join(cache_dir, "tmp"))
    with open(os.path.join(cache_dir, "tmp"), "w") as f:  # a file where a folder belongs
        f.write("x")
    # a file where a shard folder belongs: a shard none of the four entries lives in
    shard = next(f"{i:02x}" for i in range(255, -1, -1)
                 if not os.path.exists(os.path.join(cache_dir, f"{i:02x}")))
    with open(os.path.join(cache_dir, shard), "w") as f:
        f.write("x")
    env = dict(os.environ, SYMGRAD_CACHE_DIR=cache_dir)
    proc = python("import sys; from symgrad import cache; sys.exit(cache.main(['verify']))",
                  env=env, timeout=60)
    assert proc.returncode == 1, proc.stderr[-3000:]
    out = proc.stdout
    assert f"{entries[0]}: meta.json is unreadable (not a regular file)" in out
    assert f"{entries[1]}: meta.json is unreadable (a symbolic link)" in out
    assert f"{entries[3]}: kernel.so is unreadable (a symbolic link)" in out
    assert f"{os.path.join(cache_dir, 'tmp')}: it is a file where a directory belongs" in out
    assert f"{os.path.join(cache_dir, shard)}: it is a file where a directory belongs" in out
    assert "5 corrupt entries removed" in out
    again = python("import sys; from symgrad import cache; sys.exit(cache.main(['verify']))",
                   env=env, timeout=60)
    assert again.returncode == 0 and "0 corrupt entries removed" in again.stdout
    assert list(cache.entries(cache_dir)) == [entries[2]]
    for s in sources:  # all of them back
        assert twice(compiler.compile_library(s)) == 42.0


def test_an_unreadable_library_is_rebuilt(cache_dir, tmp_path):
    privileged = _bits_apply()
    entry, path = fill(cache_dir, tmp_path)
    os.chmod(path, 0o000)
    os.chmod(entry, 0o000)  # the entry folder too: moving it aside needs a chmod first
    env = dict(os.environ, SYMGRAD_CACHE_DIR=cache_dir)
    proc = python(COMPILE, source_file(tmp_path), env=env, drop_privileges=privileged)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == path
    assert cache.verify_entry(entry) is None
    assert os.listdir(os.path.join(cache_dir, "trash")) == []
    verify = python("import sys; from symgrad import cache; sys.exit(cache.main(['verify']))",
                    env=env, drop_privileges=privileged)
    assert verify.returncode == 0, verify.stderr[-3000:]


# --- item 9: an unusable cache directory says which, what and what to set ---------

def _assert_cache_error(message, path, problem):
    assert path in message and problem in message, message
    assert "SYMGRAD_CACHE_DIR" in message, message


def test_a_cache_path_under_a_file_is_a_cache_error(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setattr(sg.config, "cache_dir", str(blocker / "cache"))
    with pytest.raises(sg.CacheError) as info:
        compiler.compile_library(SOURCE)
    assert isinstance(info.value, OSError) and isinstance(info.value, sg.CompileError)
    _assert_cache_error(str(info.value), str(blocker), "is a file, where a directory is needed")


def test_a_cache_path_that_is_a_file_is_a_cache_error(tmp_path, monkeypatch):
    blocker = tmp_path / "cache"
    blocker.write_text("x")
    monkeypatch.setattr(sg.config, "cache_dir", str(blocker))
    with pytest.raises(sg.CacheError, match="is not a directory"):
        compiler.compile_library(SOURCE)


UNWRITABLE = r"""
import sys
import numpy as np
import symgrad as sg
x = sg.vector("x")
try:
    sg.function([x], (x * 3.0).sum())
except sg.CacheError as e:
    print("CacheError:", e)
"""


def test_an_unwritable_cache_dir_is_a_cache_error(tmp_path):
    privileged = _bits_apply()
    cache_dir = tmp_path / "ro"
    cache_dir.mkdir(mode=0o500)
    proc = python(UNWRITABLE, env=dict(os.environ, SYMGRAD_CACHE_DIR=str(cache_dir)),
                  drop_privileges=privileged)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_cache_error(proc.stdout, str(cache_dir / "tmp"), "cannot be written by you")


def test_an_unwritable_home_is_a_cache_error(tmp_path):
    privileged = _bits_apply()
    home = tmp_path / "home"
    home.mkdir(mode=0o500)
    env = {k: v for k, v in os.environ.items() if k != "SYMGRAD_CACHE_DIR"}
    env.update(HOME=str(home), SYMGRAD_CACHE_DIR="")  # empty: unset
    proc = python(UNWRITABLE, env=env, drop_privileges=privileged)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_cache_error(proc.stdout, str(home / ".cache"), "cannot be written by you")


@pytest.fixture
def noexec_dir(tmp_path):
    path = tmp_path / "noexec"
    path.mkdir()
    if not hasattr(os, "getuid") or os.getuid() != 0:
        pytest.skip("mounting a noexec tmpfs needs root")
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "noexec,size=16m", "tmpfs", str(path)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"mount is not permitted here: {mount.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_noexec_cache_dir_is_a_cache_error(noexec_dir, monkeypatch):
    monkeypatch.setattr(sg.config, "cache_dir", str(noexec_dir / "cache"))
    x = sg.vector("x")
    with pytest.raises(sg.CacheError) as info:
        sg.function([x], x * 5.0)
    _assert_cache_error(str(info.value), str(noexec_dir / "cache"), "mounted noexec")


def test_an_empty_setting_means_unset(tmp_path, monkeypatch):
    from symgrad.config import Config

    config = Config({"SYMGRAD_CC": "", "SYMGRAD_CACHE_DIR": ""})
    assert config.cc == "cc"
    assert config.cache_dir == os.path.join(os.path.expanduser("~"), ".cache", "symgrad")
    assert Config({"SYMGRAD_CC": "  "}).cc == "cc"
    monkeypatch.setattr(sg.config, "cache_dir", str(tmp_path / "c"))
    monkeypatch.setattr(sg.config, "cc", "")
    assert twice(compiler.compile_library(SOURCE)) == 42.0


# --- item 10: a filled cache needs no compiler -------------------------------------

NO_COMPILER = r"""
import sys
import numpy as np
import symgrad as sg
x = sg.vector("x")
f = sg.function([x], (sg.exp(x) * 2.5).sum())
print(float(f(np.arange(4.0))), f.cache_hit)
if sys.argv[1] == "new":
    try:
        sg.function([x], (sg.exp(x) * 3.5).sum())
    except sg.CompileError as e:
        print("CompileError:", e)
"""


def test_a_filled_cache_runs_without_a_compiler(tmp_path):
    cache_dir = str(tmp_path / "c")
    env = dict(os.environ, SYMGRAD_CACHE_DIR=cache_dir)
    filled = python(NO_COMPILER, "old", env=env)
    assert filled.returncode == 0, filled.stderr[-3000:]
    expected = float((np.exp(np.arange(4.0)) * 2.5).sum())
    assert float(filled.stdout.split()[0]) == pytest.approx(expected, rel=1e-12)
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env.update(SYMGRAD_CC="/nonexistent/cc", PATH=str(empty_bin))
    proc = python(NO_COMPILER, "new", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    value, hit = proc.stdout.split()[:2]
    assert float(value) == pytest.approx(expected, rel=1e-12) and hit == "True"
    message = proc.stdout.split("CompileError:", 1)[1]
    for words in ("no C compiler", "/nonexistent/cc", "SYMGRAD_CC", "not in the cache",
                  cache_dir):
        assert words in message, message


def test_with_a_compiler_its_own_build_is_used(cache_dir, monkeypatch):
    # The full key still holds the compiler: another compiler builds its own.
    compiles = []
    real = compiler._run_compiler
    monkeypatch.setattr(compiler, "_run_compiler",
                        lambda argv, cwd: compiles.append(argv) or real(argv, cwd))
    first = compiler.compile_library(SOURCE)
    monkeypatch.setattr(sg.config, "cc", "gcc")  # the same program under another name
    second = compiler.compile_library(SOURCE)
    assert first != second and len(compiles) == 2
    assert compiler.neutral_key(SOURCE, "kernel") == compiler.neutral_key(SOURCE, "kernel")
    # the index names the last build; without a compiler, that one is used
    monkeypatch.setattr(sg.config, "cc", "/nonexistent/cc")
    assert compiler.compile_library(SOURCE) == second and len(compiles) == 2


# --- item 11: abandoned builds and failed sources stay bounded --------------------

def _build_of_a_dead_process(cache_dir):
    code = ("import os; from symgrad import cache; "
            "d = cache.new_build_dir(cache.root(), '1' * 64); "
            "open(os.path.join(d, 'kernel.so'), 'wb').write(b'half'); print(d)")
    proc = python(code, env=dict(os.environ, SYMGRAD_CACHE_DIR=cache_dir))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_the_next_compile_removes_builds_of_dead_processes(cache_dir, monkeypatch):
    dead = _build_of_a_dead_process(cache_dir)
    mine = cache.new_build_dir(cache.root(), "2" * 64)  # this process: alive
    foreign = os.path.join(cache_dir, "tmp", "3" * 12 + "-0badc0de.1-xyz")
    os.mkdir(foreign)  # another host's: only its age counts
    old_foreign = os.path.join(cache_dir, "tmp", "4" * 12 + "-0badc0de.1-xyz")
    os.mkdir(old_foreign)
    old = time.time() - cache.STALE_BUILD_S - 10
    os.utime(old_foreign, (old, old))
    monkeypatch.setattr(cache, "_last_tidy", {})
    compiler.compile_library(SOURCE)  # a miss: it tidies
    assert not os.path.exists(dead) and not os.path.exists(old_foreign)
    assert os.path.isdir(mine) and os.path.isdir(foreign)
    # at most once a minute: a new abandoned build waits for the next round
    dead = _build_of_a_dead_process(cache_dir)
    compiler.compile_library(SOURCE + "\n int other(void) { return 1; }\n")
    assert os.path.exists(dead)
    monkeypatch.setattr(cache, "_last_tidy", {})
    compiler.compile_library(SOURCE + "\n int third(void) { return 1; }\n")
    assert not os.path.exists(dead)


def test_failed_sources_stay_bounded(cache_dir, monkeypatch):
    monkeypatch.setattr(cache, "FAILED_MAX_FILES", 5)
    kept = []
    for i in range(8):
        with pytest.raises(sg.CompileError) as info:
            compiler.compile_library(f"int broken{i}(void) {{ return undeclared_{i}; }}\n")
        [path] = [w for w in str(info.value).split() if w.endswith(".c") and os.path.isabs(w)]
        assert os.path.exists(path)  # the one the message names is kept
        kept.append(path)
        os.utime(path, (time.time() - 100 + i, time.time() - 100 + i))
    failed = sorted(os.listdir(os.path.join(cache_dir, "failed")))
    assert failed == sorted(os.path.basename(p) for p in kept[-5:])
    monkeypatch.setattr(cache, "FAILED_MAX_BYTES", 1)  # the size bound: only the newest
    with pytest.raises(sg.CompileError):
        compiler.compile_library("int broken_last(void) { return undeclared; }\n")
    assert len(os.listdir(os.path.join(cache_dir, "failed"))) == 1


def test_old_failed_sources_go(cache_dir):
    failed = os.path.join(cache_dir, "failed")
    os.makedirs(failed)
    old = os.path.join(failed, "0" * 64 + ".c")
    with open(old, "w") as f:
        f.write("int x;")
    t = time.time() - cache.FAILED_MAX_AGE_S - 10
    os.utime(old, (t, t))
    with pytest.raises(sg.CompileError):
        compiler.compile_library("int broken(void) { return undeclared; }\n")
    assert not os.path.exists(old) and len(os.listdir(failed)) == 1
