"""Rows for the reductions: sum, mean, prod, max, min, argmax, argmin, logsumexp (var, std)."""

import numpy as np

import symgrad as sg

from . import Arg as A
from . import Case

F32 = {"rtol": 1e-5, "atol": 1e-6}


def _np_logsumexp(x, axis=None, keepdims=False):
    if x.dtype.kind in "iu":
        x = x.astype(np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


# op name -> (symgrad function, NumPy reference)
FUNCS = {
    "sum": (sg.sum, np.sum), "mean": (sg.mean, np.mean), "prod": (sg.prod, np.prod),
    "max": (sg.max, np.max), "min": (sg.min, np.min), "logsumexp": (sg.logsumexp, _np_logsumexp),
    "argmax": (sg.argmax, np.argmax), "argmin": (sg.argmin, np.argmin),
}


def row(op, args, axis=None, keepdims=False, id=None, **kw):
    """A case for ``op(x, axis, keepdims)`` against its NumPy twin."""
    fn, ref = FUNCS[op]
    label = id or f"{op}[{'x'.join(map(str, args[0].shape)) or 's'},axis={axis},keep={keepdims}]"
    return Case(op, lambda x: fn(x, axis=axis, keepdims=keepdims),
                lambda x: ref(x, axis=axis, keepdims=keepdims), args, id=label, **kw)


def stat(name, axis=None, keepdims=False, ddof=0):
    """(build, ref) for var / std, whose graphs are compositions of mean."""
    fn, ref = (sg.var, np.var) if name == "var" else (sg.std, np.std)
    return (lambda x: fn(x, axis=axis, keepdims=keepdims, ddof=ddof),
            lambda x: ref(x, axis=axis, keepdims=keepdims, ddof=ddof))


# Shapes and axes every float reduction gets: None / int / negative / tuple, keepdims both ways.
COMMON = [
    ((5,), None, False), ((3, 4), 1, False), ((3, 4), -1, True), ((2, 3, 4), (0, 2), False),
    ((2, 3, 4), (-1, 0), True), ((2, 3, 4), None, True), ((), None, False),
]

CASES = []
for op in ("sum", "mean", "prod", "max", "min", "logsumexp"):
    CASES += [row(op, [A(shape)], axis, keep) for shape, axis, keep in COMMON]
    CASES += [
        row(op, [A((3, 4), static=True)], 0, id=f"{op}[static]"),
        row(op, [A((2, 3, 4), static=True)], (1, 2), True, id=f"{op}[static-keep]"),
        row(op, [A((3, 4), dtype="float32")], 1, id=f"{op}[float32]", **F32),
    ]

for op in ("argmax", "argmin"):
    CASES += [
        row(op, [A((5,))], None, grad=False),
        row(op, [A((3, 4))], 1, grad=False),
        row(op, [A((3, 4))], -2, True, grad=False),
        row(op, [A((2, 3, 4))], None, True, grad=False),
        row(op, [A((2, 3, 4), static=True)], 2, id=f"{op}[static]", grad=False),
        row(op, [A((3, 4), dtype="float32")], 0, id=f"{op}[float32]", grad=False),
        row(op, [A((3, 4), dtype="int32", low=-3, high=3)], 1, id=f"{op}[int32]", grad=False),
        row(op, [A((2, 4), value=[[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]])], 1,
            id=f"{op}[ties-first]", grad=False),
    ]

INT = {"low": -3, "high": 4}
CASES += [
    # integer and bool inputs follow NumPy's dtypes (int32 sums to int64, bool to int64)
    row("sum", [A((3, 4), dtype="int32", **INT)], 1, id="sum[int32]", grad=False),
    row("sum", [A((3, 4), dtype="int64", **INT)], None, id="sum[int64]", grad=False),
    row("sum", [A((2, 3), dtype="bool")], 0, id="sum[bool]", grad=False),
    row("sum", [A((0, 3))], 0, id="sum[empty-axis]"),
    row("sum", [A((3, 4))], (), id="sum[no-axes]"),
    row("mean", [A((3, 4), dtype="int32", **INT)], 0, id="mean[int32->float64]", grad=False),
    row("mean", [A((0, 3))], 1, id="mean[empty-rows]"),
    row("prod", [A((3, 4), dtype="int64", **INT)], 1, id="prod[int64]", grad=False),
    row("prod", [A((2, 3), dtype="bool")], None, id="prod[bool]", grad=False),
    row("max", [A((3, 4), dtype="int32", **INT)], 0, id="max[int32]", grad=False),
    row("max", [A((3, 4), dtype="bool")], 1, id="max[bool]", grad=False),
    row("min", [A((3, 4), dtype="int64", **INT)], None, id="min[int64]", grad=False),
    row("logsumexp", [A((3, 4), dtype="int32", **INT)], 1, id="logsumexp[int32]", grad=False),
    # prod is exact at zeros: none / exactly one / two per reduced group (finite differences
    # are valid there: prod is linear in each element)
    row("prod", [A((4,), value=[1.5, 0.0, -2.0, 0.5])], None, id="prod[one-zero]"),
    row("prod", [A((4,), value=[0.0, 1.5, 0.0, -2.0])], None, id="prod[two-zeros]"),
    row("prod", [A((3, 3), value=[[2.0, 0.0, 3.0], [0.0, 5.0, 0.0], [1.0, -2.0, 4.0]])], 1,
        id="prod[zero-counts-per-row]"),
    row("prod", [A((3, 3), value=[[2.0, 0.0, 3.0], [0.0, 5.0, 0.0], [1.0, -2.0, 4.0]])], 0,
        True, id="prod[zero-counts-per-col]"),
    # ties are not differentiable: values only here, gradients in tests/test_reduce.py
    row("max", [A((2, 4), value=[[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]])], 1,
        id="max[ties]", grad=False),
    row("min", [A((2, 3), value=[[-1.0, 4.0, -1.0], [0.0, 0.0, 5.0]])], None,
        id="min[ties]", grad=False),
    # a tie below the maximum does not matter: the gradient is well defined
    row("max", [A((4,), value=[0.5, 0.5, 2.0, -1.0])], None, id="max[tie-below-max]"),
    # huge values: the max is subtracted first, so nothing overflows
    row("logsumexp", [A((2, 3), value=[[1000.0, -1000.0, 999.0], [-1000.0, -1000.0, -999.0]])],
        1, id="logsumexp[huge]"),
    row("logsumexp", [A((3,), value=[1000.0, 1000.0, 1000.0])], None, True,
        id="logsumexp[huge-equal]"),
    row("logsumexp", [A((2, 2), value=[[-np.inf, 0.0], [-np.inf, 1.0]])], 1,
        id="logsumexp[some-neg-inf]", grad=False),
    # var / std are compositions: their graphs contain mean
    Case("mean", *stat("var"), [A((5,))], id="var[all]"),
    Case("mean", *stat("var", axis=1, ddof=1), [A((3, 4))], id="var[axis1,ddof1]"),
    Case("mean", *stat("var", axis=(0, 2), keepdims=True), [A((2, 3, 4))], id="var[tuple,keep]"),
    Case("mean", *stat("var", axis=-1), [A((3, 4), static=True)], id="var[static]"),
    Case("mean", *stat("var", axis=0), [A((3, 4), dtype="int32", **INT)], id="var[int32]",
         grad=False),
    Case("mean", *stat("std"), [A((2, 3))], id="std[all]"),
    Case("mean", *stat("std", axis=0, ddof=1), [A((4, 3))], id="std[axis0,ddof1]"),
    Case("mean", *stat("std", axis=(1, 2), keepdims=True), [A((2, 3, 4), dtype="float32")],
         id="std[float32]", **F32),
]
