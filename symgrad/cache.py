"""The on-disk cache of compiled kernels: a private, content-addressed directory.

Layout under ``sg.config.cache_dir`` (``SYMGRAD_CACHE_DIR``)::

    <key[:2]>/<key>/<name>.c, <name>.so, meta.json   one entry per key
    index/<nkey[:2]>/<nkey>                            the key built for a compiler-free key
    tmp/<key[:12]>-<host>.<pid>-<random>/              entries being built, and by whom
    trash/<random>/                                    entries being removed
    failed/<key>.c                                     sources the compiler rejected (the last 20)

An entry appears by renaming a finished build directory onto its final path,
which is atomic on one filesystem: a reader sees a whole entry or none, and
two builders of one key cost at most a duplicate compile (the loser discards
its copy). There is no lock. Every hit is verified (size and sha256 of the
library), so a truncated or corrupt entry is moved aside and rebuilt, never
loaded. Nothing in the cache is followed through a symbolic link or read
past a small bound: a damaged entry (a FIFO, a link to ``/dev/zero``, a file
where a folder belongs, an unreadable library) is removed and rebuilt.

A build whose process died (same host, its pid gone) is removed by the next
compile that misses; one of another host after ``STALE_BUILD_S``.

Command line, for users who need to look at or clean the cache::

    python -m symgrad.cache info      # directory, entries, total size
    python -m symgrad.cache clear     # remove every entry
    python -m symgrad.cache verify    # check every entry, remove corrupt ones
"""

import argparse
import errno
import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import stat
import sys
import tempfile
import time

from .config import config
from .errors import CacheError, CompileError

__all__ = ["root", "check_private", "check_exec", "entry_path", "lookup", "new_build_dir",
           "write_meta", "publish", "discard", "read_index", "write_index", "verify_entry",
           "entries", "tidy", "info", "clear", "verify", "main", "error"]

META = "meta.json"
# meta.json is a few hundred bytes; one larger is damaged and not read further.
META_MAX_BYTES = 64 << 10
# A build directory older than this (three times the compiler's 300 s
# timeout) belongs to a killed process, whoever made it.
STALE_BUILD_S = 900
# Sources of failed compiles kept for the user to read: the newest ones only.
FAILED_MAX_FILES = 20
FAILED_MAX_BYTES = 8 << 20
FAILED_MAX_AGE_S = 7 * 86400
# The next compile that misses cleans abandoned builds, at most this often.
TIDY_EVERY_S = 60
_SHARD = re.compile(r"[0-9a-f]{2}\Z")
_KEY = re.compile(r"[0-9a-f]{64}\Z")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_BUILD = re.compile(r"[0-9a-f]{12}-([0-9a-f]{8})\.([0-9]+)-")
_DIRS = ("tmp", "trash", "failed", "index")
_last_tidy = {}


def root(create=True):
    """Return the cache directory, made private if new, after checking it is safe.

    Parameters
    ----------
    create : bool
        Create the directory (and missing parents) with mode 0700 if absent.

    Raises
    ------
    CacheError
        If the directory cannot be made (a parent not writable, or a file),
        is not a directory, is not owned by the current user or is writable
        by group or others: anyone who can write there could plant a library
        that symgrad would load.
    """
    if not config.cache_dir:
        raise CacheError("sg.config.cache_dir is empty: set it (or SYMGRAD_CACHE_DIR) to a "
                         "private directory, or leave SYMGRAD_CACHE_DIR unset for "
                         "~/.cache/symgrad")
    path = os.path.abspath(os.path.expanduser(config.cache_dir))
    if create:
        try:
            _makedirs_private(path)
        except OSError as e:
            raise error(path, e) from None
    if os.path.lexists(path):
        check_private(path)
    return path


def _makedirs_private(path):
    # os.makedirs gives `mode` to the leaf only; new parents must be private too.
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:  # another process, or a file that check_private names
            pass


def error(path, e):
    """Return a :class:`CacheError` saying why the OSError `e` makes the cache `path` unusable."""
    if isinstance(e, CacheError):
        return e
    where = e.filename or path
    if e.errno in (errno.EACCES, errno.EPERM):
        uid = os.getuid() if hasattr(os, "getuid") else "?"
        problem = f"{where} cannot be written by you (uid {uid}): {e.strerror}"
    elif e.errno == errno.ENOTDIR:
        problem = f"{_first_non_dir(where)} is a file, where a directory is needed"
    elif e.errno == errno.EROFS:
        problem = f"{where} is on a read-only filesystem"
    elif e.errno in (errno.ENOSPC, errno.EDQUOT):
        problem = f"no space is left for {where} ({e.strerror})"
    else:
        problem = f"{where}: {e.strerror or e}"
    return CacheError(f"the symgrad cache directory {path} cannot be used: {problem}. Set "
                      f"SYMGRAD_CACHE_DIR (or sg.config.cache_dir) to a directory of yours "
                      f"that you can write to.")


def _first_non_dir(path):
    # The component of `path` that is a file (ENOTDIR names the whole path).
    parts = os.path.abspath(path).split(os.sep)
    for k in range(2, len(parts) + 1):
        prefix = os.sep.join(parts[:k])
        if os.path.lexists(prefix) and not os.path.isdir(prefix):
            return prefix
    return path


def check_private(path):
    """Raise :class:`CacheError` unless `path` is a directory only this user can write to."""
    fix = (f"Fix: `chmod 700 {shlex.quote(path)}` if it is yours, or set SYMGRAD_CACHE_DIR "
           f"(or sg.config.cache_dir) to a private directory.")
    try:
        st = os.stat(path)
    except OSError as e:  # e.g. a symlink to nowhere
        raise CacheError(f"the symgrad cache directory {path} cannot be used ({e}). {fix}") from e
    if not stat.S_ISDIR(st.st_mode):
        raise CacheError(f"the symgrad cache path {path} is not a directory. {fix}")
    uid = os.getuid() if hasattr(os, "getuid") else st.st_uid
    if st.st_uid != uid:
        problem = f"is owned by uid {st.st_uid}, not by you (uid {uid})"
    elif st.st_mode & 0o022:
        who = " and ".join(w for w, bit in (("group", 0o020), ("others", 0o002))
                           if st.st_mode & bit)
        problem = f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):o})"
    else:
        return
    raise CacheError(f"refusing the symgrad cache directory {path}: it {problem}, so another "
                     f"user could plant code that symgrad would load. {fix}")


def check_exec(path):
    """Raise :class:`CacheError` if `path` is on a filesystem mounted ``noexec``.

    The loader cannot map a library from there ("failed to map segment"), so
    every kernel built into it would be useless.
    """
    try:
        noexec = os.statvfs(path).f_flag & getattr(os, "ST_NOEXEC", 0)
    except (OSError, AttributeError):  # no statvfs: the load says it instead
        return
    if noexec:
        raise CacheError(f"the symgrad cache directory {path} is on a filesystem mounted "
                         f"noexec: no kernel compiled into it can be loaded. Set "
                         f"SYMGRAD_CACHE_DIR (or sg.config.cache_dir) to a directory on a "
                         f"filesystem that allows running programs, e.g. under your home.")


def entry_path(root_dir, key):
    """Return the directory of the entry for `key`."""
    return os.path.join(root_dir, key[:2], key)


def lookup(root_dir, key, name):
    """Return the path of the verified library for `key`, or None.

    A damaged entry (or whatever stands in its place) is moved aside, so the
    caller rebuilds it.
    """
    entry = entry_path(root_dir, key)
    if not _real_dir(os.path.dirname(entry)) or _kind(entry) is None:
        return None
    if verify_entry(entry, name) is None:
        return os.path.join(entry, name + ".so")
    discard(root_dir, entry)
    return None


def new_build_dir(root_dir, key):
    """Make a fresh private directory on the cache's filesystem to build `key` in.

    Its name records this process (host and pid), so that once the process
    is gone the next compile can tell the build was abandoned.
    """
    tmp = _ensure_dir(os.path.join(root_dir, "tmp"))
    return tempfile.mkdtemp(prefix=f"{key[:12]}-{_host_tag()}.{os.getpid()}-", dir=tmp)


def write_meta(build_dir, key, name, **extra):
    """Record the size and sha256 of ``<name>.so`` in ``meta.json``; `extra` goes in as is."""
    lib = os.path.join(build_dir, name + ".so")
    meta = {"key": key, "name": name, "size": os.path.getsize(lib), "sha256": file_sha256(lib),
            "created": time.time(), **extra}
    with open(os.path.join(build_dir, META), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def publish(root_dir, build_dir, key, name):
    """Rename the finished `build_dir` to the entry of `key`; return the library's path.

    If another process published the key first, its entry is used (when valid)
    and ours is discarded.
    """
    final = entry_path(root_dir, key)
    for _ in range(3):
        _ensure_dir(os.path.dirname(final))
        try:
            os.rename(build_dir, final)
            return os.path.join(final, name + ".so")
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOENT, errno.ENOTDIR):
                raise
        # Lost the race, or a file stands there: a damaged winner is moved aside.
        if verify_entry(final, name) is None:
            _rmtree(build_dir)
            return os.path.join(final, name + ".so")
        discard(root_dir, final)
    raise CompileError(f"could not publish the cache entry {final}: it kept being replaced")


def discard(root_dir, path):
    """Remove an entry (or a file in its place) without a reader ever seeing it half deleted.

    It is renamed into ``trash/`` first (atomic), then deleted there; a
    concurrent discard of the same entry is not an error.
    """
    trash = os.path.join(root_dir, "trash")
    unlocked = False
    # A concurrent `clear` may delete trash/ (and our holder in it) at any
    # moment: make them again and retry until the entry is gone.
    for _ in range(100):
        try:
            holder = tempfile.mkdtemp(dir=_ensure_dir(trash))
        except FileNotFoundError:
            continue
        try:
            os.rename(path, os.path.join(holder, "x"))
        except FileNotFoundError:
            if os.path.lexists(path):  # the holder vanished, not the entry
                _rmtree(holder)
                continue
        except PermissionError as e:
            _rmtree(holder)
            # Moving a directory rewrites its "..": it must be writable (one
            # chmod 000 by accident, say). Ours, so make it so once.
            if unlocked or _kind(path) != "dir":
                raise error(root_dir, e) from None
            os.chmod(path, 0o700)
            unlocked = True
            continue
        _rmtree(holder)
        return
    raise CompileError(f"could not remove the cache entry {path}: its trash directory "
                       f"{trash} kept disappearing")


def index_path(root_dir, nkey):
    """The index file naming the key last built for the compiler-free key `nkey`."""
    return os.path.join(root_dir, "index", nkey[:2], nkey)


def read_index(root_dir, nkey):
    """Return the key the index holds for `nkey`, or None (absent or damaged)."""
    try:
        text = _read_bounded(index_path(root_dir, nkey), 256).decode("ascii").strip()
    except (OSError, ValueError):
        return None
    return text if _KEY.match(text) else None


def write_index(root_dir, nkey, key):
    """Record atomically that `key` is a build of the compiler-free key `nkey`.

    Returns whether it did: a concurrent `clear` may remove the index
    under it a few times in a row, and then the record is skipped (it only
    serves machines without a compiler).
    """
    path = index_path(root_dir, nkey)
    for _ in range(5):
        try:
            _ensure_dir(os.path.join(root_dir, "index"))
            fd, tmp = tempfile.mkstemp(prefix=".", dir=_ensure_dir(os.path.dirname(path)))
            with os.fdopen(fd, "w") as f:
                f.write(key + "\n")
            if _kind(path) not in (None, "a file"):  # damage where the file belongs
                _rmtree(path)
            os.replace(tmp, path)
            return True
        except FileNotFoundError:
            continue
    return False


def file_sha256(path):
    """Return the hex sha256 of a regular file's bytes (never through a symlink)."""
    return _size_and_sha256(path)[1]


def _size_and_sha256(path, expected_size=None):
    # (size, sha256); the sha256 is None when the size is not `expected_size`.
    fd, st = _open_regular(path)
    with os.fdopen(fd, "rb") as f:
        if expected_size is not None and st.st_size != expected_size:
            return st.st_size, None
        h = hashlib.sha256()
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return st.st_size, h.hexdigest()


def _open_regular(path):
    """Open `path` for reading if it is a regular file: (fd, stat).

    O_NOFOLLOW: a symlink is refused (ELOOP), never followed to /dev/zero or
    another user's file. O_NONBLOCK: a FIFO does not block the open, and is
    then refused like every other non-regular file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _read_bounded(path, limit):
    """The bytes of the regular file `path`; ValueError if it holds more than `limit`."""
    fd, _ = _open_regular(path)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"more than {limit} bytes")
    return data


def _why(e):
    if isinstance(e, OSError) and e.errno == errno.ELOOP:
        return "a symbolic link"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return f"{type(e).__name__}: {e}"


def verify_entry(entry, name=None):
    """Return None if the entry is whole, else a sentence saying what is wrong."""
    kind = _kind(entry)
    if kind != "dir":
        return "it is missing" if kind is None else f"it is {kind}, not a directory"
    try:
        meta = json.loads(_read_bounded(os.path.join(entry, META), META_MAX_BYTES))
        key, lib_name, size, digest = meta["key"], meta["name"], meta["size"], meta["sha256"]
    except FileNotFoundError:
        return "meta.json is missing"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"meta.json is unreadable ({_why(e)})"
    if key != os.path.basename(entry):
        return f"meta.json names another key ({str(key)[:16]}...)"
    if not isinstance(lib_name, str) or not _NAME.match(lib_name) or name not in (None, lib_name):
        return f"meta.json names an unexpected library {lib_name!r}"
    try:
        actual, actual_digest = _size_and_sha256(os.path.join(entry, lib_name + ".so"), size)
    except FileNotFoundError:
        return f"{lib_name}.so is missing"
    except OSError as e:
        return f"{lib_name}.so is unreadable ({_why(e)})"
    if actual != size:
        return f"{lib_name}.so has {actual} bytes, meta.json says {size}"
    if actual_digest != digest:
        return f"{lib_name}.so does not match its sha256"
    return None


def entries(root_dir):
    """Yield the path of every entry in the cache (a directory, or damage in its place)."""
    for shard in _listdir(root_dir):
        path = os.path.join(root_dir, shard)
        if _SHARD.match(shard) and _kind(path) == "dir":  # never list through a symlink
            for key in _listdir(path):
                if _KEY.match(key):
                    yield os.path.join(path, key)


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def _kind(path):
    """None if nothing is at `path`, "dir" for a directory, else what it is (not followed)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(mode):
        return "dir"
    return ("a symbolic link" if stat.S_ISLNK(mode) else "a FIFO" if stat.S_ISFIFO(mode)
            else "a file" if stat.S_ISREG(mode) else "a special file")


def _real_dir(path):
    """Whether `path` is a directory; damage in its place (a file, a link) is removed."""
    kind = _kind(path)
    if kind not in (None, "dir"):
        _rmtree(path)
    return kind == "dir"


def _ensure_dir(path):
    """Make the private directory `path` unless there; damage in its place is removed."""
    for _ in range(3):
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            if _real_dir(path):
                return path
    os.mkdir(path, 0o700)  # raises what keeps it from being made
    return path


def _rmtree(path):
    """Remove a file, link or directory tree, quietly; a tree made unreadable is made
    readable first (it is ours)."""
    if _kind(path) not in (None, "dir"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
        _unlock_dirs(path)
        shutil.rmtree(path, ignore_errors=True)


def _unlock_dirs(path):
    try:
        os.chmod(path, 0o700, follow_symlinks=False)
        with os.scandir(path) as it:
            subdirs = [e.path for e in it if e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for d in subdirs:
        _unlock_dirs(d)


@functools.cache
def _host_tag():
    # This host, boot and pid namespace: a build named with the same tag has
    # a pid that os.kill can check. Another tag's builds age out instead.
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(str(os.stat(path).st_ino) if path.endswith("pid") else _read(path))
        except OSError:
            pass
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


def _read(path):
    with open(path) as f:
        return f.read(200)


def _tree_size(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except FileNotFoundError:  # removed by a concurrent discard
                pass
    return total


def info(root_dir):
    """Return a dict: directory, entries, bytes (of entries), failed sources, builds under way."""
    found = list(entries(root_dir))
    return {"directory": root_dir, "entries": len(found),
            "bytes": sum(_tree_size(e) for e in found),
            "failed": len(_listdir(os.path.join(root_dir, "failed"))),
            "building": len(_listdir(os.path.join(root_dir, "tmp")))}


def clear(root_dir):
    """Remove every entry, kept failed source and abandoned build; return the number of entries."""
    removed = 0
    for entry in entries(root_dir):
        discard(root_dir, entry)
        removed += 1
    for name, _ in _damaged_layout(root_dir):
        _rmtree(name)
    for shard in _listdir(root_dir):
        if _SHARD.match(shard):
            _rmdir_quiet(os.path.join(root_dir, shard))
    for d in ("failed", "trash", "index"):
        _rmtree(os.path.join(root_dir, d))
    _remove_stale_builds(root_dir)
    return removed


def verify(root_dir):
    """Check every entry; remove damaged ones, abandoned builds and surplus failed sources.

    Returns
    -------
    list of (str, str)
        ``(path, what is wrong)`` for every damaged entry, or file where one
        of the cache's directories belongs, that was removed.
    """
    bad = []
    for path, problem in _damaged_layout(root_dir):
        _rmtree(path)
        bad.append((path, problem))
    for entry in entries(root_dir):
        problem = verify_entry(entry)
        if problem is not None:
            discard(root_dir, entry)
            bad.append((entry, problem))
    _prune_index(root_dir)
    _remove_stale_builds(root_dir)
    _remove_old_trash(root_dir)
    prune_failed(root_dir)
    return bad


def _damaged_layout(root_dir):
    # Whatever stands where one of the cache's own directories belongs.
    for name in _listdir(root_dir):
        path = os.path.join(root_dir, name)
        if _SHARD.match(name) or name in _DIRS:
            kind = _kind(path)
            if kind not in (None, "dir"):
                yield path, f"it is {kind} where a directory belongs"


def _prune_index(root_dir):
    # Index files naming no entry, damaged ones and writes a kill cut short.
    index = os.path.join(root_dir, "index")
    for shard in _listdir(index):
        for name in _listdir(os.path.join(index, shard)):
            key = read_index(root_dir, name) if _KEY.match(name) else None
            if key is None or _kind(entry_path(root_dir, key)) != "dir":
                _rmtree(os.path.join(index, shard, name))


def tidy(root_dir):
    """Remove abandoned builds, old trash and surplus failed sources, at most once a
    minute per process (a compile that misses calls it); never raises."""
    now = time.monotonic()
    if now - _last_tidy.get(root_dir, -TIDY_EVERY_S) < TIDY_EVERY_S:
        return
    _last_tidy[root_dir] = now
    try:
        _remove_stale_builds(root_dir)
        _remove_old_trash(root_dir)
        prune_failed(root_dir)
    except OSError:  # housekeeping; the compile goes on
        pass


def _remove_stale_builds(root_dir):
    tmp = os.path.join(root_dir, "tmp")
    now = time.time()
    for d in _listdir(tmp):
        path = os.path.join(tmp, d)
        try:
            age = now - os.lstat(path).st_mtime
        except FileNotFoundError:
            continue
        if age > STALE_BUILD_S or _owner_gone(d):
            _rmtree(path)


def _owner_gone(build_name):
    """Whether the build was made on this host by a process that no longer exists."""
    m = _BUILD.match(build_name)
    if m is None or m.group(1) != _host_tag() or int(m.group(2)) == os.getpid():
        return False
    try:
        os.kill(int(m.group(2)), 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # alive but not ours (EPERM), or no such pid number
        return False
    return False


def _remove_old_trash(root_dir):
    # A discard takes milliseconds; a holder a minute old belongs to a killed one.
    trash = os.path.join(root_dir, "trash")
    now = time.time()
    for d in _listdir(trash):
        path = os.path.join(trash, d)
        try:
            if now - os.lstat(path).st_mtime > TIDY_EVERY_S:
                _rmtree(path)
        except FileNotFoundError:
            pass


def keep_failed(root_dir, src, key):
    """Move the source a compile failed on to ``failed/<key>.c``; return its path."""
    for _ in range(5):  # a concurrent `clear` removes failed/
        path = os.path.join(_ensure_dir(os.path.join(root_dir, "failed")), key + ".c")
        try:
            os.replace(src, path)
            break
        except FileNotFoundError:
            if not os.path.exists(src):
                raise
    prune_failed(root_dir, keep=path)
    return path


def prune_failed(root_dir, keep=None):
    """Keep the newest failed sources only: at most FAILED_MAX_FILES, FAILED_MAX_BYTES
    and FAILED_MAX_AGE_S old (but always `keep`, the one a message just named)."""
    failed = os.path.join(root_dir, "failed")
    now = time.time()
    kept = []
    for name in _listdir(failed):
        path = os.path.join(failed, name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if path != keep and (not stat.S_ISREG(st.st_mode) or
                             now - st.st_mtime > FAILED_MAX_AGE_S):
            _rmtree(path)
        else:
            kept.append((path == keep, st.st_mtime, st.st_size, path))
    kept.sort(reverse=True)  # `keep` first, then newest first
    total = 0
    for i, (_, _, size, path) in enumerate(kept):
        total += size
        if i > 0 and (i >= FAILED_MAX_FILES or total > FAILED_MAX_BYTES):
            _rmtree(path)


def _rmdir_quiet(path):
    try:
        os.rmdir(path)
    except OSError:  # not empty: a concurrent build published into it
        pass


def _human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def main(argv=None):
    """Run the command line; return the exit status (1: `verify` found corruption; 2: error)."""
    parser = argparse.ArgumentParser(
        prog="python -m symgrad.cache", description="Inspect or clean symgrad's kernel cache.")
    parser.add_argument("command", choices=("info", "clear", "verify"))
    args = parser.parse_args(argv)
    try:
        root_dir = root(create=False)
    except CompileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return _run(args.command, root_dir)
    except OSError as e:  # a directory we may not write to, say: no traceback
        print(f"error: {error(root_dir, e)}", file=sys.stderr)
        return 2


def _run(command, root_dir):
    if command == "info":
        s = info(root_dir)
        print(f"directory: {s['directory']}\nentries:   {s['entries']}\n"
              f"size:      {_human(s['bytes'])} ({s['bytes']} bytes)\n"
              f"failed:    {s['failed']} kept source(s) of failed compiles\n"
              f"building:  {s['building']} build(s) in progress or abandoned")
        return 0
    if command == "clear":
        print(f"removed {clear(root_dir)} entries from {root_dir}")
        return 0
    bad = verify(root_dir)
    for entry, problem in bad:
        print(f"corrupt, removed: {entry}: {problem}")
    print(f"checked {root_dir}: {len(bad)} corrupt entries removed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
