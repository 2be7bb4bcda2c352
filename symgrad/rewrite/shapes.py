"""Symbolic lengths: which axes of which variables provably have the same length.

Each axis of each variable gets a *term*: an int when the length is known, or
a :class:`Dim`, a class of lengths known to be equal. Classes come from the
way ops relate their results to their inputs (an elementwise result has its
operands' lengths, ``shape(x)`` holds x's lengths, ``sum_to(g, shape(x))`` has
x's shape), and are merged by the checks ops make when they run (the
contracted lengths of a matrix product are equal, a cross-entropy has one
label per row). Rewrites ask :meth:`Dims.same` to prove, for instance, that a
``sum_to`` sums nothing.

Terms are computed when first asked for, for the variable's node and the
ancestors not yet seen, inputs first, by an explicit walk (no recursion).
"""

from ..graph import Constant
from ..ops.elemwise import ELEMWISE

__all__ = ["Dim", "Dims"]


class Dim:
    """A class of equal unknown lengths (union-find); ``value`` once one is known.

    ``join`` holds the classes a broadcast took its length from (each is 1 or the
    result): once a later check proves them equal, the class is theirs.
    """

    __slots__ = ("parent", "value", "join")

    def __init__(self, join=None):
        self.parent = None
        self.value = None
        self.join = join

    def root(self):
        d = self
        while d.parent is not None:
            d = d.parent
        while self is not d:  # path compression: later walks are short
            self.parent, self = d, self.parent
        return d


def _canon(t):
    if t.__class__ is Dim:
        r = t.root() if t.parent is not None else t
        if r.join is not None and r.value is None:
            return _resolve_join(r)
        return r if r.value is None else r.value
    return t


def _shallow(t):
    """``_canon`` without resolving joins (so nested broadcasts never recurse)."""
    if t.__class__ is Dim:
        r = t.root()
        return r if r.value is None else r.value
    return t


def _resolve_join(r):
    parts = [_shallow(j) for j in r.join]
    first = parts[0]
    if all(p is first or p == first for p in parts):  # the broadcast stretched nothing
        r.join = None
        if isinstance(first, Dim):
            if first is not r:
                r.parent = first
        else:
            r.value = first
        return first
    return r


class Dims:
    """The terms of every settled variable of one sweep."""

    def __init__(self):
        self.memo = {}   # id(variable) -> tuple of terms
        self.keep = []

    # ------------------------------------------------------------------ queries

    def of(self, v):
        """The terms of ``v``'s axes (leaves get fresh classes)."""
        t = self.memo.get(id(v))
        if t is None:
            if v.owner is not None:
                self._settle_up_to(v)
                t = self.memo[id(v)]
            else:
                t = tuple(s if s is not None else Dim() for s in v.type.shape)
                self.memo[id(v)] = t
                self.keep.append(v)
        return tuple([_canon(x) for x in t])

    def _settle_up_to(self, v):
        """Settle ``v``'s node and every ancestor not settled yet, inputs first (no recursion)."""
        memo = self.memo
        stack, order, seen = [v.owner], [], set()
        while stack:
            node = stack.pop()
            if node is None:
                order.append(stack.pop())
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.extend((node, None))
            for i in node.inputs:
                if i.owner is not None and id(i) not in memo and id(i.owner) not in seen:
                    stack.append(i.owner)
        for node in order:
            self.settle(node)

    def same(self, a, b):
        """Whether two tuples of terms are provably equal axis by axis."""
        return len(a) == len(b) and all(_canon(x) is _canon(y) or _canon(x) == _canon(y)
                                        for x, y in zip(a, b))

    def merge(self, x, y):
        """Record that two terms are equal (a check that ran says so)."""
        x, y = _canon(x), _canon(y)
        if x is y or x == y:
            return
        if isinstance(x, Dim) and isinstance(y, Dim):
            x.parent = y
        elif isinstance(x, Dim):
            x.value = y
        elif isinstance(y, Dim):
            y.value = x

    def vector(self, s):
        """The terms a shape vector ``s`` (int64, 1-d) holds, one per entry; None if unknown."""
        if isinstance(s, Constant):
            return tuple(int(e) if e >= 0 else Dim() for e in s.data.reshape(-1))
        node = s.owner
        if node is not None and node.op.name == "shape":
            return self.of(node.inputs[0])
        if node is not None and node.op.name == "make_vector":
            return tuple(self.scalar(p) for p in node.inputs)
        return tuple(Dim() for _ in range(s.type.shape[0] or 0))

    def scalar(self, p):
        """The term an integer scalar holds when it is a length (a constant or shape_at)."""
        if isinstance(p, Constant) and p.ndim == 0:
            return int(p.data) if int(p.data) >= 0 else Dim()
        node = p.owner
        if node is not None and node.op.name == "shape_at":
            x = node.inputs[0]
            return self.of(x)[node.op.axis % x.ndim]
        return Dim()

    # ------------------------------------------------------------------ settling nodes

    def settle(self, node):
        """Compute the terms of ``node``'s outputs (and merge what its checks prove)."""
        rule = _RULES.get(node.op.name)
        terms = None
        if rule is not None and (len(node.outputs) == 1 or node.op.name in _FIRST_OUTPUT):
            terms = rule(self, node)
        for i, o in enumerate(node.outputs):
            t = terms if (terms is not None and i == 0) else None
            if t is None or len(t) != o.ndim:
                t = tuple(Dim() for _ in range(o.ndim))
            # a static length is a fact too
            for x, s in zip(t, o.type.shape):
                if s is not None:
                    self.merge(x, s)
            self.memo[id(o)] = t
        self.keep.append(node)


def _broadcast(dims, shapes):
    """The terms of a broadcast of several term tuples (NumPy's rule)."""
    nd = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(nd):
        terms = [s[axis - nd + len(s)] for s in shapes if axis - nd + len(s) >= 0]
        terms = [_canon(t) for t in terms]
        ints = [t for t in terms if not isinstance(t, Dim) and t != 1]
        if ints:
            out.append(ints[0])
            continue
        classes = []
        for t in terms:
            if isinstance(t, Dim) and all(t is not c for c in classes):
                classes.append(t)
        if not classes:
            out.append(1)
        elif len(classes) == 1:
            out.append(classes[0])
        else:  # one of them, or a 1 stretched to the other: unknown until proved equal
            out.append(Dim(join=tuple(classes)))
    return tuple(out)


def _elemwise(d, node):
    shapes = [d.of(i) for i in node.inputs]
    first = shapes[0]
    # the common cases: one operand, or operands of one shape and 0-d ones
    if all(s == first or not s for s in shapes) and first:
        return first
    return _broadcast(d, shapes)


def _same_as_input(d, node):
    return d.of(node.inputs[0])


def _dimshuffle(d, node):
    src = d.of(node.inputs[0])
    return tuple(1 if a == "x" else src[a] for a in node.op.order)


def _matmul(d, node):
    a, b = (d.of(v) for v in node.inputs)
    d.merge(a[-1], b[-2])  # the product checks the contracted lengths
    batch = _broadcast(d, [a[:-2], b[:-2]])
    return batch + (a[-2], b[-1])


def _gemm(d, node):
    op = node.op
    a, b = d.of(node.inputs[0]), d.of(node.inputs[1])
    a = a[::-1] if op.trans_a else a
    b = b[::-1] if op.trans_b else b
    d.merge(a[1], b[0])
    prod = (a[0], b[1])
    if len(node.inputs) == 3:
        return _broadcast(d, [prod, d.of(node.inputs[2])])
    return prod


def _reduce(d, node):
    src, op = d.of(node.inputs[0]), node.op
    axes = op.axes(len(src)) if hasattr(op, "axes") else op.axis
    return tuple((1 if op.keepdims else None) if i in axes else t
                 for i, t in enumerate(src) if op.keepdims or i not in axes)


def _from_vector(index):
    def rule(d, node):
        return d.vector(node.inputs[index])
    return rule


def _cross_entropy(d, node):
    z, y = d.of(node.inputs[0]), d.of(node.inputs[1])
    d.merge(z[0], y[0])  # one label per row, checked when it runs
    return (z[0],)


def _one_hot(d, node):
    labels, n = node.inputs
    return d.of(labels) + (d.scalar(n),)


def _arange(d, node):
    start, stop, step = node.inputs
    if (isinstance(start, Constant) and start.data == 0 and isinstance(step, Constant)
            and step.data == 1 and start.dtype.startswith("int") and step.dtype.startswith("int")):
        t = d.scalar(stop)  # a length (constant >= 0 or shape_at), never negative
        return (t,)
    return None


def _gather_by_arrays(d, node):
    """``x[i, j, ...]`` with an integer array on every axis: the arrays' broadcast."""
    if len(node.inputs) - 1 != node.inputs[0].ndim or any(e != "[?]" for e in node.op.idx):
        return None
    return _broadcast(d, [d.of(i) for i in node.inputs[1:]])


def _lengths(d, node):
    """An array whose lengths are the node's inputs (``random_index``, ops/random.py)."""
    return tuple(d.scalar(p) for p in node.inputs[:node.op.ndim])


def _batch_axis(d, node):
    """An image op's result (a convolution's, a pooling's): its input's batch (axis 0), new
    lengths elsewhere."""
    return (d.of(node.inputs[0])[0],) + tuple(Dim() for _ in range(node.outputs[0].ndim - 1))


# ops of several outputs whose rule gives the first one's terms (the others get new ones)
_FIRST_OUTPUT = {"batch_norm", "layer_norm", "max_pool2d"}

_RULES = {
    "random_index": _lengths,
    "batch_norm": _same_as_input, "layer_norm": _same_as_input,
    "conv2d": _batch_axis, "max_pool2d": _batch_axis, "avg_pool2d": _batch_axis,
    "conv1d": _batch_axis, "adaptive_avg_pool2d": _batch_axis,  # the same ops, named so
    "cast": _same_as_input, "stop_gradient": _same_as_input, "softmax": _same_as_input,
    "log_softmax": _same_as_input, "dimshuffle": _dimshuffle, "matmul": _matmul,
    "gemm": _gemm, "broadcast_to": _from_vector(1), "sum_to": _from_vector(1),
    "reshape": _from_vector(1), "cross_entropy": _cross_entropy, "one_hot": _one_hot,
    "advanced_inc_subtensor": _same_as_input, "inc_subtensor": _same_as_input,
    "arange": _arange, "advanced_subtensor": _gather_by_arrays,
}
for _name in ("sum", "mean", "prod", "max", "min", "logsumexp", "argmax", "argmin"):
    _RULES[_name] = _reduce


def register_elementwise(names):
    for n in names:
        _RULES.setdefault(n, _elemwise)


register_elementwise(ELEMWISE)
# ops/random.py's draws and parameter checks: elementwise over their index and parameters
# (the stream's key and counter are 0-d)
register_elementwise(["uniform", "normal", "bernoulli", "integers", "random_check"])
