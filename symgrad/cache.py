"""The on-disk cache of compiled kernels: a private, content-addressed directory.

Layout under ``sg.config.cache_dir`` (``SYMGRAD_CACHE_DIR``)::

    <key[:2]>/<key>/<name>.c, <name>.so, meta.json   one entry per key
    tmp/<random>/                                      entries being built
    trash/<random>/                                    entries being removed
    failed/<key>.c                                     sources the compiler rejected

An entry appears by renaming a finished build directory onto its final path,
which is atomic on one filesystem: a reader sees a whole entry or none, and
two builders of one key cost at most a duplicate compile (the loser discards
its copy). There is no lock. Every hit is verified (size and sha256 of the
library), so a truncated or corrupt entry is moved aside and rebuilt, never
loaded.

Command line, for users who need to look at or clean the cache::

    python -m symgrad.cache info      # directory, entries, total size
    python -m symgrad.cache clear     # remove every entry
    python -m symgrad.cache verify    # check every entry, remove corrupt ones
"""

import argparse
import errno
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import sys
import tempfile
import time

from .config import config
from .errors import CompileError

__all__ = ["root", "check_private", "entry_path", "lookup", "new_build_dir", "write_meta",
           "publish", "discard", "verify_entry", "entries", "info", "clear", "verify", "main"]

META = "meta.json"
# A build directory older than this belongs to a killed process, not to one
# still compiling, so `clear` and `verify` may remove it.
STALE_BUILD_S = 3600
_SHARD = re.compile(r"[0-9a-f]{2}\Z")
_KEY = re.compile(r"[0-9a-f]{64}\Z")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def root(create=True):
    """Return the cache directory, made private if new, after checking it is safe.

    Parameters
    ----------
    create : bool
        Create the directory (and missing parents) with mode 0700 if absent.

    Raises
    ------
    CompileError
        If the directory is not owned by the current user or is writable by
        group or others: anyone who can write there could plant a library
        that symgrad would load.
    """
    path = os.path.abspath(os.path.expanduser(config.cache_dir))
    if create:
        _makedirs_private(path)
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


def check_private(path):
    """Raise :class:`CompileError` unless `path` is a directory only this user can write to."""
    fix = (f"Fix: `chmod 700 {shlex.quote(path)}` if it is yours, or set SYMGRAD_CACHE_DIR "
           f"(or sg.config.cache_dir) to a private directory.")
    try:
        st = os.stat(path)
    except OSError as e:  # e.g. a symlink to nowhere
        raise CompileError(f"the symgrad cache directory {path} cannot be used ({e}). {fix}") from e
    if not stat.S_ISDIR(st.st_mode):
        raise CompileError(f"the symgrad cache path {path} is not a directory. {fix}")
    uid = os.getuid() if hasattr(os, "getuid") else st.st_uid
    if st.st_uid != uid:
        problem = f"is owned by uid {st.st_uid}, not by you (uid {uid})"
    elif st.st_mode & 0o022:
        who = " and ".join(w for w, bit in (("group", 0o020), ("others", 0o002))
                           if st.st_mode & bit)
        problem = f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):o})"
    else:
        return
    raise CompileError(f"refusing the symgrad cache directory {path}: it {problem}, so another "
                       f"user could plant code that symgrad would load. {fix}")


def entry_path(root_dir, key):
    """Return the directory of the entry for `key`."""
    return os.path.join(root_dir, key[:2], key)


def lookup(root_dir, key, name):
    """Return the path of the verified library for `key`, or None.

    A corrupt entry is moved aside (and so rebuilt by the caller).
    """
    entry = entry_path(root_dir, key)
    if not os.path.isdir(entry):
        return None
    if verify_entry(entry, name) is None:
        return os.path.join(entry, name + ".so")
    discard(root_dir, entry)
    return None


def new_build_dir(root_dir, key):
    """Make a fresh private directory on the cache's filesystem to build `key` in."""
    tmp = os.path.join(root_dir, "tmp")
    os.makedirs(tmp, 0o700, exist_ok=True)
    return tempfile.mkdtemp(prefix=key[:12] + "-", dir=tmp)


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
        os.makedirs(os.path.dirname(final), 0o700, exist_ok=True)
        try:
            os.rename(build_dir, final)
            return os.path.join(final, name + ".so")
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOENT):
                raise
        # Lost the race; a corrupt winner is moved aside and we try again.
        if verify_entry(final, name) is None:
            shutil.rmtree(build_dir, ignore_errors=True)
            return os.path.join(final, name + ".so")
        discard(root_dir, final)
    raise CompileError(f"could not publish the cache entry {final}: it kept being replaced")


def discard(root_dir, path):
    """Remove an entry without a reader ever seeing it half deleted.

    It is renamed into ``trash/`` first (atomic), then deleted there; a
    concurrent discard of the same entry is not an error.
    """
    trash = os.path.join(root_dir, "trash")
    # A concurrent `clear` may delete trash/ (and our holder in it) at any
    # moment: make them again and retry until the entry is gone.
    for _ in range(100):
        try:
            os.makedirs(trash, 0o700, exist_ok=True)
            holder = tempfile.mkdtemp(dir=trash)
        except FileNotFoundError:
            continue
        try:
            os.rename(path, os.path.join(holder, "x"))
        except FileNotFoundError:
            if os.path.lexists(path):  # the holder vanished, not the entry
                shutil.rmtree(holder, ignore_errors=True)
                continue
        shutil.rmtree(holder, ignore_errors=True)
        return
    raise CompileError(f"could not remove the cache entry {path}: its trash directory "
                       f"{trash} kept disappearing")


def file_sha256(path):
    """Return the hex sha256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def verify_entry(entry, name=None):
    """Return None if the entry is whole, else a sentence saying what is wrong."""
    try:
        with open(os.path.join(entry, META)) as f:
            meta = json.load(f)
        key, lib_name, size, digest = meta["key"], meta["name"], meta["size"], meta["sha256"]
    except FileNotFoundError:
        return "meta.json is missing"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"meta.json is unreadable ({type(e).__name__}: {e})"
    if key != os.path.basename(entry):
        return f"meta.json names another key ({str(key)[:16]}...)"
    if not isinstance(lib_name, str) or not _NAME.match(lib_name) or name not in (None, lib_name):
        return f"meta.json names an unexpected library {lib_name!r}"
    lib = os.path.join(entry, lib_name + ".so")
    try:
        actual = os.path.getsize(lib)
    except OSError:
        return f"{lib_name}.so is missing"
    if actual != size:
        return f"{lib_name}.so has {actual} bytes, meta.json says {size}"
    if file_sha256(lib) != digest:
        return f"{lib_name}.so does not match its sha256"
    return None


def entries(root_dir):
    """Yield the path of every entry directory in the cache."""
    for shard in _listdir(root_dir):
        if _SHARD.match(shard):
            for key in _listdir(os.path.join(root_dir, shard)):
                if _KEY.match(key):
                    yield os.path.join(root_dir, shard, key)


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


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
    for shard in _listdir(root_dir):
        if _SHARD.match(shard):
            _rmdir_quiet(os.path.join(root_dir, shard))
    shutil.rmtree(os.path.join(root_dir, "failed"), ignore_errors=True)
    shutil.rmtree(os.path.join(root_dir, "trash"), ignore_errors=True)
    _remove_stale_builds(root_dir)
    return removed


def verify(root_dir):
    """Check every entry; remove corrupt ones and abandoned builds.

    Returns
    -------
    list of (str, str)
        ``(entry, what is wrong)`` for every corrupt entry removed.
    """
    bad = []
    for entry in entries(root_dir):
        problem = verify_entry(entry)
        if problem is not None:
            discard(root_dir, entry)
            bad.append((entry, problem))
    _remove_stale_builds(root_dir)
    return bad


def _remove_stale_builds(root_dir):
    tmp = os.path.join(root_dir, "tmp")
    now = time.time()
    for d in _listdir(tmp):
        path = os.path.join(tmp, d)
        try:
            if now - os.stat(path).st_mtime > STALE_BUILD_S:
                shutil.rmtree(path, ignore_errors=True)
        except FileNotFoundError:
            pass


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
    if args.command == "info":
        s = info(root_dir)
        print(f"directory: {s['directory']}\nentries:   {s['entries']}\n"
              f"size:      {_human(s['bytes'])} ({s['bytes']} bytes)\n"
              f"failed:    {s['failed']} kept source(s) of failed compiles\n"
              f"building:  {s['building']} build(s) in progress or abandoned")
        return 0
    if args.command == "clear":
        print(f"removed {clear(root_dir)} entries from {root_dir}")
        return 0
    bad = verify(root_dir)
    for entry, problem in bad:
        print(f"corrupt, removed: {entry}: {problem}")
    print(f"checked {root_dir}: {len(bad)} corrupt entries removed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
