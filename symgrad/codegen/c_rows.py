"""C lowering helper shared by the row-wise ops (reductions, softmax, cross-entropy): their
``c_code`` writes one row, this module walks the rows.

An array is walked as rows: it is viewed (no copy) with the axes an op works
along moved last, so each output element of a reduction, or each softmax
row, is one row. An op's lowering writes one row's code; ``walk_rows`` emits
it twice: a flat loop when every view is C-contiguous (the common last-axis
case, which the C compiler can optimise well) and nested strided loops that
are correct for any strides, including broadcast (0) and negative ones.
"""

import contextlib

__all__ = ["permuted_view", "walk_rows"]


def permuted_view(ctx, src, order):
    """A new ``sg_arr`` viewing the ``sg_arr`` named ``src`` with its axes in ``order``."""
    p = ctx.tmp("perm")
    ctx.w(f"sg_arr {p}; {p}.data = {src}.data;")
    for k, a in enumerate(order):
        ctx.w(f"{p}.shape[{k}] = {src}.shape[{a}]; {p}.strides[{k}] = {src}.strides[{a}];")
    return p


class _FlatRow:
    """Row ``o`` of C-contiguous views: element ``pos`` sits at ``o * inner + pos`` in each."""

    def __init__(self, ctx, o, inner, n_views):
        self.ctx, self.o, self.inner, self.n = ctx, o, inner, n_views

    @contextlib.contextmanager
    def each(self, simd=None):
        pos = self.ctx.tmp("j")
        if simd is not None:  # the row is contiguous: let the compiler vectorise the pass
            self.ctx.w(f"#pragma omp simd {simd}".rstrip())
        with self.ctx.w.block(f"for (int64_t {pos} = 0; {pos} < {self.inner}; {pos}++)"):
            yield [f"{self.o} * {self.inner} + {pos}"] * self.n, pos


class _StridedRow:
    """Row ``o`` of views with any strides: nested loops over the ``nr`` row axes."""

    def __init__(self, ctx, o, views, bases, nk, nr):
        self.ctx, self.o, self.views, self.bases, self.nk, self.nr = ctx, o, views, bases, nk, nr

    @contextlib.contextmanager
    def each(self, simd=None):
        ctx, nk = self.ctx, self.nk
        idx = [ctx.tmp("j") for _ in range(self.nr)]
        # one row axis: its index is the position; several: count positions in C order
        counted = self.nr != 1
        pos = ctx.tmp("pos") if counted else idx[0]
        if counted:
            ctx.w(f"int64_t {pos} = 0;")
        with contextlib.ExitStack() as stack:
            for k, i in enumerate(idx):
                stack.enter_context(ctx.w.block(
                    f"for (int64_t {i} = 0; {i} < {self.views[0]}.shape[{nk + k}]; {i}++)"))
            yield [" + ".join([b] + [f"{i} * {v}.strides[{nk + k}]" for k, i in enumerate(idx)])
                   for v, b in zip(self.views, self.bases)], pos
            if counted:
                ctx.w(f"{pos}++;")


def walk_rows(ctx, views, nd, nr, row):
    """Emit ``row(r)`` once per row of ``views`` (sg_arr names of one shape, the last ``nr``
    axes the row's).

    ``r.o`` is the row's C-order number (the output element of a reduction);
    ``with r.each() as (offsets, pos):`` is one pass over the row's elements,
    giving each view's element offset and the element's C-order position in
    the row. ``row`` may make several passes. ``r.each(simd="reduction(+:s)")``
    marks a pass whose iterations are independent (apart from the named
    reductions): on contiguous rows it becomes an ``omp simd`` loop.
    """
    w, nk = ctx.w, nd - nr
    outer, inner = ctx.tmp("outer"), ctx.tmp("inner")
    w(f"int64_t {outer} = 1, {inner} = 1;")
    for k in range(nd):
        w(f"{outer if k < nk else inner} *= {views[0]}.shape[{k}];")
    fast = " && ".join(f"sg_is_contiguous(&{v}, {nd})" for v in views)
    # Empty rows read nothing: the flat walk, whatever the layout (a strided walk of
    # (2**60, 0, 0) would step through 2**60 empty loops).
    with w.block(f"if ({inner} == 0 || ({fast}))"):
        o = ctx.tmp("o")
        with w.block(f"for (int64_t {o} = 0; {o} < {outer}; {o}++)"):
            row(_FlatRow(ctx, o, inner, len(views)))
    with w.block("else"):
        o = ctx.tmp("o")
        w(f"int64_t {o} = 0;")
        with ctx.nd_loop(views[0], nk) as idx:
            bases = [" + ".join(f"{i} * {v}.strides[{k}]" for k, i in enumerate(idx)) or "0"
                     for v in views]
            row(_StridedRow(ctx, o, views, bases, nk, nr))
            w(f"{o}++;")
