"""The exception hierarchy of symgrad.

Every error symgrad raises on purpose derives from :class:`SymgradError` and
from the builtin exception a Python user would expect (``TypeError`` for a
wrong type, ``ValueError`` for a wrong shape, ...), so both ``except
sg.ShapeError`` and ``except ValueError`` catch a shape mismatch.
"""

import builtins

__all__ = [
    "SymgradError", "NonScalarCostError", "NonDifferentiableError",
    "DisconnectedInputError", "ShapeError", "InputError", "CompileError", "CacheError",
    "GradientError", "IndexError", "DistributedError",
]


class SymgradError(Exception):
    """Base class of every error symgrad raises on purpose."""


class NonScalarCostError(SymgradError, TypeError):
    """``grad`` was given a cost that is not 0-d."""


class NonDifferentiableError(SymgradError, TypeError):
    """A gradient path runs through an integer- or bool-valued result."""


class DisconnectedInputError(SymgradError, ValueError):
    """The cost does not depend on a variable named in ``wrt``."""


class ShapeError(SymgradError, ValueError):
    """Shapes that cannot be combined (at graph build time or at call time)."""


class InputError(SymgradError, TypeError):
    """A value passed to a compiled function does not fit its input."""


class CompileError(SymgradError, RuntimeError):
    """The C compiler failed; the message holds its stderr and the source path."""


class CacheError(CompileError, OSError):
    """The kernel cache directory cannot be used: the message names the path, what
    is wrong and what to set (``SYMGRAD_CACHE_DIR``).

    An ``OSError``, and a :class:`CompileError` too, since it stops a
    compile: code catching either sees it.
    """


class GradientError(SymgradError, AssertionError):
    """``verify_grad`` found a symbolic gradient that disagrees with finite differences."""

    def __init__(self, message, where=None, abs_err=None, rel_err=None):
        super().__init__(message)
        self.where = where
        self.abs_err = abs_err
        self.rel_err = rel_err


class IndexError(SymgradError, builtins.IndexError):  # noqa: A001 - on purpose: it is a builtin IndexError too
    """An index or label out of range (gather, ``one_hot``, ``cross_entropy``)."""


class DistributedError(SymgradError, RuntimeError):
    """Another rank of a data-parallel train step failed, left or stopped answering
    (``SYMGRAD_MPI_TIMEOUT``), or the ranks' models differ; the message says which."""
