"""sg.save / sg.load: round trips, train steps with optimizer state, mismatches, atomicity."""

import os

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
