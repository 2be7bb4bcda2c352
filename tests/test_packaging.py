"""Packaging (issue #11, item 17): the license is declared the PEP 639 way and
shipped, and the source distribution carries every file the README points to
(the examples, the figure, the benchmarks, BENCHMARKS.md, RELIABILITY.md).

Two tests apply MANIFEST.in with setuptools' own template rules (instant, and
naming the path at fault); one builds the sdist and lists the tarball.
"""

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# A relative path in the README: under one of the repository's folders, or a top-level *.md.
README_PATH = re.compile(r"(?<![\w./-])((?:examples|docs|bench|tests|csrc|symgrad|\.ci)/[\w./-]*"
                         r"|[A-Z][A-Z_]+\.md)")

pytestmark = pytest.mark.skipif(not (ROOT / "MANIFEST.in").exists(),
                                reason="not a source tree (an installed copy of the tests)")


def readme_paths():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return sorted({m.rstrip(".") for m in README_PATH.findall(text)})


def manifest_files(monkeypatch):
    """The files MANIFEST.in adds to the sdist, as setuptools' sdist applies it."""
    from setuptools.command.egg_info import FileList

    monkeypatch.chdir(ROOT)  # the template's paths are relative to the project
    files = FileList()
    for line in (ROOT / "MANIFEST.in").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            files.process_template_line(line)
    return {Path(f).as_posix() for f in files.files}


def covered(path, files):
    """Whether ``path`` (a file, or a folder ending in '/') is in ``files``."""
    return path in files or (path.endswith("/") and any(f.startswith(path) for f in files))


def test_the_readme_paths_are_found():
    paths = readme_paths()
    for expected in ["BENCHMARKS.md", "RELIABILITY.md", "docs/gradient_graph.svg",
                     "examples/train_digits.py", "bench/", "symgrad/graph.py"]:
        assert expected in paths


def test_every_path_the_readme_names_exists_and_goes_into_the_sdist(monkeypatch):
    files = manifest_files(monkeypatch)
    for path in readme_paths():
        assert (ROOT / path).exists(), f"README.md names {path}, which does not exist"
        if path.startswith("symgrad/"):
            continue  # the package itself goes in as a package, not through MANIFEST.in
        assert covered(path, files), f"README.md names {path}, which MANIFEST.in leaves out"
    for extra in [".ci/run", "tests/conftest.py", "csrc/", "symgrad/_runtime.pyx"]:
        assert covered(extra, files), f"MANIFEST.in leaves out {extra}"
    assert not [f for f in files if "__pycache__" in f or f.endswith((".pyc", ".so"))]


def test_the_license_is_declared_as_spdx_and_shipped():
    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["project"]["license"] == "BSD-3-Clause"
    assert meta["project"]["license-files"] == ["LICENSE"]
    assert "setuptools>=77" in meta["build-system"]["requires"]  # PEP 639 support
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("BSD 3-Clause License\n")
    assert "Copyright (c) 2026, the symgrad developers" in text
    assert "3. Neither the name of the copyright holder" in text


def setuptools_version():
    return tuple(int(p) for p in re.findall(r"\d+", importlib.metadata.version("setuptools"))[:2])


@pytest.mark.slow  # builds an sdist in a fresh build environment
def test_the_sdist_holds_the_readme_paths_and_the_license(tmp_path):
    # About 6 s on 2 busy cores (setup.py imports Cython and NumPy, then writes the archive).
    pytest.importorskip("Cython")
    if setuptools_version() < (77, 0):
        pytest.skip("setuptools >= 77 is needed to read pyproject.toml's SPDX license "
                    "(pip install 'setuptools>=77')")
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", "*.so", ".hypothesis", ".benchmarks",
        ".venv*", "venv", ".tox", ".nox"))  # a virtual environment in the checkout: 100s of MB
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")],
                   cwd=src, check=True, capture_output=True, env=dict(os.environ))
    (tarball,) = (tmp_path / "dist").glob("symgrad-*.tar.gz")
    with tarfile.open(tarball) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        info = tar.extractfile(next(n for n in tar.getnames() if n.endswith("/PKG-INFO")
                                    and n.count("/") == 1)).read().decode()
    # ... and the sources of the kernels' support library, which setup.py builds (issue #12)
    support = ["symgrad/include/sg_kernel.c", "symgrad/include/sg_ops.c",
               "symgrad/include/sg_support.h"]
    for path in readme_paths() + ["LICENSE", ".ci/run", "tests/conftest.py"] + support:
        assert covered(path, names), f"the sdist lacks {path}"
    assert "License-Expression: BSD-3-Clause" in info and "License-File: LICENSE" in info


def test_the_wheel_carries_the_support_librarys_sources():
    # Kernels built under a sanitizer link a copy of the library built from them
    # (symgrad/compiler.py), so an installed package needs them next to the headers.
    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    data = meta["tool"]["setuptools"]["package-data"]["symgrad.include"]
    assert "*.h" in data and "*.c" in data
    assert "scipy-openblas32>=0.3.27" in meta["build-system"]["requires"]  # its cblas.h
    assert (ROOT / "symgrad" / "include" / "sg_ops.c").exists()
