"""Elementwise ops: one table row per op.

A row names the op, its arity, its NumPy reference and its gradient rule. The
rule receives the input variables, the output and the output cotangent ``g``
and returns one cotangent per input, before broadcasting is undone (the
:class:`Elemwise` op sums each back to its input's shape). Output dtypes are
whatever NumPy gives for the input dtypes (NumPy 2 promotion, weak Python
scalars).

Documented subgradients: ``relu'(0) = 0``, ``abs'(0) = 0``; ``maximum`` and
``minimum`` send a tie's gradient to their first argument; ``floor``, ``ceil``,
``round`` and ``sign`` have gradient zero; ``d/dx x**y`` is 0 where ``y == 0`` and
``d/dy x**y`` is 0 where ``x == 0 and y >= 0`` (PyTorch's). The README's table
"Conventions at kinks, ties and zeros" lists them all. Values of ``maximum`` and
``minimum`` follow NumPy to the sign of a zero: a tie gives the second operand.
"""

import math

import numpy as np

from .. import dtypes as _dt
from ..codegen.render_c import CTYPE, SUFFIX
from ..errors import ShapeError
from ..graph import NOT_DIFFERENTIABLE, OP_REGISTRY, Constant, Op, TensorType, Variable, as_variable
from .shape import sum_to, zeros_like

# The functions ``sg`` exports (``symgrad.ops`` re-exports this list): adding an
# elementwise op is a row of the table below, its function here, and its C form.
__all__ = ["abs", "add", "cast", "ceil", "clip", "cos", "eq", "erf", "erfc", "exp", "expm1", "floor",
           "floordiv", "ge", "gt", "isnan", "le", "log", "log1p", "lt", "maximum", "minimum", "mod", "mul",
           "neg", "neq", "pow", "relu", "round", "sigmoid", "sign", "sin", "softplus", "sqrt",
           "square", "stop_gradient", "sub", "tanh", "truediv", "where"]


class Row:
    """One elementwise op: name, arity, NumPy reference, gradient rule, symbol for printing.

    ``cost``: work units of one element in a compiled loop (a load, a store
    or a cheap arithmetic op counts 1; a transcendental function about 8),
    which decides when a loop is long enough to share among threads.
    """

    def __init__(self, name, arity, impl, grad, symbol=None, doc="", cost=1):
        self.name, self.arity, self.impl, self.grad = name, arity, impl, grad
        self.symbol = symbol
        self.doc = doc
        self.cost = cost

    def __repr__(self):
        return f"<elementwise {self.name}>"


ELEMWISE = {}


def row(name, arity, impl, grad, symbol=None, doc="", cost=1):
    if name in OP_REGISTRY:
        raise RuntimeError(f"op name {name!r} registered twice")
    ELEMWISE[name] = OP_REGISTRY[name] = Row(name, arity, impl, grad, symbol, doc, cost)


def broadcast_static(shapes, opname):
    """The static broadcast of several static shapes (ShapeError if provably incompatible)."""
    nd = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(nd):
        dims = [s[axis - nd + len(s)] for s in shapes if axis - nd + len(s) >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            shown = " and ".join(str(tuple(s)) for s in shapes)
            raise ShapeError(f"{opname}: shapes {shown} cannot be broadcast together "
                             f"(axis {axis}: lengths {sorted(known)})")
        out.append(known.pop() if known else (None if None in dims else 1))
    return tuple(out)


class Elemwise(Op):
    """Applies one elementwise table row with NumPy broadcasting."""

    __props__ = ("scalar",)
    register = False  # each table row is registered under its own name
    flops_per_element = 1  # sg.explain counts exp and tanh as 1, as an add

    def __init__(self, scalar):
        if scalar not in ELEMWISE:
            raise ValueError(f"unknown elementwise op {scalar!r}")
        self.scalar = scalar

    @property
    def row(self):
        return ELEMWISE[self.scalar]

    @property
    def name(self):
        return self.scalar

    def __str__(self):
        return self.scalar

    def infer(self, *inputs):
        if len(inputs) != self.row.arity:
            raise TypeError(f"takes {self.row.arity} inputs, got {len(inputs)}")
        dtype = _dt.result_dtype(self.row.impl, [i.dtype for i in inputs], opname=self.scalar)
        return [TensorType(dtype, broadcast_static([i.type.shape for i in inputs], self.scalar))]

    def perform(self, node, *values):
        try:
            np.broadcast_shapes(*[v.shape for v in values])
        except ValueError:
            shown = ", ".join(str(v.shape) for v in values)
            raise ShapeError(f"{self.scalar} at {node.trace}: shapes {shown} cannot be "
                             f"broadcast together") from None
        with np.errstate(all="ignore"):
            out = self.row.impl(*values)
        return [np.array(out, dtype=node.outputs[0].dtype)]

    def row_inputs(self, node):
        """The operands as long as the result along every axis: the others broadcast."""
        nd = node.outputs[0].ndim
        if nd == 0:
            return None
        return tuple(k for k, x in enumerate(node.inputs)
                     if x.ndim == nd and x.type.shape[0] != 1)

    def c_scalar(self, node, args, bad):
        """One element as a C expression (the C backend fuses these into loops)."""
        return _elemwise_c_scalar(self, node, args, bad)

    def cost(self, node):
        """Work units of one element in a compiled loop (``Row.cost``)."""
        return self.row.cost

    def scalar_can_fail(self, node):
        """Whether an element can be a value error: an integer to a negative integer power."""
        return self.scalar == "pow" and not _dt.is_float(node.outputs[0].dtype)

    def grad(self, node, inputs, outputs, gouts):
        (g,), (out,) = gouts, outputs
        raw = self.row.grad(*inputs, out, g)
        result = []
        for x, gx in zip(inputs, raw):
            if gx is None:
                result.append(None)
            elif not _dt.is_float(x.dtype):
                result.append(NOT_DIFFERENTIABLE)
            else:
                gx = sum_to(gx, x) if _maybe_broadcast(x, inputs) else gx
                result.append(gx if gx.dtype == x.dtype else cast(gx, x.dtype))
        return result


def _maybe_broadcast(x, inputs):
    """Whether ``x`` may have been broadcast against the other inputs (static shapes say no)."""
    nd = max(i.ndim for i in inputs)
    if x.ndim < nd:
        return True
    for k, d in enumerate(x.type.shape):
        if d is not None and d != 1:
            continue  # a known length > 1 is never stretched
        for other in inputs:
            j = k - (nd - other.ndim)
            if other is not x and j >= 0 and other.type.shape[j] != 1:
                return True
    return False


def _promote_args(args, value_slots=None):
    """Variables, with Python scalars turned into constants of the partners' dtype (NEP 50)."""
    slots = range(len(args)) if value_slots is None else value_slots
    partners = [a.dtype for i, a in enumerate(args) if isinstance(a, Variable) and i in slots]
    out = []
    for i, a in enumerate(args):
        if not isinstance(a, Variable) and _dt.is_python_scalar(a) and i in slots:
            out.append(Constant(a, dtype=_dt.weak_scalar_dtype(a, partners)))
        else:
            out.append(as_variable(a))
    return out


def apply(name, *args, value_slots=None):
    return Elemwise(name)(*_promote_args(args, value_slots))


# --------------------------------------------------------------------------- cast

class Cast(Op):
    """``x.astype(dtype)``; a cast to an integer or bool dtype is not differentiable."""

    __props__ = ("dtype",)
    name = "cast"
    flops_per_element = 0  # moves data: no arithmetic

    def __init__(self, dtype):
        self.dtype = _dt.as_dtype(dtype, "cast")

    def infer(self, x):
        return [TensorType(self.dtype, x.type.shape)]

    def perform(self, node, x):
        with np.errstate(all="ignore"):
            return [np.array(x, dtype=self.dtype)]

    def grad(self, node, inputs, outputs, gouts):
        (x,) = inputs
        if not _dt.is_float(x.dtype):
            return [NOT_DIFFERENTIABLE]
        return [cast(gouts[0], x.dtype)]

    def c_scalar(self, node, args, bad):
        return _cast_c_scalar(self, node, args, bad)


def cast(x, dtype):
    """``x`` converted to ``dtype`` (no node if it already has it)."""
    x = as_variable(x)
    dtype = _dt.as_dtype(dtype, "cast")
    return x if x.dtype == dtype else Cast(dtype)(x)


# --------------------------------------------------------------------------- stop_gradient

class StopGradient(Op):
    """The identity whose gradient is cut on purpose (no cotangent flows through)."""

    name = "stop_gradient"
    flops_per_element = 0  # moves data: no arithmetic

    def infer(self, x):
        return [x.type]

    def perform(self, node, x):
        return [np.array(x, copy=True)]

    def grad(self, node, inputs, outputs, gouts):
        return [None]

    def c_scalar(self, node, args, bad):
        return args[0]


def stop_gradient(x):
    """``x``, seen by ``sg.grad`` as a constant: no gradient flows through it.

    >>> import symgrad as sg
    >>> x = sg.scalar("x")
    >>> g = sg.grad(x * sg.stop_gradient(x), x)   # d/dx of x * c  ->  c == x
    """
    return StopGradient()(as_variable(x))


# --------------------------------------------------------------------------- NumPy references

def _sigmoid(x):
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.result_type(x.dtype, np.float64) if x.dtype.kind in "iu" else np.float16)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def _libm(fn):
    """A NumPy reference calling ``fn`` of CPython's math module (libm's function of that
    name) in double and rounding once to the result's dtype -- the bits the compiled loops
    give too -- with np.sin's result dtypes (float32 stays float32, integers give
    float64). NumPy has no erf or erfc."""
    def ref(x):
        x = np.asarray(x)
        dtype = np.sin(np.empty(0, x.dtype)).dtype
        if x.size == 0:
            return np.empty(x.shape, dtype)
        out = np.frompyfunc(fn, 1, 1)(x.astype(np.float64))
        return np.asarray(out, dtype=np.float64).astype(dtype)
    ref.__name__ = fn.__name__
    return ref


_erf, _erfc = _libm(math.erf), _libm(math.erfc)


def _softplus(x):
    return np.logaddexp(0, x)


def _relu(x):
    return np.maximum(x, 0) if np.asarray(x).dtype != np.bool_ else np.asarray(x).copy()


def _where(c, x, y):
    return np.where(np.asarray(c, dtype=bool), x, y)


# --------------------------------------------------------------------------- gradient helpers

def _zero(x, out, g):
    return [zeros_like(x, dtype=g.dtype)]


def where(cond, x, y):
    """Elementwise ``x`` where ``cond`` is true, else ``y`` (with broadcasting)."""
    return apply("where", cond, x, y, value_slots=(1, 2))


def _sel(cond, g):
    return where(cond, g, 0)


def _pow_grad(x, y, out, g):
    # PyTorch's conventions at 0: d/dx is 0 where y == 0 (y * x**(y-1) would be
    # 0 * inf at x == 0), d/dy is 0 where x == 0 and y >= 0 (out * log(x) would be
    # 0 * -inf). The masked lanes compute x**0 and log(1) instead, so no Inf appears
    # on the way (mode "debug" stops on any); x == 0 with y < 0 keeps its -inf.
    return [_pow_grad_base(x, y, g), _pow_grad_exponent(x, y, out, g)]


def _pow_grad_base(x, y, g):
    if isinstance(y, Constant):
        # a constant exponent (the common x ** 2) gets its y - 1 folded here, not as a
        # node, and needs the mask only if it holds a zero
        gx = g * y * x ** Constant(np.where(y.data == 0, 0, y.data - 1), dtype=y.dtype)
        return where(eq(y, 0), 0, gx) if np.any(y.data == 0) else gx
    zero = eq(y, 0)
    return where(zero, 0, g * y * x ** where(zero, 0, y - 1))


def _pow_grad_exponent(x, y, out, g):
    masked = where(eq(x, 0), y >= 0, False)
    return where(masked, 0, g * out * log(where(masked, 1, x)))


# --------------------------------------------------------------------------- the table

row("neg", 1, np.negative, lambda x, out, g: [-g], "-")
row("abs", 1, np.abs, lambda x, out, g: [g * sign(x)], doc="abs'(0) = 0")
row("sign", 1, np.sign, _zero)
row("exp", 1, np.exp, lambda x, out, g: [g * out], cost=8)
row("log", 1, np.log, lambda x, out, g: [g / x], cost=8)
row("log1p", 1, np.log1p, lambda x, out, g: [g / (x + 1)], cost=8)
row("expm1", 1, np.expm1, lambda x, out, g: [g * (out + 1)], cost=8)
row("sqrt", 1, np.sqrt, lambda x, out, g: [g * 0.5 / out], cost=3)
row("square", 1, np.square, lambda x, out, g: [g * 2 * x])
row("tanh", 1, np.tanh, lambda x, out, g: [g * (1 - square(out))], cost=8)
row("sigmoid", 1, _sigmoid, lambda x, out, g: [g * out * (1 - out)], cost=8)
row("softplus", 1, _softplus, lambda x, out, g: [g * sigmoid(x)], cost=8)
row("relu", 1, _relu, lambda x, out, g: [_sel(x > 0, g)], doc="relu'(0) = 0")
row("erf", 1, _erf, lambda x, out, g: [g * (2 / math.sqrt(math.pi)) * exp(-square(x))], cost=20)
row("erfc", 1, _erfc, lambda x, out, g: [g * (-2 / math.sqrt(math.pi)) * exp(-square(x))], cost=20)
row("sin", 1, np.sin, lambda x, out, g: [g * cos(x)], cost=8)
row("cos", 1, np.cos, lambda x, out, g: [-g * sin(x)], cost=8)
row("floor", 1, np.floor, _zero)
row("ceil", 1, np.ceil, _zero)
row("round", 1, np.round, _zero)
row("isnan", 1, np.isnan, lambda x, out, g: [None])

row("add", 2, np.add, lambda x, y, out, g: [g, g], "+")
row("sub", 2, np.subtract, lambda x, y, out, g: [g, -g], "-")
row("mul", 2, np.multiply, lambda x, y, out, g: [g * y, g * x], "*")
row("truediv", 2, np.true_divide, lambda x, y, out, g: [g / y, -g * out / y], "/", cost=3)
row("floordiv", 2, np.floor_divide,
    lambda x, y, out, g: [zeros_like(x, g.dtype), zeros_like(y, g.dtype)], "//", cost=3)
row("mod", 2, np.mod, lambda x, y, out, g: [g, -g * floor(x / y)], "%", cost=3)
row("pow", 2, np.power, _pow_grad, "**", cost=8)
row("maximum", 2, np.maximum,
    lambda x, y, out, g: [_sel(x >= y, g), _sel(x < y, g)], doc="a tie's gradient goes to x")
row("minimum", 2, np.minimum,
    lambda x, y, out, g: [_sel(x <= y, g), _sel(x > y, g)], doc="a tie's gradient goes to x")
for _name, _fn, _sym in [("lt", np.less, "<"), ("le", np.less_equal, "<="),
                         ("gt", np.greater, ">"), ("ge", np.greater_equal, ">="),
                         ("eq", np.equal, "=="), ("neq", np.not_equal, "!=")]:
    row(_name, 2, _fn, lambda x, y, out, g: [None, None], _sym)
row("where", 3, _where, lambda c, x, y, out, g: [None, _sel(c, g), where(c, 0, g)],
    doc="no gradient flows into the condition")


# --------------------------------------------------------------------------- public functions

def _unary(name):
    def fn(x):
        return apply(name, x)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise ``{name}``{' (' + ELEMWISE[name].doc + ')' if ELEMWISE[name].doc else ''}."
    return fn


def _binary(name):
    def fn(x, y):
        return apply(name, x, y)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise ``{name}`` with broadcasting{'; ' + ELEMWISE[name].doc if ELEMWISE[name].doc else ''}."
    return fn


neg, abs, sign, exp, log, log1p, expm1, sqrt, square, tanh = map(  # noqa: A001
    _unary, ["neg", "abs", "sign", "exp", "log", "log1p", "expm1", "sqrt", "square", "tanh"])
sigmoid, softplus, relu, sin, cos, floor, ceil, round, isnan = map(  # noqa: A001
    _unary, ["sigmoid", "softplus", "relu", "sin", "cos", "floor", "ceil", "round", "isnan"])
erf, erfc = _unary("erf"), _unary("erfc")
erf.__doc__ = """Elementwise error function, ``2/sqrt(pi) * integral of exp(-t**2)`` from 0 to ``x``
(``scipy.special.erf``, ``torch.erf``): libm's ``erf`` in double, rounded once to the result's
dtype, the same bits in every mode."""
erfc.__doc__ = """Elementwise complementary error function ``1 - erf(x)``, accurate where that
difference would cancel (``erfc(5)`` is 1.5e-12; ``scipy.special.erfc``, ``torch.erfc``):
libm's ``erfc`` in double, rounded once to the result's dtype, the same bits in every mode."""
add, sub, mul, truediv, floordiv, mod, pow, maximum, minimum = map(  # noqa: A001
    _binary, ["add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "maximum", "minimum"])
lt, le, gt, ge, eq, neq = map(_binary, ["lt", "le", "gt", "ge", "eq", "neq"])


def clip(x, lo, hi):
    """``x`` limited to ``[lo, hi]``: ``minimum(maximum(x, lo), hi)`` (ties pass the gradient to x)."""
    return minimum(maximum(x, lo), hi)


# --------------------------------------------------------------------------- C lowering
#
# Each row's scalar C expression, given C expressions of its operands already
# converted to the computation type. ``F`` is the math-function suffix ("" for
# double, "f" for float); ``T`` the computation C type; ``S`` the NumPy-helper
# suffix (f64, f32, i64, i32). Rows absent from FLOAT_C or INT_C have no
# meaning for that kind (NumPy refuses them at build time).

_CT, _SUFFIX = CTYPE, SUFFIX

FLOAT_C = {
    "neg": "(-{0})", "abs": "fabs{F}({0})", "sign": "({0} != {0} ? {0} : ({T})(({0} > 0) - ({0} < 0)))",
    "exp": "sg_exp{F}({0})", "log": "sg_log{F}({0})", "log1p": "sg_log1p{F}({0})",
    "expm1": "sg_expm1{F}({0})", "sqrt": "sqrt{F}({0})", "square": "({0} * {0})",
    "tanh": "sg_tanh{F}({0})", "sigmoid": "sg_sigmoid{F}({0})", "softplus": "sg_softplus{F}({0})",
    "relu": "(({0} > 0 || {0} != {0}) ? {0} : ({T})0)", "sin": "sin{F}({0})", "cos": "cos{F}({0})",
    # in double for float32 too: mode py's math.erf is the same libm function
    "erf": "({T})erf((double){0})", "erfc": "({T})erfc((double){0})",
    "floor": "floor{F}({0})", "ceil": "ceil{F}({0})", "round": "nearbyint{F}({0})",
    "isnan": "({0} != {0})",
    "add": "({0} + {1})", "sub": "({0} - {1})", "mul": "({0} * {1})", "truediv": "({0} / {1})",
    "floordiv": "sg_floordiv_{S}({0}, {1})", "mod": "sg_mod_{S}({0}, {1})",
    "pow": "pow{F}({0}, {1})",
    # as NumPy: NaN wins, and a tie (0.0 vs -0.0) gives the second operand
    "maximum": "(({0} > {1} || {0} != {0}) ? {0} : {1})",
    "minimum": "(({0} < {1} || {0} != {0}) ? {0} : {1})",
    "lt": "({0} < {1})", "le": "({0} <= {1})", "gt": "({0} > {1})", "ge": "({0} >= {1})",
    "eq": "({0} == {1})", "neq": "({0} != {1})", "where": "({0} ? {1} : {2})",
}
# Integer +, -, * and negation wrap around as in NumPy: computed unsigned ({U}),
# since signed overflow is undefined behaviour in C (UBSan stops on it).
INT_C = {
    "neg": "({T})(-({U}){0})", "abs": "({T})({0} < 0 ? -({U}){0} : ({U}){0})",
    "sign": "({T})(({0} > 0) - ({0} < 0))", "square": "({T})(({U}){0} * ({U}){0})",
    "relu": "({0} > 0 ? {0} : ({T})0)", "floor": "{0}", "ceil": "{0}", "round": "{0}",
    "isnan": "0", "add": "({T})(({U}){0} + ({U}){1})", "sub": "({T})(({U}){0} - ({U}){1})",
    "mul": "({T})(({U}){0} * ({U}){1})", "floordiv": "sg_floordiv_{S}({0}, {1})",
    "mod": "sg_mod_{S}({0}, {1})", "pow": "sg_pow_{S}({0}, {1}, &{BAD})",
    "maximum": "({0} >= {1} ? {0} : {1})", "minimum": "({0} <= {1} ? {0} : {1})",
    "lt": "({0} < {1})", "le": "({0} <= {1})", "gt": "({0} > {1})", "ge": "({0} >= {1})",
    "eq": "({0} == {1})", "neq": "({0} != {1})", "where": "({0} ? {1} : {2})",
}
BOOL_C = {
    "abs": "{0}", "square": "{0}", "relu": "{0}", "isnan": "0", "add": "({0} | {1})",
    "mul": "({0} & {1})", "maximum": "({0} | {1})", "minimum": "({0} & {1})",
    "lt": "({0} < {1})", "le": "({0} <= {1})", "gt": "({0} > {1})", "ge": "({0} >= {1})",
    "eq": "({0} == {1})", "neq": "({0} != {1})", "where": "({0} ? {1} : {2})",
    "floor": "{0}", "ceil": "{0}", "round": "{0}", "sign": "{0}",
}
_COMPARE = ("lt", "le", "gt", "ge", "eq", "neq")


def _computation_dtype(name, in_dtypes, out_dtype):
    """The dtype operands are converted to before the row's expression applies."""
    if name in _COMPARE:
        return np.result_type(*in_dtypes).name
    if name == "isnan":
        return in_dtypes[0]
    return out_dtype


def _convert(expr, src, dst):
    """C expression ``expr`` (of dtype ``src``) as a value of dtype ``dst``, as NumPy's astype.

    A bool (a uint8_t) is widened through int32_t: gcc 12 vectorises no loop
    where a comparison's uint8_t is converted straight to a double or float,
    ``(double)(a < b)`` (115 against 13 µs for 20x500 float64, the loop of
    ``cast(u < sigmoid(x), "float64")``), nor one converting a loaded bool to
    a double through a select, but does every such loop with
    ``(double)(int32_t)e``. The value is the same as a direct conversion.
    An int64 becomes a float through sg_math.h's sg_i64_to_f64/f32: x86 has
    vector int64 conversions only with AVX-512DQ, and gcc keeps a loop with
    ``(double)i`` scalar elsewhere (AVX2); those build the same bits from
    32-bit halves. bench/bench_vectorise.py and tests/test_vectorise.py check
    the loops.
    """
    if src == dst:
        return expr
    if dst == "bool":
        return f"({expr} != 0)"
    if src == "bool" and dst != "int32":
        return f"(({_CT[dst]})(int32_t){expr})"
    if src == "int64" and dst in ("float64", "float32"):
        return f"sg_i64_to_f{dst[-2:]}({expr})"
    return f"(({_CT[dst]}){expr})"


def _elemwise_c_scalar(self, node, args, bad):
    name = self.scalar
    out = node.outputs[0].dtype
    ins = [v.dtype for v in node.inputs]
    comp = _computation_dtype(name, ins, out)
    conv = []
    for i, (a, d) in enumerate(zip(args, ins)):
        target = "bool" if (name == "where" and i == 0) else comp
        conv.append(_convert(a, d, target))
    table = FLOAT_C if comp in ("float64", "float32") else BOOL_C if comp == "bool" else INT_C
    if name == "pow" and table is FLOAT_C:
        exact = _float_pow_by_constant(node.inputs[1], conv[0], comp)
        if exact is not None:
            return _convert(exact, comp, out)
    template = table.get(name)
    if template is None:
        raise NotImplementedError(f"{name} has no C form for {comp}")
    expr = template.format(*conv, F="f" if comp == "float32" else "", T=_CT[comp],
                           U="u" + _CT[comp], S=_SUFFIX.get(comp, ""), BAD=bad)
    return _convert(expr, comp if name not in _COMPARE + ("isnan",) else "bool", out)


def _float_pow_by_constant(exponent, base, comp):
    """``base ** k`` for a constant float exponent k in {0, 1, 2, -1}, without calling pow.

    Each form is exactly what pow returns (one rounding: x*x and 1/x are
    correctly rounded, as pow's result is; pow(x, 0) is 1 even for NaN), and
    what NumPy computes for these exponents. Other exponents keep pow.
    """
    from ..graph import Constant

    if not isinstance(exponent, Constant) or exponent.data.size != 1:
        return None
    k = float(exponent.data.reshape(()))
    one = "1.0f" if comp == "float32" else "1.0"
    forms = {0.0: one, 1.0: f"({base})",
             2.0: f"(({base}) * ({base}))", -1.0: f"({one} / ({base}))"}
    return forms.get(k)


def _cast_c_scalar(self, node, args, bad):
    src, dst = node.inputs[0].dtype, self.dtype
    if dst in ("int64", "int32") and src in ("float64", "float32"):
        return f"sg_f2{_SUFFIX[dst]}({args[0]})"
    return _convert(args[0], src, dst)

