"""``sg.explain``: a compiled function summed up in a few lines.

What the kernel does (its steps, fused loops and BLAS calls, as numbered in
``f.source``), what memory it allocates per call, what building it cost by
stage, and, given example arguments, how many floating-point operations one
call does and how many bytes of workspace it takes.

How the numbers are made, so that they can be trusted:

* FLOPs are counted from the graph and the shapes of every value at the
  given arguments (found by running the NumPy reference once on them), by
  each op's own count (``Op.flops(node, in_shapes, out_shapes)``, see
  :class:`symgrad.graph.Op`): a multiply-add counts 2 (a product of
  ``m x k`` and ``k x n`` is ``2 m k n``), every elementwise operation 1 per
  element (``exp`` and ``tanh`` too), reductions 1 per input element,
  softmax-like ops (``softmax``, ``log_softmax``, ``logsumexp``,
  ``cross_entropy``) 4 per input element; moving data (views, copies,
  gathers, casts, shapes) counts 0.
* Workspace bytes are measured, not estimated: the function's library is
  loaded a second time with a workspace pool of its own, called once on the
  arguments, and the arena that call left behind is read back. Intermediate
  results live in that arena from the step that makes them to the last that
  reads them (or a view of them), when their block goes back for later
  results to reuse; the runtime grows the arena to the most the call had in
  use at once (64-byte block headers included), so its size is the call's
  peak workspace. Results
  handed to the caller (outputs, new values of shared variables) are
  allocated apart and counted apart. Nothing of the function's own state
  changes: shared variables are read, never updated.
"""


import numpy as np

from .config import config
from .function import STAGE_NAMES, Function
from .graph import leaf_value, shape_text
from .interp import Program

__all__ = ["explain", "Explanation", "node_flops"]


def node_flops(node, in_shapes, out_shapes):
    """Floating-point operations of one evaluation of ``node`` at the given shapes.

    The op's own count (:meth:`symgrad.graph.Op.flops`); the counting rules
    are those of :func:`explain`. An op that declares no count raises
    ``NotImplementedError``: never a silent 0.

    >>> import symgrad as sg
    >>> A, B = sg.matrix("A"), sg.matrix("B")
    >>> node_flops((A @ B).owner, [(2, 3), (3, 4)], [(2, 4)])
    48
    """
    return int(node.op.flops(node, in_shapes, out_shapes))


# --------------------------------------------------------------------------- the summary

class Explanation:
    """What :func:`explain` found; ``str()`` (and ``repr()``) is the text.

    Attributes
    ----------
    text : str
    steps : list of codegen.steps.Step or None
        The compiled kernel's steps (None in mode "py").
    blas_calls : list of Step
        The steps that call BLAS.
    buffers : dict
        ``{"workspace": n, "output": n}``: results given fresh memory per call.
    compile_times : dict
        As ``f.compile_times``.
    flops : int or None
        Per call, at the example arguments (None without them, or when an op
        of the graph declares no count: see ``uncounted_ops``).
    uncounted_ops : list of str
        The op classes that declare no FLOP count (``Op.flops``), with arguments.
    flops_by_step : dict
        ``step label -> FLOPs`` (mode "c", with arguments).
    workspace_bytes : int or None
        The workspace arena one call at the example arguments takes (measured).
    result_bytes : int or None
        Bytes of the results handed to the caller (outputs and new shared values).
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def __str__(self):
        return self.text

    __repr__ = __str__


def _function_of(obj):
    if isinstance(obj, Function):
        return obj
    fn = getattr(obj, "function", None)
    if isinstance(fn, Function):
        return fn
    raise TypeError(f"explain expects a compiled function (sg.function) or a train step, got "
                    f"{type(obj).__name__}")


def _file_line(node):
    return node.trace.file_line(short=True)


def _num(n):
    return f"{n:,}"


def _count(n, word):
    """``1 output``, ``3 outputs``."""
    return f"{n} {word}{'s' * (n != 1)}"


def _bytes(n):
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.1f} {unit} ({_num(n)} bytes)"
    return f"{n} bytes"


def _blas_shapes(node, shapes):
    """``64x4 @ 4x8`` for a product at the example shapes."""
    a, b = (shapes[id(v)] for v in node.inputs[:2])
    if node.op.name == "gemm":
        a = a[::-1] if node.op.trans_a else a
        b = b[::-1] if node.op.trans_b else b
    return f"{'x'.join(map(str, a))} @ {'x'.join(map(str, b))}"


def _blas_line(step, shapes):
    node = step.root
    notes = []
    if node.grad_of is not None:
        notes.append(f"gradient of {node.grad_of.op.name}")
    product = getattr(node.tag, "product_name", None)
    if product and product != node.outputs[0].name:
        notes.append(f"computes {product} into an update")
    if shapes is not None:
        notes.insert(0, _blas_shapes(node, shapes))
    cells = [f"{step.label:<4} {str(node.op):<24}", f"{_file_line(node):<16}"] + notes
    return "  ".join(cells).rstrip()


def _run_reference(fn, values):
    """Shapes of every value of ``fn.graph`` at ``values``, by the NumPy reference."""
    nodes = fn.graph.nodes
    variables = [o for n in nodes for o in n.outputs]
    got = Program(fn.inputs, variables).run(values)
    shapes = {id(v): tuple(x.shape) for v, x in zip(variables, got)}
    for v in fn.inputs:
        shapes[id(v)] = tuple(values[fn.inputs.index(v)].shape)
    for n in nodes:
        for v in n.inputs:
            if id(v) not in shapes and v.owner is None:
                shapes[id(v)] = tuple(np.shape(leaf_value(v)))
    results = [shapes.get(id(v)) for v in fn.graph.outputs + [e for _, e in fn.graph.updates]]
    return nodes, shapes, results


def _measure_workspace(fn, ck, values):
    """(arena bytes, result bytes) of one call at ``values`` on a pool of its own."""
    # Imported here: the compiled runtime loads only when a compiled kernel is
    # measured, so `import symgrad` (and mode "py") works without it.
    from . import _runtime

    kernel = _runtime.Kernel(ck.path, *ck.signature)
    kernel.set_num_threads(config.threads())
    # ck.leaves: the function's inputs, then the shared variables and constants it reads.
    full = list(values) + [leaf_value(v) for v in ck.leaves[len(values):]]
    with fn.outside_profile():  # the library's profile counters are shared with f's
        results = kernel(full)
    arenas = kernel.arena_sizes()
    return (max(arenas) if arenas else 0), sum(r.nbytes for r in results)


def explain(obj, *args, file=None, steps=False, **kwargs):
    """A short summary of a compiled function or train step.

    Lists what the compiled kernel does (its steps, how many are fused
    loops and which call BLAS, numbered ``K1``, ``K2``, ... as in
    ``f.source``), the buffers it allocates per call and the compile time
    by stage. Given example arguments (as for calling ``obj``), it adds the
    FLOPs one call does and the workspace bytes it takes, measured; neither
    changes any shared variable. How both are counted: :mod:`symgrad.report`.

    Parameters
    ----------
    obj : Function or TrainStep
    *args, **kwargs
        Example arguments, by position or by input name.
    file : file-like, optional
        Also write the text there (``sys.stdout`` to show it), as
        :func:`debugprint` does.
    steps : bool
        Also list every step of the kernel (with its FLOPs given arguments).

    Returns
    -------
    Explanation
        ``str()`` of it is the text; its attributes hold the numbers
        (``flops``, ``workspace_bytes``, ``blas_calls``, ...).

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> X, W = sg.matrix("X"), sg.shared(np.ones((3, 2)), name="W")
    >>> f = sg.function([X], sg.tanh(X @ W).sum())
    >>> e = sg.explain(f, np.ones((5, 3)))
    >>> e.flops            # 2*5*3*2 for the product, 10 tanh, 10 to sum
    80
    >>> print(e)           # doctest: +SKIP
    """
    fn = _function_of(obj)
    ck = fn.kernel
    kernel_steps = ck.steps if ck is not None else None
    fields = dict(steps=kernel_steps, blas_calls=[], buffers={}, flops=None, flops_by_step={},
                  uncounted_ops=[],
                  workspace_bytes=None, result_bytes=None, compile_times=dict(fn.compile_times))
    lines = _graph_lines(fn)
    if kernel_steps is not None:
        lines += _kernel_lines(fn, ck, fields)
    else:
        lines.append("kernel   none: mode \"py\" runs the NumPy reference, node by node")
    lines.append(_compile_line(fn))
    shapes = None
    if args or kwargs or not fn.inputs:
        values = fn.arguments(*args, **kwargs)
        shapes = _count_at(fn, ck, values, fields)
        lines += _at_shapes(fn, values, fields, kernel_steps)
    else:
        names = ", ".join(v.name or f"arg{i}" for i, v in enumerate(fn.inputs))
        lines.append(f"FLOPs and workspace bytes depend on the input shapes: pass example "
                     f"arguments, sg.explain(f, {names})")
    if fields["blas_calls"]:
        lines.append("BLAS calls:")
        lines += ["  " + _blas_line(s, shapes) for s in fields["blas_calls"]]
    if steps and kernel_steps is not None:
        lines.append("steps:")
        for s in kernel_steps:
            flops = fields["flops_by_step"].get(s.label)
            count = f"  {_num(flops)} FLOPs" if flops is not None else ""
            lines.append(f"  {s.label:<4} {s.title()[:56]:<56}  {_file_line(s.root):<16}{count}")
    text = "\n".join(lines)
    if file is not None:
        print(text, file=file)
    return Explanation(text=text, **fields)


def _graph_lines(fn):
    g = fn.graph
    nodes = g.nodes
    n_grad = sum(1 for n in nodes if n.grad_of is not None)
    shared = g.shared
    title = f"function {fn.name!r}" if fn.name else "function"
    return [f"{title}: mode {fn.mode!r}, rewrite {fn.rewrite!r}",
            f"graph    {_count(len(nodes), 'node')} ({n_grad} made by gradient rules); inputs "
            f"{', '.join(v.name or '?' for v in fn.inputs) or '(none)'}; "
            f"{_count(len(shared), 'shared variable')}; {_count(len(g.outputs), 'output')}, "
            f"{_count(len(g.updates), 'update')}"]


def _kernel_lines(fn, ck, fields):
    """The kernel's steps and buffers (and their counts into ``fields``)."""
    steps = ck.steps
    fused = [s for s in steps if s.fused]
    blas = [s for s in steps if s.blas]
    buffers = {"workspace": 0, "output": 0}
    for s in steps:
        for _, kind in s.buffers:
            buffers[kind] += 1
    fields.update(blas_calls=blas, buffers=buffers)
    n_over = sum(1 for s in steps if s.over is not None)
    debug = (" (mode \"debug\": the kernel of mode \"c\", each step's result also checked)"
             * (fn.mode == "debug"))
    return [f"kernel   one C call, {ck.source.count(chr(10))} lines of C, "
            f"{_count(len(steps), 'step')}: {_count(len(fused), 'fused loop')} "
            f"({_count(sum(len(s.members) for s in fused), 'op')}), "
            f"{_count(len(blas), 'BLAS call')}, "
            f"{_count(len(steps) - len(fused) - len(blas), 'single op')}{debug}",
            f"buffers  {sum(buffers.values())} per call: {buffers['workspace']} in the "
            f"workspace arena, {buffers['output']} handed to the caller (views and values "
            f"inside fused loops take none)"
            + (f"; {_count(n_over, 'update')} written over the variable's own array when "
               f"nothing else holds it" if n_over else "")]


def _count_at(fn, ck, values, fields):
    """FLOPs (and, compiled, workspace bytes) at ``values`` into ``fields``; returns the shapes."""
    nodes, shapes, _ = _run_reference(fn, values)
    per_node, uncounted = {}, {}
    for n in nodes:
        try:
            per_node[id(n)] = node_flops(n, [shapes[id(i)] for i in n.inputs],
                                         [shapes[id(o)] for o in n.outputs])
        except NotImplementedError:
            uncounted.setdefault(type(n.op).__name__, n)
    fields["uncounted_ops"] = sorted(uncounted)
    # An op that declares no count leaves the total unknown, not short.
    fields["flops"] = None if uncounted else sum(per_node.values())
    if ck is not None and not uncounted:
        fields["flops_by_step"] = {s.label: sum(per_node.get(id(m), 0) for m in s.members)
                                   for s in ck.steps}
        fields["workspace_bytes"], fields["result_bytes"] = _measure_workspace(fn, ck, values)
    return shapes


def _compile_line(fn):
    t = fn.compile_times
    parts = []
    for key, secs in t.items():
        if key == "total":
            continue
        note = ""
        if key == "compile" and fn.cache_hit is not None:
            note = " (cache hit)" if fn.cache_hit else " (compiled)"
        parts.append(f"{STAGE_NAMES.get(key, key)} {secs:.3f}{note}")
    return f"compile  {t['total']:.3f} s: " + ", ".join(parts)


def _at_shapes(fn, values, fields, kernel_steps):
    desc = ", ".join(f"{v.name or f'arg{i}'}: {np.dtype(v.dtype).name} {shape_text(x.shape)}"
                     for i, (v, x) in enumerate(zip(fn.inputs, values)))
    total = fields["flops"]
    lines = [f"at {desc or 'no arguments'}:"]
    if total is None:
        lines.append(f"  FLOPs      unknown: {', '.join(fields['uncounted_ops'])} declares no "
                     f"count (Op.flops_per_element or Op.flops)")
    else:
        flops = f"  FLOPs      {_num(total)} per call"
        if kernel_steps is not None and total:
            by = fields["flops_by_step"]
            blas = sum(by[s.label] for s in kernel_steps if s.blas)
            fused = sum(by[s.label] for s in kernel_steps if s.fused)
            flops += (f": BLAS {_num(blas)} ({100 * blas / total:.0f}%), fused loops "
                      f"{_num(fused)}, other ops {_num(total - blas - fused)}")
        lines.append(flops)
    if fields["workspace_bytes"] is not None:
        lines.append(f"  workspace  {_bytes(fields['workspace_bytes'])} at peak, measured: the "
                     f"arena of intermediates one call takes")
        lines.append(f"  results    {_bytes(fields['result_bytes'])} handed to the caller")
    return lines
