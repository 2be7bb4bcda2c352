"""The two walks the pipeline's passes run in: a copying sweep, and an in-place pass.

A :class:`Sweep` visits the nodes of a graph in topological order, from the
leaves up. Each node is rebuilt on its (already final) inputs, merged with an
equal node seen before (same op by ``__props__``, same inputs: common
subexpression elimination) and offered to the rules; a rule returns
replacement variables, whose new nodes are visited in turn, so every node
leaves the sweep at a fixed point of all the rules. Nodes no output reaches are
never visited: dead code disappears by construction.

The user's graph is never changed: the sweep builds new nodes for all of it,
so later passes (:class:`InPlace`) may rewrite, and name, what they find. Every
node carries the trace (the user's file:line) and gradient origin of the node
it copies or replaces.

A rule is ``rule(node, walk) -> Variable | list | None``; it may read
``walk.dims`` (shape facts, :mod:`.shapes`) and ``walk.n_uses(v)``.
"""

import math

import numpy as np

from ..graph import Apply, Constant, Variable, toposort, trace_as

__all__ = ["Sweep", "InPlace", "RuleSet", "all_equal", "scalar_value"]

# Rules must shrink or stabilise the graph; this bounds a buggy pair that undoes each other
# (and the nesting of rewrites of rewrites, each a level of Python recursion).
MAX_DEPTH = 40

# Commutative elementwise ops whose operands may be swapped exactly (IEEE addition and
# multiplication commute; maximum and minimum do not: maximum(0.0, -0.0) is -0.0, the
# other order 0.0, as in NumPy).
COMMUTATIVE = frozenset({"add", "mul", "eq", "neq"})


class RuleSet:
    """Rules by the op name they match at (``"*"``: every node), in the order they are tried."""

    def __init__(self, name):
        self.name = name
        self.by_op = {}

    def __call__(self, *op_names):
        """Decorator: ``@rules("log")`` registers a rule for nodes of ``log``."""
        def register(fn):
            for n in op_names:
                self.by_op.setdefault(n, []).append(fn)
            return fn
        return register

    def for_op(self, name):
        return list(self.by_op.get(name, ())) + list(self.by_op.get("*", ()))


def const_key(c):
    return (c.dtype, c.data.shape, c.data.tobytes())


class Sweep:
    """The copying sweep: see the module docstring.

    Parameters
    ----------
    rules : sequence of RuleSet
        Tried in this order at every node.
    strict : bool
        Raise when a rule fails instead of skipping it (tests).
    """

    def __init__(self, rules=(), strict=False):
        self.rules = list(rules)
        self.strict = strict
        self.memo = {}        # id(variable of the input graph) -> its variable in the output
        self.cse = {}         # (op number, input ids) -> output variables
        self.consts = {}      # const_key -> Constant
        self.final = set()    # ids of variables of the output graph
        self.keep = []        # objects whose ids are keys above: keep them alive
        self.fired = {}       # rule name -> count
        self.dims = None      # a shapes.Dims when the rules need shape facts
        self.copies = {}      # id(node of the input graph) -> its copy
        self._dispatch = {}
        self._op_numbers = {}  # (type, props) -> small int: cheap keys for merging
        self._op_of = {}       # id(op) -> its number (ops are kept alive by their nodes)

    def run(self, outputs):
        """The rewritten ``outputs`` (a list of variables)."""
        for node in toposort(outputs, self.final):
            self.visit(node)
        return [self.get(o) for o in outputs]

    def get(self, v):
        """The output-graph variable of ``v`` (a visited variable, or a leaf)."""
        got = self.memo.get(id(v))
        if got is not None:
            return got
        if v.owner is not None:
            if id(v) in self.final:
                return v
            raise KeyError(f"{v!r} was not visited before its consumer")
        got = self.consts.setdefault(const_key(v), v) if isinstance(v, Constant) else v
        self.memo[id(v)] = got
        self.final.add(id(got))
        self.keep.append(v)
        return got

    def visit(self, node, depth=0):
        memo = self.memo
        ins = []
        for i in node.inputs:
            got = memo.get(id(i))
            ins.append(got if got is not None else self.get(i))
        key = self._key(node.op, ins)
        hit = self.cse.get(key)
        if hit is not None:
            self._map(node.outputs, hit)
            return
        new = self._copy(node, ins)
        self.cse[key] = new.outputs
        self.final.update(id(o) for o in new.outputs)
        rep = self._apply_rules(new, depth)
        if rep is None:
            self._map(node.outputs, new.outputs)
            return
        self.cse[key] = rep
        self._map(node.outputs, rep)
        self._map(new.outputs, rep)

    def _key(self, op, ins):
        number = self._op_of.get(id(op))
        if number is None:
            number = self._op_numbers.setdefault((type(op), op.props()), len(self._op_numbers))
            self._op_of[id(op)] = number
        ids = tuple(id(i) for i in ins)
        if len(ids) == 2 and ids[0] > ids[1] and getattr(op, "scalar", None) in COMMUTATIVE:
            ids = (ids[1], ids[0])
        return (number, ids)

    def _copy(self, node, ins):
        # a gradient node points at the copy of its forward node when there is one yet
        grad_of = node.grad_of
        if grad_of is not None:
            grad_of = self.copies.get(id(grad_of), grad_of)
        if all(a is b or a.type == b.type for a, b in zip(ins, node.inputs)):
            # equal input types give equal output types: no need to infer them again
            new = Apply(node.op, ins, [o.type for o in node.outputs], trace=node.trace)
            new.grad_of = grad_of
        else:
            with trace_as(node.trace, grad_of):
                new = node.op.make_node(*ins)
        if node.tag.__dict__:
            new.tag.__dict__.update(node.tag.__dict__)
        for old, o in zip(node.outputs, new.outputs):
            o.name = old.name
            if old.tag.__dict__:
                o.tag.__dict__.update(old.tag.__dict__)
                cot = getattr(o.tag, "cotangent_of", None)
                if cot is not None:
                    o.tag.cotangent_of = self.memo.get(id(cot), cot)
        self.copies[id(node)] = new
        self.keep.append(node)
        return new

    def _map(self, olds, news):
        memo = self.memo
        for o, n in zip(olds, news):
            memo[id(o)] = n
            if o.name and n.name is None and n.owner is not None:
                n.name = o.name  # every non-leaf of the output graph is the pipeline's own
        self.keep.append(olds)

    def _apply_rules(self, node, depth):
        name = node.op.name
        rules = self._dispatch.get(name)
        if rules is None:
            rules = self._dispatch[name] = [r for rs in self.rules for r in rs.for_op(name)]
        if not rules or depth > MAX_DEPTH:
            return None
        for fn in rules:
            rep = _try(fn, node, self, self.strict)
            if rep is not None:
                self.fired[fn.__name__] = self.fired.get(fn.__name__, 0) + 1
                return [self._absorb(r, depth) for r in rep]
        return None

    def _absorb(self, v, depth):
        """Visit the nodes a rule made (those between ``v`` and the settled graph)."""
        for node in toposort([v], self.final):
            self.visit(node, depth + 1)
        return self.get(v)

    def n_uses(self, v):
        """Unknown while the graph is being built: rules that need it run in place later."""
        return 0


def _try(fn, node, walk, strict):
    """``fn``'s replacement for ``node``'s outputs, as a list, or None."""
    try:
        with trace_as(node.trace, node.grad_of):
            rep = fn(node, walk)
    except Exception:  # a rule that cannot apply must never break compilation
        if strict:
            raise
        return None
    if rep is None:
        return None
    rep = [rep] if isinstance(rep, Variable) else list(rep)
    if _fits(node.outputs, rep):
        return rep
    if strict:
        raise AssertionError(f"rule {fn.__name__} changed the type of {node.op} at {node.trace}: "
                             f"{[o.type for o in node.outputs]} -> "
                             f"{[getattr(r, 'type', r) for r in rep]}")
    return None


class InPlace:
    """A pass over a graph the pipeline owns (after a copying sweep), rewriting in place.

    Only the nodes whose op has a rule are offered, in topological order; a
    replacement takes over every use of the variable it replaces. Cheaper than a
    sweep when few nodes are candidates, and it may only be used on nodes no user
    holds (the copy).
    """

    def __init__(self, rules=(), strict=False):
        self.rules, self.strict = list(rules), strict
        self.fired = {}
        self.uses = {}
        self.users = {}

    def run(self, outputs):
        outputs = list(outputs)
        nodes = toposort(outputs)
        users = {}     # id(variable) -> [(node, input position)]
        for node in nodes:
            for k, i in enumerate(node.inputs):
                users.setdefault(id(i), []).append((node, k))
        for o in outputs:
            self.uses[id(o)] = self.uses.get(id(o), 0) + 1
        for i, entries in users.items():
            self.uses[i] = self.uses.get(i, 0) + len(entries)
        self.users = users
        dispatch = {}
        for node in nodes:
            name = node.op.name
            rules = dispatch.get(name)
            if rules is None:
                rules = dispatch[name] = [r for rs in self.rules for r in rs.for_op(name)]
            if rules:
                self._offer(node, rules, users, outputs)
        return outputs

    def _offer(self, node, rules, users, outputs):
        old = node.outputs[0]
        for fn in rules:
            rep = _try(fn, node, self, self.strict)
            if rep is None:
                continue
            (rep,) = rep
            self.fired[fn.__name__] = self.fired.get(fn.__name__, 0) + 1
            if old.name and rep.name is None:
                rep.name = old.name
            self.uses[id(rep)] = self.uses.get(id(old), 0)
            moved = users.pop(id(old), [])
            for user, k in moved:
                user.inputs[k] = rep
            users.setdefault(id(rep), []).extend(moved)
            for k, o in enumerate(outputs):
                if o is old:
                    outputs[k] = rep
            return

    def n_uses(self, v):
        return self.uses.get(id(v), 0)

    def readers(self, v):
        """The nodes that read ``v`` (once each, in topological order)."""
        found = []
        for node, _ in self.users.get(id(v), ()):
            if all(node is not f for f in found):
                found.append(node)
        return found


def _fits(olds, news):
    """A replacement must keep dtype and rank; static lengths may only become more precise."""
    if len(olds) != len(news):
        return False
    for o, n in zip(olds, news):
        if not isinstance(n, Variable) or o.dtype != n.dtype or o.ndim != n.ndim:
            return False
        if any(a is not None and b is not None and a != b
               for a, b in zip(o.type.shape, n.type.shape)):
            return False
    return True


def scalar_value(v):
    """The single value of a constant with one element (any rank), else None."""
    if isinstance(v, Constant) and v.data.size == 1:
        return v.data.reshape(()).item()
    return None


def all_equal(v, value):
    """Whether every element of ``v`` is provably ``value`` (bitwise for floats: -0.0 is not 0.0).

    Sees through broadcasts and dimshuffles of a constant (``ones_like``, ``zeros_like``)
    and through casts that keep the value.
    """
    casts = []
    while v.owner is not None:
        name = v.owner.op.name
        if name == "cast":
            casts.append(v.dtype)
        elif name not in ("broadcast_to", "dimshuffle"):
            return False
        v = v.owner.inputs[0]
    if not isinstance(v, Constant) or v.data.size == 0:
        return False
    d = v.data
    for dtype in reversed(casts):  # the values the casts make (-1 as a bool is 1)
        with np.errstate(all="ignore"):
            d = d.astype(dtype)
    if d.size == 1:  # the common case, without NumPy's per-call overhead
        x = d.reshape(-1)[0].item()
        if isinstance(x, float) or isinstance(value, float):
            # as floats, sign of zero included: an integer 0 is +0.0, not -0.0
            x = float(x)
            return x == value and math.copysign(1.0, x) == math.copysign(1.0, value)
        return x == value
    if d.dtype.kind == "f" or isinstance(value, float):
        d = d.astype(np.float64)
        return bool(np.all(d == value) and np.all(np.signbit(d) == np.signbit(value)))
    return bool(np.all(d == value))
