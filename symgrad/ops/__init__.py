"""Every op of symgrad, one module per family; each op holds its type inference,
NumPy reference, gradient rule, FLOP count and C lowering together."""

from . import (conv, creation, elemwise, gemm, indexing, join, linalg, methods, nn,  # noqa: F401
               norm, pool, reduce)
from . import shape as shape_ops  # the module; the name `shape` is the function sg.shape
from .elemwise import *  # noqa: F403,A004
from .creation import arange
from .indexing import *  # noqa: F403
from .join import *  # noqa: F403
from .linalg import *  # noqa: F403
from .reduce import *  # noqa: F403
from .shape import (broadcast_to, expand_dims, flatten, ones, ones_like, reshape, shape,
                    squeeze, transpose, zeros, zeros_like)
from .nn import one_hot  # noqa: F401  (sg.one_hot, public beside sg.nn's losses)
from .ifelse import ifelse
from .scan import map, scan  # noqa: A004  (sg.map is Theano's, not the builtin)
from . import indexing as _indexing, join as _join, linalg as _linalg, reduce as _reduce

# What ``from .ops import *`` gives ``symgrad``: the op functions, never the family
# modules (a star import without this list would also bind sg.reduce, sg.elemwise and
# sg.nn -- the last one hiding the public module symgrad/nn.py).
__all__ = [
    *elemwise.__all__,
    "broadcast_to", "expand_dims", "flatten", "ones", "ones_like", "reshape", "shape", "squeeze",
    "transpose", "zeros", "zeros_like", "one_hot", "arange", "scan", "map", "ifelse",
    *_indexing.__all__, *_join.__all__, *_linalg.__all__, *_reduce.__all__,
]
