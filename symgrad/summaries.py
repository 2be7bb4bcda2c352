"""Summaries: values that model code records and train steps report.

A model is code that builds graph; some of what it builds is worth watching
while it trains (an accuracy, an activation's mean, a weight norm) without
being a loss. ``sg.summary(name, expr)`` records ``expr`` in the active scope
and returns it unchanged, so it can sit inside an expression. A train step
built later returns, on every call, each summary of the active scope that it
can compute from its inputs and shared variables; the trainer is never told.

A default scope always exists; ``with sg.summary_scope():`` opens a fresh one
(and restores the previous one on exit).

>>> import symgrad as sg
>>> x = sg.vector("x")
>>> with sg.summary_scope() as scope:
...     m = sg.summary("x_mean", x.mean())
>>> scope.names()
['x_mean']
"""

from .errors import ShapeError
from .graph import Variable, free_inputs, shape_text

__all__ = ["summary", "summary_scope", "SummaryScope", "active_scope"]


class SummaryScope:
    """An ordered record of ``(name, expr)`` summaries.

    Every call of :func:`summary` appends a record, so a model whose graph is
    built twice (for instance once for training and once for inference, on
    other input variables) records a name twice. :meth:`computable` resolves
    this: per name, the latest record a given set of inputs can compute.

    A scope is also a context manager: ``with scope:`` makes it the active
    scope again, to record more into it.
    """

    def __init__(self):
        self.records = []  # (name, Variable), in recording order

    def record(self, name, expr):
        """Append ``(name, expr)``; see :func:`summary` for the checks."""
        self.records.append((name, expr))

    def names(self):
        """Each recorded name once, in order of first record."""
        return list(dict.fromkeys(name for name, _ in self.records))

    def computable(self, inputs):
        """``{name: expr}``: per name, the latest record computable from ``inputs``.

        Computable means every free input of ``expr`` is one of ``inputs``
        (shared variables and constants are always available). Names come in
        the order of their first computable record.
        """
        given = {id(v) for v in inputs}
        found = {}
        for name, expr in self.records:
            if all(id(v) in given for v in free_inputs([expr])):
                found[name] = expr  # a later record replaces the value, keeps the position
        return found

    def clear(self):
        """Forget every record."""
        self.records.clear()

    def __len__(self):
        return len(self.records)

    def __iter__(self):
        return iter(list(self.records))

    def __enter__(self):
        _scopes.append(self)
        return self

    def __exit__(self, *exc):
        # Scopes are strictly nested; removing this one (not merely the last) keeps a
        # mismatched exit from silently dropping another scope.
        for i in range(len(_scopes) - 1, 0, -1):
            if _scopes[i] is self:
                del _scopes[i]
                break
        return False

    def __repr__(self):
        return f"<SummaryScope {self.names()}>"


_scopes = [SummaryScope()]  # the default scope sits at the bottom and is never removed


def active_scope():
    """The scope :func:`summary` records into now."""
    return _scopes[-1]


def summary_scope():
    """A fresh, empty summary scope, active inside a ``with`` block.

    Returns
    -------
    SummaryScope
        Use it as ``with sg.summary_scope() as scope:``; on exit the previous
        scope is active again. Train steps built inside the block see only the
        summaries recorded in it.

    Examples
    --------
    >>> import symgrad as sg
    >>> x = sg.vector("x")
    >>> with sg.summary_scope() as scope:
    ...     y = sg.summary("x_max", x.max())
    >>> len(scope)
    1
    """
    return SummaryScope()


def summary(name, expr):
    """Record ``expr`` under ``name`` in the active scope and return ``expr``.

    Parameters
    ----------
    name : str
        The key under which train steps report the value (not ``"loss"``,
        which is the total loss).
    expr : Variable
        A 0-d value (float, int or bool; steps report it as a Python float).
        A value with more dimensions is refused here, when the graph is built:
        reduce it first (``expr.mean()``, ``expr.max()``, ``sg.std(expr)``).

    Returns
    -------
    Variable
        ``expr`` itself, so a summary can wrap a sub-expression in place.

    Raises
    ------
    TypeError
        For a name that is not a non-empty str or an ``expr`` that is not a
        symbolic Variable.
    symgrad.ShapeError
        For an ``expr`` that is not 0-d.

    Notes
    -----
    A train step reports the values from before its own update (like its
    losses). The same name recorded again (say, the model's graph built a
    second time) does not replace the earlier record: each step takes, per
    name, the latest record it can compute from its inputs.

    Examples
    --------
    >>> import symgrad as sg
    >>> logits = sg.matrix("logits")
    >>> peak = sg.summary("logit_max", logits.max())
    >>> peak is sg.summary("again", peak)
    True
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"summary: name must be a non-empty str, got {name!r}")
    if name == "loss":
        raise ValueError("summary: the name 'loss' is reserved for a train step's total loss; "
                         "pick another name")
    if not isinstance(expr, Variable):
        raise TypeError(f"summary {name!r}: expected a symbolic Variable, got "
                        f"{type(expr).__name__}; a summary records graph, not a value")
    if expr.ndim != 0:
        made = f" made at {expr.owner.trace}" if expr.owner is not None else ""
        raise ShapeError(f"summary {name!r}: a summary is one number, got a {expr.ndim}-d "
                         f"{expr.dtype} value of shape {shape_text(expr.type.shape, unknown='?')}"
                         f"{made}; "
                         f"reduce it first, e.g. expr.mean() or expr.max()")
    active_scope().record(name, expr)
    return expr
