"""What to write instead: the errors a Theano or NumPy habit meets (issue #17, item 4).

Three doors lead here: a missing attribute of the package (``sg.nnet``,
``sg.dmatrix``: ``symgrad.__getattr__``), a missing attribute of a Variable
(``x.norm``, ``x.nonzero``: ``Variable.__getattr__``) and a NumPy function or
ufunc called on a Variable (``np.tanh(x)``, ``np.dot(W, x)``:
``Variable.__array_ufunc__`` / ``__array_function__``). Each error keeps its
type (AttributeError, TypeError) and says what to write in symgrad.
"""

import difflib

# ("sg", namespace), ("sg.nn", namespace): filled by symgrad/__init__.py once the package
# is complete (this module imports nothing of symgrad: no import cycle).
NAMESPACES = []


def register(*namespaces):
    NAMESPACES[:] = namespaces


def _arguments(where, name):
    """``x`` for a function of one required argument, else ``x, ...``."""
    import inspect
    fn = dict(NAMESPACES)[where][name]
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return "x, ..."
    required = [p for p in params if p.default is p.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return "x" if len(required) == 1 else "x, ..."


def _function_in(name):
    """The place (``sg`` or ``sg.nn``) where a function ``name`` is, or None."""
    return next((where for where, ns in NAMESPACES if callable(ns.get(name))), None)

# Theano / PyTensor names of the tensor module that symgrad spells otherwise.
_TYPED = {"b": "int8", "w": "int16", "i": "int32", "l": "int64", "f": "float32",
          "d": "float64", "c": "complex64", "z": "complex128"}
_KINDS = {"scalar": "scalar", "vector": "vector", "matrix": "matrix", "row": "tensor",
          "col": "tensor", "tensor3": "tensor3", "tensor4": "tensor4", "tensor5": "tensor",
          "vectors": "vector", "matrices": "matrix", "scalars": "scalar"}

MODULE = {
    "nnet": "Theano's T.nnet functions are in sg.nn (sg.nn.softmax, sg.nn.log_softmax, "
            "sg.nn.cross_entropy for categorical_crossentropy of integer labels, "
            "sg.nn.binary_cross_entropy_with_logits, sg.nn.conv2d) and sg (sg.sigmoid, "
            "sg.softplus, sg.relu)",
    "softmax": "write sg.nn.softmax(x, axis=-1)",
    "log_softmax": "write sg.nn.log_softmax(x, axis=-1)",
    "logsoftmax": "write sg.nn.log_softmax(x, axis=-1)",
    "categorical_crossentropy": "write sg.nn.cross_entropy(logits, labels) (integer labels, "
                                "from logits: stable), or -sg.mean(sg.log(p)[sg.arange(n), y])",
    "binary_crossentropy": "write sg.nn.binary_cross_entropy_with_logits(logits, targets) "
                           "(from logits: stable)",
    "conv2d": "write sg.nn.conv2d(x, w, stride=..., padding=...) (PyTorch's layout NCHW and "
              "cross-correlation; Theano's conv2d flips the filters)",
    "conv": "convolutions are sg.nn.conv1d / sg.nn.conv2d",
    "signal": "Theano's signal.pool is sg.nn.max_pool2d / sg.nn.avg_pool2d",
    "pool": "pooling is sg.nn.max_pool2d / sg.nn.avg_pool2d",
    "pool_2d": "write sg.nn.max_pool2d(x, kernel_size) or sg.nn.avg_pool2d(x, kernel_size)",
    "max_pool_2d": "write sg.nn.max_pool2d(x, kernel_size)",
    "switch": "write sg.where(cond, a, b)",
    "sqr": "write sg.square(x)",
    "abs_": "write sg.abs(x) or abs(x)",
    "inv": "write 1 / x",
    "join": "write sg.concatenate([a, b], axis=...) (the axis comes second)",
    "alloc": "write sg.zeros(shape) / sg.ones(shape), or sg.broadcast_to(value, shape)",
    "fill": "write sg.broadcast_to(value, sg.shape(x)) or sg.zeros_like(x) + value",
    "full": "write sg.broadcast_to(sg.constant(value), shape) or value * sg.ones(shape)",
    "empty": "write sg.zeros(shape)",
    "array": "write sg.constant(array) (NumPy arrays in expressions become constants anyway)",
    "asarray": "write sg.constant(array) (NumPy arrays in expressions become constants anyway)",
    "as_tensor_variable": "write sg.constant(value); Variables pass through as they are",
    "batched_dot": "write sg.matmul(a, b) (batched over leading axes)",
    "shape_padleft": "write sg.expand_dims(x, 0) or x.dimshuffle('x', 0, ...)",
    "shape_padright": "write sg.expand_dims(x, -1) or x.dimshuffle(0, ..., 'x')",
    "shape_padaxis": "write sg.expand_dims(x, axis)",
    "addbroadcast": "not needed: an axis of static length 1 broadcasts; declare it with "
                    "sg.tensor(shape=(1, None))",
    "patternbroadcast": "not needed: an axis of static length 1 broadcasts; declare it with "
                        "sg.tensor(shape=(1, None))",
    "unbroadcast": "not needed: write sg.broadcast_to(x, shape) for a full array",
    "specify_shape": "declare the static shape on the input: sg.tensor(shape=(None, 3))",
    "Param": "write sg.In(x, value=default)",
    "Out": "outputs are Variables; every result is a fresh array the caller owns",
    "pp": "write sg.pprint(x)",
    "printing": "write sg.debugprint(obj) or sg.pprint(x)",
    "gradient": "write sg.grad, sg.jacobian, sg.hessian, sg.vjp, sg.jvp or sg.verify_grad",
    "tensor.nnet": "see sg.nn",
    "RandomStreams": "write sg.random.RandomStream(seed); its .uniform, .normal, .binomial "
                     "(Theano's arguments; .bernoulli for n=1), .integers and .permutation "
                     "take size= with ints or symbolic lengths",
    "MRG_RandomStreams": "write sg.random.RandomStream(seed)",
    "shared_randomstreams": "write sg.random.RandomStream(seed)",
    "sandbox": "write sg.random.RandomStream(seed) for Theano's sandbox.rng_mrg",
    "clone": "write sg.function(..., givens={old: new}) to substitute",
    "tensordot": "write sg.matmul or sg.dot after a reshape / transpose",
    "norm": "write sg.sqrt((x ** 2).sum()) (L2) or abs(x).sum() (L1)",
    "linspace": "write start + (stop - start) * sg.arange(n) / (n - 1)",
    "eye": "write sg.constant(np.eye(n)) for an int n; for a symbolic n, "
           "sg.eq(sg.arange(n)[:, None], sg.arange(n)).astype('float64')",
    "identity_like": "write sg.eq(sg.arange(x.shape[0])[:, None], sg.arange(x.shape[1]))"
                     ".astype(x.dtype)",
    "tile": "write sg.concatenate([x] * k, axis=...), or sg.broadcast_to on an added axis, "
            "then reshape",
    "repeat": "write sg.broadcast_to on an added axis, then reshape",
    "cumsum": "symgrad has no cumsum: write a loop with sg.scan",
    "cumprod": "symgrad has no cumprod: write a loop with sg.scan",
    "sort": "symgrad has no sort", "argsort": "symgrad has no sort",
    "nonzero": "symgrad has no data-dependent shapes: use sg.where(cond, a, b) to select",
    "isinf": "write sg.eq(abs(x), np.inf)",
    "isfinite": "write sg.eq(x - x, 0) (x - x is NaN for an inf or a NaN)",
    "log2": "write sg.log(x) / np.log(2)", "log10": "write sg.log(x) / np.log(10)",
    "exp2": "write 2 ** x", "int_div": "write x // y", "true_div": "write x / y",
    "floor_div": "write x // y", "mod": None, "pow": None,
    "diag": "take a diagonal with x[sg.arange(n), sg.arange(n)]; make a diagonal matrix with "
            "v[:, None] * sg.eq(sg.arange(n)[:, None], sg.arange(n))",
    "roll": "write sg.concatenate([x[-k:], x[:-k]], axis=0)",
    "Rop": "write sg.jvp(outputs, wrt, tangents) (forward mode)",
    "Lop": "write sg.vjp(outputs, wrt, cotangents)",
    "allclose": "compare values once computed: np.allclose on a compiled function's results",
    "zeros_like": None, "floatX": "write sg.config.floatX",
}
for _p, _d in _TYPED.items():
    for _k, _fn in _KINDS.items():
        _extra = {"row": ", shape=(1, None)", "col": ", shape=(None, 1)",
                  "tensor5": ", shape=(None,) * 5"}.get(_k, "")
        if _d.startswith("complex"):
            MODULE.setdefault(_p + _k, "symgrad has no complex dtypes (float32, float64, "
                                       "int32, int64 and bool)")
        elif _k.endswith("s"):
            MODULE.setdefault(_p + _k, f"write one sg.{_fn}(name, dtype='{_d}') per name")
        else:
            MODULE.setdefault(_p + _k, f"write sg.{_fn}(name, dtype='{_d}'{_extra})")
MODULE = {k: v for k, v in MODULE.items() if v is not None}


def module_attribute_error(name, public, module="symgrad"):
    """The AttributeError for ``sg.<name>`` (or ``sg.nn.<name>``) that symgrad does not have."""
    msg = f"module {module!r} has no attribute {name!r}"
    advice = MODULE.get(name)
    prefix = "sg" + module[len("symgrad"):]
    if advice is None:
        close = difflib.get_close_matches(name, sorted(public), n=3, cutoff=0.75)
        if close:
            advice = "did you mean " + " or ".join(f"{prefix}.{c}" for c in close) + "?"
    if advice is None:
        advice = ("docs/from_theano.md maps Theano's and PyTensor's names to symgrad's")
    return AttributeError(f"{msg}: {advice}")


# Methods of NumPy arrays and Theano variables that a Variable does not have, with advice.
METHOD = {
    "nonzero": "symgrad has no data-dependent shapes: use sg.where(cond, a, b) to select",
    "sort": "symgrad has no sort", "argsort": "symgrad has no sort",
    "any": "write sg.neq(x, 0).max()",
    "all": "write sg.neq(x, 0).min()",
    "norm": "write sg.sqrt((x ** 2).sum(axis)) (L2) or abs(x).sum(axis) (L1)",
    "cumsum": "symgrad has no cumsum: write a loop with sg.scan",
    "repeat": "write sg.broadcast_to on an added axis, then reshape",
    "copy": "not needed: a Variable is never written; every result is a fresh array",
    "tolist": "a Variable has no value until a compiled function runs: compile it with "
              "sg.function, or evaluate it with x.eval({input: value})",
    "item": "a Variable has no value until a compiled function runs: compile it with "
            "sg.function, or evaluate it with x.eval({input: value})",
    "get_value": "only shared variables (sg.shared) hold a value; evaluate an expression "
                 "with x.eval({input: value}) or sg.function",
    "set_value": "only shared variables (sg.shared) hold a value",
    "data": "only constants and shared variables hold a value: sg.constant(...).data, "
            "shared.get_value()",
    "broadcastable": "write x.type.shape: a static length 1 is Theano's broadcastable axis "
                     "(None: known at call time)",
    "ravel": "write x.flatten()",
    "nbytes": "a Variable has no value; x.type.shape holds its static shape",
    "itemsize": "write np.dtype(x.dtype).itemsize",
    "real": "symgrad has no complex dtypes", "imag": "symgrad has no complex dtypes",
    "conj": "symgrad has no complex dtypes",
}


class VariableAttributeError(AttributeError):
    """``x.<name>`` that a Variable does not have; the advice is worked out when the message
    is read (``getattr(v, name, default)`` and ``hasattr`` pay nothing for it)."""

    def __init__(self, var, name):
        super().__init__(name)
        self._var, self._attr = var, name

    def __str__(self):
        return _variable_message(self._var, self._attr)


def variable_attribute_error(var, name):
    """The AttributeError for ``x.<name>`` that a Variable does not have."""
    return VariableAttributeError(var, name)


def _variable_message(var, name):
    msg = f"'{type(var).__name__}' object has no attribute {name!r}"
    advice = METHOD.get(name)
    if advice is None:
        where = _function_in(name)
        if where is not None:
            advice = f"write {where}.{name}({_arguments(where, name)})"
    if advice is None:
        names = [n for n in dir(type(var)) if not n.startswith("_")]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.75)
        advice = ("did you mean " + " or ".join(f"x.{c}" for c in close) + "?" if close else
                  "a Variable's methods are NumPy's reductions (sum, mean, max, ...), reshape, "
                  "transpose/T, dimshuffle, flatten, astype, dot, clip, eval; other functions "
                  "are sg.<name>(x)")
    return f"{msg}: {advice}"


# NumPy ufuncs and functions by the symgrad function that does their work.
_SG_OF_NUMPY = {
    "subtract": "sub", "multiply": "mul", "true_divide": "truediv", "divide": "truediv",
    "floor_divide": "floordiv", "remainder": "mod", "power": "pow", "negative": "neg",
    "absolute": "abs", "less": "lt", "less_equal": "le", "greater": "gt",
    "greater_equal": "ge", "equal": "eq", "not_equal": "neq", "rint": "round",
    "around": "round", "fmax": "maximum", "fmin": "minimum", "amax": "max", "amin": "min",
    "logaddexp": None, "tensordot": None,
}


# NumPy functions whose answer is an attribute of a Variable.
_ATTRIBUTE_OF_NUMPY = {"ndim": "x.ndim", "size": "x.size (an int, or a symbolic length)",
                       "shape": "x.shape (ints where static, symbolic lengths where not)"}


def numpy_error(fn_name):
    """The TypeError for ``np.<fn_name>(...)`` given a symbolic Variable."""
    sg_name = _SG_OF_NUMPY.get(fn_name, fn_name)
    where = None if sg_name is None else _function_in(sg_name)
    if fn_name in _ATTRIBUTE_OF_NUMPY:
        advice = f"write {_ATTRIBUTE_OF_NUMPY[fn_name]}"
    elif where is not None:
        advice = f"write {where}.{sg_name}(...)"
    elif fn_name in MODULE:
        advice = MODULE[fn_name]
    else:
        advice = (f"symgrad has no {fn_name}; docs/from_theano.md lists the functions it has, "
                  f"or evaluate the graph first (sg.function, x.eval(...)) and use NumPy on "
                  f"the result")
    return TypeError(f"np.{fn_name} cannot compute on a symbolic Variable (it has no value until "
                     f"a compiled function runs): {advice}")
