"""Stabilisation: naive formulas that overflow, underflow or cancel become stable ops.

Forward rewrites:

* ``log(softmax(x))`` -> ``log_softmax(x)`` (also through a gather: ``log(softmax(x)[i, y])``);
* ``-log_softmax(z)[arange(n), y]`` and ``-sum(one_hot(y, C) * log_softmax(z), axis=1)``
  -> ``cross_entropy(z, y)`` (labels counted from the end, as the indexing allowed, are
  first made non-negative);
* ``log(sigmoid(x))`` -> ``-softplus(-x)``, ``log(1 - sigmoid(x))`` -> ``-softplus(x)``;
* ``log(sum(exp(x)))`` -> ``logsumexp(x)``;
* ``log(1 + x)`` -> ``log1p(x)``, ``log(1 - x)`` -> ``log1p(-x)``, ``exp(x) - 1`` -> ``expm1(x)``.

``sg.grad`` runs before ``sg.function``, so the gradient of the naive formula
is already in the graph, built from the naive pieces: ``g / softmax(x)`` is
``inf`` where the softmax underflows, and ``0 * inf`` then makes NaN. The
gradient rules produce known shapes, which the backward rewrites recognise
and replace by the stable op's gradient:

* softmax's rule applied to ``g / softmax(x)`` (the cotangent of its log, also
  scattered through a gather): ``S * (g/S - sum(g/S * S))`` -> ``g - S * sum(g)``;
* sigmoid's rule applied to ``g / sigmoid(x)`` or to ``-(g / (1 - sigmoid(x)))``:
  ``g * sigmoid(-x)`` and ``-g * sigmoid(x)``;
* exp's rule under the spread of ``g / sum(exp(x))``: ``g * exp(x - logsumexp(x))``.

These change values where the naive formula rounds badly (that is their
point); where both are finite they agree to rounding. The cross-entropy
fusion is made only where the rows and classes picked are provably z's (else
the formula stays log_softmax and a gather: stable, not fused); the labels
are counted by ``cross_entropy`` when it runs, so a naive formula that
broadcasts one label against every row (or one row against many labels)
raises a ShapeError at its line instead of broadcasting.
"""

from ..graph import Constant
from ..ops.elemwise import Cast, Elemwise
from ..ops.indexing import getitem
from ..ops.nn import CrossEntropy, LogSoftmax
from ..ops.reduce import LogSumExp, Sum
from ..ops.shape import Shape, ShapeAt, broadcast_to
from ..ops.subtensor import ARRAY
from .algebra import same_values
from .engine import RuleSet, all_equal

__all__ = ["STABILISE"]

STABILISE = RuleSet("stabilise")


def _op(v, *names):
    node = v.owner
    return node if node is not None and node.op.name in names else None


def _ew(name, *args):
    return Elemwise(name)(*args)


# --------------------------------------------------------------------------- log of ...

@STABILISE("log")
def log_softmax_from_log(node, sweep):
    x = node.inputs[0]
    s = _op(x, "softmax")
    if s is not None:
        return LogSoftmax(s.op.axis)(s.inputs[0])
    g = _op(x, "advanced_subtensor", "subtensor")
    if g is not None and _op(g.inputs[0], "softmax") is not None:
        # log of some entries of a softmax: the same entries of its log
        s = g.inputs[0].owner
        return g.op.make_node(LogSoftmax(s.op.axis)(s.inputs[0]), *g.inputs[1:]).outputs[0]
    return None


@STABILISE("log")
def log_sigmoid(node, sweep):
    x, dtype = node.inputs[0], node.outputs[0].dtype
    s = _op(x, "sigmoid")
    if s is not None and s.inputs[0].dtype == dtype:   # log(sigmoid(x)) = -softplus(-x)
        return _ew("neg", _ew("softplus", _ew("neg", s.inputs[0])))
    d = _op(x, "sub")
    if d is not None and all_equal(d.inputs[0], 1) and _op(d.inputs[1], "sigmoid"):
        s = d.inputs[1].owner  # log(1 - sigmoid(x)) = -softplus(x)
        if s.inputs[0].dtype == dtype and same_values(d, s.outputs[0], sweep) is not None:
            return _ew("neg", _ew("softplus", s.inputs[0]))
    return None


@STABILISE("log")
def log_sum_exp(node, sweep):
    s = _op(node.inputs[0], "sum")
    if s is None or _op(s.inputs[0], "exp") is None:
        return None
    x = s.inputs[0].owner.inputs[0]
    return LogSumExp(s.op.axis, s.op.keepdims)(x)


@STABILISE("log")
def log_one_plus(node, sweep):
    a = _op(node.inputs[0], "add", "sub")
    if a is None or a.outputs[0].dtype not in ("float32", "float64"):
        return None
    p, q = a.inputs
    if a.op.name == "sub":
        if not all_equal(p, 1):
            return None
        x = same_values(a, q, sweep)
        return None if x is None else _ew("log1p", _ew("neg", x))
    for one, x in ((p, q), (q, p)):
        if all_equal(one, 1):
            x = same_values(a, x, sweep)
            if x is not None:
                return _ew("log1p", x)
    return None


@STABILISE("sub", "add")
def exp_minus_one(node, sweep):
    a, b = node.inputs
    if node.op.name == "sub":
        pairs = [(a, b, 1)]
    else:
        pairs = [(a, b, -1), (b, a, -1)]
    for e, c, value in pairs:
        en = _op(e, "exp")
        if (en is not None and all_equal(c, value) and e.dtype == node.outputs[0].dtype
                and same_values(node, e, sweep) is not None):
            return _ew("expm1", en.inputs[0])
    return None


# --------------------------------------------------------------------------- cross-entropy

def _labels_from_the_front(y, z):
    """``y`` with the negative labels indexing allows (counted from the end, down to -C)
    made positive; others are left for cross_entropy to report as they are."""
    n = ShapeAt(1)(z)
    from_end = _ew("add", y, n)
    negative = _ew("mul", _ew("lt", y, Constant(0, dtype=y.dtype)),
                   _ew("ge", from_end, Constant(0, dtype=from_end.dtype)))
    return _ew("where", negative, from_end, y)


def _per_row_loss(v, sweep):
    """``cross_entropy(z, y)`` when ``v`` is ``-log_softmax(z)`` picked at ``y`` row by row
    (``-log_softmax(z)[arange(n), y]`` or ``-sum(one_hot(y, C) * log_softmax(z), axis=1)``),
    without the minus sign; else None."""
    d = sweep.dims
    g = _op(v, "advanced_subtensor")
    if g is not None and tuple(g.op.idx) == (ARRAY, ARRAY):
        ls = _op(g.inputs[0], "log_softmax")
        z, (r, y) = g.inputs[0], g.inputs[1:]
        rn = _op(r, "arange")
        if ls is None or ls.op.axis != 1 or rn is None or y.ndim != 1 or r.ndim != 1:
            return None
        z = ls.inputs[0]
        if d.of(r)[0] is d.of(z)[0] or d.of(r)[0] == d.of(z)[0]:
            rows = z
        elif rn.inputs[1].owner is not None and rn.inputs[1].owner.op.name == "shape_at":
            # arange(n) with n a length: the first n rows (a view); more rows than z
            # has fail in cross_entropy as they failed in the gather
            rows = getitem(z, slice(None, rn.inputs[1]))
        else:
            return None
        return CrossEntropy()(rows, _labels_from_the_front(y, z))
    s = _op(v, "sum")
    if s is None or s.op.axis != (1,) or s.op.keepdims:
        return None
    m = _op(s.inputs[0], "mul")
    if m is None:
        return None
    for oh, lsv in (m.inputs, m.inputs[::-1]):
        ohn, ls = _op(oh, "one_hot"), _op(lsv, "log_softmax")
        if ohn is None or ls is None or ls.op.axis != 1 or ls.inputs[0].ndim != 2:
            continue
        z, y = ls.inputs[0], ohn.inputs[0]
        # the classes must be z's columns; one_hot refuses the labels cross_entropy refuses
        if y.ndim == 1 and d.same(d.of(oh)[1:], d.of(z)[1:]):
            return CrossEntropy()(z, y)
    return None


@STABILISE("neg")
def cross_entropy_from_naive(node, sweep):
    """``-log_softmax(z)[arange(n), y]`` and its one-hot spelling, also under a sum or mean
    over the rows (``-x.mean()`` is ``(-x).mean()`` exactly): the fused ``cross_entropy``."""
    v = node.inputs[0]
    reduce = _op(v, "sum", "mean")
    if reduce is not None and v.ndim == 0 and reduce.inputs[0].ndim == 1:
        loss = _per_row_loss(reduce.inputs[0], sweep)
        out = None if loss is None else reduce.op.make_node(loss).outputs[0]
    else:
        out = _per_row_loss(v, sweep)
    if out is None:
        return None
    # cross_entropy checks one label per row when it runs: let the lengths of the gather
    # it replaces (which its gradient still asks for) know it
    sweep.dims.of(out)
    dtype = node.outputs[0].dtype
    return out if out.dtype == dtype else Cast(dtype)(out)


# --------------------------------------------------------------------------- gradients

def _terms(t, limit=64):
    """``t`` split into the terms of a sum, [(sign, term)], opening at most ``limit`` nodes."""
    out, stack = [], [(1, t)]
    while stack:
        sign, v = stack.pop()
        n = _op(v, "add", "sub", "neg") if limit > 0 else None
        if n is None:
            out.append((sign, v))
        elif n.op.name == "neg":
            stack.append((-sign, n.inputs[0]))
        else:
            stack.append((sign if n.op.name == "add" else -sign, n.inputs[1]))
            stack.append((sign, n.inputs[0]))
        limit -= n is not None
    return out


def _signed_sum(parts):
    total = None
    for sign, v in parts:
        if total is None:
            total = v if sign > 0 else _ew("neg", v)
        else:
            total = _ew("add" if sign > 0 else "sub", total, v)
    return total


def _times_s(t, s, sweep):
    """G with ``t == G / s`` structurally (a gather's scatter included), else None."""
    d = sweep.dims
    n = _op(t, "truediv")
    if n is not None and n.inputs[1] is s:
        g = n.inputs[0]
        if not d.same(d.of(g), d.of(s)):
            g = broadcast_to(g, Shape()(s))
        return g
    n = _op(t, "advanced_inc_subtensor", "inc_subtensor")
    if n is None or n.op.set_instead_of_inc or not all_equal(n.inputs[0], 0):
        return None
    zeros, y, *index = n.inputs
    q = _op(y, "truediv")
    if q is None:
        return None
    picked = q.inputs[1].owner
    gather = "advanced_subtensor" if n.op.name == "advanced_inc_subtensor" else "subtensor"
    if (picked is None or picked.op.name != gather or picked.inputs[0] is not s
            or tuple(picked.op.idx) != tuple(n.op.idx)
            or any(a is not b for a, b in zip(picked.inputs[1:], index))):
        return None
    # each hit adds g_h / s[pos]: together (sum of g_h) / s[pos], the scatter of g over s
    return n.op.make_node(zeros, q.inputs[0], *index).outputs[0]


def _stable_parts(t, s, sweep):
    """The terms of ``t`` that are some G / s, as G, and the rest, or None if none is."""
    done, rest = [], []
    for sign, u in _terms(t):
        g = _times_s(u, s, sweep)
        (done if g is not None else rest).append((sign, g if g is not None else u))
    return (done, rest) if done else None


@STABILISE("mul")
def softmax_grad_of_log(node, sweep):
    """softmax's rule ``S * (T - sum(T * S))`` with ``T = G / S``: ``G - S * sum(G)``."""
    for sv, dv in (node.inputs, node.inputs[::-1]):
        sn, dn = _op(sv, "softmax"), _op(dv, "sub")
        if sn is None or dn is None:
            continue
        t, inner = dn.inputs
        rn = _op(inner, "sum")
        if rn is None or rn.op.axis != (sn.op.axis,) or not rn.op.keepdims:
            continue
        mn = _op(rn.inputs[0], "mul")
        if mn is None or {id(i) for i in mn.inputs} != {id(t), id(sv)} or len(mn.inputs) != 2:
            continue
        parts = _stable_parts(t, sv, sweep)
        if parts is None:
            return None
        done, rest = parts
        axis = (sn.op.axis,)
        g = _signed_sum(done)
        out = _ew("sub", g, _ew("mul", sv, Sum(axis, True)(g)))
        if rest:
            r = _signed_sum(rest)
            out = _ew("add", out, _ew("mul", sv, _ew("sub", r, Sum(axis, True)(_ew("mul", r, sv)))))
        return out
    return None


@STABILISE("mul")
def sigmoid_grad_of_log(node, sweep):
    """sigmoid's rule ``T * S * (1 - S)`` with ``T = G / S`` or ``T = -(G / (1 - S))``."""
    for pv, u in (node.inputs, node.inputs[::-1]):
        pn, un = _op(pv, "mul"), _op(u, "sub")
        if pn is None or un is None or not all_equal(un.inputs[0], 1):
            continue
        s = un.inputs[1]
        sn = _op(s, "sigmoid")
        if sn is None or s not in pn.inputs or len(pn.inputs) != 2:
            continue
        t = pn.inputs[1] if pn.inputs[0] is s else pn.inputs[0]
        x = sn.inputs[0]
        done, rest = [], []
        for sign, part in _terms(t):
            g = _times_s(part, s, sweep)
            if g is not None:      # (G / S) * S * (1 - S) = G * sigmoid(-x)
                done.append((sign, _ew("mul", g, _ew("sigmoid", _ew("neg", x)))))
                continue
            g = _times_s(part, u, sweep)
            if g is not None:      # (G / (1 - S)) * S * (1 - S) = G * S
                done.append((sign, _ew("mul", g, s)))
                continue
            rest.append((sign, _ew("mul", _ew("mul", part, s), u)))
        if not done:
            return None
        return _signed_sum(done + rest)
    return None


@STABILISE("mul")
def exp_grad_of_log_sum(node, sweep):
    """exp's rule ``spread(G / sum(exp(x))) * exp(x)``: logsumexp's ``G * exp(x - lse(x))``."""
    d = sweep.dims
    for bv, e in (node.inputs, node.inputs[::-1]):
        en, bn = _op(e, "exp"), _op(bv, "broadcast_to")
        if en is None or bn is None or not d.same(d.vector(bn.inputs[1]), d.of(e)):
            continue
        k = bn.inputs[0]
        q = _op(k, "truediv")
        if q is None:
            kn = _op(k, "dimshuffle")
            q = _op(kn.inputs[0], "truediv") if kn is not None else None
        if q is None:
            continue
        sn = _op(q.inputs[1], "sum")
        if sn is None or sn.inputs[0] is not e:
            continue
        axes, keep = sn.op.axis, sn.op.keepdims
        if k is not q.outputs[0] and (keep or k.owner.op.order != _expanded(axes, e.ndim)):
            continue
        if k is q.outputs[0] and not keep and axes:
            continue
        x, g = en.inputs[0], q.inputs[0]
        op = LogSumExp(axes, keep)
        return op.grad_rule(x, op(x), g)
    return None


def _expanded(axes, ndim):
    """The dimshuffle order that puts back the reduced ``axes`` as length 1."""
    src = iter(range(ndim - len(axes)))
    return tuple("x" if i in axes else next(src) for i in range(ndim))

