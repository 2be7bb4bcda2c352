"""Rows for the loop and branch ops: scan (and map) and ifelse.

Like every row, they are checked in mode "py" and compiled (tests/test_registry.py):
the loop and the branch run inside the kernel.
"""

import numpy as np

import symgrad as sg

from . import Arg, Case


def _cumsum_build(x):
    out, _ = sg.scan(lambda x_t, acc: acc + x_t, sequences=x, outputs_info=sg.zeros_like(x[0]))
    return out


def _rnn_build(X, h0, W):
    hs, _ = sg.scan(lambda x_t, h, W: sg.tanh(x_t + h @ W), sequences=X, outputs_info=h0,
                    non_sequences=W)
    return hs


def _rnn_ref(X, h0, W):
    out, h = [], h0
    for x in X:
        h = np.tanh(x + h @ W)
        out.append(h)
    return np.array(out)


def _map_build(x, w):
    out, _ = sg.map(lambda x_t: sg.sin(x_t) * w, sequences=x)
    return out


def _backwards_build(x, a):
    out, _ = sg.scan(lambda x_t, acc: acc * a + x_t, sequences=x,
                     outputs_info=sg.zeros_like(x[0]), go_backwards=True)
    return out


def _backwards_ref(x, a):
    out, acc = [], np.zeros_like(x[0])
    for x_t in x[::-1]:
        acc = acc * a + x_t
        out.append(acc)
    return np.array(out)


def _power_build(x):
    out, _ = sg.scan(lambda p, x: p * x, outputs_info=sg.ones_like(x), non_sequences=x,
                     n_steps=3)
    return out


def _ifelse_build(c, x, y):
    return sg.ifelse(c > 0, sg.exp(x) * y, x - y)


def _ifelse_ref(c, x, y):
    return np.exp(x) * y if c > 0 else x - y


CASES = [
    Case("scan", _cumsum_build, lambda x: np.cumsum(x, axis=0), [Arg((5, 3))],
         id="scan[cumsum]"),
    Case("scan", _rnn_build, _rnn_ref,
         [Arg((4, 3)), Arg((3,)), Arg((3, 3), low=-0.7, high=0.7)], id="scan[rnn]"),
    Case("scan", _map_build, lambda x, w: np.sin(x) * w, [Arg((4, 2)), Arg((2,))],
         id="scan[map]"),
    Case("scan", _backwards_build, _backwards_ref, [Arg((4, 2)), Arg((), low=-0.9, high=0.9)],
         id="scan[go_backwards]"),
    Case("scan", _power_build, lambda x: np.stack([x, x ** 2, x ** 3]), [Arg((3,))],
         id="scan[n_steps]"),
    Case("ifelse", _ifelse_build, _ifelse_ref,
         [Arg(value=1.0, grad=False), Arg((2, 3)), Arg((2, 3))], id="ifelse[then]"),
    Case("ifelse", _ifelse_build, _ifelse_ref,
         [Arg(value=-1.0, grad=False), Arg((2, 3)), Arg((2, 3))], id="ifelse[else]"),
]
