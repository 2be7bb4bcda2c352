"""Workspace liveness: when each intermediate's memory can go back to the arena.

Without releases the workspace arena holds every intermediate of a call at
once, so its peak is their sum. :func:`plan_frees` reads a
:class:`~codegen.ir.Program` and sets every step's ``frees``: the values made
by steps that nothing reads afterwards. A value is dead after the last step
that reads it -- or reads any value that may share its memory: a view of it
(a reshape, dimshuffle or subtensor result), a view of that view, a loop's
result written over it (``FusedLoop.donor``). Such values form one group,
released together after the group's last read. Outputs, probes and what the
updates written in place read (they run last) live to the end of the call.

The renderer releases the blocks of the values it gave workspace memory
(``sg_ws_free``, sg_kernel.h) and the arena reuses them for later results.
"""

from .ir import BlasCall, FusedLoop, OpStep, View, walk

__all__ = ["plan_frees", "reads", "may_share"]


def reads(step):
    """The values ``step`` reads that other steps made or the caller gave, in order."""
    inside = {id(o) for n in step.members for o in n.outputs}
    found = []
    for n in step.members:
        for v in n.inputs:
            if id(v) not in inside and all(v is not u for u in found):
                found.append(v)
    return found


def _made(step):
    """The values ``step`` stores (the other members of a fused loop stay in registers; an
    epilogue's step also stores its producer's other results)."""
    return list(step.root.outputs) + list(getattr(step, "side_outputs", ()))


def may_share(step):
    """The values whose memory ``step``'s results may take or point into.

    A fused loop's result may take its donor's block, as may an op step's (the
    value its ``CopyOf`` copies); a BLAS call's result is fresh memory; so is that of a step whose every result the renderer gave a
    buffer of its own (``step.buffers``). Any other step is taken to share
    memory with every value it reads (a view, a reshape that views a
    contiguous input): at worst a block is released later than it could be.
    """
    if isinstance(step, FusedLoop):
        return [step.donor] if step.donor is not None else []
    if isinstance(step, BlasCall):
        return []
    if isinstance(step, OpStep) and step.donor is not None:
        return [step.donor]  # its result may be the donor's block (ir.CopyOf), else fresh
    if isinstance(step, OpStep) and step.body is not None and any(
            isinstance(s, View) for s in walk(step.body)):
        return reads(step)  # a view, or fresh memory (a sum_to that may sum nothing)
    # (and a loop's stack written into a concatenation's block: memory of none of its
    # operands; the concatenation, which reads it, keeps that block with it)
    fresh = {id(v) for v, _ in step.buffers} | getattr(step, "placed_outputs", set())
    if all(id(o) in fresh for o in _made(step)):
        return []
    return reads(step)


def plan_frees(program):
    """Set the ``frees`` of every step of ``program`` (see the module docstring); returns it."""
    steps = program.steps
    end = len(steps)
    parent = {}  # id(value) -> id of a value of its group, up to the representative

    def find(v):
        k = id(v)
        while parent.get(k, k) != k:
            parent[k] = parent.get(parent[k], parent[k])  # halve the path
            k = parent[k]
        return k

    made = []
    for step in steps:
        step.frees = []
        for o in _made(step):
            made.append(o)
            for x in may_share(step):
                a, b = find(o), find(x)
                if a != b:
                    parent[a] = b
    last = {}

    def touch(v, i):
        g = find(v)
        last[g] = max(last.get(g, -1), i)

    for i, step in enumerate(steps):
        for v in _made(step) + reads(step):
            touch(v, i)
    for v in list(program.outputs) + list(program.probes):
        touch(v, end)
    if program.in_place is not None:
        for u in program.in_place.updates:
            for v in [u.var] + reads(u.step):
                touch(v, end)
        for v, _ in program.in_place.shape_checks:
            touch(v, end)
    for v in made:
        i = last[find(v)]
        if i < end:
            steps[i].frees.append(v)
    return program
