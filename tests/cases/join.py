"""Rows for concatenate, stack and split (lengths static or known only at call time)."""

import numpy as np

import symgrad as sg
from symgrad.ops.join import split
from symgrad.ops.shape import shape_at

from . import Arg as A
from . import Case

F32 = {"rtol": 1e-6, "atol": 1e-6}


def _cat(axis=0):
    return (lambda *xs: sg.concatenate(list(xs), axis=axis),
            lambda *xs: np.concatenate(xs, axis=axis))


def _stack(axis=0):
    return (lambda *xs: sg.stack(list(xs), axis=axis), lambda *xs: np.stack(xs, axis=axis))


CASES = [
    Case("concatenate", *_cat(0), [A((2, 3)), A((4, 3))]),
    Case("concatenate", *_cat(1), [A((2, 1)), A((2, 3)), A((2, 2))], id="concatenate[axis1-3in]"),
    Case("concatenate", *_cat(-1), [A((2, 3, 2)), A((2, 3, 1))], id="concatenate[axis-1]"),
    Case("concatenate", *_cat(0), [A((3,))], id="concatenate[single]"),
    Case("concatenate", *_cat(0), [A((0, 2)), A((2, 2))], id="concatenate[empty-piece]"),
    Case("concatenate", *_cat(0), [A((2, 3), static=True), A((1, 3), static=True)],
         id="concatenate[static]"),
    Case("concatenate", *_cat(0), [A((2, 3), static=True), A((1, 3))],
         id="concatenate[static+dynamic]"),
    Case("concatenate", *_cat(1), [A((2, 2), dtype="float32"), A((2, 3), dtype="float32")],
         id="concatenate[float32]", **F32),
    Case("concatenate", *_cat(0), [A((2,), dtype="float32"), A((3,))],
         id="concatenate[float32+float64]"),
    Case("concatenate", *_cat(0), [A((2,), dtype="int32", low=-5, high=5), A((3,))],
         id="concatenate[int32+float64]"),
    Case("concatenate", *_cat(0), [A((2,), dtype="bool"), A((3,), dtype="int32", low=0, high=9)],
         grad=False, id="concatenate[bool+int32]"),
    Case("concatenate", lambda x: sg.concatenate([x, x * 2], axis=0),
         lambda x: np.concatenate([x, x * 2]), [A((2, 2))], id="concatenate[same-input]"),
    Case("concatenate", *_stack(0), [A(()), A(()), A(())], id="stack[0d]"),
    Case("concatenate", *_stack(1), [A((2, 3)), A((2, 3))], id="stack[axis1]"),
    Case("concatenate", *_stack(-1), [A((3,), static=True), A((3,), static=True)],
         id="stack[axis-1-static]"),
    Case("concatenate", *_stack(0), [A((2,), dtype="float32"), A((2,), dtype="float32")],
         id="stack[float32]", **F32),
    # split: the adjoint of concatenate, also exercised by every concatenate gradient above
    Case("split", lambda x: split(x, [1, 3])[1] * 2, lambda x: x[1:] * 2, [A((4, 2))],
         id="split[axis0]"),
    Case("split", lambda x: sg.concatenate(split(x, [2, 1, 2], axis=1)[::-1], axis=1),
         lambda x: np.concatenate([x[:, 3:], x[:, 2:3], x[:, :2]], axis=1), [A((2, 5))],
         id="split[reverse]"),
    Case("split", lambda x: split(x, [shape_at(x, 0) - 1, 1])[0],
         lambda x: x[:-1], [A((4, 3))], id="split[runtime-lengths]"),
    Case("split", lambda x: split(x, [2, 1], axis=-1)[0], lambda x: x[..., :2],
         [A((2, 3), static=True)], id="split[static]"),
    Case("split", lambda x: split(x, [0, 3])[1], lambda x: x.copy(), [A((3,))],
         id="split[empty-piece]"),
    Case("split", lambda x: split(x, [1, 1])[1], lambda x: x[1:], [A((2, 2), dtype="float32")],
         id="split[float32]", **F32),
]
