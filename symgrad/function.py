"""``sg.function``: a graph made callable.

Mode "py" runs the NumPy reference evaluator. Whatever the mode, a function
checks its arguments (naming the input, what it expects and what it got),
returns arrays owned by the caller, applies updates after every right-hand
side has been computed from the old values, and pickles.
"""

import contextlib
import os
import sys
import time
import warnings

import numpy as np

from . import dtypes as _dt
from .config import check_mode, check_rewrite, config
from .errors import InputError, ShapeError
from .graph import (Constant, SharedVariable, Variable, as_variable, clone_replace,
                    flatten_graph, free_inputs, graph_leaves, shape_text, toposort,
                    unflatten_graph, unsettled_lengths, user_trace)
from .interp import Program
from .printing import debugprint
from .random import with_stream_updates
from .rewrite import rewrite as _rewrite

__all__ = ["function", "Function", "Graph", "In"]


class Graph:
    """The graph a function runs: its inputs, outputs and update expressions.

    ``print(f.graph)`` shows it with :func:`symgrad.debugprint`.
    """

    def __init__(self, inputs, outputs, updates):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.updates = list(updates)  # (shared, expr)

    @property
    def nodes(self):
        return toposort(self.outputs + [e for _, e in self.updates])

    @property
    def shared(self):
        """Every shared variable the graph reads or updates, each once."""
        leaves = graph_leaves(self.inputs, self.outputs + [e for _, e in self.updates])
        read = [v for v in leaves if isinstance(v, SharedVariable)]
        seen = {id(v) for v in read}
        return read + [sv for sv, _ in self.updates if id(sv) not in seen]

    def __str__(self):
        return debugprint(self)

    def __repr__(self):
        return f"<Graph: {len(self.inputs)} inputs, {len(self.outputs)} outputs, " \
               f"{len(self.updates)} updates, {len(self.nodes)} nodes>"


def _flatten_outputs(outputs):
    """(list of Variables, a function rebuilding the user's structure from a list of values)."""
    if outputs is None:
        return [], lambda vals: None
    if isinstance(outputs, dict):
        keys = list(outputs)
        for k in keys:
            if not isinstance(k, str):
                raise TypeError(f"output dict keys must be str, got {k!r}")
        return [_as_output(outputs[k], repr(k)) for k in keys], lambda vals: dict(zip(keys, vals))
    if isinstance(outputs, (list, tuple)):
        kind = type(outputs)
        return ([_as_output(o, f"#{i}") for i, o in enumerate(outputs)],
                lambda vals: kind(vals) if kind in (list, tuple) else list(vals))
    return [_as_output(outputs, "")], lambda vals: vals[0]


def _structure_of(outputs):
    if outputs is None:
        return ("none", None)
    if isinstance(outputs, dict):
        return ("dict", list(outputs))
    if isinstance(outputs, tuple):
        return ("tuple", None)
    if isinstance(outputs, list):
        return ("list", None)
    return ("single", None)


def _as_output(o, label):
    if isinstance(o, Variable):
        return o
    if isinstance(o, (int, float, bool, np.ndarray, np.generic)):
        return as_variable(o)
    raise TypeError(f"output {label}: expected a symbolic Variable, got {type(o).__name__}")


def _pairs(mapping, what):
    if mapping is None:
        return []
    items = list(mapping.items()) if isinstance(mapping, dict) else list(mapping)
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise TypeError(f"{what} must be a dict or a list of (variable, expression) pairs, "
                            f"got the entry {item!r}")
    return [tuple(i) for i in items]


def _check_updates(updates):
    out, seen = [], set()
    for sv, expr in _pairs(updates, "updates"):
        if not isinstance(sv, SharedVariable):
            raise TypeError(f"updates: the left-hand side must be a shared variable, got {sv!r}")
        if id(sv) in seen:
            raise ValueError(f"updates: {sv.name or sv} is updated twice")
        seen.add(id(sv))
        if not isinstance(expr, Variable):
            expr = Constant(expr, dtype=sv.dtype)
        if expr.dtype != sv.dtype or expr.ndim != sv.ndim:
            raise TypeError(
                f"updates: {sv.name or 'a shared variable'} holds {sv.ndim}-d {sv.dtype} but its "
                f"update expression is {expr.type}"
                + (f" (made at {expr.owner.trace})" if expr.owner is not None else "")
                + f"; cast it with .astype('{sv.dtype}')" * (expr.ndim == sv.ndim))
        out.append((sv, expr))
    return out


class _UpdateShapes:
    """Updates keeping their variables' static shapes.

    What the graph already says is checked here (``TypeError`` at compile
    time); the lengths it leaves open are checked on every call, for all
    updates before any is stored, so a call that fails changes no variable.
    """

    def __init__(self, upd, exprs):
        fallback = user_trace()  # an update that is a leaf (an input, a shared variable)
        self.traces = [e.owner.trace if e.owner is not None else fallback for _, e in upd]
        self.updated = [sv for sv, _ in upd]
        for sv, e, trace in zip(self.updated, exprs, self.traces):  # exprs: after givens
            have, got = sv.type.shape, e.type.shape
            if any(s is not None and t is not None and s != t for s, t in zip(have, got)):
                raise TypeError(
                    f"updates: {_shared_label(sv)} has the static shape {shape_text(have)} "
                    f"but its update expression (at {trace}) has shape {shape_text(got)}; an "
                    f"update must keep its variable's shape (create the variable with "
                    f"sg.shared(value, shape=...) and None on the axes whose length may change)")
        self.checks = []

    def plan(self, final_exprs):
        """The lengths to check at call time: those the (rewritten) updates leave open."""
        checks = [(j, unsettled_lengths(sv.type.shape, e.type.shape))
                  for j, (sv, e) in enumerate(zip(self.updated, final_exprs))]
        self.checks = [(j, axes) for j, axes in checks if axes]
        return self.checks

    def verify(self, values):
        """Raise ``ShapeError`` if one of ``values`` (one per update) breaks a static shape."""
        for j, axes in self.checks:
            shape = values[j].shape
            if any(shape[k] != s for k, s in axes):
                raise self.error(j, shape)

    def error(self, j, shape):
        sv = self.updated[j]
        label = _shared_label(sv)
        return ShapeError(f"the update of {label} (at {self.traces[j]}) has shape {shape}, but "
                          f"{label} has the static shape {shape_text(sv.type.shape)}; an update "
                          f"must keep it, and no shared variable was changed by this call (create "
                          f"the variable with sg.shared(value, shape=...) and None on the axes "
                          f"whose length may change)")


def _shared_label(sv):
    return repr(sv.name) if sv.name else "a shared variable"


def _check_givens(givens):
    out = {}
    for var, rep in _pairs(givens, "givens"):
        if not isinstance(var, Variable):
            raise TypeError(f"givens: keys must be Variables, got {var!r}")
        rep = as_variable(rep, dtype=var.dtype if not isinstance(rep, Variable) else None)
        if rep.dtype != var.dtype or rep.ndim != var.ndim:
            raise TypeError(f"givens: {var} is {var.type} but its replacement is {rep.type}")
        out[var] = rep
    return out


class In:
    """An input of :func:`sg.function` with a default value (Theano's ``In``).

    ``sg.function([x, sg.In(lr, value=0.1)], ...)`` compiles a function whose
    call may leave ``lr`` out: ``f(xv)``, ``f(xv, 0.05)`` and ``f(xv, lr=0.05)``
    all work (by name: ``name=``, else the variable's name). The default is
    converted once, when the function is built, as a call's value would be (an
    ``InputError`` there if it does not fit the variable), and is never
    written to. Without ``value`` the input stays required (``In`` then only
    renames it).

    Theano's other arguments have no equivalent: ``update=`` is a shared
    variable with ``updates=`` here; ``mutable``/``borrow`` do not apply (inputs
    are never overwritten); ``strict``/``allow_downcast`` are the rule that a
    value is accepted when it converts without loss, or
    ``sg.function(..., allow_input_downcast=True)`` for every input.

    >>> import numpy as np, symgrad as sg
    >>> x, lr = sg.vector("x"), sg.scalar("lr")
    >>> f = sg.function([x, sg.In(lr, value=0.5)], x * lr, mode="py")
    >>> f(np.array([2.0])), f(np.array([2.0]), lr=3.0)
    (array([1.]), array([6.]))
    """

    _THEANO_ONLY = {
        "update": "keep the state in sg.shared(...) and pass updates= to sg.function",
        "mutable": "inputs are never overwritten", "borrow": "inputs are never overwritten",
        "strict": "a value is accepted when it converts to the input's dtype without loss",
        "allow_downcast": "a value is accepted when it converts to the input's dtype without "
                          "loss; pass allow_input_downcast=True to sg.function to convert "
                          "every input anyway",
        "implicit": "shared variables are found in the graph; they are not inputs",
        "shared": "shared variables are found in the graph; they are not inputs",
        "autoname": "the keyword is name=, else the variable's name",
    }

    def __init__(self, variable, value=None, name=None, **theano_only):
        for key in theano_only:
            why = self._THEANO_ONLY.get(key)
            if why is None:
                raise TypeError(f"In() got an unexpected keyword argument {key!r}")
            raise TypeError(f"In(..., {key}=...) is Theano's and has no equivalent in symgrad: "
                            f"{why}")
        if not isinstance(variable, Variable):
            raise TypeError(f"In: the first argument is the symbolic input, got "
                            f"{type(variable).__name__}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"In: name must be a str, got {type(name).__name__}")
        self.variable = variable
        self.value = value
        self.name = name if name is not None else variable.name
        # value=None is Theano's "no default" too
        self.has_default = value is not None

    def __repr__(self):
        default = f", value={self.value!r}" if self.has_default else ""
        return f"In({self.variable!r}{default})"


def _input_label(v, i):
    return f"'{v.name}'" if v.name else f"#{i}"


class Function:
    """A compiled function; make one with :func:`symgrad.function`."""

    def __init__(self, inputs, outputs=None, updates=None, givens=None, mode=None, name=None,
                 profile=False, rewrite=None, on_unused_input=None, allow_input_downcast=None):
        t_start = time.perf_counter()
        self._structure = _structure_of(outputs)
        self.mode = check_mode(config.mode if mode is None else mode)
        self.rewrite = check_rewrite(config.rewrite if rewrite is None else rewrite)
        self.name = name
        on_unused_input = "warn" if on_unused_input is None else on_unused_input
        if on_unused_input not in ("raise", "warn", "ignore"):
            raise ValueError(f"on_unused_input must be 'raise', 'warn' or 'ignore', got "
                             f"{on_unused_input!r}")
        #: Theano's ``allow_input_downcast=True``: values that do not convert without loss
        #: are cast anyway (a float64 array to a float32 input, rounding).
        self.allow_input_downcast = bool(allow_input_downcast)
        single_input = isinstance(inputs, (Variable, In))
        inputs = [inputs] if single_input else list(inputs)
        specs = {i: v for i, v in enumerate(inputs) if isinstance(v, In)}
        inputs = [v.variable if isinstance(v, In) else v for v in inputs]
        for i, v in enumerate(inputs):
            if not isinstance(v, Variable):
                raise TypeError(f"inputs: entry #{i} is {type(v).__name__}, expected a symbolic "
                                f"Variable")
            if isinstance(v, (Constant, SharedVariable)) or v.owner is not None:
                kind = ("a constant" if isinstance(v, Constant) else "a shared variable"
                        if isinstance(v, SharedVariable) else f"computed by {v.owner.op}")
                raise TypeError(f"inputs: {_input_label(v, i)} is {kind}; inputs must be free "
                                f"variables made by sg.scalar/vector/matrix/tensor")
        if len({id(v) for v in inputs}) != len(inputs):
            raise ValueError("inputs: the same variable is listed twice")
        self.inputs = inputs
        flat, self._restructure = _flatten_outputs(outputs)
        self.outputs = flat
        upd = _check_updates(updates)
        giv = _check_givens(givens)
        exprs = flat + [e for _, e in upd]
        if giv:
            exprs = clone_replace(exprs, giv)
        outs, upd_exprs = exprs[:len(flat)], exprs[len(flat):]
        # Each stream the graph draws from advances past the counters it used (sg.random).
        #: The states of the random streams this function advances itself.
        upd, upd_exprs, self.random_states = with_stream_updates(outs, upd, upd_exprs)
        self._check_closed(outs + upd_exprs)
        if not getattr(self, "_unpickling", False) and on_unused_input != "ignore":
            _warn_unused_inputs(inputs, outs + upd_exprs, on_unused_input == "raise")
        self._update_shapes = _UpdateShapes(upd, upd_exprs)
        # The rewrite pipeline: f.graph, mode "py", "c" and "debug" all see its result.
        t_rewrite = time.perf_counter()
        exprs = _rewrite(outs + upd_exprs, self.rewrite)
        t_rewrite = time.perf_counter() - t_rewrite
        outs, upd_exprs = exprs[:len(flat)], exprs[len(flat):]
        self.graph = Graph(inputs, outs, [(sv, e) for (sv, _), e in zip(upd, upd_exprs)])
        self._shared_updated = [sv for sv, _ in upd]
        update_checks = self._update_shapes.plan(upd_exprs)
        self._program = Program(inputs, outs + upd_exprs)
        self._kernel = None  # what a call runs, when it is not self._program
        #: The compiled kernel (a ``backend.CKernel``: its ``steps``, ``source``, ...)
        #: behind mode "c" or "debug"; None in mode "py".
        self.kernel = None
        # Imported here, not above: mode "py" needs neither the code generator nor
        # the compiled runtime, so `import symgrad` loads neither.
        if self.mode == "c":
            from .backend import CKernel
            self._kernel = self.kernel = CKernel(
                inputs, outs + upd_exprs, name=name or "function", profile=bool(profile),
                updates=[(len(outs) + j, sv) for j, (sv, _) in enumerate(upd)])
        elif self.mode == "debug":
            from .debugmode import DebugRunner
            self._kernel = DebugRunner(
                inputs, outs + upd_exprs, name=name or "function",
                updates=[(len(outs) + j, sv) for j, (sv, _) in enumerate(upd)])
            self.kernel = self._kernel.kernel
        self._n_out = len(outs)
        self._names = {v.name: i for i, v in enumerate(inputs) if v.name}
        #: Input index -> (converted) default value of the inputs given as ``sg.In(x, value=)``.
        self.defaults = {}
        for i, spec in specs.items():
            if spec.name != inputs[i].name:
                self._names.pop(inputs[i].name, None)
                if spec.name in self._names:
                    raise ValueError(f"inputs: the name {spec.name!r} is given twice")
                self._names[spec.name] = i
            if spec.has_default:
                default = convert_input(inputs[i], spec.value,
                                        f"{_input_label(inputs[i], i)} (its default)")
                default = np.array(default, copy=True)
                default.flags.writeable = False
                self.defaults[i] = default
        self._checks = [(v, np.dtype(v.dtype), v.ndim,
                         None if all(d is None for d in v.type.shape) else v.type.shape,
                         _input_label(v, i)) for i, v in enumerate(inputs)]
        self.profile = bool(profile)
        self._profile = {} if profile else None
        self._calls = 0
        # A library's counters are shared by every function loaded from it: start from here.
        self._prof_base = (self._kernel.node_times() if self.profile and self.mode == "c"
                           else None)
        # Mode "c" without profiling: positional calls run wholly in the runtime.
        self._bound = None
        if self.mode == "c" and not self.profile:
            self._bound = self._kernel.bind([(dt, nd, st) for _, dt, nd, st, _ in self._checks],
                                            self._shared_updated, self._n_out, self._convert,
                                            update_checks, self._update_shapes.error)
        ck = self.kernel
        #: Seconds spent building this function, by stage (see profile_report).
        self.compile_times = {"rewrite": t_rewrite, **(ck.compile_times if ck else {}),
                              "total": time.perf_counter() - t_start}
        #: Whether the compiled library came from the disk cache (None in mode "py").
        self.cache_hit = ck.cache_hit if ck else None

    def _check_closed(self, exprs):
        given = {id(v) for v in self.inputs}
        for v in free_inputs(exprs):
            if id(v) not in given:
                user = next((n for n in toposort(exprs) if any(i is v for i in n.inputs)), None)
                used = f", used by {user.op} at {user.trace}" if user is not None else ""
                raise InputError(f"the graph needs the input {v.name or repr(v)}{used}, which is "
                                 f"not in inputs; add it to inputs or replace it with givens")

    @property
    def source(self):
        """The generated C source (None in mode "py")."""
        return None if self._kernel is None else self._kernel.source

    # ------------------------------------------------------------------ calling

    def arguments(self, *args, **kwargs):
        """The input values a call with these arguments runs on, in input order.

        Bound by position and by name, checked and converted as a call does
        it (``InputError`` otherwise); nothing runs.
        """
        return self._bind(args, kwargs)

    def _bind(self, args, kwargs):
        n = len(self.inputs)
        if len(args) > n:
            raise InputError(f"{self._label()} takes {n} input{'s' * (n != 1)}, got {len(args)}")
        values = list(args) + [_MISSING] * (n - len(args))
        for key, val in kwargs.items():
            if key not in self._names:
                known = ", ".join(repr(k) for k in self._names) or "none (inputs have no names)"
                raise InputError(f"{self._label()} got an unknown keyword {key!r}; input names: {known}")
            i = self._names[key]
            if values[i] is not _MISSING:
                raise InputError(f"{self._label()} got input {key!r} twice (by position and by name)")
            values[i] = val
        for i, default in self.defaults.items():
            if values[i] is _MISSING:
                values[i] = default
        missing = [_input_label(v, i) for i, (v, val) in enumerate(zip(self.inputs, values))
                   if val is _MISSING]
        if missing:
            raise InputError(f"{self._label()} is missing input {', '.join(missing)}")
        return [convert_input(v, val, _input_label(v, i), self.allow_input_downcast)
                for i, (v, val) in enumerate(zip(self.inputs, values))]

    def _label(self):
        return f"function {self.name!r}" if self.name else "the function"

    def _fast_bind(self, args):
        """Positional arguments that already fit pass untouched; the rest are converted."""
        values = []
        for (var, dtype, ndim, static, label), v in zip(self._checks, args):
            if type(v) is np.ndarray and v.dtype == dtype and v.ndim == ndim and (
                    static is None or var.type.accepts_shape(v.shape)):
                values.append(v)
            elif type(v) is float and ndim == 0 and dtype.kind == "f":
                values.append(np.array(v, dtype))
            else:
                values.append(convert_input(var, v, label, self.allow_input_downcast))
        return values

    def _convert(self, i, value):
        return convert_input(self.inputs[i], value, self._checks[i][4],
                             self.allow_input_downcast)

    def __call__(self, *args, **kwargs):
        bound = self._bound
        if bound is not None and not kwargs and len(args) == len(self._checks):
            return self._restructure(bound(*args))
        if kwargs or len(args) != len(self._checks):
            values = self._bind(args, kwargs)
        else:
            values = self._fast_bind(args)
        if self._kernel is not None and self._profile is None:
            # Kernel outputs are fresh and distinct: nothing to copy.
            results = self._kernel(values)
            n = self._n_out
            self._update_shapes.verify(results[n:])  # all checked before any is stored
            for sv, r in zip(self._shared_updated, results[n:]):
                sv.store_update(r)
            self._calls += 1
            return self._restructure(results[:n])
        if self._kernel is not None:
            t0 = time.perf_counter()
            results = self._kernel(values)
            if self._profile is not None:
                entry = self._profile.setdefault("kernel", [None, 0, 0.0])
                entry[1] += 1
                entry[2] += time.perf_counter() - t0
        else:
            results = self._program.run(values, self._profile)
        self._calls += 1
        self._update_shapes.verify(results[self._n_out:])  # all checked before any is stored
        owned = _Owned(values, self._program)
        outs = [owned.take(r) for r in results[:self._n_out]]
        for sv, r in zip(self._shared_updated, results[self._n_out:]):
            sv.store_update(owned.take(r))
        return self._restructure(outs)

    # ------------------------------------------------------------------ introspection

    def profile_report(self):
        """Where the time goes (needs ``profile=True``), then compile time by stage.

        One row per node (mode "py") or per step of the compiled kernel (mode
        "c": a node, or a fused group of elementwise nodes timed as one loop,
        ``fused group of 3 ops: ...``; ``[K4]`` is the step's number in
        ``f.source``): calls, total seconds, share of the total. Below it, the
        seconds spent building the function by stage (``f.compile_times``):
        rewrite, codegen, C compile (or cache hit), load.
        """
        if self._profile is None:
            raise RuntimeError("profile_report needs sg.function(..., profile=True)")
        rows = [(_profile_label(node, None), calls, t) for node, calls, t
                in self._profile.values()]
        if self._prof_base is not None:
            # Mode "c": the kernel timed each node (a fused group under its root).
            steps = {id(s.root): s for s in self.kernel.steps}
            rows = [(_profile_label(node, steps.get(id(node))), self._calls, t - t0)
                    for (node, t), (_, t0) in zip(self._kernel.node_times(), self._prof_base)]
        rows.sort(key=lambda e: -e[2])
        total = sum(e[2] for e in rows) or 1e-300
        width = _PROFILE_LABEL
        lines = [f"{'node':<{width}} {'calls':>8} {'time (s)':>12} {'share':>7}"]
        for label, calls, t in rows:
            lines.append(f"{label:<{width}} {calls:>8} {t:>12.6f} {100 * t / total:>6.1f}%")
        lines.append(f"{'total':<{width}} {self._calls:>8} {total:>12.6f} {100.0:>6.1f}%")
        return "\n".join(lines + [""] + self._compile_report())

    @contextlib.contextmanager
    def outside_profile(self):
        """Keep the kernel time spent inside out of :meth:`profile_report`.

        The compiled library's per-node counters are shared by every copy of
        it loaded in the process (``sg.explain`` loads a second one to
        measure workspace): what runs inside this block is not this
        function's calls, so the report's baseline moves past it.
        """
        if self._prof_base is None:
            yield
            return
        before = self.kernel.node_times()
        try:
            yield
        finally:
            after = self.kernel.node_times()
            self._prof_base = [(n, t0 + (t2 - t1)) for (n, t0), (_, t1), (_, t2)
                               in zip(self._prof_base, before, after)]

    def _compile_report(self):
        times = self.compile_times
        stages = [(k, t) for k, t in times.items() if k != "total"]
        other = times["total"] - sum(t for _, t in stages)
        notes = {"other": "argument checks, the reference program, binding"}
        if self.cache_hit is not None:
            notes["compile"] = ("cache hit: the C compiler did not run" if self.cache_hit
                                else "the C compiler ran (not in the cache yet)")
        lines = ["compile time by stage (f.compile_times):"]
        for key, t in stages + [("other", other), ("total", times["total"])]:
            note = f"  {notes[key]}" if key in notes else ""
            lines.append(f"  {STAGE_NAMES.get(key, key):<10} {t:>10.4f} s{note}")
        return lines

    def __repr__(self):
        return f"<symgrad.Function {self.name or ''} mode={self.mode!r} " \
               f"inputs={[str(v) for v in self.inputs]}>"

    def __getstate__(self):
        # The graph after givens, flattened; unpickling rebuilds the function from it.
        g = self.graph
        roots = g.inputs + g.outputs + [s for s, _ in g.updates] + [e for _, e in g.updates]
        names = {i: k for k, i in self._names.items()}
        return {"graph": flatten_graph(roots), "n": (len(g.inputs), len(g.outputs)),
                "in": {i: (self.defaults.get(i), names.get(i)) for i in range(len(g.inputs))
                       if i in self.defaults or names.get(i) != g.inputs[i].name},
                "structure": self._structure, "mode": self.mode, "name": self.name,
                "profile": self.profile, "rewrite": self.rewrite,
                "allow_input_downcast": self.allow_input_downcast}

    def __setstate__(self, state):
        roots = unflatten_graph(state["graph"])
        n_in, n_out = state["n"]
        inputs, outputs = roots[:n_in], roots[n_in:n_in + n_out]
        rest = roots[n_in + n_out:]
        k = len(rest) // 2
        kind, keys = state["structure"]
        outs = (None if kind == "none" else outputs[0] if kind == "single" else
                dict(zip(keys, outputs)) if kind == "dict" else
                tuple(outputs) if kind == "tuple" else list(outputs))
        for i, (value, key) in state.get("in", {}).items():
            inputs[i] = In(inputs[i], value=value, name=key)
        self._unpickling = True  # its creator was told of unused inputs already
        self.__init__(inputs, outs, list(zip(rest[:k], rest[k:])), None, state["mode"],
                      state["name"], state["profile"], state.get("rewrite"),
                      allow_input_downcast=state.get("allow_input_downcast"))


class UnusedInputWarning(UserWarning):
    """An input of ``sg.function`` that no output or update reads (often a typo)."""


def _warn_unused_inputs(inputs, exprs, error=False):
    """Warn, at the user's line, of each input the graph (after givens) does not read
    (raise ``InputError`` instead with ``error``: Theano's ``on_unused_input='raise'``)."""
    used = {id(v) for v in free_inputs(exprs)}
    for i, v in enumerate(inputs):
        if id(v) not in used:
            msg = (f"sg.function: input {_unused_label(v, i)} is not used by any "
                   f"output or update, so its value is ignored; check the graph for a typo (a "
                   f"different variable used in its place) or remove it from inputs")
            if error:
                raise InputError(msg)
            warnings.warn(UnusedInputWarning(msg), stacklevel=_user_stacklevel())


def _unused_label(v, i):
    return f"'{v.name}' (position {i})" if v.name else f"#{i} (unnamed)"


def _user_stacklevel():
    """The ``stacklevel`` of the caller's first frame outside symgrad (as seen by warn)."""
    pkg = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(pkg):
        frame, level = frame.f_back, level + 1
    return level


_PROFILE_LABEL = 72  # characters of a profile row's label
#: How compile stages (the keys of ``f.compile_times``) are named in reports.
STAGE_NAMES = {"codegen": "codegen", "compile": "C compile"}


def _profile_label(node, step):
    """``matmul (model.py:12)``, or ``fused group of 3 ops: sub, mul, tanh (model.py:12) [K4]``."""
    if node is None:
        return "compiled kernel (all nodes)"
    tail = f" ({node.trace.file_line(short=True)})"
    if step is not None:
        tail += f" [{step.label}]"
    room = _PROFILE_LABEL - len(tail)
    head = str(node.op)
    if step is not None and step.fused:
        names = [n.op.name for n in step.members]
        head = f"fused group of {len(names)} ops: "
        shown = len(names)

        def fits(k):  # k op names, and ", +N more" when some are left out
            return len(head + ", ".join(names[:k])) + 9 * (k < len(names)) <= room

        while shown > 1 and not fits(shown):
            shown -= 1
        head += ", ".join(names[:shown]) + f", +{len(names) - shown} more" * (shown < len(names))
    if len(head) > room:
        head = head[:max(room - 3, 8)] + "..."
    return (head + tail)[:_PROFILE_LABEL]


class _Missing:
    def __repr__(self):
        return "<missing>"


_MISSING = _Missing()


class _Owned:
    """Hands out results so that none aliases an input, a shared value or another result."""

    def __init__(self, inputs, program):
        self.seen = ({id(v) for v in inputs} | {id(s.get_value(borrow=True)) for _, s in program.shared}
                     | {id(c) for _, c in program.constants})

    def take(self, value):
        if id(value) in self.seen or not value.flags.owndata or not value.flags.writeable:
            value = np.array(value, copy=True)
        self.seen.add(id(value))
        return value


def convert_input(var, value, label, downcast=False):
    """``value`` as an ndarray fit for ``var``, refusing lossy conversions with InputError
    (``downcast``: Theano's allow_input_downcast, a float input takes any number, rounded,
    an integer input any integers that fit)."""
    if isinstance(value, Variable):
        raise InputError(f"input {label} got a symbolic Variable; pass a NumPy array or number")
    is_py = _dt.is_python_scalar(value) or isinstance(value, (list, tuple))
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise InputError(f"input {label} expects {_describe(var)}, got an object that is not an "
                         f"array ({e})") from None
    if arr.dtype.kind not in "biuf":
        raise InputError(f"input {label} expects {_describe(var)}, got an array of {arr.dtype}")
    if arr.ndim != var.ndim:
        raise InputError(f"input {label} expects {_describe(var)}, got a {arr.ndim}-d array "
                         f"of shape {arr.shape}")
    if not var.type.accepts_shape(arr.shape):
        raise InputError(f"input {label} expects {_describe(var)}, got shape {arr.shape}")
    # Compared as dtypes, not names: a byte-swapped float64 (">f8") is named
    # "float64" too, but a kernel reading it natively would see garbage.
    if arr.dtype != np.dtype(var.dtype):
        arr = _safe_cast(arr, var, label, is_py, downcast)
    return arr


def _safe_cast(arr, var, label, is_py, downcast=False):
    target = np.dtype(var.dtype)
    if np.can_cast(arr.dtype, target, "safe"):
        return arr.astype(target)
    if downcast and target.kind == "f" and arr.dtype.kind in "biuf":
        return arr.astype(target)  # allow_input_downcast: rounded on purpose
    if is_py or downcast:
        # Python numbers are weak: a float literal may become float32, an int
        # any integer or float dtype it fits in exactly.
        if arr.dtype.kind == "f" and target.kind == "f":
            return arr.astype(target)
        if arr.dtype.kind in "biu" and target.kind in "iuf" and _fits_exactly(arr, target):
            return arr.astype(target)
    raise InputError(f"input {label} expects {_describe(var)}, got {arr.dtype}, which does not "
                     f"convert to {var.dtype} without loss; convert it explicitly with "
                     f".astype('{var.dtype}') if that is intended"
                     + ("" if downcast else " (or compile with allow_input_downcast=True, "
                                            "as in Theano)"))


def _fits_exactly(arr, target):
    """Whether every integer of ``arr`` is a value of ``target`` (no wrap, no rounding)."""
    if arr.size == 0:
        return True
    lo, hi = int(arr.min()), int(arr.max())
    if target.kind in "iu":
        info = np.iinfo(target)
        return info.min <= lo and hi <= info.max
    # Python compares an int with a float exactly, so no value wraps on the way back.
    return bool(np.all(arr.astype(target).astype(object) == arr.astype(object)))


def _describe(var):
    return f"a {var.ndim}-d {var.dtype} array of shape {shape_text(var.type.shape, unknown='?')}"


def function(inputs, outputs=None, updates=None, givens=None, mode=None, name=None, profile=False,
             rewrite=None, on_unused_input=None, allow_input_downcast=None):
    """Compile a graph into a callable.

    Parameters
    ----------
    inputs : Variable or list of Variable or :class:`In`
        Free variables, bound by position or by name at call time;
        ``sg.In(x, value=default)`` lets a call leave ``x`` out.
    outputs : Variable, list/tuple or dict of Variables, optional
        The call returns the same structure of NumPy arrays.
    updates : dict or list of (SharedVariable, Variable), optional
        New values of shared variables; every right-hand side sees the old values.
        A new value keeps its variable's dtype, ndim and static shape: a
        ``TypeError`` here when the graph shows it does not, else an
        ``sg.ShapeError`` from the call that makes a value of another shape,
        naming the update and its line; every update is checked before any
        is stored, so that call changes no variable.
        In mode "c", an update that is one matrix product accumulated into the
        variable (``W - lr * (h.T @ g)``, a gemm after rewriting) or one fused
        elementwise loop reading it (``0.9 * m + g``, an optimizer's step) is
        written over the variable's own array when nothing else references
        that array (no ``get_value(borrow=True)`` result or view of it is
        alive): no copy, no second buffer. An array you hold is never
        written; a failed call changes no variable; ``get_value`` and calls
        in other threads wait for an update being written instead of reading
        half of it.
    givens : dict, optional
        ``{variable: replacement}`` substituted in the graph.
    mode : {"c", "py", "debug"}, optional
        Default ``sg.config.mode`` (itself "c", or ``SYMGRAD_MODE``).
    name : str, optional
    profile : bool
        Record per-node times for :meth:`Function.profile_report`.
    rewrite : {"none", "basic", "safe", "fast"}, optional
        The level of graph rewrites run before lowering (default
        ``sg.config.rewrite``, itself "safe"): "none" compiles the graph as
        written, "basic" only merges equal nodes and folds constants, "safe"
        adds exact simplifications, stabilisation of naive formulas and gemm,
        "fast" also the fast-math ones (see :mod:`symgrad.rewrite`).
        ``f.graph`` shows the rewritten graph.
    on_unused_input : {"warn", "raise", "ignore"}, optional
        Theano's: an input no output or update reads is an
        ``UnusedInputWarning`` (default), an ``InputError``, or nothing.
    allow_input_downcast : bool, optional
        Theano's: a value that does not convert to its input's dtype without
        loss is converted anyway -- a float input takes any numbers (a float64
        array given to a float32 input is rounded), an integer input takes
        integers that fit. By default such a value is an ``InputError``.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> f = sg.function([x], (x ** 2).sum())
    >>> float(f(np.array([1.0, 2.0])))
    5.0
    """
    return Function(inputs, outputs, updates, givens, mode, name, profile, rewrite,
                    on_unused_input, allow_input_downcast)
