"""Neural-network functions: ``sg.nn.softmax``, ``log_softmax``, ``cross_entropy``, ..."""

from .ops.elemwise import relu, sigmoid, softplus, tanh  # noqa: F401
from .ops.nn import *  # noqa: F403
from .ops.nn import __all__ as _nn_all

__all__ = ["relu", "sigmoid", "softplus", "tanh", *_nn_all]
