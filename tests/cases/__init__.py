"""Rows of the op-registry test: one or more cases per registered op.

Each family module (``tests/cases/<family>.py``) defines ``CASES``, a list of
:class:`Case`. The registry test (``tests/test_registry.py``) runs every case:
value against an independent NumPy formula on several shapes, static type
against the result, and (float64) the symbolic gradient of every float input
against central finite differences. An op in ``OP_REGISTRY`` without a case
fails the suite.
"""

import numpy as np


class Arg:
    """How to make one input of a case.

    shape : tuple of int        the value's shape
    dtype : str                 "float64" (default), "float32", "int64", "int32", "bool"
    low, high : float           value range (ints: high exclusive, e.g. an index range)
    static : bool               declare the static shape (else None on every axis)
    away_from : float or None   keep floats at least 0.05 from this point (kinks, poles)
    value : array or None       a fixed value instead of a random one
    grad : bool                 check the gradient of this input (floats only)
    """

    def __init__(self, shape=(), dtype="float64", low=-2.0, high=2.0, static=False,
                 away_from=None, value=None, grad=True):
        if value is not None and not shape:
            shape = np.shape(value)
        self.shape, self.dtype, self.low, self.high = tuple(shape), dtype, low, high
        self.static, self.away_from, self.value, self.grad = static, away_from, value, grad

    def make(self, rng):
        if self.value is not None:
            return np.array(self.value, dtype=self.dtype)
        if self.dtype == "bool":
            return rng.random(self.shape) < 0.5
        if self.dtype.startswith("int"):
            return rng.integers(int(self.low), int(self.high), size=self.shape).astype(self.dtype)
        v = rng.uniform(self.low, self.high, size=self.shape)
        if self.away_from is not None:
            d = v - self.away_from
            v = np.where(np.abs(d) < 0.05, v + np.where(d >= 0, 0.05, -0.05), v)
        return v.astype(self.dtype)

    @property
    def is_float(self):
        return self.dtype.startswith("float")


class Case:
    """One test row.

    op : str          the registry name this case covers (``OP_REGISTRY`` key)
    build : callable  symbolic inputs -> symbolic output (uses symgrad)
    ref : callable    NumPy arrays -> expected array (plain NumPy, not symgrad)
    args : list[Arg]
    grad : bool       check gradients of float inputs (False for int/bool outputs)
    rtol, atol        value tolerances (float64; float32 cases get looser ones)
    id : str          a readable test id
    """

    def __init__(self, op, build, ref, args, grad=True, rtol=1e-7, atol=1e-9, id=None,
                 grad_tol=None):
        self.op, self.build, self.ref, self.args = op, build, ref, list(args)
        self.grad, self.rtol, self.atol = grad, rtol, atol
        self.grad_tol = grad_tol
        shapes = "-".join("x".join(map(str, a.shape)) or "s" for a in self.args)
        self.id = id or f"{op}[{shapes}]"

    def __repr__(self):
        return self.id
