"""Advanced (integer-array) indexing: the gather ``AdvancedSubtensor`` and its
adjoint, the scatter-add ``AdvancedIncSubtensor``.

An index here holds at least one integer array and may mix in ints, slices
and None (the description is shared with :mod:`.subtensor`). NumPy's rules:
the integer arrays and the ints broadcast together; when they are adjacent in
the index their result dims replace them in place, otherwise they go first.
Repeated indices in a gather ACCUMULATE in its gradient (``np.add.at``).
"""

import math

import numpy as np

from ..errors import ShapeError
from ..graph import NOT_DIFFERENTIABLE, Constant, Op, TensorType
from ..codegen.ir import Addr, Alloc, Arr, Call, ItemSize
from .elemwise import broadcast_static
from .shape import zeros_like
from .subtensor import (ARRAY, check_assignable, check_index_inputs, check_rank,
                        check_static_ranges, check_value_dtype, entry_axes, fresh_copy,
                        index_shape, is_slice, n_consumed, numpy_key, render, resolve,
                        slice_length, split_inputs, update, validate_idx, value_grad)

__all__ = ["AdvancedSubtensor", "AdvancedIncSubtensor", "advanced_shape"]


def _is_advanced(e):
    # Integer scalars join the integer arrays' group as soon as one array is
    # present (NumPy: x[[0, 1], :, 0] puts the group's dims first).
    return e == ARRAY or (e is not None and e is not Ellipsis and not is_slice(e))


def advanced_shape(idx, xshape, index_shapes, opname):
    """The static shape of ``x[idx]`` (NumPy's placement of the advanced dims)."""
    parts = []  # per entry: (is it advanced, its dims); then the axes left unindexed
    for e, axis, shapes in zip(idx, entry_axes(idx), split_inputs(idx, index_shapes)):
        if _is_advanced(e):
            parts.append((True, shapes[0] if e == ARRAY else ()))
        elif is_slice(e):
            parts.append((False, (slice_length(e, xshape[axis]),)))
        else:
            parts.append((False, (1,) if e is None else ()))
    parts.append((False, tuple(xshape[n_consumed(idx):])))
    group = [i for i, (adv, _) in enumerate(parts) if adv]
    bshape = broadcast_static([parts[i][1] for i in group], opname)

    def dims(sel):
        return tuple(d for adv, ds in sel if not adv for d in ds)

    if group[-1] - group[0] + 1 == len(group):
        return dims(parts[:group[0]]) + bshape + dims(parts[group[-1] + 1:])
    return bshape + dims(parts)


def _check_group_broadcast(op, node, key):
    """The integer arrays must broadcast together: a ShapeError at the user's line otherwise."""
    shapes = [np.shape(k) for e, k in zip(op.idx, key) if _is_advanced(e)]
    try:
        np.broadcast_shapes(*shapes)
    except ValueError:
        shown = " and ".join(map(str, shapes))
        raise ShapeError(f"{op.name} at {node.trace}: index arrays of shapes {shown} cannot be "
                         f"broadcast together") from None


def _validate(idx, opname):
    idx = validate_idx(idx, opname, advanced=True)
    if ARRAY not in idx:
        raise TypeError(f"{opname}: the index {render(idx)} has no integer array; use Subtensor")
    return idx


def _infer_region(op, x, index_inputs):
    check_index_inputs(op.idx, index_inputs, op.name)
    check_rank(op.idx, x, op.name)
    check_static_ranges(op.idx, x, index_inputs, op.name)
    return advanced_shape(op.idx, x.type.shape, [v.type.shape for v in index_inputs], op.name)


class AdvancedSubtensor(Op):
    """``x[idx]`` where ``idx`` holds integer arrays: a gather (NumPy advanced indexing).

    Indices must lie in ``[-n, n)`` (negative ones count from the end); any
    other raises ``sg.IndexError`` naming the op and the user's line.

    >>> import numpy as np, symgrad as sg
    >>> E = sg.matrix("E")
    >>> rows = E[[0, 2, 0]]
    >>> rows.owner.op
    advanced_subtensor[[?]]
    >>> sg.evaluate(rows, {E: np.arange(6.0).reshape(3, 2)})
    array([[0., 1.],
           [4., 5.],
           [0., 1.]])
    """

    __props__ = ("idx",)
    name = "advanced_subtensor"
    flops_per_element = 0  # moves data: no arithmetic

    def __init__(self, idx):
        self.idx = _validate(idx, self.name)

    def __str__(self):
        return f"{self.name}{render(self.idx)}"

    __repr__ = __str__

    def infer(self, x, *index_inputs):
        return [TensorType(x.dtype, _infer_region(self, x, index_inputs))]

    def perform(self, node, x, *index_values):
        key = numpy_key(self, node, x.shape, index_values)
        _check_group_broadcast(self, node, key)
        return [np.asarray(x[key], dtype=x.dtype)]  # advanced indexing always copies

    def lower(self, node):
        (x, *index_inputs), out = node.inputs, node.outputs[0]
        ix, body = resolve(self.idx, x, index_inputs)
        return body + [Alloc(out, index_shape(ix, out.ndim)),
                       Call("sg_index_gather", [Arr(out), Addr(ix), Arr(x), ItemSize(x.dtype)],
                            can_fail=False)]

    def grad(self, node, inputs, outputs, gouts):
        x, *index_inputs = inputs
        gx = AdvancedIncSubtensor(self.idx)(zeros_like(x), gouts[0], *index_inputs)
        return [gx] + [NOT_DIFFERENTIABLE] * len(index_inputs)


class AdvancedIncSubtensor(Op):
    """A copy of ``x`` with ``y`` scattered into ``x[idx]`` (``idx`` holds integer arrays).

    Adding uses ``np.add.at``, so an index that repeats adds every one of its
    values (the gradient of a gather). With ``set_instead_of_inc`` a repeated
    index keeps the last value, as NumPy assignment does; the gradient with
    respect to ``y`` then counts every copy (as Theano's does).
    """

    __props__ = ("idx", "set_instead_of_inc")
    name = "advanced_inc_subtensor"

    def flops(self, node, in_shapes, out_shapes):
        """One add per element of the values scattered in (``sg.explain``'s rules)."""
        return math.prod(in_shapes[1])

    def __init__(self, idx, set_instead_of_inc=False):
        self.idx = _validate(idx, self.name)
        self.set_instead_of_inc = bool(set_instead_of_inc)

    def __str__(self):
        return f"advanced_{'set' if self.set_instead_of_inc else 'inc'}_subtensor{render(self.idx)}"

    __repr__ = __str__

    def infer(self, x, y, *index_inputs):
        region = _infer_region(self, x, index_inputs)
        check_value_dtype(x, y, self.name)
        check_assignable(y, region, self.name)
        return [x.type]

    def perform(self, node, x, y, *index_values):
        key = numpy_key(self, node, x.shape, index_values)
        _check_group_broadcast(self, node, key)
        # float32 adds of repeated positions accumulate in float64 and round once, as C does
        wide = np.dtype(x.dtype) == np.float32 and not self.set_instead_of_inc
        out = np.array(x, dtype=np.float64 if wide else x.dtype, copy=True)
        y = np.asarray(y, dtype=out.dtype)
        try:
            if self.set_instead_of_inc:
                out[key] = y
            else:
                np.add.at(out, key, y)
        except ValueError:
            raise ShapeError(f"{self.name} at {node.trace}: a value of shape {y.shape} does not "
                             f"fit the region of shape {x[key].shape}") from None
        return [out.astype(np.float32) if wide else out]

    def lower(self, node):
        (x, y, *index_inputs), out = node.inputs, node.outputs[0]
        ix, body = resolve(self.idx, x, index_inputs)
        # One element at a time in C order: repeated positions accumulate
        # (np.add.at), and for a set the last value written wins (as NumPy).
        return body + fresh_copy(x, out) + [
            update("sg_index_scatter", ix, out, y, self.set_instead_of_inc)]

    def grad(self, node, inputs, outputs, gouts):
        x, y, *index_inputs = inputs
        (g,) = gouts
        zero = Constant(0, dtype=g.dtype)
        gx = (AdvancedIncSubtensor(self.idx, True)(g, zero, *index_inputs)
              if self.set_instead_of_inc else g)
        gy = value_grad(AdvancedSubtensor(self.idx)(g, *index_inputs), y)
        return [gx, gy] + [NOT_DIFFERENTIABLE] * len(index_inputs)
