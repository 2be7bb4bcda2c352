"""Rows for the indexing ops: basic and advanced gathers, their scatters, arange."""

import numpy as np

import symgrad as sg

from . import Arg, Case

A = Arg


def _inc(x, key, y):
    out = x.copy()
    np.add.at(out, key, y)  # a repeated index adds every value
    return out


def _set(x, key, y):
    out = x.copy()
    out[key] = y
    return out


def _int(shape=(), n=4, value=None):
    """An index argument: integers in [-n, n) (negative ones count from the end)."""
    shape = np.shape(value) if value is not None else shape
    return A(shape, dtype="int64", low=-n, high=n, value=value)


# ---------------------------------------------------------------- subtensor (basic)

CASES = [
    Case("subtensor", lambda x: x[1:3], lambda x: x[1:3], [A((4, 3))]),
    Case("subtensor", lambda x: x[::-1, 1], lambda x: x[::-1, 1], [A((3, 4))], id="subtensor[rev]"),
    Case("subtensor", lambda x: x[-1], lambda x: x[-1], [A((5,))], id="subtensor[neg]"),
    Case("subtensor", lambda x: x[0, 2], lambda x: x[0, 2], [A((2, 3))], id="subtensor[0-d]"),
    Case("subtensor", lambda x: x[:, None, 1:], lambda x: x[:, None, 1:], [A((2, 3))],
         id="subtensor[newaxis]"),
    Case("subtensor", lambda x: x[1:-1:2, ..., None], lambda x: x[1:-1:2, ..., None],
         [A((5, 2, 3))], id="subtensor[ellipsis]"),
    Case("subtensor", lambda x: x[-2:0:-2], lambda x: x[-2:0:-2], [A((6, 2), static=True)],
         id="subtensor[static]"),
    Case("subtensor", lambda x, i: x[i], lambda x, i: x[i], [A((4, 3)), _int()],
         id="subtensor[symbolic-int]"),
    Case("subtensor", lambda x, i: x[:, i:], lambda x, i: x[:, i:], [A((2, 5)), _int(n=6)],
         id="subtensor[symbolic-bound]"),
    Case("subtensor", lambda x: x[1], lambda x: x[1], [A((3, 2), dtype="float32")], rtol=1e-6,
         id="subtensor[float32]"),
    Case("subtensor", lambda x: x[1:], lambda x: x[1:], [A((4,), dtype="int32", low=-9, high=9)],
         grad=False, id="subtensor[int32]"),
]

# ---------------------------------------------------------------- inc_subtensor (basic scatter)

CASES += [
    Case("inc_subtensor", lambda x, y: sg.inc_subtensor(x[1:3], y),
         lambda x, y: _inc(x, (slice(1, 3),), y), [A((4, 3)), A((2, 3))]),
    Case("inc_subtensor", lambda x, y: sg.inc_subtensor(x[::2], y),
         lambda x, y: _inc(x, (slice(None, None, 2),), y), [A((4, 3)), A((3,))],
         id="inc_subtensor[bcast]"),
    Case("inc_subtensor", lambda x, y: sg.set_subtensor(x[:, 0], y),
         lambda x, y: _set(x, (slice(None), 0), y), [A((3, 4)), A((3,))], id="set_subtensor"),
    Case("inc_subtensor", lambda x, y, i: sg.set_subtensor(x[i], y),
         lambda x, y, i: _set(x, (int(i),), y), [A((4, 2)), A(()), _int()],
         id="set_subtensor[symbolic-int]"),
]

# ---------------------------------------------------------------- advanced_subtensor (gather)

CASES += [
    Case("advanced_subtensor", lambda E, ids: E[ids], lambda E, ids: E[ids],
         [A((3, 4)), _int(value=[0, 2, 0])], id="advanced_subtensor[rows-repeated]"),
    Case("advanced_subtensor", lambda E, ids: E[ids], lambda E, ids: E[ids],
         [A((3, 2)), _int((2, 3), n=3)], id="advanced_subtensor[2-d-ids]"),
    Case("advanced_subtensor", lambda M, r, c: M[r, c], lambda M, r, c: M[r, c],
         [A((3, 4)), _int((5,), n=3), _int((5,), n=4)], id="advanced_subtensor[rows-cols]"),
    Case("advanced_subtensor", lambda lp, y: lp[sg.arange(sg.shape(lp)[0]), y],
         lambda lp, y: lp[np.arange(lp.shape[0]), y], [A((3, 4)), _int(value=[1, 0, 3])],
         id="advanced_subtensor[arange-labels]"),
    Case("advanced_subtensor", lambda x, ids: x[:, ids], lambda x, ids: x[:, ids],
         [A((3, 4)), _int(value=[3, 0, 3, -1])], id="advanced_subtensor[cols]"),
    Case("advanced_subtensor", lambda x, ids: x[ids, :, 0], lambda x, ids: x[ids, :, 0],
         [A((4, 3, 2)), _int((2,))], id="advanced_subtensor[split-first]"),
    Case("advanced_subtensor", lambda x, ids: x[1, :, ids], lambda x, ids: x[1, :, ids],
         [A((2, 3, 4)), _int((2, 2))], id="advanced_subtensor[int-slice-array]"),
    Case("advanced_subtensor", lambda x: x[[0, 2], 1:], lambda x: x[[0, 2], 1:], [A((3, 4))],
         id="advanced_subtensor[list]"),
    Case("advanced_subtensor", lambda x, ids: x[None, ids, ::-1], lambda x, ids: x[None, ids, ::-1],
         [A((4, 3), static=True), _int((3,))], id="advanced_subtensor[newaxis-static]"),
    Case("advanced_subtensor", lambda x, ids: x[ids], lambda x, ids: x[ids],
         [A((5,), dtype="int32", low=-9, high=9), _int((3,), n=5)], grad=False,
         id="advanced_subtensor[int32]"),
]

# ---------------------------------------------------------------- advanced_inc_subtensor (scatter)

CASES += [
    Case("advanced_inc_subtensor", lambda x, y, ids: sg.inc_subtensor(x[ids], y),
         lambda x, y, ids: _inc(x, ids, y), [A((3, 4)), A((3, 4)), _int(value=[0, 2, 0])],
         id="advanced_inc_subtensor[repeated]"),
    Case("advanced_inc_subtensor", lambda x, y, r, c: sg.inc_subtensor(x[r, c], y),
         lambda x, y, r, c: _inc(x, (r, c), y),
         [A((3, 4)), A((5,)), _int((5,), n=3), _int((5,), n=4)],
         id="advanced_inc_subtensor[pairs]"),
    Case("advanced_inc_subtensor", lambda x, y, ids: sg.inc_subtensor(x[:, ids], y),
         lambda x, y, ids: _inc(x, (slice(None), ids), y), [A((2, 4)), A(()), _int(value=[1, 1])],
         id="advanced_inc_subtensor[bcast]"),
    Case("advanced_inc_subtensor", lambda x, y, ids: sg.set_subtensor(x[ids], y),
         lambda x, y, ids: _set(x, ids, y), [A((4, 2)), A((2, 2)), _int(value=[3, -4])],
         id="advanced_set_subtensor"),
]

# ---------------------------------------------------------------- arange

CASES += [
    Case("arange", lambda x: sg.arange(5) * x, lambda x: np.arange(5) * x, [A((5,))]),
    Case("arange", lambda n: sg.arange(n), lambda n: np.arange(n), [A((), dtype="int64", value=4)],
         grad=False, id="arange[symbolic-int]"),
    Case("arange", lambda a, c: sg.arange(a, a + 3.5, c), lambda a, c: np.arange(a, a + 3.5, c),
         [A((), low=-1.0, high=1.0), A((), low=0.55, high=0.65)], id="arange[float-grad]"),
    Case("arange", lambda x: x + sg.arange(2, 11, 3, dtype="float32"),
         lambda x: x + np.arange(2, 11, 3, dtype="float32"), [A((3,), dtype="float32")],
         rtol=1e-6, id="arange[float32]"),
    Case("arange", lambda n: sg.arange(n, -1, -2), lambda n: np.arange(n, -1, -2),
         [A((), dtype="int32", value=7)], grad=False, id="arange[negative-step]"),
]
