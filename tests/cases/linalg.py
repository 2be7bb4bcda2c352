"""Rows for the matrix product (matmul, dot, outer)."""

import numpy as np

import symgrad as sg

from . import Arg as A
from . import Case

F32 = {"rtol": 1e-5, "atol": 1e-5}


# (id, shape of a, shape of b): every rank combination np.matmul accepts, with broadcasting
MATMUL_SHAPES = [
    ("2d@2d", (3, 4), (4, 5)),
    ("1d@2d", (4,), (4, 5)),
    ("2d@1d", (3, 4), (4,)),
    ("1d@1d", (4,), (4,)),
    ("3d@3d", (2, 3, 4), (2, 4, 5)),
    ("bcast-batch", (2, 1, 3, 4), (5, 4, 2)),
    ("2d@3d", (3, 4), (2, 4, 5)),
    ("3d@2d", (2, 3, 4), (4, 5)),
    ("3d@1d", (2, 3, 4), (4,)),
    ("1d@3d", (4,), (2, 4, 5)),
    ("batch-1", (1, 3, 4), (2, 4, 2)),
    ("empty-k", (3, 0), (0, 2)),
]

CASES = [Case("matmul", sg.matmul, np.matmul, [A(sa), A(sb)], id=f"matmul[{name}]")
         for name, sa, sb in MATMUL_SHAPES]

CASES += [
    Case("matmul", lambda a, b: a @ b, np.matmul, [A((3, 4), static=True), A((4, 2), static=True)],
         id="matmul[static]"),
    Case("matmul", lambda a, b: a @ b, np.matmul,
         [A((2, 3, 4), static=True), A((4,), static=True)], id="matmul[static-3d@1d]"),
    Case("matmul", lambda a, b: a @ b, np.matmul,
         [A((2, 3, 4), dtype="float32"), A((4, 5), dtype="float32")], id="matmul[float32]", **F32),
    Case("matmul", lambda a, b: a @ b, np.matmul,
         [A((3, 4), dtype="int64", low=-5, high=5), A((4, 2), dtype="int64", low=-5, high=5)],
         grad=False, id="matmul[int64]"),
    Case("matmul", lambda a, b: a @ b, np.matmul,
         [A((3, 4), dtype="int32", low=-5, high=5), A((4,), dtype="float32")],
         id="matmul[int32@float32]", **F32),
    Case("matmul", lambda a, b: a @ b, np.matmul,
         [A((3, 4)), A((4, 2), dtype="int64", low=-3, high=3)], id="matmul[float@int]"),
    Case("matmul", lambda a, b: a @ b, np.matmul,
         [A((2, 3), dtype="bool"), A((3, 2), dtype="bool")], grad=False, id="matmul[bool]"),
    Case("matmul", lambda a, b: a @ b.T, lambda a, b: a @ b.T, [A((3, 4)), A((5, 4))],
         id="matmul[a@b.T]"),
    # dot: NumPy's np.dot where it agrees with a matrix product
    Case("matmul", sg.dot, np.dot, [A((3, 4)), A((4, 5))], id="dot[2d.2d]"),
    Case("matmul", sg.dot, np.dot, [A((4,)), A((4,))], id="dot[1d.1d]"),
    Case("matmul", sg.dot, np.dot, [A((4,)), A((4, 3))], id="dot[1d.2d]"),
    Case("matmul", sg.dot, np.dot, [A((2, 4)), A((4,))], id="dot[2d.1d]"),
    Case("matmul", sg.dot, np.dot, [A((2, 3, 4)), A((4, 5))], id="dot[3d.2d]"),
    Case("matmul", sg.dot, np.dot, [A((2, 3, 4)), A((4,))], id="dot[3d.1d]"),
    Case("mul", sg.dot, np.dot, [A(()), A((3, 2))], id="dot[0d.2d]"),
    Case("mul", sg.dot, np.dot, [A((3,)), A(())], id="dot[1d.0d]"),
    # outer: a composition (flatten, insert axes, multiply)
    Case("mul", sg.outer, np.outer, [A((3,)), A((4,))], id="outer[1d]"),
    Case("mul", sg.outer, np.outer, [A((2, 2)), A(())], id="outer[2d-0d]"),
    Case("mul", sg.outer, np.outer, [A((3,), dtype="float32"), A((2,), dtype="float32")],
         id="outer[float32]", **F32),
]
