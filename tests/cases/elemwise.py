"""Rows for the elementwise table, cast, stop_gradient and the shape ops."""

import math

import numpy as np

import symgrad as sg
from symgrad.ops.shape import shape_at, sum_to

from . import Arg, Case

A = Arg  # short alias for the table below


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _libm(fn):
    """fn of the math module in double, rounded to float32 for a float32 x (NumPy has no erf)."""
    def ref(x):
        out = np.vectorize(fn, otypes=[np.float64])(x.astype(np.float64))
        return out.astype(x.dtype if x.dtype == np.float32 else np.float64)
    return ref


# (op, symgrad function, NumPy reference, value range kwargs)
UNARY = [
    ("neg", lambda x: -x, np.negative, {}),
    ("abs", abs, np.abs, {"away_from": 0.0}),
    ("sign", sg.sign, np.sign, {"away_from": 0.0}),
    ("exp", sg.exp, np.exp, {}),
    ("log", sg.log, np.log, {"low": 0.1, "high": 3.0}),
    ("log1p", sg.log1p, np.log1p, {"low": -0.5, "high": 3.0}),
    ("expm1", sg.expm1, np.expm1, {}),
    ("sqrt", sg.sqrt, np.sqrt, {"low": 0.1, "high": 3.0}),
    ("square", sg.square, np.square, {}),
    ("tanh", sg.tanh, np.tanh, {}),
    ("sigmoid", sg.sigmoid, _sigmoid, {}),
    ("softplus", sg.softplus, lambda x: np.log1p(np.exp(x)), {}),
    ("relu", sg.relu, lambda x: np.where(x > 0, x, 0.0).astype(x.dtype), {"away_from": 0.0}),
    ("sin", sg.sin, np.sin, {}),
    ("erf", sg.erf, _libm(math.erf), {}),
    ("erfc", sg.erfc, _libm(math.erfc), {}),
    ("cos", sg.cos, np.cos, {}),
    ("floor", sg.floor, np.floor, {"away_from": 0.0}),
    ("ceil", sg.ceil, np.ceil, {"away_from": 0.0}),
    ("round", sg.round, np.round, {"away_from": 0.5}),
]

BINARY = [
    ("add", lambda x, y: x + y, np.add, {}, {}),
    ("sub", lambda x, y: x - y, np.subtract, {}, {}),
    ("mul", lambda x, y: x * y, np.multiply, {}, {}),
    ("truediv", lambda x, y: x / y, np.true_divide, {}, {"low": 0.5, "high": 2.0}),
    ("floordiv", lambda x, y: x // y, np.floor_divide, {}, {"low": 0.5, "high": 2.0}),
    ("mod", lambda x, y: x % y, np.mod, {}, {"low": 0.5, "high": 2.0}),
    ("pow", lambda x, y: x ** y, np.power, {"low": 0.5, "high": 2.0}, {}),
    ("maximum", sg.maximum, np.maximum, {}, {}),
    ("minimum", sg.minimum, np.minimum, {}, {}),
]

COMPARE = [("lt", lambda x, y: x < y, np.less), ("le", lambda x, y: x <= y, np.less_equal),
           ("gt", lambda x, y: x > y, np.greater), ("ge", lambda x, y: x >= y, np.greater_equal),
           ("eq", sg.eq, np.equal), ("neq", sg.neq, np.not_equal)]

CASES = []
for name, fn, ref, kw in UNARY:
    CASES += [
        Case(name, fn, ref, [A((3, 4), **kw)]),
        Case(name, fn, ref, [A((5,), static=True, **kw)], id=f"{name}[static]"),
        Case(name, fn, ref, [A((2, 3), dtype="float32", **kw)], rtol=1e-5, atol=1e-6,
             id=f"{name}[float32]"),
        Case(name, fn, ref, [A((), **kw)], id=f"{name}[0-d]"),
    ]
for name in ("neg", "abs", "square", "sign", "relu"):
    fn, ref = next((f, r) for n, f, r, _ in UNARY if n == name)
    CASES.append(Case(name, fn, ref, [A((4,), dtype="int32", low=-5, high=5)], grad=False,
                      id=f"{name}[int32]"))
CASES.append(Case("exp", sg.exp, np.exp, [A((4,), dtype="int64", low=-3, high=3)], grad=False,
                  id="exp[int64->float64]"))
CASES.append(Case("erf", sg.erf, _libm(math.erf), [A((4,), dtype="int32", low=-3, high=3)], grad=False,
                  id="erf[int32->float64]"))
CASES.append(Case("isnan", sg.isnan, np.isnan,
                  [A(value=[1.0, np.nan, -np.inf, 0.0], shape=(4,))], grad=False))

for name, fn, ref, kx, ky in BINARY:
    CASES += [
        Case(name, fn, ref, [A((3, 4), **kx), A((3, 4), **ky)]),
        Case(name, fn, ref, [A((3, 4), **kx), A((4,), **ky)], id=f"{name}[bcast-row]"),
        Case(name, fn, ref, [A((3, 1), **kx), A((1, 4), **ky)], id=f"{name}[bcast-outer]"),
        Case(name, fn, ref, [A((2, 3), static=True, **kx), A((), **ky)], id=f"{name}[scalar]"),
        Case(name, fn, ref, [A((2, 3), dtype="float32", **kx), A((3,), dtype="float32", **ky)],
             rtol=1e-5, atol=1e-6, id=f"{name}[float32]"),
    ]
for name in ("add", "sub", "mul", "floordiv", "mod", "maximum"):
    fn, ref = next((f, r) for n, f, r, *_ in BINARY if n == name)
    CASES.append(Case(name, fn, ref, [A((3,), dtype="int32", low=1, high=9),
                                      A((2, 3), dtype="int64", low=1, high=9)],
                      grad=False, id=f"{name}[int]"))
CASES += [
    Case("truediv", lambda x, y: x / y, np.true_divide,
         [A((3,), dtype="int32", low=1, high=9), A((3,), dtype="int32", low=1, high=9)],
         grad=False, id="truediv[int->float64]"),
    Case("add", lambda x: x + 2.5, lambda x: x + 2.5, [A((3,), dtype="float32")],
         rtol=1e-6, id="add[weak-scalar-float32]"),
    Case("mul", lambda x, y: x * y, np.multiply, [A((3,)), A((3,), dtype="int32", low=-3, high=3)],
         id="mul[float-int]"),
]
for name, fn, ref in COMPARE:
    CASES += [Case(name, fn, ref, [A((3, 4)), A((4,))], grad=False),
              Case(name, fn, ref, [A((3,), dtype="int32", low=-2, high=2),
                                   A((3,), dtype="int32", low=-2, high=2)], grad=False,
                   id=f"{name}[int]")]

CASES += [
    Case("where", sg.where, np.where, [A((3, 4), dtype="bool"), A((3, 4)), A((3, 4))]),
    Case("where", sg.where, np.where, [A((3, 1), dtype="bool"), A((4,)), A(())],
         id="where[bcast]"),
    Case("where", lambda c, x: sg.where(c, x, 0), lambda c, x: np.where(c, x, 0.0),
         [A((5,), dtype="bool"), A((5,), dtype="float32")], rtol=1e-6, id="where[weak-zero]"),
    Case("cast", lambda x: x.astype("float32"), lambda x: x.astype("float32"), [A((3, 2))],
         rtol=1e-6, grad_tol={"abs_tol": 1e-3, "rel_tol": 1e-3, "eps": 1e-3}),
    Case("cast", lambda x: x.astype("int32"), lambda x: x.astype("int32"), [A((4,), low=-9, high=9)],
         grad=False, id="cast[float->int]"),
    Case("cast", lambda x: x.astype("float64"), lambda x: x.astype("float64"),
         [A((4,), dtype="bool")], grad=False, id="cast[bool->float]"),
    Case("stop_gradient", lambda x, y: sg.stop_gradient(x) * y, lambda x, y: x * y,
         [A((3,), grad=False), A((3,))]),
    Case("maximum", lambda x: sg.clip(x, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5),
         [A((6,), away_from=0.5)], id="clip"),
]

# ---------------------------------------------------------------- shape ops

CASES += [
    Case("shape", lambda x: sg.shape(x), lambda x: np.array(x.shape), [A((3, 4))], grad=False),
    Case("shape_at", lambda x: shape_at(x, 1) * x,
         lambda x: x.shape[1] * x, [A((2, 5))]),
    Case("make_vector", lambda x: sg.reshape(x, (shape_at(x, 1), 2)),
         lambda x: x.reshape(x.shape[1], 2), [A((2, 3))], id="make_vector[reshape]"),
    Case("dimshuffle", lambda x: x.T, lambda x: x.T, [A((3, 4))], id="dimshuffle[T]"),
    Case("dimshuffle", lambda x: x.transpose(2, 0, 1), lambda x: x.transpose(2, 0, 1),
         [A((2, 3, 4))], id="dimshuffle[perm]"),
    Case("dimshuffle", lambda x: sg.expand_dims(x, (0, 2)), lambda x: np.expand_dims(x, (0, 2)),
         [A((3, 4))], id="dimshuffle[expand]"),
    Case("dimshuffle", lambda x: sg.squeeze(x, 1), lambda x: np.squeeze(x, 1),
         [A((3, 1, 4))], id="dimshuffle[squeeze]"),
    Case("broadcast_to", lambda x: sg.broadcast_to(x, (2, 3, 4)),
         lambda x: np.broadcast_to(x, (2, 3, 4)).copy(), [A((3, 1))]),
    Case("broadcast_to", lambda x, y: sg.broadcast_to(x, sg.shape(y)) * y,
         lambda x, y: x * y, [A((4,)), A((3, 4))], id="broadcast_to[symbolic]"),
    Case("sum_to", lambda g, x: sum_to(g, x) * x,
         lambda g, x: g.sum(axis=0, keepdims=False).sum(axis=0, keepdims=True) * x,
         [A((2, 3, 4)), A((1, 4))]),
    Case("reshape", lambda x: x.reshape((4, -1)), lambda x: x.reshape(4, -1), [A((2, 3, 2))]),
    Case("reshape", lambda x: x.flatten(), lambda x: x.flatten(), [A((2, 3), static=True)],
         id="reshape[flatten-static]"),
    Case("broadcast_to", lambda x: sg.zeros_like(x) + sg.ones((3,)) * x,
         lambda x: np.zeros_like(x) + np.ones(3) * x, [A((2, 3))], id="zeros_ones"),
]
