"""Run the tests against the installed symgrad, the one with the compiled runtime.

``python -m pytest`` puts the working directory first on ``sys.path``; from the
repository root that is the source tree, whose ``symgrad`` lacks the runtime
extension (``symgrad._runtime``) unless it was built in place (an editable
install or ``setup.py build_ext --inplace``). So the repository root is dropped
from ``sys.path`` unless the extension sits in the source tree, and ``tests/``
is added instead, for the registry test's ``import cases``.

Hypothesis runs derandomized by default, so that the suite draws the same
examples on every machine and a CI failure reproduces here. To explore new
examples instead (a random seed each run, as a fuzzing session)::

    SYMGRAD_HYPOTHESIS=explore python -m pytest -q tests
"""

import importlib.machinery
import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("suite", derandomize=True, print_blob=True, database=None)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("SYMGRAD_HYPOTHESIS", "suite"))

# Kernels compile at -O1 in the test runs (after the release -O2, so it wins): most of the
# suite's time is the C compiler, and -O1 halves it. The slow run compiles every op's
# registry cases at the release flags too (tests/test_registry.py). A SYMGRAD_CFLAGS of
# the caller's own is kept as it is.
os.environ.setdefault("SYMGRAD_CFLAGS", "-O1")

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _built_in_place():
    return any((ROOT / "symgrad" / f"_runtime{suffix}").exists()
               for suffix in importlib.machinery.EXTENSION_SUFFIXES)


if not _built_in_place():
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]
sys.path.insert(0, str(TESTS))


def pytest_configure(config):
    try:
        import symgrad._runtime  # noqa: F401
    except ImportError as exc:
        raise pytest.UsageError(
            f"symgrad's runtime extension cannot be imported ({exc}).\n"
            f"Install the package before testing: python -m pip install \".[test]\"\n"
            f"(or, to work on the source tree: python -m pip install -e \".[test]\")"
        ) from None
