"""Build symgrad: the Python package plus any extension modules under symgrad/ (.pyx),
compiled against the NumPy headers and the hand-written C in csrc/."""

from pathlib import Path

import numpy
from setuptools import Extension, setup

HERE = Path(__file__).parent


def extensions():
    pyx = sorted(HERE.glob("symgrad/**/*.pyx"))
    if not pyx:
        return []
    from Cython.Build import cythonize

    exts = [Extension(".".join(p.relative_to(HERE).with_suffix("").parts),
                      [str(p.relative_to(HERE))] + [str(c.relative_to(HERE))
                                                    for c in sorted(HERE.glob("csrc/*.c"))],
                      include_dirs=[numpy.get_include(), "csrc"],
                      define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")])
            for p in pyx]
    return cythonize(exts, language_level=3)


setup(ext_modules=extensions())
