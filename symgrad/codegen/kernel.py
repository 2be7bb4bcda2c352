"""Lower a whole graph to one C translation unit exporting ``sg_main``.

The pipeline, in order:

1. ``plan_leaves``   the kernel's inputs: function inputs, shared variables, constants;
2. ``plan_fusion``   group elementwise nodes into fused loop nests;
3. ``emit``          walk the nodes in topological order; a fused group becomes one
                     loop (``codegen.fusion``), any other node calls its op's
                     ``c_code(ctx, node)``;
4. ``emit_outputs``  hand every output to the caller in memory it owns.

Every shape is computed at run time, so one compiled kernel serves any sizes
with the same dtypes and ranks.
"""

import contextlib
import threading

import numpy as np

from ..graph import Constant, SharedVariable, toposort, unsettled_lengths
from .cstr import c_comment, c_format, c_string
from .writer import CWriter

__all__ = ["KernelContext", "lower", "CTYPE", "NoLowering", "location", "locate", "c_string"]

CTYPE = {"float64": "double", "float32": "float", "int64": "int64_t", "int32": "int32_t",
         "bool": "uint8_t"}
MAXDIM = 16  # SG_MAXDIM of sg_abi.h (tests check that they agree)
ERR = {"shape": "SG_ESHAPE", "index": "SG_EINDEX", "value": "SG_EVALUE", "nomem": "SG_ENOMEM"}


class NoLowering(NotImplementedError):
    """An op has no C lowering."""


# A failure site's message starts with LOC_MARK + its number + LOC_MARK; the
# runtime puts the site's text ("<op> at <file>:<line>: ", kept in
# CKernel.locations) in its place. The C source names no file or line, so an
# edit that only moves the model's code within its file is a cache hit.
LOC_MARK = "\x1f"
_lowering = threading.local()  # .ctx: the KernelContext of the lower() running on this thread


def location(node, trace=None):
    """The C string literal that starts the messages of ``node``'s failure sites.

    ``trace`` (default ``node.trace``) is the user line to name. Each
    (node, trace) gets a number in the kernel being lowered, in the order
    the sites are written, hence the same in any process for the same graph.
    """
    ctx = getattr(_lowering, "ctx", None)
    if ctx is None:  # an op lowered outside lower() (a test of one op): the text itself
        return c_format(f"{node.op} at {node.trace if trace is None else trace}: ")
    return ctx.location(node, trace)


def locate(msg, locations):
    """``msg`` from a kernel, its leading failure-site mark replaced by the site's text."""
    if not msg.startswith(LOC_MARK):
        return msg
    end = msg.find(LOC_MARK, 1)
    num = msg[1:end] if end > 1 else ""
    if not num.isdigit() or int(num) >= len(locations or ()):
        return msg
    return locations[int(num)] + msg[end + 1:]


def c_literal(value, dtype):
    """An exact C literal for a scalar of ``dtype``."""
    if dtype in ("float64", "float32"):
        v = float(value)
        if v != v:
            return "NAN"
        if v in (float("inf"), float("-inf")):
            return "INFINITY" if v > 0 else "(-INFINITY)"
        text = float.hex(v)
        return f"(float){text}" if dtype == "float32" else text
    if dtype == "bool":
        return "1" if value else "0"
    v = int(value)
    if dtype == "int64":
        return "INT64_MIN" if v == -2 ** 63 else f"INT64_C({v})"
    return "INT32_MIN" if v == -2 ** 31 else f"{v}"


class KernelContext:
    """What an op's ``c_code(ctx, node)`` writes into.

    Attributes
    ----------
    w : CWriter
        ``ctx.w("stmt;")`` writes a line, ``with ctx.w.block("for (...)"):`` a block.
    """

    def __init__(self, outputs):
        self.w = CWriter()
        self.names = {}          # id(var) -> C name of its sg_arr
        self.owned = {}          # id(var) -> C name of the owning pointer (malloc'ed output)
        self.out_ids = {id(v) for v in outputs}
        self.functions = CWriter()  # file-scope helpers (a fused loop's block function)
        self.allocated = []      # (var, "output" or "workspace"), in order (for sg.explain)
        self.locations = []      # failure site number -> "<op> at <file>:<line>: "
        self._sites = {}
        self._n = 0

    # ------------------------------------------------------------------ names and types

    def tmp(self, prefix="t"):
        """A fresh C identifier."""
        self._n += 1
        return f"{prefix}{self._n}"

    def arr(self, v):
        """The C name of ``v``'s ``sg_arr`` descriptor."""
        return self.names[id(v)]

    @staticmethod
    def ct(v):
        """The C element type of ``v``."""
        return CTYPE[v.dtype]

    def ptr(self, v):
        """``v``'s data as a typed C pointer expression."""
        return f"(({self.ct(v)} *){self.arr(v)}.data)"

    def declare(self, v):
        name = self.tmp("v")
        self.names[id(v)] = name
        self.w(f"sg_arr {name};")
        return name

    def location(self, node, trace=None):
        """The C literal of ``node``'s failure site (see the module function ``location``)."""
        trace = node.trace if trace is None else trace
        key = (id(node), str(trace))
        if key not in self._sites:
            self._sites[key] = len(self.locations)
            self.locations.append(f"{node.op} at {trace}: ")
        return c_string(f"{LOC_MARK}{self._sites[key]}{LOC_MARK}")

    # ------------------------------------------------------------------ making results

    def alloc(self, node, v, shape_exprs):
        """Give ``v`` a fresh C-contiguous buffer of the given runtime shape.

        A function output gets its own block (``ws->out_alloc``) that the
        caller will own; anything else comes from the workspace arena.
        """
        from ..ops.calls_c import where

        name = self.declare(v)
        if shape_exprs:
            self.w(" ".join(f"{name}.shape[{k}] = {e};" for k, e in enumerate(shape_exprs)))
        own = "NULL"
        if id(v) in self.out_ids and id(v) not in self.owned:
            own = self.tmp("own")
            self.owned[id(v)] = own
            self.prologue_owned.append(own)
            own = "&" + own
        self.allocated.append((v, "workspace" if own == "NULL" else "output"))
        self.w(f"if (sg_alloc(err, {where(node)}, ws, &{name}, {v.ndim}, "
               f"{np.dtype(v.dtype).itemsize}, {own})) goto fail;")
        return name

    def view(self, v, src, offset="0", shape_exprs=(), stride_exprs=()):
        """Make ``v`` a view of ``src``: same memory, given offset (elements), shape and strides."""
        name = self.declare(v)
        self.w(f"{name}.data = (void *)({self.ptr(src)} + ({offset}));")
        for k, (s, st) in enumerate(zip(shape_exprs, stride_exprs)):
            self.w(f"{name}.shape[{k}] = {s}; {name}.strides[{k}] = {st};")
        return name

    def fail(self, node, kind, fmt, *args):
        """Report an error naming ``node``'s op and user line, then leave the kernel."""
        msg = (self.location(node) + " " if node is not None else "") + c_format(fmt)
        self.w(f"sg_fail(err, {ERR[kind]}, {msg}{''.join(', ' + a for a in args)});")
        self.w("goto fail;")

    # ------------------------------------------------------------------ loops

    @contextlib.contextmanager
    def nd_loop(self, shape_of, ndim):
        """Nested loops over the runtime shape ``<shape_of>.shape``; yields the index names."""
        idx = [self.tmp("i") for _ in range(ndim)]
        blocks = [self.w.block(f"for (int64_t {i} = 0; {i} < {shape_of}.shape[{k}]; {i}++)")
                  for k, i in enumerate(idx)]
        with contextlib.ExitStack() as stack:
            for b in blocks:
                stack.enter_context(b)
            yield idx

    def offset(self, v, idx, strides=None):
        """The element offset of index ``idx`` in ``v`` (``strides``: a C array name to use instead)."""
        st = strides or f"{self.arr(v)}.strides"
        return " + ".join(f"{i} * {st}[{k}]" for k, i in enumerate(idx)) or "0"

    def literal(self, value, dtype):
        return c_literal(value, dtype)


# --------------------------------------------------------------------------- the pipeline

def plan_leaves(inputs, outputs):
    """Kernel inputs in order: the function inputs, then shared variables, then constants."""
    seen = {id(v) for v in inputs}
    shared, consts = [], []
    for node in toposort(outputs):
        for v in node.inputs:
            if id(v) in seen or v.owner is not None:
                continue
            seen.add(id(v))
            if isinstance(v, SharedVariable):
                shared.append(v)
            elif isinstance(v, Constant):
                consts.append(v)
    for v in outputs:
        if v.owner is None and id(v) not in seen:
            seen.add(id(v))
            (shared if isinstance(v, SharedVariable) else consts).append(v)
    return list(inputs) + shared + consts


def lower(inputs, outputs, header="", profile=False, steps=None, updates=None,
          donations=None, locations=None):
    """C source for a kernel computing ``outputs``; returns (source, leaves, timed).

    ``leaves`` lists the variables whose values the kernel takes, in order.
    With ``profile``, the kernel adds the seconds spent in each emitted node
    (a fused group counts as its root) to ``sg_prof[k]``, an exported array,
    and ``timed[k]`` is that node; otherwise ``timed`` is empty. A list given
    as ``steps`` receives one ``codegen.steps.Step`` per emitted node, in
    order (each step's comment in the source names it ``K1``, ``K2``, ...).

    ``updates`` lists ``(output index, SharedVariable)``: the outputs that are
    updates of shared variables. Those the kernel can write over the
    variable's own memory (see ``_plan_in_place``) go into the list given as
    ``donations``, as ``(output index, leaf index)``.

    A list given as ``locations`` receives the text of each failure site
    (``"<op> at <file>:<line>: "``), by number: the kernel's messages start
    with a mark holding that number (``location``), never with the text, and
    ``header`` is written as a comment.
    """
    leaves = plan_leaves(inputs, outputs)
    _check_ranks(leaves, toposort(outputs))
    ctx = KernelContext(outputs)
    outer = getattr(_lowering, "ctx", None)
    _lowering.ctx = ctx
    try:
        source, timed = _lower_into(ctx, leaves, outputs, header, profile, steps, updates,
                                    donations)
    finally:
        _lowering.ctx = outer
    if locations is not None:
        locations.extend(ctx.locations)
    return source, leaves, timed


def _lower_into(ctx, leaves, outputs, header, profile, steps, updates, donations):
    from . import fusion
    from .steps import Step

    ctx.prologue_owned = []
    body = ctx.w
    body.depth = 1
    for k, v in enumerate(leaves):
        ctx.names[id(v)] = f"in_{k}"  # no ctx.tmp() name has an underscore: no clash
        body(f"sg_arr in_{k} = in[{k}];")
    nodes = toposort(outputs)
    groups = fusion.plan(nodes, outputs)
    in_place = _plan_in_place(outputs, updates or (), leaves, nodes, groups)
    deferred = {id(c.node) for c in in_place}
    timed, emitted = [], []
    for node in nodes:
        if id(node) in groups.absorbed or id(node) in deferred:
            continue
        step = Step(len(emitted) + 1, node, groups.roots.get(id(node), [node]))
        emitted.append(step)
        body(step.comment())
        mark, n_alloc = len(body.lines), len(ctx.allocated)
        if profile:
            # Function scope, not a block: the node's declarations stay visible after it.
            body(f"double prof_t{len(timed)} = sg_now();")
        if id(node) in groups.roots:
            fusion.emit(ctx, node, groups)
        else:
            c_code = getattr(node.op, "c_code", None)
            if c_code is None:
                raise NoLowering(f"{node.op} has no C lowering")
            c_code(ctx, node)
        step.note_code(body.lines, mark)
        step.buffers = ctx.allocated[n_alloc:]
        if profile:
            body(f"sg_prof[{len(timed)}] += sg_now() - prof_t{len(timed)};")
            timed.append(node)
    skip = {c.i for c in in_place}
    if in_place:
        _emit_in_place(ctx, in_place, groups, emitted, timed, profile,
                       lambda: _emit_outputs(ctx, outputs, skip),
                       [(outputs[i], unsettled_lengths(sv.shape, outputs[i].shape))
                        for i, sv in updates])
    else:
        _emit_outputs(ctx, outputs)
    if steps is not None:
        steps.extend(emitted)
    if donations is not None:
        donations.extend((c.i, c.k) for c in in_place)
    source = _assemble(ctx, header, len(outputs), len(timed) if profile else None)
    return source, timed


# --------------------------------------------------------------------------- updates in place
#
# `W - lr * (h.T @ g)` becomes one gemm with beta = 1 whose result starts as a
# copy of W (ops/gemm.py); `m * 0.9 + g` or Adam's step is a fused loop that
# reads m once per element. When the caller gives the variable's memory away
# for the call (sg_abi.h, ws->donate: nothing else references the array), the
# kernel writes such an update over the variable itself: no copy, no second
# buffer. To keep a failed call from leaving some variables updated and others
# not, such updates come last, in phases: (1) every check (shapes, and no
# operand overlapping memory written in place, else that update gets fresh
# memory), (2) memory: the variable's, or fresh (a gemm with fresh memory is
# computed here, before anything is overwritten), (3) the other outputs handed
# over, (4) the writes, in graph order, which cannot fail. An update may read
# another's new value (Adam's step reads m and v): it comes after it.


class _InPlace:
    """One update the kernel may write over its variable (see above)."""

    def __init__(self, i, k, node, sv, kind):
        self.i, self.k, self.node, self.sv, self.kind = i, k, node, sv, kind


def _plan_in_place(outputs, updates, leaves, nodes, groups):
    """The updates that can be written over their variable, in graph order.

    An update qualifies when its result is that one output only, and either
    it is a gemm accumulating into the variable itself (2-d), or it is the
    root of a fused loop (float, not a reduction, no integer power) that
    reads the variable. Its result may feed only the loops of other
    qualifying updates.
    """
    from ..ops.gemm import Gemm
    from . import fusion

    if not updates:
        return []
    leaf_at = {id(v): k for k, v in enumerate(leaves)}
    cands = {}
    for i, sv in updates:
        e = outputs[i]
        node = e.owner
        if (node is None or id(sv) not in leaf_at or sv.dtype != e.dtype or sv.ndim != e.ndim
                or sum(1 for o in outputs if o is e) != 1 or id(node) in groups.absorbed):
            continue
        if (isinstance(node.op, Gemm) and len(node.inputs) == 3 and node.inputs[2] is sv
                and sv.ndim == 2):
            cands[id(node)] = _InPlace(i, leaf_at[id(sv)], node, sv, "gemm")
        elif (id(node) in groups.roots and fusion.is_elementwise(node)
              and not fusion.is_accumulation(node) and e.dtype in ("float32", "float64")
              and not fusion.can_raise(groups, node)
              and any(v is sv for v in fusion.group_leaves(groups, node))):
            cands[id(node)] = _InPlace(i, leaf_at[id(sv)], node, sv, "loop")
    while True:  # drop updates whose result something else reads, until none is left
        member_of = {id(m): r for r, c in cands.items() if c.kind == "loop"
                     for m in groups.roots[r]}
        drop = [r for r, c in cands.items()
                if any(any(v is c.node.outputs[0] for v in n.inputs)
                       and member_of.get(id(n)) not in cands for n in nodes)]
        if not drop:
            break
        for r in drop:
            del cands[r]
    order = {id(n): j for j, n in enumerate(nodes)}
    return sorted(cands.values(), key=lambda c: order[id(c.node)])


def _emit_in_place(ctx, plan, groups, emitted, timed, profile, emit_outputs, shape_checks=()):
    """The phases described above, for the updates of ``plan``.

    ``shape_checks`` holds ``(update, ((axis, length), ...))``: lengths of its
    variable's static shape that an update's type leaves open. The runtime
    checks them after the call, before storing any update (a ShapeError);
    when one is wrong, nothing is written in place either.
    """
    from ..ops.calls_c import where
    from . import fusion
    from .steps import Step

    w = ctx.w
    w("/* Updates written over their shared variable when the caller gives its memory")
    w(" * away (ws->donate): checks first, then memory, then the outputs, then the")
    w(" * writes, which cannot fail: a failed call changes no variable. */")
    new_values = {id(c.node.outputs[0]) for c in plan}
    for c in plan:
        node, out = c.node, c.node.outputs[0]
        members = groups.roots[id(node)] if c.kind == "loop" else [node]
        c.step = Step(len(emitted) + 1, node, members)
        c.step.over = c.sv
        emitted.append(c.step)
        mark = len(w.lines)
        w(c.step.comment())
        c.item, c.nd, c.W = np.dtype(out.dtype).itemsize, out.ndim, f"in_{c.k}"
        c.don, c.own, c.O = ctx.tmp("don"), ctx.tmp("own"), ctx.declare(out)
        ctx.prologue_owned.append(c.own)
        if profile:
            c.prof = len(timed)
            timed.append(node)
        c.step.buffers = [(out, "output")]
        ctx.allocated.append((out, "output"))
        if c.kind == "gemm":
            op = node.op
            c.pw = ctx.location(node, getattr(node.tag, "product_trace", node.trace))
            c.cw = ctx.location(node)
            c.A, c.B = ctx.arr(node.inputs[0]), ctx.arr(node.inputs[1])
            c.reads = [(c.A, node.inputs[0]), (c.B, node.inputs[1])]
            shp = ctx.tmp("shape")
            w(f"int64_t {shp}[2];")
            w(f"if (sg_gemm_shape(err, {c.pw}, {c.cw}, &{c.A}, {int(op.trans_a)}, &{c.B}, "
              f"{int(op.trans_b)}, &{c.W}, 2, {shp})) goto fail;")
        else:
            shp = fusion.emit_group_shapes(ctx, groups, node)
            # what it reads, but for its own variable (element by element) and new values
            c.reads = [(ctx.arr(v), v) for v in fusion.group_leaves(groups, node)
                       if v is not c.sv and id(v) not in new_values]
        for d in range(c.nd):
            w(f"{c.O}.shape[{d}] = {shp}[{d}];")
        w(f"int {c.don} = ws->donate[{c.k}] && "
          f"!memcmp({c.O}.shape, {c.W}.shape, {c.nd} * sizeof(int64_t));")
        c.step.note_code(w.lines, mark)
    w("/* an operand of an update overlapping memory written in place: that memory stays */")
    for c in plan:
        for x, v in c.reads:
            for q in plan:
                w(f"if ({q.don} && sg_overlaps(&{x}, {v.ndim}, {np.dtype(v.dtype).itemsize}, "
                  f"&{q.W}, {q.nd}, {q.item})) {q.don} = 0;")
    wrong = [f"{ctx.arr(v)}.shape[{k}] != {n}" for v, axes in shape_checks for k, n in axes]
    if wrong:
        w("/* an update breaking its variable's static shape: no variable is written over */")
        w(f"if ({' || '.join(wrong)}) {{ {' '.join(f'{c.don} = 0;' for c in plan)} }}")
    for c in plan:
        mark = len(w.lines)
        w(f"/* {c.step.label}: its memory */")
        if profile:
            w(f"double prof_t{c.prof} = sg_now();")
        if c.kind == "gemm":
            op = c.node.op
            c.PA, c.PB = ctx.tmp("pa"), ctx.tmp("pb")
            w(f"sg_arr {c.PA} = {c.A}, {c.PB} = {c.B};")
        with w.block(f"if ({c.don})"):
            w(f"{c.O}.data = {c.W}.data; sg_contiguous(&{c.O}, {c.nd});")
            if c.kind == "gemm":
                w(f"if (sg_gemm_ready(err, {c.pw}, ws, {c.item}, &{c.PA}, {int(op.trans_a)}, "
                  f"&{c.PB}, {int(op.trans_b)})) goto fail;")
        with w.block("else"):
            w(f"if (sg_alloc(err, {where(c.node)}, ws, &{c.O}, {c.nd}, {c.item}, "
              f"&{c.own})) goto fail;")
            if c.kind == "gemm":  # computed now, before any variable is overwritten
                w(f"if ({_gemm_call(ctx, c, c.A, op.trans_a, c.B, op.trans_b)}) goto fail;")
            w(f"out[{c.i}] = {c.O}; {c.own} = NULL;")
        if profile:
            w(f"sg_prof[{c.prof}] += sg_now() - prof_t{c.prof};")
        c.step.note_code(w.lines, mark)
    emit_outputs()
    w("/* the writes, in graph order: nothing below can fail */")
    for c in plan:
        mark = len(w.lines)
        w(f"/* {c.step.label}: over {_comment_safe_name(c.sv)} when given, else into fresh "
          f"memory */" if c.kind == "loop" else f"/* {c.step.label}: over "
          f"{_comment_safe_name(c.sv)} when given */")
        if profile:
            w(f"double prof_u{c.prof} = sg_now();")
        if c.kind == "gemm":
            with w.block(f"if ({c.don})"):
                # Ready operands, checked sizes, no stretch: this call returns 0.
                w(f"(void){_gemm_call(ctx, c, c.PA, False, c.PB, False)};")
        else:
            fusion.emit_group_loop(ctx, groups, c.node, c.O)
        w(f"if ({c.don}) out[{c.i}] = {c.O};")
        if profile:
            w(f"sg_prof[{c.prof}] += sg_now() - prof_u{c.prof};")
        c.step.note_code(w.lines, mark)


def _gemm_call(ctx, c, a, ta, b, tb):
    """The C call computing the gemm update ``c`` (an ``_InPlace``) into its result."""
    from ..ops.calls_c import SUFFIX

    op = c.node.op
    return (f"sg_gemm_{SUFFIX[c.node.outputs[0].dtype]}(err, {c.pw}, {c.cw}, ws, &{c.O}, "
            f"&{a}, {int(ta)}, &{b}, {int(tb)}, {ctx.literal(op.alpha, 'float64')}, &{c.W}, 2, "
            f"{ctx.literal(op.beta, 'float64')})")


def _comment_safe_name(v):
    return c_comment(v.name or "its shared variable")


def _check_ranks(leaves, nodes):
    """Refuse a graph with an array of more than SG_MAXDIM axes: its descriptor cannot hold it."""
    for v in leaves + [o for n in nodes for o in n.outputs]:
        if v.ndim > MAXDIM:
            made = f", made by {v.owner.op} at {v.owner.trace}" if v.owner is not None else ""
            raise ValueError(f"mode \"c\" handles arrays of at most {MAXDIM} dimensions, but "
                             f"{v.name or 'a value'} of type {v.type} has {v.ndim}{made}; use "
                             f"mode=\"py\" for it")


def _emit_outputs(ctx, outputs, skip=()):
    """Hand every output but those in ``skip`` (indices) to the caller, in memory it owns."""
    w = ctx.w
    w("/* hand the outputs over: fresh memory the caller owns */")
    given = set()
    for i, v in enumerate(outputs):
        if i in skip:
            continue
        name = ctx.arr(v)
        own = ctx.owned.get(id(v))
        if own is not None and id(v) not in given:
            given.add(id(v))
            w(f"out[{i}] = {name}; {own} = NULL;")
            continue
        item = np.dtype(v.dtype).itemsize
        with w.block(""):
            w(f"sg_arr c = {name};")
            w(f"int64_t n = sg_contiguous(&c, {v.ndim});")
            with w.block(f"if (n < 0 || n > INT64_MAX / {item} || "
                         f"!sg_shape_fits(c.shape, {v.ndim}, {item}))"):
                ctx.fail(v.owner, "shape", f"output {i} of {v.ndim}-d shape %s is too large",
                         f"sg_shape_str(sbuf, sizeof sbuf, c.shape, {v.ndim})")
            w(f"c.data = ws->out_alloc((size_t)n * {item});")
            w('if (!c.data) { sg_fail(err, SG_ENOMEM, "out of memory"); goto fail; }')
            w(f"sg_copy(&c, &{name}, {v.ndim}, {item});")
            w(f"out[{i}] = c;")


def _assemble(ctx, header, n_out, n_timed=None):
    top = CWriter()
    if header:
        top(f"/* {c_comment(header)} */")
    top('#include "sg_kernel.h"')
    top('#include "sg_loops.h"')
    top('#include "cblas.h"')
    top("")
    if n_timed is not None:
        top("#include <time.h>")
        top("/* profile=True: seconds spent in each timed node, summed over calls */")
        top(f"double sg_prof[{max(n_timed, 1)}];")
        top(f"int sg_prof_n(void) {{ return {n_timed}; }}")
        top("static double sg_now(void)")
        top("{")
        top("    struct timespec ts;")
        top("    clock_gettime(CLOCK_MONOTONIC, &ts);")
        top("    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;")
        top("}")
        top("")
    top("int sg_abi_version(void) { return SG_ABI_VERSION; }")
    top("")
    top("/* Threads of this kernel's loops and, when `blas` > 0, of BLAS (process-wide).")
    top(" * The runtime calls this after loading the library. */")
    top("void sg_set_num_threads(int loops, int blas)")
    top("{")
    top("    sg_nthreads = loops > 0 ? loops : 1;")
    top("    if (blas > 0)")
    top("        scipy_openblas_set_num_threads(blas);")
    top("}")
    top("")
    top.lines += ctx.functions.lines
    top("int sg_main(const sg_arr *in, sg_arr *out, sg_ws *ws, sg_err *err)")
    top("{")
    top("    char sbuf[160]; (void)sbuf;")
    top(f"    for (int k = 0; k < {n_out}; k++) out[k].data = NULL; /* freed on failure */")
    for own in ctx.prologue_owned:
        top(f"    void *{own} = NULL;")
    top("    ws->used = 0; ws->need = 0;")
    lines = top.lines + ctx.w.lines
    tail = CWriter()
    tail.depth = 1
    tail("sg_ws_release(ws);")
    tail("return SG_OK;")
    tail.depth = 0
    tail("fail:")
    tail.depth = 1
    for own in ctx.prologue_owned:
        tail(f"ws->out_free({own});")
    tail(f"for (int k = 0; k < {n_out}; k++) ws->out_free(out[k].data);")
    tail("sg_ws_release(ws);")
    tail("return err->code ? err->code : SG_EVALUE;")
    tail.depth = 0
    tail("}")
    return "\n".join(lines + tail.lines) + "\n"
