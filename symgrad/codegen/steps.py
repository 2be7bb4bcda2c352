"""What ``sg_main`` does, step by step: the base of the loop IR's steps.

A compiled function is a list of steps (``codegen.ir``): a fused loop, a
BLAS call, a node lowered by its op. Steps are numbered ``K1``, ``K2``, ...
in the order of the C source; ``f.source`` heads each with a comment naming
its nodes and the user's lines (and each BLAS call with the node it
computes), and ``sg.debugprint``, ``sg.to_dot``, ``f.profile_report()`` and
``sg.explain`` refer to steps by the same number.
"""

from dataclasses import dataclass, field

from .cstr import c_comment

__all__ = ["Step", "node_text"]


def node_text(node):
    """``mul at model.py:12``, with ``(gradient of tanh)`` for a node a gradient rule made."""
    # Only what a pickled graph keeps (op, trace, grad_of): an unpickled function
    # must write the same comments (the cache key ignores comments, but f.source
    # should read the same).
    text = f"{node.op} at {node.trace.file_line(short=True)}"
    if node.grad_of is not None:
        text += f" (gradient of {_op_name(node.grad_of)})"
    return text


def _op_name(node):
    return getattr(node.op, "name", None) or str(node.op)


def _comment_safe(text):
    # Op parameters and file names are the user's: see codegen.cstr.
    return c_comment(text, limit=400)


@dataclass(eq=False)
class Step:
    """One unit of ``sg_main``: a node, or several computed together.

    Attributes
    ----------
    index : int
        1-based position in the C source (``label`` is ``"K<index>"``).
    root : Apply
        The node whose result the step keeps.
    members : list of Apply
        The nodes computed, in evaluation order (``[root]`` when alone).
    buffers : list of (Variable, str)
        Results given fresh memory: ``"workspace"`` (the per-call arena) or
        ``"output"`` (handed to the caller). Filled when the step is rendered.
    over : SharedVariable or None
        For an update written over its variable's own array when the call
        gives it away (nothing else references the array): that variable.
    frees : list of Variable
        Values other steps made that nothing reads after this step, directly
        or through a value sharing their memory (``codegen.lower.plan_frees``):
        their workspace blocks go back to the arena once the step has run.
    scope : str
        For a step of a loop's or branch's body, that step's label and the
        body's title (``"K5.step"``): the step is ``K5.step.3``.
    """

    index: int
    root: object
    members: list
    buffers: list = field(default_factory=list)
    over: object = None
    frees: list = field(default_factory=list)
    scope: str = ""

    @property
    def label(self):
        return f"{self.scope}.{self.index}" if self.scope else f"K{self.index}"

    @property
    def fused(self):
        return len(self.members) > 1

    @property
    def blas(self):
        """The BLAS routines the step runs (empty when none)."""
        return []

    def fused_text(self):
        """What a fused step is, for the notes of ``sg.debugprint`` and ``sg.to_dot``:
        ``fused loop of 3 ops``."""
        return f"fused loop of {len(self.members)} ops"

    def title(self):
        """``fused loop of 3 ops: sub, mul, tanh`` or ``matmul``."""
        if not self.fused:
            return str(self.root.op)
        names = ", ".join(_op_name(n) for n in self.members)
        return f"fused loop of {len(self.members)} ops: {names}"

    def comment(self):
        """The C comment heading the step: its nodes, their lines and gradient origins."""
        if not self.fused:
            return f"/* {self.label}: {_comment_safe(node_text(self.root))} */"
        lines = [f"/* {self.label}: fused loop of {len(self.members)} ops, evaluated in this "
                 f"order per element; only the last one's result is stored"]
        lines += [f" *   {_comment_safe(node_text(n))}" for n in self.members]
        return "\n".join(lines) + "\n */"

    def __repr__(self):
        return f"<{type(self).__name__} {self.label} {self.title()}>"
