"""Load and faults: threads sharing a compiled function, processes sharing a cache, killed
compilers, corrupted entries, a cache cleared under running programs.

Every process here uses a private cache directory, so each compile is real.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import symgrad as sg
from symgrad import cache, compiler

SYMGRAD_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(sg.__file__)))
THREADS = 8
PROCESSES = 8


def child_env(cache_dir, **extra):
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(cache_dir), **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SYMGRAD_PARENT, env.get("PYTHONPATH")]))
    env.pop("SYMGRAD_MODE", None)
    return env


def python(code, cache_dir, *args, timeout=120, **extra):
    """Run ``code`` in a fresh interpreter using ``cache_dir``; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          env=child_env(cache_dir, **extra), cwd=str(cache_dir.parent),
                          capture_output=True, text=True, timeout=timeout)


def cli(cache_dir, command):
    """``python -m symgrad.cache <command>`` on ``cache_dir``."""
    return subprocess.run([sys.executable, "-m", "symgrad.cache", command],
                          env=child_env(cache_dir), cwd=str(cache_dir.parent),
                          capture_output=True, text=True, timeout=120)


def entries(cache_dir):
    return list(cache.entries(str(cache_dir)))


def listing(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


# --------------------------------------------------------------------------- threads

def test_one_function_called_from_8_threads_at_once():
    X = sg.matrix("X")
    y = sg.vector("y", dtype="int64")
    M = sg.shared(np.random.default_rng(0).normal(size=(16, 5)), name="M")
    logits = sg.tanh(X @ M) * 3
    outs = [sg.nn.cross_entropy(logits, y), sg.nn.softmax(logits).max(axis=1),
            sg.grad(sg.nn.cross_entropy(logits, y).sum(), M)]
    f = sg.function([X, y], outs)
    ref = sg.function([X, y], outs, mode="py")
    rng = np.random.default_rng(1)
    work = []
    for t in range(THREADS):
        n = int(rng.integers(1, 300))
        x, labels = rng.normal(size=(n, 16)), rng.integers(0, 5, size=n)
        work.append((x, labels, ref(x, labels)))
    failures, calls = [], [0] * THREADS
    barrier = threading.Barrier(THREADS)

    def run(t):
        x, labels, want = work[t]
        bad = labels.copy()
        bad[0] = 5
        barrier.wait()
        for i in range(150):
            try:
                if i % 10 == 9:  # errors interleaved with good calls, from every thread
                    with pytest.raises(IndexError):
                        f(x, bad)
                    continue
                got = f(x, labels) if i % 2 else f(X=x, y=labels)  # runtime and Python paths
                for g, w in zip(got, want):
                    np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
                calls[t] += 1
            except BaseException as e:  # noqa: BLE001 - reported below
                failures.append((t, i, repr(e)))
                return

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not failures, failures[:3]
    assert sum(calls) == THREADS * 135


def test_concurrent_updates_never_corrupt_a_shared_variable():
    # Concurrent calls that update one shared variable race (the last writer wins, as
    # with any read-modify-write): counts may be lost, but the value stays a whole count.
    x = sg.vector("x")
    count = sg.shared(np.zeros(1000), name="count")
    f = sg.function([x], count.sum(), updates=[(count, count + x)])
    ones = np.ones(1000)
    barrier = threading.Barrier(THREADS)

    def run():
        barrier.wait()
        for _ in range(200):
            f(ones)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    value = count.get_value()
    assert np.all(value == value[0]) and 200 <= value[0] <= THREADS * 200


# --------------------------------------------------------------------------- processes

# A child that builds three of four graphs (which three depends on its number),
# waits at a file barrier, then compiles and checks them against mode "py".
RACE = r"""
import json, os, sys, time
import numpy as np
import symgrad as sg
k, ready, go, salt = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
x = sg.matrix("x")
graphs = [lambda: (sg.tanh(x) * salt).sum(axis=0),
          lambda: sg.nn.softmax(x * salt),
          lambda: sg.grad((sg.sigmoid(x) ** 2).sum() * salt, x),
          lambda: sg.nn.log_softmax(x).max(axis=1) + salt]
mine = [(k + j) % 4 for j in range(3)]
built = [graphs[g]() for g in mine]
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
value = np.random.default_rng(k).normal(size=(7, 5))
paths = []
for g, out in zip(mine, built):
    f = sg.function([x], out)
    np.testing.assert_allclose(f(value), sg.function([x], out, mode="py")(value), rtol=1e-12)
    paths.append(f._kernel.path)
print(json.dumps(dict(zip(map(str, mine), paths))))
"""


@pytest.mark.slow  # a soak: processes compiling and clearing the cache
def test_8_processes_compile_overlapping_graphs_into_one_cache(tmp_path):
    cache_dir = tmp_path / "cache"
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{k}" for k in range(PROCESSES)]
    salt = str(1 + np.random.default_rng().random())
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(k), str(r), str(go), salt],
                              env=child_env(cache_dir), cwd=str(tmp_path), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for k, r in enumerate(ready)]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * PROCESSES, [err[-2000:] for _, err in results]
    by_graph = {}
    for out, _ in results:
        for g, path in json.loads(out).items():
            by_graph.setdefault(g, set()).add(path)
    # Every process found the same library for each graph: four entries, all whole.
    assert sorted(by_graph) == ["0", "1", "2", "3"]
    assert all(len(paths) == 1 for paths in by_graph.values())
    assert len(entries(cache_dir)) == 4
    assert all(cache.verify_entry(e) is None for e in entries(cache_dir))
    assert listing(cache_dir / "tmp") == [] and listing(cache_dir / "trash") == []


# A function whose kernel is compiled (or found) and called; prints its result.
USE = r"""
import sys
import numpy as np
import symgrad as sg
x = sg.vector("x")
f = sg.function([x], (sg.exp(x) * float(sys.argv[1])).sum())
print(float(f(np.arange(4.0))), f._kernel.path)
"""


def _expected(salt):
    return float((np.exp(np.arange(4.0)) * salt).sum())


def _slow_compiler(tmp_path, action):
    """A compiler wrapper: runs the real compiler, then damages its output as ``action`` says."""
    real = compiler.find_compiler()
    script = tmp_path / f"cc-{action}"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import os, signal, subprocess, sys, time
        rc = subprocess.call({real!r} + sys.argv[1:])
        out = sys.argv[sys.argv.index("-o") + 1] if "-o" in sys.argv else None
        if out and out.endswith(".so") and os.path.exists(out):
            size = os.path.getsize(out)
            os.truncate(out, size // 2)          # half written
            open(os.environ["CC_MARK"], "w").close()
            if {action!r} == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(60)                       # "hang": the test kills the whole process
        sys.exit(rc)
        """))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_a_compiler_killed_mid_write_leaves_the_cache_usable(tmp_path):
    cache_dir = tmp_path / "cache"
    salt = 1 + np.random.default_rng().random()
    proc = python(USE, cache_dir, salt, SYMGRAD_CC=_slow_compiler(tmp_path, "die"),
                  CC_MARK=str(tmp_path / "mark"))
    assert proc.returncode != 0 and "CompileError" in proc.stderr, proc.stderr[-2000:]
    assert "-9" in proc.stderr or "signal" in proc.stderr.lower()
    assert entries(cache_dir) == [] and listing(cache_dir / "tmp") == []
    proc = python(USE, cache_dir, salt)  # the real compiler, same cache
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split()[0]) == pytest.approx(_expected(salt), rel=1e-12)


def test_a_process_killed_while_compiling_leaves_the_cache_usable(tmp_path):
    cache_dir = tmp_path / "cache"
    salt = 1 + np.random.default_rng().random()
    mark = tmp_path / "mark"
    child = subprocess.Popen([sys.executable, "-c", USE, str(salt)], cwd=str(tmp_path),
                             env=child_env(cache_dir, SYMGRAD_CC=_slow_compiler(tmp_path, "hang"),
                                           CC_MARK=str(mark)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert mark.exists(), "the compiler never ran"
    os.killpg(child.pid, signal.SIGKILL)  # Python and its compiler, mid-build
    child.communicate(timeout=30)
    [stale] = listing(cache_dir / "tmp")  # what the killed build left
    assert entries(cache_dir) == []
    for _ in range(2):  # a new process rebuilds; the next one finds the entry
        proc = python(USE, cache_dir, salt)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert float(proc.stdout.split()[0]) == pytest.approx(_expected(salt), rel=1e-12)
        # the rebuild removed the killed build at once: its process is gone (#11 item 11)
        assert listing(cache_dir / "tmp") == []
    assert len(entries(cache_dir)) == 1
    proc = cli(cache_dir, "verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert listing(cache_dir / "tmp") == [] and len(entries(cache_dir)) == 1


def _truncate(lib):
    os.truncate(lib, os.path.getsize(lib) // 2)


def _flip(lib):
    with open(lib, "r+b") as f:
        f.seek(200)
        b = f.read(1)
        f.seek(200)
        f.write(bytes([b[0] ^ 0xFF]))


def _empty(lib):
    os.truncate(lib, 0)


def _junk_elf(lib):
    with open(lib, "wb") as f:
        f.write(b"\x7fELF" + os.urandom(1000))


def _whole_but_unusable(lib):
    # A library and meta.json that agree (the sha256 checks out) but that no loader takes.
    _junk_elf(lib)
    meta = os.path.join(os.path.dirname(lib), cache.META)
    with open(meta) as f:
        m = json.load(f)
    m.update(size=os.path.getsize(lib), sha256=cache.file_sha256(lib))
    with open(meta, "w") as f:
        json.dump(m, f)


@pytest.mark.parametrize("corrupt", [_truncate, _flip, _empty, _junk_elf, _whole_but_unusable])
def test_a_corrupted_entry_is_rebuilt(tmp_path, corrupt):
    cache_dir = tmp_path / "cache"
    salt = 1 + np.random.default_rng().random()
    first = python(USE, cache_dir, salt)
    assert first.returncode == 0, first.stderr[-2000:]
    lib = first.stdout.split()[1]
    corrupt(lib)
    again = python(USE, cache_dir, salt)
    assert again.returncode == 0, again.stderr[-2000:]
    assert float(again.stdout.split()[0]) == pytest.approx(_expected(salt), rel=1e-12)
    assert again.stdout.split()[1] == lib
    [entry] = entries(cache_dir)
    assert cache.verify_entry(entry) is None


CLEARER = r"""
import os, sys, time
from symgrad import cache
root, n = cache.root(), 0
while not os.path.exists(sys.argv[1]):
    cache.clear(root)
    n += 1
    time.sleep(0.005)
print(n)
"""

# Compiles a new graph per round, twice (a build, then a hit), while entries vanish.
WORKER = r"""
import sys
import numpy as np
import symgrad as sg
x = sg.vector("x")
salt = float(sys.argv[1])
for i in range(int(sys.argv[2])):
    for _ in range(2):
        f = sg.function([x], (sg.exp(x) * (salt + i)).sum())
        want = float((np.exp(np.arange(4.0)) * (salt + i)).sum())
        assert abs(float(f(np.arange(4.0))) - want) < 1e-9 * want
print("ok")
"""


@pytest.mark.slow  # a soak: processes compiling and clearing the cache
def test_a_cache_cleared_again_and_again_under_running_programs(tmp_path):
    """`python -m symgrad.cache clear` while other processes compile and load: all carry on."""
    cache_dir = tmp_path / "cache"
    salt = 1 + np.random.default_rng().random()
    stop = tmp_path / "stop"
    clearer = subprocess.Popen([sys.executable, "-c", CLEARER, str(stop)], cwd=str(tmp_path),
                               env=child_env(cache_dir), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(salt), "6"], cwd=str(tmp_path),
                                env=child_env(cache_dir), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [w.communicate(timeout=300) for w in workers]
    stop.touch()
    clears, err = clearer.communicate(timeout=60)
    assert clearer.returncode == 0, err
    assert [w.returncode for w in workers] == [0, 0, 0], [e[-2000:] for _, e in results]
    assert int(clears) > 3
    assert all(cache.verify_entry(e) is None for e in entries(cache_dir))


def test_functions_keep_working_after_the_cache_is_cleared(tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    monkeypatch.setattr(sg.config, "cache_dir", str(cache_dir))
    salt = 1 + np.random.default_rng().random()
    x = sg.vector("x")
    f = sg.function([x], (sg.exp(x) * salt).sum())
    proc = cli(cache_dir, "clear")
    assert proc.returncode == 0 and entries(cache_dir) == []
    assert float(f(np.arange(4.0))) == pytest.approx(_expected(salt), rel=1e-12)
    g = sg.function([x], (sg.exp(x) * salt).sum())  # rebuilt into the emptied cache
    assert float(g(np.arange(4.0))) == pytest.approx(_expected(salt), rel=1e-12)
    assert len(entries(cache_dir)) == 1


def test_the_cli_survives_a_cache_full_of_junk(tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    monkeypatch.setattr(sg.config, "cache_dir", str(cache_dir))
    x = sg.vector("x")
    salt = 1 + np.random.default_rng().random()
    sg.function([x], (sg.exp(x) * salt).sum())
    [good] = entries(cache_dir)
    (cache_dir / "notes.txt").write_text("a stray file")
    # Junk in three key-prefix folders other than the good entry's (its key is random:
    # a fixed "ab" met it one run in 256).
    used = set(os.listdir(cache_dir))
    a, c, e = [p for p in ("ab", "cd", "ef", "a1", "c2", "e3") if p not in used][:3]
    (cache_dir / a).mkdir()
    (cache_dir / a / "not-a-key").mkdir()
    (cache_dir / c).mkdir()
    (cache_dir / c / (c + "0" * 62)).write_text("a file where an entry should be")
    (cache_dir / e).mkdir()
    (cache_dir / e / (e + "1" * 62)).mkdir()  # an entry without meta.json
    proc = cli(cache_dir, "info")
    assert proc.returncode == 0 and "entries:   3" in proc.stdout, proc.stdout + proc.stderr
    proc = cli(cache_dir, "verify")
    assert proc.returncode == 1 and proc.stdout.count("corrupt, removed") == 2, proc.stdout
    assert entries(cache_dir) == [good]
    f = sg.function([x], (sg.exp(x) * salt).sum())
    assert float(f(np.arange(4.0))) == pytest.approx(_expected(salt), rel=1e-12)
    proc = cli(cache_dir, "clear")
    assert proc.returncode == 0 and entries(cache_dir) == []
