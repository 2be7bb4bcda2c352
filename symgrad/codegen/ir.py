"""The loop IR: what a compiled function does, step by step, before it is C.

``codegen.lower`` turns the rewritten graph into a :class:`Program` of steps;
``codegen.render_c`` turns a program into one C translation unit. Everything
that asks what the kernel does -- which steps call BLAS, which can fail,
which write an update over its variable, where buffers are made, the
``[K<n>]`` labels of ``sg.debugprint``, ``f.profile_report()`` and
``sg.explain`` -- reads these objects, never the C text.

Steps, in the order ``sg_main`` runs them:

:class:`FusedLoop`
    A loop nest over the broadcast shape of its members' result: operands
    read through broadcast strides, one scalar expression tree per member
    (:class:`Ref`, :class:`Lit`, :class:`Apply`), the root's value stored or
    -- for an :class:`Accumulation` -- added into the result element it
    reduces to, in double for floats.
:class:`BlasCall`
    A general matrix product ``alpha * op(a) @ op(b) + beta * c``.
:class:`OpStep`
    A node lowered by its op's own ``c_code`` (a call into the support
    library, a view, an index walk).
:class:`InPlaceUpdates`
    The updates written over their shared variable's memory when the caller
    gives it away: each is a :class:`BlasCall` or :class:`FusedLoop` whose
    result memory is chosen at run time (see ``codegen.lower``).

Each step keeps the graph nodes it computes (``members``; ``root`` is the
one whose value it keeps), so every line of generated C can name the op and
the user's line it comes from.
"""

from dataclasses import dataclass, field

from .steps import Step

__all__ = ["Step", "FusedLoop", "Accumulation", "BlasCall", "OpStep", "InPlaceUpdates",
           "Update", "Ref", "Lit", "Apply", "Program"]


# --------------------------------------------------------------------------- scalar expressions

@dataclass(eq=False)
class Ref:
    """The current element of operand ``index`` of the loop (``FusedLoop.operands``)."""

    index: int


@dataclass(eq=False)
class Lit:
    """A scalar constant known when the graph is built."""

    value: object
    dtype: str


@dataclass(eq=False)
class Apply:
    """The scalar op of the elementwise graph node ``node`` applied to ``args``.

    ``can_fail``: the op may flag a value error for some element (an integer
    raised to a negative integer power); the loop then reports it, naming
    the node, after it ran.
    """

    node: object
    args: list
    can_fail: bool = False

    @property
    def dtype(self):
        return self.node.outputs[0].dtype


# --------------------------------------------------------------------------- steps

@dataclass(eq=False)
class Accumulation:
    """How a :class:`FusedLoop` reduces: every element is added into the result element it
    maps to (``kind`` "sum", "mean" or "sum_to"; ``axes``/``keepdims`` for sum and mean)."""

    kind: str
    axes: tuple = ()
    keepdims: bool = False

    @property
    def acc_dtype(self):
        """The accumulators' dtype: double for every float result (issue #11)."""
        return "float64"


@dataclass(eq=False, repr=False)
class FusedLoop(Step):
    """Elementwise members evaluated per element in one loop nest.

    ``operands``: the values read from outside the loop, in order, each with
    how it is read: ``"load"`` (through broadcast strides, per element),
    ``"hoist"`` (one element, read once before the loop) or ``"literal"``
    (a scalar constant written into the code). ``exprs[k]`` is member k's
    value as an expression tree over the operands and earlier members.
    ``accumulation``: None (the root's value is stored, one per element of
    the result) or how the root -- a sum, mean or sum_to, not itself an
    expression -- adds the last member's values up.
    ``term``: for an accumulation, the expression of the value added up.
    ``donor``: an operand made by another step whose memory the result may
    take (when it is workspace memory of the result's shape, checked at run
    time), or None.
    """

    operands: list = field(default_factory=list)
    modes: list = field(default_factory=list)
    exprs: list = field(default_factory=list)
    accumulation: Accumulation = None
    term: object = None
    donor: object = None

    @property
    def elementwise(self):
        """The members evaluated per element (all but an accumulation's root)."""
        return self.members[:-1] if self.accumulation is not None else self.members

    @property
    def loaded(self):
        return [v for v, m in zip(self.operands, self.modes) if m == "load"]

    @property
    def value_error(self):
        """The first member whose scalar op can flag a value error, or None."""
        for e in self.exprs:
            if e.can_fail:
                return e.node
        return None

    def work_per_element(self):
        """Work units per element (a load, a store or a cheap op is 1): the loop goes to
        threads when elements x units reach SG_PAR_WORK (sg_loops.h)."""
        return len(self.loaded) + 1 + sum(_cost(n) for n in self.elementwise)


def _cost(node):
    cost = getattr(node.op, "cost", None)
    return cost(node) if callable(cost) else 1


@dataclass(eq=False, repr=False)
class BlasCall(Step):
    """``out = alpha * op(a) @ op(b) + beta * c`` (``c`` may be None): a gemm of BLAS.

    ``product_trace``: the user line of the product itself (a gemm that
    absorbed a scaled update names the update's line as its own trace).
    """

    a: object = None
    b: object = None
    c: object = None
    trans_a: bool = False
    trans_b: bool = False
    alpha: float = 1.0
    beta: float = 0.0

    @property
    def out(self):
        return self.root.outputs[0]

    @property
    def routine(self):
        return {"float32": "sgemm", "float64": "dgemm"}.get(self.out.dtype, "gemm")

    @property
    def blas(self):
        return [self.routine]


@dataclass(eq=False, repr=False)
class OpStep(Step):
    """A node lowered by its op's own ``c_code(ctx, node)``.

    ``blas_routines``: the BLAS routines the op's lowering runs, as the op
    declares them (``op.blas_routines(node)``).
    """

    blas_routines: list = field(default_factory=list)

    @property
    def blas(self):
        return list(self.blas_routines)


@dataclass(eq=False)
class Update:
    """An update that may be written over its shared variable's memory.

    ``step``: the :class:`BlasCall` (accumulating into the variable, beta 1)
    or :class:`FusedLoop` (reading it) that computes the new value;
    ``out_index``: its position among the kernel's outputs; ``leaf``: the
    variable's position among the kernel's inputs.
    """

    step: Step
    out_index: int
    leaf: int
    var: object

    @property
    def kind(self):
        return "gemm" if isinstance(self.step, BlasCall) else "loop"


@dataclass(eq=False)
class InPlaceUpdates:
    """The updates of a kernel written over their variables when the caller allows it.

    Run last, in phases, so that a failed call changes no variable: every
    check, then each update's memory (its variable's, or fresh), then the
    other outputs handed over, then the writes, which cannot fail.
    ``shape_checks``: ``(update value, ((axis, length), ...))``, the lengths of a
    variable's static shape its update's type leaves open.
    """

    updates: list
    shape_checks: list = field(default_factory=list)


@dataclass(eq=False)
class Program:
    """A compiled function before it is C.

    ``leaves``: the kernel's inputs in order (function inputs, shared
    variables, constants); ``steps``: what runs, in order (an
    :class:`InPlaceUpdates` holds the steps of the updates, which run last);
    ``outputs``: the values handed to the caller; ``probes``: values the
    kernel also hands over, each copied right after the step that makes it
    (mode "debug" compares every step's result with the reference).
    """

    leaves: list
    outputs: list
    steps: list
    in_place: InPlaceUpdates = None
    probes: list = field(default_factory=list)

    def all_steps(self):
        """Every step, numbered as in the C source (updates in place last)."""
        extra = [u.step for u in self.in_place.updates] if self.in_place else []
        return list(self.steps) + extra
