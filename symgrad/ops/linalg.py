"""Matrix products: one op, :class:`MatMul`, and the NumPy-style functions built on it.

``MatMul`` takes operands of at least two dimensions and follows ``np.matmul``:
the last two axes are multiplied as matrices, the leading (batch) axes
broadcast. Vectors are handled outside the op, by inserting and dropping a
length-1 axis, so that the C backend sees one clean op it can lower to a BLAS
``gemm`` call; transposes in gradient rules stay separate dimshuffles for the
same reason.
"""

import math

import numpy as np

from .. import dtypes as _dt
from ..errors import ShapeError
from ..graph import NOT_DIFFERENTIABLE, Op, TensorType, as_variable, user_trace
from ..codegen.ir import (Alloc, Arr, Array, At, Call, Declare, FnPtr, Int, ItemSize, Local,
                          Workspace)
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

    def flops(self, node, in_shapes, out_shapes):
        """A multiply-add per term: 2 x (result elements) x (contracted length)."""
        return 2 * math.prod(out_shapes[0]) * in_shapes[0][-1]

    def infer(self, a, b):
        for x in (a, b):
            if x.ndim < 2:
                raise ShapeError(f"the op takes operands of at least 2 dimensions, got {x.type}; "
                                 f"sg.matmul handles vectors, use * (multiply) for 0-d values")
        dtype = _dt.result_dtype(np.matmul, [a.dtype, b.dtype], opname=self.name)
        _check_contracted(a.type.shape, b.type.shape, self.name)
        batch = broadcast_static([a.type.shape[:-2], b.type.shape[:-2]], self.name)
        return [TensorType(dtype, (*batch, a.type.shape[-2], b.type.shape[-1]))]

    def perform(self, node, a, b):
        try:
            out = np.matmul(a, b)
        except ValueError:
            sa, sb = as_written(node, a.shape, b.shape)
            why = (f"contracted lengths {a.shape[-1]} and {b.shape[-2]}"
                   if a.shape[-1] != b.shape[-2] else "their batch shapes do not broadcast")
            raise ShapeError(f"{user_op(node)} at {node.trace}: shapes {sa} and {sb} cannot be "
                             f"multiplied ({why})") from None
        # np.matmul returns a fresh array; asarray only fixes the dtype if NumPy differs.
        return [np.asarray(out, dtype=node.outputs[0].dtype)]

    def grad(self, node, inputs, outputs, gouts):
        a, b = inputs
        (g,) = gouts
        ga = _to_input(lambda: MatMul()(g, swap_last_two(b)), a)
        gb = _to_input(lambda: MatMul()(swap_last_two(a), g), b)
        return [ga, gb]

    def row_inputs(self, node):
        """A matrix's rows times ``b``; batched products go batch by batch."""
        a, b = node.inputs
        if a.ndim == 2:
            return (0,)
        nd = node.outputs[0].ndim
        return tuple(k for k, x in enumerate((a, b)) if x.ndim == nd and x.type.shape[0] != 1)

    def lower(self, node):
        return _matmul(node)


# A product the user wrote names itself in errors as written: the function (``matmul`` for
# ``@``, or ``dot``) in the node's ``tag.user_op``, and which operands were vectors (made a
# row / a column for the MatMul op) in ``tag.product_vectors``: bit 1 the first, bit 2 the
# second. The gemm rewrite carries both onto the gemm it makes.

def user_op(node):
    """The function a product's errors name: ``matmul`` (also ``@``) or ``dot``."""
    return getattr(node.tag, "user_op", None) or "matmul"


def as_written(node, a_shape, b_shape):
    """The operands' runtime shapes as the user gave them: a vector without its added axis."""
    vec = getattr(node.tag, "product_vectors", 0)
    a_shape, b_shape = tuple(a_shape), tuple(b_shape)
    if vec & 1:
        a_shape = a_shape[:-2] + a_shape[-1:]
    if vec & 2:
        b_shape = b_shape[:-1]
    return a_shape, b_shape


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
    return _product(a, b, "matmul")


def _product(a, b, opname):
    """``a @ b`` for :func:`matmul` and :func:`dot`, whose name (``opname``) its errors give."""
    a, b = as_variable(a), as_variable(b)
    if a.ndim == 0 or b.ndim == 0:
        raise _at_line(ShapeError(f"{opname}: operands must be at least 1-d, got {a.type} and "
                                  f"{b.type}; use * (multiply) for scalars"))
    try:
        _check_contracted(a.type.shape, b.type.shape, opname)
    except ShapeError as e:
        raise _at_line(e) from None
    a2 = expand_dims(a, 0) if a.ndim == 1 else a
    b2 = expand_dims(b, -1) if b.ndim == 1 else b
    out = MatMul()(a2, b2)
    vec = (a.ndim == 1) | (b.ndim == 1) << 1
    if vec:
        out.owner.tag.product_vectors = vec
    if opname != "matmul":
        out.owner.tag.user_op = opname
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
    return _product(a, b, "dot")


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


# --------------------------------------------------------------------------- lowering
#
# The product is sg_matmul_<dtype> of sg_ops.h: BLAS gemm once per (broadcast)
# batch matrix for floats, with transposed views folded into gemm's Trans
# flags, and wrapping integer sums (BLAS has none) for ints and bools. An
# operand of another dtype is first converted into a C-contiguous copy here.

def _matmul(node):
    a, b = node.inputs
    out = node.outputs[0]
    shape = Local("shape", length=out.ndim)
    body = [Array(shape),
            Call("sg_matmul_shape", [Arr(a), Int(a.ndim), Arr(b), Int(b.ndim), shape,
                                     Int(out.ndim),
                                     Int(getattr(node.tag, "product_vectors", 0))]),
            Alloc(out, [At(shape, d) for d in range(out.ndim)])]
    ua, ub = (_in_dtype(body, v, out) for v in (a, b))
    # BLAS runs for floats; integers have no BLAS routine (wrapping sums in the library)
    blas = {"float32": ("sgemm",), "float64": ("dgemm",)}.get(out.dtype, ())
    body.append(Call("sg_matmul", [Workspace(), Arr(out), Int(out.ndim), Arr(ua), Int(a.ndim),
                                   Arr(ub), Int(b.ndim)], dtypes=(out.dtype,), blas=blas))
    return body


def _in_dtype(body, v, out):
    """Operand ``v``, or a C-contiguous copy converted to ``out``'s dtype (its statements
    appended to ``body``)."""
    if v.dtype == out.dtype:
        return v
    u = Local("mat", "arr", ndim=v.ndim, elem=out.dtype)
    body += [Declare(u),
             Call("sg_cast_copy", [Workspace(), Arr(u), Arr(v), Int(v.ndim), ItemSize(out.dtype),
                                   FnPtr("sg_cast", (out.dtype, v.dtype))])]
    return u
