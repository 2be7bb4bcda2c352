"""Build symgrad: the Python package plus its runtime extension, each symgrad/**/*.pyx
compiled with the hand-written C in csrc/ against the NumPy headers and the kernel ABI."""

import sys
from pathlib import Path

import numpy
from setuptools import Extension, setup

HERE = Path(__file__).parent
# csrc/ and the Cython output build warning-free at -Wall -Wextra (gcc 12, clang 14);
# a pointer passed for another type is an error, as GCC 14 makes it anyway.
WARNINGS = [] if sys.platform == "win32" else [
    "-Wall", "-Wextra", "-Werror=incompatible-pointer-types"]


def rel(*paths):
    return [str(p.relative_to(HERE)) for p in paths]


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
                      extra_compile_args=WARNINGS)
            for p in pyx]
    return cythonize(exts, language_level=3)


setup(ext_modules=extensions())
