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
# Levels of the rewrite pipeline (symgrad.rewrite), from none to the most aggressive.
REWRITE_LEVELS = ("none", "basic", "safe", "fast")


class Config:
    """Process-wide settings.

    Attributes
    ----------
    floatX : str
        Default float dtype of new variables: ``"float64"`` or ``"float32"``.
    mode : str
        Default mode of :func:`symgrad.function`.
    cache_dir, cc
        Used by the C backend.
    num_threads : int
        Threads of compiled kernels (loops and BLAS), ``SYMGRAD_NUM_THREADS``;
        0 (default) uses every core the process may run on.
    cflags : list of str
        Extra C compiler flags appended to the defaults (``SYMGRAD_CFLAGS``,
        split like a shell would), e.g. ``-fsanitize=address,undefined``.
    rewrite : str
        Default level of the graph rewrites :func:`symgrad.function` runs
        (``SYMGRAD_REWRITE``): ``"none"``, ``"basic"``, ``"safe"`` (default) or
        ``"fast"``; see :mod:`symgrad.rewrite`.
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
        # An empty variable means unset, as in a shell's ${VAR:-default}.
        self.cache_dir = environ.get("SYMGRAD_CACHE_DIR") or os.path.join(
            os.path.expanduser("~"), ".cache", "symgrad")
        self.cc = environ.get("SYMGRAD_CC", "").strip() or "cc"
        self.cflags = shlex.split(environ.get("SYMGRAD_CFLAGS", ""))
        self._rewrite = "safe"
        if environ.get("SYMGRAD_REWRITE"):
            if environ["SYMGRAD_REWRITE"] in REWRITE_LEVELS:
                self._rewrite = environ["SYMGRAD_REWRITE"]
            else:
                warnings.warn(f"SYMGRAD_REWRITE={environ['SYMGRAD_REWRITE']!r} is not one of "
                              f"{REWRITE_LEVELS}; using {self._rewrite!r}", stacklevel=2)
        self._num_threads = 0
        threads = environ.get("SYMGRAD_NUM_THREADS", "").strip()
        if threads:
            try:
                self.num_threads = int(threads)
            except ValueError:
                warnings.warn(f"SYMGRAD_NUM_THREADS={threads!r} is not a whole number >= 0; "
                              f"using all available cores", stacklevel=2)

    @property
    def floatX(self):  # noqa: N802 - the name users know from Theano
        return self._floatX

    @floatX.setter
    def floatX(self, value):  # noqa: N802
        if value not in _FLOATX:
            raise ValueError(f"floatX must be one of {_FLOATX}, got {value!r}")
        self._floatX = value

    @property
    def num_threads(self):
        """Threads for large loops and BLAS in compiled kernels; 0 means every available core.

        Read when a kernel is loaded: set it before ``sg.function``.
        """
        return self._num_threads

    @num_threads.setter
    def num_threads(self, value):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"num_threads must be a whole number >= 0 (0: every available "
                             f"core), got {value!r}")
        self._num_threads = value

    def threads(self):
        """The number of threads kernels use: ``num_threads``, or the usable cores when it is 0."""
        if self._num_threads:
            return self._num_threads
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):
            return max(1, os.cpu_count() or 1)

    @property
    def mode(self):
        return self._mode

    @mode.setter
    def mode(self, value):
        check_mode(value)
        self._mode = value

    @property
    def rewrite(self):
        """Default rewrite level of :func:`symgrad.function` (see :mod:`symgrad.rewrite`)."""
        return self._rewrite

    @rewrite.setter
    def rewrite(self, value):
        self._rewrite = check_rewrite(value)

    def __repr__(self):
        return (f"Config(floatX={self.floatX!r}, mode={self.mode!r}, "
                f"cache_dir={self.cache_dir!r}, cc={self.cc!r}, cflags={self.cflags!r}, "
                f"num_threads={self.num_threads}, rewrite={self.rewrite!r})")


def check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def check_rewrite(level):
    """A rewrite level by name; True is "safe" and False "none"."""
    if level is True:
        return "safe"
    if level is False:
        return "none"
    if level not in REWRITE_LEVELS:
        raise ValueError(f"rewrite must be one of {REWRITE_LEVELS} (or True / False), "
                         f"got {level!r}")
    return level


config = Config()
