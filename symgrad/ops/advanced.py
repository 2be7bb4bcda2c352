"""Advanced (integer-array) indexing: the gather ``AdvancedSubtensor`` and its
adjoint, the scatter-add ``AdvancedIncSubtensor``.

An index here holds at least one integer array and may mix in ints, slices
and None (the description is shared with :mod:`.subtensor`). NumPy's rules:
the integer arrays and the ints broadcast together; when they are adjacent in
the index their result dims replace them in place, otherwise they go first.
Repeated indices in a gather ACCUMULATE in its gradient (``np.add.at``).
"""

import contextlib
import math

import numpy as np

from ..errors import ShapeError
from ..graph import NOT_DIFFERENTIABLE, Constant, Op, TensorType
from ..codegen.c_support import call, itemsize
from .elemwise import broadcast_static
from .shape import zeros_like
from .subtensor import (ARRAY, c_const, c_fresh_copy, c_index, c_slice, c_store, c_value_strides,
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
        # No loop at all for an empty result: (2**60, 0) must not run 2**60 empty rows.
        with ctx.w.block(f"if (sg_size(&{ctx.arr(out)}, {out.ndim}) > 0)"):
            if self.idx == (ARRAY,) and x.ndim > 1:
                # E[ids]: whole rows, copied as blocks when they are contiguous in E
                _c_gather_rows(ctx, x, index_inputs[0], out)
                with ctx.w.block("else"):
                    _c_gather_elements(ctx, plan, x, out)
            else:
                _c_gather_elements(ctx, plan, x, out)

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
        # One element at a time in C order: repeated positions accumulate
        # (np.add.at), and for a set the last value written wins (as NumPy).
        empty = " || ".join(f"{plan.shape}[{k}] == 0" for k in range(len(plan.dims))) or "0"
        with ctx.w.block(f"if (!({empty}))"):  # no empty loops over a huge leading length
            wide = out.dtype == "float32" and not self.set_instead_of_inc
            acc, n = (_c_widen(ctx, node, out) if wide else (ctx.ptr(out), None))
            with _c_loop(ctx, plan, ctx.arr(out)) as (offset, idx):
                value = f"{ctx.ptr(y)}[{ctx.offset(y, idx, yst)}]"
                c_store(ctx, f"{acc}[{offset}]", "double" if wide else ctx.ct(out), value,
                        self.set_instead_of_inc)
            if wide:
                ctx.w(f"for (int64_t k = 0; k < {n}; k++) {ctx.ptr(out)}[k] = (float){acc}[k];")

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
    ctx.w(f"double *{acc} = {n} <= INT64_MAX / 8 ? "
          f"(double *)sg_ws_alloc(ws, (size_t){n} * sizeof(double)) : NULL;")
    with ctx.w.block(f"if (!{acc})"):
        ctx.fail(node, "nomem", "no memory for the float64 sums of a float32 scatter-add")
    ctx.w(f"for (int64_t k = 0; k < {n}; k++) {acc}[k] = {ctx.ptr(out)}[k];")
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


def _c_gather_elements(ctx, plan, x, out):
    """The general gather: one element at a time, in the result's C order."""
    pos = ctx.tmp("pos")
    ctx.w(f"int64_t {pos} = 0;")
    with _c_loop(ctx, plan, ctx.arr(x)) as (offset, _):
        ctx.w(f"{ctx.ptr(out)}[{pos}++] = {ctx.ptr(x)}[{offset}];")


def _c_gather_rows(ctx, x, ids, out):
    """``if (rows of x are contiguous) { one memcpy per index }`` for ``x[ids]`` (one index
    array, on axis 0, checked already); the caller writes the ``else``."""
    X, I = ctx.arr(x), ctx.arr(ids)
    item = np.dtype(x.dtype).itemsize
    w = ctx.w
    ok, row = ctx.tmp("rowok"), ctx.tmp("rowlen")
    w(f"int {ok} = 1; int64_t {row} = 1;")
    with w.block(f"for (int k = {x.ndim - 1}; k >= 1; k--)"):
        w(f"if ({X}.shape[k] != 1 && {X}.strides[k] != {row}) {ok} = 0;")
        w(f"{row} *= {X}.shape[k];")
    with w.block(f"if ({ok})"):
        n, it = ctx.tmp("n"), ctx.tmp("it")
        w(f"int64_t {n} = sg_size(&{I}, {ids.ndim}), {it}[SG_MAXDIM] = {{0}}, ioff = 0, none = 0;")
        with w.block(f"for (int64_t i = 0; i < {n}; i++)"):
            w(f"int64_t k = (int64_t){ctx.ptr(ids)}[ioff];")
            w(f"if (k < 0) k += {X}.shape[0];")
            w(f"memcpy({ctx.ptr(out)} + i * {row}, {ctx.ptr(x)} + k * {X}.strides[0], "
              f"(size_t){row} * {item});")
            w(f"sg_step2({it}, {I}.shape, {ids.ndim}, {I}.strides, &ioff, {I}.strides, &none);")


def _c_check_array(ctx, node, v, axis, n):
    """Every position in the index array ``v`` must lie in [-n, n): checked once, up front."""
    call(ctx, node, "sg_check_indices", f"&{ctx.arr(v)}", str(v.ndim), itemsize(v), str(axis), n)


def _c_group_shape(ctx, node, arrays, nb):
    """The index arrays' broadcast shape (a C array), or a ShapeError naming them."""
    b = ctx.tmp("bshape")
    ctx.w(f"int64_t {b}[{max(nb, 1)}];")
    ctx.w(f"for (int k = 0; k < {nb}; k++) {b}[k] = 1;")
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


@contextlib.contextmanager
def _c_loop(ctx, plan, arr):
    """Loops over the result's dims; yields (C offset into the ``sg_arr`` ``arr``, index names)."""
    off = ctx.tmp("off")
    fixed = " + ".join(f"{i} * {arr}.strides[{a}]" for i, a in plan.fixed) or "0"
    ctx.w(f"int64_t {off} = {fixed};")
    if plan.nb == 0:
        off = _c_gather_positions(ctx, plan, arr, off, [])
    idx, bidx = [], []
    with contextlib.ExitStack() as stack:
        for k, dim in enumerate(plan.dims):
            i = ctx.tmp("i")
            idx.append(i)
            stack.enter_context(ctx.w.block(f"for (int64_t {i} = 0; {i} < {plan.shape}[{k}]; "
                                            f"{i}++)"))
            off = _c_step(ctx, dim, i, off, arr)
            if dim[0] == "b":
                bidx.append(i)
                if len(bidx) == plan.nb:  # the group's dims are adjacent, in order
                    off = _c_gather_positions(ctx, plan, arr, off, bidx)
        yield off, idx


def _c_step(ctx, dim, i, off, arr):
    """The offset once the loop index ``i`` of the result's dim ``dim`` is known."""
    if dim[0] == "slice":
        term = f"({dim[2]} + {i} * {dim[3]}) * {arr}.strides[{dim[1]}]"
    elif dim[0] == "rest":
        term = f"{i} * {arr}.strides[{dim[1]}]"
    else:
        return off  # a new axis adds nothing; broadcast dims add once all are known
    nxt = ctx.tmp("off")
    ctx.w(f"int64_t {nxt} = {off} + {term};")
    return nxt


def _c_gather_positions(ctx, plan, arr, off, bidx):
    """Add each index array's (wrapped) position at broadcast index ``bidx`` to the offset."""
    terms = [off]
    for st, v, axis in plan.arrays:
        p = ctx.tmp("p")
        at = " + ".join(f"{i} * {st}[{j}]" for j, i in enumerate(bidx)) or "0"
        ctx.w(f"int64_t {p} = (int64_t){ctx.ptr(v)}[{at}];")
        ctx.w(f"if ({p} < 0) {p} += {arr}.shape[{axis}];")
        terms.append(f"{p} * {arr}.strides[{axis}]")
    nxt = ctx.tmp("off")
    ctx.w(f"int64_t {nxt} = {' + '.join(terms)};")
    return nxt
