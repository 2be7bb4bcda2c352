"""symgrad: a compiled static-graph framework with symbolic gradients.

>>> import numpy as np, symgrad as sg
>>> x = sg.vector("x")
>>> cost = (sg.tanh(x) ** 2).sum()
>>> g = sg.grad(cost, x)
>>> f = sg.function([x], [cost, g])
"""

from ._version import __version__  # noqa: F401  (modules read it there, not from here)
from . import nn  # noqa: F401
from .autodiff import grad, hessian, jacobian, jvp, vjp  # noqa: F401
from .config import config  # noqa: F401
from .errors import (CacheError, CompileError, DisconnectedInputError,  # noqa: F401,A004
                     DistributedError, GradientError, IndexError, InputError, NonDifferentiableError,
                     NonScalarCostError, ShapeError, SymgradError)
from .function import Function, In, UnusedInputWarning, function  # noqa: F401
from .gradcheck import verify_grad  # noqa: F401
from .graph import (Apply, Constant, Op, SharedVariable, TensorType, Variable, constant,  # noqa: F401
                    matrix, scalar, shared, tensor, tensor3, tensor4, vector)
from .interp import evaluate  # noqa: F401
from .ops import *  # noqa: F401,F403  (the op functions: symgrad.ops.__all__)
from .printing import debugprint, pprint, render, to_dot  # noqa: F401
from . import layers, optim, random  # noqa: F401,E402
from .checkpoint import CheckpointError, load, save  # noqa: F401,E402
from .summaries import summary, summary_scope  # noqa: F401,E402
from .train import train_step  # noqa: F401,E402
from .report import explain  # noqa: F401,E402

from . import _advice  # noqa: E402
_advice.register(("sg", globals()), ("sg.nn", nn.__dict__))


def __getattr__(name):
    # Only reached for a name symgrad does not have: say what to write instead (a Theano
    # or PyTensor name such as sg.nnet or sg.dmatrix, or a near miss).
    if name.startswith("__"):
        raise AttributeError(f"module 'symgrad' has no attribute {name!r}")
    raise _advice.module_attribute_error(name, [n for n in globals() if not n.startswith("_")])
