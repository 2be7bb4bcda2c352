"""Checkpoints: ``sg.save(path, obj)`` and ``sg.load(path, obj)``.

A checkpoint is a NumPy ``.npz`` archive: one array per shared variable plus a
small JSON header (format, version, and each entry's name, dtype and shape).
Names are the shared variables' names (made unique with ``#1``, ``#2``, ...),
so a checkpoint written by one run loads into the same model built again in
another.

Saving writes a temporary file in the destination's directory, flushes and
fsyncs it, then renames it over the destination (``os.replace``, atomic on
POSIX and Windows): an interrupted save leaves the previous checkpoint as it
was, and removes its temporary file. A save killed outright (SIGKILL, power
loss) cannot remove it; the next save to the same path does, once its writer
is gone (the temporary's name carries the writer's host and process id).

A checkpoint is read as untrusted input. Its header is checked field by
field; each member must be a plain ``.npy`` array of exactly the dtype, shape
and size the header states (never a pickle), and is read no further than
that. Loading compares the header with the model before reading any array
(so a huge declared shape costs nothing) and changes nothing unless all of
it matches; the error lists every difference. Any fault of the file's content
is a :class:`CheckpointError` naming the file.
"""

import json
import math
import os
import re
import secrets
import socket
import stat
import time
import zipfile
import zlib

import numpy as np

from . import dtypes as _dt
from .errors import SymgradError
from .graph import SharedVariable
from .train import TrainStep

__all__ = ["save", "load", "read", "CheckpointError"]

FORMAT = "symgrad-checkpoint"
VERSION = 1
_HEADER = "__symgrad__"
_HEADER_KEYS = ("format", "version", "names", "dtypes", "shapes")
_MAX_HEADER_BYTES = 64 << 20   # the JSON header; a million long names fit
_MAX_NPY_HEADER = 10000        # NumPy's own limit for a .npy header
_CHUNK = 16 << 20              # arrays are read in pieces of this many bytes
_STALE_AFTER = 30 * 60         # a temporary nobody wrote to for this long is abandoned (s)


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

    Notes
    -----
    Temporary files that earlier saves to the same ``path`` left behind when
    they were killed (``.<name>.<host>.<pid>.<random>.tmp``) are removed first:
    those whose process is gone, and any not written to for 30 minutes.

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
    comm = _comm_of(obj)
    if comm is not None:  # a data-parallel train step: every rank holds the same values
        return _on_rank0(comm, "sg.save", lambda: _save(path, named))
    return _save(path, named)


def _save(path, named):
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
    base = os.path.basename(path)
    _remove_stale_temps(folder, base)
    fd, tmp = _create_temp(folder, base)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_arrays(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        # The temporary is private; a checkpoint gets the mode of the one it replaces.
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


# --------------------------------------------------------------------------- temporaries

def _host():
    """This machine's name as it goes into a temporary's name (letters, digits and '-')."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"


def _create_temp(folder, base):
    """A new private file ``.<base>.<host>.<pid>.<8 hex>.tmp`` in ``folder``: (fd, path)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(folder, f".{base}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue


def _temp_pattern(base):
    # This module's temporaries of `base`, and those of versions before the pid was in the
    # name (tempfile.mkstemp: 8 characters of [a-z0-9_]), which only their age can retire.
    new, old = r"([A-Za-z0-9-]+)\.(\d+)\.[0-9a-f]{8}", r"[a-z0-9_]{8}"
    return re.compile(rf"\.{re.escape(base)}\.(?:{new}|{old})\.tmp")


def _remove_stale_temps(folder, base):
    """Remove the temporaries earlier saves to ``base`` left when they were killed."""
    pattern = _temp_pattern(base)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = pattern.fullmatch(name)
        tmp = os.path.join(folder, name)
        if m and _is_stale(tmp, m.group(1), m.group(2)):
            try:
                os.unlink(tmp)
            except OSError:
                pass  # removed meanwhile, or not ours to remove: the save goes on


def _is_stale(tmp, host, pid):
    try:
        st = os.lstat(tmp)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    if time.time() - st.st_mtime > _STALE_AFTER:
        return True
    # Another machine's pid (a shared file system) says nothing here: only age decides there.
    return host == _host() and not _alive(int(pid))


def _alive(pid):
    """Whether process ``pid`` of this machine may still be writing (unsure means yes)."""
    if os.name == "nt" or pid == os.getpid():
        return True  # on Windows os.kill(pid, 0) would terminate the process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True  # PermissionError: another user's live process
    return True


# --------------------------------------------------------------------------- reading

_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number",
               float: "a number", bool: "a boolean", type(None): "null"}

# What a damaged file can make zipfile, zlib, json and NumPy's header parser raise.
_FAULTS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, TypeError, KeyError,
           NotImplementedError, RuntimeError, SyntaxError, OverflowError, OSError)


def _json_type(value):
    return _JSON_TYPES.get(type(value), type(value).__name__)


class _Archive:
    """An open checkpoint: its header and list of members checked on opening, each array
    checked and read on demand. Every fault of the content is a ``CheckpointError``."""

    def __init__(self, path):
        self.path = path
        self._file = _open_regular(path)
        self._zip = None
        try:
            self._zip = self._open_zip()
            self._guarded(self._check_header, self._read_header())
            self._check_members()
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._zip is not None:
            self._zip.close()
        self._file.close()

    def array(self, name):
        """The array stored as ``name`` (one of ``self.names``)."""
        i = self.index[name]
        return self._guarded(self._read_npy, f"a{i}.npy", self.dtypes[i], self.shapes[i])

    def error(self, what):
        return CheckpointError(f"{self.path!r}: {what}")

    def _guarded(self, fn, *args):
        try:
            return fn(*args)
        except CheckpointError:
            raise
        except _FAULTS as e:
            raise self.error(f"a damaged symgrad checkpoint ({type(e).__name__}: {e})") from None

    def _open_zip(self):
        if self._file.read(6) == b"\x93NUMPY":
            raise CheckpointError(f"{self.path!r} is a single .npy array, not a symgrad checkpoint")
        self._file.seek(0)
        try:
            return zipfile.ZipFile(self._file)
        except _FAULTS as e:
            raise CheckpointError(f"{self.path!r} is not a symgrad checkpoint "
                                  f"({type(e).__name__}: {e})") from None

    def _read_header(self):
        if _HEADER + ".npy" not in self._zip.namelist():
            raise CheckpointError(f"{self.path!r} is an .npz archive but not a symgrad checkpoint "
                                  f"(no header); it was not written by sg.save")
        raw = self._guarded(self._read_npy, _HEADER + ".npy", "uint8", None)
        try:
            return json.loads(raw.tobytes().decode("utf-8"))
        except (ValueError, RecursionError) as e:
            raise self.error(f"the header is not valid JSON ({e})") from None

    def _check_header(self, header):
        """Every field of the header, by type and range; sets names, dtypes, shapes."""
        if not isinstance(header, dict):
            raise self.error(f"the header is {_json_type(header)}, not a JSON object")
        if header.get("format") != FORMAT:
            raise CheckpointError(f"{self.path!r} is not a symgrad checkpoint (format "
                                  f"{header.get('format')!r}, expected {FORMAT!r})")
        version = header.get("version")
        if type(version) is not int:
            raise self.error(f"header field 'version' is {_json_type(version)} ({version!r}), "
                             f"not an integer; this symgrad reads version {VERSION}")
        if version != VERSION:
            newer = " (written by a newer symgrad: upgrade to read it)" if version > VERSION else ""
            raise self.error(f"checkpoint format version {version} is not supported; this symgrad "
                             f"reads version {VERSION} only{newer}")
        missing = [k for k in _HEADER_KEYS if k not in header]
        unknown = sorted(k for k in header if k not in _HEADER_KEYS)
        if missing or unknown:
            raise self.error(f"header fields missing: {missing}, unknown: {unknown}")
        self.names = self._list_of(header, "names", self._check_name)
        n = len(self.names)
        self.dtypes = self._list_of(header, "dtypes", self._check_dtype, n)
        self.shapes = [tuple(s) for s in self._list_of(header, "shapes", self._check_shape, n)]
        self.index = {name: i for i, name in enumerate(self.names)}
        if len(self.index) != n:
            raise self.error("header field 'names' repeats a name")

    def _list_of(self, header, key, check, length=None):
        items = header[key]
        if not isinstance(items, list):
            raise self.error(f"header field {key!r} is {_json_type(items)}, not an array")
        if length is not None and len(items) != length:
            raise self.error(f"header field {key!r} has {len(items)} entries, 'names' {length}")
        for i, item in enumerate(items):
            problem = check(item)
            if problem:
                raise self.error(f"header field {key!r}, entry {i}: {problem}")
        return items

    @staticmethod
    def _check_name(name):
        if not isinstance(name, str):
            return f"{_json_type(name)} ({name!r}), not a string"

    @staticmethod
    def _check_dtype(dtype):
        if dtype not in _dt.SUPPORTED:
            return f"{dtype!r} is not one of the dtypes of shared variables {list(_dt.SUPPORTED)}"

    @staticmethod
    def _check_shape(shape):
        if not isinstance(shape, list) or len(shape) > 64:
            return f"{shape!r} is not a shape (an array of at most 64 lengths)"
        if any(type(d) is not int or not 0 <= d < 2 ** 63 for d in shape):
            return f"{shape!r} is not a shape (lengths are integers from 0 to 2**63 - 1)"

    def _check_members(self):
        names = self._zip.namelist()
        want = [_HEADER + ".npy"] + [f"a{i}.npy" for i in range(len(self.names))]
        if sorted(names) == sorted(want):
            return
        missing = [m for m in want if m not in names]
        other = sorted(set(m for m in names if m not in want or names.count(m) > 1))
        parts = [f"missing {missing}"] * bool(missing)
        parts += [f"unexpected or repeated {other}"] * bool(other)
        raise self.error(f"the archive's members do not match its header ({', '.join(parts)}); it "
                         f"was not written by sg.save or was changed since")

    def _read_npy(self, member, dtype, shape):
        """Member ``member`` as an array, after checking it is a plain .npy of exactly this
        dtype and shape (``shape=None``: any 1-d up to the header limit) and size."""
        info = self._zip.getinfo(member)
        with self._zip.open(info) as f:
            got_shape, fortran, got_dtype = self._npy_header(f, member)
            if shape is None:  # the JSON header: bytes, and not too many
                if len(got_shape) != 1 or got_shape[0] > _MAX_HEADER_BYTES:
                    raise self.error(f"member {member!r} holds {got_dtype} {got_shape}, not a "
                                     f"header of at most {_MAX_HEADER_BYTES} bytes")
                shape = got_shape
            if got_dtype != np.dtype(dtype) or got_shape != shape:
                raise self.error(f"member {member!r} holds {got_dtype} {got_shape}, the header "
                                 f"says {dtype} {shape}")
            # The zip directory's size bounds what is read: it must be this array's, exactly.
            size = f.tell() + math.prod(shape) * got_dtype.itemsize
            if info.file_size != size:
                raise self.error(f"member {member!r} is {info.file_size} bytes, but a .npy array "
                                 f"of {dtype} {shape} is {size}")
            return self._read_data(f, member, got_dtype, shape, fortran, size - f.tell())

    def _npy_header(self, f, member):
        """(shape, fortran_order, dtype) from the .npy header at ``f``; never unpickles."""
        magic = f.read(8)
        if len(magic) < 8 or magic[:6] != b"\x93NUMPY" or magic[6:] not in (b"\1\0", b"\2\0"):
            raise self.error(f"member {member!r} is not a .npy array (version 1 or 2)")
        fmt = np.lib.format
        read = fmt.read_array_header_1_0 if magic[6] == 1 else fmt.read_array_header_2_0
        return read(f, max_header_size=_MAX_NPY_HEADER)

    def _read_data(self, f, member, dtype, shape, fortran, nbytes):
        flat = np.empty(math.prod(shape), dtype)
        view, pos = memoryview(flat).cast("B"), 0
        while pos < nbytes:
            chunk = f.read(min(_CHUNK, nbytes - pos))
            if not chunk:
                raise self.error(f"member {member!r} is truncated at byte {pos} of {nbytes}")
            view[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
        return flat.reshape(shape, order="F" if fortran else "C")


def _open_regular(path):
    """``path`` opened for reading; refuses what is not a regular file (a FIFO would block)."""
    mode = os.stat(path).st_mode  # FileNotFoundError as it is
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{path!r} is not a regular file, so not a symgrad checkpoint")
    return open(path, "rb")


def read(path):
    """The arrays of a checkpoint as an ordered ``{name: ndarray}``.

    Raises
    ------
    CheckpointError
        If ``path`` is not a symgrad checkpoint, or a damaged one.
    """
    with _Archive(os.fspath(path)) as ar:
        return {name: ar.array(name) for name in ar.names}


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
        differs; or saying what is wrong with a damaged file. Nothing is
        changed then.
    FileNotFoundError
        If there is no file at ``path``.
    """
    named = _named(obj)
    path = os.fspath(path)
    comm = _comm_of(obj)
    if comm is None:
        _assign(named, _read_values(path, named, strict))
        return list(named)
    # Rank 0 reads and checks; its outcome, then its values, go to every rank.
    values = _on_rank0(comm, "sg.load", lambda: _read_values(path, named, strict), share=False)
    from .distributed import bcast_arrays
    mine = [values[name] if values else sv.get_value(borrow=True) for name, sv in named.items()]
    # the random streams' states too: every rank draws with rank 0's (symgrad/distributed.py)
    _assign(named, dict(zip(named, bcast_arrays(comm, mine, "sg.load's broadcast"))))
    return list(named)


def _read_values(path, named, strict):
    with _Archive(path) as ar:
        problems = _differences(ar, named, strict)
        if problems:
            raise CheckpointError(f"cannot load {path!r}; nothing was changed:\n  "
                                  + "\n  ".join(problems))
        return {name: ar.array(name) for name in named}


def _comm_of(obj):
    """The communicator of a data-parallel train step, else None."""
    return obj.comm if isinstance(obj, TrainStep) else None


def _on_rank0(comm, what, work, share=True):
    """``work()`` on rank 0 only; every rank raises its error if it failed (rank 0 its own,
    the others one of its type, or a DistributedError), else returns its result (with
    ``share`` False, only rank 0 gets it; the others get None)."""
    from .distributed import bcast_object
    result, failure = None, None
    if comm.Get_rank() == 0:
        try:
            result = work()
        except Exception as e:
            failure = e
    fault = bcast_object(comm, None if failure is None else (type(failure), str(failure)),
                         f"{what}'s result from rank 0")
    if failure is not None:
        raise failure
    if fault is not None:
        kind, text = fault
        if issubclass(kind, (CheckpointError, OSError, ValueError, TypeError)):
            raise kind(f"(on rank 0) {text}")
        from .errors import DistributedError
        raise DistributedError(f"{what} failed on rank 0: {kind.__name__}: {text}")
    return bcast_object(comm, result, f"{what}'s result from rank 0") if share else result


def _differences(ar, named, strict):
    """What keeps the checkpoint's header from fitting ``named``, one line each."""
    problems = []
    missing = [n for n in named if n not in ar.index]
    if missing:
        problems.append(f"missing from the checkpoint ({len(missing)}): {', '.join(missing)}")
    extra = [n for n in ar.names if n not in named]
    if extra and strict:
        problems.append(f"in the checkpoint but not here ({len(extra)}): {', '.join(extra)} "
                        f"(pass strict=False to ignore them)")
    for name, sv in named.items():
        if name not in ar.index:
            continue
        i, have = ar.index[name], sv.get_value(borrow=True)
        if ar.shapes[i] != have.shape:
            problems.append(f"shape of {name}: {ar.shapes[i]} in the checkpoint, {have.shape} here")
        if ar.dtypes[i] != have.dtype.name:
            problems.append(f"dtype of {name}: {ar.dtypes[i]} in the checkpoint, {have.dtype} here")
    return problems


def _assign(named, values):
    """Set every value, or (interrupted, or refused by a variable) none of them."""
    old = {name: sv.get_value(borrow=True) for name, sv in named.items()}
    try:
        for name, sv in named.items():
            sv.set_value(values[name], borrow=True)  # freshly read from disk: nobody else holds it
    except BaseException:
        for name, sv in named.items():
            sv.set_value(old[name], borrow=True)
        raise
