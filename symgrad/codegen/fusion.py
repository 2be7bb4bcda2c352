"""Elementwise fusion: chains and trees of elementwise nodes become one loop nest.

A node whose result feeds exactly one elementwise consumer of the same rank
(and is not itself an output) is absorbed into that consumer's group; the
group's root is emitted as one loop that evaluates every member per element.
Broadcasting happens per element through stride-0 axes, so any mix of
shapes works; the shapes are still checked node by node, so a mismatch names
the node the user wrote.

The loop (helpers in ``include/sg_loops.h``): operands of one element known
at build time are read once before it; the rest are read through broadcast
strides after merging the axes over which all of them step uniformly (so
same-shape contiguous operands make one flat axis). Elements go in blocks,
shared among the runtime's threads above a size threshold (the block loop is
a function of a block range, run through ``ws->parallel_for``); each block
walks rows of the innermost axis, with a unit-stride variant the compiler
vectorises (``omp simd``; the result is fresh memory, so ``restrict``
holds) and a strided one.
"""

import numpy as np

from ..graph import Constant
from .kernel import CTYPE


class Groups:
    def __init__(self):
        self.absorbed = set()   # ids of nodes evaluated inside another node's loop
        self.roots = {}         # id(root) -> member nodes in topological order
        self.uses = {}          # id(var) -> how many times nodes (and outputs, twice) read it


def is_elementwise(node):
    return getattr(node.op, "c_scalar", None) is not None and len(node.outputs) == 1


def plan(nodes, outputs):
    uses = {}
    for node in nodes:
        for v in node.inputs:
            uses[id(v)] = uses.get(id(v), 0) + 1
    for v in outputs:
        uses[id(v)] = uses.get(id(v), 0) + 2
    groups = Groups()
    groups.uses = uses
    owner_group = {}
    for node in reversed(nodes):
        if not is_elementwise(node):
            continue
        root = owner_group.get(id(node), node)
        members = groups.roots.setdefault(id(root), [])
        members.append(node)
        for v in node.inputs:
            p = v.owner
            if (p is not None and is_elementwise(p) and uses.get(id(v)) == 1
                    and p.outputs[0].ndim == node.outputs[0].ndim and id(p) not in owner_group):
                owner_group[id(p)] = root
                groups.absorbed.add(id(p))
    order = {id(n): i for i, n in enumerate(nodes)}
    for members in groups.roots.values():
        members.sort(key=lambda n: order[id(n)])
    # A float sum, mean or sum_to becomes an accumulating loop; an elementwise
    # group that only it reads is computed inside that loop, never stored.
    for node in nodes:
        if not is_accumulation(node):
            continue
        x = node.inputs[0]
        members = [node]
        if (x.owner is not None and is_elementwise(x.owner) and id(x.owner) in groups.roots
                and uses.get(id(x)) == 1):
            members = groups.roots.pop(id(x.owner)) + members
            groups.absorbed.add(id(x.owner))
        # Alone, the op's own lowering runs the same loop as a call into sg_ops.h
        # (sg_accumulate), compiled once per kernel instead of once per node.
        if len(members) > 1:
            groups.roots[id(node)] = members
    return groups


def is_accumulation(node):
    """A float sum, mean or sum_to whose result has its input's dtype."""
    from ..ops import shape_ops
    from ..ops.reduce import Mean, Sum

    x, out = node.inputs[0], node.outputs[0]
    return (type(node.op) in (Sum, Mean, shape_ops.SumTo) and len(node.outputs) == 1
            and x.dtype in ("float32", "float64") and out.dtype == x.dtype)


def emit(ctx, root, groups):
    members = groups.roots[id(root)]
    if is_accumulation(root):
        _emit_accumulation(ctx, root, members)
        return
    inside = {id(n.outputs[0]) for n in members}
    leaves = _leaves(members, inside)
    out = root.outputs[0]
    nd = out.ndim
    shapes = _emit_shapes(ctx, members, inside)
    donor = _donor(ctx, members, leaves, out, groups)
    if donor is None:
        name = ctx.alloc(root, out, [f"{shapes[id(out)]}[{k}]" for k in range(nd)])
    else:
        name = _alloc_in_place(ctx, root, out, shapes[id(out)], donor)
    _emit_loop(ctx, root, members, leaves, name, donor is not None)


def _emit_loop(ctx, root, members, leaves, name, in_place):
    """The group's loop into the result descriptor ``name`` (its shape and data set)."""
    literals = {id(v): ctx.literal(v.data, v.dtype) for v in leaves
                if isinstance(v, Constant) and v.ndim == 0}
    # One element, known when the graph is built: read once, before the loop.
    hoisted = [v for v in leaves if id(v) not in literals and all(d == 1 for d in v.shape)]
    loaded = [v for v in leaves if id(v) not in literals and all(v is not h for h in hoisted)]
    _emit_group(ctx, root, members, root.outputs[0], name, loaded, hoisted, literals, in_place)


# An update written over its shared variable (codegen/kernel.py, updates in
# place) emits its group in three parts: the shapes with the checks, then
# (once its memory is chosen) the loop.

def group_leaves(groups, root):
    """The values ``root``'s group reads from outside it."""
    members = groups.roots[id(root)]
    return _leaves(members, {id(n.outputs[0]) for n in members})


def can_raise(groups, root):
    """Whether the group's loop can fail after writing (integer powers check exponents)."""
    return any(getattr(n.op, "scalar", None) == "pow" and n.outputs[0].dtype.startswith("int")
               for n in groups.roots[id(root)])


def emit_group_shapes(ctx, groups, root):
    """Check the group's broadcasts; returns the C array holding the result's shape."""
    members = groups.roots[id(root)]
    shapes = _emit_shapes(ctx, members, {id(n.outputs[0]) for n in members})
    return shapes[id(root.outputs[0])]


def emit_group_loop(ctx, groups, root, name):
    """The group's loop into ``name``, which may be the memory of one of its operands
    (element i of every operand is read before element i of the result is written)."""
    members = groups.roots[id(root)]
    _emit_loop(ctx, root, members, group_leaves(groups, root), name, True)


def _donor(ctx, members, leaves, out, groups):
    """An intermediate this group may overwrite with its result, or None.

    In place is safe for a workspace buffer (not an input, shared value,
    constant, output or view) of the result's dtype and rank that nothing
    but this group reads: each element's operands are all loaded before its
    result is stored, so element i is read before it is overwritten, and no
    other element reads it. Whether it also has the result's shape and is
    contiguous is checked at run time (a broadcast operand is not a donor).
    """
    if id(out) in ctx.out_ids:
        return None
    workspace = {id(v) for v, kind in ctx.allocated if kind == "workspace"}
    for v in leaves:
        if v.dtype != out.dtype or v.ndim != out.ndim or id(v) not in workspace:
            continue
        inner_uses = sum(1 for n in members for u in n.inputs if u is v)
        if groups.uses.get(id(v), 0) == inner_uses:
            return v
    return None


def _alloc_in_place(ctx, root, out, shape, donor):
    """``out`` in ``donor``'s memory when the shapes match at run time, else a new buffer."""
    from ..ops.calls_c import where

    w, nd = ctx.w, out.ndim
    name = ctx.declare(out)
    if nd:
        w(" ".join(f"{name}.shape[{k}] = {shape}[{k}];" for k in range(nd)))
    d = ctx.arr(donor)
    with w.block(f"if (sg_is_contiguous(&{d}, {nd}) && "
                 f"!memcmp({d}.shape, {name}.shape, {nd} * sizeof(int64_t)))"):
        w(f"{name}.data = {d}.data; sg_contiguous(&{name}, {nd}); /* in place of its operand */")
    w(f"else if (sg_alloc(err, {where(root)}, ws, &{name}, {nd}, "
      f"{np.dtype(out.dtype).itemsize}, NULL)) goto fail;")
    ctx.allocated.append((out, "workspace"))
    return name


def _emit_group(ctx, root, members, out, name, loaded, hoisted, literals, in_place=False):
    """The group's loop (see sg_loops.h) as a function of a block range, and its call.

    The function takes a struct holding everything the loop reads; sg_main
    fills it (collapsed shape, broadcast strides, data pointers, hoisted
    scalars) and either runs every block itself or, for large results, hands
    the blocks to the runtime's thread pool (``ws->parallel_for``).
    """
    w, f = ctx.w, ctx.functions
    nd, m = out.ndim, len(loaded)
    g = ctx.tmp("grp")
    f(f"struct {g} {{")
    f(f"    {CTYPE[out.dtype]} *o;")
    for p, v in enumerate(loaded):
        f(f"    const {CTYPE[v.dtype]} *a{p};")
    for k, v in enumerate(hoisted):
        f(f"    {CTYPE[v.dtype]} h{k};")
    f(f"    int64_t n, inner, sh[SG_MAXDIM], st[{max(m, 1)}][SG_MAXDIM];")
    f("    int cnd, unit, bad;")
    f("};")
    f("")
    # the block loop, written into the function by the same emitters as sg_main's code
    ctx.w = f
    try:
        f(f"static void {g}_run(void *arg, int64_t b0, int64_t b1)")
        with f.block(""):
            f(f"struct {g} *g = (struct {g} *)arg;")
            bad = ctx.tmp("bad")
            f(f"int {bad} = 0;")
            values = dict(literals)
            for k, v in enumerate(hoisted):
                f(f"const {CTYPE[v.dtype]} h{k} = g->h{k};")
                values[id(v)] = f"h{k}"
            body_start = len(f.lines)
            blk = ctx.tmp("blk")
            with f.block(f"for (int64_t {blk} = b0; {blk} < b1; {blk}++)"):
                e, end = ctx.tmp("e"), ctx.tmp("end")
                f(f"int64_t {e} = {blk} * SG_BLOCK, {end} = g->n - {e} < SG_BLOCK ? g->n : "
                  f"{e} + SG_BLOCK;")
                with f.block(f"while ({e} < {end})"):
                    row, j0, cnt, off = ctx.tmp("row"), ctx.tmp("j"), ctx.tmp("cnt"), ctx.tmp("off")
                    f(f"int64_t {row} = {e} / g->inner, {j0} = {e} - {row} * g->inner;")
                    f(f"int64_t {cnt} = g->inner - {j0} < {end} - {e} ? g->inner - {j0} : "
                      f"{end} - {e};")
                    f(f"int64_t {off}[{max(m, 1)}];")
                    f(f"sg_row_offsets({row}, g->cnd, g->sh, {m}, g->st, {off});")
                    o = ctx.tmp("o")
                    # restrict when the result is fresh memory; in place, each element
                    # is still read before it is written, which omp simd allows
                    f(f"{CTYPE[out.dtype]} *{'' if in_place else 'restrict '}{o} = g->o + {e};")
                    ptrs = []
                    for p, v in enumerate(loaded):
                        a = ctx.tmp("a")
                        f(f"const {CTYPE[v.dtype]} *{a} = g->a{p} + {off}[{p}] + "
                          f"{j0} * g->st[{p}][g->cnd - 1];")
                        ptrs.append(a)
                    with f.block("if (g->unit)"):
                        f(f"#pragma omp simd reduction(|:{bad})")
                        with f.block(f"for (int64_t j = 0; j < {cnt}; j++)"):
                            vals = dict(values)
                            vals.update({id(v): f"{a}[j]" for v, a in zip(loaded, ptrs)})
                            _emit_body(ctx, members, vals, f"{o}[j]", bad)
                    with f.block("else"):
                        steps = [ctx.tmp("s") for _ in loaded]
                        for p, st in enumerate(steps):
                            f(f"const int64_t {st} = g->st[{p}][g->cnd - 1];")
                        with f.block(f"for (int64_t j = 0; j < {cnt}; j++)"):
                            vals = dict(values)
                            vals.update({id(v): f"{a}[j * {st}]"
                                         for v, a, st in zip(loaded, ptrs, steps)})
                            _emit_body(ctx, members, vals, f"{o}[j]", bad)
                    f(f"{e} += {cnt};")
            # Only integer powers raise the flag.
            raises = any(f"&{bad}" in line for line in f.lines[body_start:])
            if raises:
                f(f"if ({bad}) __atomic_store_n(&g->bad, 1, __ATOMIC_RELAXED);")
            else:
                f(f"(void){bad};")
        f("")
    finally:
        ctx.w = w
    v_g = ctx.tmp("g")
    w(f"struct {g} {v_g};")
    w(f"{v_g}.o = {ctx.ptr(out)}; {v_g}.n = sg_size(&{name}, {nd}); {v_g}.bad = 0;")
    for p, v in enumerate(loaded):
        w(f"{v_g}.a{p} = {ctx.ptr(v)};")
    for k, v in enumerate(hoisted):
        w(f"{v_g}.h{k} = {ctx.ptr(v)}[0];")
    with w.block(f"if ({v_g}.n > 0)"):
        w(f"for (int k = 0; k < {nd}; k++) {v_g}.sh[k] = {name}.shape[k];")
        for p, v in enumerate(loaded):
            w(f"sg_broadcast_strides({v_g}.st[{p}], &{ctx.arr(v)}, {v.ndim}, {name}.shape, {nd});")
        w(f"{v_g}.cnd = sg_collapse({nd}, {v_g}.sh, {m}, {v_g}.st);")
        w(f"{v_g}.inner = {v_g}.sh[{v_g}.cnd - 1];")
        w(f"{v_g}.unit = " + (" && ".join(f"{v_g}.st[{p}][{v_g}.cnd - 1] == 1"
                                        for p in range(m)) or "1") + ";")
        nb = ctx.tmp("nblk")
        w(f"int64_t {nb} = ({v_g}.n + SG_BLOCK - 1) / SG_BLOCK;")
        w(f"if ({v_g}.n >= SG_PAR_WORK / {_work_per_element(members, m)} && sg_nthreads > 1) "
          f"ws->parallel_for({nb}, sg_nthreads, {g}_run, &{v_g});")
        w(f"else {g}_run(&{v_g}, 0, {nb});")
    if raises:
        with w.block(f"if ({v_g}.bad)"):
            ctx.fail(root, "value", "integers to negative integer powers are not allowed")


# Relative cost of one element of an op in a fused loop (a load, a store or a
# cheap arithmetic op counts 1), for the decision to hand a loop to threads.
_COSTLY = {"cos": 8, "exp": 8, "expm1": 8, "log": 8, "log1p": 8, "pow": 8, "sigmoid": 8,
           "sin": 8, "softplus": 8, "tanh": 8, "truediv": 3, "floordiv": 3, "mod": 3, "sqrt": 3}


def _work_per_element(members, n_loaded):
    """Work units per element of a fused loop: its loads, its store and its ops.

    A loop goes to the thread pool when elements x units reach SG_PAR_WORK
    (sg_loops.h): waking a worker costs microseconds, and right after a BLAS
    call BLAS's own threads may hold the other cores, so only loops long
    enough to repay that are split.
    """
    ops = sum(_COSTLY.get(getattr(n.op, "scalar", None), 1) for n in members)
    return n_loaded + 1 + ops


def _emit_shapes(ctx, members, inside):
    """Runtime shapes of every member, each broadcast checked on its own (errors name it)."""
    from ..ops.calls_c import where

    w = ctx.w
    shapes = {}
    for node in members:
        o = node.outputs[0]
        s = ctx.tmp("s")
        shapes[id(o)] = s
        srcs = ", ".join(shapes[id(v)] if id(v) in inside else f"{ctx.arr(v)}.shape"
                         for v in node.inputs)
        nds = ", ".join(str(v.ndim) for v in node.inputs)
        w(f"int64_t {s}[{max(o.ndim, 1)}];")
        w(f"if (sg_broadcast_shapes(err, {where(node)}, {s}, {o.ndim}, {len(node.inputs)}, "
          f"(const int64_t *const[]){{{srcs}}}, (const int[]){{{nds}}})) goto fail;")
    return shapes


def _leaves(members, inside):
    leaves = []
    for n in members:
        for v in n.inputs:
            if id(v) not in inside and all(v is not l for l in leaves):
                leaves.append(v)
    return leaves


def _emit_accumulation(ctx, root, members):
    """``root`` (sum, mean or sum_to) of the elementwise ``members`` before it, in one pass.

    The result starts at zero and every input element is added into the
    result element it reduces to: in input coordinates the result has
    stride 0 along the reduced axes, and joins the operands of the collapsed
    loop (sg_loops.h). Rows then run either along a reduced axis (a
    vectorised horizontal sum into one result element) or along a kept one
    (a vectorised add of one row into a row of the result: sums over the
    leading axis, such as a bias gradient, read memory in order).

    Accuracy (issue #11): every sum runs in double. A float32 result gets
    double accumulators in the workspace, rounded once at the end; a
    horizontal sum adds blocks of SG_SUM_BLOCK elements apart, so a double
    sum's error grows with the block rather than the row; a row whose
    operands all have stride 0 adds one value times its length.
    """
    from ..ops import shape_ops
    from ..ops.reduce import Mean

    w = ctx.w
    ew = members[:-1]
    x, out = root.inputs[0], root.outputs[0]
    nd, ct = x.ndim, CTYPE[out.dtype]
    inside = {id(n.outputs[0]) for n in ew}
    shapes = _emit_shapes(ctx, ew, inside)
    xs = shapes[id(x)] if ew else f"{ctx.arr(x)}.shape"
    ost = ctx.tmp("ost")  # the result's strides in input coordinates
    if isinstance(root.op, shape_ops.SumTo):
        shp = root.inputs[1]
        lead, n_t = nd - out.ndim, out.ndim
        tgt = ctx.tmp("tgt")
        w(f"const int64_t *{tgt} = (const int64_t *){ctx.arr(shp)}.data;")
        with w.block(f"for (int k = 0; k < {n_t}; k++)"):
            with w.block(f"if ({tgt}[k] != {xs}[{lead} + k] && {tgt}[k] != 1)"):
                w("char sbuf0[96], sbuf1[96];")
                ctx.fail(root, "shape", "shape %s is not a broadcast of %s",
                         f"sg_shape_str(sbuf0, sizeof sbuf0, &{xs}[{lead}], {n_t})",
                         f"sg_shape_str(sbuf1, sizeof sbuf1, {tgt}, {n_t})")
        name = ctx.alloc(root, out, [f"{tgt}[{k}]" for k in range(n_t)])
        w(f"int64_t {ost}[SG_MAXDIM];")
        w(f"for (int k = 0; k < {lead}; k++) {ost}[k] = 0;")
        w(f"for (int k = 0; k < {n_t}; k++) {ost}[{lead} + k] = "
          f"({tgt}[k] == 1 && {xs}[{lead} + k] != 1) ? 0 : {name}.strides[k];")
        axes = None
    else:
        axes, keep = root.op.axis, root.op.keepdims
        dims, pos = [], {}
        for a in range(nd):
            if a not in axes:
                pos[a] = len(dims)
                dims.append(f"{xs}[{a}]")
            elif keep:
                pos[a] = None
                dims.append("1")
        name = ctx.alloc(root, out, dims)
        w(f"int64_t {ost}[SG_MAXDIM];")
        for a in range(nd):
            w(f"{ost}[{a}] = " + ("0;" if a in axes else f"{name}.strides[{pos[a]}];"))
    n_out = ctx.tmp("nout")
    w(f"int64_t {n_out} = sg_size(&{name}, {out.ndim});")
    accs = _accumulators(ctx, root, name, n_out, ct)
    leaves = _leaves(ew, inside) if ew else [x]
    values = {id(v): ctx.literal(v.data, v.dtype) for v in leaves
              if isinstance(v, Constant) and v.ndim == 0}
    for v in leaves:
        if id(v) not in values and all(d == 1 for d in v.shape):
            t = ctx.tmp("c")
            w(f"const {CTYPE[v.dtype]} {t} = {ctx.ptr(v)}[0];")
            values[id(v)] = t
    loaded = [v for v in leaves if id(v) not in values]
    m = len(loaded)
    n = ctx.tmp("n")
    # The input may be a broadcast view of more elements than int64 counts:
    # refuse it rather than let the count wrap.
    w(f"int64_t {n} = 1;")
    with w.block(f"for (int k = 0; k < {nd} && {n} != 0; k++)"):
        w(f"if ({xs}[k] == 0) {n} = 0; else if ({n} < 0 || {n} > INT64_MAX / {xs}[k]) {n} = -1; "
          f"else {n} *= {xs}[k];")
    with w.block(f"if ({n} == -1)"):
        ctx.fail(root, "shape", f"a loop over the {nd}-d shape %s is too large",
                 f"sg_shape_str(sbuf, sizeof sbuf, {xs}, {nd})")
    bad = ctx.tmp("bad")
    w(f"int {bad} = 0; (void){bad};")
    mark = len(w.lines)
    with w.block(f"if ({n} > 0)"):
        sh, st, cnd = ctx.tmp("sh"), ctx.tmp("st"), ctx.tmp("cnd")
        w(f"int64_t {sh}[SG_MAXDIM], {st}[{m + 1}][SG_MAXDIM];")
        w(f"for (int k = 0; k < {nd}; k++) {{ {sh}[k] = {xs}[k]; {st}[{m}][k] = {ost}[k]; }}")
        for p, v in enumerate(loaded):
            w(f"sg_broadcast_strides({st}[{p}], &{ctx.arr(v)}, {v.ndim}, {xs}, {nd});")
        w(f"int {cnd} = sg_collapse({nd}, {sh}, {m + 1}, {st});")
        inner = ctx.tmp("inner")
        w(f"int64_t {inner} = {sh}[{cnd} - 1];")
        unit, flat = ctx.tmp("unit"), ctx.tmp("flat")
        w(f"int {unit} = " + (" && ".join(f"{st}[{p}][{cnd} - 1] == 1" for p in range(m)) or "1")
          + ";")
        w(f"int {flat} = " + (" && ".join(f"{st}[{p}][{cnd} - 1] == 0" for p in range(m)) or "1")
          + ";")
        e = ctx.tmp("e")
        with w.block(f"for (int64_t {e} = 0; {e} < {n};)"):
            row, j0, cnt, off = ctx.tmp("row"), ctx.tmp("j"), ctx.tmp("cnt"), ctx.tmp("off")
            w(f"int64_t {row} = {e} / {inner}, {j0} = {e} - {row} * {inner};")
            w(f"int64_t {cnt} = {inner} - {j0};")
            w(f"int64_t {off}[{m + 1}];")
            w(f"sg_row_offsets({row}, {cnd}, {sh}, {m + 1}, {st}, {off});")
            ptrs = []
            for p, v in enumerate(loaded):
                a = ctx.tmp("a")
                w(f"const {CTYPE[v.dtype]} *{a} = {ctx.ptr(v)} + {off}[{p}] + "
                  f"{j0} * {st}[{p}][{cnd} - 1];")
                ptrs.append(a)
            o, so = ctx.tmp("o"), ctx.tmp("so")
            w(f"double *{o} = {accs} + {off}[{m}] + {j0} * {st}[{m}][{cnd} - 1];")
            w(f"const int64_t {so} = {st}[{m}][{cnd} - 1];")
            unit_vals = dict(values)
            unit_vals.update({id(v): f"{a}[j]" for v, a in zip(loaded, ptrs)})
            steps = [ctx.tmp("s") for _ in loaded]
            strided_vals = dict(values)
            strided_vals.update({id(v): f"{a}[j * {s}]" for v, a, s in zip(loaded, ptrs, steps)})

            def strided(store):
                for p, s_ in enumerate(steps):
                    w(f"const int64_t {s_} = {st}[{p}][{cnd} - 1];")
                with w.block(f"for (int64_t j = 0; j < {cnt}; j++)"):
                    _emit_term(ctx, ew, x, strided_vals, store, bad)

            with w.block(f"if ({so} == 0)"):
                acc, part, jb, je = ctx.tmp("acc"), ctx.tmp("part"), ctx.tmp("jb"), ctx.tmp("je")
                w(f"double {acc} = 0;")
                with w.block(f"if ({unit})"):
                    with w.block(f"for (int64_t {jb} = 0; {jb} < {cnt}; {jb} += SG_SUM_BLOCK)"):
                        w(f"int64_t {je} = {cnt} - {jb} < SG_SUM_BLOCK ? {cnt} : "
                          f"{jb} + SG_SUM_BLOCK;")
                        w(f"double {part} = 0;")
                        # 16 lanes: four vectors of doubles, four chains of adds
                        w(f"#pragma omp simd simdlen(16) reduction(+:{part}) "
                          f"reduction(|:{bad})")
                        with w.block(f"for (int64_t j = {jb}; j < {je}; j++)"):
                            _emit_term(ctx, ew, x, unit_vals, f"{part} +=", bad)
                        w(f"{acc} += {part};")
                with w.block(f"else if ({flat})"):
                    # every operand repeats one value along the row (a broadcast)
                    w(f"const int64_t j = 0; double {part} = 0;")
                    _emit_term(ctx, ew, x, unit_vals, f"{part} +=", bad)
                    w(f"{acc} = {part} * (double){cnt};")
                with w.block("else"):
                    strided(f"{acc} +=")
                w(f"{o}[0] += {acc};")
            with w.block(f"else if ({unit} && {so} == 1)"):
                w(f"#pragma omp simd reduction(|:{bad})")
                with w.block(f"for (int64_t j = 0; j < {cnt}; j++)"):
                    _emit_term(ctx, ew, x, unit_vals, f"{o}[j] +=", bad)
            with w.block("else"):
                strided(f"{o}[j * {so}] +=")
            w(f"{e} += {cnt};")
    if any(f"&{bad}" in line for line in w.lines[mark:]):
        with w.block(f"if ({bad})"):
            ctx.fail(root, "value", "integers to negative integer powers are not allowed")
    # NumPy's recipe for a mean: the sum divided by the count (0/0 is NaN),
    # here in double, then rounded to the result's dtype
    mean, cnt = isinstance(root.op, Mean), ctx.tmp("count")
    if mean or accs != ctx.ptr(out):
        w(f"int64_t {cnt} = 1;")
    for a in axes if mean else ():
        w(f"{cnt} *= {xs}[{a}];")
    if accs != ctx.ptr(out):
        w(f"for (int64_t i = 0; i < {n_out}; i++) {ctx.ptr(out)}[i] = ({ct})({cnt} == 1 ? "
          f"{accs}[i] : {accs}[i] / (double){cnt});")
    elif mean:
        w(f"for (int64_t i = 0; i < {n_out}; i++) {ctx.ptr(out)}[i] /= (double){cnt};")


def _accumulators(ctx, root, name, n_out, ct):
    """The C pointer to the ``n_out`` zeroed double accumulators of the result ``name``: the
    result itself when it is double, else a block of the workspace."""
    w = ctx.w
    if ct == "double":
        w(f"memset({name}.data, 0, (size_t){n_out} * sizeof(double));")
        return ctx.ptr(root.outputs[0])
    accs = ctx.tmp("accs")
    w(f"double *{accs} = (double *)sg_ws_alloc(ws, (size_t){n_out} * sizeof(double));")
    with w.block(f"if (!{accs})"):
        ctx.fail(root, "nomem", "out of memory")
    w(f"memset({accs}, 0, (size_t){n_out} * sizeof(double));")
    return accs


def _emit_term(ctx, ew, x, values, store, bad):
    """``store <value of x>;`` for one element, x computed by the members ``ew``."""
    if ew:
        _emit_body(ctx, ew, values, store, bad, assign="")
    else:
        ctx.w(f"{store} {values[id(x)]};")


def _emit_body(ctx, members, values, store, bad, assign="="):
    """One element: load each operand once, evaluate the members in order, store."""
    w = ctx.w
    inside = {id(n.outputs[0]) for n in members}
    local = {}
    for node in members:
        for v in node.inputs:
            if id(v) not in inside and id(v) not in local:
                t = ctx.tmp("x")
                w(f"{CTYPE[v.dtype]} {t} = {values[id(v)]};")
                local[id(v)] = t
    for node in members:
        o = node.outputs[0]
        t = ctx.tmp("e")
        expr = node.op.c_scalar(node, [local[id(v)] for v in node.inputs], bad)
        w(f"{CTYPE[o.dtype]} {t} = {expr};")
        local[id(o)] = t
    result = local[id(members[-1].outputs[0])]
    w(f"{store} {assign} {result};" if assign else f"{store} {result};")
