"""Loops: what a scan's step computes from its sequences alone, done for every step at once.

A recurrent net's step multiplies its input slice by a weight before it
meets the recurrent state: ``tanh(x_t @ Wx + h @ Wh + b)``. ``x_t @ Wx``
depends on the step only through the slice, so the products of all the steps
are one product of the whole sequence, ``X @ Wx``: one BLAS call over
``T * B`` rows before the loop instead of ``T`` small ones inside it, the
step reading its row of the result as a sequence of its own.

:func:`hoist_sequence_work` finds, in a scan's step, the values computed
only from sequence slices and loop-invariant values (the non-sequences, the
constants) through ops that extend to a leading steps axis -- elementwise
ops whose operands that vary by step have the result's rank, a matrix
product of a slice by a 2-d invariant matrix, a dimshuffle -- and moves those
that involve a product out of the loop. Elementwise work alone stays inside,
where the step's fused loop computes it without storing it for every step.
The same holds backwards: a gradient loop adds each step's weight gradient
into a carried sum, ``acc + h_{t-1}.T @ dz_t``. :func:`accumulations_after_the_loop`
turns such a sum into one product after the loop over the stacked factors,
``H.T @ DZ`` with ``T * B`` rows (a factor that is a sequence slice is read
from the sequence itself, the others are stacked as outputs of the loop, each
value once however many products read it; a factor summed to a shape that is
the same every step, ``sum_to(dz, shape(x_t @ Wx))``, is stacked as ``dz`` and
summed entry by entry after the loop -- a view where nothing is summed). A sum
begun at zero is the product alone, which an update ``W - lr * g`` then takes
into its own gemm (rewrite/gemm.py). The gradient loop walks the steps
backwards: its sequences are the forward values read backwards (``h[::-1]``),
views that the product's reshape would copy every call. The loop keeps the
stack of the other factor last step first instead (``Scan.flipped``), and the
product reads both in step order: views (the same pairs of entries, summed in
another order).

:func:`stacks_read_backwards` keeps so any stack read only backwards (the
gradient of a sequence, the cotangents its loop stacks, read ``g[::-1]``).

:func:`keep_last_values` is about memory: a recurrent output read only at its
last step (``hs[-1]``) needs no stack of every step's value, only the final
one, which the loop keeps in two buffers of one step's size.

Values are unchanged: each step's entry of the batched product is computed
by the same gemm kernel on the same numbers (BLAS may block a taller product
differently, as it may anyway; a product over the steps reading its factors
in step order rather than backwards adds the same terms in another order).
Every mode runs the rewritten graph, so the modes agree.
"""

import copy

import numpy as np

from ..graph import Constant, TensorType, Variable, trace_as
from ..ops.elemwise import Elemwise, minimum
from ..ops.gemm import Gemm
from ..ops.inner import InnerGraph, replace
from ..ops.join import concatenate
from ..ops.linalg import MatMul
from ..ops.scan import Scan
from ..ops.shape import (BroadcastTo, DimShuffle, Shape, ShapeAt, SumTo, expand_dims, reshape,
                         shape, shape_at)
from ..ops.subtensor import SCALAR, Subtensor

__all__ = ["merge_loops", "keep_last_values", "stacks_read_backwards", "hoist_sequence_work",
           "products_after_the_loop", "accumulations_after_the_loop"]


def merge_loops(outputs):
    """``outputs`` with each scan node that another computes too replaced by that one.

    A gradient rule that needs more of the forward loop than the node keeps (the stacks
    of values inside the step: an LSTM's gates) makes a second node over the same inputs
    whose step computes the same outputs and more; the two are one loop. Nodes merge
    when they have the same inputs and loop settings and one step's outputs start with
    the other's (the same inner values). The graph given is not changed.
    """
    from ..graph import toposort

    loops = [n for n in toposort(outputs) if isinstance(n.op, Scan)]
    mapping = {}
    for n in loops:
        for m in loops:
            if m is n or not _extends_loop(m, n):
                continue
            if len(m.op.inner.outputs) == len(n.op.inner.outputs) and id(m) > id(n):
                continue  # equal: keep one of the two
            mapping.update(zip(n.outputs, m.outputs))
            break
    return replace(outputs, mapping) if mapping else list(outputs)


def keep_last_values(outputs):
    """``outputs`` with each scan's recurrent outputs read only at their last step
    (``hs[-1]``, ``hs[-1, :3]``; or not read at all) kept as final values: the loop then
    holds two values of the step's size, not a stack of every step's. The graph given is
    not changed.

    A reader ``hs[-1, ...]`` (or ``hs[-1:, ...]``) becomes the same subtensor of a stack of
    the final value that is empty after no step -- ``expand_dims(final, 0)[:min(n_steps, 1)]``, views
    only -- so that ``hs[-1]`` of a loop of no step is still an IndexError. An output of
    the graph itself stays a stack.
    """
    return _each_scan(outputs, _only_last_read, _last_values)


def _each_scan(outputs, find, rebuild):
    """``outputs`` with every scan node for which ``find(node, readers, given)`` names
    outputs replaced by ``rebuild(node, those, readers)`` (a mapping of old values to new),
    one loop at a time: a later loop may read an earlier one."""
    from ..graph import toposort

    outputs = list(outputs)
    while True:
        nodes = toposort(outputs)
        readers = {}
        for n in nodes:
            for v in n.inputs:
                readers.setdefault(id(v), []).append(n)
        given = {id(o) for o in outputs}
        for n in nodes:
            ks = find(n, readers, given) if isinstance(n.op, Scan) else []
            if ks:
                break
        else:
            return outputs
        outputs = replace(outputs, rebuild(n, ks, readers))


def _only_last_read(node, readers, given):
    """The recurrent outputs of scan ``node`` kept as stacks that are read only as ``[-1]``."""
    op = node.op
    return [k for k in range(op.n_rec)
            if op.stacked(k) and id(node.outputs[k]) not in given
            and all(_reads_last(r, node.outputs[k]) for r in readers.get(id(node.outputs[k]), []))]


def _reads_last(reader, v):
    """Whether node ``reader`` is ``v[-1, ...]`` or ``v[-1:, ...]`` (and reads ``v`` nowhere
    else): the same subtensor of the final value's tail, of 0 or 1 entries, gives either."""
    idx = getattr(reader.op, "idx", None)
    return (isinstance(reader.op, Subtensor) and reader.inputs[0] is v
            and all(i is not v for i in reader.inputs[1:])
            and ((type(idx[0]) is int and idx[0] == -1) or idx[0] == (-1, None, None)))


def _last_values(node, ks, readers):
    """{old value: new value} replacing scan ``node`` by one keeping outputs ``ks`` as final
    values, and their readers by the same subtensors of the final values' tails."""
    op = node.op
    new = copy.copy(op)  # the same loop (its step, settings, what the rewrites noted)
    new.last = tuple(op.last[k] or k in ks for k in range(op.n_rec))
    with trace_as(node.trace, node.grad_of):
        outs = new.make_node(*node.inputs).outputs
        steps = minimum(node.inputs[0], 1)
    mapping = {}
    for k, (old, v) in enumerate(zip(node.outputs, outs)):
        if k not in ks:
            mapping[old] = v
            continue
        for r in readers.get(id(old), []):
            with trace_as(r.trace, r.grad_of):
                tail = Subtensor(((None, SCALAR, None),))(expand_dims(v, 0), steps)
                mapping[r.outputs[0]] = r.op.make_node(tail, *r.inputs[1:]).outputs[0]
    return mapping


def stacks_read_backwards(outputs):
    """``outputs`` with each stack of a scan that is read only backwards (``ys[::-1]``, and
    its lengths) kept by the loop last step first (``Scan.flipped``), its readers then
    reading it as it is: a gradient loop's stack of a sequence's cotangents, which the
    gradient reads in step order. A view of it either way, but a reshape or a product of
    a backwards view copies it. Only stacks of outputs that are not fed back; an output of
    the graph itself stays as it is. The graph given is not changed."""
    return _each_scan(outputs, _read_only_backwards, _flipped_stacks)


def _read_only_backwards(node, readers, given):
    """The outputs of scan ``node`` not fed back, kept in step order, read only backwards."""
    return [k for k in range(node.op.n_rec, len(node.outputs))
            if not node.op.flipped[k] and id(node.outputs[k]) not in given
            and _read_backwards(node.outputs[k], readers.get(id(node.outputs[k]), []))]


def _flipped_stacks(node, ks, readers):
    """{old value: new value} replacing scan ``node`` by one keeping its outputs ``ks``
    last step first, and their readers ``v[::-1, ...]`` by ``v[:, ...]`` of those."""
    new = copy.copy(node.op)  # the same loop (its step, settings, what the rewrites noted)
    new.flipped = tuple(f or k in ks for k, f in enumerate(node.op.flipped))
    with trace_as(node.trace, node.grad_of):
        outs = new.make_node(*node.inputs).outputs
    mapping = {}
    for k, (old, v) in enumerate(zip(node.outputs, outs)):
        if k not in ks:
            mapping[old] = v
            continue
        for r in readers[id(old)]:
            with trace_as(r.trace, r.grad_of):
                if isinstance(r.op, Subtensor):
                    rest = r.op.idx[1:]
                    got = (Subtensor(((None, None, None),) + rest)(v, *r.inputs[1:])
                           if any(e != (None, None, None) for e in rest) else v)
                else:
                    got = r.op.make_node(v, *r.inputs[1:]).outputs[0]
            mapping[r.outputs[0]] = got
    return mapping


def _read_backwards(v, readers):
    """Whether every node of ``readers`` reads ``v`` as ``v[::-1, ...]`` or its lengths, and
    one at least as ``v[::-1, ...]``."""
    backwards = False
    for r in readers:
        if r.inputs[0] is not v or any(i is v for i in r.inputs[1:]):
            return False
        if isinstance(r.op, Subtensor) and r.op.idx and r.op.idx[0] == (None, None, -1):
            backwards = True
        elif not isinstance(r.op, (Shape, ShapeAt)):
            return False
    return backwards


def _extends_loop(m, n):
    """Whether scan node ``m`` computes everything scan node ``n`` does."""
    a, b = m.op, n.op
    if (a.n_seqs, a.n_rec, a.truncate, a.last, a.checked) != \
            (b.n_seqs, b.n_rec, b.truncate, b.last, b.checked):
        return False
    if a.flipped[:len(b.flipped)] != b.flipped:
        return False
    if len(m.inputs) != len(n.inputs) or any(x is not y for x, y in zip(m.inputs, n.inputs)):
        return False
    if len(a.inner.inputs) != len(b.inner.inputs) or any(
            x is not y for x, y in zip(a.inner.inputs, b.inner.inputs)):
        return False
    k = len(b.inner.outputs)
    return len(a.inner.outputs) >= k and all(
        x is y for x, y in zip(a.inner.outputs[:k], b.inner.outputs))


def hoist_sequence_work(op, inputs):
    """A Scan node's ``(op, inputs)`` with its sequence-only products computed before the
    loop (each a new sequence of the node), or None when its step has none."""
    if not isinstance(op, Scan):
        return None
    n_steps, seqs, inits, others = op.split(inputs)
    s, r = op.n_seqs, op.n_rec
    phs = op.inner.inputs
    seq_of = {id(p): x for p, x in zip(phs[:s], seqs)}
    outer_of = {id(p): x for p, x in zip(phs[s + r:], others)}
    nodes = op.inner.nodes()

    varies = set(seq_of)      # ids of values computed from slices and invariants only
    invariant = set(outer_of)  # ids of values the same at every step (placeholders, nodes)
    product = set()           # ids of varying values whose computation holds a product
    for n in nodes:
        ins = n.inputs
        if all(id(i) in invariant or isinstance(i, Constant) for i in ins):
            invariant.update(id(o) for o in n.outputs)
            continue
        if not all(id(i) in varies or id(i) in invariant or isinstance(i, Constant) for i in ins):
            continue
        if not _extends(n, varies):
            continue
        out = n.outputs[0]
        varies.add(id(out))
        if isinstance(n.op, MatMul) or any(id(i) in product for i in ins):
            product.add(id(out))

    # What leaves the set -- read by a node that stays in the step, or an output of it.
    frontier, seen = [], set()

    def meet(v):
        if id(v) in product and id(v) not in seen:
            seen.add(id(v))
            frontier.append(v)

    for n in nodes:
        if id(n.outputs[0]) not in varies:
            for i in n.inputs:
                meet(i)
    for o in op.inner.outputs:
        meet(o)
    if not frontier:
        return None

    memo = dict(seq_of)
    memo.update(outer_of)
    outer = _outside(memo, varies)

    batched = [outer(v) for v in frontier]
    slices = [Variable(TensorType(v.dtype, v.type.shape), name=v.name or f"{v.owner.op}[t]")
              for v in frontier]
    outs = replace(op.inner.outputs, dict(zip(frontier, slices)))
    # The sequences stay (their lengths are checked as the user numbered them, a slice the
    # step no longer reads costs nothing); the products' come after them.
    inner = InnerGraph(list(phs[:s]) + slices + list(phs[s:]), outs)
    new = Scan(inner, s + len(slices), r, op.last, op.truncate, op.label, op.checked, op.shapes,
               op.flipped)
    return new, [n_steps, *seqs, *batched, *inits, *others]


def _outside(memo, varies):
    """``outer(v)``: inner value ``v`` computed outside the loop -- for every step at once
    if it varies (``varies``: ids), from ``memo`` (id(inner value) -> outer value: the
    placeholders' values, and for the values that vary the stacks of every step's)."""
    def outer(v):
        got = memo.get(id(v))
        if got is not None:
            return got
        if isinstance(v, Constant):
            return v
        n = v.owner
        args = [outer(i) for i in n.inputs]
        with trace_as(n.trace, n.grad_of):
            if id(v) in varies and isinstance(n.op, DimShuffle):
                order = (0, *[a if a == "x" else a + 1 for a in n.op.order])
                made = DimShuffle(order, n.op.in_ndim + 1).make_node(*args)
            else:
                made = n.op.make_node(*args)
        memo[id(v)] = made.outputs[0]
        return made.outputs[0]

    return outer


def products_after_the_loop(op, inputs):
    """A Scan node's ``(op, inputs, finish)`` with the outputs it stacks that are products
    of one value of the step by loop-invariant matrices (a gradient loop's cotangent of
    its input, ``dz[t] @ Wx.T``) computed after the loop, as one product of that value's
    stack; ``finish`` maps the new node's outputs to replacements of the old node's.
    None when there is none."""
    if not isinstance(op, Scan):
        return None
    n_steps, seqs, inits, others = op.split(inputs)
    s, r = op.n_seqs, op.n_rec
    phs, outs = op.inner.inputs, op.inner.outputs
    invariant = {id(p) for p in phs[s + r:]}
    for n in op.inner.nodes():
        if all(id(i) in invariant or isinstance(i, Constant) for i in n.inputs):
            invariant.update(id(o) for o in n.outputs)
    sunk = {}  # output index -> (base value, ids of the values between it and the output)
    for k in range(r, len(outs)):
        found = _from_one_value(outs[k], invariant)
        if found is not None:
            sunk[k] = found
    if not sunk:
        return None
    # a base's stack in the order of the output made from it (Scan.flipped)
    bases = []
    for k, (base, _) in sunk.items():
        if all(base is not b or op.flipped[k] != f for b, f in bases):
            bases.append((base, op.flipped[k]))
    kept = [k for k in range(len(outs)) if k not in sunk]
    inner = InnerGraph(phs, [outs[k] for k in kept] + [b for b, _ in bases])
    new = Scan(inner, s, r, op.last, op.truncate, op.label, op.checked,
               [op.shapes[k] for k in kept], [op.flipped[k] for k in kept] + [f for _, f in bases])
    outer_at = {id(p): x for p, x in zip(phs[s + r:], others)}

    def finish(results):
        got = [None] * len(outs)
        for i, k in enumerate(kept):
            got[k] = results[i]
        stacks = results[len(kept):]
        for k, (_, varies) in sunk.items():
            memo = dict(outer_at)
            memo.update({id(b): x for (b, f), x in zip(bases, stacks) if f == op.flipped[k]})
            got[k] = _outside(memo, varies)(outs[k])
        return got

    return new, list(inputs), finish


def _from_one_value(o, invariant):
    """``(base, ids of the varying values)`` when ``o`` is computed from a single value
    ``base`` of the step and invariants through ops that extend to a steps axis, with a
    product among them; else None."""
    bases, varies, product = [], set(), [False]

    def walk(v):
        if id(v) in invariant or isinstance(v, Constant) or id(v) in varies:
            return
        n = v.owner
        ins = [] if n is None else n.inputs
        if n is None or not _extends(n, {id(i) for i in ins
                                         if id(i) not in invariant and not isinstance(i, Constant)}):
            if all(v is not b for b in bases):
                bases.append(v)
            return
        varies.add(id(v))
        product[0] = product[0] or isinstance(n.op, MatMul)
        for i in ins:
            walk(i)

    walk(o)
    if len(bases) != 1 or not product[0] or bases[0] is o:
        return None
    varies.add(id(bases[0]))
    return bases[0], varies


def _extends(n, varies):
    """Whether node ``n``, its varying operands given a leading steps axis, computes every
    step's value at once."""
    if len(n.outputs) != 1:
        return False
    out = n.outputs[0]
    if isinstance(n.op, Elemwise):
        # invariant operands broadcast from the right; varying ones need the result's rank
        return all(i.ndim == out.ndim for i in n.inputs if id(i) in varies)
    if isinstance(n.op, MatMul):
        a, b = n.inputs
        return id(a) in varies and id(b) not in varies and b.ndim == 2 and a.ndim >= 1
    return isinstance(n.op, DimShuffle)


def accumulations_after_the_loop(op, inputs):
    """``(op, inputs, finish)`` of a Scan node whose carried sums of products
    (``acc + op(a_t) @ op(b_t)``, a gemm into the carried value, which nothing else
    reads, kept as a final value only) become one gemm after the loop; ``finish`` maps
    the new node's outputs to replacements of the old node's. None when there is none."""
    if not isinstance(op, Scan):
        return None
    n_steps, seqs, inits, others = op.split(inputs)
    s, r = op.n_seqs, op.n_rec
    phs, outs = op.inner.inputs, op.inner.outputs
    uses = {}
    for n in op.inner.nodes():
        for i in n.inputs:
            uses[id(i)] = uses.get(id(i), 0) + 1
    for o in outs:
        uses[id(o)] = uses.get(id(o), 0) + 1
    invariant = {id(p) for p in phs[s + r:]}
    moved = {}
    for k in range(r):
        prev = phs[s + k]
        if op.stacked(k) or uses.get(id(prev)) != 1 or uses.get(id(outs[k])) != 1:
            continue
        found = _carried_product(outs[k], prev, invariant)
        if found is not None:
            moved[k] = found
    if not moved:
        return None
    seq_at = {id(p): j for j, p in enumerate(phs[:s])}
    outer_at = {id(p): x for p, x in zip(phs[s + r:], others)}

    def outer_of(v):
        return v if isinstance(v, Constant) else outer_at[id(v)]

    fixed_ids = {}

    def fixed(v):
        """Whether ``v`` is the same at every step: a constant, a non-sequence, a length
        of a sequence's entry, or computed from such values alone."""
        if isinstance(v, Constant) or id(v) in outer_at:
            return True
        if id(v) not in fixed_ids:
            n = v.owner
            fixed_ids[id(v)] = n is not None and (
                _entry_length(n, seq_at) or all(fixed(i) for i in n.inputs))
        return fixed_ids[id(v)]

    def outer_fixed(v):
        """A value that :func:`fixed` accepts, computed outside the loop."""
        if isinstance(v, Constant) or id(v) in outer_at:
            return outer_of(v)
        n = v.owner
        if _entry_length(n, seq_at):
            seq = seqs[seq_at[id(n.inputs[0])]]
            if isinstance(n.op, ShapeAt):
                return shape_at(seq, n.op.axis + 1)
            return shape(seq)[1:]
        return n.op.make_node(*[outer_fixed(i) for i in n.inputs]).outputs[0]

    extra, plan = [], {}
    for k, (n, _, _) in moved.items():
        a, b = n.inputs[:2]
        ta, tb, _ = _flags(n)
        with trace_as(n.trace, n.grad_of):
            # op(a) @ op(b) summed over steps: op(a).T (rows: the contracted axis) and op(b)
            # stacked over the steps are the operands of one product
            a = a if ta else DimShuffle((1, 0), 2)(a)
            b = DimShuffle((1, 0), 2)(b) if tb else b
        srcs = []
        for v in (a, b):
            if id(v) in seq_at:
                srcs.append(("seq", seq_at[id(v)]))
                continue
            # a factor summed to an invariant shape (the cotangent of a term that was
            # broadcast in the step, ``sum_to(dz, shape(x @ Wx))``: usually the same
            # shape): its operand is stacked, shared with a product that stacks it too,
            # and summed over each step's entry after the loop (a view when nothing is
            # summed, ops/shape.py), not copied into a stack of its own every step
            target = None
            n_v = v.owner
            if (n_v is not None and isinstance(n_v.op, SumTo) and n_v.inputs[0].ndim == v.ndim
                    and fixed(n_v.inputs[1])):
                v, target = n_v.inputs
            at = next((j for j, e in enumerate(extra) if e is v), None)
            if at is None:
                at = len(extra)
                extra.append(v)
            srcs.append(("out", at, target))
        plan[k] = srcs
    flip = _stacks_to_flip(plan.values(), seqs, len(extra))
    keep = [k for k in range(r) if k not in moved]
    inner = InnerGraph(list(phs[:s]) + [phs[s + k] for k in keep] + list(phs[s + r:]),
                       [outs[k] for k in keep] + list(outs[r:]) + extra)
    new = Scan(inner, s, len(keep), tuple(op.last[k] for k in keep), op.truncate, op.label,
               op.checked, [op.shapes[k] for k in keep] + list(op.shapes[r:]),
               [False] * len(keep) + list(op.flipped[r:]) + [j in flip for j in range(len(extra))])
    new_inputs = [n_steps, *seqs, *[inits[k] for k in keep], *others]

    def operand(src, reverse, stacks):
        """A factor of a product over every step: a sequence (read backwards where
        ``reverse``) or one of the ``stacks`` (in the order the loop keeps it)."""
        if src[0] == "out":
            return _summed_steps(stacks[src[1]], src[2], outer_fixed)
        seq = seqs[src[1]]
        return Subtensor(((None, None, -1),))(seq) if reverse else seq

    def finish(results):
        n_keep, n_other = len(keep), len(outs) - r
        got = [None] * len(outs)
        for i, k in enumerate(keep):
            got[k] = results[i]
        for j in range(n_other):
            got[r + j] = results[n_keep + j]
        stacks = results[n_keep + n_other:]
        for k, (n, top, shape) in moved.items():
            with trace_as(top.trace, top.grad_of):
                # the sum over the steps pairs each step's entries, in whatever order: a
                # sequence is read backwards where its stack is kept so (_stacks_to_flip)
                reverse = _sequences_reversed(plan[k], flip, seqs)
                a, b = (operand(src, reverse, stacks) for src in plan[k])
                a, b = (reshape(v, (_len(v, 0) * _len(v, 1), _len(v, 2))) for v in (a, b))
                alpha = _flags(n)[2]
                product = Gemm(True, False, alpha)(a, b)
                if shape is None and _zeros_of_shape(inits[k], product):
                    # a sum begun at zero (a gradient's): the product alone, which an update
                    # ``W - lr * g`` can then take in as its own gemm (rewrite/gemm.py)
                    got[k] = product
                elif shape is None:
                    got[k] = Gemm(True, False, alpha, 1.0)(a, b, inits[k])
                else:
                    total = SumTo()(product, outer_of(shape))
                    got[k] = inits[k] + total
        return got

    return new, new_inputs, finish


def _stacks_to_flip(plans, seqs, n_stacks):
    """The stacks (numbers among a loop's new outputs) that the loop keeps last step first.

    A product over the steps pairs a stack with a sequence, which it reads backwards where
    the stack is kept so (the pairs are the same). The gradient loop's sequences are the
    forward values read backwards (``x[::-1]``, ``h[::-1]``), views that reshape copies
    for the product; read backwards again they are views in step order, which it keeps.
    A stack is kept backwards when its products' sequences are all backwards views, or,
    some of each (``go_backwards`` reads ``x`` forwards, the previous states backwards),
    when that leaves less to copy: the backwards ones are larger, as their static lengths
    tell (unknown lengths: nothing changes). A stack that a product pairs with another
    stack stays in step order."""
    backwards, forwards = [[] for _ in range(n_stacks)], [[] for _ in range(n_stacks)]
    plain = set()
    for srcs in plans:
        stacks = [src[1] for src in srcs if src[0] == "out"]
        if len(stacks) != 1:
            plain.update(stacks)
            continue
        for src in srcs:
            if src[0] == "seq":
                seq = seqs[src[1]]
                lengths = seq.type.shape[1:]
                size = None if None in lengths else int(np.prod(lengths, dtype=np.int64))
                (backwards if _backwards_view(seq) else forwards)[stacks[0]].append(size)

    def flipped(j):
        if j in plain or not backwards[j]:
            return False
        if not forwards[j]:
            return True
        sizes = backwards[j] + forwards[j]
        return None not in sizes and sum(backwards[j]) > sum(forwards[j])

    return {j for j in range(n_stacks) if flipped(j)}


def _sequences_reversed(srcs, flip, seqs):
    """Whether a product over the steps reads its factors that are sequences backwards:
    where it pairs them with a stack kept last step first, or, both sequences, where both
    are backwards views (both then in step order)."""
    if any(src[0] == "out" for src in srcs):
        return any(src[0] == "out" and src[1] in flip for src in srcs)
    return all(_backwards_view(seqs[src[1]]) for src in srcs)


def _backwards_view(v):
    """Whether ``v`` is a view of a value reading its first axis backwards, through basic
    indexing that slices that axis (``x[::-1]``, ``x[::-1][:k]``)."""
    sign = 1
    n = v.owner
    while n is not None and isinstance(n.op, Subtensor) and n.op.idx:
        first = n.op.idx[0]
        if not isinstance(first, tuple) or first[2] == SCALAR:
            return False
        sign *= -1 if first[2] is not None and first[2] < 0 else 1
        n = n.inputs[0].owner
    return sign < 0


def _entry_length(n, seq_at):
    """Whether node ``n`` reads the lengths of a sequence's entry (the same every step)."""
    return isinstance(n.op, (Shape, ShapeAt)) and id(n.inputs[0]) in seq_at


def _summed_steps(stack, target, outer_of):
    """``stack`` (a step value's stack), each entry summed to the step's invariant shape
    ``target`` (inner; None: as it is)."""
    if target is None:
        return stack
    steps = expand_dims(shape_at(stack, 0), 0)
    return SumTo()(stack, concatenate([steps, outer_of(target)]))


def _zeros_of_shape(init, product):
    """Whether ``init`` is zeros (a 0 constant, broadcast or folded) of ``product``'s type,
    every length static: then ``0 + product`` is ``product``."""
    n = init.owner
    if n is not None and isinstance(n.op, BroadcastTo):
        init_value = n.inputs[0]
    else:
        init_value = init
    return (isinstance(init_value, Constant) and not np.any(init_value.data)
            and init.dtype == product.dtype and None not in init.type.shape
            and init.type.shape == product.type.shape)


def _carried_product(o, prev, invariant):
    """``(product node, the node adding it to the carry, an invariant shape it is summed to
    or None)`` when ``o`` is the carry ``prev`` plus a product of the step: a gemm into
    ``prev`` (beta 1), or ``prev + p`` / ``p + prev`` with ``p`` a gemm without ``c`` or a
    2-d matmul, or such a product summed to an invariant shape. None otherwise."""
    n = o.owner
    if n is None:
        return None
    if isinstance(n.op, Gemm):
        if len(n.inputs) == 3 and n.inputs[2] is prev and n.op.beta == 1.0 and _mats(n):
            return n, n, None
        return None
    if not (isinstance(n.op, Elemwise) and n.op.scalar == "add" and len(n.inputs) == 2):
        return None
    a, b = n.inputs
    p = b if a is prev else a if b is prev else None
    if p is None or p.owner is None or p.dtype != prev.dtype or p.ndim != prev.ndim:
        return None
    shape = None
    if isinstance(p.owner.op, SumTo):
        p, shape = p.owner.inputs
        if not (isinstance(shape, Constant) or id(shape) in invariant) or p.owner is None:
            return None
    g = p.owner
    if ((isinstance(g.op, Gemm) and len(g.inputs) == 2 or isinstance(g.op, MatMul))
            and _mats(g) and g.outputs[0].dtype == prev.dtype):
        return g, n, shape
    return None


def _mats(n):
    return n.inputs[0].ndim == 2 and n.inputs[1].ndim == 2


def _flags(n):
    """``(trans_a, trans_b, alpha)`` of a gemm or a 2-d matmul node."""
    if isinstance(n.op, Gemm):
        return n.op.trans_a, n.op.trans_b, n.op.alpha
    return False, False, 1.0


def _len(v, k):
    """``v``'s length on axis ``k``: an int where static, else a 0-d int64 Variable."""
    return v.type.shape[k] if v.type.shape[k] is not None else shape_at(v, k)
