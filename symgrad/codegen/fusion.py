"""Elementwise fusion: chains and trees of elementwise nodes become one loop nest.

A node whose result feeds exactly one elementwise consumer of the same rank
(and is not itself an output) is absorbed into that consumer's group; the
group's root is emitted as one loop that evaluates every member per element.
Broadcasting happens per element through stride-0 axes, so any mix of
shapes works; the shapes are still checked node by node, so a mismatch names
the node the user wrote. When every operand is contiguous with the result's
shape (or has one element), a flat loop that the C compiler vectorises runs
instead of the strided nest.
"""

from ..graph import Constant
from .kernel import CTYPE


class Groups:
    def __init__(self):
        self.absorbed = set()   # ids of nodes evaluated inside another node's loop
        self.roots = {}         # id(root) -> member nodes in topological order


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
    return groups


def emit(ctx, root, groups):
    members = groups.roots[id(root)]
    inside = {id(n.outputs[0]) for n in members}
    leaves = []
    for n in members:
        for v in n.inputs:
            if id(v) not in inside and all(v is not l for l in leaves):
                leaves.append(v)
    out = root.outputs[0]
    nd = out.ndim
    w = ctx.w
    shapes = _emit_shapes(ctx, members, inside)
    name = ctx.alloc(root, out, [f"{shapes[id(out)]}[{k}]" for k in range(nd)])
    literal = {id(v): ctx.literal(v.data, v.dtype) for v in leaves
               if isinstance(v, Constant) and v.ndim == 0}
    loaded = [v for v in leaves if id(v) not in literal]
    n = ctx.tmp("n")
    w(f"int64_t {n} = sg_size(&{name}, {nd});")
    bad = ctx.tmp("bad")
    w(f"int {bad} = 0; (void){bad};")
    flat_ok = " && ".join(
        f"(sg_size(&{ctx.arr(v)}, {v.ndim}) == 1 || ({v.ndim} == {nd} && "
        f"sg_is_contiguous(&{ctx.arr(v)}, {nd}) && "
        f"!memcmp({ctx.arr(v)}.shape, {name}.shape, {nd} * sizeof(int64_t))))"
        for v in loaded) or "1"
    with w.block(f"if ({flat_ok})"):
        with w.block(f"for (int64_t i = 0; i < {n}; i++)"):
            values = dict(literal)
            for v in loaded:
                idx = f"(sg_size(&{ctx.arr(v)}, {v.ndim}) == 1 ? 0 : i)"
                values[id(v)] = f"{ctx.ptr(v)}[{idx}]"
            _emit_body(ctx, members, values, f"{ctx.ptr(out)}[i]", bad)
    with w.block("else"):
        strides = {}
        for v in loaded:
            st = ctx.tmp("bst")
            strides[id(v)] = st
            w(f"int64_t {st}[{max(nd, 1)}];")
            w(f"sg_broadcast_strides({st}, &{ctx.arr(v)}, {v.ndim}, {name}.shape, {nd});")
        with ctx.nd_loop(name, nd) as idx:
            values = dict(literal)
            for v in loaded:
                values[id(v)] = f"{ctx.ptr(v)}[{ctx.offset(v, idx, strides[id(v)])}]"
            _emit_body(ctx, members, values, f"{ctx.ptr(out)}[{ctx.offset(out, idx)}]", bad)
    with w.block(f"if ({bad})"):
        ctx.fail(root, "value", "integers to negative integer powers are not allowed")


def _emit_shapes(ctx, members, inside):
    """Runtime shapes of every member, each broadcast checked on its own (errors name it)."""
    w = ctx.w
    shapes = {}
    for node in members:
        o = node.outputs[0]
        s = ctx.tmp("s")
        shapes[id(o)] = s
        w(f"int64_t {s}[{max(o.ndim, 1)}];")
        w(f"for (int k = 0; k < {o.ndim}; k++) {s}[k] = 1;")
        for v in node.inputs:
            src = shapes[id(v)] if id(v) in inside else f"{ctx.arr(v)}.shape"
            with w.block(f"if (sg_broadcast_into({s}, {o.ndim}, {src}, {v.ndim}) >= 0)"):
                args = ", ".join(f"sg_shape_str(sbuf{j}, sizeof sbuf{j}, "
                                 f"{shapes[id(u)] if id(u) in inside else ctx.arr(u) + '.shape'}, "
                                 f"{u.ndim})" for j, u in enumerate(node.inputs))
                w(" ".join(f"char sbuf{j}[96];" for j in range(len(node.inputs))))
                ctx.fail(node, "shape", "shapes " + " and ".join(["%s"] * len(node.inputs)) +
                         " cannot be broadcast together", args)
    return shapes


def _emit_body(ctx, members, values, store, bad):
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
    w(f"{store} = {local[id(members[-1].outputs[0])]};")
