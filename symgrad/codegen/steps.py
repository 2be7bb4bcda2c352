"""What ``sg_main`` does, step by step: the record lowering keeps for inspection.

``lower`` emits a graph's nodes in topological order; a group of elementwise
nodes that ``codegen.fusion`` fused is emitted once, as one loop, where its
root (the last member) is. Each emitted unit is a :class:`Step`, numbered
``K1``, ``K2``, ... in the order of the C source. ``f.source`` heads each step
with a comment naming its nodes and the user's lines (and each BLAS call with
the node it computes); ``sg.debugprint``, ``sg.to_dot``,
``f.profile_report()`` and ``sg.explain`` refer to steps by the same number.

Nothing here changes the generated code: only its comments.
"""

import os
import re

from .cstr import c_comment

__all__ = ["Step", "BLAS_CALL", "where", "node_text"]

# A call that runs a BLAS gemm: directly, or through the sg_ops.h helpers that do.
BLAS_CALL = re.compile(r"\b(scipy_cblas_[sd]gemm|sg_matmul_f(?:32|64)|sg_gemm_f(?:32|64))\s*\(")


def where(node):
    """``model.py:12``: the user's line of ``node``, file by base name."""
    return f"{os.path.basename(node.trace.filename)}:{node.trace.lineno}"


def node_text(node):
    """``mul at model.py:12``, with ``(gradient of tanh)`` for a node a gradient rule made."""
    # Only what a pickled graph keeps (op, trace, grad_of): the comments are part of the
    # source, hence of the cache key, and an unpickled function must find its library.
    text = f"{node.op} at {where(node)}"
    if node.grad_of is not None:
        text += f" (gradient of {_op_name(node.grad_of)})"
    return text


def _op_name(node):
    return getattr(node.op, "name", None) or str(node.op)


def _comment_safe(text):
    # Op parameters and file names are the user's: see codegen.cstr.
    return c_comment(text, limit=400)


class Step:
    """One unit of ``sg_main``: a node, or a fused group emitted under its root.

    Attributes
    ----------
    index : int
        1-based position in the C source (``label`` is ``"K<index>"``).
    root : Apply
        The node emitted; for a fused group, the member whose result is kept.
    members : list of Apply
        The nodes computed, in evaluation order (``[root]`` when alone).
    blas : list of str
        The BLAS-running C functions the step's code calls (each once).
    buffers : list of (Variable, str)
        Results given fresh memory: ``"workspace"`` (the per-call arena) or
        ``"output"`` (handed to the caller).
    over : SharedVariable or None
        For an update the kernel writes over its variable's own array when
        the call gives it away (nothing else references the array): that
        variable.
    """

    __slots__ = ("index", "root", "members", "blas", "buffers", "over")

    def __init__(self, index, root, members):
        self.index, self.root, self.members = index, root, list(members)
        self.blas, self.buffers, self.over = [], [], None

    @property
    def label(self):
        return f"K{self.index}"

    @property
    def fused(self):
        return len(self.members) > 1

    def title(self):
        """``fused loop of 3 ops: sub, mul, tanh`` or ``matmul``."""
        if not self.fused:
            return str(self.root.op)
        names = ", ".join(getattr(n.op, "name", None) or str(n.op) for n in self.members)
        return f"fused loop of {len(self.members)} ops: {names}"

    def comment(self):
        """The C comment heading the step: its nodes, their lines and gradient origins."""
        if not self.fused:
            return f"/* {self.label}: {_comment_safe(node_text(self.root))} */"
        lines = [f"/* {self.label}: fused loop of {len(self.members)} ops, evaluated in this "
                 f"order per element; only the last one's result is stored"]
        lines += [f" *   {_comment_safe(node_text(n))}" for n in self.members]
        return "\n".join(lines) + "\n */"

    def note_code(self, lines, start):
        """Record the BLAS calls among ``lines[start:]`` (the step's C) and head each with a
        comment naming the node, indented as the call."""
        k = start
        while k < len(lines):
            m = BLAS_CALL.search(lines[k])
            if m is None or lines[k].lstrip().startswith("/*"):
                k += 1
                continue
            if m.group(1) not in self.blas:
                self.blas.append(m.group(1))
            indent = lines[k][:len(lines[k]) - len(lines[k].lstrip())]
            lines.insert(k, f"{indent}/* BLAS ({m.group(1)}): "
                            f"{_comment_safe(node_text(self.root))} */")
            k += 2

    def __repr__(self):
        return f"<Step {self.label} {self.title()}>"
