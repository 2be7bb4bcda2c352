"""``gemm``: a matrix product with transposes, a scale and an accumulation, as BLAS has it.

``Gemm(trans_a, trans_b, alpha, beta)(a, b[, c])`` is
``alpha * (op(a) @ op(b)) + beta * c`` for 2-d float operands of one dtype,
where ``op(x)`` is ``x.T`` when its flag is set; ``c`` broadcasts with the
product as in NumPy. Users do not write it: the rewrite pipeline makes it
from ``x @ W + b``, ``W - lr * (h.T @ g)`` and transposes feeding a product
(:mod:`symgrad.rewrite.gemm`), so one BLAS call does all of it.

The NumPy reference computes ``alpha * p`` and ``beta * c`` only when they
are not 1, then adds: bit for bit what the unfused graph computes in mode
"py". Compiled, BLAS accumulates into ``c`` and may round differently in the
last bits, as any two BLAS products may.
"""

import math

import numpy as np

from .. import dtypes as _dt
from ..errors import ShapeError
from ..graph import Constant, Op, TensorType
from ..codegen.ir import BlasCall
from .elemwise import Elemwise, broadcast_static
from .linalg import as_written, user_op
from .shape import MakeVector, ShapeAt, SumTo, shape

__all__ = ["Gemm"]


class Gemm(Op):
    """``alpha * (op(a) @ op(b)) + beta * c`` (``c`` optional), one BLAS gemm call.

    Gradient: ``alpha * g @ op(b).T`` and ``alpha * op(a).T @ g``, transposed
    back to the operands' layouts (as gemms), and ``beta * sum_to(g, c)``.
    """

    __props__ = ("trans_a", "trans_b", "alpha", "beta")
    name = "gemm"

    def flops(self, node, in_shapes, out_shapes):
        """A multiply-add per term of the product, and two more per element with ``c``."""
        a, out = in_shapes[0], math.prod(out_shapes[0])
        k = a[0] if self.trans_a else a[1]
        return 2 * out * k + (2 * out if len(in_shapes) == 3 else 0)

    def __init__(self, trans_a=False, trans_b=False, alpha=1.0, beta=1.0):
        self.trans_a, self.trans_b = bool(trans_a), bool(trans_b)
        self.alpha, self.beta = float(alpha), float(beta)

    def __str__(self):
        parts = [f"alpha={self.alpha:g}"] + [f"beta={self.beta:g}"] * (self.beta != 1)
        parts += [t for t, on in (("a.T", self.trans_a), ("b.T", self.trans_b)) if on]
        return f"gemm{{{', '.join(parts)}}}"

    __repr__ = __str__

    # Users never write gemm: its errors name what they wrote, at their line.
    @staticmethod
    def product_label(node):
        """The operation a failure of the product names: the user's ``@`` / ``matmul`` (or
        ``dot``: ``tag.user_op``)."""
        return user_op(node)

    @staticmethod
    def accumulate_label(node):
        """The operation a failure to add the accumulated term names: the user's ``+`` or
        ``-`` (``tag.accumulate_name``, set by the rewrite) around the product."""
        name = getattr(node.tag, "accumulate_name", None)
        return name if name in ("add", "sub") else user_op(node)

    def _mats(self, a_shape, b_shape):
        a = tuple(a_shape[::-1]) if self.trans_a else tuple(a_shape)
        b = tuple(b_shape[::-1]) if self.trans_b else tuple(b_shape)
        return a, b

    def infer(self, a, b, c=None):
        for v in (a, b):
            if v.ndim != 2:
                raise ShapeError(f"takes 2-d operands, got {v.type}")
        dtypes = {v.dtype for v in (a, b) + (() if c is None else (c,))}
        if len(dtypes) != 1 or not _dt.is_float(a.dtype):
            raise TypeError(f"takes float operands of one dtype, got "
                            f"{', '.join(str(v.type) for v in (a, b, c) if v is not None)}")
        sa, sb = self._mats(a.type.shape, b.type.shape)
        if None not in (sa[1], sb[0]) and sa[1] != sb[0]:
            raise ShapeError(f"the product of {sa} and {sb} is not defined (contracted lengths "
                             f"{sa[1]} and {sb[0]})")
        prod = (sa[0], sb[1])
        if c is None:
            return [TensorType(a.dtype, prod)]
        if c.ndim > 2:
            raise ShapeError(f"the accumulated term has at most 2 dimensions, got {c.type}")
        return [TensorType(a.dtype, broadcast_static([prod, c.type.shape], self.name))]

    def perform(self, node, a, b, c=None):
        A = a.T if self.trans_a else a
        B = b.T if self.trans_b else b
        dtype = node.outputs[0].dtype
        trace = getattr(node.tag, "product_trace", node.trace)
        if A.shape[1] != B.shape[0]:
            sa, sb = as_written(node, A.shape, B.shape)
            raise ShapeError(f"{self.product_label(node)} at {trace}: shapes {sa} and {sb} "
                             f"cannot be multiplied (contracted lengths {A.shape[1]} and "
                             f"{B.shape[0]})")
        with np.errstate(all="ignore"):
            out = np.matmul(A, B).astype(dtype, copy=False)
            if self.alpha != 1:
                out = out * np.asarray(self.alpha, dtype=dtype)
            if c is not None:
                cc = c if self.beta == 1 else c * np.asarray(self.beta, dtype=dtype)
                try:
                    out = out + cc
                except ValueError:
                    raise ShapeError(f"{self.accumulate_label(node)} at {node.trace}: shapes "
                                     f"{out.shape} and {c.shape} "
                                     f"cannot be broadcast together") from None
        return [np.array(out, dtype=dtype)]

    def grad(self, node, inputs, outputs, gouts):
        a, b = inputs[:2]
        (g,) = gouts
        al, ta, tb = self.alpha, self.trans_a, self.trans_b
        gp = g
        if len(inputs) == 3:  # the product's cotangent: g summed over what c stretched
            m = ShapeAt(1 if ta else 0)(a)
            n = ShapeAt(0 if tb else 1)(b)
            gp = SumTo()(g, MakeVector()(m, n))
        # d/d op(a) = alpha * gp @ op(b).T, d/d op(b) = alpha * op(a).T @ gp
        ga = Gemm(tb, True, al)(b, gp) if ta else Gemm(False, not tb, al)(gp, b)
        gb = Gemm(True, ta, al)(gp, a) if tb else Gemm(not ta, False, al)(a, gp)
        result = [ga, gb]
        if len(inputs) == 3:
            c = inputs[2]
            gc = SumTo()(g, shape(c))
            if self.beta != 1:
                gc = Elemwise("mul")(gc, Constant(np.asarray(self.beta, dtype=c.dtype)))
            result.append(gc)
        return result

    def lower(self, node):
        """The product as one step of the loop IR: a BLAS gemm (``codegen.ir.BlasCall``).

        The C renderer checks the contracted lengths, gives BLAS each operand
        as it is, as a transposed view or as a copy (a flag set on the op and a
        ``.T`` layout in memory both end up as BLAS's Trans flag) and, with
        ``c``, lets BLAS add ``alpha * op(a) @ op(b)`` into ``beta * c``.
        """
        a, b, *c = node.inputs
        return BlasCall(0, node, [node], a=a, b=b, c=c[0] if c else None,
                        trans_a=self.trans_a, trans_b=self.trans_b, alpha=self.alpha,
                        beta=self.beta)
