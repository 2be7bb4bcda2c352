"""Random numbers in the compiled graph: ``sg.random`` (SPEC section 11).

>>> import symgrad as sg
>>> rng = sg.random.RandomStream(seed=42)
>>> x = sg.matrix("x")
>>> noisy = x + rng.normal(scale=0.1, size=x.shape)
>>> f = sg.function([x], noisy)       # each call draws fresh noise

How it works. A stream is a shared variable, its *state*: an int64 pair
``[key, counter]`` (the key comes from the seed). Every draw a stream makes
gets the next *slot* of that stream; its element ``i`` comes from Philox4x32-10
of the counter ``(i // k, counter + slot)`` under ``key``, one of its four
32-bit words (k = 4) or two 64-bit ones (k = 2) (``ops/random.py``,
``include/sg_random.h``), a pure function of those numbers, so modes "py",
"c" and "debug", any thread count and any loop fusion give the same bits.
``sg.function`` (and so ``sg.train_step``) adds to the updates it is given
one per stream its graph draws from: ``counter += 1 + the highest slot it
uses`` (:func:`with_stream_updates`), so every call draws fresh numbers and
two draws, in one call or in two, never share a counter. A call that fails
updates nothing, the state included.

Inside ``sg.scan``'s step a draw uses the key plus a salt of its own,
and the step advances the stream's state (a recurrent value of the loop, the
step's updates): each step draws fresh numbers, and the counter the function
leaves moves past what the loop used too. A loop inside a step is one more
thing the step's advance moves past (its final state minus its initial one),
so the inner loop's draws are fresh at every step of the outer loop too.

Streams made with the same seed give the same numbers for the same graph;
``rng.seed(n)`` resets a stream to what ``RandomStream(n)`` starts from.
``sg.save``/``sg.load`` of a train step keep the states of the streams it
draws from (``step.state``).
"""

import collections
import contextlib
import itertools
import numbers
import secrets

import numpy as np

from . import dtypes as _dt
from .config import config
from .errors import ShapeError
from .graph import (Constant, SharedVariable, Variable, as_variable, shared, toposort,
                    user_trace)
from .ops import elemwise as _ew
from .ops.elemwise import broadcast_static
from .ops.random import Draw, Permutation, RandomCheck, RandomIndex

__all__ = ["RandomStream", "default_stream", "seed"]

_STREAM_IDS = itertools.count(1)
_STATES = {}          # stream id -> its state (a SharedVariable), for with_stream_updates
_LOOPS = []           # the loop scopes of the step functions being built (loop_scope)


def _key_of(seed):
    """A 64-bit key from a seed (splitmix64's finaliser: nearby seeds give unrelated keys)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"a seed must be an int, got {seed!r}")
    z = (int(seed) + 0x9E3779B97F4A7C15) % 2**64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
    z ^= z >> 31
    return z - 2**64 if z >= 2**63 else z


def _state_value(seed):
    return np.array([_key_of(seed), 0], dtype=np.int64)


class RandomStream:
    """A reproducible source of random samples inside compiled graphs.

    Parameters
    ----------
    seed : int, optional
        The same seed gives the same samples for the same graph, in every
        mode and on any number of threads. None: a seed from the operating
        system's entropy.

    Every method returns a symbolic sample; each call of a compiled function
    that uses it draws fresh numbers (the function advances the stream's
    ``state`` itself). Sizes are tuples of ints and 0-d integer Variables;
    parameters may be symbolic and broadcast like NumPy's.

    >>> import symgrad as sg
    >>> rng = sg.random.RandomStream(0)
    >>> f = sg.function([], rng.uniform(size=3))
    >>> a, b = f(), f()          # two different samples
    >>> rng.seed(0); bool((f() == a).all())
    True
    """

    def __init__(self, seed=None):
        self.id = next(_STREAM_IDS)
        self._seed = secrets.randbits(63) if seed is None else seed
        #: The stream's state: a shared int64 pair ``[key, counter]``.
        self.state = shared(_state_value(self._seed), name="random_state", trainable=False)
        self.state.is_random_state = True  # ops/scan.py: a step may advance it
        self.state.random_stream_id = self.id
        _STATES[self.id] = self.state
        self._slots = itertools.count()

    def seed(self, seed):
        """Reset the stream: the samples of ``RandomStream(seed)`` follow."""
        self._seed = seed
        self.state.set_value(_state_value(seed))

    def __repr__(self):
        return f"<RandomStream seed={self._seed!r} state={self.state.get_value().tolist()}>"

    # ------------------------------------------------------------------ distributions

    def uniform(self, low=0.0, high=1.0, size=None, dtype=None):
        """Samples uniform on ``[low, high)`` (a float ``dtype``, default floatX).

        ``low + (high - low) * u`` with ``u`` uniform on [0, 1) (24 or 53 random bits), so
        its gradient with respect to ``low`` and ``high`` is ``1 - u`` and ``u``; ``low >=
        high`` is an error (at build time when known, else when called).
        """
        dtype = _float_dtype(dtype, "uniform")
        low, high = _param(low, dtype, "uniform", "low"), _param(high, dtype, "uniform", "high")
        _known_check("uniform", "less", low, high)
        u = self._draw("uniform", dtype, size, [low, high])
        if _is_const(low, 0.0) and _is_const(high, 1.0):
            return u
        low = _checked("uniform", "less", low, high)
        return low + (high - low) * u

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=None):
        """Normal samples of mean ``loc`` and standard deviation ``scale`` >= 0.

        ``loc + scale * z`` with ``z`` standard normal (Box-Muller: in double from 53-bit
        uniforms for float64; in float from 32-bit ones for float32, so ``|z| <= 6.8``), so
        the gradient with respect to ``loc`` and ``scale`` is ``1`` and ``z`` (the
        reparameterisation trick).
        """
        dtype = _float_dtype(dtype, "normal")
        loc, scale = _param(loc, dtype, "normal", "loc"), _param(scale, dtype, "normal", "scale")
        _known_check("normal", "scale", scale)
        z = self._draw("normal", dtype, size, [loc, scale])
        if _is_const(loc, 0.0) and _is_const(scale, 1.0):
            return z
        scale = _checked("normal", "scale", scale)
        return loc + scale * z

    def bernoulli(self, p=0.5, size=None, dtype=None):
        """1 with probability ``p`` in [0, 1], else 0 (``dtype`` default floatX; bool and the
        int dtypes too). Not differentiable with respect to ``p``."""
        return self._bernoulli(p, size, config.floatX if dtype is None else dtype, "bernoulli")

    def _bernoulli(self, p, size, dtype, what):
        """Bernoulli draws whose errors name ``what`` (the method the user called)."""
        dtype = _dt.as_dtype(dtype, what)
        p = _param(p, "float64", what, "p")
        _known_check(what, "prob", p)
        p = _checked(what, "prob", p)
        return self._draw("bernoulli", dtype, size, [p], params=[p], what=what)

    def binomial(self, size=None, n=1, p=0.5, dtype="int64"):
        """Theano's ``binomial(size, n, p)``: successes in ``n`` trials of probability ``p``.

        Theano's argument order and default dtype (int64); ``n=1`` (the tutorials' corruption
        masks and RBM samples) is :meth:`bernoulli`, the same draws. ``n`` is an int known
        when the graph is built; ``n > 1`` counts ``n`` Bernoulli draws per element (exact,
        and ``n`` times the work of one draw). Not differentiable with respect to ``p``.

        >>> import symgrad as sg
        >>> rng = sg.random.RandomStream(0)
        >>> x = sg.matrix("x")
        >>> corrupted = rng.binomial(size=x.shape, n=1, p=0.7, dtype="float64") * x
        """
        if isinstance(n, Variable) or not isinstance(n, numbers.Integral) or isinstance(
                n, (bool, np.bool_)) or n < 0:
            got = f"a Variable of type {n.type}" if isinstance(n, Variable) else repr(n)
            raise TypeError(f"binomial: n must be an int >= 0 known when the graph is built, "
                            f"got {got}; for a number of trials known only at call time, "
                            f"draw rng.bernoulli(p, size=(n_max, *size)) and sum the first n "
                            f"along axis 0 (at {user_trace()})")
        n = int(n)
        dtype = _dt.as_dtype(dtype, "binomial")
        if n == 1:
            return self._bernoulli(p, size, dtype, "binomial")
        if dtype == "bool":
            raise TypeError(f"binomial: n={n} successes do not fit dtype bool; give an int or "
                            f"float dtype, or n=1 (at {user_trace()})")
        p = _param(p, "float64", "binomial", "p")
        shape = (_broadcast_lengths([p], "binomial") if size is None
                 else _fitting_size(size, [p], "binomial"))
        trials = self._bernoulli(p, (n, *shape), "int64", "binomial")
        return trials.sum(axis=0).astype(dtype)

    def integers(self, low, high=None, size=None, dtype="int64"):
        """Integers uniform on ``[low, high)`` (``[0, low)`` when ``high`` is None), as NumPy's
        ``Generator.integers``; ``dtype`` int64 or int32. Not differentiable."""
        dtype = _dt.as_dtype(dtype, "integers")
        if dtype not in ("int64", "int32"):
            raise TypeError(f"integers: dtype must be int64 or int32, got {dtype} "
                            f"(at {user_trace()})")
        if high is None:
            low, high = 0, low
        low, high = (_int_param(v, "integers", what) for v, what in ((low, "low"), (high, "high")))
        _known_check("integers", "less", low, high)
        info = np.iinfo(dtype)
        for v, what in ((low, "low"), (high, "high")):
            if isinstance(v, Constant) and not (info.min <= int(v.data.min()) <= info.max + 1
                                                and int(v.data.max()) <= info.max + 1):
                raise ValueError(f"integers: {what} = {v.data} does not fit {dtype} "
                                 f"(at {user_trace()})")
        low = _checked("integers", "less", low, high)
        return self._draw("integers", dtype, size, [low, high], params=[low, high])

    def permutation(self, n):
        """A random permutation of ``0..n-1`` (int64); ``n`` an int or a 0-d int Variable."""
        n = _int_param(n, "permutation", "n")
        if n.ndim != 0:
            raise ShapeError(f"permutation: n must be 0-d, got {n.type} (at {user_trace()})")
        if isinstance(n, Constant) and int(n.data) < 0:
            raise ValueError(f"permutation: n must be >= 0, got {int(n.data)} (at {user_trace()})")
        slot = self._next_slot()
        key, ctr = self._key_counter(slot)
        return Permutation(self.id, slot)(key, ctr, n)

    # ------------------------------------------------------------------ helpers

    def _key_counter(self, slot):
        """The key and counter the draw of ``slot`` reads: inside a loop's step, the key
        plus a salt of the draw's own (see :func:`loop_scope`)."""
        key, ctr = self.state[0], self.state[1]
        loop = _loop()
        if loop is not None:
            loop.streams[self.id] = self.state
            salt = Constant(np.array(_key_of(slot) | 1, dtype=np.int64), dtype="int64")
            key = _ew.add(key, salt)
        return key, ctr

    def _draw(self, dist, dtype, size, shaped_by, params=(), what=None):
        """A ``Draw`` of ``dist`` whose shape is ``size`` or, without one, the broadcast
        shape of ``shaped_by`` (the parameters); errors name ``what`` (default ``dist``)."""
        index = _index(size, shaped_by, what or dist)
        slot = self._next_slot()
        key, ctr = self._key_counter(slot)
        return Draw(dist, dtype, self.id, slot)(key, ctr, index, *params)

    def _next_slot(self):
        slot = next(self._slots)
        loop = _loop()
        if loop is not None:
            loop.top[self.id] = max(loop.top.get(self.id, -1), slot)
        return slot


# --------------------------------------------------------------------------- parameters

def _float_dtype(dtype, what):
    dtype = _dt.as_dtype(config.floatX if dtype is None else dtype, what)
    if dtype not in ("float32", "float64"):
        raise TypeError(f"{what}: dtype must be float32 or float64, got {dtype} "
                        f"(at {user_trace()})")
    return dtype


def _param(v, dtype, what, name):
    """``v`` as a Variable of ``dtype`` (Python numbers become constants of it)."""
    if not isinstance(v, Variable):
        arr = np.asarray(v)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{what}: {name} must be a number, an array or a Variable, got "
                            f"{v!r} (at {user_trace()})")
        return Constant(arr.astype(dtype), dtype=dtype)
    if v.dtype == dtype:
        return v
    if v.dtype == "bool":
        raise TypeError(f"{what}: {name} is bool; give it a numeric dtype (at {user_trace()})")
    return _ew.cast(v, dtype)


def _int_param(v, what, name):
    if not isinstance(v, Variable):
        arr = np.asarray(v)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{what}: {name} must be an integer, got {v!r} (at {user_trace()})")
        return Constant(arr.astype(np.int64), dtype="int64")
    if not _dt.is_int(v.dtype):
        raise TypeError(f"{what}: {name} must be an integer, got a {v.dtype} Variable "
                        f"(at {user_trace()})")
    return v if v.dtype == "int64" else _ew.cast(v, "int64")


def _is_const(v, value):
    return isinstance(v, Constant) and v.data.size == 1 and float(v.data.reshape(())) == value


_BAD_TEXT = {"scale": "scale must be >= 0 (not negative or NaN)", "prob": "p must be in [0, 1]",
             "less": "low must be < high"}


def _known_check(what, kind, *values):
    """The parameter check at build time, when every value is a constant."""
    if not all(isinstance(v, Constant) for v in values):
        return
    data = [v.data for v in values]
    with np.errstate(invalid="ignore"):
        ok = {"scale": lambda x: x >= 0, "prob": lambda x: (x >= 0) & (x <= 1),
              "less": lambda x, y: x < y}[kind](*data)
    if not np.all(ok):
        shown = ", ".join(f"{n}={np.asarray(d).tolist()}" for n, d in
                          zip({"scale": ["scale"], "prob": ["p"], "less": ["low", "high"]}[kind],
                              data))
        raise ValueError(f"{what}: {_BAD_TEXT[kind]}, got {shown} (at {user_trace()})")


def _checked(what, kind, *values):
    """``values[0]``, checked at call time unless every value is a constant (checked now)."""
    if all(isinstance(v, Constant) for v in values):
        return values[0]
    return RandomCheck(what, kind)(*values)


# --------------------------------------------------------------------------- sizes

def _index(size, shaped_by, what):
    """The ``random_index`` of the sample's shape."""
    if size is None:
        shape = _broadcast_lengths(shaped_by, what)
    else:
        shape = _fitting_size(size, shaped_by, what)
    return RandomIndex(len(shape))(*[as_variable(n, dtype="int64") if isinstance(n, int)
                                     else n for n in shape])


def _fitting_size(size, shaped_by, what):
    """``size`` as a tuple of lengths (:func:`_size`), checked where static: the parameters
    ``shaped_by`` must broadcast to it."""
    shape = _size(size, what)
    known = tuple(n if isinstance(n, int) else None for n in shape)
    try:
        got = broadcast_static([known] + [p.type.shape for p in shaped_by], what)
    except ShapeError:
        got = None
    if got is None or len(got) != len(known) or any(
            a is not None and b is not None and a != b for a, b in zip(got, known)):
        raise ShapeError(f"{what}: parameters of shapes "
                         f"{', '.join(str(p.type.shape) for p in shaped_by)} do not "
                         f"broadcast to size {_shown(known)} (at {user_trace()})")
    return shape


def _shown(shape):
    return "(" + ", ".join("?" if n is None else str(n) for n in shape) + (",)" if len(shape) == 1 else ")")


def _size(size, what):
    """``size`` as a tuple of ints and 0-d int64 Variables (errors at the user's line)."""
    if (isinstance(size, Variable) and size.ndim == 1 and _dt.is_int(size.dtype)
            and size.type.shape[0] is not None):
        size = tuple(size[k] for k in range(size.type.shape[0]))  # sg.shape(x), Theano's x.shape
    if isinstance(size, (numbers.Integral, Variable)) and not isinstance(size, (bool, np.bool_)):
        size = (size,)
    if not isinstance(size, (tuple, list)):
        raise TypeError(f"{what}: size must be an int, a 0-d integer Variable or a tuple of "
                        f"them, got {size!r} (at {user_trace()})")
    out = []
    for k, n in enumerate(size):
        if isinstance(n, Variable):
            if isinstance(n, Constant) and n.ndim == 0 and _dt.is_int(n.dtype):
                n = int(n.data)
            elif n.ndim != 0 or not _dt.is_int(n.dtype):
                raise TypeError(f"{what}: size[{k}] must be an integer length, got a Variable "
                                f"of type {n.type} (at {user_trace()})")
            else:
                out.append(n if n.dtype == "int64" else _ew.cast(n, "int64"))
                continue
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
            raise TypeError(f"{what}: size[{k}] must be an integer, got {n!r} "
                            f"(at {user_trace()})")
        if int(n) < 0:
            raise ValueError(f"{what}: size[{k}] must not be negative, got {int(n)} "
                             f"(at {user_trace()})")
        out.append(int(n))
    return tuple(out)


def _broadcast_lengths(params, what):
    """The lengths of the parameters' broadcast shape (ints where static)."""
    nd = max((p.ndim for p in params), default=0)
    if nd == 0:
        return ()
    static = broadcast_static([p.type.shape for p in params], what)
    if None not in static:
        return tuple(static)
    whole = params[0]
    for p in params[1:]:
        whole = _ew.add(whole, p)  # only its lengths are read
    return tuple(n if n is not None else whole.shape[k] for k, n in enumerate(static))


# --------------------------------------------------------------------------- compiled functions

def _draw_nodes(exprs):
    """Every random draw of the graphs of ``exprs``, those inside loops and branches too."""
    found, seen, todo = [], set(), list(exprs)
    while todo:
        nodes = toposort(todo)
        todo = []
        for node in nodes:
            if id(node) in seen:
                continue
            seen.add(id(node))
            if getattr(node.op, "random_draw", False):
                found.append(node)
            inner = getattr(node.op, "inner_graphs", None)
            if inner is not None:
                for _, graph in inner():
                    todo.extend(graph.outputs)
    return found


def with_stream_updates(outputs, updates, exprs):
    """``(updates, exprs, states)``: ``sg.function``'s updates (``(shared, expr)`` pairs and
    their expressions after givens) with the advance of every stream the graph draws from,
    and the states so advanced.

    A stream's counter moves past everything the call used: ``1 +`` the highest slot of its
    draws, plus what each loop drawing from it used (``final - state`` of the loop's state,
    see :func:`loop_scope`). An update the user listed for a state is kept as given, unless
    it is a loop's final state (from ``sg.scan``'s updates), which the advance includes.
    """
    everything = list(outputs) + list(exprs)
    top = {}
    for node in _draw_nodes(everything):
        top[node.op.stream] = max(top.get(node.op.stream, -1), node.op.slot)
    finals = {}
    for node in toposort(everything):
        for o in node.outputs:
            sid = getattr(o.tag, "random_final_of", None)
            if sid is not None and all(o is not f for f in finals.get(sid, [])):
                finals.setdefault(sid, []).append(o)
    updates, exprs, states = list(updates), list(exprs), []
    for sid in sorted(set(top) | set(finals)):
        at = [k for k, (sv, _) in enumerate(updates) if getattr(sv, "random_stream_id", None) == sid]
        if at and getattr(exprs[at[0]].tag, "random_final_of", None) != sid:
            continue  # the user's own update (an unpickled function's: the advance it made)
        for k in reversed(at):
            del updates[k], exprs[k]
        state = _STATES[sid]
        advance = _advance(state, top.get(sid), finals.get(sid, []))
        updates.append((state, advance))
        exprs.append(advance)
        states.append(state)
    return updates, exprs, states


def _advance(state, top, finals):
    new = state if top is None else _ew.add(state, Constant(np.array([0, top + 1], dtype=np.int64),
                                                            dtype="int64"))
    if top is None and len(finals) == 1:
        return finals[0]
    for f in finals:
        new = _ew.add(new, _ew.sub(f, state))
    return new


class _LoopScope:
    def __init__(self, where):
        self.where = where
        self.top = {}        # stream id -> highest slot drawn inside the step
        self.streams = {}    # stream id -> state
        self.finals = {}     # stream id -> final states of the loops built inside the step

    def updates(self, given):
        """The step's updates: ``given`` (a dict or None) and the advance of every stream the
        step drew from, ``state + [0, 1 + highest slot]`` plus what each loop inside the
        step used, ``final - state`` (the step's state is the previous step's: each step
        draws fresh numbers, its inner loops' included). An inner loop's final state that
        the step returns, as Theano's steps return their inner scans' updates, is part of
        that advance; any other update of a state is kept as given."""
        out = collections.OrderedDict(given or {})
        for sid, state in self.streams.items():
            finals = self.finals.get(sid, [])
            if state in out and all(out[state] is not f for f in finals):
                continue
            out[state] = _advance(state, self.top.get(sid), finals)
        return out


def _loop():
    """The scope of the innermost loop step being built, or None."""
    return _LOOPS[-1] if _LOOPS else None


@contextlib.contextmanager
def loop_scope(where):
    """While a loop's step function runs (``sg.scan``), and ``scope.updates(step_updates)``
    advances the streams it drew from, from step to step.

    A draw made in a step reads the key plus an odd constant of its own (splitmix64 of its
    slot): a key no draw outside a loop has (they read the key itself) nor any other draw in
    a loop, so the counters a loop runs through, step after step, never meet another draw's.
    """
    scope = _LoopScope(where)
    _LOOPS.append(scope)
    try:
        yield scope
    finally:
        _LOOPS.pop()


def mark_finals(updates):
    """Tag the final states of the streams a loop advanced (``sg.scan``'s updates), so
    ``sg.function`` chains them into its advance whether or not the user lists them; for a
    loop built inside another loop's step, that step's advance chains them (its scope)."""
    outer = _loop()
    for sv, v in updates.items():
        sid = getattr(sv, "random_stream_id", None)
        if sid is not None:
            v.tag.random_final_of = sid
            if outer is not None:
                outer.streams[sid] = sv
                outer.finals.setdefault(sid, []).append(v)


# --------------------------------------------------------------------------- the default stream

_DEFAULT = None


def default_stream():
    """The stream used where none is given (``sg.layers.Dropout``); made on first use with a
    seed from the system's entropy, reseeded by :func:`seed`."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = RandomStream()
    return _DEFAULT


def seed(n):
    """Reseed the default stream (``default_stream().seed(n)``)."""
    default_stream().seed(n)
