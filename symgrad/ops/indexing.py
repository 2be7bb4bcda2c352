"""Indexing with NumPy's rules and the Theano-style region updates.

``x[idx]`` parses the index once into the hashable description of
:mod:`.subtensor` and builds a :class:`~.subtensor.Subtensor` (ints, slices,
None, Ellipsis) or, when an integer array is present, an
:class:`~.advanced.AdvancedSubtensor` (a gather). Their gradients are
``IncSubtensor`` / ``AdvancedIncSubtensor`` (a scatter-add, so repeated
indices accumulate), also reachable as :func:`inc_subtensor` and
:func:`set_subtensor`.

Boolean masks are refused: the result's length would depend on the mask's
values, which a static graph cannot type. Use ``sg.where``.
"""

import numpy as np

from .. import dtypes as _dt
from ..errors import IndexError as _IndexError
from ..graph import Constant, Variable, as_variable, user_trace
from .advanced import AdvancedIncSubtensor, AdvancedSubtensor
from .shape import Shape, shape_at
from .subtensor import ARRAY, FULL, SCALAR, IncSubtensor, Subtensor, consumes_axis

__all__ = ["getitem", "inc_subtensor", "set_subtensor"]


def _error(cls, msg):
    return cls(f"indexing: {msg} (at {user_trace()})")


# --------------------------------------------------------------------------- parsing an index

def _mask_error(what):
    return _error(TypeError, (
        f"boolean mask indices are not supported ({what}): the result's length would depend "
        "on how many entries are true, which a static graph cannot know. Keep the shape with "
        "sg.where(mask, x, 0) (and divide a sum by mask.astype(x.dtype).sum() for a mean), "
        "or index with integer positions"))


def _float_error(what):
    return _error(TypeError, f"indices must be integers, got {what}; convert them with "
                             f".astype('int64') (or sg.cast(i, 'int64'))")


def _int_scalar(v, what):
    """A slice part or scalar index: an int constant, or (SCALAR, the Variable)."""
    if v is None:
        return None, ()
    if isinstance(v, (bool, np.bool_)):
        raise _mask_error(f"{what} {v!r}")
    if isinstance(v, (int, np.integer)):
        return int(v), ()
    if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iu":
        return int(v), ()
    if isinstance(v, Variable) and v.ndim == 0 and _dt.is_int(v.dtype):
        return (int(v.data), ()) if isinstance(v, Constant) else (SCALAR, (v,))
    raise _error(TypeError, f"{what} must be an int or an integer scalar, got {v!r}")


def _parse_slice(s):
    parts, inputs = [], []
    for v, what in ((s.start, "a slice start"), (s.stop, "a slice stop"), (s.step, "a slice step")):
        p, ins = _int_scalar(v, what)
        parts.append(p)
        inputs.extend(ins)
    if parts[2] == 0:
        raise _error(ValueError, "slice step cannot be zero")
    if parts[2] == 1:
        parts[2] = None  # x[a:b:1] is x[a:b]: one spelling, so equal slices make equal ops
    return tuple(parts), inputs


def _parse_variable(v):
    if _dt.is_bool(v.dtype):
        raise _mask_error(f"a bool {v.type} variable")
    if not _dt.is_int(v.dtype):
        raise _float_error(f"a {v.type} variable")
    if v.ndim == 0:
        return _int_scalar(v, "an index")
    return ARRAY, (v,)


def _contains_variable(item):
    if isinstance(item, Variable):
        return True
    return isinstance(item, (list, tuple)) and any(_contains_variable(e) for e in item)


def _parse_array(item):
    """A list or NumPy array of integer positions: a constant index array."""
    if _contains_variable(item):
        raise _error(TypeError, "a list of symbolic indices cannot become one index array; "
                                "build it with sg.stack([...])")
    arr = np.asarray(item)
    if arr.size == 0 and not isinstance(item, np.ndarray):
        arr = arr.astype(np.int64)  # NumPy reads an empty list as no positions, not a float
    if arr.dtype == np.bool_:
        raise _mask_error(f"a bool array of shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise _float_error(f"an array of {arr.dtype}")
    if arr.ndim == 0:
        return int(arr), ()
    return ARRAY, (Constant(arr.astype(np.int64)),)


def _parse_item(item):
    """One item of a user's index -> (entry, the index inputs it takes)."""
    if item is None or item is Ellipsis:
        return item, ()
    if isinstance(item, slice):
        return _parse_slice(item)
    if isinstance(item, Variable):
        return _parse_variable(item)
    if isinstance(item, (bool, np.bool_)):
        raise _mask_error(f"the Python bool {item!r}")
    if isinstance(item, (int, np.integer)):
        return int(item), ()
    if isinstance(item, (list, tuple, np.ndarray)):
        return _parse_array(item)
    if isinstance(item, (float, np.floating)):
        raise _float_error(f"the float {item!r}")
    raise _error(TypeError, f"unsupported index {item!r} of type {type(item).__name__}")


def _expand(entries, ndim):
    """Ellipsis replaced by full slices; trailing full slices dropped (x[1, :] is x[1])."""
    if sum(e is Ellipsis for e in entries) > 1:
        raise _error(_IndexError, "an index can only have a single ellipsis ('...')")
    used = sum(consumes_axis(e) for e in entries)
    if used > ndim:
        raise _error(_IndexError, f"too many indices for a {ndim}-d input: {used} were indexed")
    advanced = ARRAY in entries
    out = []
    for e in entries:
        if e is not Ellipsis:
            out.append(e)
        elif ndim > used:
            out.extend([FULL] * (ndim - used))
        elif advanced:
            out.append(e)  # covers no axis, yet still separates advanced indices (NumPy)
    if out and out[-1] is Ellipsis:
        out.pop()
    # A kept Ellipsis must keep covering no axis, so the slices after it stay.
    while out and out[-1] == FULL and Ellipsis not in out:
        out.pop()
    return tuple(out)


def _shape_entry(x, idx):
    """``sg.shape(v)[i]`` with a Python int i is ``shape_at(v, i)`` (static shapes see it)."""
    if x.owner is None or not isinstance(x.owner.op, Shape):
        return None
    if isinstance(idx, (bool, np.bool_)) or not isinstance(idx, (int, np.integer)):
        return None
    v = x.owner.inputs[0]
    if not -v.ndim <= idx < v.ndim:
        raise _IndexError(f"subtensor: index {int(idx)} is out of range for axis 0 with size "
                          f"{v.ndim} (the shape of a {v.ndim}-d value) (at {user_trace()})")
    return shape_at(v, int(idx) % v.ndim)


def getitem(x, idx):
    """``x[idx]`` with NumPy's rules (what ``Variable.__getitem__`` calls).

    Basic items: ints (negative count from the end), slices with any step
    whose bounds are ints or integer scalar Variables, ``None``, ``...``.
    Advanced items: integer arrays (Variables of any rank, lists, NumPy
    arrays); they broadcast together and their dims replace them in place
    when adjacent, else come first. An index out of range raises
    ``sg.IndexError`` (at build time when the length is static). Boolean
    masks and floats raise ``TypeError``.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> M = sg.matrix("M")
    >>> rows, cols = sg.vector("r", "int64"), sg.vector("c", "int64")
    >>> picked = M[rows, cols]
    >>> sg.evaluate(picked, {M: np.eye(3), rows: np.array([0, 1]), cols: np.array([0, 0])})
    array([1., 0.])
    >>> sg.evaluate(M[::-1, 0], {M: np.arange(4.0).reshape(2, 2)})
    array([2., 0.])
    """
    x = as_variable(x)
    found = _shape_entry(x, idx)
    if found is not None:
        return found
    entries, inputs = [], []
    for item in idx if isinstance(idx, tuple) else (idx,):
        entry, ins = _parse_item(item)
        entries.append(entry)
        inputs.extend(ins)
    entries = _expand(entries, x.ndim)
    op = AdvancedSubtensor(entries) if ARRAY in entries else Subtensor(entries)
    return op(x, *inputs)


# --------------------------------------------------------------------------- region updates

def _put(x_sub, y, set_instead_of_inc, fname):
    node = x_sub.owner if isinstance(x_sub, Variable) else None
    if node is None or not isinstance(node.op, (Subtensor, AdvancedSubtensor)):
        raise TypeError(f"{fname} expects the result of indexing a variable, as in "
                        f"sg.{fname}(x[1:3], y); got {x_sub!r}")
    x, *index_inputs = node.inputs
    if _dt.is_python_scalar(y):
        y = Constant(y, dtype=_dt.weak_scalar_dtype(y, [x.dtype]))
    cls = IncSubtensor if isinstance(node.op, Subtensor) else AdvancedIncSubtensor
    return cls(node.op.idx, set_instead_of_inc)(x, as_variable(y), *index_inputs)


def inc_subtensor(x_sub, y):
    """A copy of ``x`` with ``y`` added into the region ``x_sub = x[idx]`` (Theano's API).

    With integer-array indices a repeated position receives every value
    added to it (``np.add.at``). ``y`` broadcasts to the region's shape.

    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> sg.evaluate(sg.inc_subtensor(x[[0, 0, 2]], 1.0), {x: np.zeros(3)})
    array([2., 0., 1.])
    """
    return _put(x_sub, y, False, "inc_subtensor")


def set_subtensor(x_sub, y):
    """A copy of ``x`` with the region ``x_sub = x[idx]`` replaced by ``y`` (Theano's API).

    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> sg.evaluate(sg.set_subtensor(x[1:], 5.0), {x: np.zeros(3)})
    array([0., 5., 5.])
    """
    return _put(x_sub, y, True, "set_subtensor")
