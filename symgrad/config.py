"""Settings read from the environment once, overridable by assignment.

>>> import symgrad as sg
>>> sg.config.floatX = "float32"      # doctest: +SKIP
"""

import os
import shlex
import warnings

__all__ = ["config"]

_FLOATX = ("float32", "float64")
# "c": generated C (the default); "py": the NumPy reference; "debug": both, checked node by node.
MODES = ("c", "py", "debug")


class Config:
    """Process-wide settings (SPEC §8).

    Attributes
    ----------
    floatX : str
        Default float dtype of new variables: ``"float64"`` or ``"float32"``.
    mode : str
        Default mode of :func:`symgrad.function`.
    cache_dir, cc, num_threads
        Used by the C backend.
    cflags : list of str
        Extra C compiler flags appended to the defaults (``SYMGRAD_CFLAGS``,
        split like a shell would), e.g. ``-fsanitize=address,undefined``.
    """

    def __init__(self, environ=os.environ):
        self._floatX = "float64"
        self._mode = MODES[0]
        self.floatX = environ.get("SYMGRAD_FLOATX", "float64")
        if environ.get("SYMGRAD_MODE"):
            if environ["SYMGRAD_MODE"] in MODES:
                self._mode = environ["SYMGRAD_MODE"]
            else:  # an import must not fail on a setting; sg.function names it instead
                warnings.warn(f"SYMGRAD_MODE={environ['SYMGRAD_MODE']!r} is not one of {MODES}; "
                              f"using {self._mode!r}", stacklevel=2)
        self.cache_dir = environ.get(
            "SYMGRAD_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "symgrad"))
        self.cc = environ.get("SYMGRAD_CC", "cc")
        self.cflags = shlex.split(environ.get("SYMGRAD_CFLAGS", ""))
        self.num_threads = int(environ.get("SYMGRAD_NUM_THREADS", "0") or 0)

    @property
    def floatX(self):  # noqa: N802 - the name users know from Theano
        return self._floatX

    @floatX.setter
    def floatX(self, value):  # noqa: N802
        if value not in _FLOATX:
            raise ValueError(f"floatX must be one of {_FLOATX}, got {value!r}")
        self._floatX = value

    @property
    def mode(self):
        return self._mode

    @mode.setter
    def mode(self, value):
        check_mode(value)
        self._mode = value

    def __repr__(self):
        return (f"Config(floatX={self.floatX!r}, mode={self.mode!r}, "
                f"cache_dir={self.cache_dir!r}, cc={self.cc!r}, cflags={self.cflags!r}, "
                f"num_threads={self.num_threads})")


def check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


config = Config()
