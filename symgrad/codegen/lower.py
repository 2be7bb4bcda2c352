"""From the rewritten graph to the loop IR (``codegen.ir``).

The pipeline, in order:

1. ``graph_leaves`` the kernel's inputs: function inputs, shared variables, constants
                    (the one order every evaluator binds them in, ``symgrad.graph``);
2. ``plan_fusion``  group elementwise nodes into fused loops: a node whose
                    result feeds exactly one elementwise consumer of the same
                    rank (and is not itself an output) is computed inside that
                    consumer's loop; a float sum, mean or sum_to absorbs the
                    elementwise group that only it reads (an accumulating loop);
3. ``_plan_in_place`` the updates that may be written over their shared
                    variable's memory;
4. ``to_program``   one step per node or fused group, in topological order.

Nothing here writes C: ``codegen.render_c`` renders the program.
"""

from ..graph import Constant, graph_leaves, toposort, unsettled_lengths
from ..ops.gemm import Gemm
from ..ops.reduce import Mean, Sum
from ..ops.shape import SumTo
from .ir import (Accumulation, Apply, BlasCall, Branch, CopyOf, FusedLoop, InPlaceUpdates, Lit,
                 Loop, OpStep, Program, Ref, Update, is_flat_index)
from .ir import walk as ir_walk
from .steps import Step

__all__ = ["to_program", "plan_fusion", "MAXDIM"]

MAXDIM = 16  # SG_MAXDIM of sg_abi.h (tests check that they agree)


def to_program(inputs, outputs, updates=(), probe=False, scope=""):
    """The :class:`~codegen.ir.Program` computing ``outputs`` from ``inputs``.

    ``updates`` lists ``(output index, SharedVariable)``: the outputs that are
    updates of shared variables; those that can be written over the
    variable's own memory become the program's ``in_place`` updates. With
    ``probe``, the results of every step (but updates written in place, which
    are outputs anyway) become the program's ``probes``.

    A step with bodies of its own (:class:`~codegen.ir.Loop`,
    :class:`~codegen.ir.Branch`) gets each inner graph lowered the same way,
    its steps labelled within the step's (``scope``); the constants a body
    reads are appended to the program's leaves, so the kernel takes them as
    inputs like its own.
    """
    leaves = graph_leaves(inputs, outputs)
    nodes = toposort(outputs)
    _check_ranks(leaves, nodes)
    fusion = plan_fusion(nodes, outputs)
    in_place = _plan_in_place(outputs, updates, leaves, nodes, fusion)
    deferred = {id(u.node) for u in in_place}
    steps = []
    for node in nodes:
        if id(node) in fusion.absorbed or id(node) in deferred:
            continue
        steps.append(_step(node, fusion, len(steps) + 1, scope))
    program = Program(leaves, list(outputs), steps)
    _lower_bodies(program)
    if probe:
        program.probes = [o for step in steps for o in step.root.outputs
                          if not getattr(step.root.op, "virtual", False)]
    if in_place:
        ups = []
        for c in in_place:
            step = _step(c.node, fusion, len(steps) + len(ups) + 1, scope)
            step.over = c.sv
            ups.append(Update(step, c.i, c.k, c.sv))
        checks = [(outputs[i], unsettled_lengths(sv.type.shape, outputs[i].type.shape))
                  for i, sv in updates]
        program.in_place = InPlaceUpdates(ups, [(v, ax) for v, ax in checks if ax])
    return program


def _step(node, fusion, index, scope=""):
    if id(node) in fusion.roots:
        step = _fused_loop(index, node, fusion)
    else:
        lower = getattr(node.op, "lower", None)
        if lower is None:
            step = OpStep(index, node, [node])  # no lowering: rendering says so (NoLowering)
        else:  # a step of the op's own (a BLAS call, a loop), or its statements
            made = lower(node)
            if isinstance(made, Step):
                made.index = index
                step = made
            else:
                step = OpStep(index, node, [node], body=list(made))
                step.donor = _copy_donor(step, fusion)
    step.scope = scope
    return step


def _lower_bodies(program):
    """Lower the inner graphs of ``program``'s loops and branches into their ``bodies``;
    the constants they read join ``program.leaves``."""
    have = {id(v) for v in program.leaves}
    for step in program.steps:
        if not isinstance(step, (Loop, Branch)):
            continue
        titles = [t for t, _ in step.root.op.inner_graphs()]
        bodies = []
        for title, (inputs, outputs) in zip(titles, step.nested()):
            body = to_program(inputs, outputs, scope=f"{step.label}.{title}")
            bodies.append(body)
            for v in body.leaves[len(inputs):]:
                if id(v) not in have:
                    have.add(id(v))
                    program.leaves.append(v)
        step.bodies = bodies
        if isinstance(step, Loop):
            step.written = _written_in_place(step)


def _written_in_place(loop):
    """For each output of ``loop``, the step of its body that may write each iteration's
    value straight into the output's place (``Loop.written``), or None.

    A step qualifies when the renderer gives its result fresh memory -- a BLAS
    call, a fused loop that does not accumulate (its result then never takes an
    operand's memory), a step of an op that allocates the value -- and the value
    is that output's only: an inner value returned as two outputs is written
    into the first one's place and copied into the other's. Nothing writes over
    a body's output once it is made (outputs never lend their memory), and the
    place of iteration ``t`` is read by no one before (a stacked recurrent
    output's previous value is entry ``t - 1``; a final value alternates
    between two buffers, the previous value in the other one).
    """
    made = {}
    for s in loop.body.steps:
        if isinstance(s, BlasCall) or (isinstance(s, FusedLoop) and s.accumulation is None):
            made[id(s.root.outputs[0])] = s
        elif isinstance(s, OpStep) and s.body is not None:
            for v in s.allocs:
                made.setdefault(id(v), s)
    written, taken = [], set()
    for o in loop.outputs:
        s = made.get(id(o))
        if s is None or id(o) in taken:
            written.append(None)
            continue
        taken.add(id(o))
        if isinstance(s, FusedLoop):
            s.donor = None
        written.append(s)
    return written


# --------------------------------------------------------------------------- fusion

class Fusion:
    """Which nodes are computed inside another's loop.

    ``roots``: id(root) -> the group's members in topological order (the root
    last); ``absorbed``: ids of the members that are not roots; ``uses``:
    id(var) -> how many times nodes read it (an output counts twice).
    """

    def __init__(self):
        self.absorbed = set()
        self.roots = {}
        self.uses = {}

    def members(self, root):
        return self.roots[id(root)]


def is_elementwise(node):
    """A node the fused loops can compute per element (its op has a scalar form)."""
    return getattr(node.op, "c_scalar", None) is not None and len(node.outputs) == 1


def is_accumulation(node):
    """A float sum, mean or sum_to whose result has its input's dtype."""
    if type(node.op) not in (Sum, Mean, SumTo):
        return False
    x, out = node.inputs[0], node.outputs[0]
    return (len(node.outputs) == 1
            and x.dtype in ("float32", "float64") and out.dtype == x.dtype)


def plan_fusion(nodes, outputs):
    """The fused groups of ``nodes`` (see the module docstring)."""
    uses = {}
    for node in nodes:
        for v in node.inputs:
            uses[id(v)] = uses.get(id(v), 0) + 1
    for v in outputs:
        uses[id(v)] = uses.get(id(v), 0) + 2
    fusion = Fusion()
    fusion.uses = uses
    owner_group = {}
    for node in reversed(nodes):
        if not is_elementwise(node):
            continue
        root = owner_group.get(id(node), node)
        members = fusion.roots.setdefault(id(root), [])
        members.append(node)
        for v in node.inputs:
            p = v.owner
            if (p is not None and is_elementwise(p) and uses.get(id(v)) == 1
                    and p.outputs[0].ndim == node.outputs[0].ndim and id(p) not in owner_group):
                owner_group[id(p)] = root
                fusion.absorbed.add(id(p))
    order = {id(n): i for i, n in enumerate(nodes)}
    for members in fusion.roots.values():
        members.sort(key=lambda n: order[id(n)])
    for node in nodes:
        if not is_accumulation(node):
            continue
        x = node.inputs[0]
        members = [node]
        if (x.owner is not None and is_elementwise(x.owner) and id(x.owner) in fusion.roots
                and uses.get(id(x)) == 1):
            members = fusion.roots.pop(id(x.owner)) + members
            fusion.absorbed.add(id(x.owner))
        # Alone, the op's own lowering runs the same loop in the support library
        # (sg_sum_into, sg_sum_to), compiled once rather than once per node.
        if len(members) > 1:
            fusion.roots[id(node)] = members
    return fusion


def _accumulation(node):
    op = node.op
    if isinstance(op, (Sum, Mean)):
        return Accumulation("mean" if isinstance(op, Mean) else "sum", tuple(op.axis),
                            bool(op.keepdims))
    return Accumulation("sum_to")


def _operands(members):
    """The values the members read from outside the group, in order of first use."""
    inside = {id(n.outputs[0]) for n in members}
    found = []
    for n in members:
        for v in n.inputs:
            if id(v) not in inside and all(v is not u for u in found):
                found.append(v)
    return found


def _fused_loop(index, root, fusion):
    members = fusion.members(root)
    accumulation = None
    elementwise = members
    if is_accumulation(root):
        accumulation = _accumulation(root)
        elementwise = members[:-1]
    reads = _operands(elementwise) if elementwise else [root.inputs[0]]
    operands, modes, value = [], [], {}
    for v in reads:
        if isinstance(v, Constant) and v.ndim == 0:
            value[id(v)] = Lit(v.data, v.dtype)
            continue
        # one element, known when the graph is built: read once, before the loop (but a
        # random draw's index, whose element is its position, not memory: ops/random.py)
        modes.append("hoist" if all(d == 1 for d in v.type.shape) and not is_flat_index(v)
                     else "load")
        value[id(v)] = Ref(len(operands))
        operands.append(v)
    exprs = []
    for node in elementwise:
        can_fail = getattr(node.op, "scalar_can_fail", None)
        e = Apply(node, [value[id(v)] for v in node.inputs],
                  bool(can_fail(node)) if can_fail else False)
        value[id(node.outputs[0])] = e
        exprs.append(e)
    step = FusedLoop(index, root, list(members), operands=operands, modes=modes, exprs=exprs,
                     accumulation=accumulation)
    if accumulation is None:
        step.donor = _donor(step, fusion)
    else:
        step.term = value[id(root.inputs[0])]
    return step


def _copy_donor(step, fusion):
    """The value an op step's :class:`~codegen.ir.CopyOf` copies that its result may take
    the memory of instead (an update of an array nothing reads afterwards, e.g. a gradient
    added into slices of an array in turn), or None.

    As for a fused loop's donor: a value another step made (the renderer checks that it
    got a block of its own), of the result's dtype and rank, read by this step alone.
    """
    node = step.root
    for s in ir_walk(step.body):
        if not isinstance(s, CopyOf) or s.var is not node.outputs[0]:
            continue
        x = s.base
        if (x.owner is not None and x.dtype == s.var.dtype and x.ndim == s.var.ndim
                and fusion.uses.get(id(x), 0) == sum(1 for u in node.inputs if u is x)):
            return x
    return None


def _donor(step, fusion):
    """An operand whose memory the loop's result may take, or None.

    Only a value another step made into the workspace qualifies (not an input,
    shared value, constant, output or view) -- which the renderer checks, as
    it alone knows where values live -- of the result's dtype and rank that
    nothing but this loop reads: each element's operands are all loaded before
    its result is stored, so element i is read before it is overwritten.
    Whether it has the result's shape and is contiguous is checked at run time.
    """
    out = step.root.outputs[0]
    for v, mode in zip(step.operands, step.modes):
        if mode != "load" or v.owner is None or v.dtype != out.dtype or v.ndim != out.ndim:
            continue
        inner_uses = sum(1 for n in step.members for u in n.inputs if u is v)
        if fusion.uses.get(id(v), 0) == inner_uses:
            return v
    return None


# --------------------------------------------------------------------------- updates in place
#
# `W - lr * (h.T @ g)` becomes one gemm with beta = 1 whose result starts as a
# copy of W (ops/gemm.py); `m * 0.9 + g` or Adam's step is a fused loop that
# reads m once per element. When the caller gives the variable's memory away
# for the call (sg_abi.h, ws->donate: nothing else references the array), the
# kernel writes such an update over the variable itself: no copy, no second
# buffer. An update may read another's new value (Adam's step reads m and v):
# it comes after it. How a failed call is kept from changing any variable:
# codegen.ir.InPlaceUpdates.

class _Candidate:
    def __init__(self, i, k, node, sv, kind):
        self.i, self.k, self.node, self.sv, self.kind = i, k, node, sv, kind


def _plan_in_place(outputs, updates, leaves, nodes, fusion):
    """The updates that can be written over their variable, in graph order.

    An update qualifies when its result is that one output only, and either
    it is a gemm accumulating into the variable itself (2-d), or it is the
    root of a fused loop (float, not a reduction, no value errors) that
    reads the variable. Its result may feed only the loops of other
    qualifying updates.
    """
    if not updates:
        return []
    leaf_at = {id(v): k for k, v in enumerate(leaves)}
    cands = {}
    for i, sv in updates:
        e = outputs[i]
        node = e.owner
        if (node is None or id(sv) not in leaf_at or sv.dtype != e.dtype or sv.ndim != e.ndim
                or sum(1 for o in outputs if o is e) != 1 or id(node) in fusion.absorbed):
            continue
        if isinstance(node.op, Gemm) and len(node.inputs) == 3 and node.inputs[2] is sv and sv.ndim == 2:
            cands[id(node)] = _Candidate(i, leaf_at[id(sv)], node, sv, "gemm")
        elif (id(node) in fusion.roots and not is_accumulation(node)
              and e.dtype in ("float32", "float64")
              and not any(_scalar_can_fail(n) for n in fusion.members(node))
              and any(v is sv for v in _operands(fusion.members(node)))):
            cands[id(node)] = _Candidate(i, leaf_at[id(sv)], node, sv, "loop")
    while True:  # drop updates whose result something else reads, until none is left
        member_of = {id(m): r for r, c in cands.items() if c.kind == "loop"
                     for m in fusion.roots[r]}
        drop = [r for r, c in cands.items()
                if any(any(v is c.node.outputs[0] for v in n.inputs)
                       and member_of.get(id(n)) not in cands for n in nodes)]
        if not drop:
            break
        for r in drop:
            del cands[r]
    order = {id(n): j for j, n in enumerate(nodes)}
    return sorted(cands.values(), key=lambda c: order[id(c.node)])


def _scalar_can_fail(node):
    can_fail = getattr(node.op, "scalar_can_fail", None)
    return bool(can_fail(node)) if can_fail else False


def _check_ranks(leaves, nodes):
    """Refuse a graph with an array of more than SG_MAXDIM axes: its descriptor cannot hold it."""
    for v in leaves + [o for n in nodes for o in n.outputs]:
        if v.ndim > MAXDIM:
            made = f", made by {v.owner.op} at {v.owner.trace}" if v.owner is not None else ""
            raise ValueError(f"mode \"c\" handles arrays of at most {MAXDIM} dimensions, but "
                             f"{v.name or 'a value'} of type {v.type} has {v.ndim}{made}; use "
                             f"mode=\"py\" for it")
