"""Neural-network functions: ``sg.nn.softmax``, ``log_softmax``, ``cross_entropy``, ``dropout``,
``embedding``, ``conv2d``, ``batch_norm``, ...; ``collect_updates`` gathers batch norm's running-statistic updates."""

import numbers as _numbers

from .graph import Variable as _Variable, user_trace as _user_trace
from .ops.elemwise import relu, sigmoid, softplus, tanh  # noqa: F401
from .ops.elemwise import where as _where
from .ops.nn import *  # noqa: F403
from .ops.nn import __all__ as _nn_all
from .ops.conv import conv1d, conv2d, conv_transpose2d  # noqa: F401
from .ops.pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d  # noqa: F401
from .ops.norm import batch_norm, collect_updates, layer_norm  # noqa: F401
from .ops.shape import zeros_like as _zeros_like

__all__ = ["relu", "sigmoid", "softplus", "tanh", "dropout", *_nn_all, "conv1d", "conv2d", "conv_transpose2d",
           "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "batch_norm", "layer_norm",
           "collect_updates"]


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
