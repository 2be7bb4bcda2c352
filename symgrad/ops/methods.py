"""Operators and methods of :class:`~symgrad.graph.Variable`, installed in one place.

The graph module knows nothing of ops (imports flow one way), so the NumPy-like
surface of a Variable is attached here, once, when the ops are imported.
``==`` and ``!=`` keep their identity meaning so variables stay hashable: use
``sg.eq`` / ``sg.neq``.
"""

import functools
import math
import operator

import numpy as np

from .. import _advice
from ..errors import ShapeError
from ..graph import Variable, user_trace
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


def _accumulating(name):
    """sum, mean and prod also take the accumulation dtype (NumPy's and Theano's ``dtype=``,
    Theano's ``acc_dtype=``)."""
    def method(self, axis=None, keepdims=False, *, dtype=None, acc_dtype=None):
        return getattr(_rd, name)(self, axis=axis, keepdims=keepdims, dtype=dtype,
                                  acc_dtype=acc_dtype)
    method.__name__ = name
    method.__doc__ = f"``sg.{name}(self, axis, keepdims, dtype=, acc_dtype=)``."
    return method


def _dimshuffle(self, *pattern):
    """Theano's ``x.dimshuffle(*pattern)``: for each result axis, an axis of ``x`` or ``'x'``
    (a new length-1, broadcastable axis); axes of ``x`` left out are dropped and must have
    length 1 (checked when the graph is built where the length is static, else at call
    time). ``x.dimshuffle('x', 0)`` makes a row of a vector, ``b.dimshuffle('x', 0, 'x',
    'x')`` a bias for NCHW images, ``m.dimshuffle(1, 0)`` is ``m.T``. One tuple or list
    works too (``x.dimshuffle((1, 0))``)."""
    if len(pattern) == 1 and isinstance(pattern[0], (tuple, list)):
        pattern = tuple(pattern[0])
    order = []
    for p in pattern:
        if isinstance(p, str) and p == "x":
            order.append("x")
        elif isinstance(p, (int, np.integer)) and not isinstance(p, (bool, np.bool_)):
            if not 0 <= p < self.ndim:
                raise ShapeError(f"dimshuffle: axis {p} in the pattern {pattern} is not an axis "
                                 f"of the {self.ndim}-d input {self.type} (axes are 0 to "
                                 f"{self.ndim - 1}; no negative axes, as in Theano) "
                                 f"(at {user_trace()})")
            order.append(int(p))
        else:
            raise TypeError(f"dimshuffle: a pattern entry is an axis number or 'x' (a new "
                            f"broadcastable axis), got {p!r} in {pattern} (at {user_trace()})")
    if len(set(a for a in order if a != "x")) != len([a for a in order if a != "x"]):
        raise ShapeError(f"dimshuffle: an axis is repeated in the pattern {pattern} "
                         f"(at {user_trace()})")
    return _sh.dimshuffle(self, *order)


def _transpose(self, *axes):
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return _sh.transpose(self, axes or None)


def _reshape(self, *shape, ndim=None):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, Variable)):
        shape = shape[0]
    out = _sh.reshape(self, shape)
    if ndim is not None and ndim != out.ndim:  # Theano's reshape(shape, ndim=)
        raise ShapeError(f"reshape: ndim={ndim} but the shape has {out.ndim} entries "
                             f"(at {user_trace()})")
    return out


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


# NumPy's operators reach a Variable as ufuncs when the array is on the left (``a + x``:
# np.add(a, x)): they build the same op as the operator. Every other NumPy function or
# ufunc is refused with the symgrad function to write instead (symgrad._advice).
_OPERATOR_UFUNCS = {
    np.add: _ew.add, np.subtract: _ew.sub, np.multiply: _ew.mul, np.true_divide: _ew.truediv,
    np.floor_divide: _ew.floordiv, np.remainder: _ew.mod, np.power: _ew.pow,
    np.matmul: _la.matmul, np.negative: _ew.neg, np.absolute: _ew.abs, np.positive: None,
    np.less: _ew.lt, np.less_equal: _ew.le, np.greater: _ew.gt, np.greater_equal: _ew.ge,
}


def _array_ufunc(self, ufunc, method, *inputs, **kwargs):
    if method == "__call__" and not kwargs and ufunc in _OPERATOR_UFUNCS:
        fn = _OPERATOR_UFUNCS[ufunc]
        return inputs[0] if fn is None else fn(*inputs)
    if ufunc in (np.equal, np.not_equal) and method == "__call__" and not kwargs:
        # ``a == x`` keeps Python's identity meaning (False), as ``x == a``: sg.eq compares
        return ufunc is np.not_equal
    raise _advice.numpy_error(ufunc.__name__ if method == "__call__"
                              else f"{ufunc.__name__}.{method}")


def _array_function(self, func, types, args, kwargs):
    raise _advice.numpy_error(func.__name__)


def _getattr(self, name):
    # Only reached when the attribute does not exist: the error says what to write.
    if name.startswith("_"):
        raise AttributeError(f"'{type(self).__name__}' object has no attribute {name!r}")
    raise _advice.VariableAttributeError(self, name)


def _eval(self, inputs_to_values=None):
    """Theano's ``x.eval({x: value, ...})``: the value of ``x`` computed in NumPy (mode "py",
    nothing compiled), as :func:`sg.evaluate`; for repeated calls compile with sg.function."""
    from ..interp import evaluate
    if inputs_to_values is not None and not isinstance(inputs_to_values, dict):
        raise TypeError(f"eval: inputs_to_values is a dict {{input: value}}, got "
                        f"{type(inputs_to_values).__name__}")
    return evaluate(self, inputs_to_values)


_METHODS = {
    "__array_ufunc__": _array_ufunc, "__array_function__": _array_function,
    "__getattr__": _getattr, "eval": _eval,
    "dot": lambda s, o: _la.dot(s, o),
    "clip": lambda s, lo, hi: _ew.clip(s, lo, hi),
    "var": lambda s, axis=None, keepdims=False, ddof=0: _rd.var(s, axis, keepdims, ddof),
    "std": lambda s, axis=None, keepdims=False, ddof=0: _rd.std(s, axis, keepdims, ddof),
    "squeeze": lambda s, axis=None: _sh.squeeze(s, axis),
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
    "sum": _accumulating("sum"), "mean": _accumulating("mean"), "prod": _accumulating("prod"),
    "max": _reduction("max"), "min": _reduction("min"),
    "argmax": _reduction("argmax"), "argmin": _reduction("argmin"),
    "reshape": _reshape, "transpose": _transpose, "dimshuffle": _dimshuffle,
    "T": property(lambda s: _sh.transpose(s)),
    "astype": lambda s, dtype: _ew.cast(s, dtype),
    "flatten": lambda s, ndim=1: _sh.flatten(s, ndim),
}

for _name, _fn in _METHODS.items():
    setattr(Variable, _name, _fn)
