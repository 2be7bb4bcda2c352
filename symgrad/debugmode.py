"""Mode "debug": compiled and reference side by side, checked step by step.

The kernel is the one mode "c" runs -- the same fused loops, BLAS calls and
updates in place -- built to also hand over the result of every step, copied
right after the step (``CKernel(..., probe=True)``). Each is compared with
the NumPy reference's value of the same node, computed from the values the
compiled step read: the reference carries each compiled result forward, as
Theano's DebugMode checks each op on the same inputs. So a step is judged on
its own error, not on rounding accumulated before it, and an index chosen among
values that differ by an ulp (a max-pool or argmax over saturated tanh) cannot
make a later step read a different element. A fused loop whose result differs
is named with every op it evaluates. The reference computes every node, so the
first node, in topological order, that makes NaN/Inf from finite inputs raises
too, naming the op and the user's line -- but for a mean over no element (an empty
batch, a data-parallel rank's empty shard), whose NaN is its defined value in every
mode, and for a division by a count of elements that is 0 (the gradient of such a
mean: ``g / n``, spread over no element; a data-parallel step seeds it with the shard's
count, 0 / 0), whose NaN or Inf the other modes give too.
"""

import numpy as np

from .backend import CKernel
from .errors import SymgradError
from .graph import Constant, leaf_value, toposort
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
        n_out = len(self.outputs)
        compiled = {id(v): g for v, g in zip(self.kernel.probes, got[n_out:])}
        reference = {}
        # whether each value the reference reads (an input, a carried result) is finite
        finite = {id(v): _finite(np.asarray(a)) for v, a in zip(self.inputs, values)}
        given = {id(v): a for v, a in zip(self.inputs, values)}

        def values_of(v):
            """The value a node read: given, carried, or a leaf's."""
            if id(v) in given:
                return np.asarray(given[id(v)])
            if id(v) in reference:
                return np.asarray(reference[id(v)])
            return np.asarray(leaf_value(v))

        def check(node, results):
            finite_in = all(finite[id(i)] if id(i) in finite else _leaf_finite(i)
                            for i in node.inputs)
            carried = []
            for k, (o, want) in enumerate(zip(node.outputs, results)):
                reference[id(o)] = want
                have = compiled.get(id(o))
                if have is not None:
                    self._compare(self._step_site(node, k), have, want)
                if (finite_in and not _finite(want) and not _mean_of_nothing(node, values_of)
                        and not _divided_by_no_count(node, values_of)):
                    inside = _first_in_loop(node, [values_of(i) for i in node.inputs])
                    raise DebugModeError(f"{inside or ''}{self._site(node, k)} made NaN or Inf "
                                         f"from finite inputs")
                carried.append(want if have is None else have)
                finite[id(o)] = _finite(carried[-1])
            return carried

        want = self.reference.run(values, carry=check)[len(self.all_vars):]
        for k, (v, g, w) in enumerate(zip(self.outputs, got, want)):
            owner = v.owner
            w = reference.get(id(v), w)  # a node's own result, before any compiled value replaced it
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


def _first_in_loop(node, inputs):
    """For a loop (scan) that made NaN or Inf from finite inputs: ``"<op> at <line>, at step
    t of "`` naming the first node of its step, at the first step, that did (the step run
    again on the values the loop read; a loop inside the step is searched in turn), so a
    recurrent net's NaN is traced to the user's line rather than to the whole loop. None
    for another op, or when the step's values do not show it."""
    from .ops.scan import Scan
    op = node.op
    if not isinstance(op, Scan):
        return None
    n_steps, seqs, prev, others = op.split([np.asarray(v) for v in inputs])
    inner = op.inner
    nodes = toposort(inner.outputs)
    program = Program(inner.inputs, [o for n in nodes for o in n.outputs] + inner.outputs)
    found = []
    for t in range(int(n_steps)):
        values = [x[t] for x in seqs] + list(prev) + list(others)
        finite = {id(p): _finite(np.asarray(v)) for p, v in zip(inner.inputs, values)}
        known = dict(zip(map(id, inner.inputs), values))

        def values_of(v):
            return np.asarray(known[id(v)] if id(v) in known else leaf_value(v))

        def check(n, results):
            finite_in = all(finite[id(i)] if id(i) in finite else _leaf_finite(i)
                            for i in n.inputs)
            for o, r in zip(n.outputs, results):
                known[id(o)] = r
                finite[id(o)] = _finite(np.asarray(r))
            if (not found and finite_in and not all(finite[id(o)] for o in n.outputs)
                    and not _mean_of_nothing(n, values_of)
                    and not _divided_by_no_count(n, values_of)):
                deeper = _first_in_loop(n, [values_of(i) for i in n.inputs])
                found.append(f"{deeper or ''}{n.op} at {n.trace}, at step {t} of ")
            return results

        try:
            outs = program.run(values, carry=check)[-len(inner.outputs):]
        except Exception:  # the reference fails where the compiled loop did not: no trace
            return None
        if found:
            return found[0]
        prev = outs[:op.n_rec]
    return None


def _mean_of_nothing(node, values_of):
    """Whether ``node`` is a mean over no element (an empty operand: a data-parallel rank's
    empty shard), whose NaN is the value NumPy and the kernel define, not a fault."""
    return getattr(node.op, "name", None) == "mean" and values_of(node.inputs[0]).size == 0


def _divided_by_no_count(node, values_of):
    """Whether ``node`` divides by a count of elements that is 0: a divisor computed from
    lengths alone (``cast(x.shape[0] * 2)``: the gradient of a mean over no element, or a
    mean written as ``x.sum() / x.shape[0]``), whose NaN or Inf the other modes give too.
    A division by a value of the data that is 0 is not one."""
    if getattr(node.op, "name", None) != "truediv" or len(node.inputs) != 2:
        return False
    divisor = node.inputs[1]
    return _from_lengths(divisor) is True and not np.any(values_of(divisor))


def _from_lengths(v, memo=None):
    """True when ``v`` is computed from lengths of arrays (shape, shape_at) and constants
    alone, with a length among them; "constant" when from constants alone; else False."""
    memo = {} if memo is None else memo
    if isinstance(v, Constant):
        return "constant"
    n = v.owner
    if n is None:
        return False  # an input: data
    if id(v) not in memo:
        if getattr(n.op, "name", None) in ("shape", "shape_at"):
            memo[id(v)] = True
        else:
            kinds = [_from_lengths(i, memo) for i in n.inputs]
            memo[id(v)] = (False if not all(kinds) else
                           True if any(k is True for k in kinds) else "constant")
    return memo[id(v)]


def _leaf_finite(v):
    """Whether a shared variable's or constant's value is free of NaN and Inf."""
    return _finite(np.asarray(leaf_value(v)))


def _finite(a):
    return a.dtype.kind != "f" or bool(np.isfinite(a).all())
