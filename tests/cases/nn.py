"""Rows for softmax, log_softmax, one_hot, cross_entropy, the binary cross-entropy and embedding."""

import numpy as np

import symgrad as sg
from symgrad.ops.shape import shape_at

from . import Arg as A
from . import Case

F32 = {"rtol": 1e-5, "atol": 1e-6}


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_log_softmax(x, axis=-1):
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def np_cross_entropy(z, y):
    return -np_log_softmax(z, 1)[np.arange(len(y)), y]


def np_bce(x, t):
    p = 1 / (1 + np.exp(-x))
    return -(t * np.log(p) + (1 - t) * np.log(1 - p))


def _per_axis(op, fn, ref):
    return [
        Case(op, fn, ref, [A((3, 4))]),
        Case(op, lambda x: fn(x, axis=0), lambda x: ref(x, axis=0), [A((3, 4))], id=f"{op}[axis0]"),
        Case(op, lambda x: fn(x, axis=1), lambda x: ref(x, axis=1), [A((2, 3, 4))],
             id=f"{op}[3d-axis1]"),
        Case(op, fn, ref, [A((5,), static=True)], id=f"{op}[static]"),
        Case(op, fn, ref, [A((2, 3), low=-30, high=30)], id=f"{op}[wide]"),
        Case(op, fn, ref, [A((3, 4), dtype="float32")], id=f"{op}[float32]", **F32),
    ]


def _label(n, **kw):
    return A(dtype="int64", low=0, high=n, **kw)


CASES = (_per_axis("softmax", sg.nn.softmax, np_softmax)
         + _per_axis("log_softmax", sg.nn.log_softmax, np_log_softmax))

CASES += [
    Case("one_hot", lambda y: sg.one_hot(y, 4), lambda y: np.eye(4)[y], [_label(4, shape=(5,))],
         grad=False),
    Case("one_hot", lambda y: sg.one_hot(y, 3, dtype="int32"),
         lambda y: np.eye(3, dtype="int32")[y], [_label(3, shape=(2, 3))], grad=False,
         id="one_hot[2d-int32]"),
    Case("one_hot", lambda y: sg.one_hot(y, 3), lambda y: np.eye(3)[y], [_label(3, shape=())],
         grad=False, id="one_hot[0d]"),
    Case("one_hot", lambda y, w: sg.one_hot(y, shape_at(w, 0)) * w,
         lambda y, w: np.eye(len(w))[y] * w,
         [A((4,), dtype="int32", low=0, high=3), A((3,))], id="one_hot[symbolic-n]"),
    Case("one_hot", lambda y: sg.one_hot(y, 5, dtype="float32"),
         lambda y: np.eye(5, dtype="float32")[y], [_label(5, shape=(4,), static=True)],
         grad=False, id="one_hot[float32-static]"),
    Case("cross_entropy", sg.nn.cross_entropy, np_cross_entropy,
         [A((5, 4)), _label(4, shape=(5,))]),
    Case("cross_entropy", sg.nn.cross_entropy, np_cross_entropy,
         [A((3, 6), static=True), _label(6, shape=(3,), static=True)], id="cross_entropy[static]"),
    Case("cross_entropy", sg.nn.cross_entropy, np_cross_entropy,
         [A((4, 3), low=-40, high=40), _label(3, shape=(4,))], id="cross_entropy[wide]"),
    Case("cross_entropy", sg.nn.cross_entropy, np_cross_entropy,
         [A((4, 3), dtype="float32"), _label(3, shape=(4,))], id="cross_entropy[float32]", **F32),
    Case("cross_entropy", sg.nn.cross_entropy, np_cross_entropy,
         [A((4, 5)), A((4,), dtype="int32", low=0, high=5)], id="cross_entropy[int32-labels]"),
    Case("cross_entropy", lambda z, y: sg.nn.cross_entropy(z, y) * sg.nn.cross_entropy(z, y),
         lambda z, y: np_cross_entropy(z, y) ** 2, [A((3, 4)), _label(4, shape=(3,))],
         id="cross_entropy[squared]"),
    # binary cross-entropy is a composition around the stable softplus row
    Case("softplus", sg.nn.binary_cross_entropy_with_logits, np_bce,
         [A((3, 4)), A((3, 4), low=0.0, high=1.0)], id="bce_with_logits"),
    Case("softplus", sg.nn.binary_cross_entropy_with_logits, np_bce,
         [A((3, 4), dtype="float32"), A((3, 4), dtype="float32", low=0.0, high=1.0)],
         id="bce_with_logits[float32]", **F32),
    Case("softplus", lambda x: sg.nn.binary_cross_entropy_with_logits(x, 1.0),
         lambda x: np_bce(x, 1.0), [A((5,), low=-10, high=10)],
         id="bce_with_logits[scalar-target]"),
]


def np_embedding_grad(ids, w, g, pad=None):
    """Each row of the table's gradient summed in float64 in the ids' order, rounded once."""
    flat, rows = ids.reshape(-1), g.reshape(-1, g.shape[-1]).astype(np.float64)
    keep = flat != pad if pad is not None else np.ones(flat.shape, bool)
    out = np.zeros(w.shape, np.float64)
    np.add.at(out, flat[keep], rows[keep])
    return out.astype(g.dtype)


def _embedding_grad(pad=None):
    return lambda ids, w, g: sg.grad((sg.nn.embedding(ids, w, padding_idx=pad) * g).sum(), w)


CASES += [
    Case("embedding", sg.nn.embedding, lambda i, w: w[i], [_label(5, shape=(4,)), A((5, 3))]),
    Case("embedding", sg.nn.embedding, lambda i, w: w[i],
         [_label(5, shape=(2, 3), static=True), A((5, 3), static=True)], id="embedding[static]"),
    Case("embedding", sg.nn.embedding, lambda i, w: w[i],
         [A((3, 2), dtype="int32", low=0, high=4), A((4, 2))], id="embedding[int32-ids]"),
    Case("embedding", sg.nn.embedding, lambda i, w: w[i], [_label(6, shape=()), A((6, 4))],
         id="embedding[0d-ids]"),
    # the padding row's gradient is zero by definition, not the finite difference: the ids
    # here never hold it (tests/test_embedding.py checks that row)
    Case("embedding", lambda i, w: sg.nn.embedding(i, w, padding_idx=3), lambda i, w: w[i],
         [_label(3, shape=(6,)), A((4, 3))], id="embedding[padding]"),
    Case("embedding_grad", _embedding_grad(), np_embedding_grad,
         [_label(4, shape=(3, 5)), A((4, 3), grad=False), A((3, 5, 3))]),
    Case("embedding_grad", _embedding_grad(1), lambda i, w, g: np_embedding_grad(i, w, g, 1),
         [_label(4, shape=(7,)), A((4, 2), grad=False), A((7, 2))], id="embedding_grad[padding]"),
]
