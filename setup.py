"""Build symgrad: the Python package, its runtime extension (each symgrad/**/*.pyx
compiled with the hand-written C in csrc/ against the NumPy headers and the kernel ABI),
and the kernels' support library.

The support library, ``symgrad/libsg_support.so``, holds the helpers generated kernels
call (symgrad/include/sg_kernel.c, sg_ops.c): compiled here once, so that no kernel
compiles them again; kernels link against it (symgrad/compiler.py). It is a plain shared
library, not a Python module, and it must run on any x86-64 CPU the package is installed
on: no -march=native, its loop-heavy functions are compiled for several instruction sets
instead (sg_support.h). Its calls into OpenBLAS stay undefined here and are bound, when a
kernel is loaded, to the OpenBLAS every kernel links against: only OpenBLAS's cblas.h
(from scipy-openblas32, a build requirement) is read at build time.
"""

import concurrent.futures
import importlib.util
import os
import shlex
import platform
import sys
import tempfile
from pathlib import Path

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext
from setuptools.errors import CompileError

HERE = Path(__file__).parent
# csrc/ and the Cython output build warning-free at -Wall -Wextra (gcc 12, clang 14);
# a pointer passed for another type is an error, as GCC 14 makes it anyway.
BUILD_FLAGS = [] if sys.platform == "win32" else [
    "-Wall", "-Wextra", "-Werror=incompatible-pointer-types"]
# No debug information (Python's own CFLAGS have -g): the two libraries build in 36 s
# instead of 50 on 2 cores, a quarter of a fresh install, and are 4x smaller.
# SYMGRAD_DEBUG_BUILD=1 keeps -g, for a debugger.
if sys.platform != "win32" and not os.environ.get("SYMGRAD_DEBUG_BUILD"):
    BUILD_FLAGS.append("-g0")
SUPPORT = "symgrad.libsg_support"
SUPPORT_FILE = "libsg_support.so"
# The kernels' own semantic flags (symgrad/compiler.py's BASE_FLAGS but -march=native);
# -O2 and -fno-wrapv undo Python's -O3 and -fwrapv, which kernels do not have.
SUPPORT_FLAGS = ["-O2", "-std=gnu11", "-ffp-contract=off", "-fno-strict-aliasing",
                 "-fno-math-errno", "-fopenmp-simd", "-fno-wrapv", "-fno-semantic-interposition"]
TUNE = ["-mtune=intel"]


def kernel_flags():
    """symgrad/_cflags.py, the kernels' flags, loaded without importing the package."""
    spec = importlib.util.spec_from_file_location("_sg_cflags", HERE / "symgrad" / "_cflags.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rel(*paths):
    return [str(p.relative_to(HERE)) for p in paths]


def blas_include():
    """scipy-openblas32's include folder (cblas.h), found without importing the package."""
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("building symgrad needs scipy-openblas32 (its cblas.h): "
                         "`pip install scipy-openblas32`")
    return str(Path(spec.submodule_search_locations[0]) / "include")


def support_library():
    include = HERE / "symgrad" / "include"
    sources = sorted(include.glob("*.c"))
    if not sources:
        raise SystemExit(f"the support library's sources (sg_kernel.c, sg_ops.c) are not in "
                         f"{include}: an incomplete copy of symgrad's source")
    return Extension(SUPPORT, rel(*sources),
                     depends=rel(*sorted(include.glob("*.h"))),
                     include_dirs=["symgrad/include", blas_include()],
                     libraries=["m"], extra_compile_args=BUILD_FLAGS + SUPPORT_FLAGS)


def extensions():
    pyx = sorted(HERE.glob("symgrad/**/*.pyx"))
    if not pyx:
        return []
    from Cython.Build import cythonize

    exts = [Extension(".".join(p.relative_to(HERE).with_suffix("").parts),
                      rel(p, *sorted(HERE.glob("csrc/*.c"))),
                      depends=rel(*sorted(HERE.glob("csrc/*.h")), HERE / "symgrad/include/sg_abi.h"),
                      include_dirs=[numpy.get_include(), "csrc", "symgrad/include"],
                      define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
                      libraries=[] if sys.platform == "win32" else ["dl", "pthread"],
                      extra_compile_args=BUILD_FLAGS)
            for p in pyx]
    return cythonize(exts, language_level=3)


class build_ext(_build_ext):
    """The support library keeps the plain name kernels link to (-lsg_support), in
    the package folder, whether built in place (`pip install -e .`) or into a wheel."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            # The runtime and the support library side by side: each is about a minute
            # of one core, most of the install's time on a fresh machine.
            self.parallel = os.cpu_count() or 1

    def get_ext_filename(self, fullname):
        # Asked with the full dotted name, or (distutils' get_ext_fullpath) its last part.
        parts = fullname.split(".")
        if parts[-1] == SUPPORT.rpartition(".")[2] and fullname in (SUPPORT, parts[-1]):
            return str(Path(*parts[:-1], SUPPORT_FILE))
        return super().get_ext_filename(fullname)

    def run(self):
        super().run()
        self.build_pch()

    def build_extensions(self):
        # Each source file in a compiler process of its own, side by side: the support
        # library is a dozen files that distutils would compile one after another.
        compile_each = self.compiler.compile

        def compile_all(sources, *args, **kwargs):
            if len(sources) < 2:
                return compile_each(sources, *args, **kwargs)
            # The largest first (sg_ops.c is a quarter of the library's compile time): a
            # long file started last would leave the other cores idle at the end.
            order = sorted(sources, key=lambda src: -os.path.getsize(src))
            with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
                done = dict(zip(order, pool.map(
                    lambda src: compile_each([src], *args, **kwargs), order)))
            return [obj for src in sources for obj in done[src]]

        self.compiler.compile = compile_all
        super().build_extensions()

    def build_pch(self):
        """The kernels' prelude header precompiled with their flags (symgrad/_cflags.py:
        gcc reads it in a few ms instead of ~40 ms of headers per compiler process),
        for the compiler kernels use by default (SYMGRAD_CC, else cc), into the package's
        pch/ folder. Optional: without it (another compiler, a failure) kernels read the
        headers' text."""
        cflags = kernel_flags()
        root = (HERE if self.inplace else Path(self.build_lib)) / "symgrad" / cflags.PCH_DIR
        cc = shlex.split(os.environ.get("SYMGRAD_CC") or "cc")
        version = len(cc) == 1 and cflags.compiler_identity(cc[0])
        if not version or "Free Software Foundation" not in version[2]:
            print(f"symgrad: no precompiled header (not gcc: {cc!r})")
            return
        include = [str(HERE / "symgrad" / "include"), blas_include()]
        for variant, error in cflags.build(cc[0], str(root), include).items():
            if error:
                print(f"symgrad: the precompiled header {variant} was not built: {error}")

    def build_extension(self, ext):
        if ext.name == SUPPORT and platform.machine().lower() in ("x86_64", "amd64"):
            # Tuned for recent x86 cores, not gcc's generic tuning: with it, the AVX-512
            # clones of the sums run 1.6-2.5x slower than a -march=native build (256-bit
            # vectors, no split loads); tuning changes speed only, never results.
            ext.extra_compile_args += [f for f in TUNE if self._accepts(f)]
        super().build_extension(ext)

    def _accepts(self, flag):
        """Whether the C compiler takes `flag` (clang has no -mtune=intel)."""
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "probe.c")
            with open(src, "w") as f:
                f.write("int probe(void) { return 0; }\n")
            try:
                self.compiler.compile([src], output_dir=d, extra_postargs=[flag, "-Werror"])
            except CompileError:
                return False
        return True

    def copy_file(self, infile, outfile, *args, **kwargs):
        # In place (`build_ext --inplace`, `pip install -e .`): a new file renamed over
        # the old one, never the old one rewritten, which would crash the processes
        # that have it loaded (every kernel of a running program maps the library).
        if not self.inplace or os.path.isdir(outfile):
            return super().copy_file(infile, outfile, *args, **kwargs)
        tmp = f"{outfile}.{os.getpid()}.tmp"
        result = super().copy_file(infile, tmp, *args, **kwargs)
        os.replace(tmp, outfile)
        return outfile, result[1]

    def get_export_symbols(self, ext):
        # Not a Python module: no PyInit_ function to export (matters on Windows only).
        return ext.export_symbols if ext.name == SUPPORT else super().get_export_symbols(ext)


setup(ext_modules=[*extensions(), support_library()], cmdclass={"build_ext": build_ext})
