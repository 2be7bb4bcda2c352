"""``sg.pprint``: a small graph as an infix formula, in Python's notation where it has one.

Every walk here is iterative (:func:`~symgrad.graph.toposort`), so a chain of
many thousands of nodes prints without touching Python's recursion limit.
"""

from .graph import Constant, SharedVariable, Variable, toposort

__all__ = ["pprint"]

PPRINT_MAX_NODES = 300           # pprint shows a placeholder for larger sub-expressions
PPRINT_SHARE_CHARS = 24          # pprint writes a repeated sub-expression longer than this once


def short_value(c, limit=40):
    """A constant's value when short (``1.0``, ``[1, 2]``), else its type."""
    if c.data.size <= 8:
        text = repr(c.data.tolist())
        if len(text) <= limit:
            return text
    return str(c.type)


def _pp_leaf(v):
    if isinstance(v, Constant):
        return short_value(v)
    return v.name or f"<{'shared' if isinstance(v, SharedVariable) else 'input'} {v.type}>"


def _prop_text(name, value):
    if name == "axis" and isinstance(value, tuple) and len(value) == 1:
        value = value[0]  # sum(x, axis=1) rather than the normalised axis=(1,)
    return repr(value) if isinstance(value, str) else str(value)


def _pp_dimshuffle(op, x):
    """``x.T``, ``x[:, None]``, ``x[:, 0]`` (a dropped length-1 axis) or ``transpose(x, ...)``."""
    kept = [a for a in op.order if a != "x"]
    if kept != sorted(kept):
        if len(kept) == len(op.order) == op.in_ndim:
            return f"{x}.T" if op.order == (1, 0) else f"transpose({x}, {tuple(op.order)})"
        return None
    entries, dropped = [], list(op.dropped)
    for a in op.order:
        if a != "x":
            while dropped and dropped[0] < a:
                dropped.pop(0)
                entries.append("0")
        entries.append("None" if a == "x" else ":")
    entries += ["0" for _ in dropped]
    while entries and entries[-1] == ":":
        entries.pop()  # x[None, :] is x[None]
    return f"{x}[{', '.join(entries)}]" if entries else x


def _pp_special(node, args):
    """Python's own notation where there is one, else None."""
    op, name = node.op, node.op.name
    if name == "matmul":
        return f"({args[0]} @ {args[1]})"
    if name == "dimshuffle":
        return _pp_dimshuffle(op, args[0])
    if name == "shape_at":
        return f"shape({args[0]})[{op.axis}]"
    if name == "subtensor":
        index = str(op)[len(name):]
        if index.startswith("[") and index.count("?") == len(args) - 1:
            for a in args[1:]:
                index = index.replace("?", a, 1)
            return f"{args[0]}{index}"
    return None


def _pp_apply(node, out, args):
    """One node as text, given its inputs' texts."""
    op = node.op
    row = getattr(op, "row", None)
    symbol = getattr(row, "symbol", None)
    if symbol and len(args) == 2:
        return f"({args[0]} {symbol} {args[1]})"
    if symbol == "-" and len(args) == 1:
        return f"-{args[0]}"
    special = _pp_special(node, args) if len(node.outputs) == 1 else None
    if special is not None:
        return special
    # Elementwise ops carry their table row as a prop; it is already the name.
    props = [] if row is not None else [
        f"{p}={_prop_text(p, getattr(op, p))}" for p in op.__props__
        if getattr(op, p) is not None and getattr(op, p) is not False]
    text = f"{op.name}({', '.join(list(args) + props)})"
    return text if len(node.outputs) == 1 else f"{text}[{out.index}]"


def _uses(nodes):
    """How many times each variable is an input of ``nodes``."""
    uses = {}
    for node in nodes:
        for v in node.inputs:
            uses[id(v)] = uses.get(id(v), 0) + 1
    return uses


def pprint(var, max_nodes=PPRINT_MAX_NODES, share=PPRINT_SHARE_CHARS):
    """``var`` as an infix formula: ``((x @ W) + b)``, ``tanh(x)``, ``sum(x, axis=1)``.

    Arithmetic and comparisons use their operators, ``@`` is a matrix
    product, axes inserted or dropped and transposes read as in NumPy
    (``x[:, None]``, ``x.T``), other ops use function syntax with their
    parameters; inputs print by name, constants by value.

    A sub-expression used more than once is written out each time while it is
    short; one longer than ``share`` characters is written once, below the
    formula (``where _1 = ...``), and referred to by its name (``_1``, or the
    variable's own name). A sub-expression of more than ``max_nodes`` nodes
    prints as its name or ``op(...)``. This is meant for small graphs; use
    :func:`debugprint` for large ones.

    >>> import symgrad as sg
    >>> x, b = sg.vector("x"), sg.vector("b")
    >>> sg.pprint(sg.tanh(x * 2 + b))
    'tanh(((x * 2.0) + b))'
    >>> W = sg.matrix("W")
    >>> h = sg.tanh(x @ W + b)
    >>> print(sg.pprint((h * h) - h))
    ((_1 * _1) - _1)
    where
      _1 = tanh(((x @ W) + b))
    """
    if not isinstance(var, Variable):
        raise TypeError(f"pprint expects a symbolic Variable, got {type(var).__name__}")
    memo = {}  # id(variable) -> (text, number of nodes it spells out)
    nodes = toposort([var])
    uses = _uses(nodes)
    taken = {v.name for n in nodes for v in n.inputs if v.owner is None and v.name}
    where = []  # (name, text) of the sub-expressions written once, dependencies first

    def get(v):
        return memo.get(id(v)) or (_pp_leaf(v), 1)

    for node in nodes:
        args = [get(i) for i in node.inputs]
        size = 1 + sum(s for _, s in args)
        for out in node.outputs:
            text = _pp_apply(node, out, [t for t, _ in args])
            if out is var:
                memo[id(out)] = (text, size)
            elif share is not None and uses.get(id(out), 0) > 1 and len(text) > share:
                name = out.name if out.name and out.name not in taken else f"_{len(where) + 1}"
                taken.add(name)
                where.append((name, text))
                memo[id(out)] = (name, 1)
            elif size > max_nodes:
                # Bounded text per node keeps a long chain linear, not quadratic.
                memo[id(out)] = (out.name or f"{node.op.name}(...)", 1)
            else:
                memo[id(out)] = (text, size)
    text = get(var)[0]
    if where:
        text += "\nwhere\n" + "\n".join(f"  {name} = {t}" for name, t in where)
    return text
