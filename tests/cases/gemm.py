"""Rows for ``gemm``: ``alpha * op(a) @ op(b) + beta * c``, made by the rewrites from products."""

from symgrad.ops.gemm import Gemm

from . import Arg as A
from . import Case

F32 = {"rtol": 1e-5, "atol": 1e-5}


def _gemm(ta, tb, alpha, beta):
    def build(a, b, c=None):
        op = Gemm(ta, tb, alpha, beta)
        return op(a, b) if c is None else op(a, b, c)

    def ref(a, b, c=None):
        p = (a.T if ta else a) @ (b.T if tb else b)
        return alpha * p if c is None else alpha * p + beta * c

    return build, ref


def _case(ta, tb, alpha, beta, shapes, name, **kw):
    build, ref = _gemm(ta, tb, alpha, beta)
    arg = kw.pop("arg", {})
    return Case("gemm", build, ref, [A(s, **arg) for s in shapes], id=f"gemm[{name}]", **kw)


CASES = [
    _case(False, False, 1.0, 1.0, [(3, 4), (4, 5)], "plain"),
    _case(True, False, 1.0, 1.0, [(4, 3), (4, 5)], "a.T"),
    _case(False, True, -0.5, 1.0, [(3, 4), (5, 4)], "b.T-alpha"),
    _case(True, True, 2.0, 1.0, [(4, 3), (5, 4)], "a.T-b.T"),
    _case(False, False, 1.0, 1.0, [(3, 4), (4, 5), (5,)], "bias"),
    _case(False, False, 1.0, 1.0, [(3, 4), (4, 5), (3, 5)], "matrix-c"),
    _case(True, False, -0.25, 1.0, [(4, 3), (4, 5), (3, 5)], "sgd-step"),
    _case(False, True, 1.5, -2.0, [(3, 4), (5, 4), (3, 1)], "column-c-beta"),
    _case(False, False, 1.0, 1.0, [(3, 4), (4, 5), ()], "scalar-c"),
    # c stretches a product of one row: the result is larger than the product
    _case(False, False, 1.0, 1.0, [(1, 4), (4, 5), (3, 5)], "c-stretches"),
    _case(False, False, 1.0, 1.0, [(3, 0), (0, 5), (3, 5)], "empty-k"),
    _case(False, False, 1.0, 1.0, [(3, 4), (4, 5), (5,)], "float32",
          arg={"dtype": "float32"}, **F32),
    _case(True, False, 3.0, 0.5, [(4, 3), (4, 2), (3, 2)], "float32-scaled",
          arg={"dtype": "float32"}, **F32),
]
