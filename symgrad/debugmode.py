"""Mode "debug": compiled and reference side by side, checked node by node.

Every intermediate result is both computed by the compiled kernel (which
exposes them all as outputs) and by the NumPy reference; the first node, in
topological order, whose results differ or that makes NaN/Inf from finite
inputs raises, naming the op and the user's line.
"""

import numpy as np

from .backend import CKernel
from .errors import SymgradError
from .graph import leaf_value, toposort
from .interp import Program

__all__ = ["DebugRunner", "DebugModeError"]


class DebugModeError(SymgradError, AssertionError):
    """Compiled and reference results differ, or a node made NaN/Inf from finite inputs."""


class DebugRunner:
    def __init__(self, inputs, outputs, name="kernel", rtol=None, atol=None):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.nodes = toposort(self.outputs)
        self.all_vars = [o for n in self.nodes for o in n.outputs]
        self.kernel = CKernel(inputs, self.all_vars + self.outputs, name=name)
        self.reference = Program(inputs, self.all_vars + self.outputs)
        self.source = self.kernel.source
        self.rtol, self.atol = rtol, atol

    def __call__(self, values):
        got = self.kernel(values)
        want = self.reference.run(values)
        n = len(self.all_vars)
        value_of = {id(v): (g, w) for v, g, w in zip(self.all_vars, got[:n], want[:n])}
        leaf_finite = {id(v): _finite(np.asarray(a)) for v, a in zip(self.inputs, values)}
        for node in self.nodes:
            finite_in = all(_finite(value_of[id(i)][1]) if id(i) in value_of
                            else leaf_finite.get(id(i)) if id(i) in leaf_finite
                            else _leaf_finite(i) for i in node.inputs)
            for k, o in enumerate(node.outputs):
                g, w = value_of[id(o)]
                self._check(node, k, g, w, finite_in)
        return got[n:]

    def _check(self, node, k, got, want, finite_in):
        site = f"{node.op} at {node.trace}" + (f" (output {k})" if len(node.outputs) > 1 else "")
        if got.shape != want.shape or got.dtype != want.dtype:
            raise DebugModeError(f"{site}: compiled gives {got.dtype}{got.shape}, the reference "
                                 f"{want.dtype}{want.shape}")
        if got.dtype.kind == "f":
            tol = 1e-4 if got.dtype == np.float32 else 1e-9
            rtol, atol = self.rtol or tol, self.atol or tol
            close = np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
            if not close.all():
                i = np.unravel_index(int(np.argmin(close)), got.shape) if got.ndim else ()
                raise DebugModeError(f"{site}: compiled and reference differ at index {i}: "
                                     f"{got[i]!r} vs {want[i]!r}")
            if finite_in and not _finite(want):
                raise DebugModeError(f"{site} made NaN or Inf from finite inputs")
        elif not np.array_equal(got, want):
            raise DebugModeError(f"{site}: compiled and reference results differ")


def _leaf_finite(v):
    """Whether a shared variable's or constant's value is free of NaN and Inf."""
    return _finite(np.asarray(leaf_value(v)))


def _finite(a):
    return a.dtype.kind != "f" or bool(np.isfinite(a).all())
