"""Compile generated C into a shared library, through the on-disk cache.

The cache key is a sha256 over everything that changes the binary: the source,
the library name, the exact compiler command line, the compiler's resolved
path and ``--version`` output, the CPU's feature flags (``-march=native``),
the Python and NumPy ABI, the symgrad version, the text of the headers and
sources in ``include/``, the support library's bytes and the BLAS library.
Nothing is bumped by hand.

Kernels link against the support library ``libsg_support.so`` (next to this
module, built by setup.py from ``include/*.c``: sg_kernel.c, sg_ops.c, ...):
the helpers every kernel calls are compiled once, at install time, not into
each kernel; ``sg_kernel.h`` and ``sg_ops.h`` only declare them. Kernels
built with a sanitizer (``-fsanitize=...`` in ``sg.config.cflags``) link
instead against a copy of the library built from the same sources with their
flags, so that the helpers are checked too: built once, into the cache. What does not
depend on the source is computed once per process, so a cache hit costs a few
milliseconds.

Every unit of a kernel includes ``sg_prelude.h`` first; setup.py precompiles it with
the default flags (``_cflags``), and a unit compiled with exactly those flags, by that
compiler, from those headers gets its folder on the include path (``_pch``): the same
binary, read faster. A ``.gch`` gcc cannot read makes the unit compile again without.

A machine with a filled cache needs no compiler: when none is found (or it
does not run), a second key -- the same without the compiler's path and
version -- finds, through the cache's index, the library the last compiler
built for this source and command line. Every C compiler builds to the
platform's one C ABI, so that library is as good as a new one; with a
compiler, its own build is used (or made), as the full key says.

>>> from symgrad.compiler import compile_library
>>> path = compile_library("int sg_abi_version(void) { return 1; }")  # doctest: +SKIP
>>> import ctypes; ctypes.CDLL(path).sg_abi_version()                  # doctest: +SKIP
1
"""

import functools
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys

from . import _cflags
from ._cflags import BASE_FLAGS
from ._version import __version__
from .codegen.writer import CSource, Unit
from .config import config
from .errors import CompileError

__all__ = ["compile_library", "CSource", "Unit", "blas_flags", "compiler_argv", "cache_key", "neutral_key",
           "find_compiler"]

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
INCLUDE_DIR = os.path.join(PACKAGE_DIR, "include")
# The helpers kernels call, compiled once (setup.py); the sources it is built from
# (setup.py takes every include/*.c, so does the sanitized copy built into the cache).
SUPPORT_LIB = os.path.join(PACKAGE_DIR, "libsg_support.so")
SUPPORT_SOURCES = tuple(sorted(f for f in os.listdir(INCLUDE_DIR) if f.endswith(".c")))
# The precompiled prelude (sg_prelude.h) setup.py builds for the default flags: see _cflags.
PCH_ROOT = os.path.join(PACKAGE_DIR, _cflags.PCH_DIR)
TIMEOUT_S = 300
STDERR_CHARS = 8000
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def compile_library(source, name="kernel", info=None):
    """Return the path of a shared library built from C `source`, cached on disk.

    Parameters
    ----------
    source : str or CSource
        A whole C translation unit (C11, GNU dialect: no trigraphs), or a
        :class:`CSource` of several, compiled in parallel and linked; the
        cache key ignores its comments.
        ``sg_abi.h`` and OpenBLAS's ``cblas.h`` (functions prefixed
        ``scipy_cblas_``) are on the include path, and the library links
        against OpenBLAS, libm and symgrad's support library (the helpers
        ``sg_kernel.h`` declares).
    name : str
        The file name (a C identifier) of ``<name>.c`` and ``<name>.so``.
    info : dict, optional
        Receives ``"cache_hit"``: whether the library was already in the cache.

    Returns
    -------
    str
        Path of the library inside the cache; load it with ``ctypes.CDLL``.

    Raises
    ------
    CompileError
        No compiler, a compiler failure (the message holds its stderr and the
        path of the kept source), or an unsafe cache directory.

    Examples
    --------
    >>> import ctypes
    >>> lib = ctypes.CDLL(compile_library("int two(void) { return 2; }"))  # doctest: +SKIP
    >>> lib.two()                                                         # doctest: +SKIP
    2
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name must be a C identifier (it names files), got {name!r}")
    # Imported here, not at the top: `python -m symgrad.cache` must not find the
    # module already imported by the package (runpy warns), and `import symgrad`
    # stays light.
    from . import cache

    root = cache.root()
    cache.check_exec(root)
    units = _units(source, name)
    try:
        argv = compiler_argv(find_compiler(), name)
        key = cache_key(units, name, argv)
    except CompileError as e:
        # No usable compiler: any compiler's build of this source and flags will do.
        hit = _lookup_without_compiler(cache, root, units, name)
        if hit is None:
            raise CompileError(f"{e} This kernel is not in the cache {root} either: run "
                               f"it once where a compiler is, with the same cache.") from None
        if info is not None:
            info["cache_hit"] = True
        return hit
    try:
        hit = cache.lookup(root, key, name)
        if info is not None:
            info["cache_hit"] = hit is not None
        path = hit or _build_entry(cache, root, units, name, argv, key)
        nkey = neutral_key(units, name)
        if cache.read_index(root, nkey) != key:
            cache.write_index(root, nkey, key)
    except OSError as e:  # the cache directory, not the compiler (CompileError)
        raise cache.error(root, e) from None
    return path


class _Units(tuple):
    """The units of a source, and the header each ``.c`` one includes first when there
    are several (``CSource.prelude``)."""

    prelude = None


def _units(source, name):
    """``source`` as its units: a plain string is one, ``<name>.c``."""
    if isinstance(source, CSource):
        units = _Units(source.units)
        units.prelude = source.prelude
        return units
    return _Units((Unit(f"{name}.c", source),))


def _build_entry(cache, root, units, name, argv, key):
    cache.tidy(root)  # abandoned builds, old failed sources: cheap, once a minute
    build = cache.new_build_dir(root, key)
    try:
        _build(build, units, name, argv[:len(argv) - len(_flags(name))],
               lambda src: cache.keep_failed(root, src, key))
        version = (_compiler_version(argv[0]).splitlines() or [""])[0]
        cache.write_meta(build, key, name, compiler={"path": argv[0], "version": version},
                         flags=argv[1:])
        return cache.publish(root, build, key, name)
    finally:
        # Gone already after a successful publish; otherwise a failed or lost build.
        shutil.rmtree(build, ignore_errors=True)


def _lookup_without_compiler(cache, root, units, name):
    # The cache key holds the compiler's identity, which cannot be known
    # without it; the index maps a key without it to the last build made.
    # Every compiler builds to the same C ABI, so reusing that library is safe.
    try:
        key = cache.read_index(root, neutral_key(units, name))
        return None if key is None else cache.lookup(root, key, name)
    except OSError as e:
        raise cache.error(root, e) from None


def find_compiler():
    """Return the configured compiler as an argv prefix, its program resolved on PATH.

    ``sg.config.cc`` may hold arguments (``"ccache gcc"``). The program keeps
    the name it was found under: wrappers such as ccache dispatch on it.
    """
    words = _cc_words()
    path = shutil.which(words[0])
    if path is None:
        raise CompileError(
            f"no C compiler was found: sg.config.cc (from SYMGRAD_CC) is {config.cc!r}, which is "
            f"not an executable on PATH. Install one (e.g. `apt-get install gcc`), point "
            f"SYMGRAD_CC at one, or use mode=\"py\", which needs no compiler.")
    return [path, *words[1:]]


def _cc_words():
    # An empty SYMGRAD_CC (or sg.config.cc) means unset: the system's `cc`.
    try:
        return shlex.split(config.cc or "") or ["cc"]
    except ValueError as e:  # an unbalanced quote
        raise CompileError(f"sg.config.cc (from SYMGRAD_CC) {config.cc!r} cannot be "
                           f"split into words: {e}") from None


@functools.cache
def blas_flags():
    """Return ``(include_dir, lib_dir, libname)`` of the scipy-openblas32 package.

    The package is located, not imported: importing it costs about 30 ms
    (``importlib.metadata``), most of a cache hit's budget. Its
    ``get_include_dir()`` and ``get_lib_dir()`` are these two folders of it,
    and ``get_library()`` is the ``libscipy_openblas*`` file's link name.
    """
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        raise CompileError("the BLAS package scipy-openblas32 is not installed: "
                           "`pip install scipy-openblas32`, or use mode=\"py\"")
    pkg = spec.submodule_search_locations[0]
    lib_dir = os.path.join(pkg, "lib")
    libs = sorted(f for f in os.listdir(lib_dir) if f.startswith("libscipy_openblas"))
    if not libs:
        raise CompileError(f"scipy-openblas32 at {pkg} has no libscipy_openblas library; "
                           f"reinstall it: `pip install --force-reinstall scipy-openblas32`")
    return os.path.join(pkg, "include"), lib_dir, os.path.splitext(libs[0])[0][3:]


def compiler_argv(cc, name):
    """Return the whole command that compiles ``<name>.c`` into ``<name>.so``.

    File names are relative (the compiler runs in the build directory), so
    the command is the same for every build and can go into the cache key.
    """
    return [*cc, *_flags(name)]


def _flags(name):
    # The command line after the compiler's own words.
    compile_flags, link_flags = _flag_parts()
    return [*compile_flags, "-o", f"{name}.so", f"{name}.c", *link_flags]


def _flag_parts():
    # The flags of compiling (options, include paths) and of linking (libraries).
    inc, lib, libname = blas_flags()
    extra = _extra_flags()
    if _sanitized(extra):
        # The library's copy built with the kernels' flags, in the cache; another
        # name, so that a process never takes one for the other.
        lib_dir = os.path.dirname(_sanitized_support(tuple(_cc_words()), tuple(extra)))
        support = [f"-L{lib_dir}", "-Xlinker", "-rpath", "-Xlinker", lib_dir,
                   f"-l{SANITIZED_SUPPORT[3:]}"]
    else:
        _support_digest()  # CompileError when the library is missing
        # -Xlinker, not -Wl,: a comma in the path would split the option.
        support = [f"-L{PACKAGE_DIR}", "-Xlinker", "-rpath", "-Xlinker", PACKAGE_DIR,
                   "-lsg_support"]
    # --no-as-needed: the kernel itself may call no OpenBLAS function, but the
    # support library's products (sg_blas_gemm) are bound to the OpenBLAS the
    # kernel names, which a linker defaulting to --as-needed would drop.
    return ([*BASE_FLAGS, *extra, f"-I{INCLUDE_DIR}", f"-I{inc}"],
            [*support, f"-L{lib}", "-Xlinker", "-rpath", "-Xlinker", lib,
             "-Xlinker", "--no-as-needed", f"-l{libname}", "-lm", *_linker()])


@functools.cache
def _linker():
    """``-fuse-ld=gold`` where binutils' gold is installed: linking a kernel reads the
    symbol tables of OpenBLAS (25 MB), which GNU ld takes ~40 ms of CPU to do and gold
    about half (a tenth of a small kernel's build). Same ELF output for the loader;
    part of the command line, hence of the cache key."""
    return ["-fuse-ld=gold"] if shutil.which("ld.gold") else []


def _extra_flags():
    return shlex.split(config.cflags) if isinstance(config.cflags, str) else list(config.cflags)


def _sanitized(extra):
    """Whether kernels are built with a sanitizer (``-fsanitize=...``): they then
    link against a support library built with the same flags, which instruments
    the helpers too (the installed one is built without)."""
    return any(f.startswith("-fsanitize=") for f in extra)


SANITIZED_SUPPORT = "libsg_support_sanitized"


def _sanitized_support(cc_words, extra):
    """The path of the support library built from include/*.c with the kernels'
    flags (``extra`` holding a sanitizer's), made once per cache: a cache entry of
    its own, keyed by its sources, command line and compiler, found (and verified)
    at every compile, rebuilt if gone."""
    from . import cache

    inc, lib, libname = blas_flags()
    cc = [shutil.which(cc_words[0]) or cc_words[0], *cc_words[1:]]
    name = SANITIZED_SUPPORT
    argv = [*cc, *BASE_FLAGS, *extra, "-DSG_NO_CLONES", f"-I{INCLUDE_DIR}", f"-I{inc}",
            "-o", f"{name}.so", *(os.path.join(INCLUDE_DIR, f) for f in SUPPORT_SOURCES),
            f"-L{lib}", "-Xlinker", "-rpath", "-Xlinker", lib, f"-l{libname}", "-lm"]
    key = _sha256_of("support library", name, *_environment(tuple(argv)))
    root = cache.root()
    try:
        hit = cache.lookup(root, key, name)
        if hit:
            return hit
        build = cache.new_build_dir(root, key)
        try:
            try:
                proc = _run_compiler(argv, build)
            except subprocess.TimeoutExpired:
                raise CompileError(f"the C compiler took more than {TIMEOUT_S} s on the "
                                   f"support library; command: {shlex.join(argv)}") from None
            except OSError as e:
                raise CompileError(f"the C compiler {argv[0]} could not be run: {e}") from e
            if proc.returncode != 0 or not os.path.isfile(os.path.join(build, name + ".so")):
                raise CompileError(_failure_message(argv, proc, INCLUDE_DIR))
            version = (_compiler_version(argv[0]).splitlines() or [""])[0]
            cache.write_meta(build, key, name, compiler={"path": argv[0], "version": version},
                             flags=argv[1:])
            return cache.publish(root, build, key, name)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    except OSError as e:
        raise cache.error(root, e) from None


@functools.cache
def _support_digest():
    """The sha256 of the support library's bytes, read once per process: a rebuilt
    library (other sources, flags or compiler) never pairs with kernels cached for
    the old one, which may call a helper it lacks or that changed signature."""
    try:
        with open(SUPPORT_LIB, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError as e:
        raise CompileError(
            f"symgrad's support library {SUPPORT_LIB} cannot be read ({e.strerror}): it is "
            f"built with the package; reinstall symgrad (`pip install .`), or in a source "
            f"checkout run `python setup.py build_ext --inplace`") from None


def _support_key(extra):
    # What the kernel's code depends on besides the headers: the library it links.
    if _sanitized(extra):
        return "sanitized " + os.path.basename(os.path.dirname(
            _sanitized_support(tuple(_cc_words()), tuple(extra))))
    return _support_digest()


def _code(units):
    """What the key hashes of the units: each one's name, kind and code (its text
    with comments blank, as the renderer hands it over). Comments never change the
    binary: a function whose kernel comments differ (an unpickled function whose
    gradient notes name fewer forward nodes, a user line moved) finds the same
    library."""
    code = [[u.name, u.glue, u.code] for u in units]
    prelude = getattr(units, "prelude", None)
    return json.dumps(code if prelude is None else [prelude, *code])


def cache_key(source, name, argv):
    """Return the hex sha256 identifying the library `argv` builds from `source`
    (a string or a :class:`CSource`; a CSource's comments do not count)."""
    units = source if isinstance(source, tuple) else _units(source, name)
    return _sha256_of(_code(units), name, *_environment(tuple(argv)),
                      _support_key(_extra_flags()))


def neutral_key(source, name):
    """The key of :func:`cache_key` without the compiler's path and version.

    It finds a cached library where no compiler runs (the cache's index
    maps it to the full key of the last build); every other word of the
    command line, ``SYMGRAD_CC``'s arguments included, still counts, but the
    choice of linker (``-fuse-ld=``, found like the compiler: on PATH), which
    makes the same library for the loader.
    """
    units = source if isinstance(source, tuple) else _units(source, name)
    flags = [f for f in _cc_words()[1:] + _flags(name) if not f.startswith("-fuse-ld=")]
    return _sha256_of(_code(units), name, json.dumps(flags), *_platform(),
                      _support_key(_extra_flags()))


def _sha256_of(*parts):
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        # Length-prefixed, so that no two different part lists hash alike.
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


@functools.cache
def _environment(argv):
    return (json.dumps(argv), os.path.realpath(argv[0]), _compiler_version(argv[0]),
            *_platform())


@functools.cache
def _platform():
    # What changes the binary besides the compiler and the command line.
    import numpy  # not at the top: numpy is only needed to build a key

    inc, lib_dir, libname = blas_flags()
    blas_lib = os.path.join(lib_dir, next(f for f in sorted(os.listdir(lib_dir))
                                          if f.startswith("lib" + libname)))
    return (_cpu_features(), _python_abi(), numpy.__version__, __version__,
            _headers(), f"{blas_lib} {os.path.getsize(blas_lib)}")


def _headers():
    # Kernels include every header of include/ (sg_kernel.h includes sg_math.h, ...):
    # a changed inline function changes the binary as much as a changed source. The
    # support library's sources count too (a sanitized copy is built from them).
    return "".join(f"{h}\0{_read(os.path.join(INCLUDE_DIR, h))}\0"
                   for h in sorted(os.listdir(INCLUDE_DIR)) if h.endswith((".h", ".c")))


@functools.cache
def _compiler_version(path):
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True,
                              errors="replace", timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CompileError(f"the C compiler {path} does not run: {e}") from e
    return proc.stdout + proc.stderr


@functools.cache
def _cpu_features():
    # -march=native compiles for this CPU's instruction sets: a library built
    # here may not run on a CPU lacking one, so its flags are part of the key.
    # (The model name is not: tuning changes speed, never correctness.)
    machine = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return f"{machine} {line.strip()}"
    except OSError:
        pass
    return f"{machine} {platform.processor()}"


def _python_abi():
    # The extension-module suffix holds the ABI tag (".cpython-311-x86_64-linux-gnu.so"):
    # sysconfig's SOABI without importing sysconfig and its data (about 3 ms).
    return f"{sys.implementation.cache_tag} {importlib.machinery.EXTENSION_SUFFIXES[0]}"


def _read(path):
    with open(path) as f:
        return f.read()


def _commands(cc, name, units):
    """The commands building ``<name>.so`` from ``units``: ``(compiles, link)``. One
    unit ``<name>.c`` is one command that compiles and links (``link`` is None);
    otherwise each ``.c`` unit compiles to an object -- glue at ``-O0``, the others
    at the command line's level -- and ``link`` links them."""
    compile_flags, link_flags = _flag_parts()
    if len(units) == 1 and units[0].name == f"{name}.c" and not units[0].glue:
        pch = _pch(cc, _cflags.unit_flags(compile_flags, glue=False))
        return [[*cc, *pch, *compiler_argv(cc, name)[len(cc):]]], None  # its output is <name>.so
    compiles, objects = [], []
    for u in units:
        if not u.name.endswith(".c"):
            continue
        flags = _cflags.unit_flags(compile_flags, u.glue)
        obj = u.name[:-2] + ".o"
        compiles.append([*cc, *_pch(cc, flags), *flags, "-c", u.name, "-o", obj])
        objects.append(obj)
    return compiles, [*cc, *compile_flags, "-o", f"{name}.so", *objects, *link_flags]


_PCH_FAILED = set()  # -I<folder> of precompiled headers that failed to read


def _pch(cc, flags):
    """``-I`` of the folder of sg_prelude.h's precompiled form built for exactly these
    unit flags by this compiler from these headers (``_cflags.pch_include``), first on
    the include path; else nothing. Not in the cache key: it changes the compiler's
    time, not its output."""
    if not os.path.isdir(PCH_ROOT):
        return []
    try:
        identity = _cflags.identity_of(cc[0], _compiler_version(cc[0]))
    except CompileError:
        return []
    found = _cflags.pch_include(PCH_ROOT, cc, identity, flags, [INCLUDE_DIR, blas_flags()[0]])
    return [] if set(found) & _PCH_FAILED else found


def _file_text(unit, units):
    """What the file of ``unit`` holds: a ``.c`` unit of several includes the prelude
    (``CSource.prelude``) and the headers first (``#line``: the compiler's messages
    give the unit's own line numbers)."""
    if len(units) == 1 or not unit.name.endswith(".c"):
        return unit.text
    prelude = getattr(units, "prelude", None)
    heads = "".join(f'#include "{h}"\n' for h in ([prelude] if prelude else [])
                    + [u.name for u in units if u.name.endswith(".h")])
    return f'{heads}#line 1 "{unit.name}"\n{unit.text}'


def _jobs():
    # The compiles of one library run side by side on the cores this process may use.
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _build(build, units, name, cc, keep):
    """Compile in `build`; on failure ``keep(source path)`` moves the source (the
    whole of it, every unit headed by its file name) where the user can read it and
    returns its new path."""
    for u in units:
        with open(os.path.join(build, u.name), "w") as f:
            f.write(_file_text(u, units))
    compiles, link = _commands(cc, name, units)

    def kept():
        if len(units) == 1:
            return keep(os.path.join(build, units[0].name))
        whole = os.path.join(build, f"{name}.failed.c")
        with open(whole, "w") as f:
            f.write("".join(f"/* ==== {u.name} ==== */\n{u.text}\n" for u in units))
        return keep(whole)

    # Longest first: on fewer cores than units, the long ones do not come last.
    sizes = [len(u.text) for u in units if u.name.endswith(".c")]
    order = sorted(range(len(compiles)), key=lambda k: -sizes[k])
    procs = {}
    if len(compiles) == 1:
        procs[0] = _run(compiles[0], build, kept)
    else:
        # Imported here: concurrent.futures brings in logging (about 7 ms), which a
        # one-unit kernel -- every small function's -- never needs.
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(min(_jobs(), len(compiles))) as pool:
            futures = {k: pool.submit(_run, compiles[k], build, kept) for k in order}
            for k in sorted(futures):
                procs[k] = futures[k].result()
    outputs = [f"{name}.so"] if link is None else [u.name[:-2] + ".o" for u in units
                                                     if u.name.endswith(".c")]
    for k, argv in enumerate(compiles):
        proc = procs[k]
        ok = proc.returncode == 0 and os.path.isfile(os.path.join(build, outputs[k]))
        pch = [a for a in argv[len(cc):len(cc) + 1] if a.startswith("-I" + PCH_ROOT)]
        if not ok and pch:
            # A precompiled header gcc accepted but could not read (a damaged file): the
            # unit again without it, and none from that folder for the rest of the process.
            argv = [a for a in argv if a not in pch]
            proc = _run(argv, build, kept)
            ok = proc.returncode == 0 and os.path.isfile(os.path.join(build, outputs[k]))
            if ok:
                _PCH_FAILED.add(pch[0])
        if not ok:
            raise CompileError(_failure_message(argv, proc, kept()))
    if link is not None:
        proc = _run(link, build, kept)
        if proc.returncode != 0 or not os.path.isfile(os.path.join(build, name + ".so")):
            raise CompileError(_failure_message(link, proc, kept()))


def _run(argv, cwd, kept):
    """One compiler command; CompileError when it cannot run or runs past TIMEOUT_S."""
    try:
        return _run_compiler(argv, cwd)
    except subprocess.TimeoutExpired:
        raise CompileError(f"the C compiler took more than {TIMEOUT_S} s on {kept()}; "
                           f"command: {shlex.join(argv)}") from None
    except OSError as e:
        raise CompileError(f"the C compiler {argv[0]} could not be run: {e}") from e


def _run_compiler(argv, cwd):
    # No shell: the command is a list, so no path or flag is ever re-parsed.
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, errors="replace",
                          timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)


def _failure_message(argv, proc, kept):
    err = (proc.stderr or "") + (proc.stdout or "")
    if len(err) > STDERR_CHARS:
        err = err[:STDERR_CHARS] + f"\n... ({len(err) - STDERR_CHARS} more characters)"
    return (f"the C compiler failed (exit status {proc.returncode})\n"
            f"  source: {kept}\n  command: {shlex.join(argv)}\n  output:\n{err.rstrip()}")
