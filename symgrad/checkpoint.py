"""Checkpoints: ``sg.save(path, obj)`` and ``sg.load(path, obj)``.

A checkpoint is a NumPy ``.npz`` archive: one array per shared variable plus a
small JSON header (format, version, and each entry's name, dtype and shape).
Names are the shared variables' names (made unique with ``#1``, ``#2``, ...),
so a checkpoint written by one run loads into the same model built again in
another.

Saving writes a temporary file in the destination's directory, flushes and
fsyncs it, then renames it over the destination (``os.replace``, atomic on
POSIX and Windows): an interrupted save leaves the previous checkpoint as it
was, and removes its temporary file.

Loading checks everything first (names, shapes, dtypes) and changes nothing
unless all of it matches; the error lists every difference.
"""

import json
import os
import tempfile
import zipfile

import numpy as np

from .errors import SymgradError
from .graph import SharedVariable

__all__ = ["save", "load", "read", "CheckpointError"]

FORMAT = "symgrad-checkpoint"
VERSION = 1
_HEADER = "__symgrad__"


class CheckpointError(SymgradError, ValueError):
    """A checkpoint that does not fit what it is loaded into, or is not a checkpoint."""


# --------------------------------------------------------------------------- what to store

def _unique(pairs):
    """``{name: shared}`` from ``(name, shared)`` pairs: repeats of a variable dropped,
    repeated names suffixed ``#1``, ``#2``, ... in order (deterministic for a model built
    the same way twice)."""
    out, seen = {}, set()
    for name, sv in pairs:
        if id(sv) in seen:
            continue
        seen.add(id(sv))
        key, k = name, 1
        while key in out:
            key, k = f"{name}#{k}", k + 1
        out[key] = sv
    return out


def _from_list(items, what):
    pairs = []
    for i, sv in enumerate(items):
        if not isinstance(sv, SharedVariable):
            raise TypeError(f"{what}[{i}] is a {type(sv).__name__}, not a shared variable")
        pairs.append((sv.name or f"#{i}", sv))
    return pairs


def _named(obj):
    """The shared variables behind ``obj`` as an ordered ``{name: SharedVariable}``."""
    from .train import TrainStep

    if isinstance(obj, SharedVariable):
        return {obj.name or "value": obj}
    if isinstance(obj, TrainStep):
        return _unique(_from_list(obj.params, "step.params") + _from_list(obj.state, "step.state"))
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"checkpoint dict keys must be str, got {k!r}")
            if not isinstance(v, SharedVariable):
                raise TypeError(f"checkpoint entry {k!r} is a {type(v).__name__}, not a shared "
                                f"variable")
        return dict(obj)
    if isinstance(obj, (list, tuple)):
        return _unique(_from_list(obj, "the list"))
    params = getattr(obj, "params", None)
    if isinstance(params, (list, tuple)):
        return _unique(_from_list(params, f"{type(obj).__name__}.params"))
    raise TypeError(f"save/load take a shared variable, a list or dict of them, a train step, "
                    f"or an object with a .params list; got {type(obj).__name__}")


# --------------------------------------------------------------------------- save

def save(path, obj):
    """Write the values of ``obj``'s shared variables to ``path``, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Used exactly as given (``.npz`` is the natural suffix; none is added).
    obj : SharedVariable, list/tuple or dict of them, TrainStep, or an object
        with a ``params`` list (a layer, a model)
        A train step stores its parameters and its optimizer state
        (``step.state``), so training resumes where it stopped.

    Returns
    -------
    list of str
        The names stored, in order.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> W = sg.shared(np.ones((2, 2)), name="W")
    >>> sg.save("ckpt.npz", [W])  # doctest: +SKIP
    ['W']
    """
    named = _named(obj)
    if not named:
        raise ValueError("save: nothing to save (no shared variables)")
    values = [sv.get_value(borrow=True) for sv in named.values()]
    header = {"format": FORMAT, "version": VERSION, "names": list(named),
              "dtypes": [v.dtype.name for v in values], "shapes": [list(v.shape) for v in values]}
    arrays = {f"a{i}": v for i, v in enumerate(values)}
    arrays[_HEADER] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    _atomic_write(os.fspath(path), arrays)
    return list(named)


def _write_arrays(f, arrays):
    """The writer itself (a seam the tests interrupt)."""
    np.savez(f, **arrays)


def _atomic_write(path, arrays):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_arrays(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private; a checkpoint gets the mode of the one it replaces.
        os.chmod(tmp, os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)


def _fsync_dir(folder):
    # Makes the rename itself durable; not possible everywhere (Windows), and not needed there.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- load

def read(path):
    """The arrays of a checkpoint as an ordered ``{name: ndarray}``.

    Raises
    ------
    CheckpointError
        If ``path`` is not a symgrad checkpoint.
    """
    path = os.fspath(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path!r} is not a symgrad checkpoint ({e})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise CheckpointError(f"{path!r} is a single .npy array, not a symgrad checkpoint")
    with data:
        if _HEADER not in data.files:
            raise CheckpointError(f"{path!r} is an .npz archive but not a symgrad checkpoint (no "
                                  f"header); it was not written by sg.save")
        try:
            header = json.loads(data[_HEADER].tobytes().decode("utf-8"))
            if header.get("format") != FORMAT or header.get("version", 0) > VERSION:
                raise CheckpointError(f"{path!r}: unknown checkpoint format "
                                      f"{header.get('format')!r} version {header.get('version')}")
            return {name: data[f"a{i}"] for i, name in enumerate(header["names"])}
        except (ValueError, KeyError, zipfile.BadZipFile) as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"{path!r}: a damaged symgrad checkpoint ({e!r})") from None


def load(path, obj, strict=True):
    """Fill ``obj``'s shared variables in place from the checkpoint at ``path``.

    Parameters
    ----------
    path : str or os.PathLike
    obj
        What :func:`save` accepts; names are matched, not positions.
    strict : bool
        With False, entries of the checkpoint that ``obj`` does not have are
        ignored (say, loading a train step's checkpoint into the model's
        parameters alone, without the optimizer state).

    Returns
    -------
    list of str
        The names loaded.

    Raises
    ------
    CheckpointError
        Listing every name missing from the checkpoint, every name only in
        the checkpoint (when ``strict``), and every shape or dtype that
        differs. Nothing is changed then.
    FileNotFoundError
        If there is no file at ``path``.
    """
    named = _named(obj)
    stored = read(path)
    problems = []
    missing = [n for n in named if n not in stored]
    if missing:
        problems.append(f"missing from the checkpoint ({len(missing)}): {', '.join(missing)}")
    extra = [n for n in stored if n not in named]
    if extra and strict:
        problems.append(f"in the checkpoint but not here ({len(extra)}): {', '.join(extra)} "
                        f"(pass strict=False to ignore them)")
    for name, sv in named.items():
        if name not in stored:
            continue
        have, got = sv.get_value(borrow=True), stored[name]
        if got.shape != have.shape:
            problems.append(f"shape of {name}: {got.shape} in the checkpoint, {have.shape} here")
        if got.dtype != have.dtype:
            problems.append(f"dtype of {name}: {got.dtype} in the checkpoint, {have.dtype} here")
    if problems:
        raise CheckpointError(f"cannot load {os.fspath(path)!r}; nothing was changed:\n  "
                              + "\n  ".join(problems))
    for name, sv in named.items():
        sv.set_value(stored[name], borrow=True)  # freshly read from disk: nobody else holds it
    return list(named)
