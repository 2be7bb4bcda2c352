"""Mode "debug": compiled and reference side by side, checked step by step.

The kernel is the one mode "c" runs -- the same fused loops, BLAS calls and
updates in place -- built to also hand over the result of every step, copied
right after the step (``CKernel(..., probe=True)``). Each is compared with
the NumPy reference's value of the same node; a fused loop whose result
differs is named with every op it evaluates. The reference computes every
node, so the first node, in topological order, that makes NaN/Inf from finite
inputs raises too, naming the op and the user's line.
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
    def __init__(self, inputs, outputs, name="kernel", rtol=None, atol=None, updates=()):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.nodes = toposort(self.outputs)
        self.all_vars = [o for n in self.nodes for o in n.outputs]
        self.kernel = CKernel(inputs, self.outputs, name=name, updates=updates, probe=True)
        self.reference = Program(inputs, self.all_vars + self.outputs)
        self.source = self.kernel.source
        self.rtol, self.atol = rtol, atol
        # the step that keeps each node's result, by the node
        self._step_of = {id(s.root): s for s in self.kernel.steps}

    def __call__(self, values):
        got = self.kernel(values)
        want = self.reference.run(values)
        n_out, n = len(self.outputs), len(self.all_vars)
        reference = {id(v): w for v, w in zip(self.all_vars, want[:n])}
        compiled = {id(v): g for v, g in zip(self.kernel.probes, got[n_out:])}
        leaf_finite = {id(v): _finite(np.asarray(a)) for v, a in zip(self.inputs, values)}
        for node in self.nodes:
            finite_in = all(_finite(reference[id(i)]) if id(i) in reference
                            else leaf_finite.get(id(i)) if id(i) in leaf_finite
                            else _leaf_finite(i) for i in node.inputs)
            for k, o in enumerate(node.outputs):
                site = self._site(node, k)
                if id(o) in compiled:
                    self._compare(self._step_site(node, k), compiled[id(o)], reference[id(o)])
                if finite_in and not _finite(reference[id(o)]):
                    raise DebugModeError(f"{site} made NaN or Inf from finite inputs")
        for k, (v, g, w) in enumerate(zip(self.outputs, got, want[n:])):
            owner = v.owner
            self._compare(self._step_site(owner, 0) if owner is not None else f"output {k}", g, w)
        return got[:n_out]

    @staticmethod
    def _site(node, k):
        return f"{node.op} at {node.trace}" + (f" (output {k})" if len(node.outputs) > 1 else "")

    def _step_site(self, node, k):
        """The node, or the fused loop that computes it, with every op the loop evaluates."""
        step = self._step_of.get(id(node))
        if step is None or not step.fused:
            return self._site(node, k)
        ops = ", ".join(self._site(m, 0) for m in step.members)
        return f"{step.label}, {step.fused_text()} ({ops})"

    def _compare(self, site, got, want):
        if got.shape != want.shape or got.dtype != want.dtype:
            raise DebugModeError(f"{site}: compiled gives {got.dtype}{got.shape}, the reference "
                                 f"{want.dtype}{want.shape}")
        if got.dtype.kind == "f":
            tol = 1e-4 if got.dtype == np.float32 else 1e-9
            rtol, atol = self.rtol or tol, self.atol or tol
            close = np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
            if not close.all():
                i = tuple(int(j) for j in np.unravel_index(int(np.argmin(close)), got.shape))
                raise DebugModeError(f"{site}: compiled and reference differ at index {i}: "
                                     f"{got[i].item()!r} vs {want[i].item()!r}")
        elif not np.array_equal(got, want):
            raise DebugModeError(f"{site}: compiled and reference results differ")


def _leaf_finite(v):
    """Whether a shared variable's or constant's value is free of NaN and Inf."""
    return _finite(np.asarray(leaf_value(v)))


def _finite(a):
    return a.dtype.kind != "f" or bool(np.isfinite(a).all())
