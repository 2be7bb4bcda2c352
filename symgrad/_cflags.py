"""The C flags of generated kernels, and the precompiled header they can use.

Standard library only: setup.py loads this file without importing the package
(which is not built yet) to precompile ``include/sg_prelude.h`` -- the one header
every unit of a kernel includes first -- with exactly the flags kernels are
compiled with; ``symgrad/compiler.py`` takes its flags from here too.

Reading the headers is a fixed cost of every compiler process (about 40 of a small
kernel's 150-300 ms of gcc CPU); a precompiled header is read in a few. gcc finds
``<dir>/sg_prelude.h.gch`` when ``-I<dir>`` comes before the include folder, and
checks the version of gcc and the options it can tell apart, but not the headers'
text, and not every option: a ``.gch`` built without ``-fsanitize=address`` crashes
gcc 12 when used with it. So a variant is only put on the include path (``pch_include``)
for a unit whose flags are exactly the variant's (include folders aside), compiled by
the compiler it was built with, when every header it was built from is unchanged:
``symgrad/include``'s by content, the others (the C library's, cblas.h) by size and
time. Otherwise the unit reads the text, as before: nothing else changes.
"""

import hashlib
import json
import os
import shlex
import shutil
import subprocess

# -std=gnu11, not an ISO mode: ISO C reads trigraphs, so a "??/" in a string
# literal (a path, a name) would turn into a backslash. GNU modes contract
# a*b+c into an fma by default; -ffp-contract=off keeps ISO's rounding.
# -fno-math-errno: kernels never read errno, and setting it keeps sqrt and
# friends out of vectorised loops. Not -ffast-math: IEEE semantics stay.
# -fno-trapping-math: kernels never read the FP exception flags either. Under
# the default, gcc may not compute a float operation where the C computes it
# only on one side of a select (gcc moves `(c ? a : 0) - b`'s subtraction into
# the branch, a division used by one arm of a `where` into that arm): doing it
# anyway could raise a flag the program would not have. AVX-512 masks such an
# operation; AVX2 has no masks, so the loop kept its branch and stayed scalar
# (maximum(x, y) - minimum(y, 0), max pooling's gradient, dropout). Every value
# is the same: only whether an operation may run on lanes whose result is unused
# (and a sum vectorised on AVX2 now adds in the order AVX-512 already did). The
# support library (setup.py) keeps the default: none of its loops gains from it.
# -fopenmp-simd: only the `omp simd` loop annotations, no OpenMP runtime
# (threads come from symgrad's own pool, see csrc/sg_runtime.c).
BASE_FLAGS = ("-O2", "-march=native", "-fPIC", "-shared", "-std=gnu11", "-ffp-contract=off",
              "-fno-strict-aliasing", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd")
#: The level of glue units (checks, allocations and calls: no loops of their own), whatever
#: level the command line asks for: -O0 compiles them in a quarter of -O1's CPU time (the
#: MLP step's glue 0.10 s against 0.40 s), and a user's -O3 or the test suite's -O1 is
#: meant for the loops in the row units.
GLUE_LEVEL = "-O0"
#: Optimisation levels (-Ofast is not one here: it changes the arithmetic, so it stays).
_LEVELS = frozenset(["-O", "-O0", "-O1", "-O2", "-O3", "-Os", "-Oz", "-Og"])
#: The header each unit of a kernel includes first (codegen/render_c.py).
PRELUDE = "sg_prelude.h"
#: The folder, in the package, of the precompiled variants: <PCH_DIR>/<variant>/.
PCH_DIR = "pch"
#: The variants setup.py builds, by name: ``(glue, SYMGRAD_CFLAGS)``. The kernels' flags
#: with no SYMGRAD_CFLAGS, for the row functions and one-unit kernels and for glue units
#: (at any SYMGRAD_CFLAGS level); and the row units' with ``-O1`` after them, the level the
#: test suite compiles at (tests/conftest.py), where most of a run's time is the C compiler.
VARIANTS = {"O2": (False, ()), "O0": (True, ()), "O1": (False, ("-O1",))}
_STAMP = "pch.json"


def unit_flags(compile_flags, glue):
    """The flags compiling one unit to an object: ``compile_flags`` (the command
    line's, ``-I`` folders included) without ``-shared``; for a glue unit, its
    optimisation levels (BASE_FLAGS' and any of SYMGRAD_CFLAGS) as one ``GLUE_LEVEL``
    where the first was."""
    flags = [f for f in compile_flags if f != "-shared"]
    if not glue:
        return flags
    first = next((k for k, f in enumerate(flags) if f in _LEVELS), 0)
    rest = [f for f in flags if f not in _LEVELS]
    return [*rest[:first], GLUE_LEVEL, *rest[first:]]


def pch_key(flags):
    """What of a unit's flags a precompiled header must match: all but the include
    folders (the headers found there are compared by content instead)."""
    return [f for f in flags if not f.startswith("-I")]


def variant_flags(variant, include_dirs):
    """The unit flags of the variant ``variant`` of ``VARIANTS``."""
    glue, extra = VARIANTS[variant]
    return unit_flags([*BASE_FLAGS, *extra, *(f"-I{d}" for d in include_dirs)], glue=glue)


def compiler_identity(path):
    """The compiler's resolved path and its ``--version`` output but the program's
    own name (``cc`` and ``gcc`` are one compiler), or None when it does not run."""
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True,
                              errors="replace", timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return identity_of(path, proc.stdout + proc.stderr)


def identity_of(path, version):
    first, _, rest = version.partition("\n")
    return [os.path.realpath(path), first.partition(" ")[2], rest]


def build(cc, out_root, include_dirs, variants=VARIANTS):
    """Precompile ``PRELUDE`` (found in ``include_dirs[0]``) with the compiler ``cc``
    (one program) for each variant into ``out_root/<variant>/``, with the stamp that
    ``pch_include`` checks. Returns ``{variant: error text or None}``; a failure only
    leaves no variant (kernels then read the text)."""
    path = shutil.which(cc)
    ident = path and compiler_identity(path)
    # One compiler process per variant, side by side (a fresh install's cores).
    workers = max(1, min(len(variants), os.cpu_count() or 1))
    import concurrent.futures  # here: only setup.py builds these; compiling a kernel does not

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        done = {v: pool.submit(_build_variant, cc, path, ident, v, out_root, include_dirs)
                for v in variants}
    return {v: f.result() for v, f in done.items()}


def _build_variant(cc, path, ident, variant, out_root, include_dirs):
    """One variant of ``build``: None when built, else why not."""
    out = os.path.join(out_root, variant)
    shutil.rmtree(out, ignore_errors=True)
    if not ident:
        return f"the C compiler {cc!r} does not run"
    os.makedirs(out)
    flags = variant_flags(variant, include_dirs)
    gch, deps = os.path.join(out, PRELUDE + ".gch"), os.path.join(out, "deps.d")
    argv = [path, *flags, "-x", "c-header", os.path.join(include_dirs[0], PRELUDE),
            "-o", gch, "-MD", "-MF", deps]
    proc = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0 or not os.path.isfile(gch):
        shutil.rmtree(out, ignore_errors=True)
        return f"{shlex.join(argv)}: {proc.stderr.strip()[-2000:]}"
    with open(deps) as f:
        files = shlex.split(f.read().replace("\\\n", " "))[1:]  # after "target:"
    os.remove(deps)
    ours, others = {}, []
    for p in map(os.path.abspath, files):
        home = [k for k, d in enumerate(include_dirs)
                if p.startswith(os.path.join(os.path.abspath(d), ""))]
        if home:  # symgrad's headers and cblas.h, by content: their folders move
            rel = os.path.relpath(p, include_dirs[home[0]])
            ours[f"{home[0]}/{rel}"] = _sha256(p)
        else:  # the C library's and the compiler's, where they are
            others.append([p, *_stat(p)])
    # gcc takes a header included again after its precompiled form was used to be
    # in the .gch's folder (a frame header includes the prelude too): a header there
    # that stands for the real one (the next on the include path), which is also
    # what gcc reads when the .gch does not fit.
    with open(os.path.join(out, PRELUDE), "w") as f:
        f.write(f'/* {PRELUDE}, beside its precompiled form: see symgrad/_cflags.py */\n'
                f'#include_next "{PRELUDE}"\n')
    stamp = {"flags": pch_key(flags), "compiler": ident, "ours": ours, "others": others}
    with open(os.path.join(out, _STAMP), "w") as f:
        json.dump(stamp, f, indent=1)
    return None


def pch_include(root, cc, identity, flags, include_dirs):
    """``["-I<variant folder>"]`` when a variant under ``root`` was built for exactly
    ``flags`` (a unit's, ``pch_key``), by the compiler ``cc`` (an argv prefix; its
    ``identity_of``), from the headers of ``include_dirs`` (symgrad's, cblas.h's) as
    they are now and the other headers unchanged; else ``[]``."""
    if len(cc) != 1:  # a wrapper (ccache gcc): not the compiler the variant knows
        return []
    key = pch_key(flags)
    for variant in VARIANTS:
        stamp = _stamp(os.path.join(root, variant), tuple(include_dirs))
        if stamp is not None and stamp["flags"] == key and stamp["compiler"] == identity:
            return [f"-I{os.path.join(root, variant)}"]
    return []


_stamps = {}


def _stamp(folder, include_dirs):
    """The stamp of the variant in ``folder`` if its headers are unchanged, else None;
    read once per process (a header changed while a process runs is not seen)."""
    if (folder, include_dirs) not in _stamps:
        _stamps[folder, include_dirs] = _valid_stamp(folder, include_dirs)
    return _stamps[folder, include_dirs]


def _valid_stamp(folder, include_dirs):
    try:
        with open(os.path.join(folder, _STAMP)) as f:
            stamp = json.load(f)
        if not all(os.path.isfile(os.path.join(folder, f)) for f in (PRELUDE, PRELUDE + ".gch")):
            return None
        for name, digest in stamp["ours"].items():
            k, _, rel = name.partition("/")
            if _sha256(os.path.join(include_dirs[int(k)], rel)) != digest:
                return None
        if any(list(_stat(path)) != [size, mtime] for path, size, mtime in stamp["others"]):
            return None
        return stamp
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _stat(path):
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns
