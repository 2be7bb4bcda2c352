"""Neural-network functions: ``sg.nn.softmax``, ``log_softmax``, ``cross_entropy``, ``dropout``,
``embedding``, activations (``relu``, ``leaky_relu``, ``elu``, ``silu``, ``gelu``, ...), ``conv2d``,
``batch_norm``, ...; ``collect_updates`` gathers batch norm's running-statistic updates."""

import math as _math
import numbers as _numbers

from .graph import Variable as _Variable, user_trace as _user_trace
from .ops.elemwise import relu, sigmoid, softplus, tanh  # noqa: F401
from .ops.elemwise import erfc as _erfc, expm1 as _expm1, where as _where
from .ops.nn import *  # noqa: F403
from .ops.nn import __all__ as _nn_all
from .ops.conv import conv1d, conv2d, conv_transpose2d  # noqa: F401
from .ops.pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d  # noqa: F401
from .ops.norm import batch_norm, collect_updates, layer_norm  # noqa: F401
from .ops.shape import zeros_like as _zeros_like

__all__ = ["relu", "sigmoid", "softplus", "tanh", "leaky_relu", "elu", "silu", "gelu",
           "dropout", *_nn_all, "conv1d", "conv2d", "conv_transpose2d",
           "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "batch_norm", "layer_norm",
           "collect_updates"]


def _float_input(fn, x):
    """``x`` as a float Variable, or a TypeError naming ``fn`` and the user's line."""
    from .graph import as_variable
    x = as_variable(x)
    if not x.dtype.startswith("float"):
        raise TypeError(f"{fn}: x must be float, got {x.type}; cast it first, e.g. "
                        f"x.astype('float32') (at {_user_trace()})")
    return x


def _real(fn, what, value):
    if isinstance(value, bool) or not isinstance(value, _numbers.Real):
        raise TypeError(f"{fn}: {what} must be a number, got {value!r} (at {_user_trace()})")
    return float(value)


def leaky_relu(x, negative_slope=0.01):
    """``x`` where ``x > 0``, else ``negative_slope * x`` (PyTorch's ``F.leaky_relu``; the
    gradient at 0 is ``negative_slope``, as PyTorch's).

    >>> import symgrad as sg
    >>> h = sg.nn.leaky_relu(sg.matrix("x"), 0.2)
    """
    x = _float_input("leaky_relu", x)
    slope = _real("leaky_relu", "negative_slope", negative_slope)
    return _where(x > 0, x, x * slope)


def elu(x, alpha=1.0):
    """``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)`` (PyTorch's ``F.elu``, computed
    with ``expm1``: accurate near 0; the gradient at 0 is ``alpha``, as PyTorch's).

    >>> import symgrad as sg
    >>> h = sg.nn.elu(sg.matrix("x"))
    """
    x = _float_input("elu", x)
    alpha = _real("elu", "alpha", alpha)
    return _where(x > 0, x, alpha * _expm1(x))


def silu(x):
    """``x * sigmoid(x)``, also called swish (PyTorch's ``F.silu``).

    >>> import symgrad as sg
    >>> h = sg.nn.silu(sg.matrix("x"))
    """
    x = _float_input("silu", x)
    return x * sigmoid(x)


def gelu(x, approximate="none"):
    """The Gaussian error linear unit, ``x * Phi(x)`` with ``Phi`` the standard normal CDF
    (PyTorch's ``F.gelu``): ``approximate="none"`` is ``0.5 * x * (1 + erf(x / sqrt(2)))``,
    ``"tanh"`` the approximation ``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 *
    x**3)))``.

    Both are computed without the cancellation of ``1 + erf`` and ``1 + tanh`` for negative
    ``x`` (PyTorch's formulas lose up to 8 digits at ``x = -6``): as ``0.5 * x * erfc(-x /
    sqrt(2))`` and as ``x * sigmoid(2 * sqrt(2 / pi) * (x + 0.044715 * x**3))``, the same
    functions; their gradients follow from those forms. float32 is evaluated in double and
    rounded once.

    >>> import symgrad as sg
    >>> h = sg.nn.gelu(sg.matrix("x"))
    """
    x = _float_input("gelu", x)
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r} "
                         f"(at {_user_trace()})")
    # float32 is computed in double and rounded once: erfc's and sigmoid's arguments for
    # x < 0 are ill-conditioned (erfc(z) changes 2 z**2 times as fast as z, 36x at x = -6),
    # so rounding them to float32 would cost up to tens of ulps
    x64 = x if x.dtype == "float64" else x.astype("float64")
    if approximate == "none":
        y = 0.5 * x64 * _erfc(x64 * (-1 / _math.sqrt(2)))
    else:
        y = x64 * sigmoid((2 * _math.sqrt(2 / _math.pi)) * (x64 + 0.044715 * (x64 * x64 * x64)))
    return y if y.dtype == x.dtype else y.astype(x.dtype)


def dropout(x, p, rng=None, training=True):
    """Inverted dropout: each element of ``x`` is zeroed with probability ``p`` and the others
    are scaled by ``1 / (1 - p)``, so the expected value is ``x``; without ``training`` it is
    ``x`` itself (inference).

    Parameters
    ----------
    x : Variable
    p : float or 0-d Variable
        The probability of dropping an element, in [0, 1].
    rng : sg.random.RandomStream, optional
        Default ``sg.random.default_stream()``.
    training : bool
        Build the training graph (True) or the inference graph (False).

    The mask is a ``bernoulli(1 - p)`` sample of ``x``'s shape drawn afresh at every call;
    in mode "c" it is drawn inside the loop that applies it, and kept (as bools) only when
    a gradient needs it.

    >>> import symgrad as sg
    >>> x = sg.matrix("x")
    >>> h = sg.nn.dropout(x, 0.5, sg.random.RandomStream(0))
    """
    from .random import RandomStream, default_stream
    if not isinstance(x, _Variable):
        raise TypeError(f"dropout: x must be a Variable, got {type(x).__name__} "
                        f"(at {_user_trace()})")
    if not x.dtype.startswith("float"):
        raise TypeError(f"dropout: x must be float, got {x.dtype} (at {_user_trace()})")
    rng = default_stream() if rng is None else rng
    if not isinstance(rng, RandomStream):
        raise TypeError(f"dropout: rng must be an sg.random.RandomStream, got "
                        f"{type(rng).__name__} (at {_user_trace()})")
    if not training:
        return x
    if isinstance(p, _numbers.Real) and not isinstance(p, bool):
        p = float(p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout: p must be in [0, 1], got {p} (at {_user_trace()})")
        if p == 0.0:
            return x
        if p == 1.0:
            return _zeros_like(x)
    keep = rng.bernoulli(1 - p, size=x.shape, dtype="bool")
    return _where(keep, x * (1 / (1 - p)), 0)


def __getattr__(name):
    # Only reached for a name sg.nn does not have: say what to write instead (Theano's
    # T.nnet names such as categorical_crossentropy, or a near miss).
    if name.startswith("__"):
        raise AttributeError(f"module 'symgrad.nn' has no attribute {name!r}")
    from ._advice import module_attribute_error
    raise module_attribute_error(name, [n for n in globals() if not n.startswith("_")],
                                 "symgrad.nn")
