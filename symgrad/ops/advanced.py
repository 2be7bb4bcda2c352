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
from ..codegen.c_support import SUFFIX, call, itemsize
from .elemwise import broadcast_static
from .shape import zeros_like
from .subtensor import (ARRAY, c_const, c_fresh_copy, c_index, c_slice, c_value_strides,
                        check_assignable, check_index_inputs, check_rank,
                        check_static_ranges, check_value_dtype, entry_axes, is_slice, n_consumed,
                        numpy_key, render, slice_length, split_inputs, validate_idx,
                        value_grad)

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
    return advanced_shape(op.idx, x.shape, [v.shape for v in index_inputs], op.name)


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

    def c_code(self, ctx, node):
        x, *index_inputs = node.inputs
        out = node.outputs[0]
        plan = _c_plan(ctx, node, self.idx, x, index_inputs)
        ctx.alloc(node, out, [f"{plan.shape}[{k}]" for k in range(out.ndim)])
        item = itemsize(x)
        # Nothing at all for an empty result: (2**60, 0) must not run 2**60 empty rows.
        with ctx.w.block(f"if (sg_size(&{ctx.arr(out)}, {out.ndim}) > 0)"):
            gather = (f"sg_gather(&{_c_index_plan(ctx, plan, ctx.arr(x))}, "
                      f"{ctx.arr(out)}.data, {ctx.arr(x)}.data, {item});")
            if self.idx == (ARRAY,) and x.ndim > 1:
                # E[ids]: whole rows, copied as blocks when they are contiguous in E
                ids = index_inputs[0]
                ctx.w(f"if (!sg_gather_rows({ctx.arr(out)}.data, &{ctx.arr(x)}, {x.ndim}, "
                      f"&{ctx.arr(ids)}, {ids.ndim}, {itemsize(ids)}, {item})) {gather}")
            else:
                ctx.w(gather)

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

    def c_code(self, ctx, node):
        x, y, *index_inputs = node.inputs
        out = node.outputs[0]
        plan = _c_plan(ctx, node, self.idx, x, index_inputs)
        c_fresh_copy(ctx, node, x)
        yst = c_value_strides(ctx, node, y, plan.shape, len(plan.dims))
        rnd, set_ = len(plan.dims), int(self.set_instead_of_inc)
        # One element at a time in C order: repeated positions accumulate
        # (np.add.at), and for a set the last value written wins (as NumPy).
        empty = " || ".join(f"{plan.shape}[{k}] == 0" for k in range(rnd)) or "0"
        with ctx.w.block(f"if (!({empty}))"):  # no empty loops over a huge leading length
            P = _c_index_plan(ctx, plan, ctx.arr(out))
            wide = out.dtype == "float32" and not self.set_instead_of_inc
            # the values in the sums' dtype (float64 for a widened float32 scatter-add)
            dtype = "float64" if wide else out.dtype
            ys = ctx.arr(y)
            if y.dtype != dtype and not (wide and y.dtype == "float32"):
                ys = ctx.tmp("conv")
                ctx.w(f"sg_arr {ys};")
                call(ctx, node, "sg_cast_copy", "ws", f"&{ys}", f"&{ctx.arr(y)}", str(y.ndim),
                     str(np.dtype(dtype).itemsize), f"sg_cast_{SUFFIX[dtype]}_{SUFFIX[y.dtype]}")
                yst = c_value_strides(ctx, node, y, plan.shape, rnd, arr=ys)
            if wide:
                acc, n = _c_widen(ctx, node, out)
                if y.dtype == "float32":
                    ctx.w(f"sg_scatter_add_f64_f32(&{P}, {acc}, &{ys}, {yst});")
                else:
                    ctx.w(f"sg_scatter_f64(&{P}, {acc}, &{ys}, {yst}, 0);")
                ctx.w(f"sg_narrow_f64({ctx.ptr(out)}, {acc}, {n});")
            else:
                ctx.w(f"sg_scatter_{SUFFIX[dtype]}(&{P}, {ctx.arr(out)}.data, &{ys}, {yst}, "
                      f"{set_});")

    def grad(self, node, inputs, outputs, gouts):
        x, y, *index_inputs = inputs
        (g,) = gouts
        zero = Constant(0, dtype=g.dtype)
        gx = (AdvancedIncSubtensor(self.idx, True)(g, zero, *index_inputs)
              if self.set_instead_of_inc else g)
        gy = value_grad(AdvancedSubtensor(self.idx)(g, *index_inputs), y)
        return [gx, gy] + [NOT_DIFFERENTIABLE] * len(index_inputs)


def _c_widen(ctx, node, out):
    """A float64 copy of the fresh, contiguous float32 ``out`` for a scatter-add to sum into:
    repeated positions (a gather's gradient) then round once, as in mode "py".
    Returns the copy's C name and its element count's."""
    arr, acc, n = ctx.arr(out), ctx.tmp("acc"), ctx.tmp("n")
    size = " * ".join(f"{arr}.shape[{k}]" for k in range(out.ndim)) or "1"
    ctx.w(f"int64_t {n} = {size};")  # out's own element count: it was allocated
    ctx.w(f"double *{acc} = sg_widen_f32(ws, {ctx.ptr(out)}, {n});")
    with ctx.w.block(f"if (!{acc})"):
        ctx.fail(node, "nomem", "no memory for the float64 sums of a float32 scatter-add")
    return acc, n


# --------------------------------------------------------------------------- C lowering
#
# A plan lists the result's dims in NumPy's order: ("b", j) for dim j of the
# index arrays' broadcast shape, ("slice", axis, start, step) and ("rest", axis)
# for axes of x walked through, ("new",) for None. The loop nest adds each
# dim's share of the element offset as soon as its index is known; the arrays'
# positions are read once the last broadcast dim is entered.

class _Plan:
    """Where a gather's or scatter's elements are, in C names resolved at run time."""

    def __init__(self):
        self.dims = []      # one per result dim, in order
        self.arrays = []    # (C strides array over the broadcast dims, index input, axis)
        self.fixed = []     # C terms "wrapped index * stride" of the group's integer indices
        self.shape = None   # C array of the result's (region's) shape
        self.nb = 0         # number of broadcast dims


def _c_check_array(ctx, node, v, axis, n):
    """Every position in the index array ``v`` must lie in [-n, n): checked once, up front."""
    call(ctx, node, "sg_check_indices", f"&{ctx.arr(v)}", str(v.ndim), itemsize(v), str(axis), n)


def _c_group_shape(ctx, node, arrays, nb):
    """The index arrays' broadcast shape (a C array), or a ShapeError naming them."""
    b = ctx.tmp("bshape")
    ctx.w(f"int64_t {b}[{max(nb, 1)}] = {{{', '.join(['1'] * max(nb, 1))}}};")
    cond = " || ".join(f"sg_broadcast_into({b}, {nb}, {ctx.arr(v)}.shape, {v.ndim}) >= 0"
                       for v in arrays)
    with ctx.w.block(f"if ({cond})"):
        bufs = [ctx.tmp("sb") for _ in arrays]
        ctx.w(" ".join(f"char {s}[96];" for s in bufs))
        ctx.fail(node, "shape", "index arrays of shapes " + " and ".join(["%s"] * len(arrays)) +
                 " cannot be broadcast together",
                 *[f"sg_shape_str({s}, sizeof {s}, {ctx.arr(v)}.shape, {v.ndim})"
                   for s, v in zip(bufs, arrays)])
    return b


def _c_plan(ctx, node, idx, x, index_inputs):
    """Check and resolve every index (in entry order, as NumPy), then place the result's dims."""
    plan, xs = _Plan(), f"{ctx.arr(x)}.shape"
    parts, arrays = [], []  # per entry: (is advanced, its dims)
    for e, axis, ins in zip(idx, entry_axes(idx), split_inputs(idx, index_inputs)):
        n = f"{xs}[{axis}]"
        if e == ARRAY:
            _c_check_array(ctx, node, ins[0], axis, n)
            arrays.append((ins[0], axis))
            parts.append((True, []))
        elif _is_advanced(e):
            value = f"{ctx.ptr(ins[0])}[0]" if ins else c_const(e)
            plan.fixed.append((c_index(ctx, node, value, axis, n), axis))
            parts.append((True, []))
        elif is_slice(e):
            start, step, length = c_slice(ctx, node, e, ins, n)
            parts.append((False, [(("slice", axis, start, step), length)]))
        else:
            parts.append((False, [(("new",), "1")] if e is None else []))
    parts.append((False, [(("rest", a), f"{xs}[{a}]") for a in range(n_consumed(idx), x.ndim)]))
    plan.nb = max(v.ndim for v, _ in arrays)
    bshape = _c_group_shape(ctx, node, [v for v, _ in arrays], plan.nb)
    for v, axis in arrays:
        st = ctx.tmp("ist")
        ctx.w(f"int64_t {st}[{max(plan.nb, 1)}];")
        ctx.w(f"sg_broadcast_strides({st}, &{ctx.arr(v)}, {v.ndim}, {bshape}, {plan.nb});")
        plan.arrays.append((st, v, axis))
    group = [(("b", j), f"{bshape}[{j}]") for j in range(plan.nb)]
    placed = _place(parts, group)
    plan.dims = [d for d, _ in placed]
    plan.shape = ctx.tmp("rshape")
    ctx.w(f"int64_t {plan.shape}[{max(len(placed), 1)}];")
    for k, (_, length) in enumerate(placed):
        ctx.w(f"{plan.shape}[{k}] = {length};")
    return plan


def _place(parts, group):
    """NumPy's placement: the group's dims replace adjacent advanced entries, else go first."""
    where = [i for i, (adv, _) in enumerate(parts) if adv]
    rest = [d for adv, ds in parts if not adv for d in ds]
    if where[-1] - where[0] + 1 != len(where):
        return group + rest
    before = [d for adv, ds in parts[:where[0]] if not adv for d in ds]
    return before + group + rest[len(before):]


def _c_index_plan(ctx, plan, arr):
    """The ``sg_index_plan`` (sg_rows.h) of ``plan`` over the ``sg_arr`` ``arr`` (x, or the
    copy a scatter writes): its C name."""
    P, w = ctx.tmp("plan"), ctx.w
    base = [f"{i} * {arr}.strides[{a}]" for i, a in plan.fixed]
    w(f"sg_index_plan {P};")
    w(f"{P}.nd = {len(plan.dims)}; {P}.narr = {len(plan.arrays)};")
    for k, dim in enumerate(plan.dims):
        if dim[0] == "slice":
            base.append(f"{dim[2]} * {arr}.strides[{dim[1]}]")
            step = f"{dim[3]} * {arr}.strides[{dim[1]}]"
        else:
            step = f"{arr}.strides[{dim[1]}]" if dim[0] == "rest" else "0"
        bdim = dim[1] if dim[0] == "b" else -1
        w(f"{P}.shape[{k}] = {plan.shape}[{k}]; {P}.step[{k}] = {step}; {P}.bdim[{k}] = {bdim};")
    w(f"{P}.base = {' + '.join(base) or '0'};")
    for a, (st, v, axis) in enumerate(plan.arrays):
        w(f"{P}.arr[{a}] = {ctx.arr(v)}.data; {P}.wide[{a}] = {int(v.dtype == 'int64')}; "
          f"{P}.ast[{a}] = {st}; {P}.len[{a}] = {arr}.shape[{axis}]; "
          f"{P}.xst[{a}] = {arr}.strides[{axis}];")
    return P
