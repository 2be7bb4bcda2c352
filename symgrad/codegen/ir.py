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
    A node its op lowers itself (``op.lower(node)``) into a short list of
    statements (below): allocations, views, calls into the support library,
    checks. A renderer turns the statements into code; every analysis reads
    them (which steps can fail, run BLAS, make buffers).
:class:`InPlaceUpdates`
    The updates written over their shared variable's memory when the caller
    gives it away: each is a :class:`BlasCall` or :class:`FusedLoop` whose
    result memory is chosen at run time (see ``codegen.lower``).

Each step keeps the graph nodes it computes (``members``; ``root`` is the
one whose value it keeps), so every line of generated C can name the op and
the user's line it comes from.

The statements of an :class:`OpStep` (what ``op.lower(node)`` returns)
------------------------------------------------------------------------

Plain data, no C text: the renderer (``codegen.render_c``) writes them, and a
second renderer could write the same list for another target. A statement
works on *variables* -- the graph's values (their descriptors: data, shape,
strides) and :class:`Local` objects a statement declares -- and scalar
*expressions*.

Expressions (each has a ``dtype``; lengths, strides and counts are int64):

==========================  ==================================================
``Int(v)``, ``Lit(v, dt)``  literals (``Lit``: of a given dtype; shared with
                            the fused loops' expression trees)
``Dim(var, axis)``          ``var``'s runtime length on ``axis``
``Stride(var, axis)``       its stride on ``axis``, in elements
``Size(var)``               its number of elements
``Elem(var, index)``        one element of a small value (a 0-d count, an
                            entry of a shape vector), in ``var``'s dtype
``Local(hint, dtype)``      a local a :class:`Let`, :class:`Array` or
                            :class:`Declare` introduces; ``At(local, i)`` is
                            element ``i`` of a local array
``Bin(op, a, b)``           ``+ - * / % == != < <= > >= and or``; ``Not(a)``,
                            ``Cast(dtype, a)``, ``Select(cond, a, b)``
``Fn(name, args, dtypes)``  the value of a support-library function that
                            cannot fail (a test, a count)
==========================  ==================================================

Arguments of calls only: ``Arr(var)`` (its descriptor), ``Arrs(vars)`` (an
array of descriptors), ``Data(var)``,
``Shape(var)`` (its lengths, an int64 array), ``Addr(local)`` (where a call
stores a result), ``Workspace()`` (the call's arena), ``ItemSize(dtype)``,
``Ints(values)`` (a constant int array),
``ValuePtr(value, dtype)`` (a constant of ``dtype``, by address),
``FnPtr(name, dtypes)`` (a support function passed as an argument),
``Epilogue(loop, source, axes)`` (a fused loop a call applies to its result
as it stores it: :class:`EpilogueStep`). In a
:class:`Check`'s message, ``ShapeText(shape, ndim)`` formats a shape.

Statements:

==========================================  ===================================
``Let(local, value)``                       a scalar local set once
``Array(local, values=None)``               a local int64 array of
                                            ``local.length`` (filled with
                                            ``values`` when given)
``Assign(target, value)``                   sets a local or ``At(local, i)``
``Declare(var)``                            a descriptor that a :class:`Call`
                                            fills (a library-made view, a
                                            reshape); a :class:`Local` of dtype
                                            "arr" is the step's own, one of
                                            dtype "index" an index that calls
                                            resolve (sg_index.h)
``Alloc(var, shape)``                       fresh C-contiguous memory for a
                                            result (the renderer decides:
                                            output block or workspace)
``View(var, base, offset, shape, strides)``  ``var`` shares ``base``'s memory
``CopyOf(var, base)``                       ``var`` holds a copy of ``base`` (of
                                            its shape, C-contiguous), to be
                                            written into: ``base``'s own memory
                                            when nothing reads ``base`` after
                                            the step (``OpStep.donor``), else a
                                            fresh block
``Call(name, args, dtypes, can_fail, blas)``  a support-library function
``Check(cond, kind, message, args)``        fails ("shape", "index", "value"
                                            or "nomem") when ``cond`` holds
``Store(var, index, value)``                writes one element
``If(cond, body, orelse)``                  ``body``/``orelse``: statements
==========================================  ===================================

A :class:`Call` names the function without its dtype suffixes: one suffix
per entry of ``dtypes`` is appended (``Call("sg_softmax", ..., dtypes=
("float32",))`` is ``sg_softmax_f32``). A call that ``can_fail`` reports
through the step's failure site (its messages start with "<op> at
<file>:<line>: ") and ends the step; ``blas`` names the BLAS routines it
runs. Messages of a :class:`Check` are printf formats with ``%lld`` for int
arguments, ``%g`` for float ones and ``%s`` for a :class:`ShapeText`.
"""

from dataclasses import dataclass, field

from .steps import Step, node_text, _comment_safe


def _comment_text(node):
    return _comment_safe(node_text(node))

__all__ = ["Step", "FusedLoop", "Accumulation", "BlasCall", "OpStep", "InPlaceUpdates",
           "Update", "Ref", "Lit", "Apply", "Program", "Loop", "Branch",
           # expressions and arguments of op statements
           "Int", "Dim", "Stride", "Size", "Elem", "Local", "At", "Bin", "Not", "Cast", "Select",
           "Fn", "Arr", "Arrs", "Data", "Shape", "Addr", "Workspace", "ItemSize", "Ints", "ValuePtr",
           "FnPtr", "Epilogue",
           "ShapeText", "EpilogueStep",
           # op statements
           "Let", "Array", "Assign", "Declare", "Alloc", "CopyOf", "View", "Call", "Check", "Store",
           "If",
           "walk", "shape_of", "is_flat_index"]


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


# --------------------------------------------------------------------------- op statements:
# expressions (see the module's docstring for the vocabulary)

_INT = "int64"
_COMPARE = {"==", "!=", "<", "<=", ">", ">=", "and", "or"}
_ARITH = {"+", "-", "*", "/", "%"}


@dataclass(eq=False)
class Int:
    """An int64 literal."""

    value: int
    dtype = _INT


@dataclass(eq=False)
class Dim:
    """``var``'s runtime length on ``axis``."""

    var: object
    axis: int
    dtype = _INT


@dataclass(eq=False)
class Stride:
    """``var``'s stride on ``axis``, in elements."""

    var: object
    axis: int
    dtype = _INT


@dataclass(eq=False)
class Size:
    """``var``'s number of elements."""

    var: object
    dtype = _INT


@dataclass(eq=False)
class Elem:
    """Element ``index`` (an expression or int) of ``var``'s memory, in ``var``'s dtype."""

    var: object
    index: object = 0

    @property
    def dtype(self):
        return self.var.dtype


@dataclass(eq=False)
class Local:
    """A local of one step: a scalar (``Let``), an int64 array of ``length`` (``Array``),
    with dtype "arr" a descriptor of ``ndim`` axes holding ``elem`` values (made by
    ``Declare`` and a call filling it, or by ``Let`` of an :class:`Fn` returning one) or,
    with dtype "index", an indexing op's index that calls resolve against an array and
    then apply to it (made by ``Declare``, passed by :class:`Addr`; ``sg_index`` of
    the support library's sg_index.h).

    Locals are told apart by identity; ``hint`` only seeds the name a renderer gives them.
    """

    hint: str
    dtype: str = _INT
    length: int = None
    ndim: int = None
    elem: str = None


@dataclass(eq=False)
class At:
    """Element ``index`` of the local array ``local``."""

    local: Local
    index: object

    @property
    def dtype(self):
        return self.local.dtype


@dataclass(eq=False)
class Bin:
    """``a op b``: arithmetic (in ``a``'s dtype; ``/`` and ``%`` of ints as C's) or a comparison
    / logical connective (a bool)."""

    op: str
    a: object
    b: object

    def __post_init__(self):
        if self.op not in _COMPARE | _ARITH:
            raise ValueError(f"unknown operator {self.op!r}")

    @property
    def dtype(self):
        return "bool" if self.op in _COMPARE else self.a.dtype


@dataclass(eq=False)
class Not:
    """Logical negation."""

    a: object
    dtype = "bool"


@dataclass(eq=False)
class Cast:
    """``a`` converted to ``dtype`` (C's conversion)."""

    dtype: str
    a: object


@dataclass(eq=False)
class Select:
    """``a`` where ``cond`` holds, else ``b``."""

    cond: object
    a: object
    b: object

    @property
    def dtype(self):
        return self.a.dtype


@dataclass(eq=False)
class Fn:
    """The value of a support-library function that cannot fail (``dtypes``: as for
    :class:`Call`)."""

    name: str
    args: list
    dtypes: tuple = ()
    dtype: str = _INT


# arguments of calls only

@dataclass(eq=False)
class Arr:
    """``var``'s descriptor (data, shape, strides), passed by address."""

    var: object


@dataclass(eq=False)
class Arrs:
    """The descriptors of ``vars`` (values or "arr" locals), as an array of their addresses."""

    vars: list


@dataclass(eq=False)
class Data:
    """``var``'s data pointer."""

    var: object


@dataclass(eq=False)
class Shape:
    """``var``'s lengths (an int64 array) -- or, for a :class:`Local` int64 array, its
    values."""

    var: object


@dataclass(eq=False)
class Addr:
    """The address of a scalar :class:`Local` (or of an "index" one), for a call to store a
    result in."""

    local: object


@dataclass(eq=False)
class Workspace:
    """The call's workspace arena (scratch memory freed when the call returns)."""


@dataclass(eq=False)
class ItemSize:
    """The size in bytes of one element of ``dtype``."""

    dtype: str


@dataclass(eq=False)
class Ints:
    """A constant array of ints (axes, flags, a permutation)."""

    values: tuple


@dataclass(eq=False)
class ValuePtr:
    """The constant ``value`` of ``dtype``, by address (one element)."""

    value: object
    dtype: str


@dataclass(eq=False)
class FnPtr:
    """The support-library function ``name`` (with one suffix per ``dtypes``) as an argument."""

    name: str
    dtypes: tuple = ()


@dataclass(eq=False)
class Epilogue:
    """The elementwise :class:`FusedLoop` ``loop`` as an argument: a call applies it to
    its result as it stores it (``sg_conv_epi`` of sg_conv.h: the loop's row function,
    its hoisted scalars and loaded operands). ``source`` is the operand of ``loop`` that
    is the call's own result, never stored; ``axes[a]``: the loop result's axis for axis
    ``a`` of the call's result (-1: an axis of length 1 the loop's operand dropped)."""

    loop: object
    source: object
    axes: tuple


@dataclass(eq=False)
class ShapeText:
    """In a :class:`Check`'s message: the ``ndim`` lengths ``shape`` (a :class:`Shape`)
    written as ``(2, 3)``."""

    shape: object
    ndim: int


# statements

@dataclass(eq=False)
class Let:
    """A scalar local set to ``value`` (of the local's dtype)."""

    local: Local
    value: object


@dataclass(eq=False)
class Array:
    """A local int64 array of ``local.length`` entries, set to ``values`` when given."""

    local: Local
    values: list = None


@dataclass(eq=False)
class Assign:
    """``target`` (a scalar :class:`Local` or an :class:`At`) set to ``value``."""

    target: object
    value: object


@dataclass(eq=False)
class Declare:
    """A descriptor for ``var`` that a later :class:`Call` fills (by :class:`Arr`)."""

    var: object


@dataclass(eq=False)
class Alloc:
    """Fresh C-contiguous memory for ``var`` of the runtime lengths ``shape`` (expressions).

    Whether it is a block handed to the caller (a function output) or
    workspace memory is the renderer's choice. It fails (out of memory, or a
    size past what memory can hold) with a message naming the op.
    """

    var: object
    shape: list


@dataclass(eq=False)
class CopyOf:
    """``var`` made a C-contiguous copy of ``base`` that the step then writes into (an
    update of an array, never of its input in place).

    The renderer may give ``var`` ``base``'s own memory instead, with no copy, when
    ``base`` is the step's ``donor`` (``codegen.lower``: nothing reads it after the
    step, another step gave it a block of its own) and is contiguous at run time.
    Otherwise, and as an :class:`Alloc`, fresh memory (which may run out).
    """

    var: object
    base: object


@dataclass(eq=False)
class View:
    """``var`` as a view of ``base``'s memory: ``offset`` elements in, with the given lengths
    and strides (expressions, in elements)."""

    var: object
    base: object
    offset: object
    shape: list
    strides: list


@dataclass(eq=False)
class Call:
    """A call of the support-library function ``name`` (+ one suffix per entry of ``dtypes``).

    ``can_fail``: it reports errors through the step's failure site and the
    step ends when it does. ``blas``: the BLAS routines it runs (sgemm, dgemm).
    """

    name: str
    args: list
    dtypes: tuple = ()
    can_fail: bool = True
    blas: tuple = ()


@dataclass(eq=False)
class Check:
    """Fail with error ``kind`` ("shape", "index", "value", "nomem") when ``cond`` holds;
    ``message`` (a printf format) and ``args`` follow "<op> at <file>:<line>: "."""

    cond: object
    kind: str
    message: str
    args: list = field(default_factory=list)

    def __post_init__(self):
        if self.kind not in ("shape", "index", "value", "nomem"):
            raise ValueError(f"unknown error kind {self.kind!r}")


@dataclass(eq=False)
class Store:
    """Element ``index`` of ``var`` set to ``value`` (converted to ``var``'s dtype)."""

    var: object
    index: object
    value: object


@dataclass(eq=False)
class If:
    """``body`` when ``cond`` holds, else ``orelse`` (lists of statements)."""

    cond: object
    body: list
    orelse: list = field(default_factory=list)


def walk(statements):
    """Every statement of ``statements``, those inside an :class:`If` included, in order."""
    for s in statements:
        yield s
        if isinstance(s, If):
            yield from walk(s.body)
            yield from walk(s.orelse)


def shape_of(var):
    """``var``'s runtime lengths, one :class:`Dim` per axis."""
    return [Dim(var, k) for k in range(var.ndim)]


def is_flat_index(var):
    """Whether ``var`` is a random draw's index (``random_index`` of ops/random.py): a
    fused loop computes its element from the element's position and never reads its
    memory, of which it has none."""
    return var.owner is not None and getattr(var.owner.op, "flat_index", False)


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
    """A node its op lowers itself: ``body`` is what ``op.lower(node)`` returns, a list of
    statements (:class:`Alloc`, :class:`Call`, :class:`Check`, ...).

    Everything asked of the step is read from them: the BLAS routines it
    runs (its calls' ``blas``), whether it can fail, the results it gives
    fresh memory (``allocs``).

    ``body`` is None for an op without a lowering (rendering it fails).
    ``donor``: the value a :class:`CopyOf` of the body copies that the result
    may take the memory of (``codegen.lower``), or None.
    """

    body: list = None
    donor: object = None

    @property
    def statements(self):
        """Every statement of the body, nested ones included (empty for the old protocol)."""
        return list(walk(self.body or ()))

    @property
    def blas(self):
        return [r for s in self.statements if isinstance(s, Call) for r in s.blas]

    @property
    def can_fail(self):
        """Whether the step may end the call with an error: it checks something, makes
        memory (which may run out) or calls a function that can fail."""
        if self.body is None:
            return True
        return any(isinstance(s, (Check, Alloc, CopyOf)) or (isinstance(s, Call) and s.can_fail)
                   for s in self.statements)

    @property
    def allocs(self):
        """The values the step gives fresh memory (its :class:`Alloc` and :class:`CopyOf`
        statements), in order."""
        return [s.var for s in self.statements if isinstance(s, (Alloc, CopyOf))]


@dataclass(eq=False, repr=False)
class EpilogueStep(OpStep):
    """A node whose op applies an elementwise fused loop to its result as it stores it
    (``codegen.lower``'s epilogues: a convolution's bias and activation): ``body`` is
    what ``op.lower_epilogue(node, result, Epilogue(loop, ...))`` returns. ``site`` is
    that node (failures of its call name it), ``loop`` the :class:`FusedLoop` whose
    root's value the step keeps; ``members`` are the node, any view of its result
    between them, and the loop's members; ``side_outputs`` the node's other results,
    which the step stores too (max pooling's indices).
    """

    site: object = None
    loop: object = None
    side_outputs: list = field(default_factory=list)

    def title(self):
        """``conv2d with an epilogue of 2 ops: add, tanh``."""
        ops = ", ".join(getattr(n.op, "name", None) or str(n.op) for n in self.loop.members)
        n = len(self.loop.members)
        return f"{self.site.op} with an epilogue of {n} op{'s' if n > 1 else ''}: {ops}"

    def fused_text(self):
        n = len(self.loop.members)
        return f"{self.site.op.name} + epilogue of {n} op{'s' if n > 1 else ''}"

    def comment(self):
        lines = [f"/* {self.label}: {_comment_safe(self.title())}, evaluated per element "
                 f"of its result as it is stored; only the last op's result is stored"]
        lines += [f" *   {_comment_text(n)}" for n in self.members]
        return "\n".join(lines) + "\n */"


@dataclass(eq=False, repr=False)
class Loop(Step):
    """A node that runs a program of its own once per iteration: ``sg.scan``'s loop.

    The op (``ops/scan.py``) says what the loop binds; ``codegen.lower``
    lowers its inner graph into ``body``, a :class:`Program` whose leaves are
    the inner graph's placeholders, then the constants it reads.

    ``n_steps``: the 0-d integer value holding the number of iterations.
    ``sequences``: ``(outer value, placeholder)``; at iteration ``t`` the
    placeholder is entry ``t`` of the value (its leading axis).
    ``recurrent``: ``(initial value, placeholder)``; the placeholder is the
    initial value at the first iteration, then output ``k``'s value of the
    iteration before (output ``k`` for the ``k``-th pair).
    ``others``: ``(outer value, placeholder)``, the same at every iteration.
    ``outputs``: the inner graph's outputs, one per output of the node;
    ``stacked[k]``: output ``k`` of the node is the stack of every
    iteration's value (else only the last one's, the initial value after no
    iteration); ``flipped[k]``: the stack holds iteration ``t``'s value at entry
    ``n_steps - 1 - t``. ``checked``: how many of the sequences, the first ones, have
    their lengths checked (the user's; the others are products of them).
    ``written[k]``: the step of ``body`` that writes each iteration's value of
    output ``k`` straight into its place -- entry ``t`` of the stack, or the
    buffer a final value alternates into -- rather than into memory of its
    own copied there after the iteration (None: copied). ``codegen.lower``
    chooses them; at run time the step falls back to memory of its own (and
    the value is copied) when the place does not exist yet (a stack whose
    shape only the first iteration tells) or its shape differs.
    """

    n_steps: object = None
    sequences: list = field(default_factory=list)
    recurrent: list = field(default_factory=list)
    others: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    stacked: list = field(default_factory=list)
    checked: int = None
    flipped: list = field(default_factory=list)
    body: "Program" = None
    written: list = field(default_factory=list)

    def nested(self):
        """``[(inputs, outputs)]``: the graphs ``codegen.lower`` lowers into ``bodies``."""
        inputs = [p for _, p in self.sequences + self.recurrent + self.others]
        return [(inputs, list(self.outputs))]

    @property
    def bodies(self):
        return [self.body]

    @bodies.setter
    def bodies(self, programs):
        (self.body,) = programs

    @property
    def blas(self):
        return sorted({r for s in self.body.all_steps() for r in s.blas}) if self.body else []

    def title(self):
        return f"{self.root.op}: a loop over a body of {len(self.body.steps)} steps"


@dataclass(eq=False, repr=False)
class Branch(Step):
    """A node that runs one of two programs, chosen at run time: ``sg.ifelse``.

    ``cond``: the 0-d value chosen on (nonzero: the first program);
    ``inputs``: ``(outer value, placeholder)``, what both branches read;
    ``branches``: each branch's outputs (inner values), one per output of the
    node. ``codegen.lower`` lowers each branch into ``bodies`` (programs whose
    leaves are the placeholders, then the constants the branch reads).
    """

    cond: object = None
    inputs: list = field(default_factory=list)
    branches: list = field(default_factory=list)
    bodies: list = field(default_factory=list)

    def nested(self):
        phs = [p for _, p in self.inputs]
        return [(phs, list(outs)) for outs in self.branches]

    @property
    def blas(self):
        return sorted({r for b in self.bodies for s in b.all_steps() for r in s.blas})

    def title(self):
        return f"{self.root.op}: a choice between {len(self.bodies)} bodies"


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
