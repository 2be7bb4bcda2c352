"""Graph rewrites: the pipeline ``sg.function`` runs before lowering, in every mode.

A gradient graph as ``sg.grad`` derives it repeats forward values, carries
identities (``x * 1``, a ``sum_to`` that sums nothing, transposes of
transposes) and follows the user's formulas even where they overflow. The
pipeline below rewrites the graph of a compiled function (outputs and update
expressions together) into an equivalent one; ``f.graph`` shows the result,
and mode "py", "c" and "debug" all run it. Elementwise fusion is not here:
it belongs to the C backend's lowering (``plan_fusion`` in :mod:`symgrad.codegen.lower`).

The pipeline is ``PASSES``, a flat ordered list of named passes:

========= ===== ==============================================================
merge     basic copy the graph; merge structurally equal nodes (same op and
                ``__props__``, same inputs; constants by dtype, shape and
                value), so a forward value the backward graph recomputes is
                computed once
inner     basic the graphs of loops and branches (a scan's step, an ifelse's
                branches) rewritten by this same pipeline, at the same level;
                from "safe" on, products of a step's sequence slices by
                loop-invariant matrices first move out of the loop, as one
                product over every step, and so do sums of products a loop
                carries (a gradient loop's weight gradients) (:mod:`.loops`);
                before the sweep, a loop's recurrent outputs read only at their
                last step (``hs[-1]``) become final values: no stack of every
                step (:func:`.loops.keep_last_values`), and a stack read only
                backwards (``ys[::-1]``) is kept last step first
                (:func:`.loops.stacks_read_backwards`)
fold      basic constant folding with the op's own ``perform`` (bit-identical)
                and static shapes (:mod:`.fold`)
stabilise safe  stable forms of naive formulas, forward and gradient
                (:mod:`.stabilise`)
algebra   safe  exact algebraic identities, no-op shape ops, lengths taken from
                inputs (:mod:`.algebra`)
fast-math fast  the inexact identities listed below (:mod:`.algebra`)
gemm      safe  transposes, scales, bias adds and accumulations into one BLAS
                gemm (:mod:`.gemm`)
slices    safe  slices of an elementwise result that only slices read taken
                from its operands instead (``(p + b)[:, :H]`` -> ``p[:, :H] +
                b[:H]``, an LSTM's gates): the loops fuse (:mod:`.slices`)
dce       basic dead code: what no output reaches is gone
========= ===== ==============================================================

How they run (:mod:`.engine`): the passes from ``merge`` to ``fast-math``
share one bottom-up sweep. Each node, its inputs already final, is merged
with an equal node if there is one, then offered to the passes' rules in the
order above; a replacement's new nodes are offered in turn, so every node
leaves the sweep at a fixed point of all of them (and a pattern that
stabilisation needs is seen before algebra could change it). ``gemm`` needs
to know which products nothing else uses, so it walks the settled graph
again, rewriting the pipeline's own copy in place (``slices``, which needs
the readers of a value, shares that walk). Both walks start from the
outputs: dead nodes are never visited, which is all ``dce`` has to do.

Levels (``sg.function(..., rewrite=...)``, ``sg.config.rewrite``, env
``SYMGRAD_REWRITE``): ``"none"`` runs nothing (the graph as written, for
debugging a rewrite), ``"basic"`` only what never changes a bit (merge, fold,
dce), ``"safe"`` (the default) everything exact plus stabilisation and gemm,
``"fast"`` adds the fast-math rewrites.

Exactness. At "basic" and in the algebra pass every rewrite gives the same
bits, NaN, infinities and the sign of zero included (two documented
exceptions: stabilisation changes values where the naive formula rounds
badly, which is its point, and a compiled gemm may round its accumulation
differently in the last bits, as BLAS may anyway). Refused, because IEEE
arithmetic disagrees, and applied only at level "fast" where marked *:

* ``x * 0 -> 0`` * (NaN and inf give NaN; negative x gives -0.0);
* ``x - x -> 0`` * and ``x / x -> 1`` * (NaN, inf; 0/0);
* ``x + 0.0 -> x`` * for floats (-0.0 + 0.0 is +0.0; ``x + (-0.0)`` and
  ``x - 0.0`` are exact and applied);
* ``x ** 2 -> square(x)`` * (libm's pow may differ from x * x in the last bit);
* ``log(exp(x)) -> x`` * (exp overflows to inf, underflows to 0);
* ``(x + y) - y -> x``, reassociation and distribution (``(a + b) + c``,
  ``a * b + a * c``): rounding differs; never applied;
* ``-(a - b) -> b - a`` (gives -0.0 where a == b); never applied;
* ``x / c -> x * (1 / c)`` (1/c rounds); never applied;
* ``sum(broadcast_to(x)) -> n * x`` (n additions round differently from
  one product); never applied;
* commuting ``maximum`` and ``minimum`` when merging equal nodes
  (``maximum(0.0, -0.0)`` is -0.0, the other order 0.0); ``+`` and ``*``
  commute exactly and are merged in either order;
* ``exp(log(x)) -> x``, ``sqrt(x) ** 2 -> x``: wrong for x < 0; never applied.

Run-time checks. A rewrite never moves an error to another line: a
replacement node takes the trace (the user's ``file:line``) of the node it
replaces, so an error raised by a rewritten node still names the line the
user wrote. A shape fact a rewrite relies on comes from a check some node
makes when it runs (a product's contracted lengths); a rewrite that makes a
node dead (``shape(f(x))`` answered from ``x``) also drops the checks that
node would have made, as an optimising compiler may.
"""

import gc
import os
import time

from ..config import REWRITE_LEVELS as LEVELS
from ..config import check_rewrite, config
from ..graph import toposort
from .algebra import ALGEBRA, FAST
from .engine import InPlace, RuleSet, Sweep
from .fold import FOLD
from .gemm import GEMM
from .loops import (accumulations_after_the_loop, hoist_sequence_work, keep_last_values,
                    merge_loops, products_after_the_loop, stacks_read_backwards)
from .shapes import Dims
from .slices import SLICES
from .stabilise import STABILISE

__all__ = ["PASSES", "LEVELS", "rewrite", "Pass"]

# Raise instead of skipping a rule that fails (tests; env SYMGRAD_REWRITE_STRICT=1). Off,
# a rule that cannot apply leaves its node as it was: compiling never fails on a rewrite.
strict = os.environ.get("SYMGRAD_REWRITE_STRICT", "") not in ("", "0")


class Pass:
    """One named pass: its rules and the lowest level it runs at.

    ``walk=True`` starts a new walk over the graph the passes before it settled
    (``gemm`` needs its use counts); ``dims``: its rules ask for shape facts.
    """

    def __init__(self, name, level, rules=None, walk=False, dims=False):
        self.name, self.level, self.rules = name, level, rules
        self.walk, self.dims = walk, dims

    def __repr__(self):
        return f"<pass {self.name} ({self.level})>"


INNER = RuleSet("inner")


@INNER("scan", "ifelse")
def rewrite_inner_graphs(node, sweep):
    """A node's inner graphs (``op.inner_graphs()``) through the whole pipeline: the new
    node holds a new op over the rewritten graphs (their placeholders unchanged)."""
    op, inputs = node.op, node.inputs
    if getattr(op, "rewritten", False):
        return None
    finishes = []
    if LEVELS.index(sweep.level) >= LEVELS.index("safe"):
        # The step as the first sweep leaves it (a shape read from a product's operands,
        # not from the product), before gemm hides its products in gemm nodes.
        first = [_run(list(graph.outputs), sweep.level, None, walks=1)
                 for _, graph in op.inner_graphs()]
        op = op.with_inner_outputs(first)
        hoisted = hoist_sequence_work(op, inputs)
        if hoisted is not None:
            op, inputs = hoisted
        sunk = products_after_the_loop(op, inputs)
        if sunk is not None:
            op, inputs, finish = sunk
            finishes.append(finish)
    outputs = [_run(list(graph.outputs), sweep.level, None) for _, graph in op.inner_graphs()]
    new = op.with_inner_outputs(outputs)
    if LEVELS.index(sweep.level) >= LEVELS.index("safe"):
        moved = accumulations_after_the_loop(new, inputs)
        if moved is not None:
            new, inputs, finish = moved
            finishes.append(finish)
    new.rewritten = True
    results = new.make_node(*inputs).outputs
    for finish in reversed(finishes):
        results = finish(results)
    return results


PASSES = [
    Pass("merge", "basic", walk=True),            # the first walk copies the graph
    Pass("inner", "basic", INNER),
    Pass("fold", "basic", FOLD),
    Pass("stabilise", "safe", STABILISE, dims=True),
    Pass("algebra", "safe", ALGEBRA, dims=True),
    Pass("fast-math", "fast", FAST, dims=True),
    Pass("gemm", "safe", GEMM, walk=True),        # in place, on the pipeline's copy
    Pass("slices", "safe", SLICES),               # the same walk: it needs the readers too
    Pass("dce", "basic"),                         # by construction: walks start at the outputs
]


def _walks(level):
    """The passes to run at ``level``, grouped by walk: [[Pass, ...], ...]."""
    rank = LEVELS.index(level)
    groups = []
    for p in PASSES:
        if LEVELS.index(p.level) > rank or p.rules is None and not p.walk:
            continue
        if p.walk or not groups:
            groups.append([])
        groups[-1].append(p)
    return groups


def rewrite(outputs, level=None, report=None):
    """The rewritten ``outputs`` (a list of Variables) at ``level`` (default ``config.rewrite``).

    The user's graph is not changed. With ``report`` a list, one dict per sweep is
    appended: ``name`` (its passes), ``nodes`` (after it), ``seconds``, ``fired``
    (rule name -> count).

    Examples
    --------
    >>> import symgrad as sg
    >>> from symgrad.rewrite import rewrite
    >>> x = sg.vector("x")
    >>> (y,) = rewrite([sg.log(1 + x) * 1])
    >>> print(sg.debugprint(y))
    log1p [id A]
     |x [id B]
    """
    level = check_rewrite(config.rewrite if level is None else level)
    outputs = list(outputs)
    if level == "none":
        return outputs
    # The sweeps allocate many small objects that live on: the cyclic collector would
    # trace the whole heap again and again while they run (most of the time, measured).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _run(outputs, level, report)
    finally:
        if was_enabled:
            gc.enable()


def _run(outputs, level, report, walks=None):
    outputs = stacks_read_backwards(keep_last_values(merge_loops(outputs)))
    if report is not None:
        report.append({"name": "input", "nodes": len(toposort(outputs)), "seconds": 0.0,
                       "fired": {}})
    for i, group in enumerate(_walks(level)[:walks]):
        t0 = time.perf_counter()
        rules = [p.rules for p in group if p.rules is not None]
        if i == 0:
            # the first walk copies the graph: from here on every node is the pipeline's own
            walk = Sweep(rules, strict=strict)
            walk.level = level
            if any(p.dims for p in group):
                walk.dims = Dims()
        else:
            walk = InPlace(rules, strict=strict)
        outputs = walk.run(outputs)
        if report is not None:
            report.append({"name": "+".join(p.name for p in group),
                           "nodes": len(toposort(outputs)),
                           "seconds": time.perf_counter() - t0, "fired": dict(walk.fired)})
    return outputs
