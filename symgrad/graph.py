"""The graph IR: types, variables, apply nodes and ops, and walks over them.

A graph is made of :class:`Variable` (a typed value) and :class:`Apply` (one
application of an :class:`Op` to input variables, making output variables).
An op may have several outputs. Every Apply records the user's ``file:line``
where it was made, so errors can name it even after rewrites and in gradient
nodes.
"""

import builtins
import contextlib
import itertools
import math
import os
import sys
import time
import types as _pytypes

import numpy as np

from . import dtypes as _dt
from .errors import ShapeError

__all__ = [
    "TensorType", "Variable", "Constant", "SharedVariable", "Apply", "Op",
    "Trace", "as_variable", "constant", "shared", "toposort", "ancestors",
    "free_inputs", "clone_replace", "OP_REGISTRY", "trace_as", "shape_text", "graph_leaves",
    "leaf_value",
]

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


# --------------------------------------------------------------------------- traces

class Trace:
    """Where the user made a node: ``file:line`` in the user's code.

    ``str(trace)`` is the full ``path/model.py:12`` (error messages);
    ``trace.file_line(short=True)`` the ``model.py:12`` that printing,
    profiles, reports and the kernel's comments show. Both come from
    :meth:`file_line`, the one place that formats a location.
    """

    __slots__ = ("filename", "lineno", "function")

    def __init__(self, filename, lineno, function=""):
        self.filename, self.lineno, self.function = filename, lineno, function

    def file_line(self, short=False):
        """``path/model.py:12``, or with ``short`` the base name only: ``model.py:12``."""
        name = os.path.basename(self.filename) if short else self.filename
        return f"{name}:{self.lineno}"

    def __str__(self):
        return self.file_line()

    def __repr__(self):
        return f"Trace({self!s})"

    def __reduce__(self):
        return (Trace, (self.filename, self.lineno, self.function))


# The stack behind trace_as: (Trace, forward Apply or None). Only this module
# touches it; every other module enters trace_as.
_override = []


def user_trace():
    """The first stack frame outside the symgrad package."""
    if _override:
        return _override[-1][0]
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PKG_DIR):
        frame = frame.f_back
    if frame is None:
        return Trace("<unknown>", 0)
    return Trace(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)


@contextlib.contextmanager
def trace_as(trace, grad_of=None):
    """Make every node built inside carry ``trace`` (and ``grad_of``).

    Gradient rules run under the forward node's trace, rewrites and graph
    copies under the trace of the node they replace, so every node keeps
    the user's line it stands for.
    """
    _override.append((trace, grad_of))
    try:
        yield
    finally:
        _override.pop()


# --------------------------------------------------------------------------- types

class TensorType:
    """dtype plus static shape: a tuple with an int or None (known at call time) per axis."""

    __slots__ = ("dtype", "shape")

    def __init__(self, dtype, shape):
        self.dtype = _dt.as_dtype(dtype)
        shape = tuple(shape)
        for s in shape:
            if isinstance(s, Variable):
                raise ShapeError(f"a static shape holds non-negative ints or None, got a symbolic "
                                 f"length in {shape} (x.shape[i] where x's length is known only "
                                 f"at call time); x.type.shape is the static shape, with None")
            if s is not None and (not isinstance(s, (int, np.integer)) or s < 0):
                raise ShapeError(f"a static shape holds non-negative ints or None, got {shape}")
        self.shape = tuple(None if s is None else int(s) for s in shape)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        """The static element count, or None if some length is known only at call time."""
        return None if None in self.shape else math.prod(self.shape)

    def __eq__(self, other):
        return isinstance(other, TensorType) and (self.dtype, self.shape) == (other.dtype, other.shape)

    def __hash__(self):
        return hash((self.dtype, self.shape))

    def __str__(self):
        dims = ", ".join("?" if s is None else str(s) for s in self.shape)
        return f"{self.dtype}[{dims}]"

    __repr__ = __str__

    def __reduce__(self):
        return (TensorType, (self.dtype, self.shape))

    def accepts_shape(self, shape):
        return len(shape) == self.ndim and all(s is None or s == t for s, t in zip(self.shape, shape))


# --------------------------------------------------------------------------- variables

class Variable:
    """A symbolic value: an input, a constant, a shared variable or an op's output.

    Attributes
    ----------
    type : TensorType
    owner : Apply or None
        The node that computes this variable (None for inputs).
    index : int
        Which output of ``owner`` this is.
    name : str or None
    shape : tuple
        One entry per axis: a Python int where ``type.shape`` knows the length,
        else the symbolic int64 scalar ``sg.shape(x)[i]``.
    size : int or Variable
        The number of elements: an int when every length is static, else a
        symbolic int64 scalar.
    """

    __array_priority__ = 1000  # so ndarray + Variable defers to Variable.__radd__

    def __init__(self, type, owner=None, index=0, name=None):  # noqa: A002
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}")
        self.type = type
        self.owner = owner
        self.index = index
        self.name = name
        self.tag = _pytypes.SimpleNamespace()

    dtype = property(lambda self: self.type.dtype)
    ndim = property(lambda self: self.type.ndim)

    # ``shape`` and ``size`` (ints where static, symbolic lengths where not) are installed
    # with the other NumPy-like methods by symgrad.ops.methods: they build shape ops.

    def __repr__(self):
        label = self.name or (self.owner.op.name if self.owner is not None else "input")
        return f"<Variable {label}: {self.type}>"

    def __str__(self):
        return self.name or repr(self)

    # Python's and NumPy's conversions: a Variable has no value while the graph is built.
    # Each refusal is a TypeError (what Python raises for an unsupported conversion) that
    # says what to write instead.

    def __bool__(self):
        raise TypeError(f"a symbolic Variable has no truth value ({self!r}): use "
                        f"sg.where(cond, a, b) to select, sg.ifelse(cond, a, b) to branch, and "
                        f"sg.eq / sg.neq to compare; test a static length through x.type.shape")

    def __iter__(self):
        raise TypeError(f"a symbolic Variable cannot be iterated ({self!r}: for row in x, "
                        f"a, b = x, list(x)): index it (x[0], x[1], ...), or loop over its "
                        f"rows in the graph with sg.map(fn, sequences=[x]) or sg.scan")

    def __contains__(self, item):
        raise TypeError(f"'in' cannot search a symbolic Variable ({self!r}): compute it in the "
                        f"graph, e.g. sg.eq(x, value).max()")

    def __len__(self):
        shape = self.type.shape
        if not shape:
            where = f"a 0-d Variable has no length ({self!r})"
        elif shape[0] is None:
            where = (f"the length of {self!r} is known only at call time: x.shape[0] is a "
                     f"symbolic int64 scalar (sg.arange(x.shape[0]), sg.zeros((x.shape[0], "
                     f"...)) take it)")
        else:
            where = f"its first length is static: x.shape[0] is {shape[0]} ({self!r})"
        raise TypeError(f"len() of a symbolic Variable is not defined: {where}")

    def __array__(self, dtype=None, copy=None):
        raise TypeError(f"a symbolic Variable cannot become a NumPy array ({self!r}; "
                        f"np.asarray(x), np.array([x, ...]), np.float64(x)): it has no value until "
                        f"a compiled function runs. Evaluate it with x.eval({{input: value}}), or "
                        f"compile f = sg.function(inputs, x) and call f; to combine Variables "
                        f"write sg.stack / sg.concatenate")

    def _no_number(self, what, instead):
        raise TypeError(f"{what} ({self!r}): it has no value until a compiled function runs; "
                        f"evaluate it first (x.eval({{input: value}}) or a compiled "
                        f"sg.function's result), or {instead}")

    def __float__(self):
        self._no_number("float() of a symbolic Variable", "in the graph write x.astype('float64')")

    def __int__(self):
        self._no_number("int() of a symbolic Variable", "in the graph write x.astype('int64'); "
                        "a length is x.shape[i] (an int where it is static)")

    def __complex__(self):
        self._no_number("complex() of a symbolic Variable", "note that symgrad has no complex "
                        "dtypes")

    def __index__(self):
        self._no_number("a symbolic Variable is no Python int (an index, a length for range() "
                        "or np.zeros)", "for a length known only at call time stay in the "
                        "graph: sg.arange(n), sg.zeros((n, ...)), x[:n], a loop with sg.scan")

    def __round__(self, ndigits=None):
        self._no_number("round() of a symbolic Variable", "in the graph write sg.round(x)")

    def __trunc__(self):
        self._no_number("math.trunc() of a symbolic Variable", "in the graph write "
                        "sg.where(x < 0, sg.ceil(x), sg.floor(x))")

    def __floor__(self):
        self._no_number("math.floor() of a symbolic Variable", "in the graph write sg.floor(x)")

    def __ceil__(self):
        self._no_number("math.ceil() of a symbolic Variable", "in the graph write sg.ceil(x)")


class Constant(Variable):
    """A variable whose value is fixed when the graph is built."""

    def __init__(self, data, dtype=None, name=None):
        if isinstance(data, Variable):
            raise TypeError("sg.constant expects a number or array, got a symbolic Variable")
        arr = np.asarray(data)
        if arr.dtype.kind in "OUSV":
            raise TypeError(f"a constant must be numeric or bool, got an array of {arr.dtype}")
        dt = _dt.as_dtype(dtype if dtype is not None else _default_dtype(data, arr), "constant")
        with np.errstate(over="ignore"):
            cast = arr.astype(dt)
        # A float rounded to a narrower float (0.9 as float32) is what NumPy does with a
        # weak scalar; only overflow to inf and lossy int/bool conversions are refused.
        rounded = arr.dtype.kind == "f" and cast.dtype.kind == "f" and bool(
            np.all(np.isfinite(cast) | ~np.isfinite(arr)))
        if (dtype is not None and arr.dtype.kind in "biuf" and not rounded
                and not _exact_cast(arr, cast)):
            raise TypeError(f"constant value {data!r} cannot be represented as {dt}")
        cast.setflags(write=False)
        super().__init__(TensorType(dt, cast.shape), name=name)
        self.data = cast

    def __repr__(self):
        return f"<Constant {self.data.tolist() if self.data.size <= 8 else self.type}>"

    def __str__(self):
        return self.name or (str(self.data.tolist()) if self.data.size <= 8 else f"constant{self.type}")


def _default_dtype(data, arr):
    if _dt.is_python_scalar(data):
        return _dt.default_scalar_dtype(data)
    if arr.dtype.kind == "f":
        return arr.dtype.name if arr.dtype.name in _dt.FLOATS else "float64"
    if arr.dtype.kind in "iu":
        return "int32" if arr.dtype.name == "int32" else "int64"
    return arr.dtype.name


def _exact_cast(src, dst):
    with np.errstate(all="ignore"):
        back = dst.astype(src.dtype)
    return bool(np.all((back == src) | (np.isnan(src) if src.dtype.kind == "f" else False)))


def _native(arr):
    """``arr`` in native byte order: compiled kernels read values natively."""
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


_shared_counter = itertools.count()


class SharedVariable(Variable):
    """Persistent state that lives between calls of compiled functions.

    dtype and ndim are fixed; so is the static shape (``.type.shape``), by
    default the initial value's shape. An axis whose static length is None
    may change length through ``set_value`` or an update; any other may not,
    so shape errors of graphs using the variable surface when they are built.
    """

    def __init__(self, value, name=None, trainable=True, shape=None):
        if isinstance(value, Variable):
            raise TypeError("sg.shared expects an array, got a symbolic Variable")
        arr = np.array(value)
        if arr.dtype.kind in "OUSV":
            raise TypeError(f"a shared variable must hold a numeric or bool array, got {arr.dtype}")
        if arr.dtype.name not in _dt.SUPPORTED:
            arr = arr.astype(_default_dtype(value, arr))
        static = arr.shape if shape is None else _static_shape(shape, arr.shape, name)
        super().__init__(TensorType(arr.dtype.name, static), name=name)
        self._value = _native(arr)
        self.trainable = bool(trainable)
        self.order = next(_shared_counter)

    # Set while a compiled call writes this variable's update over its memory
    # (see function.Function): readers wait for it instead of seeing half of it.
    _busy = 0

    def _wait_idle(self):
        """Return once no call is writing over this variable's array (the GIL is released)."""
        while self._busy:
            time.sleep(2e-5)

    def get_value(self, borrow=False):
        """The current value: a copy unless ``borrow=True``."""
        if self._busy:
            self._wait_idle()
        return self._value if borrow else self._value.copy()

    def set_value(self, value, borrow=False):
        """Replace the value.

        dtype and ndim must match (safe casts of lists and scalars allowed),
        and so must every static length: a ``ShapeError`` otherwise, the
        value unchanged. Create the variable with ``shape=(None, ...)`` to
        let an axis change length.
        """
        arr = np.asarray(value)
        label = self.name or "shared variable"
        if arr.ndim != self.ndim:
            raise TypeError(f"set_value on {label}: expected a {self.ndim}-d array of {self.dtype}, "
                            f"got a {arr.ndim}-d array of shape {arr.shape}")
        if not self.type.accepts_shape(arr.shape):
            raise ShapeError(f"set_value on {label}: expected shape {shape_text(self.type.shape)} "
                             f"(its static shape), got {arr.shape}; to let a length change, create "
                             f"the variable with sg.shared(value, shape=...) and None on that axis")
        if arr.dtype.name != self.dtype:
            if isinstance(value, np.ndarray) or not np.can_cast(arr.dtype, self.dtype, "same_kind"):
                raise TypeError(f"set_value on {label}: expected dtype {self.dtype}, got {arr.dtype}; "
                                f"convert with .astype('{self.dtype}') first")
            arr = arr.astype(self.dtype)
        native = _native(arr)
        self._value = native if borrow or native is not arr else np.array(arr, copy=True)

    def store_update(self, value):
        """Store ``value``, the new value a function's update computed: as is, no copy.

        For :class:`symgrad.function.Function`, which checked it against this
        variable's type and owns it; use :meth:`set_value` anywhere else.
        """
        self._value = value

    def __repr__(self):
        return f"<SharedVariable {self.name or ''}: {self.dtype}{list(self._value.shape)}>"


def constant(value, dtype=None, name=None):
    """A constant Variable.

    >>> import symgrad as sg
    >>> sg.constant([1, 2], dtype="float32").type
    float32[2]
    """
    return Constant(value, dtype=dtype, name=name)


def shared(value, name=None, trainable=True, shape=None, *, borrow=False):
    """A shared variable: state that persists between calls (parameters, optimizer state).

    Parameters
    ----------
    value : array_like
        The initial value (copied).
    name : str, optional
    trainable : bool
        Whether ``sg.train_step`` trains it by default.
    shape : tuple of (int or None), optional
        The static shape, by default ``value``'s shape: graphs using the
        variable check their shapes when they are built, ``set_value`` and
        updates must keep it. A None entry lets that axis change length;
        an int entry must equal ``value``'s length on that axis.
    borrow : bool
        Accepted for Theano's programs (``theano.shared(v, borrow=True)``),
        where it is a hint that the value may be aliased; symgrad copies the
        value either way, so a later change to ``value`` never reaches the
        variable.

    >>> import numpy as np, symgrad as sg
    >>> W = sg.shared(np.zeros((3, 2)), name="W")
    >>> W.type
    float64[3, 2]
    >>> sg.shared(np.zeros((3, 2)), shape=(None, 2)).type
    float64[?, 2]
    """
    return SharedVariable(value, name=name, trainable=trainable, shape=shape)


def unsettled_lengths(static, shape):
    """``((axis, length), ...)``: the lengths of the static shape ``static`` (a shared
    variable's) that a value of static shape ``shape`` (its update's) may not have:
    an update must be checked for them when it runs."""
    return tuple((k, s) for k, (s, t) in enumerate(zip(static, shape)) if s is not None and t != s)


def shape_text(shape, unknown="None"):
    """A shape as Python writes a tuple: ``(4, 3)``, ``(3,)``, ``()``.

    The one shape formatter of messages and reports. A static length that is
    not known (None) is shown as ``unknown``: ``(None, 3)`` as the user
    writes it in ``sg.shared(..., shape=...)``, or ``(?, 3)`` with
    ``unknown="?"`` when describing a value.
    """
    dims = [unknown if s is None else str(s) for s in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _static_shape(shape, actual, name):
    """``shape=`` of ``sg.shared`` checked against the value's shape ``actual``."""
    label = f"sg.shared({name!r})" if name else "sg.shared"
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"{label}: shape= must be a tuple of int or None, one per axis, "
                        f"got {type(shape).__name__} {shape!r}")
    shape = tuple(shape)
    for s in shape:
        if s is not None and (isinstance(s, (bool, np.bool_))
                              or not isinstance(s, (int, np.integer))):
            raise TypeError(f"{label}: shape= holds ints or None, got {s!r} in {shape!r}")
    if len(shape) != len(actual):
        raise ShapeError(f"{label}: shape={shape_text(shape)} has {len(shape)} entries but the "
                         f"value is {len(actual)}-d, of shape {actual}; give one int or None "
                         f"per axis")
    for k, (s, n) in enumerate(zip(shape, actual)):
        if s is not None and s != n:
            raise ShapeError(f"{label}: shape={shape_text(shape)} expects length {int(s)} on "
                             f"axis {k}, but the value's shape is {actual}; use None on that axis "
                             f"to let its length vary")
    return shape


def as_variable(x, dtype=None):
    """``x`` if it is a Variable, else a Constant made from it."""
    if isinstance(x, Variable):
        return x
    if isinstance(x, (list, tuple)) and any(isinstance(e, Variable) for e in x):
        raise TypeError("a list mixing Variables and numbers cannot become one constant; "
                        "use sg.stack([...])")
    return Constant(x, dtype=dtype)


# --------------------------------------------------------------------------- nodes and ops

class Apply:
    """One application of ``op`` to ``inputs``, making ``outputs``.

    Attributes
    ----------
    trace : Trace
        The user's file:line where this node was made (for gradient nodes, the
        line of the forward node they belong to).
    grad_of : Apply or None
        For a node made by ``grad``, the forward node whose rule made it.
    """

    __slots__ = ("op", "inputs", "outputs", "trace", "grad_of", "tag")

    def __init__(self, op, inputs, output_types, trace=None):
        self.op = op
        self.inputs = list(inputs)
        self.outputs = [Variable(t, owner=self, index=i) for i, t in enumerate(output_types)]
        self.grad_of = _override[-1][1] if _override else None
        self.trace = trace if trace is not None else user_trace()
        self.tag = _pytypes.SimpleNamespace()

    @property
    def out(self):
        (out,) = self.outputs
        return out

    def __repr__(self):
        return f"<Apply {self.op} at {self.trace}>"

    def __getstate__(self):
        return {s: getattr(self, s) for s in self.__slots__}

    def __setstate__(self, state):
        for k, v in state.items():
            setattr(self, k, v)


OP_REGISTRY = {}  # op name -> Op subclass or elementwise row; the registry test walks it


class NotDifferentiable:
    """Returned by a gradient rule for an input the output depends on but not smoothly (indices, labels)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self):
        return "NOT_DIFFERENTIABLE"

    def __reduce__(self):
        return (NotDifferentiable, ())


NOT_DIFFERENTIABLE = NotDifferentiable()


class Op:
    """Base of every operation.

    A subclass defines, in its one class:

    * ``infer(*inputs) -> list[TensorType]``: type and static-shape inference,
      raising ``ShapeError`` / ``TypeError`` at graph build time;
    * ``perform(node, *values) -> list[np.ndarray]``: the NumPy reference;
    * ``grad(node, inputs, outputs, gouts) -> list``: the gradient rule as
      graph; per input a Variable, None (zero by construction, e.g. the
      condition of ``where``) or ``NOT_DIFFERENTIABLE`` (indices, labels);
      entries of ``gouts`` may be None for outputs nothing flows back from;
    * its floating-point operation count, for ``sg.explain``: either
      ``flops_per_element`` (the simple cases) or :meth:`flops`.

    ``__props__`` names the attributes that make two ops equal. Concrete ops
    register themselves under ``name`` in ``OP_REGISTRY`` (set
    ``register = False`` for abstract bases).
    """

    __props__ = ()
    name = None
    register = True
    # Indices of the inputs whose values the outputs depend on (None: all). An op
    # that reads only its input's shape lists none, so gradients never look for
    # a path through it.
    value_inputs = None
    # Floating-point operations per element of the outputs, for ops whose count
    # is that simple: 1 for an elementwise arithmetic op, 0 for an op that only
    # moves data (views, copies, gathers, casts, shapes). None: not declared,
    # and the op overrides flops() instead. See flops().
    flops_per_element = None

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.__dict__.get("register", True) and cls.__dict__.get("name"):
            if cls.name in OP_REGISTRY:
                raise RuntimeError(f"op name {cls.name!r} registered twice")
            OP_REGISTRY[cls.name] = cls

    def props(self):
        """The values of ``__props__``: with the op's type, what makes two ops equal."""
        return tuple(getattr(self, p) for p in self.__props__)

    def __eq__(self, other):
        return type(self) is type(other) and self.props() == other.props()

    def __hash__(self):
        return hash((type(self), self.props()))

    def __str__(self):
        if not self.__props__:
            return self.name
        return f"{self.name}{{{', '.join(f'{p}={getattr(self, p)}' for p in self.__props__)}}}"

    __repr__ = __str__

    def __call__(self, *inputs):
        node = self.make_node(*inputs)
        return node.outputs[0] if len(node.outputs) == 1 else list(node.outputs)

    def make_node(self, *inputs):
        inputs = [as_variable(x) for x in inputs]
        try:
            out_types = self.infer(*inputs)
        except (ShapeError, TypeError, ValueError, builtins.IndexError) as e:
            raise _at_user_line(e, self) from None
        return Apply(self, inputs, out_types)

    def infer(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__}.infer")

    def perform(self, node, *values):
        raise NotImplementedError(f"{type(self).__name__}.perform")

    def grad(self, node, inputs, outputs, gouts):
        raise NotImplementedError(f"{type(self).__name__}.grad")

    def row_inputs(self, node):
        """The inputs the result's rows come from, one row each: indices ``k`` such that row
        ``i`` (leading axis) of the single output depends only on row ``i`` of each input
        ``k`` (or on its only row, where a length-1 leading axis broadcasts) and on the other
        inputs whole; None where rows mix (a reduction over the leading axis, a transpose)
        or the op does not say. ``sg.jacobian`` uses it to compute one example's row from
        that example alone (``autodiff.row_of``)."""
        return None

    def flops(self, node, in_shapes, out_shapes):
        """Floating-point operations of one evaluation of ``node`` at these shapes.

        ``in_shapes`` and ``out_shapes`` hold one concrete shape (a tuple of
        ints) per input and per output. The rules ``sg.explain`` counts by:
        a multiply-add is 2, an elementwise operation 1 per element
        (``exp`` and ``tanh`` too), moving data 0.

        The default counts ``flops_per_element`` per element of the outputs
        (an elementwise op says 1, a data-moving op 0); an op whose count
        depends on more than its output size (a product, a reduction, a
        softmax) overrides this method. An op that does neither has no
        count: ``NotImplementedError``, rather than a silent 0.
        """
        if self.flops_per_element is None:
            raise NotImplementedError(
                f"{type(self).__name__} ({self.name}) declares no FLOP count: set "
                f"flops_per_element or define flops(node, in_shapes, out_shapes)")
        return self.flops_per_element * sum(math.prod(s) for s in out_shapes)

    def declares_flops(self):
        """Whether this op says how many FLOPs it does (``flops_per_element`` or its own ``flops``)."""
        return self.flops_per_element is not None or type(self).flops is not Op.flops


def _at_user_line(err, op):
    """The same error with the op and the user's line in front (once)."""
    msg = str(err)
    if " (at " in msg.split("\n", 1)[0]:
        return err
    trace = user_trace()
    prefix = "" if msg.startswith(f"{op.name}:") or msg.startswith(f"{op.name} ") else f"{op.name}: "
    try:
        new = type(err)(f"{prefix}{msg} (at {trace})")
    except TypeError:  # an exception class with another constructor: leave it as it is
        return err
    return new


# --------------------------------------------------------------------------- walks

def toposort(outputs, stop=()):
    """The Apply nodes that compute ``outputs``, each after all nodes it depends on.

    The walk does not descend below variables whose ids are in ``stop``.
    """
    order, seen = [], set()
    for out in outputs:
        if out.owner is None or id(out) in stop or id(out.owner) in seen:
            continue
        stack = [(out.owner, iter(out.owner.inputs))]
        seen.add(id(out.owner))
        while stack:
            node, it = stack[-1]
            for inp in it:
                if inp.owner is not None and id(inp.owner) not in seen and id(inp) not in stop:
                    seen.add(id(inp.owner))
                    stack.append((inp.owner, iter(inp.owner.inputs)))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


def ancestors(outputs):
    """Every variable ``outputs`` depend on, themselves included (a set of ids -> Variable dict)."""
    seen = {}
    stack = list(outputs)
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen[id(v)] = v
        if v.owner is not None:
            stack.extend(v.owner.inputs)
    return seen


def free_inputs(outputs):
    """The root variables of a graph that need a value: not constants, not shared, no owner."""
    found = []
    for v in ancestors(outputs).values():
        if v.owner is None and not isinstance(v, (Constant, SharedVariable)):
            found.append(v)
    return found


def graph_leaves(inputs, outputs):
    """The leaves a graph computing ``outputs`` from ``inputs`` reads, as one list in the
    order every evaluator (the NumPy reference, the compiled kernel) binds them: the
    given ``inputs``, then the shared variables, then the constants, each kind in the
    order a walk of ``toposort(outputs)`` first meets it (an output that is itself a
    leaf comes after the nodes' leaves).

    Free variables not in ``inputs`` are not leaves here (``sg.function``
    refuses a graph that needs one).
    """
    seen = {id(v) for v in inputs}
    shared, constants = [], []

    def meet(v):
        if id(v) in seen or v.owner is not None:
            return
        if isinstance(v, SharedVariable):
            shared.append(v)
        elif isinstance(v, Constant):
            constants.append(v)
        else:
            return
        seen.add(id(v))

    for node in toposort(outputs):
        for v in node.inputs:
            meet(v)
    for v in outputs:
        meet(v)
    return list(inputs) + shared + constants


def leaf_value(v):
    """The value an evaluator binds to a shared variable or a constant (no copy)."""
    return v.get_value(borrow=True) if isinstance(v, SharedVariable) else v.data


def clone_replace(outputs, replace, keep_replaced=False):
    """Rebuild ``outputs`` with the variables in ``replace`` (old -> new) substituted.

    Nodes are rebuilt through ``op.make_node`` so types are re-inferred; each
    rebuilt node keeps the trace and gradient origin of the node it copies.
    With ``keep_replaced``, nothing above a replaced variable is walked: a
    replaced variable computed from another replaced one stays as replaced.
    """
    memo = {id(k): v for k, v in replace.items()}
    for node in toposort(outputs, stop=set(memo) if keep_replaced else ()):
        new_inputs = [memo.get(id(i), i) for i in node.inputs]
        if all(a is b for a, b in zip(new_inputs, node.inputs)):
            continue
        with trace_as(node.trace, node.grad_of):
            new_node = node.op.make_node(*new_inputs)
        for old, new in zip(node.outputs, new_node.outputs):
            new.name = old.name
            new.tag.__dict__.update(old.tag.__dict__)
            memo[id(old)] = new
    return [memo.get(id(o), o) for o in outputs]


# --------------------------------------------------------------------------- constructors

def tensor(name=None, dtype=None, shape=None):
    """A symbolic input of any rank; ``shape`` holds an int (static) or None per axis.

    >>> import symgrad as sg
    >>> sg.tensor("x", shape=(None, 3)).type
    float64[?, 3]
    """
    if shape is None:
        raise TypeError("sg.tensor needs shape=(...), e.g. shape=(None, 3); use sg.scalar, "
                        "sg.vector or sg.matrix for inputs without static lengths")
    if isinstance(name, (tuple, list)):
        raise TypeError("sg.tensor(name, dtype, shape): the first argument is the name; "
                        "pass the shape as shape=...")
    return Variable(TensorType(_dt.as_dtype(dtype), shape), name=name)


def _maker(ndim, what):
    def make(name=None, dtype=None):
        return Variable(TensorType(_dt.as_dtype(dtype), (None,) * ndim), name=name)
    make.__name__ = what
    make.__doc__ = f"A symbolic {ndim}-d input ({what}); dtype defaults to ``sg.config.floatX``."
    return make


scalar = _maker(0, "scalar")
vector = _maker(1, "vector")
matrix = _maker(2, "matrix")
tensor3 = _maker(3, "tensor3")
tensor4 = _maker(4, "tensor4")


# --------------------------------------------------------------------------- flat pickling

def flatten_graph(roots):
    """A picklable flat form of the graph behind ``roots`` (no recursion, any depth).

    Pickle walks object references recursively, which overflows the C stack on
    long chains; this lists leaves and nodes in topological order instead.
    """
    index, leaves, nodes = {}, [], []
    node_index = {}
    # The forward nodes that gradient nodes point at (grad_of) come along even
    # when a rewrite removed them from the graph: printing and the kernel's
    # comments name them, so an unpickled function prints, and compiles, alike.
    order = toposort(roots)
    while True:
        inside = {id(n) for n in order}
        extra = [n.grad_of for n in order if n.grad_of is not None and id(n.grad_of) not in inside]
        if not extra:
            break
        order = toposort(list(roots) + [n.outputs[0] for n in extra])
    for node in order:
        ins = []
        for v in node.inputs:
            if id(v) not in index:
                index[id(v)] = ("leaf", len(leaves))
                leaves.append(_leaf_state(v))
            ins.append(index[id(v)])
        node_index[id(node)] = len(nodes)
        grad_of = node_index.get(id(node.grad_of)) if node.grad_of is not None else None
        tags = {k: v for k, v in vars(node.tag).items() if k in _PICKLED_TAGS}
        nodes.append((node.op, ins, node.trace, grad_of, [o.name for o in node.outputs], tags))
        for i, o in enumerate(node.outputs):
            index[id(o)] = ("out", len(nodes) - 1, i)
    refs = []
    for r in roots:
        if id(r) not in index:
            index[id(r)] = ("leaf", len(leaves))
            leaves.append(_leaf_state(r))
        refs.append(index[id(r)])
    return {"leaves": leaves, "nodes": nodes, "roots": refs}


# Node tags that change the generated code (the gemm rewrite's product line is in
# its error messages) or its printing, and hold no graph references: they survive
# pickling, so an unpickled function's kernel source, and cache key, are the same.
_PICKLED_TAGS = ("product_trace", "product_name", "accumulate_name", "user_op",
                 "product_vectors")


def _leaf_state(v):
    if isinstance(v, (Constant, SharedVariable)):
        return v          # a leaf: pickles without recursion
    return (v.type, v.name)


def unflatten_graph(state):
    """The root variables of a graph flattened by :func:`flatten_graph`."""
    leaves = [v if isinstance(v, Variable) else Variable(v[0], name=v[1]) for v in state["leaves"]]
    built = []

    def get(ref):
        return leaves[ref[1]] if ref[0] == "leaf" else built[ref[1]].outputs[ref[2]]

    for op, ins, trace, grad_of, names, *rest in state["nodes"]:
        with trace_as(trace, built[grad_of] if grad_of is not None else None):
            node = op.make_node(*[get(r) for r in ins])
        for o, n in zip(node.outputs, names):
            o.name = n
        for k, v in (rest[0] if rest else {}).items():
            setattr(node.tag, k, v)
        built.append(node)
    return [get(r) for r in state["roots"]]
