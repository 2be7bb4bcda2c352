"""The package version, in one home: ``symgrad.__version__`` and the compiler's cache key."""

__version__ = "0.1.0"
