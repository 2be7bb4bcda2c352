"""Run the tests against the installed symgrad, the one with the compiled runtime.

``python -m pytest`` puts the working directory first on ``sys.path``; from the
repository root that is the source tree, whose ``symgrad`` lacks the runtime
extension (``symgrad._runtime``) unless it was built in place (an editable
install or ``setup.py build_ext --inplace``). So the repository root is dropped
from ``sys.path`` unless the extension sits in the source tree, and ``tests/``
is added instead, for the registry test's ``import cases``.
"""

import importlib.machinery
import sys
from pathlib import Path

import pytest

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
