"""Symbolic differentiation: a graph-to-graph transform over ordinary ops.

``grad`` walks the graph from the cost back to ``wrt`` in reverse topological
order, asks each node's op for its gradient rule (itself graph) and sums the
cotangents that reach each variable. The result is an ordinary graph: it can
be printed, compiled and differentiated again. Nodes made by a rule carry the
forward node's user line and ``grad_of`` pointing at it, and cotangents of
named variables are named ``d(cost)/d(name)``.
"""

import warnings

from . import dtypes as _dt
from .errors import (DisconnectedInputError, NonDifferentiableError, NonScalarCostError,
                     ShapeError)
from .graph import (NOT_DIFFERENTIABLE, Constant, Variable, as_variable, clone_replace,
                    shape_text, toposort, trace_as)
from .ops import elemwise as _ew
from .ops import shape_ops as _sh
from .ops.creation import arange
from .ops.join import stack
from .ops.ifelse import make_ifelse
from .ops.scan import map as _map

__all__ = ["grad", "vjp", "jvp", "jacobian", "hessian"]

_DISCONNECTED = ("raise", "warn", "ignore")


def _label(v):
    if v.name:
        return v.name
    if v.owner is not None:
        return f"{v.owner.op} at {v.owner.trace}"
    return repr(v)


def _as_list(wrt, what="wrt"):
    single = isinstance(wrt, Variable)
    items = [wrt] if single else list(wrt) if isinstance(wrt, (list, tuple)) else None
    if items is None:
        raise TypeError(f"{what} must be a Variable or a list/tuple of Variables, got "
                        f"{type(wrt).__name__}")
    for i, v in enumerate(items):
        if not isinstance(v, Variable):
            raise TypeError(f"{what}[{i}] must be a symbolic Variable, got {type(v).__name__}")
    return items, (lambda r: r[0]) if single else (lambda r: type(wrt)(r))


def _check_cost(cost):
    if not isinstance(cost, Variable):
        raise TypeError(f"cost must be a symbolic Variable, got {type(cost).__name__}")
    if cost.ndim != 0:
        raise NonScalarCostError(
            f"grad needs a 0-d cost, got a {cost.ndim}-d {cost.dtype} value of shape "
            f"{shape_text(cost.type.shape, unknown='?')}"
            + (f" made at {cost.owner.trace}" if cost.owner is not None else "") + ".\n"
            "A gradient points in the direction that changes one number; with many outputs "
            "there is no single direction to minimise. Reduce the cost to one number first, "
            "usually cost.mean() (the gradient of the minibatch mean equals the mean of the "
            "per-example gradients) or cost.sum(). To back-propagate a given seed instead, "
            "call sg.grad(None, wrt, known_grads={cost: seed}) (a vector-Jacobian product); "
            "for every per-example gradient use sg.jacobian(cost, wrt).")
    if not _dt.is_float(cost.dtype):
        raise NonDifferentiableError(
            f"grad needs a float cost, got {cost.dtype}"
            + (f" (made by {cost.owner.op} at {cost.owner.trace})" if cost.owner else "")
            + "; integer and bool values have no gradient")


def grad(cost, wrt, known_grads=None, disconnected="raise", consider_constant=None):
    """The gradient of a 0-d ``cost`` with respect to ``wrt``, as symbolic graph.

    Parameters
    ----------
    cost : Variable or None
        A 0-d float variable, or None when ``known_grads`` gives the seeds.
    wrt : Variable or list/tuple of Variables
        Inputs, shared variables or any intermediate result of the graph; the
        result mirrors this structure.
    known_grads : dict, optional
        ``{variable: cotangent}`` seeds back-propagated as well (for a
        vector-Jacobian product, or a gradient known from elsewhere).
    disconnected : {"raise", "warn", "ignore"}
        What to do for a ``wrt`` no gradient reaches: raise
        ``DisconnectedInputError``, or return zeros (with a warning for "warn").
    consider_constant : Variable or list of Variables, optional
        Theano's: values the gradient treats as constants. A cotangent reaches
        each of them (a ``wrt`` may be one) but goes no further back, into what
        it was computed from -- as if each were wrapped in ``sg.stop_gradient``
        where the cost uses it, without rebuilding the cost.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> g = sg.grad((x ** 2).sum(), x)
    >>> g.name
    'd(cost)/d(x)'
    >>> sg.evaluate(g, {x: np.array([1.0, 2.0])})
    array([2., 4.])
    """
    if disconnected not in _DISCONNECTED:
        raise ValueError(f"disconnected must be one of {_DISCONNECTED}, got {disconnected!r}")
    wrt_list, rebuild = _as_list(wrt)
    seeds = {}
    if cost is not None:
        _check_cost(cost)
        seeds[cost] = Constant(1, dtype=cost.dtype, name=f"d({cost.name or 'cost'})/d({cost.name or 'cost'})")
    elif not known_grads:
        raise ValueError("grad needs a cost, or known_grads when cost is None")
    for var, seed in (known_grads or {}).items():
        seeds[var] = _check_seed(var, seed)
    cost_name = cost.name if cost is not None and cost.name else "cost"
    # a Variable, a list or a tuple (never tested for truth: a Variable has none)
    blocked, _ = _as_list([] if consider_constant is None else consider_constant,
                          "consider_constant")
    results = _backprop(seeds, wrt_list, cost_name, disconnected, {id(v) for v in blocked})
    return rebuild(results)


def _check_seed(var, seed):
    if not isinstance(var, Variable):
        raise TypeError(f"known_grads keys must be Variables, got {type(var).__name__}")
    if not _dt.is_float(var.dtype):
        raise NonDifferentiableError(f"known_grads: {_label(var)} is {var.dtype}; only float "
                                     f"variables have gradients")
    seed = as_variable(seed, dtype=var.dtype if not isinstance(seed, Variable) else None)
    if seed.ndim != var.ndim and seed.ndim != 0:
        raise ShapeError(f"known_grads: the seed for {_label(var)} is {seed.type}, "
                         f"expected {var.ndim}-d like the variable ({var.type})")
    _ew.broadcast_static([seed.type.shape, var.type.shape], "known_grads")
    if seed.ndim != var.ndim or seed.type.shape != var.type.shape:
        seed = _sh.broadcast_to(seed, _sh.shape(var))
    return _ew.cast(seed, var.dtype)


def _reach(nodes, wrt_list, blocked=frozenset()):
    """Ids of the variables whose value depends on some ``wrt`` (the paths to search);
    a ``blocked`` variable (consider_constant) depends on nothing but itself, and so does
    a ``stop_gradient``'s result: a path cut on purpose is no path, an integer one (an
    argmax used as an index) included."""
    reach = {id(v) for v in wrt_list}
    for node in nodes:
        if isinstance(node.op, _ew.StopGradient):
            continue
        vi = node.op.value_inputs
        ins = node.inputs if vi is None else [node.inputs[i] for i in vi]
        if any(id(i) in reach for i in ins):
            reach.update(id(o) for o in node.outputs if id(o) not in blocked)
    return reach


def _nondiff_error(var, consumer, wrt_list, cost_name):
    names = ", ".join(_label(w) for w in wrt_list)
    if var.owner is not None:
        what = (f"the result of {var.owner.op} made at {var.owner.trace}, which is {var.dtype}")
    else:
        what = f"the {var.dtype} input {_label(var)}"
    into = f", used by {consumer.op} at {consumer.trace}" if consumer is not None else ""
    return NonDifferentiableError(
        f"d({cost_name})/d({names}) is not defined: the path goes through {what}{into}. "
        "Integer and bool values (argmax/argmin, comparisons, integer casts, integer inputs) "
        "have no gradient. Use sg.where(cond, a, b) to select between float values, or wrap the "
        "value in sg.stop_gradient(...) if the path should carry no gradient.")


def _backprop(seeds, wrt_list, cost_name, disconnected, blocked=frozenset()):
    for w in wrt_list:
        if not _dt.is_float(w.dtype):
            raise _nondiff_error(w, None, [w], cost_name)
    nodes = toposort(list(seeds))
    reach = _reach(nodes, wrt_list, blocked)
    contrib = {}  # id(var) -> list of cotangent Variables
    for var, seed in seeds.items():
        contrib.setdefault(id(var), []).append(seed)
    total = {}

    def cotangent(var):
        if id(var) not in total:
            parts = contrib.get(id(var))
            total[id(var)] = None if not parts else _sum(parts, var, cost_name)
        return total[id(var)]

    for node in reversed(nodes):
        if not any(id(o) in reach for o in node.outputs):
            continue
        # a blocked output's cotangent stops at it (it is a wrt, or it would not be reached)
        gouts = [None if id(o) in blocked else cotangent(o) for o in node.outputs]
        if all(g is None for g in gouts):
            continue
        for o, g in zip(node.outputs, gouts):
            if g is not None and not _dt.is_float(o.dtype):
                raise _nondiff_error(o, None, wrt_list, cost_name)
        with trace_as(node.trace, grad_of=node):
            if getattr(node.op, "grad_takes_vjp", False):
                # An op holding inner graphs (scan, ifelse) differentiates them with this
                # module's vjp; it is told which inputs need a gradient at all.
                wanted = [id(i) in reach for i in node.inputs]
                gins = node.op.grad(node, node.inputs, node.outputs, gouts, vjp=_rule_vjp,
                                    wanted=wanted)
            else:
                gins = node.op.grad(node, node.inputs, node.outputs, gouts)
        if len(gins) != len(node.inputs):
            raise AssertionError(f"the gradient rule of {node.op} returned {len(gins)} entries "
                                 f"for {len(node.inputs)} inputs")
        for inp, g in zip(node.inputs, gins):
            if g is None or id(inp) not in reach:
                continue
            if g is NOT_DIFFERENTIABLE or not _dt.is_float(inp.dtype):
                raise _nondiff_error(inp, node, wrt_list, cost_name)
            contrib.setdefault(id(inp), []).append(g)

    results = []
    for w in wrt_list:
        g = cotangent(w)
        if g is None:
            g = _disconnected(w, disconnected, cost_name, id(w) in reach and
                              any(id(w) in {id(i) for i in n.inputs} for n in nodes))
        results.append(g)
    return results


def _rule_vjp(seeds, wrt):
    """For gradient rules of ops with inner graphs: ``seeds`` a list of (variable,
    cotangent), a variable may come more than once (its cotangents add up); zeros for
    a ``wrt`` nothing reaches."""
    summed = {}
    for var, ct in seeds:
        # a loop's cotangents have their variable's shape by construction: no broadcast
        ct = _ew.cast(ct, var.dtype) if ct.ndim == var.ndim else _check_seed(var, ct)
        summed[var] = summed[var] + ct if var in summed else ct
    return _backprop(summed, list(wrt), "cost", "ignore")


def _sum(parts, var, cost_name):
    """The cotangent of ``var``: its contributions added, cast and named."""
    parts = [p if p.dtype == var.dtype else _ew.cast(p, var.dtype) for p in parts]
    g = parts[0]
    for p in parts[1:]:
        g = g + p
    if var.name and g.name is None:
        g.name = f"d({cost_name})/d({var.name})"
    elif g.name is None and var.owner is not None:
        g.tag.cotangent_of = var
    return g


def _disconnected(w, mode, cost_name, used):
    why = ("every path to it is cut (stop_gradient or consider_constant, the condition of "
           "where, or a shape)"
           if used else "the cost does not depend on it")
    msg = f"d({cost_name})/d({_label(w)}): no gradient reaches {_label(w)}: {why}"
    if mode == "raise":
        raise DisconnectedInputError(msg + "; pass disconnected='ignore' (or 'warn') to get "
                                           "zeros instead")
    if mode == "warn":
        warnings.warn(msg + "; returning zeros", stacklevel=4)
    z = _sh.zeros_like(w)
    z.name = f"d({cost_name})/d({_label(w)})"
    return z


# --------------------------------------------------------------------------- products

def vjp(outputs, wrt, cotangents):
    """Vector-Jacobian product: back-propagate ``cotangents`` from ``outputs`` to ``wrt``.

    ``outputs`` and ``cotangents`` are Variables or equal-length lists; the
    result mirrors ``wrt``. Variables of ``wrt`` no cotangent reaches get zeros.

    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> v = sg.vjp(x * 3, x, sg.constant([1.0, 1.0]))
    >>> sg.evaluate(v, {x: np.zeros(2)})
    array([3., 3.])
    """
    outs, _ = _as_list(outputs, "outputs")
    cts = [cotangents] if isinstance(outputs, Variable) else list(cotangents)
    if len(cts) != len(outs):
        raise ValueError(f"vjp: {len(outs)} outputs but {len(cts)} cotangents")
    return grad(None, wrt, known_grads=dict(zip(outs, cts)), disconnected="ignore")


def jvp(outputs, wrt, tangents):
    """Jacobian-vector product (forward mode): the change of ``outputs`` along ``tangents``.

    Built from reverse-mode rules by transposing the vector-Jacobian product:
    for a placeholder cotangent ``u``, ``vjp(u)`` is linear in ``u``, and the
    gradient of ``<vjp(u), t>`` with respect to ``u`` is ``J t``. The
    placeholders are then replaced by zeros (the result does not depend on
    them), so the graph needs no extra input. The result mirrors ``outputs``.

    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> t = sg.jvp(x ** 2, x, sg.constant([1.0, 0.0]))
    >>> sg.evaluate(t, {x: np.array([3.0, 4.0])})
    array([6., 0.])
    """
    outs, rebuild = _as_list(outputs, "outputs")
    wrts, _ = _as_list(wrt)
    tans = [tangents] if isinstance(wrt, Variable) else list(tangents)
    if len(tans) != len(wrts):
        raise ValueError(f"jvp: {len(wrts)} wrt variables but {len(tans)} tangents")
    tans = [_check_seed(w, t) for w, t in zip(wrts, tans)]
    for o in outs:
        if not _dt.is_float(o.dtype):
            raise NonDifferentiableError(f"jvp: output {_label(o)} is {o.dtype}, not float")
    us = [Variable(o.type, name=f"u_{i}") for i, o in enumerate(outs)]
    pulled = grad(None, wrts, known_grads=dict(zip(outs, us)), disconnected="ignore")
    inner = None
    for p, t in zip(pulled, tans):
        term = (p * t).sum()
        inner = term if inner is None else inner + term
    pushed = grad(inner, us, disconnected="ignore")
    zeros = {u: _sh.zeros_like(o) for u, o in zip(us, outs)}
    return rebuild(clone_replace(pushed, zeros))


def jacobian(expr, wrt, disconnected="ignore"):
    """The Jacobian of ``expr`` with respect to ``wrt``: shape ``expr.shape + wrt.shape``.

    One vector-Jacobian product per element of ``expr``: unrolled when the
    size of ``expr`` is known when the graph is built, else a loop
    (``sg.map``) over the elements, so any length known only at call time
    works. Row ``i`` of the Jacobian of per-example losses is example
    ``i``'s gradient.

    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> sg.evaluate(sg.jacobian(x ** 2, x), {x: np.array([1.0, 2.0])})
    array([[2., 0.],
           [0., 4.]])
    """
    if not isinstance(expr, Variable):
        raise TypeError(f"jacobian: expr must be a Variable, got {type(expr).__name__}")
    wrts, rebuild = _as_list(wrt)
    if not _dt.is_float(expr.dtype):
        raise NonDifferentiableError(f"jacobian: expr is {expr.dtype}, not float")
    if expr.type.size is None:
        return rebuild(_jacobian_loop(expr, wrts, disconnected))
    flat = _sh.reshape(expr, (-1,)) if expr.ndim != 1 else expr
    rows = [[] for _ in wrts]
    for i in range(expr.type.size):
        gs = grad(flat[i], wrts, disconnected=disconnected)
        for r, g in zip(rows, gs):
            r.append(g)
    out = []
    for w, r in zip(wrts, rows):
        if not r:
            out.append(_sh.zeros((*expr.type.shape, *[_sh.shape_at(w, k) for k in range(w.ndim)]),
                                 dtype=w.dtype))
            continue
        stacked = stack(r)
        dims = list(expr.type.shape) + [_sh.shape_at(w, k) for k in range(w.ndim)]
        out.append(_sh.reshape(stacked, dims))
    return rebuild(out)


def _length(v, k):
    return v.type.shape[k] if v.type.shape[k] is not None else _sh.shape_at(v, k)


def row_of(v, i, stop=()):
    """``v[i:i + 1]`` computed from row ``i`` of what ``v``'s rows come from (``Op.row_inputs``).

    The index moves down the graph through every op whose result's rows are its
    inputs' rows (elementwise ops, a matrix times a matrix, softmax and reductions
    along other axes, a per-row loss) and is taken where it cannot go further: at
    leaves, at ops that mix rows, at the variables of ``stop``. The result equals
    ``v[i:i + 1]``; its cost is one row's, not the whole batch's, wherever the index
    reached the inputs. An operand whose leading length is known only at call time
    may broadcast (length 1): it is indexed at ``min(i, length - 1)``, its only row
    then. Returns None when ``v``'s own op does not keep rows (nothing gained).
    """
    stop = {id(s) for s in stop}

    def rowwise(x):
        return (x.owner is not None and id(x) not in stop and len(x.owner.outputs) == 1
                and x.ndim >= 1 and x.owner.op.row_inputs(x.owner) is not None)

    if not rowwise(v):
        return None
    memo = {}

    def sliced(x):
        if x.type.shape[0] is None:
            j = _ew.minimum(i, _ew.sub(_sh.shape_at(x, 0), 1))
        else:
            j = i
        return x[j:j + 1]

    todo = [v]
    while todo:  # depth first, without recursion: graphs may be deep
        x = todo[-1]
        if id(x) in memo:
            todo.pop()
            continue
        node = x.owner
        rows = node.op.row_inputs(node)
        waiting = [node.inputs[k] for k in rows
                   if rowwise(node.inputs[k]) and id(node.inputs[k]) not in memo]
        if waiting:
            todo.extend(waiting)
            continue
        todo.pop()
        inputs = [(memo[id(a)] if id(a) in memo else sliced(a)) if k in rows else a
                  for k, a in enumerate(node.inputs)]
        with trace_as(node.trace, node.grad_of):
            memo[id(x)] = node.op.make_node(*inputs).outputs[0]
    return memo[id(v)]


def _jacobian_loop(expr, wrts, disconnected):
    """The Jacobian as a loop over the elements of ``expr`` (a vector-Jacobian product each).

    For a vector of per-example values (losses), a step computes its example's value
    from that example alone where the graph allows (``row_of``), so each step costs
    one example's forward and backward pass, not the whole batch's.
    """
    flat = _sh.reshape(expr, (-1,)) if expr.ndim != 1 else expr
    n = _length(flat, 0)

    def row(i):
        one = row_of(flat, i, stop=wrts) if expr.ndim == 1 else None
        return grad(flat[i] if one is None else one[0], wrts, disconnected=disconnected)

    rows, _ = _map(row, sequences=[arange(n)], name="jacobian")
    rows = [rows] if isinstance(rows, Variable) else rows
    if any(None in r.type.shape[1:] for r in rows):
        # An empty expr has an empty Jacobian, without running a step (whose shapes a
        # loop of zero steps would have to find by running it on nothing). Where every
        # row's shape is known (wrt's), a loop of zero steps knows its empty stacks.
        empty = [_sh.zeros((0, *[_length(w, k) for k in range(w.ndim)]), dtype=r.dtype)
                 for w, r in zip(wrts, rows)]
        rows = make_ifelse(_ew.gt(n, 0), rows, empty)
    out = []
    for w, r in zip(wrts, rows):
        if expr.ndim != 1:
            dims = [_length(expr, k) for k in range(expr.ndim)] + \
                   [_length(w, k) for k in range(w.ndim)]
            r = _sh.reshape(r, tuple(dims))
        out.append(r)
    return out


def hessian(cost, wrt, disconnected="ignore"):
    """The matrix of second derivatives of a 0-d ``cost`` (``jacobian(grad(cost, wrt), wrt)``).

    A loop over the gradient's elements when ``wrt``'s size is known only at call time.
    """
    wrts, rebuild = _as_list(wrt)
    gs = grad(cost, wrts, disconnected=disconnected)
    return rebuild([jacobian(g, w, disconnected="ignore") for w, g in zip(wrts, gs)])
