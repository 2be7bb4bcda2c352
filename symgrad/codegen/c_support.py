"""C lowering helpers for ops whose work is a call into the support library.

A node's generic work (a matrix product, a sum back over broadcast axes, a
reshape, a copy) is a function of ``sg_ops.h``, instantiated per dtype
(``render_c.SUFFIX``); an op's ``c_code`` emits one line per call, passing
the node's failure site (its number, which the runtime turns into
"<op> at <file:line>: "), so errors still name the op and the user's line::

    if (sg_matmul_f32(err, "\\0373\\037", ws, &v3, 2, &in_0, 2, &in_1, 2)) goto fail;
"""

import numpy as np

from .render_c import SUFFIX

__all__ = ["SUFFIX", "call", "itemsize"]


def call(ctx, node, fn, *args):
    """Emit ``if (fn(err, <site>, args...)) goto fail;``: a call that may fail, whose
    messages start with ``node``'s failure site (``KernelContext.location``)."""
    ctx.w(f"if ({fn}(err, {ctx.location(node)}, {', '.join(args)})) goto fail;")


def itemsize(v):
    """The size in bytes of one element of ``v``, as a C expression."""
    return str(np.dtype(v.dtype).itemsize)
