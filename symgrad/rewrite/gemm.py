"""Matrix products into BLAS gemm: transposes, scales and accumulations absorbed.

* ``matmul(x.T, y)`` (a 2-d transpose feeding a product) -> ``gemm{a.T}(x, y)``;
* ``s * (x @ y)``, ``-(x @ y)`` (``s`` a constant) -> ``gemm{alpha=s}(x, y)``;
* ``x @ y + c``, ``c - s * (x @ y)``, ``t * c + x @ y`` -> ``gemm{alpha, beta}(x, y, c)``:
  a bias add, an SGD step ``W - lr * (h.T @ g)``.

A product or scale is absorbed only where nothing else uses it (else it would
be computed twice). Values: the reference computes ``alpha * p`` then adds
``beta * c``, bit for bit the graph it replaces; compiled, BLAS accumulates
into ``c``, which may differ in the last bits (see :mod:`symgrad.ops.gemm`).
"""

import math

from ..ops.gemm import Gemm
from .engine import RuleSet, scalar_value

__all__ = ["GEMM"]

GEMM = RuleSet("gemm")

_FLOATS = ("float32", "float64")


class _Product:
    """``alpha * op(x) @ op(y)`` found in a graph, and the line of the product.

    ``name`` and ``grad_of`` are the product's own (say ``d(loss)/d(W)``, made
    by matmul's gradient rule): a gemm that absorbs a gradient into an update
    keeps them in its tag for printing (``product_name``, ``product_grad_of``).
    """

    def __init__(self, alpha, ta, tb, x, y, trace, node=None, var=None):
        self.alpha, self.ta, self.tb, self.x, self.y, self.trace = alpha, ta, tb, x, y, trace
        tag = node.tag if node is not None else None
        self.name = getattr(tag, "product_name", None) or (var.name if var is not None else None)
        self.grad_of = getattr(tag, "product_grad_of", None) or (
            node.grad_of if node is not None else None)
        # what its errors name: the user's dot, a vector operand (ops/linalg.py)
        self.user_op = getattr(tag, "user_op", None)
        self.vectors = getattr(tag, "product_vectors", 0)


def _untransposed(v):
    """(x, True) when ``v`` is the 2-d transpose ``x.T``, else (v, False)."""
    n = v.owner
    if n is not None and n.op.name == "dimshuffle" and tuple(n.op.order) == (1, 0):
        return n.inputs[0], True
    return v, False


def _scale(v):
    """The value of a constant scale: one element, not stretching anything (0-d), finite."""
    if v.ndim != 0:
        return None
    s = scalar_value(v)
    if s is None or isinstance(s, bool) or not math.isfinite(s) or s == 0:
        return None
    return float(s)


def _product(v, sweep, outer=True):
    """The product ``v`` is (a matmul, gemm without c, scaled or negated), used only once."""
    n = v.owner
    if n is None or v.dtype not in _FLOATS or v.ndim != 2:
        return None
    if outer and sweep.n_uses(v) != 1:
        return None
    name = n.op.name
    if name == "matmul":
        a, b = n.inputs
        if a.ndim != 2 or b.ndim != 2 or a.dtype != v.dtype or b.dtype != v.dtype:
            return None
        (x, ta), (y, tb) = _untransposed(a), _untransposed(b)
        return _Product(1.0, ta, tb, x, y, getattr(n.tag, "product_trace", n.trace), n, v)
    if name == "gemm" and len(n.inputs) == 2:
        return _Product(n.op.alpha, n.op.trans_a, n.op.trans_b, *n.inputs,
                        getattr(n.tag, "product_trace", n.trace), n, v)
    if name == "neg":   # -(alpha * p) rounds as (-alpha) * p: exact
        p = _product(n.inputs[0], sweep)
        if p is not None:
            p.alpha = -p.alpha
        return p
    if name == "mul":
        for pv, sv in (n.inputs, n.inputs[::-1]):
            s = _scale(sv)
            p = _product(pv, sweep) if s is not None else None
            # only onto an unscaled product: s * (alpha * p) would round twice
            if p is not None and abs(p.alpha) == 1 and sv.dtype == v.dtype:
                p.alpha *= s
                return p
    return None


def _gemm(p, c=None, beta=1.0):
    ins = (p.x, p.y) if c is None else (p.x, p.y, c)
    out = Gemm(p.ta, p.tb, p.alpha, beta)(*ins)
    out.owner.tag.product_trace = p.trace
    if p.name:
        out.owner.tag.product_name = p.name
    if p.grad_of is not None:
        out.owner.tag.product_grad_of = p.grad_of
    if p.user_op:
        out.owner.tag.user_op = p.user_op
    if p.vectors:
        out.owner.tag.product_vectors = p.vectors
    return out


@GEMM("matmul")
def transposes_into_gemm(node, sweep):
    p = _product(node.outputs[0], sweep, outer=False)
    if p is None or not (p.ta or p.tb):
        return None
    return _gemm(p)


@GEMM("mul", "neg")
def scale_into_gemm(node, sweep):
    p = _product(node.outputs[0], sweep, outer=False)
    return None if p is None else _gemm(p)


def _accumulated(c, sweep, sign):
    """(c0, beta) for ``sign * c`` where ``c`` may be ``t * c0`` with a constant ``t``."""
    n = c.owner
    if n is not None and n.op.name == "mul" and sweep.n_uses(c) == 1:
        for cv, tv in (n.inputs, n.inputs[::-1]):
            t = _scale(tv)
            if t is not None and cv.dtype == c.dtype and cv.ndim <= 2:
                return cv, sign * t
    if n is not None and n.op.name == "neg" and sweep.n_uses(c) == 1:
        return n.inputs[0], -sign
    return c, float(sign)


@GEMM("add", "sub")
def accumulate_into_gemm(node, sweep):
    a, b = node.inputs
    out = node.outputs[0]
    if out.dtype not in _FLOATS or out.ndim != 2:
        return None
    # (product side, other side, sign of the product, sign of the other)
    if node.op.name == "add":
        cases = [(a, b, 1, 1), (b, a, 1, 1)]
    else:
        cases = [(b, a, -1, 1), (a, b, 1, -1)]
    for pv, cv, sp, sc in cases:
        if cv.dtype != out.dtype or pv.dtype != out.dtype or cv.ndim > 2:
            continue
        p = _product(pv, sweep)
        if p is None:
            continue
        p.alpha *= sp
        c, beta = _accumulated(cv, sweep, sc)
        out = _gemm(p, c, beta)
        out.owner.tag.accumulate_name = node.op.name  # errors name the user's + or -
        return out
    return None
