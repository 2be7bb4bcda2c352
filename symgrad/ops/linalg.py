"""Matrix products: one op, :class:`MatMul`, and the NumPy-style functions built on it.

``MatMul`` takes operands of at least two dimensions and follows ``np.matmul``:
the last two axes are multiplied as matrices, the leading (batch) axes
broadcast. Vectors are handled outside the op, by inserting and dropping a
length-1 axis, so that the C backend sees one clean op it can lower to a BLAS
``gemm`` call; transposes in gradient rules stay separate dimshuffles for the
same reason.
"""

import contextlib

import numpy as np

from .. import dtypes as _dt
from ..errors import ShapeError
from ..graph import NOT_DIFFERENTIABLE, Op, TensorType, as_variable, user_trace
from .elemwise import broadcast_static, cast, mul
from .shape import dimshuffle, expand_dims, flatten, squeeze, sum_to

__all__ = ["matmul", "dot", "outer"]


def _dims(shape):
    inner = ", ".join("?" if s is None else str(s) for s in shape)
    return f"({inner}{',' * (len(shape) == 1)})"


def _check_contracted(a_shape, b_shape, opname):
    """ShapeError when the contracted lengths provably differ (shapes as the user gave them)."""
    k_a = a_shape[-1]
    k_b = b_shape[0] if len(b_shape) == 1 else b_shape[-2]
    if k_a is not None and k_b is not None and k_a != k_b:
        axis_b = "0" if len(b_shape) == 1 else "-2"
        raise ShapeError(f"{opname}: shapes {_dims(a_shape)} and {_dims(b_shape)} are not aligned: "
                         f"axis -1 of the first has length {k_a}, axis {axis_b} of the second "
                         f"has length {k_b}")


def _at_line(err):
    """The error with the user's file:line appended, as ``Op.make_node`` does."""
    return type(err)(f"{err} (at {user_trace()})")


def swap_last_two(x):
    """``x`` with its last two axes exchanged (a dimshuffle, so a backend can fold it into gemm)."""
    nd = x.ndim
    return dimshuffle(x, *range(nd - 2), nd - 1, nd - 2)


# --------------------------------------------------------------------------- the op

class MatMul(Op):
    """``np.matmul(a, b)`` for ``a.ndim >= 2`` and ``b.ndim >= 2``, batch axes broadcast.

    The gradient is ``g @ b^T`` and ``a^T @ g`` (transposes of the last two
    axes), each summed back over the batch axes its operand was broadcast
    along. Integer and bool operands are allowed; their gradient is
    ``NOT_DIFFERENTIABLE``.
    """

    name = "matmul"

    def infer(self, a, b):
        for x in (a, b):
            if x.ndim < 2:
                raise ShapeError(f"the op takes operands of at least 2 dimensions, got {x.type}; "
                                 f"sg.matmul handles vectors, use * (multiply) for 0-d values")
        dtype = _dt.result_dtype(np.matmul, [a.dtype, b.dtype], opname=self.name)
        _check_contracted(a.shape, b.shape, self.name)
        batch = broadcast_static([a.shape[:-2], b.shape[:-2]], self.name)
        return [TensorType(dtype, (*batch, a.shape[-2], b.shape[-1]))]

    def perform(self, node, a, b):
        try:
            out = np.matmul(a, b)
        except ValueError:
            raise ShapeError(f"matmul at {node.trace}: shapes {a.shape} and {b.shape} cannot be "
                             f"multiplied (contracted lengths {a.shape[-1]} and {b.shape[-2]}, "
                             f"batch shapes must broadcast)") from None
        # np.matmul returns a fresh array; asarray only fixes the dtype if NumPy differs.
        return [np.asarray(out, dtype=node.outputs[0].dtype)]

    def grad(self, node, inputs, outputs, gouts):
        a, b = inputs
        (g,) = gouts
        ga = _to_input(lambda: MatMul()(g, swap_last_two(b)), a)
        gb = _to_input(lambda: MatMul()(swap_last_two(a), g), b)
        return [ga, gb]

    def c_code(self, ctx, node):
        a, b = node.inputs
        out = node.outputs[0]
        m, k, n, batch = _c_shapes(ctx, node, a, b)
        ctx.alloc(node, out, [f"{batch}[{d}]" for d in range(out.ndim - 2)] + [m, n])
        if _dt.is_float(out.dtype):
            _c_gemm(ctx, node, m, k, n)
        else:
            _c_int_matmul(ctx, node, m, k, n)


def _to_input(make, x):
    """A cotangent for operand ``x``: summed over broadcast batch axes, in ``x``'s dtype."""
    if not _dt.is_float(x.dtype):
        return NOT_DIFFERENTIABLE
    gx = sum_to(make(), x)
    return gx if gx.dtype == x.dtype else cast(gx, x.dtype)


# --------------------------------------------------------------------------- functions

def matmul(a, b):
    """The matrix product ``a @ b`` with NumPy's rules (``np.matmul``).

    A 1-d first operand is a row vector and a 1-d second operand a column
    vector, their extra axis removed from the result; leading axes of N-d
    operands broadcast. 0-d operands are refused (use ``*``).

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> A, v = sg.matrix("A"), sg.vector("v")
    >>> sg.evaluate(A @ v, {A: np.eye(2), v: np.array([1.0, 2.0])})
    array([1., 2.])
    >>> sg.tensor(shape=(5, 2, 3)).__matmul__(sg.tensor(shape=(3, 4))).type
    float64[5, 2, 4]
    """
    a, b = as_variable(a), as_variable(b)
    if a.ndim == 0 or b.ndim == 0:
        raise _at_line(ShapeError(f"matmul: operands must be at least 1-d, got {a.type} and "
                                  f"{b.type}; use * (multiply) for scalars"))
    try:
        _check_contracted(a.shape, b.shape, "matmul")
    except ShapeError as e:
        raise _at_line(e) from None
    a2 = expand_dims(a, 0) if a.ndim == 1 else a
    b2 = expand_dims(b, -1) if b.ndim == 1 else b
    out = MatMul()(a2, b2)
    # Drop the axes the vectors were given, exactly where np.matmul drops them.
    if b.ndim == 1:
        out = squeeze(out, -1)
    if a.ndim == 1:
        out = squeeze(out, -1 if b.ndim == 1 else -2)
    return out


def dot(a, b):
    """``np.dot(a, b)`` where it agrees with a matrix product.

    Supported: 0-d operands (a product, ``a * b``), vectors and matrices on
    both sides (inner, matrix-vector and matrix-matrix products), and an N-d
    ``a`` with a 1-d or 2-d ``b`` (contracting the last axis of ``a``). For
    ``b`` of more than 2 dimensions ``np.dot`` pairs every batch of ``a`` with
    every batch of ``b``; that case raises ``TypeError``: use ``sg.matmul``,
    which broadcasts batch axes instead.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> u, v = sg.vector("u"), sg.vector("v")
    >>> sg.evaluate(sg.dot(u, v), {u: np.array([1.0, 2.0]), v: np.array([3.0, 4.0])})
    array(11.)
    """
    a, b = as_variable(a), as_variable(b)
    if a.ndim == 0 or b.ndim == 0:
        return mul(a, b)
    if b.ndim > 2:
        raise _at_line(TypeError(
            f"dot: {a.ndim}-d . {b.ndim}-d is not supported (np.dot would pair every batch of "
            f"the first operand with every batch of the second); use sg.matmul(a, b) (or a @ b), "
            f"which broadcasts the leading axes, or reshape b to 2-d"))
    try:
        _check_contracted(a.shape, b.shape, "dot")
    except ShapeError as e:
        raise _at_line(e) from None
    return matmul(a, b)


def outer(a, b):
    """The outer product of ``a`` and ``b`` flattened to vectors, as ``np.outer``.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> u, v = sg.vector("u"), sg.vector("v")
    >>> sg.evaluate(sg.outer(u, v), {u: np.array([1.0, 2.0]), v: np.array([3.0])})
    array([[3.],
           [6.]])
    """
    a, b = as_variable(a), as_variable(b)
    a = a if a.ndim == 1 else flatten(a)
    b = b if b.ndim == 1 else flatten(b)
    return mul(expand_dims(a, 1), expand_dims(b, 0))


# --------------------------------------------------------------------------- C lowering
#
# Float products call BLAS gemm once per (broadcast) batch matrix. gemm reads a
# row-major matrix with any leading dimension, or its transpose: an operand
# whose last axis has stride 1 goes in as it is, one whose axis -2 has stride 1
# (a ``.T`` view) goes in with the Trans flag, and only other layouts (stride 0
# or negative, both strides > 1) or another dtype are copied first.

def _c_shapes(ctx, node, a, b):
    """C expressions (M, K, N) and a C array of the broadcast batch shape; mismatches fail."""
    A, B, nb = ctx.arr(a), ctx.arr(b), node.outputs[0].ndim - 2
    m, k = f"{A}.shape[{a.ndim - 2}]", f"{A}.shape[{a.ndim - 1}]"
    k2, n = f"{B}.shape[{b.ndim - 2}]", f"{B}.shape[{b.ndim - 1}]"
    shapes = [f"sg_shape_str(sa, sizeof sa, {A}.shape, {a.ndim})",
              f"sg_shape_str(sb, sizeof sb, {B}.shape, {b.ndim})"]
    with ctx.w.block(f"if ({k} != {k2})"):
        ctx.w("char sa[96], sb[96];")
        ctx.fail(node, "shape", "shapes %s and %s cannot be multiplied (contracted lengths "
                                "%lld and %lld)", *shapes, f"(long long){k}", f"(long long){k2}")
    batch = ctx.tmp("batch")
    ctx.w(f"int64_t {batch}[{max(nb, 1)}];")
    ctx.w(f"for (int d = 0; d < {nb}; d++) {batch}[d] = 1;")
    with ctx.w.block(f"if (sg_broadcast_into({batch}, {nb}, {A}.shape, {a.ndim - 2}) >= 0 || "
                     f"sg_broadcast_into({batch}, {nb}, {B}.shape, {b.ndim - 2}) >= 0)"):
        ctx.w("char sa[96], sb[96];")
        ctx.fail(node, "shape", "shapes %s and %s cannot be multiplied (their batch shapes do "
                                "not broadcast)", *shapes)
    return m, k, n, batch


def _c_operand(ctx, node, v, out):
    """A local sg_arr for operand ``v`` that gemm can read, its Trans flag and leading dim."""
    u, t, ld = ctx.tmp("mat"), ctx.tmp("trans"), ctx.tmp("ld")
    V, nd = ctx.arr(v), v.ndim
    ctx.w(f"sg_arr {u} = {V};")
    ctx.w(f"enum CBLAS_TRANSPOSE {t} = CblasNoTrans; int64_t {ld} = -1;")
    r, c, sr, sc = (ctx.tmp(x) for x in ("rows", "cols", "sr", "sc"))
    ctx.w(f"int64_t {r} = {V}.shape[{nd - 2}], {c} = {V}.shape[{nd - 1}], "
          f"{sr} = {V}.strides[{nd - 2}], {sc} = {V}.strides[{nd - 1}];")
    if v.dtype == out.dtype:
        # The stride of a length-1 axis is never used: pick the one that avoids a copy.
        ctx.w(f"if ({r} <= 1) {sr} = {sc} == 1 ? ({c} > 1 ? {c} : 1) : 1;")
        ctx.w(f"if ({c} <= 1) {sc} = 1;")
        ctx.w(f"if ({sc} == 1 && {sr} >= ({c} > 1 ? {c} : 1) && {sr} <= INT32_MAX) {ld} = {sr};")
        with ctx.w.block(f"else if ({sr} == 1 && {sc} >= ({r} > 1 ? {r} : 1) && "
                         f"{sc} <= INT32_MAX)"):
            ctx.w(f"{t} = CblasTrans; {ld} = {sc};")
    with ctx.w.block(f"if ({ld} < 0)"):
        _c_copy_operand(ctx, node, v, u, ctx.ct(out))
        ctx.w(f"{ld} = {c} > 1 ? {c} : 1;")
    return u, t, ld


def _c_copy_operand(ctx, node, v, u, ct):
    """Make ``u`` a C-contiguous copy of ``v`` in the workspace, converted to ``ct``."""
    V, nd = ctx.arr(v), v.ndim
    ctx.w(f"{u}.data = sg_ws_alloc(ws, (size_t)sg_size(&{V}, {nd}) * sizeof({ct}));")
    with ctx.w.block(f"if (!{u}.data)"):
        ctx.fail(node, "nomem", "out of memory")
    ctx.w(f"sg_contiguous(&{u}, {nd});")
    pos = ctx.tmp("pos")
    ctx.w(f"int64_t {pos} = 0;")
    with ctx.nd_loop(V, nd) as idx:
        ctx.w(f"(({ct} *){u}.data)[{pos}++] = ({ct}){ctx.ptr(v)}[{ctx.offset(v, idx)}];")


def _c_gemm(ctx, node, m, k, n):
    a, b = node.inputs
    out = node.outputs[0]
    C, ct = ctx.arr(out), ctx.ct(out)
    ua, ta, lda = _c_operand(ctx, node, a, out)
    ub, tb, ldb = _c_operand(ctx, node, b, out)
    gemm = "scipy_cblas_dgemm" if ct == "double" else "scipy_cblas_sgemm"

    def call(rows, a_off, b_off, c_off):
        _c_check_int32(ctx, node, rows, k, n)
        ctx.w(f"{gemm}(CblasRowMajor, {ta}, {tb}, (blasint)({rows}), (blasint){n}, (blasint){k}, "
              f"1, ({ct} *){ua}.data + {a_off}, (blasint){lda}, ({ct} *){ub}.data + {b_off}, "
              f"(blasint){ldb}, 0, ({ct} *){C}.data + {c_off}, (blasint){n});")

    def per_batch():
        with _c_batches(ctx, out, [(ua, a), (ub, b)]) as ((oa, ob), pos):
            call(m, oa, ob, f"{pos} * {m} * {n}")

    with ctx.w.block(f"if ({k} == 0)"):
        ctx.w(f"memset({C}.data, 0, (size_t)sg_size(&{C}, {out.ndim}) * sizeof({ct}));")
    with ctx.w.block(f"else if ({m} > 0 && {n} > 0)"):
        if not (b.ndim == 2 and a.ndim > 2):
            per_batch()
            return
        # A contiguous stack of matrices times one matrix is one tall product.
        with ctx.w.block(f"if ({ta} == CblasNoTrans && sg_is_contiguous(&{ua}, {a.ndim}))"):
            call(f"sg_size(&{ua}, {a.ndim}) / {k}", "0", "0", "0")
        with ctx.w.block("else"):
            per_batch()


def _c_check_int32(ctx, node, m, k, n):
    with ctx.w.block(f"if (({m}) > INT32_MAX || ({k}) > INT32_MAX || ({n}) > INT32_MAX)"):
        ctx.fail(node, "shape", "a product of %lld x %lld and %lld x %lld matrices exceeds the "
                                "32-bit sizes of BLAS", f"(long long)({m})", f"(long long)({k})",
                 f"(long long)({k})", f"(long long)({n})")


@contextlib.contextmanager
def _c_batches(ctx, out, operands):
    """Loops over the result's batch of matrices; yields the element offset of each operand's
    matrix (``operands``: (sg_arr name, variable) pairs) and the batch number."""
    C, nb = ctx.arr(out), out.ndim - 2
    strides = []
    for arr, v in operands:
        st = ctx.tmp("bst")
        ctx.w(f"int64_t {st}[{max(nb, 1)}];")
        ctx.w(f"sg_broadcast_strides({st}, &{arr}, {v.ndim - 2}, {C}.shape, {nb});")
        strides.append(st)
    pos = ctx.tmp("nth")
    ctx.w(f"int64_t {pos} = 0;")
    with ctx.nd_loop(C, nb) as idx:
        yield [" + ".join(f"{i} * {st}[{d}]" for d, i in enumerate(idx)) or "0"
               for st in strides], pos
        ctx.w(f"{pos}++;")


def _c_int_matmul(ctx, node, m, k, n):
    """Integer and bool products in NumPy's dtype (BLAS has none): wrapping sums of products,
    or for bool a logical or of ands."""
    a, b = node.inputs
    out = node.outputs[0]
    A, B, ct = ctx.arr(a), ctx.arr(b), ctx.ct(out)
    i, j, kk = ctx.tmp("i"), ctx.tmp("j"), ctx.tmp("k")
    with _c_batches(ctx, out, [(A, a), (B, b)]) as ((oa, ob), pos):
        with ctx.w.block(f"for (int64_t {i} = 0; {i} < {m}; {i}++)"), \
                ctx.w.block(f"for (int64_t {j} = 0; {j} < {n}; {j}++)"):
            x = (f"{ctx.ptr(a)}[{oa} + {i} * {A}.strides[{a.ndim - 2}] + "
                 f"{kk} * {A}.strides[{a.ndim - 1}]]")
            y = (f"{ctx.ptr(b)}[{ob} + {kk} * {B}.strides[{b.ndim - 2}] + "
                 f"{j} * {B}.strides[{b.ndim - 1}]]")
            ctx.w("uint64_t acc = 0;")
            with ctx.w.block(f"for (int64_t {kk} = 0; {kk} < {k}; {kk}++)"):
                if ct == "uint8_t":
                    ctx.w(f"if ({x} && {y}) {{ acc = 1; break; }}")
                else:
                    ctx.w(f"acc += (uint64_t)({ct}){x} * (uint64_t)({ct}){y};")
            ctx.w(f"{ctx.ptr(out)}[({pos} * {m} + {i}) * {n} + {j}] = ({ct})acc;")
