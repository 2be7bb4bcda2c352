"""Neural-network ops: softmax, log-softmax, one-hot, the cross-entropy losses and embedding.

``softmax``, ``log_softmax`` and ``cross_entropy`` are ops of their own so
their NumPy references (and later their C) can subtract the maximum first:
composed from ``exp`` and ``sum`` they would overflow for logits of a few
hundred. ``binary_cross_entropy_with_logits`` needs no op: the stable
``softplus`` row already carries the trick.
"""

import math

import numpy as np

from .. import dtypes as _dt
from ..errors import IndexError as _IndexError
from ..errors import ShapeError
from ..graph import NOT_DIFFERENTIABLE, Op, TensorType, Variable, as_variable, user_trace
from .elemwise import cast, eq, exp, softplus, where
from ..codegen.ir import (Alloc, Arr, Bin, Call, Cast, Check, Dim, Elem, Int, ItemSize, Let, Local,
                          ValuePtr, Workspace, shape_of)
from .shape import expand_dims, normalize_axis, scalar_entry, shape_at

__all__ = ["softmax", "log_softmax", "cross_entropy", "binary_cross_entropy_with_logits",
           "one_hot", "embedding"]


def _rd():
    # Imported at call time: the reductions module may be built after this one.
    from . import reduce
    return reduce


def _require_float(x, opname, what="input"):
    if not _dt.is_float(x.dtype):
        raise TypeError(f"{opname}: the {what} must be float, got {x.type}; cast it first, "
                        f"e.g. x.astype('float64')")


def _at_line(err):
    """The error with the user's file:line appended, as ``Op.make_node`` does."""
    return type(err)(f"{err} (at {user_trace()})")


def _axis_for(x, axis):
    """``axis`` normalised when valid (so equal ops compare equal); else left for ``infer``."""
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise _at_line(TypeError(f"axis must be an int, got {axis!r}"))
    return int(axis) % x.ndim if -x.ndim <= axis < x.ndim else int(axis)


# --------------------------------------------------------------------------- NumPy references

def _shifted(x, axis, finite=True):
    """``x`` minus its maximum along ``axis``; with ``finite``, an infinite maximum is not
    subtracted (cross_entropy: logsumexp's rule, so a +inf logit gives an infinite loss)."""
    if x.shape[axis] == 0:
        return np.array(x, copy=True)
    m = np.max(x, axis=axis, keepdims=True)
    return x - (np.where(np.isfinite(m), m, 0).astype(x.dtype) if finite else m)


def _sum_exp(s, axis):
    """``sum(exp(s), axis)`` with keepdims, accumulated in float64 (the C sums in a double)."""
    return np.sum(np.exp(s), axis=axis, keepdims=True, dtype=np.float64)


# softmax and log_softmax are NumPy's formulas, ``e = exp(x - max); e / sum(e)``
# and ``(x - max) - log(sum(exp(x - max)))``, the maximum always subtracted: a
# row holding +inf (inf - inf) or only -inf gives NaN throughout, as in PyTorch.

def _log_softmax(x, axis):
    with np.errstate(all="ignore"):
        s = _shifted(x, axis, finite=False)
        return s - np.log(_sum_exp(s, axis)).astype(x.dtype)


def _softmax(x, axis):
    with np.errstate(all="ignore"):
        e = np.exp(_shifted(x, axis, finite=False))
        return (e / np.sum(e, axis=axis, keepdims=True, dtype=np.float64)).astype(x.dtype)


# --------------------------------------------------------------------------- softmax

class _AlongAxis(Op):
    """Base of the float ops that normalise along one axis and keep the input's type."""

    __props__ = ("axis",)
    register = False

    def __init__(self, axis=-1):
        self.axis = int(axis)

    def infer(self, x):
        _require_float(x, self.name)
        normalize_axis(self.axis, x.ndim, self.name)
        return [x.type]

    def row_inputs(self, node):
        """Along any axis but the leading one, each row on its own."""
        x = node.inputs[0]
        return (0,) if x.ndim > 1 and normalize_axis(self.axis, x.ndim, self.name) != 0 else None


class Softmax(_AlongAxis):
    """``exp(x) / sum(exp(x), axis)``, computed stably (the maximum is subtracted first).

    Gradient: ``out * (g - sum(g * out, axis, keepdims=True))``.
    """

    name = "softmax"

    def flops(self, node, in_shapes, out_shapes):
        """About 4 per element of the input: max, subtract, exp, add (``sg.explain``'s rules)."""
        return 4 * math.prod(in_shapes[0])

    def perform(self, node, x):
        return [np.asarray(_softmax(x, self.axis), dtype=x.dtype)]

    def grad(self, node, inputs, outputs, gouts):
        (out,), (g,) = outputs, gouts
        inner = _rd().sum(g * out, axis=self.axis, keepdims=True)
        return [out * (g - inner)]

    def lower(self, node):
        return _along_axis(node, "sg_softmax")


class LogSoftmax(_AlongAxis):
    """``x - logsumexp(x, axis)``, computed stably.

    Gradient: ``g - exp(out) * sum(g, axis, keepdims=True)``.
    """

    name = "log_softmax"

    def flops(self, node, in_shapes, out_shapes):
        """About 4 per element of the input: max, subtract, exp, add (``sg.explain``'s rules)."""
        return 4 * math.prod(in_shapes[0])

    def perform(self, node, x):
        return [np.asarray(_log_softmax(x, self.axis), dtype=x.dtype)]

    def grad(self, node, inputs, outputs, gouts):
        (out,), (g,) = outputs, gouts
        return [g - exp(out) * _rd().sum(g, axis=self.axis, keepdims=True)]

    def lower(self, node):
        return _along_axis(node, "sg_log_softmax")


def softmax(x, axis=-1):
    """The softmax of ``x`` along ``axis``: positive values that sum to one.

    Stable for any finite input (the maximum is subtracted first).

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> sg.evaluate(sg.nn.softmax(x), {x: np.array([0.0, np.log(3.0)])})
    array([0.25, 0.75])
    """
    x = as_variable(x)
    return Softmax(_axis_for(x, axis))(x)


def log_softmax(x, axis=-1):
    """The logarithm of ``softmax(x, axis)``, without forming the softmax (stable).

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> sg.evaluate(sg.nn.log_softmax(x), {x: np.array([1e4, 1e4])})
    array([-0.69314718, -0.69314718])
    """
    x = as_variable(x)
    return LogSoftmax(_axis_for(x, axis))(x)


# --------------------------------------------------------------------------- one_hot

def _check_in_range(values, n, node, kind, counted):
    """sg.IndexError naming the op and the user's line for the first of ``values`` (C order)
    outside [0, n): "<op> at <line>: <kind> <value> at index <pos> is out of range [0, n)
    (<counted>)", as the C loops word it."""
    bad = (values < 0) | (values >= n)
    if np.any(bad):
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise _IndexError(f"{node.op.name} at {node.trace}: {kind} {int(values[pos])} at index "
                          f"{pos} is out of range [0, {n}) ({counted})")


def _check_labels(labels, n, node):
    _check_in_range(labels, n, node, "label", f"{n} classes")


def _require_int(x, opname, what):
    if not _dt.is_int(x.dtype):
        raise TypeError(f"{opname}: the {what} must be integers (int32 or int64), got {x.type}")


class OneHot(Op):
    """``labels`` (integers, any shape) as one-hot rows of length ``n``: ``labels.shape + (n,)``.

    ``n`` is an integer scalar input (its value may be known only at call
    time). A label outside ``[0, n)`` raises ``sg.IndexError`` at call time.
    Neither input is differentiable.
    """

    __props__ = ("dtype",)
    name = "one_hot"
    flops_per_element = 0  # moves data: no arithmetic

    def __init__(self, dtype=None):
        self.dtype = _dt.as_dtype(dtype, "one_hot")

    def infer(self, labels, n):
        _require_int(labels, self.name, "labels")
        if n.ndim != 0 or not _dt.is_int(n.dtype):
            raise TypeError(f"the number of classes must be an integer scalar, got {n.type}")
        n_static = scalar_entry(n)
        if n_static is not None and n_static < 0:
            raise ShapeError(f"the number of classes must be >= 0, got {n_static}")
        return [TensorType(self.dtype, labels.type.shape + (n_static,))]

    def perform(self, node, labels, n):
        n = int(n)
        if n < 0:
            raise ShapeError(f"one_hot at {node.trace}: the number of classes must be >= 0, "
                             f"got {n}")
        _check_labels(labels, n, node)
        return [(labels[..., None] == np.arange(n)).astype(self.dtype)]

    def grad(self, node, inputs, outputs, gouts):
        return [NOT_DIFFERENTIABLE, NOT_DIFFERENTIABLE]

    def lower(self, node):
        return _one_hot(node)


def one_hot(labels, n, dtype=None):
    """One-hot encoding: ``out[..., k] = 1`` where ``labels == k``, else 0.

    Parameters
    ----------
    labels : Variable or array of int32/int64, any shape
    n : int or integer scalar Variable
        The number of classes; a label outside ``[0, n)`` raises ``sg.IndexError``.
    dtype : str, optional
        Of the result; defaults to ``sg.config.floatX``.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> y = sg.tensor("y", dtype="int64", shape=(None,))
    >>> sg.evaluate(sg.one_hot(y, 3), {y: np.array([2, 0])})
    array([[0., 0., 1.],
           [1., 0., 0.]])
    """
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer, Variable)):
        raise _at_line(TypeError(f"one_hot: n must be an int or an integer scalar Variable, "
                                 f"got {n!r}"))
    n = as_variable(int(n), dtype="int64") if not isinstance(n, Variable) else n
    return OneHot(dtype)(as_variable(labels), n)


# --------------------------------------------------------------------------- embedding

def _check_ids(ids, v, node):
    _check_in_range(ids, v, node, "id", f"a table of {v} rows")


def _rows_of(weight):
    """The table's length: an int where it is static, else a 0-d int64 Variable."""
    v = weight.type.shape[0]
    return as_variable(v, dtype="int64") if v is not None else shape_at(weight, 0)


class Embedding(Op):
    """Rows of a table: ``weight[ids]`` for integer ``ids`` of any shape and a 2-d ``weight``
    ``(v, d)``, giving ``ids.shape + (d,)`` -- PyTorch's ``F.embedding``.

    An id outside ``[0, v)`` -- a negative one too, as in PyTorch (NumPy's ``weight[ids]``
    would count it from the end) -- raises ``sg.IndexError`` at call time. The gradient
    with respect to ``weight`` is :class:`EmbeddingGrad`: each row the sum of the
    gradients of the positions holding its id, ``padding_idx``'s row none (it is never
    trained, as in PyTorch). The ids are not differentiable.
    """

    __props__ = ("padding_idx",)
    name = "embedding"
    flops_per_element = 0  # moves data: no arithmetic

    def __init__(self, padding_idx=None):
        self.padding_idx = padding_idx

    def row_inputs(self, node):
        """Row i of the result: row i of the ids, and the whole table."""
        return (0,)

    def infer(self, ids, weight):
        _require_int(ids, self.name, "ids")
        _require_float(weight, self.name, "weight")
        if weight.ndim != 2:
            raise ShapeError(f"embedding: the weight must be a 2-d table (rows, features), got "
                             f"{weight.type}")
        return [TensorType(weight.dtype, ids.type.shape + (weight.type.shape[1],))]

    def perform(self, node, ids, weight):
        _check_ids(ids, weight.shape[0], node)
        return [np.take(weight, ids.astype(np.intp), axis=0)]

    def grad(self, node, inputs, outputs, gouts):
        ids, weight = inputs
        (g,) = gouts
        return [NOT_DIFFERENTIABLE, EmbeddingGrad(self.padding_idx)(ids, g, _rows_of(weight))]

    def lower(self, node):
        (ids, w), out = node.inputs, node.outputs[0]
        return [Alloc(out, shape_of(ids) + [Dim(w, 1)]),
                Call("sg_embedding", [Arr(out), Arr(ids), Int(ids.ndim), ItemSize(ids.dtype),
                                      Arr(w), ItemSize(w.dtype)])]


class EmbeddingGrad(Op):
    """The gradient of :class:`Embedding` with respect to its table: ``(v, d)`` zeros, then
    row ``ids[p]`` plus ``g[p]`` for every position ``p`` of the ids (``g``: ``ids.shape +
    (d,)``) but those holding ``padding_idx``. Each row is summed in float64 in the ids'
    C order and rounded once, in every mode (the same bits from NumPy and from C, on any
    number of threads; a frequent id's row keeps float32's precision however many times
    it occurs). ``n``: the table's length ``v`` (an int64 scalar)."""

    __props__ = ("padding_idx",)
    name = "embedding_grad"

    def __init__(self, padding_idx=None):
        self.padding_idx = padding_idx

    def flops(self, node, in_shapes, out_shapes):
        """One add per element of ``g``."""
        return math.prod(in_shapes[1])

    def infer(self, ids, g, n):
        _require_int(ids, self.name, "ids")
        _require_float(g, self.name, "gradient")
        if g.ndim != ids.ndim + 1:
            raise ShapeError(f"embedding_grad: the gradient must have the ids' shape and a row "
                             f"length, got {g.type} for ids {ids.type}")
        if n.ndim != 0 or not _dt.is_int(n.dtype):
            raise TypeError(f"the table's length must be an integer scalar, got {n.type}")
        return [TensorType(g.dtype, (scalar_entry(n), g.type.shape[-1]))]

    def perform(self, node, ids, g, n):
        n = int(n)
        if g.shape[:-1] != ids.shape:
            raise ShapeError(f"embedding_grad at {node.trace}: the gradient's shape {g.shape} "
                             f"is not the ids' shape {ids.shape} and a row")
        _check_ids(ids, n, node)
        flat = ids.reshape(-1).astype(np.intp)
        rows = g.reshape(flat.size, g.shape[-1]).astype(np.float64)
        if self.padding_idx is not None:
            keep = flat != self.padding_idx
            flat, rows = flat[keep], rows[keep]
        out = np.zeros((n, g.shape[-1]), dtype=np.float64)
        np.add.at(out, flat, rows)  # in the ids' order, as the C loop adds
        return [out.astype(g.dtype)]

    def grad(self, node, inputs, outputs, gouts):
        ids, g, n = inputs
        (gg,) = gouts
        back = Embedding(self.padding_idx)(ids, gg)
        if self.padding_idx is not None:
            back = where(expand_dims(eq(ids, self.padding_idx), -1), 0.0, back)
        return [NOT_DIFFERENTIABLE, back, NOT_DIFFERENTIABLE]

    def lower(self, node):
        (ids, g, n), out = node.inputs, node.outputs[0]
        k = Local("nrows")
        pad = -1 if self.padding_idx is None else self.padding_idx
        return [Let(k, Cast("int64", Elem(n))),
                Check(Bin("<", k, Int(0)), "shape", "the table's length must be >= 0, got %lld",
                      [k]),
                Alloc(out, [k, Dim(g, g.ndim - 1)]),
                Call("sg_embedding_grad", [Workspace(), Arr(out), Arr(ids), Int(ids.ndim),
                                           ItemSize(ids.dtype), Arr(g), Int(pad)],
                     dtypes=(g.dtype,))]


def embedding(ids, weight, padding_idx=None):
    """Look up rows of a table: ``weight[ids]``, as PyTorch's ``F.embedding``.

    Parameters
    ----------
    ids : Variable or array of int32/int64, any shape
        Row numbers in ``[0, v)``; another value, a negative one too, raises
        ``sg.IndexError`` when run.
    weight : Variable, shape (v, d), float
        The table, usually a shared variable (``sg.layers.Embedding`` holds one).
    padding_idx : int, optional
        A row whose gradient is always zero (a padding token's): its value is looked up
        as any other, but training never changes it. Negative counts from the end
        (``-1`` is row ``v - 1``), which needs ``v`` known when the graph is built.

    Returns
    -------
    Variable, shape ``ids.shape + (d,)``

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> ids = sg.tensor("ids", dtype="int64", shape=(None,))
    >>> table = sg.shared(np.arange(6.0).reshape(3, 2))
    >>> sg.evaluate(sg.nn.embedding(ids, table), {ids: np.array([2, 0])})
    array([[4., 5.],
           [0., 1.]])
    """
    weight = as_variable(weight)
    if padding_idx is not None:
        if isinstance(padding_idx, (bool, np.bool_)) or not isinstance(padding_idx,
                                                                       (int, np.integer)):
            raise _at_line(TypeError(f"embedding: padding_idx must be an int or None, got "
                                     f"{padding_idx!r}"))
        given = int(padding_idx)
        v = weight.type.shape[0] if weight.ndim == 2 else None
        if given < 0 and v is None:
            raise _at_line(ValueError(
                f"embedding: a negative padding_idx ({given}) counts from the end of the "
                f"table, whose length is not known when the graph is built ({weight.type}); "
                f"give the row's number instead"))
        if v is not None and not -v <= given < v:
            raise _at_line(ValueError(f"embedding: padding_idx must be in [-{v}, {v}) for a "
                                      f"table of {v} rows, got {given}"))
        padding_idx = given + v if given < 0 else given
    return Embedding(padding_idx)(as_variable(ids), weight)


# --------------------------------------------------------------------------- cross-entropy

class CrossEntropy(Op):
    """Per-row softmax cross-entropy: ``logsumexp(logits[i]) - logits[i, labels[i]]``.

    ``logits`` is ``(N, C)`` float, ``labels`` ``(N,)`` integers in ``[0, C)``
    (else ``sg.IndexError`` at call time). Stable for huge logits. Gradient
    with respect to the logits: ``g[:, None] * (softmax(logits) - one_hot(labels, C))``;
    the labels are not differentiable.
    """

    name = "cross_entropy"

    def flops(self, node, in_shapes, out_shapes):
        """About 4 per element of the input: max, subtract, exp, add (``sg.explain``'s rules)."""
        return 4 * math.prod(in_shapes[0])

    def row_inputs(self, node):
        """A row's loss: its logits and its label."""
        return (0, 1)

    def infer(self, logits, labels):
        _require_float(logits, self.name, "logits")
        _require_int(labels, self.name, "labels")
        if logits.ndim != 2 or labels.ndim != 1:
            raise ShapeError(f"expects logits of shape (N, C) and labels of shape (N,), got "
                             f"{logits.type} and {labels.type}")
        n_rows, n_labels = logits.type.shape[0], labels.type.shape[0]
        if None not in (n_rows, n_labels) and n_rows != n_labels:
            raise ShapeError(f"{n_rows} rows of logits ({logits.type}) but {n_labels} labels "
                             f"({labels.type})")
        return [TensorType(logits.dtype, (n_rows if n_rows is not None else n_labels,))]

    def perform(self, node, logits, labels):
        if logits.shape[0] != labels.shape[0]:
            raise ShapeError(f"cross_entropy at {node.trace}: {logits.shape[0]} rows of logits "
                             f"(shape {logits.shape}) but {labels.shape[0]} labels")
        _check_labels(labels, logits.shape[1], node)
        if logits.shape[0] == 0:
            return [np.zeros(0, dtype=logits.dtype)]
        with np.errstate(all="ignore"):
            s = _shifted(logits, 1)
            picked = np.take_along_axis(s, labels[:, None].astype(np.intp), 1)[:, 0]
            loss = np.log(_sum_exp(s, 1)[:, 0]).astype(logits.dtype) - picked
        return [np.asarray(loss, dtype=logits.dtype)]

    def grad(self, node, inputs, outputs, gouts):
        logits, labels = inputs
        (g,) = gouts
        c = logits.type.shape[1]
        n_classes = c if c is not None else shape_at(logits, 1)
        target = OneHot(logits.dtype)(labels, as_variable(n_classes, dtype="int64"))
        return [expand_dims(g, 1) * (Softmax(1)(logits) - target), NOT_DIFFERENTIABLE]

    def lower(self, node):
        return _cross_entropy(node)


def cross_entropy(logits, labels):
    """Per-row cross-entropy between ``softmax(logits)`` and integer class labels.

    Parameters
    ----------
    logits : Variable, shape (N, C), float
        Unnormalised log-probabilities; any finite values (stable for huge ones).
    labels : Variable, shape (N,), int32 or int64
        Classes in ``[0, C)``; another value raises ``sg.IndexError`` when run.

    Returns
    -------
    Variable, shape (N,)
        ``logsumexp(logits[i]) - logits[i, labels[i]]``; take ``.mean()`` for a cost.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> z, y = sg.matrix("z"), sg.tensor("y", dtype="int64", shape=(None,))
    >>> sg.evaluate(sg.nn.cross_entropy(z, y), {z: np.zeros((1, 4)), y: np.array([3])})
    array([1.38629436])
    """
    return CrossEntropy()(as_variable(logits), as_variable(labels))


def binary_cross_entropy_with_logits(logits, targets):
    """Elementwise ``-t log(sigmoid(x)) - (1 - t) log(1 - sigmoid(x))``, computed stably.

    Written as ``softplus(x) - x * t`` with the stable ``softplus``
    (``max(x, 0) + log1p(exp(-|x|))``), so huge logits give finite losses and
    gradients. ``targets`` (probabilities, usually 0 or 1) broadcast against
    ``logits`` and are cast to the logits' dtype.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> sg.evaluate(sg.nn.binary_cross_entropy_with_logits(x, 1.0), {x: np.array([0.0])})
    array([0.69314718])
    """
    x = as_variable(logits)
    if not _dt.is_float(x.dtype):
        raise _at_line(TypeError(f"binary_cross_entropy_with_logits: the logits must be float, "
                                 f"got {x.type}; cast them first, e.g. x.astype('float64')"))
    if not _dt.is_python_scalar(targets):  # a Python number stays weak (NEP 50)
        targets = cast(as_variable(targets), x.dtype)
    return softplus(x) - x * targets


# --------------------------------------------------------------------------- lowering
#
# Each op lowers to statements of codegen.ir: its work is one call of sg_rows.h
# (support library), the rows along the op's axis, walked flat when contiguous
# (vectorised passes) and through their strides otherwise. Each row is read in
# passes: its maximum first, then the shifted exponentials, as the NumPy
# references above do, so huge logits cannot overflow and a row of -inf gives
# what NumPy gives. Their messages (a label out of range) are perform's.


def _along_axis(node, fn):
    """softmax / log_softmax: the result has x's shape; rows run along the op's axis."""
    x, out = node.inputs[0], node.outputs[0]
    # (the rows shared among the threads: sg_softmax_on_*, sg_rows.h)
    return [Alloc(out, shape_of(x)),
            Call(fn + "_on", [Workspace(), Arr(out), Arr(x), Int(x.ndim),
                              Int(node.op.axis % x.ndim)],
                 dtypes=(x.dtype,), can_fail=False)]


def _one_hot(node):
    (labels, n), out = node.inputs, node.outputs[0]
    k = Local("ncls")
    return [Let(k, Cast("int64", Elem(n))),
            Check(Bin("<", k, Int(0)), "shape", "the number of classes must be >= 0, got %lld",
                  [k]),
            Alloc(out, shape_of(labels) + [k]),
            Call("sg_one_hot", [Arr(out), Arr(labels), Int(labels.ndim), ItemSize(labels.dtype),
                                k, ValuePtr(1, out.dtype), ItemSize(out.dtype)])]


def _cross_entropy(node):
    (logits, labels), out = node.inputs, node.outputs[0]
    return [Call("sg_cross_entropy_check", [Arr(logits), Arr(labels)]),
            Alloc(out, [Dim(logits, 0)]),
            Call("sg_cross_entropy_on", [Workspace(), Arr(out), Arr(logits), Arr(labels)],
                 dtypes=(logits.dtype, labels.dtype))]
