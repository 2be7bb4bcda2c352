"""Operators and methods of :class:`~symgrad.graph.Variable`, installed in one place.

The graph module knows nothing of ops (imports flow one way), so the NumPy-like
surface of a Variable is attached here, once, when the ops are imported.
``==`` and ``!=`` keep their identity meaning so variables stay hashable: use
``sg.eq`` / ``sg.neq``.
"""

import functools
import math
import operator

from ..graph import Variable
from . import elemwise as _ew
from . import indexing as _ix
from . import linalg as _la
from . import reduce as _rd
from . import shape as _sh


def _swap(fn):
    return lambda self, other: fn(other, self)


def _reduction(name):
    def method(self, axis=None, keepdims=False):
        return getattr(_rd, name)(self, axis=axis, keepdims=keepdims)
    method.__name__ = name
    method.__doc__ = f"``sg.{name}(self, axis, keepdims)``."
    return method


def _transpose(self, *axes):
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return _sh.transpose(self, axes or None)


def _reshape(self, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, Variable)):
        shape = shape[0]
    return _sh.reshape(self, shape)


def _shape(self):
    """One entry per axis: a Python int where the static shape (``x.type.shape``) knows the
    length, else the symbolic int64 scalar ``sg.shape(x)[i]`` -- so ``sg.arange(y.shape[0])``,
    ``x.reshape((x.shape[0], -1))`` and ``if x.shape[1] == 3:`` all work."""
    static = self.type.shape
    if None not in static:
        return static
    return tuple(_sh.shape_at(self, i) if s is None else s for i, s in enumerate(static))


def _size(self):
    """The number of elements: an int when every length is static, else a symbolic int64
    scalar (the product of ``x.shape``)."""
    static = math.prod(s for s in self.type.shape if s is not None)
    if self.type.size is not None or static == 0:
        return static
    total = functools.reduce(operator.mul, [_sh.shape_at(self, i)
                                            for i, s in enumerate(self.type.shape) if s is None])
    return total if static == 1 else total * static


_METHODS = {
    "shape": property(_shape), "size": property(_size),
    "__add__": lambda s, o: _ew.add(s, o), "__radd__": _swap(lambda a, b: _ew.add(a, b)),
    "__sub__": lambda s, o: _ew.sub(s, o), "__rsub__": _swap(lambda a, b: _ew.sub(a, b)),
    "__mul__": lambda s, o: _ew.mul(s, o), "__rmul__": _swap(lambda a, b: _ew.mul(a, b)),
    "__truediv__": lambda s, o: _ew.truediv(s, o),
    "__rtruediv__": _swap(lambda a, b: _ew.truediv(a, b)),
    "__floordiv__": lambda s, o: _ew.floordiv(s, o),
    "__rfloordiv__": _swap(lambda a, b: _ew.floordiv(a, b)),
    "__mod__": lambda s, o: _ew.mod(s, o), "__rmod__": _swap(lambda a, b: _ew.mod(a, b)),
    "__pow__": lambda s, o: _ew.pow(s, o), "__rpow__": _swap(lambda a, b: _ew.pow(a, b)),
    "__matmul__": lambda s, o: _la.matmul(s, o),
    "__rmatmul__": _swap(lambda a, b: _la.matmul(a, b)),
    "__neg__": lambda s: _ew.neg(s), "__pos__": lambda s: s, "__abs__": lambda s: _ew.abs(s),
    "__lt__": lambda s, o: _ew.lt(s, o), "__le__": lambda s, o: _ew.le(s, o),
    "__gt__": lambda s, o: _ew.gt(s, o), "__ge__": lambda s, o: _ew.ge(s, o),
    "__getitem__": lambda s, idx: _ix.getitem(s, idx),
    "sum": _reduction("sum"), "mean": _reduction("mean"), "prod": _reduction("prod"),
    "max": _reduction("max"), "min": _reduction("min"),
    "argmax": _reduction("argmax"), "argmin": _reduction("argmin"),
    "reshape": _reshape, "transpose": _transpose,
    "T": property(lambda s: _sh.transpose(s)),
    "astype": lambda s, dtype: _ew.cast(s, dtype),
    "flatten": lambda s, ndim=1: _sh.flatten(s, ndim),
}

for _name, _fn in _METHODS.items():
    setattr(Variable, _name, _fn)
