"""The C renderer: a loop-IR program (``codegen.ir``) as one C translation unit.

This module is the only one that turns IR into C text. A kernel exports
``sg_main`` (sg_abi.h); each step of the program is written in order, headed
by a comment naming its nodes and the user's lines:

- a :class:`~codegen.ir.FusedLoop` becomes its shape checks, its result's
  memory, and a call of a loop driver of ``sg_drivers.h`` (``sg_ew_loop`` or
  ``sg_acc_loop``) with a row function written here: the loop's scalar
  expressions along one row. An elementwise loop's row function is one
  unit-stride loop the C compiler vectorises (``omp simd``), nothing else: the
  driver copies strided and broadcast operands into blocks for it
  (``SG_EW_DENSE``); an accumulation's also has the strided variants of its
  sums. Broadcasting, blocks and threads are the drivers', shared by every
  loop, so the C of a loop grows with its expressions, not with the variants
  of its iteration;
- a :class:`~codegen.ir.BlasCall` becomes a call of ``sg_gemm_<dtype>``;
- an :class:`~codegen.ir.OpStep` is its statements (``codegen.ir``: allocations,
  views, checks, calls into the support library), written by :class:`_OpWriter`;
- :class:`~codegen.ir.InPlaceUpdates` come last, in the phases that keep a
  failed call from changing any variable.

Every shape is computed at run time, so one compiled kernel serves any sizes
with the same dtypes and ranks.
"""

import contextlib

import numpy as np

from ..errors import SymgradError
from .cstr import c_comment, c_format, c_string
from . import ir
from .liveness import plan_frees
from .ir import BlasCall, FusedLoop, Lit, OpStep, Ref, is_flat_index
from .steps import node_text
from .writer import CSource, CWriter, Unit

__all__ = ["KernelContext", "render", "CTYPE", "SUFFIX", "NoLowering", "locate", "c_literal"]

#: dtype -> C element type, and the suffix of a dtype's instantiation of a support function.
CTYPE = {"float64": "double", "float32": "float", "int64": "int64_t", "int32": "int32_t",
         "bool": "uint8_t"}
SUFFIX = {"float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64", "bool": "b8"}
ERR = {"shape": "SG_ESHAPE", "index": "SG_EINDEX", "value": "SG_EVALUE", "nomem": "SG_ENOMEM",
       "interrupt": "SG_EINTR"}


class NoLowering(SymgradError, NotImplementedError):
    """An op has no C lowering (yet): mode "c" cannot compile a graph holding it."""

    @classmethod
    def of(cls, node):
        """The error for ``node``: its op, the user's line, and what to do instead."""
        return cls(f"{node.op} at {node.trace} has no C lowering yet, so mode \"c\" (and "
                   f"mode \"debug\", which runs mode c's kernel) cannot compile this graph; "
                   f"compile it with sg.function(..., mode=\"py\") (the NumPy reference) for now")


# A failure site's message starts with LOC_MARK + its number + LOC_MARK; the
# runtime puts the site's text ("<op> at <file>:<line>: ", kept in
# CKernel.locations) in its place. The C source names no file or line, so an
# edit that only moves the model's code within its file is a cache hit.
LOC_MARK = "\x1f"


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


def _item(v):
    return np.dtype(v.dtype).itemsize


class KernelContext:
    """The state of one kernel while it is rendered: its C so far, the names of the values'
    descriptors, the frame, the failure sites and the buffers made.

    Attributes
    ----------
    w : CWriter
        ``ctx.w("stmt;")`` writes a line, ``with ctx.w.block("for (...)"):`` a block.
    """

    def __init__(self, outputs):
        self.w = CWriter()
        self.names = {}          # id(var) -> C name of its sg_arr
        self.owned = {}          # id(var) -> C name of the owning pointer (an output's block)
        self.out_ids = {id(v) for v in outputs}
        self.functions = []      # the row functions of fused loops (CWriter each)
        self.rows = {}           # a row function's text -> its name (equal loops share one)
        self.allocated = []      # (var, "output" or "workspace"), in order
        self._workspace = set()   # ids of the values of `allocated` in workspace memory
        self.locations = []      # failure site number -> "<op> at <file>:<line>: "
        self.frame = []          # declarations of the frame's members (descriptors, owners)
        self.owners = []         # the frame's pointers to output blocks, freed on failure
        self.groups = []         # the steps' blocks, by group function (see _step_function)
        self.step_functions = []  # the group functions (CWriter each)
        self.group_names = []    # their names (sg_main's, in order, and the bodies' of loops)
        self.shared = CWriter()  # what every unit declares: the row functions and their structs
        self.step = None         # the step being rendered
        self.dest = {}           # id(value of a loop's body) -> its place (see _loop)
        self.flat_places = set()  # ids of dest values placed by size, not shape (concatenations)
        self.view_places = set()  # ids of dest values placed as strided views (_concatenation_views)
        self.maybe_views = {}     # id(value) -> the operand it may be a view of (_view_or_new)
        self.prefixed = {}        # id(loop node) -> {k: concatenation} (_find_prefixed_stacks)
        self.early = set()       # ids of values allocated before their step (concatenations)
        self.guarded = {}        # id(input of a concatenation) -> its place: copied unless there
        self.panels = {}         # id(placeholder) -> (trans_b, its packed panels) (see _loop)
        self.loop_depth = 0      # loops (sg.scan) around the steps being rendered
        self.interruptible = False  # a loop checks sg_ws.interrupt (exported: sg_interruptible)
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

    def ptr(self, v):
        """``v``'s data as a typed C pointer expression."""
        return f"(({CTYPE[v.dtype]} *){self.arr(v)}.data)"

    def declare(self, v):
        """A new descriptor for ``v``; returns its C name.

        Descriptors live in the kernel's frame (``F``), shared by the step
        functions: a step reads what earlier steps made.
        """
        name = self.tmp("v")
        self.frame.append(f"sg_arr {name};")
        self.names[id(v)] = f"F->{name}"
        return f"F->{name}"

    def location(self, node, trace=None, label=None):
        """The C string literal that starts the messages of ``node``'s failure sites.

        ``trace`` (default ``node.trace``) is the user line to name, ``label``
        (default the op) the operation to name there: the one the user wrote
        where a rewrite made another (a gemm's product is the user's matmul).
        Each (node, trace, label) gets a number in the kernel, in the order the
        sites are written, hence the same in any process for the same graph.
        """
        trace = node.trace if trace is None else trace
        # a product names the function the user called (tag.user_op: dot builds a matmul)
        label = (getattr(node.tag, "user_op", None) or node.op) if label is None else label
        key = (id(node), str(trace), str(label))
        if key not in self._sites:
            self._sites[key] = len(self.locations)
            self.locations.append(f"{label} at {trace}: ")
        return c_string(f"{LOC_MARK}{self._sites[key]}{LOC_MARK}")

    # ------------------------------------------------------------------ making results

    def alloc(self, node, v, shape_exprs):
        """Give ``v`` a fresh C-contiguous buffer of the given runtime shape.

        A function output gets its own block (``ws->out_alloc``) that the
        caller will own; anything else comes from the workspace arena.
        """
        if id(v) in self.early:  # allocated before the steps making its parts, its length
            name = self.arr(v)   # static (_place_concatenations)
            for k, e in enumerate(shape_exprs):
                with self.w.block(f"if ({e} != {name}.shape[{k}])"):
                    self.fail(node, "shape", f"axis {k} of the result has length %lld, not its "
                              f"static length %lld", f"(long long)({e})",
                              f"(long long){name}.shape[{k}]")
            return name
        name = self.declare(v)
        if shape_exprs:
            self.w(" ".join(f"{name}.shape[{k}] = {e};" for k, e in enumerate(shape_exprs)))
        own = self.result_owner(v)
        alloc = (f"if (sg_alloc(err, {self.location(node)}, ws, &{name}, {v.ndim}, "
                 f"{_item(v)}, {own})) goto fail;")
        place = self.dest.get(id(v))
        if place is None:
            self.w(alloc)
            return name
        if id(v) in self.view_places:  # its part of a concatenation in a loop's result
            with self.w.block(f"if ({place}.data && !memcmp({place}.shape, {name}.shape, "
                              f"{v.ndim} * sizeof(int64_t)))"):
                self.w.comment("/* straight into its part of the loop's result: no copy */")
                self.w(f"{name} = {place};")
            self.w("else " + alloc)
            return name
        if id(v) in self.flat_places:  # a block of a concatenation: as many elements
            same = f" && sg_size(&{name}, {v.ndim}) == {place}.shape[0]"
            where = "its block of the concatenation"
        else:
            same = f" && !memcmp({place}.shape, {name}.shape, {v.ndim} * sizeof(int64_t))" \
                if v.ndim else ""
            where = "its place in the loop's result"
        with self.w.block(f"if ({place}.data{same})"):
            self.w.comment(f"/* straight into {where}: no copy */")
            self.w(f"{name}.data = {place}.data; sg_contiguous(&{name}, {v.ndim});")
        self.w("else " + alloc)
        return name

    def result_owner(self, v):
        """What the allocation of ``v`` passes as its owner (``sg_alloc``'s ``own``): the
        address of a new frame pointer for a function output (handed to the caller), else
        ``NULL`` (workspace memory). Records the buffer either way."""
        own = "NULL"
        if id(v) in self.out_ids and id(v) not in self.owned:
            own = self.owned[id(v)] = self.owner()
            own = "&" + own
        self._note_buffer(v, "workspace" if own == "NULL" else "output")
        return own

    def owner(self):
        """A new pointer in the frame that owns an output's block until it is handed over
        (freed when the kernel fails)."""
        own = self.tmp("own")
        self.frame.append(f"void *{own};")
        self.owners.append(f"F->{own}")
        return f"F->{own}"

    def workspace_ids(self):
        """ids of the values given workspace memory so far (their blocks may be released).

        Kept as the buffers are noted: asked after every step, a set built anew each time
        made rendering quadratic in the graph (a 100-step LSTM: 6.8 of 9.7 s)."""
        return self._workspace

    def _note_buffer(self, v, kind):
        self.allocated.append((v, kind))
        if kind == "workspace":
            self._workspace.add(id(v))
        if self.step is not None:
            self.step.buffers.append((v, kind))

    def fail(self, node, kind, fmt, *args):
        """Report an error naming ``node``'s op and user line, then leave the kernel."""
        msg = (self.location(node) + " " if node is not None else "") + c_format(fmt)
        self.w(f"sg_fail(err, {ERR[kind]}, {msg}{''.join(', ' + a for a in args)});")
        self.w("goto fail;")


# --------------------------------------------------------------------------- the program

def render(program, header="", profile=False):
    """C source of ``program``; returns ``(source, locations, timed)``.

    ``source`` is a ``compiler.CSource``: the text of ``f.source``, made of the
    translation units the compiler builds in parallel (``_assemble``).

    ``locations`` holds the text of each failure site (``"<op> at
    <file>:<line>: "``), by number: the kernel's messages start with a mark
    holding that number (``KernelContext.location``), never with the text, and ``header``
    is written as a comment. With ``profile``, the kernel adds the seconds
    spent in each step to ``sg_prof[k]``, an exported array, and ``timed[k]``
    is that step's root node; otherwise ``timed`` is empty.
    """
    ctx = KernelContext(program.outputs)
    timed = _render_into(ctx, program, profile)
    source = _assemble(ctx, header, len(program.outputs) + len(program.probes),
                       len(timed) if profile else None)
    return source, ctx.locations, timed


def _render_into(ctx, program, profile):
    """Each step as a block of its own, headed by its comment, in group functions
    (``sg_steps<n>``) that ``sg_main`` calls in order.

    Functions of bounded size keep the C compiler's time linear in the graph (its
    passes over one huge function are not), and few enough of them that its cost
    per function stays small; each step of ``f.source`` still reads on its own.
    """
    main = ctx.w
    main.depth = 1
    for k, v in enumerate(program.leaves):
        ctx.names[id(v)] = f"F->in_{k}"  # no ctx.tmp() name has an underscore: no clash
        ctx.frame.append(f"sg_arr in_{k};")
        main(f"F->in_{k} = in[{k}];")
    timed = []
    n = len(program.outputs)
    probe_at = {id(v): n + j for j, v in enumerate(program.probes)}
    if not program.probes:
        _place_concatenations(ctx, program)
    _steps(ctx, program, timed if profile else None, probe_at)
    with _step_function(ctx, "/* the outputs handed over, after the updates "
                             "written in place if any */"):
        if program.in_place is not None:
            skip = {u.out_index for u in program.in_place.updates}
            _in_place(ctx, program.in_place, timed, profile,
                      lambda: _outputs(ctx, program.outputs, skip))
        else:
            _outputs(ctx, program.outputs)
    ctx.w.lines += [f"if ({name}(in, out, ws, err, F)) goto fail;"
                    for name in _group_functions(ctx, ctx.groups, "sg_steps")]
    return timed


def _steps(ctx, program, timed=None, probe_at=None):
    """Each of ``program``'s steps as a block in ``ctx.groups``' functions, then the
    releases of the blocks each leaves dead. ``timed``: a list (profile=True) that
    receives the root of each step timed; ``probe_at``: id(value) -> the output the
    kernel copies it to."""
    calls = []  # per step: its group function, and where its lines stand after its block
    _find_prefixed_stacks(ctx, program)
    for step in program.steps:
        ctx.step = step
        with _step_function(ctx, step.comment()):
            if timed is not None:
                ctx.w("double prof_t = sg_now();")
            if isinstance(step, FusedLoop):
                _fused_loop(ctx, step)
            elif isinstance(step, BlasCall):
                _blas(ctx, step)
            elif isinstance(step, OpStep):
                if step.body is None:
                    raise NoLowering.of(step.root)
                _OpWriter(ctx, getattr(step, "site", None) or step.root).statements(step.body)
            elif isinstance(step, ir.Loop):
                _loop(ctx, step)
            elif isinstance(step, ir.Branch):
                _branch(ctx, step)
            else:
                raise TypeError(f"cannot render {step!r}")
            if timed is not None:
                ctx.w(f"sg_prof[{len(timed)}] += sg_now() - prof_t;")
                timed.append(step.root)
            for v in step.root.outputs:
                if probe_at and id(v) in probe_at:
                    _copy_out(ctx, v, probe_at[id(v)])
        calls.append((ctx.groups[-1], len(ctx.groups[-1].lines)))  # after the step's block
    ctx.step = None
    # Which blocks each step leaves dead is known once every step is rendered: whether an
    # op's result got a buffer of its own (step.buffers) or may view its operands.
    plan_frees(program)
    for step, (group, at) in reversed(list(zip(program.steps, calls))):
        group.lines[at:at] = _release(ctx, step)


def _release(ctx, step):
    """sg_main's lines giving back to the arena, after ``step``, the blocks of ``step.frees``
    (``codegen.liveness``) that the kernel took from the workspace."""
    workspace = ctx.workspace_ids()
    dead = [v for v in step.frees if id(v) in workspace]
    if not dead:
        return []
    w = CWriter()
    w.depth = 1
    w.comment(f"/* after {step.label}, nothing reads these: their blocks go back to the "
              f"workspace */")
    places = _own_unless(ctx, dead)
    plain = [f"sg_ws_free(ws, {ctx.arr(v)}.data);" for v in dead if id(v) not in places]
    if plain:
        w(" ".join(plain))
    for v in dead:
        if id(v) in places:  # in its block of a concatenation unless the sizes differed,
            # or a view of its operand
            w(f"if ({ctx.arr(v)}.data != {places[id(v)]}.data) sg_ws_free(ws, {ctx.arr(v)}.data);")
    return w.lines


def _own_unless(ctx, values):
    """id(value) -> the descriptor whose memory it is in instead of a block of its own,
    for those of ``values`` that may be: placed in a concatenation's block or a loop's
    result, or a view of their operand (a sum_to that sums nothing)."""
    out = {}
    for v in values:
        k = id(v)
        if (k in ctx.flat_places or k in ctx.view_places) and k in ctx.dest:
            out[k] = ctx.dest[k]
        elif k in ctx.maybe_views:
            out[k] = ctx.arr(ctx.maybe_views[k])
    return out


def _place_concatenations(ctx, program):
    """Concatenations whose parts are made straight into their blocks: no copy.

    A concatenation along axis 0 whose inputs all have static shapes (its result then
    has a static length) gets its result allocated before the first step, and each part
    that a step makes into fresh memory -- a BLAS call, a fused loop, an op step's
    allocation -- and that nothing else reads (possibly through reshapes, which view
    a contiguous value) is made in its block of the result: the step's allocation
    takes the block when the element counts agree (``KernelContext.alloc``), the
    concatenation's copy of that part is skipped, and its block is never released to
    the workspace. The data-parallel step's buffer of every gradient
    (``symgrad/distributed.py``) is one: its backward's products write the gradients
    where the allreduce reads them.
    """
    # (ops known by name: the renderer imports no op module, which import it)
    uses = {}
    steps = list(program.steps)
    if program.in_place is not None:
        steps += [u.step for u in program.in_place.updates]
    for step in steps:
        for node in step.members:
            for v in node.inputs:
                uses[id(v)] = uses.get(id(v), 0) + 1
    for v in program.outputs:
        uses[id(v)] = uses.get(id(v), 0) + 2
    leaves = {id(v) for v in program.leaves}
    making = {}
    for step in program.steps:
        if isinstance(step, BlasCall) or (isinstance(step, FusedLoop)
                                          and step.accumulation is None):
            making[id(step.root.outputs[0])] = step
        elif isinstance(step, OpStep) and step.body is not None:
            for st in step.body:
                if isinstance(st, ir.Alloc) and not isinstance(st.var, ir.Local):
                    making.setdefault(id(st.var), step)
    for step in program.steps:
        node = step.root
        if not (isinstance(step, OpStep) and getattr(node.op, "name", None) == "concatenate"):
            continue
        out = node.outputs[0]
        if (out.ndim == 0 or node.op.axis % out.ndim != 0 or id(out) in ctx.dest
                or any(x.dtype != out.dtype or None in x.type.shape for x in node.inputs)):
            continue
        parts, at = [], 0
        for x in node.inputs:
            size = int(np.prod(x.type.shape, dtype=np.int64))
            v = x
            while (uses.get(id(v)) == 1 and v.owner is not None
                   and getattr(v.owner.op, "name", None) == "reshape"
                   and id(v) not in making):
                v = v.owner.inputs[0]
            if (uses.get(id(v)) == 1 and id(v) in making and id(v) not in leaves
                    and id(v) not in ctx.dest and size > 0):
                parts.append((x, v, at, size))
            at += size
        if not parts:
            continue
        with _step_function(ctx, f"/* the result of {step.label} ({node.op}) first: the "
                                 f"steps making its parts write them into it */"):
            first = node.inputs[0].type.shape
            O = ctx.alloc(node, out, [str(sum(x.type.shape[0] for x in node.inputs)) if k == 0
                                      else str(first[k]) for k in range(out.ndim)])
            for x, v, start, size in parts:
                place = ctx.tmp("block")
                ctx.frame.append(f"sg_arr {place};")
                place = f"F->{place}"
                ctx.w(f"{place}.data = (char *){O}.data + (int64_t){start} * {_item(out)}; "
                      f"{place}.shape[0] = {size};")
                ctx.dest[id(v)] = place
                ctx.flat_places.add(id(v))
                ctx.guarded[id(x)] = place
        ctx.early.add(id(out))


#: Lines of glue per C function. gcc pays about a millisecond per function it
#: compiles, whatever its size, and more than linear time in one huge function:
#: steps are written as blocks into functions of about this many lines.
_GROUP_LINES = 300


@contextlib.contextmanager
def _step_function(ctx, comment):
    """Write what the body renders into ``ctx.w`` as one step: a block headed by
    ``comment`` in the current group function (``sg_steps<n>``), a new one begun when
    it would grow past ``_GROUP_LINES``. A group function returns nonzero, ``err``
    filled, when a step in it fails."""
    main, body = ctx.w, CWriter()
    body.depth = 2
    ctx.w = body
    try:
        yield
    finally:
        ctx.w = main
    group = ctx.groups[-1] if ctx.groups else None
    if group is None or (group.lines and len(group.lines) + len(body.lines) > _GROUP_LINES):
        group = CWriter()
        group.depth = 1
        ctx.groups.append(group)
    group.comment(comment)
    group("{")
    group.lines += body.lines
    group("}")


def _group_functions(ctx, groups, prefix):
    """The group functions of ``groups`` (see ``_step_function``), named ``<prefix><k>``;
    returns their names, in the order they run."""
    names = []
    for k, group in enumerate(groups):
        name = f"{prefix}{k}"
        names.append(name)
        ctx.group_names.append(name)
        f = CWriter()
        ctx.step_functions.append(f)
        # SG_STEP (sg_drivers.h): called from sg_main, in another unit, not exported
        f(f"SG_STEP int {name}(const sg_arr *in, sg_arr *out, sg_ws *ws, "
          f"sg_err *err, struct sg_frame *F)")
        f("{")
        f("    char sbuf[160]; (void)sbuf; (void)in; (void)out; (void)ws; (void)F;")
        f.lines += group.lines
        f("    return 0;")
        f("fail: __attribute__((unused));")
        f("    return err->code ? err->code : SG_EVALUE;")
        f("}")
        f("")
    return names


# --------------------------------------------------------------------------- op statements

_C_OP = {"and": "&&", "or": "||"}


class _OpWriter:
    """Writes an :class:`~codegen.ir.OpStep`'s statements (``codegen.ir``) as C into ``ctx``.

    Failures (a :class:`~codegen.ir.Check`, a call that can fail, an
    allocation) report through ``node``'s failure site, so messages start
    with "<op> at <file>:<line>: ". Locals get fresh C names in order of
    declaration.
    """

    def __init__(self, ctx, node):
        self.ctx, self.node = ctx, node
        self.names = {}  # id(Local) -> its C name

    # ------------------------------------------------------------------ expressions

    def desc(self, v):
        """The C name of the descriptor (or local array) of a value or :class:`~ir.Local`."""
        if isinstance(v, ir.Local):
            return self.names[id(v)]
        return self.ctx.arr(v)

    @staticmethod
    def _ndim(v):
        return v.ndim

    def _elem_type(self, v):
        return CTYPE[v.elem if isinstance(v, ir.Local) else v.dtype]

    def expr(self, e):
        """C text of an expression or argument of ``codegen.ir``."""
        x = self.expr
        if isinstance(e, ir.Int):
            v = int(e.value)
            if not -2 ** 63 <= v < 2 ** 63:
                raise ValueError(f"{v} does not fit in int64")
            return (str(v) if v >= 0 else f"({v})") if abs(v) < 2 ** 31 else c_literal(v, "int64")
        if isinstance(e, Lit):
            return c_literal(e.value, e.dtype)
        if isinstance(e, ir.Local):
            return self.names[id(e)]
        if isinstance(e, ir.Dim):
            return f"{self.desc(e.var)}.shape[{e.axis}]"
        if isinstance(e, ir.Stride):
            return f"{self.desc(e.var)}.strides[{e.axis}]"
        if isinstance(e, ir.Size):
            return f"sg_size(&{self.desc(e.var)}, {self._ndim(e.var)})"
        if isinstance(e, ir.Elem):
            return f"(({self._elem_type(e.var)} *){self.desc(e.var)}.data)[{self.index(e.index)}]"
        if isinstance(e, ir.At):
            return f"{self.names[id(e.local)]}[{self.index(e.index)}]"
        if isinstance(e, ir.Bin):
            return f"({x(e.a)} {_C_OP.get(e.op, e.op)} {x(e.b)})"
        if isinstance(e, ir.Not):
            return f"!{x(e.a)}"
        if isinstance(e, ir.Cast):
            return f"(({CTYPE[e.dtype]}){x(e.a)})"
        if isinstance(e, ir.Select):
            return f"({x(e.cond)} ? {x(e.a)} : {x(e.b)})"
        if isinstance(e, ir.Fn):
            return f"{_suffixed(e.name, e.dtypes)}({', '.join(map(x, e.args))})"
        if isinstance(e, ir.Arr):
            return f"&{self.desc(e.var)}"
        if isinstance(e, ir.Arrs):
            return f"(const sg_arr *const[]){{{', '.join(f'&{self.desc(v)}' for v in e.vars)}}}"
        if isinstance(e, ir.Data):
            return f"{self.desc(e.var)}.data"
        if isinstance(e, ir.Shape):
            v = e.var
            if isinstance(v, ir.Local) and v.dtype != "arr":
                return self.names[id(v)]
            return f"{self.desc(v)}.shape"
        if isinstance(e, ir.Addr):
            return f"&{self.names[id(e.local)]}"
        if isinstance(e, ir.Workspace):
            return "ws"
        if isinstance(e, ir.ItemSize):
            return str(np.dtype(e.dtype).itemsize)
        if isinstance(e, ir.Ints):
            return "(const int[]){" + (", ".join(str(int(v)) for v in e.values) or "0") + "}"
        if isinstance(e, ir.ValuePtr):
            return f"(const {CTYPE[e.dtype]}[]){{{c_literal(e.value, e.dtype)}}}"
        if isinstance(e, ir.FnPtr):
            return _suffixed(e.name, e.dtypes)
        if isinstance(e, ir.Epilogue):
            return _epilogue(self.ctx, e)
        raise TypeError(f"not an expression of the IR: {e!r}")

    def cond(self, e):
        """An expression as the condition of an ``if``: without its outer parentheses."""
        text = self.expr(e)
        return text[1:-1] if isinstance(e, ir.Bin) else text

    def index(self, i):
        return str(int(i)) if isinstance(i, int) else self.expr(i)

    def _new(self, local):
        if id(local) in self.names:
            raise ValueError(f"{local!r} is declared twice")
        name = self.names[id(local)] = self.ctx.tmp(local.hint)
        return name

    # ------------------------------------------------------------------ statements

    def statements(self, body):
        for s in body:
            self.statement(s)

    def statement(self, s):
        ctx, w, x = self.ctx, self.ctx.w, self.expr
        if isinstance(s, ir.Let):
            value = x(s.value)
            ct = "sg_arr" if s.local.dtype == "arr" else CTYPE[s.local.dtype]
            w(f"{ct} {self._new(s.local)} = {value};")
        elif isinstance(s, ir.Array):
            n = s.local.length
            init = "" if s.values is None else " = {" + ", ".join(map(x, s.values)) + "}"
            w(f"{CTYPE[s.local.dtype]} {self._new(s.local)}[{max(n, 1)}]{init};")
        elif isinstance(s, ir.Assign):
            w(f"{x(s.target)} = {x(s.value)};")
        elif isinstance(s, ir.Declare):
            self._declare(s.var)
        elif isinstance(s, ir.Alloc):
            if isinstance(s.var, ir.Local):
                raise TypeError("Alloc makes a result: a graph value, not a local")
            ctx.alloc(self.node, s.var, [x(e) for e in s.shape])
        elif isinstance(s, ir.CopyOf):
            self._copy_of(s.var, s.base)
        elif isinstance(s, ir.View):
            name = self._declare(s.var)
            if isinstance(s.offset, ir.Int) and s.offset.value == 0:
                w(f"{name}.data = {self.desc(s.base)}.data;")
            else:
                w(f"{name}.data = (void *)(({self._elem_type(s.base)} *){self.desc(s.base)}.data"
                  f" + ({x(s.offset)}));")
            for k, (n, st) in enumerate(zip(s.shape, s.strides)):
                w(f"{name}.shape[{k}] = {x(n)}; {name}.strides[{k}] = {x(st)};")
        elif isinstance(s, ir.Call):
            fn = _suffixed(s.name, s.dtypes)
            if s.blas:
                w.comment(f"/* BLAS ({fn}): {c_comment(node_text(self.node), limit=400)} */")
            args = ", ".join(map(x, s.args))
            packed = self._panels(s)
            if packed is not None:
                w.comment("/* its weight packed before the loop: sg_panels_gemm_f32 */")
                w(f"if ({packed}) sg_panels_gemm_f32(ws, sg_nthreads, {x(s.args[1])}, "
                  f"{x(s.args[3])}, 0, {packed}, 1.0, NULL, 0, 0.0);")
                w("else")
            if s.can_fail:
                w(f"if ({fn}(err, {ctx.location(self.node)}{', ' if args else ''}{args})) "
                  f"goto fail;")
            elif s.name == "sg_copy_block" and id(s.args[4].var) in ctx.guarded:
                w.comment("/* written in its block already (_place_concatenations) unless "
                          "the sizes differed */")
                w(f"if ({ctx.arr(s.args[4].var)}.data != {ctx.guarded[id(s.args[4].var)]}.data) "
                  f"{fn}({args});")
            else:
                w(f"{fn}({args});")
        elif isinstance(s, ir.Check):
            with w.block(f"if ({self.cond(s.cond)})"):
                args, buffers = [], 0
                for a in s.args:
                    if isinstance(a, ir.ShapeText):
                        buf = "sbuf" if buffers == 0 else f"sbuf{buffers}"
                        if buffers:
                            w(f"char {buf}[160];")
                        buffers += 1
                        args.append(f"sg_shape_str({buf}, sizeof {buf}, {x(a.shape)}, {a.ndim})")
                    elif a.dtype in ("float32", "float64"):
                        args.append(f"(double){x(a)}")
                    else:
                        args.append(f"(long long){x(a)}")
                ctx.fail(self.node, s.kind, s.message, *args)
        elif isinstance(s, ir.Store):
            w(f"(({self._elem_type(s.var)} *){self.desc(s.var)}.data)[{self.index(s.index)}] = "
              f"{x(s.value)};")
        elif isinstance(s, ir.If) and _view_or_new(s):
            self._view_or_new(s)
        elif isinstance(s, ir.If):
            with w.block(f"if ({self.cond(s.cond)})"):
                self.statements(s.body)
            if s.orelse:
                with w.block("else"):
                    self.statements(s.orelse)
        else:
            raise TypeError(f"not a statement of the IR: {s!r}")

    def _panels(self, call):
        """The frame's pointer to the panels of a 2-d float32 matmul's right operand packed
        before the loop (``_pack_panels``), or None."""
        if call.name != "sg_matmul" or call.dtypes != ("float32",):
            return None
        _, out, on, a, an, b, bn = call.args
        if not (on.value == an.value == bn.value == 2 and isinstance(b, ir.Arr)):
            return None
        packed = self.ctx.panels.get(id(b.var))
        return packed[1] if packed is not None and not packed[0] else None

    def _copy_of(self, v, x):
        """``v`` a contiguous copy of ``x`` -- ``x``'s own block when it is the step's donor,
        nothing reads it afterwards (``codegen.lower``) and it is contiguous (no copy)."""
        ctx, w, nd, item = self.ctx, self.ctx.w, v.ndim, _item(v)
        X = ctx.arr(x)
        shape = [f"{X}.shape[{k}]" for k in range(nd)]
        if not (getattr(ctx.step, "donor", None) is x and id(x) in ctx.workspace_ids()
                and id(x) not in ctx.maybe_views
                and id(v) not in ctx.out_ids and id(v) not in ctx.dest):
            name = ctx.alloc(self.node, v, shape)
            w(f"sg_pack({name}.data, &{X}, {nd}, {item});")
            return
        name = ctx.declare(v)
        if nd:
            w(" ".join(f"{name}.shape[{k}] = {e};" for k, e in enumerate(shape)))
        with w.block(f"if (sg_is_contiguous(&{X}, {nd}))"):
            w.comment("/* in place of its operand, which nothing reads after this step */")
            w(f"{name}.data = {X}.data; sg_contiguous(&{name}, {nd});")
        with w.block("else"):
            w(f"if (sg_alloc(err, {ctx.location(self.node)}, ws, &{name}, {nd}, {item}, NULL)) "
              f"goto fail;")
            w(f"sg_pack({name}.data, &{X}, {nd}, {item});")
        ctx._note_buffer(v, "workspace")

    def _view_or_new(self, s):
        """An :class:`~codegen.ir.If` whose branches make one result, as a view of an
        operand (``s.body``) or in memory of its own (``s.orelse``): a sum_to that sums
        nothing. A result handed to the caller, or made in a place (a loop's stack, a block
        of a concatenation), takes the second way always; otherwise its block is released
        only when it is its own (``ctx.maybe_views``, ``_release``), and the step shares
        its operand's memory for liveness (``codegen.liveness.may_share``)."""
        ctx, w = self.ctx, self.ctx.w
        view = s.body[0]
        v = view.var
        if id(v) in ctx.out_ids or id(v) in ctx.dest or id(v) in ctx.early:
            self.statements(s.orelse)
            return
        with w.block(f"if (!{self.cond(s.cond)})"):
            self.statements(s.orelse)
        name, base = ctx.arr(v), self.desc(view.base)
        with w.block("else"):
            w.comment("/* nothing to do: the operand itself */")
            w(f"{name}.data = {base}.data;")
            for k, (n, st) in enumerate(zip(view.shape, view.strides)):
                w(f"{name}.shape[{k}] = {self.expr(n)}; {name}.strides[{k}] = {self.expr(st)};")
        ctx.maybe_views[id(v)] = view.base

    def _declare(self, v):
        if isinstance(v, ir.Local):
            name = self._new(v)
            self.ctx.w(f"{_LOCAL_TYPE[v.dtype]} {name};")
            return name
        return self.ctx.declare(v)


def _view_or_new(s):
    """Whether If ``s`` makes one result as a view (its body) or anew (``orelse``, which
    allocates it first)."""
    return (len(s.body) == 1 and isinstance(s.body[0], ir.View) and s.orelse
            and isinstance(s.orelse[0], ir.Alloc) and s.orelse[0].var is s.body[0].var)


#: The C type of a local a Declare makes, by the local's dtype.
_LOCAL_TYPE = {"arr": "sg_arr", "index": "sg_index"}


def _suffixed(name, dtypes):
    """A support function's name with one dtype suffix per entry of ``dtypes``."""
    return name + "".join(f"_{SUFFIX[d]}" for d in dtypes)


# --------------------------------------------------------------------------- loops and branches

def _body(ctx, step, body, prefix):
    """``body``'s steps rendered into group functions of their own (named ``<prefix><k>``),
    which the step's block calls where the body runs; returns ``(calls, alive)``: the C
    lines that run the body, and the values whose workspace blocks it leaves taken (its
    outputs and what shares their memory), to release once they are copied."""
    outer_groups, outer_step = ctx.groups, ctx.step
    ctx.groups = []
    try:
        _steps(ctx, body)
        names = _group_functions(ctx, ctx.groups, prefix)
    finally:
        ctx.groups, ctx.step = outer_groups, outer_step
    freed = {id(v) for s in body.steps for v in s.frees}
    alive, seen = [], set()
    for s in body.steps:
        for v, kind in s.buffers:
            if kind == "workspace" and id(v) not in freed and id(v) not in seen:
                seen.add(id(v))
                alive.append(v)
    calls = [f"if ({name}(in, out, ws, err, F)) goto fail;" for name in names]
    return calls, alive


def _free_all(ctx, alive, places=None):
    """Release the blocks of ``alive``; one written into its place (``places``: id(value)
    -> the place's descriptor) is not a block of its own when it sits there."""
    places = {**(places or {}), **_own_unless(ctx, alive)}
    plain = [f"sg_ws_free(ws, {ctx.arr(v)}.data);" for v in alive if id(v) not in places]
    if plain:
        ctx.w(" ".join(plain))
    for v in alive:
        if id(v) in places:
            a = ctx.arr(v)
            ctx.w(f"if ({a}.data != {places[id(v)]}.data) sg_ws_free(ws, {a}.data);")


def _alloc_declared(ctx, node, v, own):
    """``sg_alloc`` of ``v``'s descriptor, its shape already set (``own`` from
    ``ctx.result_owner``, asked once however many places allocate it)."""
    ctx.w(f"if (sg_alloc(err, {ctx.location(node)}, ws, &{ctx.arr(v)}, {v.ndim}, {_item(v)}, "
          f"{own})) goto fail;")


def _entry(w, view, base, nd, item, t):
    """``view`` = entry ``t`` of ``base`` (``nd`` axes) along its first axis."""
    w(f"{view}.data = (char *){base}.data + ({t}) * {base}.strides[0] * {item};")
    if nd > 1:
        w(f"for (int k = 1; k < {nd}; k++) {{ {view}.shape[k - 1] = {base}.shape[k]; "
          f"{view}.strides[k - 1] = {base}.strides[k]; }}")


def _same_shape(a, b, nd, b_from=0):
    """C test that descriptor ``a``'s shape (``nd`` axes) differs from ``b``'s from axis
    ``b_from`` on."""
    if nd == 0:
        return None
    return f"memcmp({a}.shape, {b}.shape + {b_from}, {nd} * sizeof(int64_t))"


def _loop(ctx, step):
    """A :class:`~codegen.ir.Loop`: the checks of its lengths, then its body once per
    iteration, each iteration's outputs written into their places -- entry ``t`` of a
    stack, or one of the two buffers a final value alternates between -- by the body
    step that makes them (``Loop.written``), else copied there. A stack whose shape is
    known before the loop (a recurrent output's, a static one) is allocated before it;
    another once the first iteration gives its shape."""
    node, w, body = step.root, ctx.w, step.body
    n = ctx.tmp("n")
    w(f"int64_t {n} = (int64_t){ctx.ptr(step.n_steps)}[0];")
    with w.block(f"if ({n} < 0)"):
        ctx.fail(node, "shape", "n_steps is %lld; a loop runs 0 or more steps", f"(long long){n}")
    seqs = [ctx.arr(x) for x, _ in step.sequences]
    checked = seqs if step.checked is None else seqs[:step.checked]
    if len(checked) > 1:
        with w.block("if (" + " || ".join(f"{a}.shape[0] != {checked[0]}.shape[0]"
                                          for a in checked[1:]) + ")"):
            shown = ", ".join(f"sequence {i}: %lld" for i in range(len(checked)))
            ctx.fail(node, "shape", f"the sequences have different lengths ({shown}); every "
                     f"sequence needs one entry per step",
                     *[f"(long long){a}.shape[0]" for a in checked])
    if seqs:
        with w.block(f"if ({seqs[0]}.shape[0] != {n})"):
            ctx.fail(node, "shape", "the sequences have %lld entries but the loop runs "
                     "n_steps=%lld steps", f"(long long){seqs[0]}.shape[0]", f"(long long){n}")
    for _, p in step.sequences + step.recurrent + step.others:
        ctx.declare(p)
    for x, p in step.others:
        w(f"{ctx.arr(p)} = {ctx.arr(x)};")
    panels = _pack_panels(ctx, step, n)
    n_rec = len(step.recurrent)
    outs = node.outputs
    prefixed = ctx.prefixed.get(id(node), {})
    own = ["NULL" if k in prefixed else ctx.result_owner(v) for k, v in enumerate(outs)]
    for v in outs:
        ctx.declare(v)
    # A final value only: iterations write it and a scratch block in turn, the last one
    # the result (an iteration never writes the block its previous value is in).
    scratch = {}
    for k, v in enumerate(outs):
        if step.stacked[k]:
            continue
        init = ctx.arr(step.recurrent[k][0])
        R, T = ctx.arr(v), ctx.tmp("carry")
        if v.ndim:
            w(f"memcpy({R}.shape, {init}.shape, {v.ndim} * sizeof(int64_t));")
        _alloc_declared(ctx, node, v, own[k])
        w(f"sg_arr {T} = {R};")
        w(f"if (sg_alloc(err, {ctx.location(node)}, ws, &{T}, {v.ndim}, {_item(v)}, NULL)) "
          f"goto fail;")
        scratch[k] = T
    early = _early_stacks(ctx, step, n, own)
    written = step.written or [None] * len(outs)
    places = {}  # k -> the frame descriptor of output k's place at the iteration
    for k, s in enumerate(written):
        if s is not None:
            places[k] = ctx.tmp("place")
            ctx.frame.append(f"sg_arr {places[k]};")
            places[k] = f"F->{places[k]}"
            ctx.dest[id(step.outputs[k])] = places[k]
    views = _concatenation_views(ctx, step, places)
    (title, _), = node.op.inner_graphs()
    ctx.loop_depth += 1
    try:
        calls, alive = _body(ctx, step, body, f"sg_{step.label}_{title}".replace(".", "_"))
    finally:
        ctx.loop_depth -= 1
        for k in places:
            ctx.dest.pop(id(step.outputs[k]), None)
        for part, *_ in views:
            ctx.dest.pop(id(part), None)
            ctx.view_places.discard(id(part))
        for k in panels:
            ctx.panels.pop(k, None)
    at = {id(step.outputs[k]): places[k] for k in places}
    t = ctx.tmp("t")
    # the entry of a stack that iteration t writes: t, or n - 1 - t in a stack kept in
    # reverse order of the iterations (Loop.flipped)
    flipped = step.flipped or [False] * len(outs)
    at_entry = [f"{n} - 1 - {t}" if flipped[k] else t for k in range(len(outs))]
    ctx.interruptible = True
    with w.block(f"for (int64_t {t} = 0; {t} < {n}; {t}++)"):
        # Ctrl-C (sg_ws.interrupt): stop here, as an error would, before this step
        with w.block("if (*ws->interrupt)"):
            ctx.fail(node, "interrupt", "interrupted (SIGINT) before step %lld of %lld",
                     f"(long long){t}", f"(long long){n}")
        for (x, p), a in zip(step.sequences, seqs):
            _entry(w, ctx.arr(p), a, x.ndim, _item(x), t)
        for k, (init, p) in enumerate(step.recurrent):
            P = ctx.arr(p)
            if step.stacked[k]:
                with w.block(f"if ({t} == 0)"):
                    w(f"{P} = {ctx.arr(init)};")
                with w.block("else"):
                    _entry(w, P, ctx.arr(outs[k]), outs[k].ndim, _item(outs[k]), f"{t} - 1")
            else:
                R, T = ctx.arr(outs[k]), scratch[k]
                w(f"{P} = {t} == 0 ? {ctx.arr(init)} : (({n} - {t}) % 2 ? {T} : {R});")
        for k, place in places.items():
            v = outs[k]
            if step.stacked[k]:
                S = ctx.arr(v)
                w(f"{place} = {S};")
                with w.block(f"if ({S}.data)"):
                    _entry(w, place, S, v.ndim, _item(v), at_entry[k])
                w(f"else {place}.data = NULL;")
            else:
                w(f"{place} = ({n} - 1 - {t}) % 2 ? {scratch[k]} : {ctx.arr(v)};")
        for part, view, place, axis, start, item in views:
            w(f"{view} = {place}; {view}.shape[{axis}] = {part.type.shape[axis]}; "
              f"if ({place}.data) {view}.data = (char *){place}.data + (int64_t){start} * "
              f"{place}.strides[{axis}] * {item};")
        w.lines += [("    " * w.depth) + c for c in calls]
        for k, (o, v) in enumerate(zip(step.outputs, outs)):
            O, nd = ctx.arr(o), o.ndim
            if k < n_rec:
                init = ctx.arr(step.recurrent[k][0])
                differs = _same_shape(O, init, nd)
                if differs:
                    with w.block(f"if ({differs})"):
                        w("char sbuf2[160];")
                        ctx.fail(node, "shape", f"recurrent output {k} has shape %s at step %lld "
                                 f"but its previous value had shape %s; a value fed back must "
                                 f"keep its shape", f"sg_shape_str(sbuf, sizeof sbuf, {O}.shape, {nd})",
                                 f"(long long){t}",
                                 f"sg_shape_str(sbuf2, sizeof sbuf2, {init}.shape, {nd})")
            skip = f"{O}.data != {places[k]}.data" if k in places else None
            if step.stacked[k]:
                S = ctx.arr(v)
                if k not in early:
                    with w.block(f"if ({t} == 0)"):
                        w(f"{S}.shape[0] = {n};")
                        if nd:
                            w(f"memcpy({S}.shape + 1, {O}.shape, {nd} * sizeof(int64_t));")
                        _alloc_declared(ctx, node, v, own[k])
                differs = _same_shape(O, S, nd, 1)
                if differs and k >= n_rec:
                    head = f"else if ({differs})" if k not in early else f"if ({differs})"
                    then = "at step 0" if k not in early else "in the graph's type"
                    with w.block(head):
                        w("char sbuf2[160];")
                        ctx.fail(node, "shape", f"output {k} has shape %s at step %lld but %s "
                                 f"{then}; every step's value must have the same shape",
                                 f"sg_shape_str(sbuf, sizeof sbuf, {O}.shape, {nd})",
                                 f"(long long){t}",
                                 f"sg_shape_str(sbuf2, sizeof sbuf2, {S}.shape + 1, {nd})")
                with w.block(f"if ({skip})" if skip else ""):
                    w(f"sg_arr d = {S};")
                    _entry(w, "d", S, v.ndim, _item(v), at_entry[k])
                    w(f"sg_copy_nd(&d, &{O}, {nd}, {_item(v)});")
            else:
                R, T = ctx.arr(v), scratch[k]
                copy = f"sg_copy_nd(({n} - 1 - {t}) % 2 ? &{T} : &{R}, &{O}, {nd}, {_item(v)});"
                w(f"if ({skip}) {copy}" if skip else copy)
        _free_all(ctx, alive, at)
    # No iteration: final values are the initial ones, stacks are empty.
    stacks = [k for k in range(len(outs)) if step.stacked[k] and k not in early]
    with w.block(f"if ({n} == 0)"):
        for k, v in enumerate(outs):
            if not step.stacked[k]:
                w(f"sg_copy_nd(&{ctx.arr(v)}, &{ctx.arr(step.recurrent[k][0])}, {v.ndim}, "
                  f"{_item(v)});")
        if stacks:
            _empty_stacks(ctx, step, stacks, own, calls, alive, places)
    for T in scratch.values():
        w(f"sg_ws_free(ws, {T}.data);")
    for _, buf in panels.values():
        w(f"if ({buf}) sg_ws_free(ws, {buf});")


def _concatenation_views(ctx, step, places):
    """Parts of a concatenation made straight into their places in a loop's result.

    An iteration's output made by concatenating values of static lengths along the
    axis -- the four gate gradients of an LSTM's step, ``dz``, along axis 1 -- has its
    place (entry ``t`` of its stack) before the iteration runs; each part that a fused
    loop makes and that nothing else reads is then written by its loop into its
    strided slice of that place (``KernelContext.alloc``, ``sg_ew_loop_to``), and the
    concatenation's copy of it finds it there (``sg_copy_block``). A part whose shape
    differs from its slice's at run time gets memory of its own, as before.
    Returns ``[(part, view, place, axis, start, item)]`` and records the views in
    ``ctx.dest`` (the caller removes them once the body is rendered)."""
    body = step.body
    uses = {}
    for s in body.steps:
        for n in s.members:
            for v in n.inputs:
                uses[id(v)] = uses.get(id(v), 0) + 1
    for v in step.outputs:
        uses[id(v)] = uses.get(id(v), 0) + 2
    loops = {id(s.root.outputs[0]) for s in body.steps
             if isinstance(s, FusedLoop) and s.accumulation is None and s.donor is None}
    leaves = {id(v) for v in body.leaves}
    views = []
    for k, place in places.items():
        v = step.outputs[k]
        made = step.written[k]
        node = made.root
        if not (isinstance(made, OpStep) and getattr(node.op, "name", None) == "concatenate"
                and node.outputs[0] is v and v.ndim):
            continue
        axis = node.op.axis % v.ndim
        if any(x.type.shape[axis] is None or x.dtype != v.dtype for x in node.inputs):
            continue
        start = 0
        for x in node.inputs:
            if (uses.get(id(x)) == 1 and id(x) in loops and id(x) not in leaves
                    and id(x) not in ctx.dest and x.type.shape[axis] > 0
                    and all(x is not p for p, *_ in views)):
                view = ctx.tmp("part")
                ctx.frame.append(f"sg_arr {view};")
                view = f"F->{view}"
                ctx.dest[id(x)] = view
                ctx.view_places.add(id(x))
                views.append((x, view, place, axis, start, _item(v)))
            start += x.type.shape[axis]
    return views


def _panel_products(body):
    """``{id(placeholder): trans_b}``: the float32 matrices that products of ``body``'s own
    steps take as their right operand (a gemm's ``b``, a 2-d matmul's second operand),
    each always with the same transposition."""
    uses = {}
    for s in body.all_steps():
        if isinstance(s, BlasCall) and s.out.dtype == "float32" and s.a.dtype == "float32":
            b, tb = s.b, s.trans_b
        elif (isinstance(s, OpStep) and s.root.op.name == "matmul" and
              s.root.outputs[0].dtype == "float32" and
              all(i.dtype == "float32" and i.ndim == 2 for i in s.root.inputs)):
            b, tb = s.root.inputs[1], False
        else:
            continue
        uses.setdefault(id(b), set()).add(tb)
    return {k: next(iter(t)) for k, t in uses.items() if len(t) == 1}


def _pack_panels(ctx, step, n):
    """Pack, before a loop of 2 or more iterations, each loop-invariant float32 matrix
    that its body's products take as their right operand (``sg_panels.h``): a recurrent
    weight. The body's products then read the panels (``ctx.panels``: id(placeholder) ->
    (trans_b, the frame's pointer, NULL when not packed)) instead of BLAS re-packing the
    weight at every step. Returns that mapping; the caller frees the panels."""
    uses = _panel_products(step.body)
    panels = {}
    for x, p in step.others:
        if id(p) not in uses or x.dtype != "float32" or x.ndim != 2:
            continue
        tb = uses[id(p)]
        buf = ctx.tmp("panels")
        ctx.frame.append(f"float *{buf};")
        buf = f"F->{buf}"
        w, X = ctx.w, ctx.arr(x)
        w(f"{buf} = NULL;")
        with w.block(f"if ({n} > 1)"):
            w.comment("/* a loop-invariant weight of the step's products, packed once here: "
                      "each step's product reads it as it is (sg_panels.h) */")
            v = ctx.tmp("w")
            w(f"sg_arr {v} = sg_gemm_view(&{X}, {int(tb)});")
            w(f"{buf} = (float *)sg_ws_alloc(ws, (size_t)sg_panels_size({v}.shape[0], "
              f"{v}.shape[1]) * sizeof(float));")
            with w.block(f"if (!{buf})"):
                ctx.fail(step.root, "nomem", "out of memory")
            w(f"sg_panels_pack_f32({buf}, &{v});")
        panels[id(p)] = (tb, buf)
    ctx.panels.update(panels)
    return panels


def _find_prefixed_stacks(ctx, program):
    """Record in ``ctx.prefixed`` (id(loop node) -> {output k: the concatenation}) each
    stacked recurrent output of a loop that a concatenation puts after its initial value
    along axis 0 -- ``concatenate([init[None], hs])``, the previous values a gradient loop
    reads (ops/scan.py) -- where neither is an output of the graph nor placed otherwise:
    the loop then writes its stack into that concatenation's block (``_loop``)."""
    loops = {id(s.root): s for s in program.steps if isinstance(s, ir.Loop)}
    for step in program.steps:
        node = step.root
        if not (isinstance(step, OpStep) and getattr(node.op, "name", None) == "concatenate"
                and node.op.axis == 0 and len(node.inputs) == 2):
            continue
        head, stack, out = node.inputs[0], node.inputs[1], node.outputs[0]
        loop = loops.get(id(stack.owner)) if stack.owner is not None else None
        if loop is None or head.owner is None or getattr(head.owner.op, "name", None) != "dimshuffle":
            continue
        k = stack.owner.outputs.index(stack)
        if (k >= len(loop.recurrent) or not loop.stacked[k]
                or head.owner.inputs[0] is not loop.recurrent[k][0]
                or tuple(head.owner.op.order) != ("x", *range(stack.ndim - 1))
                or out.dtype != stack.dtype
                or any(id(v) in ctx.out_ids or id(v) in ctx.dest or id(v) in ctx.early
                       for v in (stack, out))):
            continue
        ctx.prefixed.setdefault(id(loop.root), {})[k] = out


def _early_stacks(ctx, step, n, own):
    """Allocate, before the loop, the stacks whose shape is known then: a recurrent
    output's (its initial value's shape; its steps' values are checked to keep it) or
    one of a static shape. Returns their output numbers; the other stacks' descriptors
    start with no memory (their first iteration allocates them)."""
    node, w = step.root, ctx.w
    early = []
    for k, v in enumerate(node.outputs):
        if not step.stacked[k]:
            continue
        S = ctx.arr(v)
        if k < len(step.recurrent):
            init = ctx.arr(step.recurrent[k][0])
            lengths = [f"{init}.shape[{j}]" for j in range(v.ndim - 1)]
        elif None not in v.type.shape[1:]:
            lengths = [str(d) for d in v.type.shape[1:]]
        else:
            w(f"{S}.data = NULL;")
            continue
        w(" ".join(f"{S}.shape[{j}] = {e};" for j, e in enumerate([n] + lengths)))
        whole = ctx.prefixed.get(id(node), {}).get(k)
        if whole is None:
            _alloc_declared(ctx, node, v, own[k])
            early.append(k)
            continue
        # written after its initial value in the block of the concatenation that reads
        # it so: the block first (its concatenation takes it, ctx.early, and finds both
        # parts in place), the initial value into its first entry, the stack a view of the
        # rest (not a block of its own: never released itself)
        w.comment(f"/* stack {k} written after its initial value, in the block of the "
                  f"concatenation that reads them so: no copy */")
        # (n + 1 entries: with n_steps at INT64_MAX, INT64_MAX, which sg_alloc calls too
        # large, as it is)
        W = ctx.alloc(node, whole, [f"({n} < INT64_MAX ? {n} + 1 : INT64_MAX)"] + lengths)
        ctx.early.add(id(whole))
        with w.block(""):
            w(f"sg_arr d = {W};")
            _entry(w, "d", W, v.ndim, _item(v), 0)
            w(f"sg_copy_nd(&d, &{init}, {v.ndim - 1}, {_item(v)});")
        w(f"{S}.data = (char *){W}.data + {W}.strides[0] * {_item(v)}; "
          f"sg_contiguous(&{S}, {v.ndim});")
        # for liveness: memory that none of the loop's operands holds (codegen.liveness)
        step.placed_outputs = getattr(step, "placed_outputs", set()) | {id(v)}
        early.append(k)
    return early


def _empty_stacks(ctx, step, stacks, own, calls, alive, places):
    """The stacks of a loop of no iteration: ``(0, *shape of a step's value)``. A shape
    the graph does not know is found as the reference finds it: by running the body
    once on zeros (slices of the sequences' shapes, the initial values), its values
    then dropped."""
    node, w = step.root, ctx.w
    outs = node.outputs
    n_rec = len(step.recurrent)
    probe = [k for k in stacks if k >= n_rec and None in outs[k].type.shape[1:]]
    zeros = []
    if probe:
        w.comment("/* the shapes of a step's values, from a run on zeros */")
        for x, p in step.sequences:
            P = ctx.arr(p)
            w(f"{P} = {ctx.arr(x)};")
            if x.ndim > 1:
                w(f"memmove({P}.shape, {P}.shape + 1, {x.ndim - 1} * sizeof(int64_t));")
            w(f"if (sg_alloc(err, {ctx.location(node)}, ws, &{P}, {x.ndim - 1}, {_item(x)}, "
              f"NULL)) goto fail;")
            w(f"memset({P}.data, 0, (size_t)sg_size(&{P}, {x.ndim - 1}) * {_item(x)});")
            zeros.append(P)
        for init, p in step.recurrent:
            w(f"{ctx.arr(p)} = {ctx.arr(init)};")
        for place in places.values():
            w(f"{place}.data = NULL;")  # no place to write into: every value its own block
        w.lines += [("    " * w.depth) + c for c in calls]
    for k in stacks:
        v, o = outs[k], step.outputs[k]
        S, nd = ctx.arr(v), o.ndim
        w(f"{S}.shape[0] = 0;")
        for j in range(nd):
            if k < n_rec:
                length = f"{ctx.arr(step.recurrent[k][0])}.shape[{j}]"
            elif v.type.shape[j + 1] is not None:
                length = str(v.type.shape[j + 1])
            else:
                length = f"{ctx.arr(o)}.shape[{j}]"
            w(f"{S}.shape[{j + 1}] = {length};")
        _alloc_declared(ctx, node, v, own[k])
    if probe:
        _free_all(ctx, alive)
        for P in zeros:
            w(f"sg_ws_free(ws, {P}.data);")


def _branch(ctx, step):
    """A :class:`~codegen.ir.Branch`: the body chosen by the condition, its values copied
    into the node's results."""
    node, w = step.root, ctx.w
    for x, p in step.inputs:
        ctx.declare(p)
        w(f"{ctx.arr(p)} = {ctx.arr(x)};")
    outs = node.outputs
    prefixed = ctx.prefixed.get(id(node), {})
    own = ["NULL" if k in prefixed else ctx.result_owner(v) for k, v in enumerate(outs)]
    for v in outs:
        ctx.declare(v)
    cond = f"{ctx.ptr(step.cond)}[0]"
    label = step.label.replace(".", "_")
    titles = [t for t, _ in node.op.inner_graphs()]
    for j, (title, body, values) in enumerate(zip(titles, step.bodies, step.branches)):
        head = f"if ({cond})" if j == 0 else "else"
        calls, alive = _body(ctx, step, body, f"sg_{label}_{title}")
        with w.block(head):
            w.lines += [("    " * w.depth) + c for c in calls]
            for v, o, own_k in zip(outs, values, own):
                R = ctx.arr(v)
                if v.ndim:
                    w(f"memcpy({R}.shape, {ctx.arr(o)}.shape, {v.ndim} * sizeof(int64_t));")
                _alloc_declared(ctx, node, v, own_k)
                w(f"sg_copy_nd(&{R}, &{ctx.arr(o)}, {v.ndim}, {_item(v)});")
            _free_all(ctx, alive)


# --------------------------------------------------------------------------- BLAS

def _blas(ctx, step):
    """``step``'s gemm into a fresh result."""
    node, out = step.root, step.out
    args = [ctx.location(node, _product_trace(node), node.op.product_label(node)),
            ctx.location(node, None, node.op.accumulate_label(node))]
    ops = [f"&{ctx.arr(step.a)}", str(int(step.trans_a)), f"&{ctx.arr(step.b)}",
           str(int(step.trans_b))]
    cs = [f"&{ctx.arr(step.c)}", str(step.c.ndim)] if step.c is not None else ["NULL", "0"]
    shp = ctx.tmp("shape")
    ctx.w(f"int64_t {shp}[2];")
    vec = getattr(node.tag, "product_vectors", 0)
    ctx.w(f"if (sg_gemm_shape(err, {', '.join(args + ops + cs)}, {shp}, {vec})) goto fail;")
    O = ctx.alloc(node, out, [f"{shp}[0]", f"{shp}[1]"])
    fn = f"sg_gemm_{SUFFIX[out.dtype]}"
    call = (f"if ({fn}(err, {', '.join(args)}, ws, &{O}, {', '.join(ops)}, "
            f"{c_literal(step.alpha, 'float64')}, {', '.join(cs)}, "
            f"{c_literal(step.beta, 'float64')})) goto fail;")
    packed = ctx.panels.get(id(step.b))
    if packed is not None and packed[0] == step.trans_b and out.dtype == "float32":
        ctx.w.comment(f"/* its weight packed before the loop (sg_panels_gemm_f32), else BLAS "
                      f"({fn}): {c_comment(node_text(node), limit=400)} */")
        ctx.w(f"if ({packed[1]}) sg_panels_gemm_f32(ws, sg_nthreads, &{O}, {ops[0]}, {ops[1]}, "
              f"{packed[1]}, {c_literal(step.alpha, 'float64')}, {', '.join(cs)}, "
              f"{c_literal(step.beta, 'float64')});")
        ctx.w(f"else {call}")
        return
    ctx.w.comment(f"/* BLAS ({fn}): {c_comment(node_text(node), limit=400)} */")
    ctx.w(call)


def _product_trace(node):
    return getattr(node.tag, "product_trace", node.trace)


# --------------------------------------------------------------------------- fused loops

def _shapes(ctx, step):
    """Runtime shapes of the elementwise members, each broadcast checked on its own (an error
    names the member); returns id(member's output) -> the C array holding its shape."""
    w = ctx.w
    shapes = {}
    for node in step.elementwise:
        o = node.outputs[0]
        s = ctx.tmp("s")
        shapes[id(o)] = s
        srcs = ", ".join(shapes[id(v)] if id(v) in shapes else f"{ctx.arr(v)}.shape"
                         for v in node.inputs)
        nds = ", ".join(str(v.ndim) for v in node.inputs)
        w(f"int64_t {s}[{max(o.ndim, 1)}];")
        w(f"if (sg_broadcast_shapes(err, {ctx.location(node)}, {s}, {o.ndim}, "
          f"{len(node.inputs)}, (const int64_t *const[]){{{srcs}}}, "
          f"(const int[]){{{nds}}})) goto fail;")
    return shapes


def _fused_loop(ctx, step):
    if step.accumulation is not None:
        _accumulation(ctx, step)
        return
    out = step.root.outputs[0]
    shape = _shapes(ctx, step)[id(out)]
    donor = step.donor
    if donor is not None and (id(out) in ctx.out_ids or id(out) in ctx.dest
                              or id(donor) not in ctx.workspace_ids()
                              or id(donor) in ctx.maybe_views):  # maybe another's memory
        donor = None
    if donor is None:
        name = ctx.alloc(step.root, out, [f"{shape}[{k}]" for k in range(out.ndim)])
    else:
        name = _alloc_in_place(ctx, step, shape, donor)
    _loop_call(ctx, step, name, donor is not None)


def _alloc_in_place(ctx, step, shape, donor):
    """The result in ``donor``'s memory when the shapes match at run time, else a new buffer."""
    w, out = ctx.w, step.root.outputs[0]
    nd = out.ndim
    name = ctx.declare(out)
    if nd:
        w(" ".join(f"{name}.shape[{k}] = {shape}[{k}];" for k in range(nd)))
    d = ctx.arr(donor)
    with w.block(f"if (sg_is_contiguous(&{d}, {nd}) && "
                 f"!memcmp({d}.shape, {name}.shape, {nd} * sizeof(int64_t)))"):
        w.comment("/* in place of its operand */")
        w(f"{name}.data = {d}.data; sg_contiguous(&{name}, {nd});")
    w(f"else if (sg_alloc(err, {ctx.location(step.root)}, ws, &{name}, {nd}, {_item(out)}, "
      f"NULL)) goto fail;")
    ctx._note_buffer(out, "workspace")
    return name


def _hoisted(step):
    return [(q, v) for q, (v, m) in enumerate(zip(step.operands, step.modes)) if m == "hoist"]


def _aux(ctx, step, fn):
    """A filled struct of the loop's hoisted scalars (``"NULL"`` when it has none)."""
    hoisted = _hoisted(step)
    if not hoisted:
        return "NULL"
    a = ctx.tmp("aux")
    ctx.w(f"struct {fn}_aux {a} = {{ "
          + ", ".join(f"{ctx.ptr(v)}[0]" for q, v in hoisted) + " };")
    return f"&{a}"


def _row_fn(ctx, step, write):
    """The name of ``step``'s row function, which ``write(f, names, step)`` writes
    (``names.fn``: the name it gives itself): loops whose functions read the same (an
    unrolled recurrence repeats its loops at every step) share one. The function goes
    into the kernel's row unit; its declaration, and the struct of its hoisted
    scalars, into the header every unit includes."""
    def render(fn):
        f, decl = CWriter(), CWriter()
        hoisted = _hoisted(step)
        if hoisted:
            decl(f"struct {fn}_aux {{ "
                 + " ".join(f"{CTYPE[v.dtype]} h{q};" for q, v in hoisted) + " };")
        names = _Names(fn)
        write(f, names, step)
        decl(f.lines[0] + ";")  # the signature, declared
        return decl, f

    # Equal loops render equal lines under the same name: the key of the cache below.
    decl, f = render(_ROW)
    key = tuple(decl.lines + f.lines)
    fn = ctx.rows.get(key)
    if fn is None:
        fn = ctx.rows[key] = ctx.tmp("row")
        decl, f = render(fn)
        ctx.shared.lines += decl.lines
        f("")
        ctx.functions.append(f)
    return fn


# The name a row function is rendered under to see whether an equal one exists.
_ROW = "sg_row_fn_"


class _Names:
    """Fresh C names local to one row function (so equal loops write equal functions);
    ``fn`` is the function's own name."""

    def __init__(self, fn):
        self.n = 0
        self.fn = fn

    def __call__(self, prefix):
        self.n += 1
        return f"{prefix}{self.n}"


def _operand_tables(ctx, loaded, dense=False):
    """C compound literals: the loaded operands' descriptors, ranks and element sizes
    (``dense``: an elementwise loop's, a random draw's index carrier flagged
    ``SG_EW_INDEX``, sg_drivers.h)."""
    if not loaded:
        return "NULL", "NULL", "NULL"

    def item(v):
        return f"{_item(v)} | SG_EW_INDEX" if dense and is_flat_index(v) else str(_item(v))

    return ("(const sg_arr *const[]){" + ", ".join(f"&{ctx.arr(v)}" for v in loaded) + "}",
            "(const int[]){" + ", ".join(str(v.ndim) for v in loaded) + "}",
            "(const size_t[]){" + ", ".join(item(v) for v in loaded) + "}")


def _loop_call(ctx, step, name, in_place):
    """The loop of ``step`` into the result descriptor ``name`` (its shape and data set).

    ``in_place``: the result may be the memory of one of the operands
    (element i of every operand is read before element i of the result is
    written), so the row function does not declare it ``restrict``.
    """
    w, out = ctx.w, step.root.outputs[0]
    fn = _row_fn(ctx, step, lambda f, names, st: _row_function(f, names, st, in_place))
    aux = _aux(ctx, step, fn)
    loaded = step.loaded
    arrs, nds, items = _operand_tables(ctx, loaded, dense=True)
    bad = ctx.tmp("bad")
    w(f"int {bad} = 0;")
    # A loop goes to the thread pool when elements x work units per element reach
    # SG_PAR_WORK (sg_loops.h): waking a worker costs microseconds, and right after
    # a BLAS call BLAS's own threads may hold the other cores.
    work = "SG_PAR_WORK_STEP" if ctx.loop_depth else "SG_PAR_WORK"
    threads = (f"sg_size(&{name}, {out.ndim}) >= {work} / {step.work_per_element()} && "
               f"sg_nthreads > 1 ? sg_nthreads : 1")
    # SG_EW_DENSE: the row function computes rows of unit strides only (_row_function);
    # a result placed as a strided view (_concatenation_views) is written through its strides
    to, strides = ("sg_ew_loop_to", f"{name}.strides, ") if id(out) in ctx.view_places \
        else ("sg_ew_loop", "")
    w(f"{to}(ws, {threads}, {out.ndim}, {name}.shape, {name}.data, {strides}"
      f"{_item(out)} | SG_EW_DENSE, "
      f"{len(loaded)}, {arrs}, {nds}, {items}, {fn}, {aux}, &{bad});")
    _value_error(ctx, step, bad)


def _epilogue(ctx, e):
    """An :class:`~codegen.ir.Epilogue` as a ``const sg_conv_epi *`` (sg_conv.h): the loop's
    row function, which the call runs in place of its own result (no ``restrict``), its
    hoisted scalars and loaded operands (the call's own result, ``source``, not read)."""
    loop = e.loop
    fn = _row_fn(ctx, loop, lambda f, names, st: _row_function(f, names, st, True))
    aux = _aux(ctx, loop, fn)
    loaded = loop.loaded
    arrs = ", ".join("NULL" if v is e.source else f"&{ctx.arr(v)}" for v in loaded)
    nds = ", ".join(str(v.ndim) for v in loaded)
    items = ", ".join(str(_item(v)) for v in loaded)
    self_q = next(q for q, v in enumerate(loaded) if v is e.source)
    axes = ", ".join(str(a) for a in e.axes)
    return (f"&(const sg_conv_epi){{{fn}, {aux}, {len(loaded)}, {self_q}, "
            f"(const sg_arr *const[]){{{arrs}}}, (const int[]){{{nds}}}, "
            f"(const size_t[]){{{items}}}, {loop.root.outputs[0].ndim}, "
            f"(const int[]){{{axes}}}}}")


def _value_error(ctx, step, bad):
    node = step.value_error
    if node is None:
        ctx.w(f"(void){bad};")
        return
    message = getattr(node.op, "value_error_message", None)  # ops/random.py's checks
    with ctx.w.block(f"if ({bad})"):
        ctx.fail(node, "value", message(node) if message else
                 "integers to negative integer powers are not allowed")


def _row_prologue(f, step, first, fn):
    """Declarations opening a row function: typed operand pointers (loaded operand j at
    p[first + j]) and the hoisted scalars; returns the C element of each operand at a
    unit-stride and at a strided position ``j``."""
    unit, strided = {}, {}
    j = 0
    for q, (v, m) in enumerate(zip(step.operands, step.modes)):
        if m == "hoist":
            f(f"const {CTYPE[v.dtype]} h{q} = ((const struct {fn}_aux *)aux)->h{q};")
            unit[q] = strided[q] = f"h{q}"
            continue
        f(f"const int64_t s{q} = s[{first + j}];")
        if is_flat_index(v):
            # a random draw's index: the driver offset the pointer by the element's
            # position, which is its value (ops/random.py); nothing is read
            f(f"const int64_t i{q} = (int64_t)(((uintptr_t)p[{first + j}] - SG_RAND_BASE) / 8);")
            unit[q], strided[q] = f"(i{q} + j)", f"(i{q} + j * s{q})"
        else:
            f(f"const {CTYPE[v.dtype]} *a{q} = (const {CTYPE[v.dtype]} *)p[{first + j}];")
            unit[q], strided[q] = f"a{q}[j]", f"a{q}[j * s{q}]"
        j += 1
    f("(void)aux; (void)s; int bad = 0;")
    return unit, strided


def _unit_test(step, first):
    """The C condition that every loaded operand has unit stride along the row."""
    n = len(step.loaded)
    return " && ".join(f"s[{first + j}] == 1" for j in range(n)) or "1"


def _row_function(f, names, step, in_place):
    """The row function of an elementwise loop (``sg_row_fn`` of sg_drivers.h), for rows
    whose result and loaded operands have unit stride (``SG_EW_DENSE``: the driver copies
    strided and broadcast operands into blocks for it): one loop the C compiler
    vectorises, no strided variant to compile. A random draw's index carrier is read
    from its pointer with its own stride; draws whose elements come from a run filled
    before the loop (``_draw_fills``) make the loop run in blocks of SG_RAND_BLOCK."""
    out = step.root.outputs[0]
    ct = CTYPE[out.dtype]
    # one element: compiled at -O0 (SG_ROW_SCALAR), which costs gcc a third of -O2
    attr = "SG_ROW_SCALAR" if out.ndim == 0 else "SG_ROW"
    f(f"{attr} int {names.fn}(int64_t n, void *const *p, const int64_t *s, const void *aux)")
    with f.block(""):
        # restrict when the result is fresh memory; in place, each element is
        # still read before it is written, which omp simd allows
        f(f"{ct} *{'' if in_place else 'restrict '}o = ({ct} *)p[0];")
        element, index = {}, []
        j = 1
        for q, (v, m) in enumerate(zip(step.operands, step.modes)):
            if m == "hoist":
                f(f"const {CTYPE[v.dtype]} h{q} = ((const struct {names.fn}_aux *)aux)->h{q};")
                element[q] = f"h{q}"
                continue
            if is_flat_index(v):
                # a random draw's index: the driver offset the pointer by the element's
                # position, which is its value (ops/random.py); nothing is read
                f(f"const int64_t s{q} = s[{j}];")
                f(f"const int64_t i{q} = (int64_t)(((uintptr_t)p[{j}] - SG_RAND_BASE) / 8);")
                element[q] = f"(i{q} + {{j}} * s{q})"
                index.append(q)
            else:
                f(f"const {CTYPE[v.dtype]} *a{q} = (const {CTYPE[v.dtype]} *)p[{j}];")
                element[q] = f"a{q}[{{j}}]"
            j += 1
        f("(void)aux; (void)s; int bad = 0;")
        fills = _draw_fills(step, index)
        simd = f"#pragma omp simd{_simdlen(step)}{_flags(step)}"
        if not fills:
            element = {q: e.format(j="j") for q, e in element.items()}
            f(simd)
            with f.block("for (int64_t j = 0; j < n; j++)"):
                f(f"o[j] = {_scalar_body(names, f, step, element)};")
            f("return bad;")
            return
        element = {q: e.format(j="(jb + j)") for q, e in element.items()}
        f(" ".join(f"{t} r{k}[SG_RAND_BLOCK];" for k, (_, t, _) in enumerate(fills)))
        with f.block("for (int64_t jb = 0; jb < n; jb += SG_RAND_BLOCK)"):
            f("const int64_t m = n - jb < SG_RAND_BLOCK ? n - jb : SG_RAND_BLOCK;")
            for k, (_, _, call) in enumerate(fills):
                f(call.format(out=f"r{k}"))
            filled = {id(e): f"r{k}[j]" for k, (e, _, _) in enumerate(fills)}
            f(simd)
            with f.block("for (int64_t j = 0; j < m; j++)"):
                f(f"o[jb + j] = {_scalar_body(names, f, step, element, filled)};")
        f("return bad;")


def _draw_fills(step, index):
    """The random draws of an elementwise loop's row function whose elements come from
    a run filled before the loop (``sg_rand_fill_*`` of include/sg_random.h, each Philox
    block made once for its four or two elements): ``(expr, C type, fill statement)`` with
    ``{out}`` for the buffer. A draw qualifies when its key and counter are hoisted scalars
    or literals and its index is a random index operand of the loop (``index``); the others
    keep computing element by element (the same values)."""
    hoisted = _hoisted_elements(step)
    out = []
    for e in step.exprs:
        fill = getattr(e.node.op, "c_fill", None)
        if fill is None or not isinstance(e.args[2], Ref) or e.args[2].index not in index:
            continue
        scalars = []
        for a in e.args[:2]:
            if isinstance(a, Ref) and a.index in hoisted:
                scalars.append(hoisted[a.index])
            elif isinstance(a, Lit):
                scalars.append(c_literal(a.value, a.dtype))
        if len(scalars) != 2:
            continue
        q = e.args[2].index
        ctype, call = fill(e.node, *scalars, f"(uint64_t)(i{q} + jb * s{q})", f"s{q}", "m")
        out.append((e, ctype, call))
    return out


def _hoisted_elements(step):
    return {q: f"h{q}" for q, (v, m) in enumerate(zip(step.operands, step.modes))
            if m == "hoist"}


def _flags(step):
    """The ``reduction(|:bad)`` clause of a row's ``omp simd`` pragma when a member can flag a
    value error, else "". The clause gives every loop a private array of ``bad`` flags, one per
    lane of the widest vector (32 or 64), or-ed together after each run: on rows of two
    elements (a max's gradient in pooling by reshape) that epilogue was most of the time."""
    return " reduction(|:bad)" if step.value_error is not None else ""


def _simdlen(step):
    """The ``simdlen`` clause of an elementwise loop's unit-stride ``omp simd`` pragma, or "".

    gcc 12, choosing vectors of 32 bytes, leaves scalar a loop that loads a bool
    (uint8_t: 32 lanes) beside 8-byte values (4 lanes), e.g. ``where(mask, a, b)`` of
    doubles: 7x slower than the vectorised loop. Asking for 8 lanes vectorises it; other
    loops keep the width gcc picks (a bool *made* by a comparison of doubles vectorises).
    """
    loaded_bool = any(v.dtype == "bool" for v in step.loaded)
    wide = [v.dtype for v in step.operands] + [e.dtype for e in step.exprs]
    if loaded_bool and any(np.dtype(d).itemsize == 8 for d in wide):
        return " simdlen(8)"
    return ""


def _scalar_body(names, f, step, element, filled=None):
    """Declare one element's locals: each operand read once, in the order the members read
    them, then each member's value in order. Returns the C name of the loop's value: the
    last member's, or an accumulation's ``term``. ``filled``: the C element of the members
    filled before the loop (``_draw_fills``), by ``id`` of their expression."""
    local = {}
    filled = filled or {}

    def leaf(e):
        if id(e) not in local:
            t = names("x")
            if isinstance(e, Ref):
                f(f"{CTYPE[step.operands[e.index].dtype]} {t} = {element[e.index]};")
            else:
                f(f"{CTYPE[e.dtype]} {t} = {c_literal(e.value, e.dtype)};")
            local[id(e)] = t
        return local[id(e)]

    for e in step.exprs:
        for a in e.args:
            if isinstance(a, (Ref, Lit)):
                leaf(a)
    for e in step.exprs:
        t = names("e")
        args = [local[id(a)] for a in e.args]
        if id(e) in filled:
            value = e.node.op.c_from_fill(e.node, filled[id(e)], args, 'bad')
        else:
            value = e.node.op.c_scalar(e.node, args, 'bad')
        f(f"{CTYPE[e.dtype]} {t} = {value};")
        local[id(e)] = t
    last = step.term if step.accumulation is not None else step.exprs[-1]
    return leaf(last) if isinstance(last, (Ref, Lit)) else local[id(last)]


# --------------------------------------------------------------------------- accumulations

def _accumulation(ctx, step):
    """``step``'s root (sum, mean or sum_to) of the elementwise members before it, in one pass.

    The result starts at zero and every element is added into the result
    element it reduces to: in the value's coordinates the result has stride 0
    along the reduced axes, and the driver (``sg_acc_run``, then
    ``sg_acc_loop`` of sg_drivers.h) walks rows of the collapsed axes: along a reduced axis a row is a vectorised
    horizontal sum into one result element, along a kept one a vectorised add
    into a row of the result (sums over the leading axis, such as a bias
    gradient, read memory in order).

    Accuracy (issue #11): every sum runs in double. A float32 result gets
    double accumulators in the workspace, rounded once at the end; a
    horizontal sum adds blocks of SG_SUM_BLOCK elements apart, so a double
    sum's error grows with the block rather than the row; a row whose
    operands all have stride 0 adds one value times its length.
    """
    w, root, acc = ctx.w, step.root, step.accumulation
    x, out = root.inputs[0], root.outputs[0]
    nd = x.ndim
    shapes = _shapes(ctx, step)
    xs = shapes[id(x)] if id(x) in shapes else f"{ctx.arr(x)}.shape"
    name = ctx.declare(out)
    own = ctx.result_owner(out)
    kind = {"sum": 0, "mean": 1, "sum_to": 2}[acc.kind]
    if acc.kind == "sum_to":
        reduced, target = "NULL", f"(const int64_t *){ctx.arr(root.inputs[1])}.data"
    else:
        reduced = ("(const int[]){" + ", ".join("1" if a in acc.axes else "0" for a in range(nd))
                   + "}") if nd else "NULL"
        target = "NULL"
    fn = _row_fn(ctx, step, _acc_row_function)
    aux = _aux(ctx, step, fn)
    loaded = step.loaded
    arrs, nds, items = _operand_tables(ctx, loaded)
    bad = ctx.tmp("bad")
    w(f"int {bad} = 0;")
    w(f"if (sg_acc_run(err, {ctx.location(root)}, ws, {kind}, {nd}, {xs}, {reduced}, "
      f"{int(acc.keepdims)}, {target}, {out.ndim}, &{name}, {_item(out)}, {own}, "
      f"{len(loaded)}, {arrs}, {nds}, {items}, {fn}, {aux}, &{bad})) goto fail;")
    _value_error(ctx, step, bad)


def _acc_row_function(f, names, step):
    """The row function of an accumulation (``sg_acc_fn`` of sg_drivers.h)."""
    f(f"SG_ROW int {names.fn}(int64_t n, void *const *p, const int64_t *s, const void *aux, "
      f"double *o, int64_t so)")
    with f.block(""):
        unit, strided = _row_prologue(f, step, 0, names.fn)
        m = len(step.loaded)
        flat = " && ".join(f"s[{j}] == 0" for j in range(m)) or "1"
        f(f"const int unit = {_unit_test(step, 0)}, flat = {flat};")

        def term(element):
            return _scalar_body(names, f, step, element)

        with f.block("if (so == 0)"):
            f("double acc = 0;")
            # A row of one or two elements takes the plain loop: its sum is the same in any
            # order, and the vectorised loop's epilogue adds up a private partial sum per
            # lane of the widest vector (up to 64) after every row, which cost 20x the
            # row's work (a max's gradient of pooling by reshape counts ties in pairs).
            # Three terms can already be added in another order by gcc (SSE2 doubles).
            with f.block("if (unit && n > 2)"):
                with f.block("for (int64_t jb = 0; jb < n; jb += SG_SUM_BLOCK)"):
                    f("int64_t je = n - jb < SG_SUM_BLOCK ? n : jb + SG_SUM_BLOCK;")
                    f("double part = 0;")
                    # 16 lanes: four vectors of doubles, four chains of adds
                    f(f"#pragma omp simd simdlen(16) reduction(+:part){_flags(step)}")
                    with f.block("for (int64_t j = jb; j < je; j++)"):
                        f(f"part += {term(unit)};")
                    f("acc += part;")
            with f.block("else if (flat)"):
                # every operand repeats one value along the row (a broadcast)
                f("const int64_t j = 0; double part = 0;")
                f(f"part += {term(unit)};")
                f("acc = part * (double)n;")
            with f.block("else"):
                with f.block("for (int64_t j = 0; j < n; j++)"):
                    f(f"acc += {term(strided)};")
            f("o[0] += acc;")
        with f.block("else if (unit && so == 1)"):
            # a loaded bool beside the double accumulators: as _simdlen (AVX-512 left the
            # loop of a max's gradient counting ties, in the input's order, scalar)
            wide = " simdlen(8)" if any(v.dtype == "bool" for v in step.loaded) else ""
            f(f"#pragma omp simd{wide}{_flags(step)}")
            with f.block("for (int64_t j = 0; j < n; j++)"):
                f(f"o[j] += {term(unit)};")
        with f.block("else"):
            with f.block("for (int64_t j = 0; j < n; j++)"):
                f(f"o[j * so] += {term(strided)};")
        f("return bad;")


# --------------------------------------------------------------------------- updates in place
#
# Phases (codegen.ir.InPlaceUpdates): (1) every check (shapes, and no operand
# overlapping memory written in place, else that update gets fresh memory),
# (2) memory: the variable's, or fresh (a gemm with fresh memory is computed
# here, before anything is overwritten), (3) the other outputs handed over,
# (4) the writes, in graph order, which cannot fail.

class _Slot:
    """The C names of one update written in place."""


def _in_place(ctx, ip, timed, profile, emit_outputs):
    w = ctx.w
    w.comment("/* Updates written over their shared variable when the caller gives its memory")
    w.comment(" * away (ws->donate): checks first, then memory, then the outputs, then the")
    w.comment(" * writes, which cannot fail: a failed call changes no variable. */")
    new_values = {id(u.step.root.outputs[0]) for u in ip.updates}
    don = ctx.tmp("don")
    w(f"int {don}[{len(ip.updates)}];")
    slots = []
    for q, u in enumerate(ip.updates):
        step, node = u.step, u.step.root
        out = node.outputs[0]
        c = _Slot()
        c.u, c.step = u, step
        slots.append(c)
        ctx.step = step
        w.comment(step.comment())
        c.item, c.nd, c.W = _item(out), out.ndim, ctx.arr(u.var)
        c.don, c.own, c.O = f"{don}[{q}]", ctx.owner(), ctx.declare(out)
        if profile:
            c.prof = len(timed)
            timed.append(node)
        ctx._note_buffer(out, "output")
        if u.kind == "gemm":
            c.pw = ctx.location(node, _product_trace(node), node.op.product_label(node))
            c.cw = ctx.location(node, None, node.op.accumulate_label(node))
            c.A, c.B = ctx.arr(step.a), ctx.arr(step.b)
            c.reads = [(c.A, step.a), (c.B, step.b)]
            shp = ctx.tmp("shape")
            w(f"int64_t {shp}[2];")
            w(f"if (sg_gemm_shape(err, {c.pw}, {c.cw}, &{c.A}, {int(step.trans_a)}, &{c.B}, "
              f"{int(step.trans_b)}, &{c.W}, 2, {shp}, "
              f"{getattr(node.tag, 'product_vectors', 0)})) goto fail;")
        else:
            shp = _shapes(ctx, step)[id(out)]
            # what it reads, but for its own variable (element by element) and new values
            c.reads = [(ctx.arr(v), v) for v in step.operands
                       if v is not u.var and id(v) not in new_values]
        for d in range(c.nd):
            w(f"{c.O}.shape[{d}] = {shp}[{d}];")
        w(f"{c.don} = ws->donate[{u.leaf}] && "
          f"!memcmp({c.O}.shape, {c.W}.shape, {c.nd} * sizeof(int64_t));")
    ctx.step = None
    reads = [r for c in slots for r in c.reads]
    if reads:
        w.comment("/* an operand of an update overlapping memory written in place: that memory stays */")
        w(f"sg_drop_overlapping({len(reads)}, "
          f"(const sg_arr *const[]){{{', '.join(f'&{x}' for x, _ in reads)}}}, "
          f"(const int[]){{{', '.join(str(v.ndim) for _, v in reads)}}}, "
          f"(const size_t[]){{{', '.join(str(_item(v)) for _, v in reads)}}}, {len(slots)}, "
          f"(const sg_arr *const[]){{{', '.join(f'&{c.W}' for c in slots)}}}, "
          f"(const int[]){{{', '.join(str(c.nd) for c in slots)}}}, "
          f"(const size_t[]){{{', '.join(str(c.item) for c in slots)}}}, {don});")
    wrong = [f"{ctx.arr(v)}.shape[{k}] != {n}" for v, axes in ip.shape_checks for k, n in axes]
    if wrong:
        w.comment("/* an update breaking its variable's static shape: no variable is written over */")
        w(f"if ({' || '.join(wrong)}) {{ {' '.join(f'{c.don} = 0;' for c in slots)} }}")
    for c in slots:
        w.comment(f"/* {c.step.label}: its memory */")
        if profile:
            w(f"double prof_t{c.prof} = sg_now();")
        if c.u.kind == "gemm":
            c.PA, c.PB = ctx.tmp("pa"), ctx.tmp("pb")
            w(f"sg_arr {c.PA} = {c.A}, {c.PB} = {c.B};")
        with w.block(f"if ({c.don})"):
            w(f"{c.O}.data = {c.W}.data; sg_contiguous(&{c.O}, {c.nd});")
            if c.u.kind == "gemm":
                w(f"if (sg_gemm_ready(err, {c.pw}, ws, {c.item}, &{c.PA}, "
                  f"{int(c.step.trans_a)}, &{c.PB}, {int(c.step.trans_b)})) goto fail;")
        with w.block("else"):
            w(f"if (sg_alloc(err, {ctx.location(c.step.root)}, ws, &{c.O}, {c.nd}, {c.item}, "
              f"&{c.own})) goto fail;")
            if c.u.kind == "gemm":  # computed now, before any variable is overwritten
                _gemm_update(ctx, c, c.A, c.step.trans_a, c.B, c.step.trans_b, checked=False)
            w(f"out[{c.u.out_index}] = {c.O}; {c.own} = NULL;")
        if profile:
            w(f"sg_prof[{c.prof}] += sg_now() - prof_t{c.prof};")
    emit_outputs()
    w.comment("/* the writes, in graph order: nothing below can fail */")
    for c in slots:
        name = c_comment(c.u.var.name or "its shared variable")
        w.comment(f"/* {c.step.label}: over {name} when given, else into fresh memory */"
                  if c.u.kind == "loop" else f"/* {c.step.label}: over {name} when given */")
        if profile:
            w(f"double prof_u{c.prof} = sg_now();")
        if c.u.kind == "gemm":
            with w.block(f"if ({c.don})"):
                # Ready operands, checked sizes, no stretch: this call returns 0.
                _gemm_update(ctx, c, c.PA, False, c.PB, False, checked=True)
        else:
            _loop_call(ctx, c.step, c.O, True)
        w(f"if ({c.don}) out[{c.u.out_index}] = {c.O};")
        if profile:
            w(f"sg_prof[{c.prof}] += sg_now() - prof_u{c.prof};")


def _gemm_update(ctx, c, a, ta, b, tb, checked):
    """The gemm of the update ``c`` into its result (``checked``: it cannot fail)."""
    step = c.step
    fn = f"sg_gemm_{SUFFIX[step.out.dtype]}"
    call = (f"{fn}(err, {c.pw}, {c.cw}, ws, &{c.O}, &{a}, {int(ta)}, &{b}, {int(tb)}, "
            f"{c_literal(step.alpha, 'float64')}, &{c.W}, 2, {c_literal(step.beta, 'float64')})")
    ctx.w.comment(f"/* BLAS ({fn}): {c_comment(node_text(step.root), limit=400)} */")
    ctx.w(f"(void){call};" if checked else f"if ({call}) goto fail;")


# --------------------------------------------------------------------------- outputs

def _outputs(ctx, outputs, skip=()):
    """Hand every output but those in ``skip`` (indices) to the caller, in memory it owns."""
    w = ctx.w
    w.comment("/* hand the outputs over: fresh memory the caller owns */")
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
        _copy_out(ctx, v, i)


def _copy_out(ctx, v, i):
    """Hand a C-contiguous copy of ``v`` over as output ``i``."""
    w, name, item = ctx.w, ctx.arr(v), _item(v)
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


_FRAME_ON_STACK = 1 << 16  # bytes of descriptors the kernel's frame may take on the stack
#: Lines of group functions per translation unit: the units compile in parallel, each
#: paying for the headers once (about 0.05 s), so a unit holds a few seconds of work.
_UNIT_LINES = 3000
#: Lines of row functions per unit: at -O2 with their loops vectorised, gcc takes
#: 10-30 ms a function, so a unit of them holds about as much work as one of glue.
_ROW_UNIT_LINES = 1500
_FRAME_H = "kernel_frame.h"
# A kernel of at most this many lines is one unit: one compiler process, reading the
# headers once. gcc's cost per process and per header read (about 0.09 s) is most of
# a small kernel's compile, which two or three units would pay two or three times
# (tests and small functions compile hundreds of these); its glue still compiles at
# -O0 (SG_STEP_O0, sg_drivers.h).
_ONE_UNIT_LINES = 600
#: The header every unit includes first (precompiled where it can be: compiler.py).
_PRELUDE = "sg_prelude.h"


def _assemble(ctx, header, n_out, n_timed=None):
    """The kernel's translation units (``compiler.CSource``, whose text, read as one
    file, is the whole kernel too): a header every unit includes (the support library's headers, the row functions' declarations, the
    frame, the group functions' declarations); the row functions, compiled at the
    command line's level (``-O2``), where the elements are computed; the group
    functions in units of about ``_UNIT_LINES`` lines, and ``sg_main`` with the
    exported functions, compiled as glue (``-O0``: checks, allocations and calls,
    whose optimisation would cost more compile time than it saves)."""
    h = CWriter()
    if header:
        h.comment(f"/* {c_comment(header)} */")
    h(f'#include "{_PRELUDE}"')
    after_prelude = len(h.lines)
    h("")
    if n_timed is not None:
        h("#include <time.h>")
        h.comment("/* profile=True: seconds spent in each timed step, summed over calls */")
        h("extern double sg_prof[];")
        h("static inline double sg_now(void)")
        h("{")
        h("    struct timespec ts;")
        h("    clock_gettime(CLOCK_MONOTONIC, &ts);")
        h("    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;")
        h("}")
        h("")
    if ctx.shared.lines:
        h.comment("/* The row functions (kernel_rows<n>.c) */")
        h.lines += ctx.shared.lines
        h("")
    h.comment("/* What the steps share: every descriptor, and the owners of output blocks */")
    h("struct sg_frame {")
    for decl in ctx.frame or ["char unused;"]:
        h(f"    {decl}")
    h("};")
    h("")
    h.comment("/* The steps, in order, by group (kernel_steps<n>.c) */")
    for name in ctx.group_names:
        h(f"SG_STEP int {name}(const sg_arr *in, sg_arr *out, sg_ws *ws, sg_err *err, "
          f"struct sg_frame *F);")
    rows = [ln for f in ctx.functions for ln in f.lines]
    steps = [ln for f in ctx.step_functions for ln in f.lines]
    if len(h.lines) + len(rows) + len(steps) <= _ONE_UNIT_LINES:
        one = [*h.lines[:after_prelude], "#undef SG_STEP", "#define SG_STEP SG_STEP_O0",
               "#undef SG_MAIN", "#define SG_MAIN SG_MAIN_O0", *h.lines[after_prelude:]]
        return CSource([Unit("kernel.c", [*one, *rows, *steps, *_main(ctx, n_out, n_timed)])])
    units = [Unit(_FRAME_H, h.lines)]
    for k, fns in enumerate(_cut(ctx.functions, _ROW_UNIT_LINES)):
        units.append(Unit(f"kernel_rows{k}.c", [ln for f in fns for ln in f.lines]))
    glue = _cut(ctx.step_functions, _UNIT_LINES) or [[]]
    for k, fns in enumerate(glue):
        lines = [ln for fn in fns for ln in fn.lines]
        if k == 0:
            lines += _main(ctx, n_out, n_timed)
        units.append(Unit(f"kernel_steps{k}.c", lines, glue=True))
    return CSource(units, prelude=_PRELUDE)


def _cut(functions, size):
    """``functions`` (CWriters) in consecutive runs of about ``size`` lines."""
    runs, n = [], 0
    for f in functions:
        if not runs or (runs[-1] and n + len(f.lines) > size):
            runs.append([])
            n = 0
        runs[-1].append(f)
        n += len(f.lines)
    return runs


def _main(ctx, n_out, n_timed):
    """``sg_main``, which calls the group functions in order, and the other exported
    functions."""
    top = CWriter()
    if n_timed is not None:
        top(f"double sg_prof[{max(n_timed, 1)}];")
        top(f"SG_MAIN int sg_prof_n(void) {{ return {n_timed}; }}")
        top("")
    top("SG_MAIN int sg_abi_version(void) { return SG_ABI_VERSION; }")
    if ctx.interruptible:
        top.comment("/* Its loops stop at Ctrl-C (sg_ws.interrupt): the runtime arms the handler. */")
        top("SG_MAIN int sg_interruptible(void) { return 1; }")
    top("")
    top.comment("/* Threads of this kernel's loops and of its matrix products (process-wide;")
    top.comment(" * `blas` = 0: as many as the loops). The runtime calls this after loading")
    top.comment(" * the library. */")
    top("SG_MAIN void sg_set_num_threads(int loops, int blas)")
    top("{")
    top("    sg_nthreads = loops > 0 ? loops : 1;")
    top("    sg_blas_set_threads(blas > 0 ? blas : sg_nthreads);")
    top("}")
    top("")
    top("SG_MAIN int sg_main(const sg_arr *in, sg_arr *out, sg_ws *ws, sg_err *err)")
    top("{")
    top.comment("    /* the outputs, freed on failure */")
    top(f"    for (int k = 0; k < {n_out}; k++) out[k].data = NULL;")
    top("    ws->used = 0; ws->need = 0;")
    # The frame: on the stack while small, else from malloc (never the workspace arena,
    # which holds what the graph computes and is measured as such).
    heap = len(ctx.frame) * 264 > _FRAME_ON_STACK
    if heap:
        top("    struct sg_frame *F = (struct sg_frame *)calloc(1, sizeof *F);")
        top('    if (!F) { sg_fail(err, SG_ENOMEM, "out of memory"); return SG_ENOMEM; }')
    else:
        top("    struct sg_frame frame, *F = &frame;")
        top("    memset(F, 0, sizeof *F);")
    top.lines += ctx.w.lines
    tail = CWriter()
    tail.depth = 1
    tail("sg_ws_release(ws);")
    if heap:
        tail("free(F);")
    tail("return SG_OK;")
    tail.depth = 0
    tail("fail:")
    tail.depth = 1
    for own in ctx.owners:
        tail(f"ws->out_free({own});")
    tail(f"for (int k = 0; k < {n_out}; k++) ws->out_free(out[k].data);")
    tail("sg_ws_release(ws);")
    if heap:
        tail("free(F);")
    tail("return err->code ? err->code : SG_EVALUE;")
    tail.depth = 0
    tail("}")
    return top.lines + tail.lines
