"""sg.save / sg.load: round trips, train steps with optimizer state, mismatches, atomicity."""

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import symgrad as sg
from symgrad import checkpoint
from symgrad.checkpoint import CheckpointError

MODES = ["py", "c"]


def tmp_files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_round_trip_of_variables_lists_and_dicts(tmp_path):
    W = sg.shared(np.arange(6.0).reshape(2, 3), name="W")
    n = sg.shared(np.int64(7), name="n")
    flags = sg.shared(np.array([True, False]), name="flags")
    path = tmp_path / "vars.npz"
    assert sg.save(path, [W, n, flags]) == ["W", "n", "flags"]
    W.set_value(np.zeros((2, 3)))
    n.set_value(0)
    flags.set_value(np.array([False, False]))
    assert sg.load(path, [W, n, flags]) == ["W", "n", "flags"]
    np.testing.assert_array_equal(W.get_value(), np.arange(6.0).reshape(2, 3))
    assert n.get_value() == 7 and n.get_value().dtype == np.int64
    np.testing.assert_array_equal(flags.get_value(), [True, False])

    sg.save(str(tmp_path / "one.npz"), W)                       # a single variable
    assert list(sg.checkpoint.read(tmp_path / "one.npz")) == ["W"]
    sg.save(tmp_path / "d.npz", {"weights": W, "count": n})     # a dict names its entries
    stored = sg.checkpoint.read(tmp_path / "d.npz")
    assert list(stored) == ["weights", "count"] and stored["count"] == 7


def test_names_are_made_unique_and_unnamed_get_positions(tmp_path):
    a, b = sg.shared(np.ones(1), name="b"), sg.shared(np.zeros(1), name="b")
    anon = sg.shared(np.full(2, 3.0))
    names = sg.save(tmp_path / "u.npz", [a, b, anon, a])
    assert names == ["b", "b#1", "#2"]
    a.set_value(np.zeros(1))
    sg.load(tmp_path / "u.npz", [a, b, anon])
    assert a.get_value()[0] == 1.0 and b.get_value()[0] == 0.0
    assert sg.save(tmp_path / "v.npz", anon) == ["value"]


@pytest.mark.parametrize("mode", MODES)
def test_a_train_step_resumes_exactly(tmp_path, mode):
    rng = np.random.default_rng(0)
    X, y = sg.matrix("X"), sg.vector("y")
    layer = sg.layers.Dense(3, 1, rng=1, name="fc")
    loss = ((layer(X)[:, 0] - y) ** 2).mean()
    step = sg.train_step(loss, [X, y], optimizer=sg.optim.Adam(lr=0.05), mode=mode)
    batches = [(rng.normal(size=(6, 3)), rng.normal(size=6)) for _ in range(5)]
    for b in batches[:3]:
        step(*b)
    path = tmp_path / "step.npz"
    names = sg.save(path, step)
    assert names == ["fc.W", "fc.b", "fc.W.m", "fc.W.v", "fc.W.t", "fc.b.m", "fc.b.v", "fc.b.t"]
    after = [step(*b)["loss"] for b in batches[3:]]
    final = [p.get_value() for p in step.params]
    sg.load(path, step)
    assert step.optimizer.state[2].get_value() == 3          # the step counter came back
    again = [step(*b)["loss"] for b in batches[3:]]
    assert again == after                                       # bit for bit
    for p, want in zip(step.params, final):
        np.testing.assert_array_equal(p.get_value(), want)


def test_load_reports_every_difference_and_changes_nothing(tmp_path):
    W = sg.shared(np.ones((2, 3)), name="W")
    b = sg.shared(np.ones(3), name="b")
    old = sg.shared(np.ones(1), name="old")
    path = tmp_path / "c.npz"
    sg.save(path, [W, b, old])
    W2 = sg.shared(np.zeros((3, 3)), name="W")                  # other shape
    b2 = sg.shared(np.zeros(3, dtype="float32"), name="b")      # other dtype
    new = sg.shared(np.zeros(1), name="new")                     # not in the file
    with pytest.raises(CheckpointError) as info:
        sg.load(path, [W2, b2, new])
    msg = str(info.value)
    assert "nothing was changed" in msg
    assert "missing from the checkpoint (1): new" in msg
    assert "in the checkpoint but not here (1): old" in msg
    assert "shape of W: (2, 3) in the checkpoint, (3, 3) here" in msg
    assert "dtype of b: float64 in the checkpoint, float32 here" in msg
    assert not W2.get_value().any() and not b2.get_value().any() and not new.get_value().any()
    assert isinstance(info.value, (sg.SymgradError, ValueError))


def test_strict_false_ignores_extra_entries(tmp_path):
    W = sg.shared(np.full(2, 5.0), name="W")
    state = sg.shared(np.ones(2), name="W.m")
    sg.save(tmp_path / "s.npz", [W, state])
    fresh = sg.shared(np.zeros(2), name="W")
    with pytest.raises(CheckpointError, match="strict=False"):
        sg.load(tmp_path / "s.npz", [fresh])
    assert sg.load(tmp_path / "s.npz", [fresh], strict=False) == ["W"]
    assert fresh.get_value().tolist() == [5.0, 5.0]
    missing = sg.shared(np.zeros(2), name="missing")
    with pytest.raises(CheckpointError, match="missing from the checkpoint"):
        sg.load(tmp_path / "s.npz", [missing], strict=False)


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    W = sg.shared(np.arange(4.0), name="W")
    path = tmp_path / "ckpt.npz"
    sg.save(path, W)
    before = path.read_bytes()

    def crash(f, arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # as if the user pressed ctrl-c mid-write

    monkeypatch.setattr(checkpoint, "_write_arrays", crash)
    W.set_value(np.zeros(4))
    with pytest.raises(KeyboardInterrupt):
        sg.save(path, W)
    assert path.read_bytes() == before
    assert tmp_files(tmp_path) == ["ckpt.npz"]                # no temporary file left behind
    monkeypatch.undo()
    sg.load(path, W)
    assert W.get_value().tolist() == [0.0, 1.0, 2.0, 3.0]


def test_a_failed_rename_leaves_no_temp_file(tmp_path, monkeypatch):
    W = sg.shared(np.ones(2), name="W")

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        sg.save(tmp_path / "x.npz", W)
    assert tmp_files(tmp_path) == []


def test_new_checkpoints_are_readable_by_others(tmp_path):
    W = sg.shared(np.ones(2), name="W")
    sg.save(tmp_path / "m.npz", W)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o644
    os.chmod(tmp_path / "m.npz", 0o600)
    sg.save(tmp_path / "m.npz", W)                             # a replaced file keeps its mode
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o600


def test_files_that_are_not_checkpoints(tmp_path):
    W = sg.shared(np.ones(2), name="W")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(CheckpointError, match="is not a symgrad checkpoint"):
        sg.load(tmp_path / "text.npz", W)
    np.save(tmp_path / "arr.npy", np.ones(2))
    with pytest.raises(CheckpointError, match="single .npy array"):
        sg.load(tmp_path / "arr.npy", W)
    np.savez(tmp_path / "plain.npz", W=np.ones(2))
    with pytest.raises(CheckpointError, match="not written by sg.save"):
        sg.load(tmp_path / "plain.npz", W)
    with pytest.raises(FileNotFoundError):
        sg.load(tmp_path / "absent.npz", W)


def test_argument_checks(tmp_path):
    W = sg.shared(np.ones(2), name="W")
    with pytest.raises(TypeError, match="save/load take a shared variable"):
        sg.save(tmp_path / "a.npz", 3)
    with pytest.raises(TypeError, match=r"the list\[1\] is a Variable, not a shared variable"):
        sg.save(tmp_path / "a.npz", [W, sg.vector()])
    with pytest.raises(TypeError, match="dict keys must be str"):
        sg.save(tmp_path / "a.npz", {1: W})
    with pytest.raises(TypeError, match="entry 'x' is a ndarray"):
        sg.save(tmp_path / "a.npz", {"x": np.ones(2)})
    with pytest.raises(ValueError, match="nothing to save"):
        sg.save(tmp_path / "a.npz", [])
    assert tmp_files(tmp_path) == []


def test_objects_with_params(tmp_path):
    layer = sg.layers.Dense(2, 3, rng=0, name="enc")
    sg.save(tmp_path / "layer.npz", layer)
    other = sg.layers.Dense(2, 3, rng=5, name="enc")
    sg.load(tmp_path / "layer.npz", other)
    np.testing.assert_array_equal(other.W.get_value(), layer.W.get_value())


# --------------------------------------------------------------------------- hostile files
# Issue #11, item 13: a checkpoint is untrusted input. Every malformed header or member is
# a CheckpointError saying what is wrong, and the model is left as it was.

GOOD = {"format": "symgrad-checkpoint", "version": 1, "names": ["W"], "dtypes": ["float64"],
        "shapes": [[2]]}


def npy(arr, **kw):
    buf = io.BytesIO()
    np.save(buf, arr, **kw)
    return buf.getvalue()


def npy_header(shape, descr="<f8"):
    """A .npy header alone, declaring whatever it is told to."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()


def write_ck(path, header=GOOD, members=None, compression=zipfile.ZIP_STORED):
    """A checkpoint archive written by hand: ``header`` (JSON-able, or raw bytes) and
    ``members`` ({name: bytes or ndarray}; by default a0.npy = [5, 6])."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode("utf-8")
    entries = {"__symgrad__.npy": npy(np.frombuffer(raw, np.uint8))}
    entries.update({"a0.npy": np.array([5.0, 6.0])} if members is None else members)
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, content in entries.items():
            zf.writestr(name, content if isinstance(content, bytes) else npy(content))
    return path


def with_header(**changes):
    return {**GOOD, **changes}


def test_a_checkpoint_written_by_hand_loads(tmp_path):
    # The helper itself writes what sg.save writes, so the cases below differ by one fault.
    W = sg.shared(np.zeros(2), name="W")
    assert sg.load(write_ck(tmp_path / "ok.npz"), W) == ["W"]
    assert W.get_value().tolist() == [5.0, 6.0]
    ck = tmp_path / "deflated.npz"
    write_ck(ck, members={"a0.npy": np.array([7.0, 8.0])}, compression=zipfile.ZIP_DEFLATED)
    assert sg.checkpoint.read(ck)["W"].tolist() == [7.0, 8.0]


HOSTILE_HEADERS = [
    ("list", [1, 2], "the header is an array, not a JSON object"),
    ("null", None, "the header is null, not a JSON object"),
    ("number", 3, "the header is a number, not a JSON object"),
    ("not-json", b"\xff{", "the header is not valid JSON"),
    ("format", with_header(format="other"), r"not a symgrad checkpoint \(format 'other'"),
    ("version-str", with_header(version="9"),
     r"'version' is a string \('9'\), not an integer; this symgrad reads version 1"),
    ("version-bool", with_header(version=True), r"'version' is a boolean \(True\), not an integer"),
    ("version-new", with_header(version=9),
     "version 9 is not supported; this symgrad reads version 1 only .written by a newer symgrad"),
    ("version-old", with_header(version=0),
     "version 0 is not supported; this symgrad reads version 1"),
    ("names-ints", with_header(names=[1, 2]), r"'names', entry 0: a number \(1\), not a string"),
    ("names-dict", with_header(names={"W": 0}), "'names' is an object, not an array"),
    ("names-repeated", with_header(names=["W", "W"], dtypes=["float64"] * 2, shapes=[[2]] * 2),
     "'names' repeats a name"),
    ("dtypes-object", with_header(dtypes=["object"]),
     "'dtypes', entry 0: 'object' is not one of the dtypes of shared variables"),
    ("dtypes-short", with_header(dtypes=[]), "'dtypes' has 0 entries, 'names' 1"),
    ("shape-negative", with_header(shapes=[[-1]]), r"'shapes', entry 0: \[-1\] is not a shape"),
    ("shape-str", with_header(shapes=[["2"]]), "is not a shape"),
    ("shape-float", with_header(shapes=[[2.0]]), "is not a shape"),
    ("shape-flat", with_header(shapes=[2]), "'shapes', entry 0: 2 is not a shape"),
    ("missing-field", {k: v for k, v in GOOD.items() if k != "shapes"},
     r"header fields missing: \['shapes'\]"),
    ("unknown-field", with_header(extra=1), r"unknown: \['extra'\]"),
]


@pytest.mark.parametrize("header, message", [case[1:] for case in HOSTILE_HEADERS],
                         ids=[case[0] for case in HOSTILE_HEADERS])
def test_a_malformed_header_is_a_checkpoint_error(tmp_path, header, message):
    W = sg.shared(np.arange(2.0), name="W")
    path = write_ck(tmp_path / "bad.npz", header)
    with pytest.raises(sg.CheckpointError, match=message) as info:
        sg.load(path, W)
    assert "bad.npz" in str(info.value)
    assert W.get_value().tolist() == [0.0, 1.0]
    with pytest.raises(sg.CheckpointError, match=message):
        sg.checkpoint.read(path)


def object_array():
    return np.array([{"a": 1}, None], dtype=object)


HOSTILE_MEMBERS = [
    ("text", {"a0.npy": b"hello, not an array"}, "member 'a0.npy' is not a .npy array"),
    ("empty", {"a0.npy": b""}, "member 'a0.npy' is not a .npy array"),
    ("npy-v3", {"a0.npy": b"\x93NUMPY\x03\x00" + b"\x00" * 8},
     "is not a .npy array .version 1 or 2"),
    ("wrong-name", {"a0.txt": np.zeros(2)},
     r"members do not match its header \(missing \['a0.npy'\], "
     r"unexpected or repeated \['a0.txt'\]\)"),
    ("extra-member", {"a0.npy": np.zeros(2), "a1.npy": np.zeros(2)},
     r"header \(unexpected or repeated \['a1.npy'\]\); it was not written by sg.save"),
    ("pickled", {"a0.npy": npy(object_array(), allow_pickle=True)},
     r"member 'a0.npy' holds object \(2,\), the header says float64 \(2,\)"),
    ("other-shape", {"a0.npy": np.zeros(3)},
     r"holds float64 \(3,\), the header says float64 \(2,\)"),
    ("other-dtype", {"a0.npy": np.zeros(2, np.float32)},
     r"holds float32 \(2,\), the header says float64"),
    ("huge-shape", {"a0.npy": npy_header((2 ** 40,)) + bytes(16)},
     r"holds float64 \(1099511627776,\)"),
    ("truncated", {"a0.npy": npy(np.zeros(2))[:-3]},
     r"member 'a0.npy' is 141 bytes, but a .npy array of float64 \(2,\) is 144"),
    ("trailing", {"a0.npy": npy(np.zeros(2)) + bytes(2 ** 20)}, "is 1048720 bytes, but"),
    ("bad-npy-header", {"a0.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    \n"},
     "a damaged symgrad checkpoint"),
]


@pytest.mark.parametrize("members, message", [case[1:] for case in HOSTILE_MEMBERS],
                         ids=[case[0] for case in HOSTILE_MEMBERS])
def test_a_malformed_member_is_a_checkpoint_error(tmp_path, members, message):
    W = sg.shared(np.arange(2.0), name="W")
    path = write_ck(tmp_path / "bad.npz", GOOD, members)
    with pytest.raises(sg.CheckpointError, match=message):
        sg.load(path, W)
    assert W.get_value().tolist() == [0.0, 1.0]
    with pytest.raises(sg.CheckpointError, match=message):
        sg.checkpoint.read(path)


def test_the_header_member_must_be_bytes(tmp_path):
    path = tmp_path / "h.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("__symgrad__.npy", npy(np.zeros((2, 2))))
    with pytest.raises(sg.CheckpointError, match=r"'__symgrad__.npy' holds float64 \(2, 2\), not a "
                                                  r"header of at most \d+ bytes"):
        sg.checkpoint.read(path)


def test_a_huge_declared_array_is_refused_before_it_is_read(tmp_path, monkeypatch):
    # A zip bomb: 64 MiB of zeros deflated to 64 KiB, declared consistently by the header and
    # the member, loaded into a model whose W has 2 elements. The header says it does not fit,
    # so the member is never opened (NumPy's reader would inflate all of it first).
    n = 8 << 20
    path = write_ck(tmp_path / "bomb.npz", with_header(shapes=[[n]]),
                    {"a0.npy": npy_header((n,)) + bytes(8 * n)}, compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1 << 20
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open",
                        lambda self, name, *a, **kw: opened.append(getattr(name, "filename", name))
                        or real_open(self, name, *a, **kw))
    W = sg.shared(np.arange(2.0), name="W")
    with pytest.raises(sg.CheckpointError,
                       match=r"shape of W: \(8388608,\) in the checkpoint, \(2,\) here"):
        sg.load(path, W)
    assert opened == ["__symgrad__.npy"] and W.get_value().tolist() == [0.0, 1.0]
    monkeypatch.undo()
    # Read without a model, a declared size is still checked against the member's own size
    # (in the zip directory) before anything is allocated.
    write_ck(path, with_header(shapes=[[2 ** 40]]), {"a0.npy": npy_header((2 ** 40,)) + bytes(16)})
    with pytest.raises(sg.CheckpointError, match=r"is 144 bytes, but a .npy array of float64 "
                                                  r"\(1099511627776,\) is 8796093022336"):
        sg.checkpoint.read(path)


def test_a_damaged_second_member_changes_nothing(tmp_path):
    header = with_header(names=["W", "b"], dtypes=["float64", "float64"], shapes=[[2], [2]])
    path = write_ck(tmp_path / "half.npz", header,
                    {"a0.npy": np.array([5.0, 6.0]), "a1.npy": npy(np.zeros(2))[:-1]})
    W, b = sg.shared(np.arange(2.0), name="W"), sg.shared(np.arange(2.0), name="b")
    with pytest.raises(sg.CheckpointError, match="member 'a1.npy'"):
        sg.load(path, [W, b])
    assert W.get_value().tolist() == [0.0, 1.0] and b.get_value().tolist() == [0.0, 1.0]


def test_a_refused_set_value_puts_back_what_was_set(tmp_path, monkeypatch):
    W, b = sg.shared(np.arange(2.0), name="W"), sg.shared(np.arange(2.0), name="b")
    sg.save(tmp_path / "wb.npz", [W, b])
    W.set_value(np.full(2, 9.0))
    b.set_value(np.full(2, 9.0))

    def refuse(value, borrow=False):
        raise KeyboardInterrupt  # as if ctrl-c came between the two assignments

    monkeypatch.setattr(b, "set_value", refuse)
    with pytest.raises(KeyboardInterrupt):
        sg.load(tmp_path / "wb.npz", [W, b])
    assert W.get_value().tolist() == [9.0, 9.0]


def test_a_fifo_is_refused_without_blocking(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    os.mkfifo(tmp_path / "pipe.npz")
    with pytest.raises(sg.CheckpointError, match="is not a regular file"):
        sg.load(tmp_path / "pipe.npz", sg.shared(np.zeros(2), name="W"))


# --------------------------------------------------------------------------- killed saves

CHILD = """
import sys, time
import numpy as np
import symgrad as sg
from symgrad import checkpoint

def stall(f, arrays):          # half a file written, then the writer hangs until it is killed
    f.write(b"PK\\x03\\x04" + bytes(1 << 20))
    f.flush()
    print("writing", flush=True)
    time.sleep(120)

checkpoint._write_arrays = stall
sg.save(sys.argv[1], sg.shared(np.ones(3), name="W"))
"""


def child_env():
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(sg.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="no SIGKILL here")
def test_the_next_save_removes_what_a_killed_save_left(tmp_path):
    path = tmp_path / "ck.npz"
    sg.save(path, sg.shared(np.zeros(3), name="W"))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], cwd=tmp_path,
                             env=child_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "writing\n"
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    left = [n for n in tmp_files(tmp_path) if n != "ck.npz"]
    assert len(left) == 1 and left[0].startswith(".ck.npz.") and f".{child.pid}." in left[0]
    assert sg.load(path, sg.shared(np.ones(3), name="W")) == ["W"]   # the old one is intact
    sg.save(path, sg.shared(np.full(3, 2.0), name="W"))
    assert tmp_files(tmp_path) == ["ck.npz"]
    assert sg.checkpoint.read(path)["W"].tolist() == [2.0, 2.0, 2.0]


def touch(folder, name, age=0.0):
    p = folder / name
    p.write_bytes(b"partial")
    os.utime(p, (time.time() - age, time.time() - age))
    return name


@pytest.mark.skipif(os.name == "nt", reason="pids are not probed on Windows")
def test_only_temporaries_of_dead_writers_or_long_idle_are_removed(tmp_path):
    host = checkpoint._host()
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(done.stdout)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        hour = 3600.0
        removed = [
            touch(tmp_path, f".ck.npz.{host}.{dead}.0123abcd.tmp"),               # writer dead
            touch(tmp_path, f".ck.npz.{host}.{sleeper.pid}.0123abcd.tmp", hour),  # idle an hour
            touch(tmp_path, f".ck.npz.otherhost.{dead}.0123abcd.tmp", hour),      # idle, elsewhere
            touch(tmp_path, ".ck.npz.k2_x9abc.tmp", hour),                        # mkstemp's, idle
        ]
        kept = [
            touch(tmp_path, f".ck.npz.{host}.{sleeper.pid}.4567abcd.tmp"),       # writer alive
            touch(tmp_path, f".ck.npz.{host}.{os.getpid()}.89abcdef.tmp"),       # this process's
            touch(tmp_path, f".ck.npz.otherhost.{dead}.4567abcd.tmp"),           # elsewhere, recent
            touch(tmp_path, ".ck.npz.q7_x9abc.tmp"),                             # mkstemp's, recent
            touch(tmp_path, f".other.npz.{host}.{dead}.0123abcd.tmp", hour),     # another target
            touch(tmp_path, f".x.ck.npz.{host}.{dead}.0123abcd.tmp", hour),
            touch(tmp_path, f".ck.npz.{host}.{dead}.0123abcd.tmp.bak", hour),    # not the pattern
            touch(tmp_path, ".ck.npz.bak", hour),
        ]
        os.mkdir(tmp_path / f".ck.npz.{host}.{dead}.fedcba98.tmp")                # not a file
        kept.append(f".ck.npz.{host}.{dead}.fedcba98.tmp")
        sg.save(tmp_path / "ck.npz", sg.shared(np.ones(2), name="W"))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert tmp_files(tmp_path) == sorted(kept + ["ck.npz"])
    assert not set(removed) & set(tmp_files(tmp_path))
