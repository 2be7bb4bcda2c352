"""C lowering helpers for ops whose work is a call into the fixed C of ``sg_ops.h``.

A node's generic work (a matrix product, a sum back over broadcast axes, a
reshape, a copy) is a function there, instantiated per dtype; the emitted code
is one line per node that passes the node's failure site (its number, which
the runtime turns into "<op> at <file:line>: "), so errors still name the op
and the user's line::

    if (sg_matmul_f32(err, "\0373\037", ws, &v3, 2, &in_0, 2, &in_1, 2)) goto fail;
"""

import numpy as np

__all__ = ["SUFFIX", "where", "call", "itemsize"]

# dtype -> the suffix of its instantiation in sg_ops.h
SUFFIX = {"float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64", "bool": "b8"}


def where(node, trace=None):
    """The C string literal that starts ``node``'s error messages.

    The message the user sees starts "<op> at <file:line>: "; the literal
    holds only the failure site's number (``codegen.render_c.location``), so
    the source, hence the cache key, does not change when the line does.
    Passed as a ``%s`` argument, never as a format.
    """
    from ..codegen.render_c import location

    return location(node, trace)


def call(ctx, node, fn, *args):
    """Emit ``if (fn(err, where, args...)) goto fail;``: a call that may fail."""
    ctx.w(f"if ({fn}(err, {where(node)}, {', '.join(args)})) goto fail;")


def itemsize(v):
    """The size in bytes of one element of ``v``, as a C expression."""
    return str(np.dtype(v.dtype).itemsize)
