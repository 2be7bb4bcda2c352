"""From the rewritten graph to the loop IR (``codegen.ir``).

The pipeline, in order:

1. ``graph_leaves`` the kernel's inputs: function inputs, shared variables, constants
                    (the one order every evaluator binds them in, ``symgrad.graph``);
2. ``plan_fusion``  group elementwise nodes into fused loops: a node whose
                    result only elementwise nodes of the same rank read, all of one
                    group (and is not itself an output), is computed inside that
                    group's loop; a float sum, mean or sum_to absorbs the
                    elementwise group that only it reads (an accumulating loop);
3. ``_plan_in_place`` the updates that may be written over their shared
                    variable's memory;
4. ``plan_epilogues`` the fused loops an op applies to its result as it stores
                    it (a convolution's bias and activation): the op's result
                    is never written and read back;
5. ``to_program``   one step per node or fused group, in topological order.

Nothing here writes C: ``codegen.render_c`` renders the program.
"""

from ..graph import Constant, graph_leaves, toposort, unsettled_lengths
from ..ops.gemm import Gemm
from ..ops.reduce import Mean, Sum
from ..ops.shape import DimShuffle, SumTo
from .ir import (Accumulation, Apply, Bin, BlasCall, Branch, CopyOf, Dim, Epilogue,
                 EpilogueStep, FusedLoop, InPlaceUpdates, Int, Lit, Loop, OpStep, Program,
                 Ref, Update, View, is_flat_index)
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
    epilogues = plan_epilogues(nodes, fusion, deferred)
    steps = []
    for node in _step_order(nodes, fusion, deferred, epilogues):
        if id(node) in epilogues:
            step = _epilogue_step(node, fusion, len(steps) + 1, *epilogues[id(node)])
            step.scope = scope
            steps.append(step)
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
    # (id(root), id(value)) -> how many times the group's members read the value: a node
    # all of whose reads are members of one group joins it (x * x, or a where reading a
    # value its condition reads too), computed once per element there; each of its
    # readers comes before it in this reversed order
    reads = {}
    for node in reversed(nodes):
        if not is_elementwise(node):
            continue
        root = owner_group.get(id(node), node)
        members = fusion.roots.setdefault(id(root), [])
        members.append(node)
        for v in node.inputs:
            p = v.owner
            key = (id(root), id(v))
            reads[key] = reads.get(key, 0) + 1
            if (p is not None and is_elementwise(p) and uses.get(id(v)) == reads[key]
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


# --------------------------------------------------------------------------- epilogues
#
# conv2d(x, w) + b, or tanh(conv2d(x, w) + b): the fused loop reading the
# convolution's output runs inside the convolution, on each channel plane of
# each image as the product leaves it (sg_conv.c), instead of as a pass of its
# own over the stored output. An op offers this with ``lower_epilogue(node,
# result, epilogue)``, its statements computing ``result`` (the loop's) with the
# loop applied (:class:`~codegen.ir.Epilogue`).

def _step_order(nodes, fusion, deferred, epilogues):
    """The nodes that head a step, in topological order: ``nodes``' order, but for a
    node that reads the shape of a result an epilogue keeps inside its step (the
    convolution's output, which only the epilogue's step describes): it waits, with what
    reads it, until that step."""
    hidden = {}  # id(value the epilogue's step makes or describes) -> id(its root)
    inside = set()
    for rid, (producer, view, _) in epilogues.items():
        for n in (producer, view):
            if n is not None:
                inside.add(id(n))
                hidden.update((id(o), rid) for o in n.outputs)
    waiting, blocked, order = [], set(), []

    def reads(node):
        return _operands(fusion.members(node)) if id(node) in fusion.roots else node.inputs

    def ready(node):  # an epilogue's root reads its own step's values
        return not any(id(v) in blocked or hidden.get(id(v), id(node)) != id(node)
                       for v in reads(node))

    def emit(node):
        order.append(node)
        if id(node) not in epilogues:
            return
        for k in [k for k, r in hidden.items() if r == id(node)]:
            del hidden[k]
        for n in list(waiting):  # in order: what a waiting node reads waited before it
            if n in waiting and ready(n):
                waiting.remove(n)
                blocked.difference_update(id(o) for o in n.outputs)
                emit(n)

    for node in nodes:
        if id(node) in fusion.absorbed or id(node) in deferred or id(node) in inside:
            continue
        if ready(node):
            emit(node)
        else:
            waiting.append(node)
            blocked.update(id(o) for o in node.outputs)
    if waiting:  # plan_epilogues refuses an epilogue whose operands wait for it
        raise AssertionError(f"steps left waiting for an epilogue: {waiting}")
    return order


def plan_epilogues(nodes, fusion, deferred=()):
    """id(loop root) -> (producer node, view node or None, the loop's operand it makes) for
    each fused loop its operand's producer applies as its epilogue.

    A loop qualifies when it stores its root (no accumulation, not an update written in
    place), flags no value error and reads no random draw's index; when one of its operands
    is the result of an op with ``lower_epilogue`` -- directly or through a dimshuffle that
    only drops axes of length 1 (conv1d's) -- that nothing but the loop reads, of the
    root's dtype and rank; and when every other operand's broadcast to that result is
    settled when the graph is built (each length 1, or the result's, both static), so the
    root has the producer's shape at any sizes and needs no check at run time.
    """
    shape_reads = {}  # id(value) -> how many nodes read only its shape
    for node in nodes:
        if getattr(node.op, "value_inputs", None) == ():
            for v in node.inputs:
                shape_reads[id(v)] = shape_reads.get(id(v), 0) + 1
    found = {}
    for rid, members in fusion.roots.items():
        root = members[-1]
        if rid in deferred or is_accumulation(root) or any(_scalar_can_fail(n) for n in members):
            continue
        reads = _operands(members)
        if len(reads) > _EPILOGUE_OPERANDS or any(is_flat_index(v) for v in reads):
            continue
        for v in reads:
            made = _epilogue_source(v, members, fusion, shape_reads)
            if made is None or v.dtype != root.outputs[0].dtype or v.ndim != root.outputs[0].ndim:
                continue
            if (all(u is v or _settled(u, v) for u in reads)
                    and not _reaches([u for u in reads if u is not v], made[0])):
                found[rid] = made + (v,)
                break
    return found


def _reaches(values, node):
    """Whether any of ``values`` is computed from ``node``'s results (through the shape
    of its result, the only way an epilogue's other operands could be)."""
    seen, todo = set(), [v.owner for v in values if v.owner is not None]
    while todo:
        n = todo.pop()
        if n is node:
            return True
        if id(n) in seen:
            continue
        seen.add(id(n))
        todo += [v.owner for v in n.inputs if v.owner is not None]
    return False


_EPILOGUE_OPERANDS = 16  # SG_CONV_EPI_OPS of sg_conv.h


def _epilogue_source(v, members, fusion, shape_reads):
    """(producer, view or None) when ``v`` is the first result of an op with an epilogue
    and read only by the loop ``members`` (a view of it read only by the view), else None;
    the op's other results (max pooling's indices) are stored as without the epilogue.
    Nodes that read only the shape of these values (``value_inputs == ()``) do not count:
    the epilogue's step describes them."""
    inner = sum(1 for n in members for u in n.inputs if u is v)
    if v.owner is None or fusion.uses.get(id(v), 0) - shape_reads.get(id(v), 0) != inner:
        return None
    view, node = None, v.owner
    if isinstance(node.op, DimShuffle) and _drops_only(node):
        x = node.inputs[0]
        if x.owner is None or fusion.uses.get(id(x), 0) - shape_reads.get(id(x), 0) != 1:
            return None
        view, node = node, x.owner
    made = view.inputs[0] if view is not None else v
    if getattr(node.op, "lower_epilogue", None) is None or made is not node.outputs[0]:
        return None
    return node, view


def _drops_only(node):
    """A dimshuffle that drops axes of static length 1 and keeps the others in order."""
    order, x = node.op.order, node.inputs[0]
    return ("x" not in order and list(order) == sorted(order)
            and all(x.type.shape[a] == 1 for a in node.op.dropped))


def _settled(u, v):
    """Whether ``u`` broadcasts to ``v``'s shape whatever the sizes: each of its lengths,
    aligned to v's last axes, is 1 or v's, both known when the graph is built."""
    if u.ndim > v.ndim:
        return False
    return all(a == 1 or (a is not None and a == b)
               for a, b in zip(u.type.shape, v.type.shape[v.ndim - u.ndim:]))


def _epilogue_step(root, fusion, index, producer, view, source):
    """The :class:`~codegen.ir.EpilogueStep` of ``producer`` with the loop of ``root``."""
    loop = _fused_loop(index, root, fusion)
    loop.donor = None
    axes = (tuple(range(source.ndim)) if view is None else
            tuple(view.op.order.index(a) if a in view.op.order else -1
                  for a in range(view.op.in_ndim)))
    result = root.outputs[0]
    body = list(producer.op.lower_epilogue(producer, result, Epilogue(loop, source, axes)))
    # descriptors of the values kept inside, for the steps that read their shapes: views
    # of the result (their elements are not the values: never read)
    made = producer.outputs[0]
    lengths = [Dim(result, a) if a >= 0 else Int(1) for a in axes]
    body.append(_contiguous_view(made, result, lengths))
    if view is not None:
        body.append(_contiguous_view(view.outputs[0], result, [Dim(result, k)
                                                               for k in range(result.ndim)]))
    members = [producer] + ([view] if view is not None else []) + list(loop.members)
    return EpilogueStep(index, root, members, body=body, site=producer, loop=loop,
                        side_outputs=list(producer.outputs[1:]))


def _contiguous_view(var, base, lengths):
    strides, s = [], Int(1)
    for n in reversed(lengths):
        strides.insert(0, s)
        s = Bin("*", s, n)
    return View(var, base, Int(0), lengths, strides)


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
