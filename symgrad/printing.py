"""Printing graphs: an indented tree (:func:`debugprint`), an infix formula
(:func:`pprint`, in :mod:`symgrad.formula`) and Graphviz (:func:`to_dot`,
:func:`render`).

Every walk here is iterative (an explicit stack or :func:`~symgrad.graph.toposort`),
so a chain of many thousands of nodes prints without touching Python's
recursion limit.
"""

import os
import shutil
import subprocess

from .formula import pprint, short_value
from .graph import Constant, SharedVariable, Variable, toposort

__all__ = ["debugprint", "pprint", "to_dot", "render"]

GRAD_MARK = "\u2190 grad of"     # "← grad of tanh (model.py:12)"
MAX_INDENT = 60                  # deeper levels print their depth instead of more bars
RENDER_TIMEOUT_S = 120
_INSTALL_HINT = ("Install Graphviz: the Python package (`pip install graphviz`) and the "
                 "Graphviz programs, which provide `dot` (`apt-get install graphviz`, "
                 "`brew install graphviz` or `conda install graphviz`). sg.to_dot(obj) gives "
                 "the DOT text without them.")


# --------------------------------------------------------------------------- what to print

def _roots(obj):
    """``(header lines, [(label, variable, updated shared or None)])`` for any printable object.

    A label is None for a bare variable, a dict key, ``output i`` or ``update W <-``.
    """
    graph = obj if _is_graph(obj) else getattr(obj, "graph", None)
    if _is_graph(graph):
        header = ["inputs: " + (", ".join(_leaf_text(v) for v in graph.inputs) or "(none)")]
        outs = [(f"output {i}:", v, None) for i, v in enumerate(graph.outputs)]
        ups = [(f"update {_leaf_text(s)} <-", e, s) for s, e in graph.updates]
        return header, outs + ups
    if isinstance(obj, Variable):
        return [], [(None, obj, None)]
    if isinstance(obj, dict):
        return [], [(f"{k}:", _checked(v, repr(k)), None) for k, v in obj.items()]
    if isinstance(obj, (list, tuple)):
        return [], [(None, _checked(v, f"#{i}"), None) for i, v in enumerate(obj)]
    raise TypeError(f"cannot print a {type(obj).__name__}: expected a Variable, a list, tuple or "
                    f"dict of Variables, a Graph, or an object with a .graph (a compiled "
                    f"function or a train step)")


def _is_graph(obj):
    """Whether ``obj`` is a function's graph (``f.graph``, a ``symgrad.function.Graph``).

    Known by what it holds (``inputs``, ``outputs``, ``updates``), not by its
    class: that class prints itself with :func:`debugprint`, so this module,
    below it, does not import it.
    """
    return not isinstance(obj, Variable) and all(
        isinstance(getattr(obj, a, None), list) for a in ("inputs", "outputs", "updates"))


def _steps_of(obj):
    """The steps of the compiled kernel behind ``obj`` (a function or a train step), or None."""
    fn = obj if hasattr(obj, "kernel") else getattr(obj, "function", None)
    kernel = getattr(fn, "kernel", None)
    return None if kernel is None else kernel.steps


def _step_index(steps):
    """``id(Apply) -> (step, whether the node is the step's root)`` for every lowered node,
    the nodes of loops' and branches' bodies included (``K4.step.2``)."""
    index = {}
    for step in steps or ():
        for node in step.members:
            index[id(node)] = (step, node is step.root)
        for body in getattr(step, "bodies", None) or ():
            index.update(_step_index(body.all_steps()))
    return index


def _kernel_header(steps):
    fused = [s for s in steps if s.fused]
    n_blas = sum(1 for s in steps if s.blas)
    n_over = sum(1 for s in steps if s.over is not None)
    over = ("; \"over W\": an update written over W's own array when nothing else holds it"
            if n_over else "")
    return (f"kernel: {len(steps)} steps in one C call, {len(fused)} of them fused loops "
            f"({sum(len(s.members) for s in fused)} ops), {n_blas} BLAS calls; [K<n>] is a "
            f"step's number in f.source{over}")


def _step_note(entry):
    """``[K3]``, ``[K7: fused loop of 3 ops]`` or ``[in K7]`` for a node of a compiled kernel."""
    if entry is None:
        return ""
    step, is_root = entry
    if not is_root:
        return f"[in {step.label}]"
    over = f", over {step.over.name or 'its variable'}" if step.over is not None else ""
    if step.fused:
        blas = ", BLAS" if step.blas else ""
        return f"[{step.label}: {step.fused_text()}{blas}{over}]"
    return f"[{step.label}: BLAS{over}]" if step.blas else f"[{step.label}{over}]"


def _product_note(node, var=None):
    """For a gemm that absorbed a named product (a gradient into an update):
    ``(product: d(loss)/d(W) ← grad of matmul (model.py:12))``."""
    tag = node.tag if node is not None else None
    name, fwd = getattr(tag, "product_name", None), getattr(tag, "product_grad_of", None)
    if not name or (var is not None and var.name == name):
        return ""
    mark = f" {GRAD_MARK} {getattr(fwd.op, 'name', None) or fwd.op} ({_file_line(fwd.trace)})" \
        if fwd is not None else ""
    return f"(product: {name}{mark})"


def _checked(v, label):
    if not isinstance(v, Variable):
        raise TypeError(f"entry {label} is a {type(v).__name__}, not a symbolic Variable")
    return v


# --------------------------------------------------------------------------- short texts

def _leaf_text(v):
    """How a variable without an owner is shown: inputs and shared by name, constants by value."""
    if isinstance(v, Constant):
        return f"constant{{{short_value(v)}}}"
    if v.name:
        return v.name
    return "<shared>" if isinstance(v, SharedVariable) else "<input>"


def _file_line(trace):
    # The base name keeps lines short; the full path is in node.trace.
    return trace.file_line(short=True)


def _tooltip(trace):
    # The base name, as everywhere else: a drawing kept in docs/ carries no local paths.
    fn = getattr(trace, "function", "")
    return _file_line(trace) + (f" in {fn}" if fn else "")


def _grad_mark(node):
    """``← grad of tanh (model.py:12)`` for a node made by a gradient rule, else ''."""
    fwd = node.grad_of if node is not None else None
    if fwd is None:
        return ""
    # The op's name, not its parameters: the file:line already says which node.
    return f"{GRAD_MARK} {getattr(fwd.op, 'name', None) or fwd.op} ({_file_line(fwd.trace)})"


def _tag_name(i):
    """0 -> A, 25 -> Z, 26 -> AA, ... (bijective base 26, as Theano tags)."""
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(65 + r) + s
    return s


# --------------------------------------------------------------------------- debugprint

class _TreeWalk:
    """A pre-order walk that tags every node and prints a repeated sub-graph once.

    Lines are recorded first and formatted afterwards, so a line may refer to
    the tag of a variable printed further down (``cotangent of ... [id C]``).
    """

    def __init__(self, max_depth, steps=None):
        self.max_depth = max_depth
        self.steps = _step_index(steps)
        self.tags = {}        # id(Apply or leaf Variable) -> "A", "B", ...
        self.expanded = set()  # id(Apply) whose inputs have been printed
        self.records = []     # (depth, kind, variable or None, root label or None)

    def tag(self, var):
        key = id(var.owner if var.owner is not None else var)
        if key not in self.tags:
            self.tags[key] = _tag_name(len(self.tags))
        return self.tags[key]

    def known_tag(self, var):
        return self.tags.get(id(var.owner if var.owner is not None else var))

    def walk(self, root, label):
        stack = [(root, 0, label)]
        while stack:
            var, depth, label = stack.pop()
            if var is None:
                self.records.append((depth, "more", None, None))
                continue
            self.tag(var)
            node = var.owner
            if node is None:
                kind = "leaf"
            elif id(node) in self.expanded:
                kind = "ref"
            elif self.max_depth is not None and depth + 1 >= self.max_depth:
                kind = "cut"  # not marked expanded: a shallower use may still print it in full
                if node.inputs:
                    stack.append((None, depth + 1, None))
            else:
                kind = "full"
                self.expanded.add(id(node))
                stack.extend((inp, depth + 1, None) for inp in reversed(node.inputs))
            self.records.append((depth, kind, var, label))

    def format(self, record, print_type):
        depth, kind, var, label = record
        parts = [_indent(depth) + (f"{label} " if label else "")]
        if kind == "more":
            return parts[0] + "..."
        node = var.owner
        head = "..." if kind == "ref" else _leaf_text(var) if node is None else str(node.op)
        parts.append(f"{head} [id {self.tag(var)}]")
        if node is not None and len(node.outputs) > 1:
            parts.append(f" out {var.index}/{len(node.outputs)}")
            if getattr(node.op, "flipped", None) and node.op.flipped[var.index]:
                parts.append(" (stacked last step first)")
        if var.name and (node is not None or isinstance(var, Constant)):
            parts.append(f" '{var.name}'")
        if kind == "ref":
            return "".join(parts) + " (see above)"
        if print_type:
            parts.append(f" <{var.type}>")
        parts.extend(f"  {note}" for note in self.notes(var) if note)
        return "".join(parts)

    def notes(self, var):
        if isinstance(var, SharedVariable):
            yield "(shared)"
        if var.owner is not None:
            yield _step_note(self.steps.get(id(var.owner)))
        yield _grad_mark(var.owner)
        yield _product_note(var.owner, var)
        fwd = getattr(var.tag, "cotangent_of", None)
        if fwd is not None and not var.name:
            yield f"(cotangent of {self.describe(fwd)})"

    def describe(self, var):
        text = f"'{var.name}'" if var.name else str(var.owner.op) if var.owner else _leaf_text(var)
        tag = self.known_tag(var)
        if tag:
            return f"{text} [id {tag}]"
        # not in this graph (a rewrite replaced it): its line says which
        return f"{text} at {_file_line(var.owner.trace)}" if var.owner is not None else text


def _indent(depth):
    if depth <= MAX_INDENT:
        return " |" * depth
    # Past this many bars a line is unreadable anyway; the number keeps the structure.
    return " |" * MAX_INDENT + f"({depth})"


def debugprint(obj, file=None, print_type=False, depth=None):
    """The graph behind ``obj`` as text, one node per line, inputs indented below their user.

    Each line shows the op (or an input's name, ``constant{value}``), a tag
    ``[id A]``, the output's name if any (gradients are named like
    ``d(cost)/d(W)``) and notes: ``(shared)``, ``← grad of tanh (model.py:12)``
    for nodes made by a gradient rule, ``(cotangent of ...)``. A sub-graph used
    again is printed once; later uses show ``... [id A] (see above)``.

    Parameters
    ----------
    obj : Variable, list/tuple/dict of Variables, Graph, or an object with ``.graph``
        A compiled function or a train step prints its graph as compiled
        (rewritten): inputs, outputs and ``update W <- ...`` lines. In mode
        "c" each node also says where the kernel computes it: ``[K3]`` is
        the kernel's third step (numbered as in ``f.source`` and
        ``f.profile_report()``), ``[K7: fused loop of 3 ops]`` the root of
        a fused group and ``[in K7]`` a member evaluated inside its loop;
        ``[K9: BLAS, over W]`` an update written over ``W``'s own array when
        nothing else holds it; ``(product: d(loss)/d(W) ...)`` marks a BLAS
        gemm that computes a gradient and adds it into an update.
    file : file-like, optional
        Also write the text there (``sys.stdout`` to show it).
    print_type : bool
        Append each variable's dtype and static shape, e.g. ``<float64[?, 3]>``.
    depth : int, optional
        Print at most this many levels; deeper inputs show as ``...``.

    Returns
    -------
    str

    Examples
    --------
    >>> import symgrad as sg
    >>> x = sg.vector("x")
    >>> print(sg.debugprint(sg.tanh(x) * 2))
    mul [id A]
     |tanh [id B]
     | |x [id C]
     |constant{2.0} [id D]
    """
    if depth is not None and (not isinstance(depth, int) or depth < 1):
        raise ValueError(f"depth must be a positive int or None, got {depth!r}")
    header, roots = _roots(obj)
    steps = _steps_of(obj)
    if steps is not None:
        header = header + [_kernel_header(steps)]
    tree = _TreeWalk(depth, steps)
    for label, var, _ in roots:
        tree.walk(var, label)
    lines = header + [tree.format(r, print_type) for r in tree.records]
    lines += _inner_graph_lines(tree, print_type)
    text = "\n".join(lines)
    if file is not None:
        print(text, file=file)
    return text


def _inner_graph_lines(tree, print_type):
    """The inner graphs of the loops and branches printed (scan's step, ifelse's branches).

    Below the outer graph, one section per op holding inner graphs, in the
    order the tree met them: the node's line (its tag refers to the tree
    above; a backward loop says ``← grad of scan{name} (model.py:12)``),
    then each inner graph's inputs (the placeholders, by name) and outputs,
    printed as the tree is. Loops inside loops follow.
    """
    lines, done, k = [], set(), 0
    while k < len(tree.records):
        var = tree.records[k][2]
        k += 1
        node = var.owner if var is not None else None
        graphs = getattr(getattr(node, "op", None), "inner_graphs", None)
        if graphs is None or id(node) in done:
            continue
        done.add(id(node))
        if not lines:
            lines += ["", "inner graphs:"]
        mark = _grad_mark(node)
        lines += ["", f"{node.op} [id {tree.tag(var)}] at {_file_line(node.trace)}"
                      + (f"  {mark}" if mark else "")]
        for title, graph in graphs():
            names = ", ".join(_leaf_text(v) for v in graph.inputs) or "(none)"
            lines.append(f" {title}: inputs {names}")
            start = len(tree.records)
            for j, out in enumerate(graph.outputs):
                tree.walk(out, f"out {j}:")
            lines += [" " + tree.format(r, print_type) for r in tree.records[start:]]
    return lines


# --------------------------------------------------------------------------- DOT

FORWARD_COLOR = "lightblue"
GRAD_COLOR = "orange"
FUSED_COLOR = "gray35"           # the box around a fused group of a compiled kernel
_VAR_STYLE = {
    "input": 'shape=ellipse, fillcolor="palegreen"',
    "shared": 'shape=cylinder, fillcolor="plum"',
    "constant": 'shape=note, fillcolor="lightgrey"',
    "value": 'shape=ellipse, fillcolor="white"',
    "grad_value": f'shape=ellipse, fillcolor="white", color="{GRAD_COLOR}", penwidth=2',
}


def _dot_str(s):
    """A DOT double-quoted string; backslashes and quotes escaped, newlines as DOT's ``\\n``."""
    s = str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\r", "")
    return '"' + s.replace("\n", "\\n") + '"'


def _var_kind(v):
    if isinstance(v, Constant):
        return "constant"
    if isinstance(v, SharedVariable):
        return "shared"
    if v.owner is None:
        return "input"
    return "grad_value" if v.owner.grad_of is not None else "value"


def _var_label(v, root_label):
    if isinstance(v, Constant):
        lines = [v.name, short_value(v)] if v.name else [short_value(v)]
    else:
        lines = [v.name or ("<input>" if v.owner is None else ""), str(v.type)]
    if root_label:
        lines.insert(0, root_label.rstrip(":").replace(" <-", ""))
    return "\n".join(line for line in lines if line)


class _DotWriter:
    """Numbers the nodes and collects the DOT statements: node lines first, then edges."""

    def __init__(self, steps=None):
        self.nodes = {}   # id(Variable or Apply) -> [dot id, attribute text]
        self.edges = []
        self.steps = _step_index(steps)

    def _add(self, obj, prefix, attrs):
        if id(obj) not in self.nodes:
            self.nodes[id(obj)] = [f"{prefix}{len(self.nodes)}", attrs]
        return self.nodes[id(obj)][0]

    def variable(self, v):
        return self._add(v, "v", f"label={_dot_str(_var_label(v, None))}, "
                                 f"{_VAR_STYLE[_var_kind(v)]}")

    def mark_root(self, v, label):
        """An output: double border, and its dict key or ``update W`` on top of its label."""
        self.variable(v)
        entry = self.nodes[id(v)]
        entry[1] = (f"label={_dot_str(_var_label(v, label))}, {_VAR_STYLE[_var_kind(v)]}, "
                    f"peripheries=2")
        return entry[0]

    def apply(self, node):
        lines = [str(node.op), _grad_mark(node), _product_note(node, node.outputs[0]),
                 _step_note(self.steps.get(id(node))).strip("[]")]
        label = "\n".join(line for line in lines if line)
        color = GRAD_COLOR if node.grad_of is not None else FORWARD_COLOR
        aid = self._add(node, "a", f"label={_dot_str(label)}, shape=box, fillcolor=\"{color}\", "
                                   f"tooltip={_dot_str(_tooltip(node.trace))}")
        many_in, many_out = len(node.inputs) > 1, len(node.outputs) > 1
        for i, inp in enumerate(node.inputs):
            edge = f" [label=\"{i}\"]" if many_in else ""
            self.edges.append(f"{self.variable(inp)} -> {aid}{edge}")
        for out in node.outputs:
            edge = f" [label=\"out {out.index}\"]" if many_out else ""
            self.edges.append(f"{aid} -> {self.variable(out)}{edge}")

    def clusters(self, steps):
        """A box around each fused group of a compiled kernel: its ops and the values that
        live only inside its loop."""
        out = []
        for step in steps or ():
            if not step.fused:
                continue
            inner = step.members + [n.outputs[0] for n in step.members if n is not step.root]
            ids = [self.nodes[id(x)][0] for x in inner if id(x) in self.nodes]
            title = f"{step.label}: {step.fused_text()}"
            out += [f"  subgraph cluster_{step.label} {{",
                    f"    label={_dot_str(title)};",
                    f"    style=\"rounded,dashed\"; color=\"{FUSED_COLOR}\"; "
                    f"fontcolor=\"{FUSED_COLOR}\";",
                    f"    {'; '.join(ids)};",
                    "  }"]
        return out

    def lines(self):
        return ([f"  {nid} [{attrs}];" for nid, attrs in self.nodes.values()]
                + [f"  {e};" for e in self.edges])


def to_dot(obj, name="symgrad"):
    """The graph behind ``obj`` as Graphviz DOT text.

    Accepts what :func:`debugprint` accepts. Variables and ops are nodes, with
    edges input -> op -> output (numbered when an op has several). Forward ops
    are light blue boxes, ops made by a gradient rule orange; inputs are green
    ellipses, shared variables plum cylinders, constants grey notes; outputs
    have a double border, and a dashed edge leads from an update expression to
    its shared variable. For a function compiled in mode "c" (or a train
    step) each op also names its step of the kernel (``K3``, as in
    ``f.source``), and each fused group of elementwise ops is drawn as a
    dashed cluster holding its ops and the values that never leave its loop.

    >>> import symgrad as sg
    >>> x = sg.vector("x")
    >>> sg.to_dot(sg.exp(x)).splitlines()[0]
    'digraph symgrad {'
    """
    header, roots = _roots(obj)
    steps = _steps_of(obj)
    dot = _DotWriter(steps)
    for node in toposort([v for _, v, _ in roots]):
        dot.apply(node)
    for label, var, target in roots:
        vid = dot.mark_root(var, label)
        if target is not None:
            # constraint=false: the update edge closes a loop that must not bend the layout.
            dot.edges.append(f"{vid} -> {dot.variable(target)} [style=dashed, "
                             f"label=\"update\", constraint=false]")
    head = [f"digraph {name if name.isidentifier() else _dot_str(name)} {{",
            "  graph [fontname=\"Helvetica\"];",
            "  node [style=filled, fontname=\"Helvetica\"];",
            "  edge [fontname=\"Helvetica\", fontsize=10];"]
    title = header[:1]
    if steps is not None:
        title.append(f"ops: {FORWARD_COLOR} forward, {GRAD_COLOR} made by a gradient rule; "
                     f"K<n>: step of the kernel (f.source); dashed boxes: fused loops")
    if title:
        head.append(f"  label={_dot_str(chr(10).join(title))}; labelloc=t;")
    return "\n".join(head + dot.lines() + dot.clusters(steps) + ["}"]) + "\n"


# --------------------------------------------------------------------------- render

def render(obj, path):
    """Draw the graph behind ``obj`` to ``path`` (``.svg`` or ``.png``) with Graphviz.

    Uses the ``graphviz`` Python package when it is installed, else the
    ``dot`` program on ``PATH``; without either, raises ``RuntimeError`` saying
    how to install them.

    Returns
    -------
    str or os.PathLike
        ``path``.

    Examples
    --------
    >>> import symgrad as sg
    >>> x = sg.vector("x")
    >>> sg.render(sg.exp(x), "graph.svg")  # doctest: +SKIP
    'graph.svg'
    """
    fmt = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if fmt not in ("svg", "png"):
        raise ValueError(f"render writes .svg or .png files, got {os.fspath(path)!r}")
    data = _run_graphviz(to_dot(obj), fmt)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _run_graphviz(text, fmt):
    """The image bytes for DOT ``text``, via the graphviz package or the dot program."""
    try:
        import graphviz  # optional: only drawing needs it, and the dot program does as well
    except ImportError:
        graphviz = None
    if graphviz is not None:
        try:
            return graphviz.Source(text).pipe(format=fmt)
        except graphviz.ExecutableNotFound:
            # The package alone cannot draw: it calls the same dot program.
            raise RuntimeError("render: the graphviz Python package is installed but the "
                               "Graphviz program `dot` is not. " + _INSTALL_HINT) from None
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"render: Graphviz failed: {_stderr(e)}") from None
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("render needs Graphviz, which was not found (no `graphviz` Python "
                           "package, no `dot` program on PATH). " + _INSTALL_HINT)
    return _run_dot(dot, text, fmt)


def _run_dot(dot, text, fmt):
    try:
        done = subprocess.run([dot, f"-T{fmt}"], input=text.encode("utf-8"),
                              capture_output=True, timeout=RENDER_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"render: `{dot} -T{fmt}` took longer than {RENDER_TIMEOUT_S} s; "
                           f"a graph this large may draw better with depth-limited "
                           f"sg.debugprint") from None
    if done.returncode != 0:
        raise RuntimeError(f"render: `{dot} -T{fmt}` failed (exit {done.returncode}): "
                           f"{_stderr(done)}")
    return done.stdout


def _stderr(proc):
    err = proc.stderr or b""
    return (err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)).strip()

