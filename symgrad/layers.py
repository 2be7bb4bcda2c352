"""Model-building helpers: initialisers, a dense layer, an embedding table and recurrent layers.

A model stays plain Python that builds graph; these only save typing. An
initialiser returns a NumPy array (wrap it in :func:`symgrad.shared`); a
:class:`Dense` layer holds its weights as shared variables and, called on a
symbolic input, builds ``activation(x @ W + b)``. Calling a layer twice (a
training graph and an inference graph) reuses the same parameters.

Random initialisers take ``rng``: a ``numpy.random.Generator``, an int seed,
or None for fresh, unseeded randomness.

Weight shapes follow ``x @ W``: ``(fan_in, fan_out)``; for more than two
axes the leading ones are a receptive field, ``(..., fan_in, fan_out)``.

The recurrent layers :class:`RNN`, :class:`LSTM` and :class:`GRU` are
PyTorch's: their formulas, weight layout, parameter names, argument names
and return values are those of ``torch.nn.RNN``, ``LSTM`` and ``GRU``, so a
PyTorch state dict loads into them and theirs loads into PyTorch. Layer ``l`` holds
``weight_ih_l{l}`` of shape ``(G*H, input)``, ``weight_hh_l{l}`` of shape
``(G*H, H)`` and, with ``bias``, ``bias_ih_l{l}`` and ``bias_hh_l{l}``,
where ``G`` stacks the gates in PyTorch's order (LSTM: i, f, g, o; GRU: r, z,
n; RNN: one). Every layer is one :func:`symgrad.scan` whose step is written
as the formula reads, ``x_t @ W_ih.T + b_ih + h @ W_hh.T + b_hh``: the
rewrites move the input product of every step out of the loop as one matrix
product, and back-propagation through time is the scan's own gradient.

Masks (padded sequences): ``mask`` has the batch's leading two axes, ``(T, B)``
(``(B, T)`` with ``batch_first``). Where it is 0 (False) the step is skipped:
the state carries over unchanged and the output is zero. For sequences padded
at the end this is what PyTorch computes for a packed sequence
(``pack_padded_sequence`` then ``pad_packed_sequence``): the final state is
the state after each sequence's last real step.
"""

import collections
import math
import numbers

import numpy as np

from . import dtypes as _dt
from . import ops
from .checkpoint import CheckpointError
from .errors import ShapeError
from .graph import Variable, constant, shared, user_trace
from .ops.shape import shape_at

__all__ = ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "zeros",
           "fans", "Dense", "Dropout", "INITIALISERS", "RNN", "LSTM", "GRU",
           "Conv2D", "MaxPool2D", "AvgPool2D", "Flatten", "Sequential", "BatchNorm1D",
           "BatchNorm2D", "LayerNorm", "Embedding"]


def _rng(rng):
    if rng is None or isinstance(rng, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(rng, bool):
            raise _at_line(TypeError("rng must be a numpy Generator, an int seed or None, got a "
                                     "bool"))
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng
    raise _at_line(TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got "
                             f"{type(rng).__name__}"))


def _at_line(err):
    """``err`` naming the user's file:line (where the layer is made or called)."""
    return type(err)(f"{err} (at {user_trace()})")


def _positive_int(kind, what, n):
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise _at_line(TypeError(f"{kind}: {what} must be a positive int, got {type(n).__name__}"))
    if n < 1:
        raise _at_line(ValueError(f"{kind}: {what} must be a positive int, got {n}"))
    return int(n)


def _as_array(value):
    """A NumPy array from an array-like or a PyTorch tensor (detached, on the CPU)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _shape(shape):
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    if not shape or not all(isinstance(s, numbers.Integral) and s > 0 for s in shape):
        raise _at_line(ValueError(f"an initialiser needs a shape of positive ints, got {shape}"))
    return tuple(int(s) for s in shape)


def fans(shape):
    """``(fan_in, fan_out)`` of a weight of ``shape`` used as ``x @ W``.

    1-d: both are the length; 2-d: ``shape``; n-d: the last two axes times
    the product of the leading ones (a convolution kernel's receptive field).
    """
    shape = _shape(shape)
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def glorot_uniform(shape, rng=None, dtype=None, gain=1.0):
    """Glorot (Xavier) uniform: ``U(-a, a)``, ``a = gain * sqrt(6 / (fan_in + fan_out))``.

    Suits tanh and sigmoid layers and the last, linear layer.

    >>> from symgrad.layers import glorot_uniform
    >>> glorot_uniform((64, 10), rng=0).shape
    (64, 10)
    """
    fan_in, fan_out = fans(shape)
    limit = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return _rng(rng).uniform(-limit, limit, _shape(shape)).astype(_dt.as_dtype(dtype))


def glorot_normal(shape, rng=None, dtype=None, gain=1.0):
    """Glorot (Xavier) normal: ``N(0, std**2)``, ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = fans(shape)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return _rng(rng).normal(0.0, std, _shape(shape)).astype(_dt.as_dtype(dtype))


def he_uniform(shape, rng=None, dtype=None):
    """He (Kaiming) uniform: ``U(-a, a)``, ``a = sqrt(6 / fan_in)``; suits ReLU layers."""
    fan_in, _ = fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return _rng(rng).uniform(-limit, limit, _shape(shape)).astype(_dt.as_dtype(dtype))


def he_normal(shape, rng=None, dtype=None):
    """He (Kaiming) normal: ``N(0, std**2)``, ``std = sqrt(2 / fan_in)``; suits ReLU layers."""
    fan_in, _ = fans(shape)
    return _rng(rng).normal(0.0, math.sqrt(2.0 / fan_in), _shape(shape)).astype(
        _dt.as_dtype(dtype))


def zeros(shape, rng=None, dtype=None):
    """All zeros (``rng`` is accepted and ignored, so every initialiser has one signature)."""
    return np.zeros(_shape(shape), dtype=_dt.as_dtype(dtype))


INITIALISERS = {"glorot_uniform": glorot_uniform, "glorot_normal": glorot_normal,
                "he_uniform": he_uniform, "he_normal": he_normal, "zeros": zeros}


def _initialiser(init, what):
    if isinstance(init, str):
        if init not in INITIALISERS:
            raise _at_line(ValueError(f"{what}: unknown initialiser {init!r}; one of "
                                      f"{sorted(INITIALISERS)} or a function (shape, rng, "
                                      f"dtype) -> array"))
        return INITIALISERS[init]
    if not callable(init):
        raise _at_line(TypeError(f"{what} must be an initialiser name or a function (shape, "
                                 f"rng, dtype) -> array, got {type(init).__name__}"))
    return init


class Dense:
    """A fully connected layer: ``activation(x @ W + b)``.

    Parameters
    ----------
    n_in, n_out : int
        Input and output features.
    activation : callable, optional
        Applied to the affine result, e.g. ``sg.relu`` or ``sg.tanh``; None
        for a linear layer.
    init : str or callable
        The weight initialiser: a name from :data:`INITIALISERS` or a function
        ``(shape, rng, dtype) -> array``. Default ``"glorot_uniform"``
        (``"he_normal"`` suits ReLU).
    bias : bool
        Whether to add ``b`` (initialised to zeros).
    rng : numpy.random.Generator, int or None
        Randomness for the initialiser.
    name : str
        Prefix of the parameters' names: ``<name>.W``, ``<name>.b``.
    dtype : str, optional
        Default ``sg.config.floatX``.

    Attributes
    ----------
    W, b : SharedVariable
        ``b`` is None without bias.
    params : list of SharedVariable

    Examples
    --------
    >>> import symgrad as sg
    >>> layer = sg.layers.Dense(3, 2, activation=sg.tanh, rng=0, name="hidden")
    >>> [p.name for p in layer.params]
    ['hidden.W', 'hidden.b']
    >>> layer(sg.matrix("x")).ndim
    2
    """

    def __init__(self, n_in, n_out, activation=None, init="glorot_uniform", bias=True,
                 rng=None, name="dense", dtype=None):
        n_in, n_out = _positive_int("Dense", "n_in", n_in), _positive_int("Dense", "n_out", n_out)
        if activation is not None and not callable(activation):
            raise _at_line(TypeError(f"Dense: activation must be callable (e.g. sg.relu) or "
                                     f"None, got {type(activation).__name__}"))
        if not isinstance(name, str) or not name:
            raise _at_line(TypeError(f"Dense: name must be a non-empty str, got {name!r}"))
        dtype = _dt.as_dtype(dtype)
        if not _dt.is_float(dtype):
            raise _at_line(TypeError(f"Dense: parameters must be float, got dtype {dtype}"))
        init = _initialiser(init, "Dense: init")
        self.n_in, self.n_out, self.activation, self.name = int(n_in), int(n_out), activation, name
        weights = np.asarray(init((self.n_in, self.n_out), rng=_rng(rng), dtype=dtype))
        if weights.shape != (self.n_in, self.n_out):
            raise _at_line(ValueError(f"Dense: the initialiser returned shape {weights.shape}, "
                                      f"expected {(self.n_in, self.n_out)}"))
        self.W = shared(weights.astype(dtype), name=f"{name}.W")
        self.b = shared(np.zeros(self.n_out, dtype=dtype), name=f"{name}.b") if bias else None

    @property
    def params(self):
        return [self.W] if self.b is None else [self.W, self.b]

    def __call__(self, x):
        """``activation(x @ W + b)`` for a symbolic ``x`` of shape ``(..., n_in)``."""
        if not isinstance(x, Variable):
            raise _at_line(TypeError(f"Dense {self.name!r}: expected a symbolic Variable, got "
                                     f"{type(x).__name__}"))
        if x.ndim == 0 or x.type.shape[-1] not in (None, self.n_in):
            raise _at_line(ShapeError(f"Dense {self.name!r}: expected an input of shape "
                                      f"(..., {self.n_in}), got {x.type}"))
        if x.dtype != self.W.dtype:  # as the other layers: never a silent promotion
            other = f" or build the layer with dtype={x.dtype!r}" if _dt.is_float(x.dtype) else ""
            raise _at_line(TypeError(f"Dense {self.name!r}: the input is {x.dtype} and the "
                                     f"parameters are {self.W.dtype}: cast the input "
                                     f"(x.astype({self.W.dtype!r})){other}"))
        y = x @ self.W
        if self.b is not None:
            y = y + self.b
        return y if self.activation is None else self.activation(y)

    def __repr__(self):
        act = getattr(self.activation, "__name__", None) if self.activation else None
        return f"Dense({self.n_in}, {self.n_out}, activation={act}, name={self.name!r})"


# --------------------------------------------------------------------------- recurrent layers

class Dropout:
    """Inverted dropout (:func:`symgrad.nn.dropout`) as a layer without parameters.

    ``layer(x, training=True)`` builds the training graph (elements zeroed with probability
    ``p``, the others scaled by ``1 / (1 - p)``), ``layer(x, training=False)`` the inference
    graph (``x``): as every layer that behaves differently in training, called once per
    graph, over the same parameters. ``rng``: an ``sg.random.RandomStream``, default
    ``sg.random.default_stream()`` (reseed it with ``sg.random.seed(n)``).

    >>> import symgrad as sg
    >>> drop = sg.layers.Dropout(0.5)
    >>> x = sg.matrix("x")
    >>> train, infer = drop(x), drop(x, training=False)
    """

    def __init__(self, p=0.5, rng=None):
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
            raise _at_line(ValueError(f"Dropout: p must be a number in [0, 1], got {p!r}"))
        self.p = float(p)
        self.rng = rng
        self.params = []

    def __call__(self, x, training=True):
        from .nn import dropout
        return dropout(x, self.p, self.rng, training=training)

    def __repr__(self):
        return f"Dropout(p={self.p})"


class _Module:
    """Parameters under PyTorch's names: a subclass sets ``name``, ``dtype`` and
    ``_shapes()`` (``{PyTorch name: shape}``) and holds each parameter as the attribute of
    that name; this gives ``params``, ``state_dict`` and ``load_state_dict``."""

    @property
    def params(self):
        """The trainable shared parameters, in PyTorch's order (e.g. ``weight_ih_l0,
        weight_hh_l0, ...``); buffers such as batch norm's running statistics are in the
        state dict but not here."""
        return [v for v in (getattr(self, key) for key in self._shapes()) if v.trainable]

    # ----------------------------------------------------------------------- state dicts

    def state_dict(self):
        """``OrderedDict`` of PyTorch's parameter names to copies of the values (NumPy).

        ``torch_module.load_state_dict({k: torch.from_numpy(v) for k, v in
        layer.state_dict().items()})`` loads them into PyTorch.
        """
        return collections.OrderedDict((k, getattr(self, k).get_value()) for k in self._shapes())

    def load_state_dict(self, state_dict, strict=True, prefix=""):
        """Set the parameters from a dict of PyTorch's names to arrays or torch tensors.

        Only keys starting with ``prefix`` are read (``prefix="lstm."`` takes a
        submodule's entries from a whole model's state dict). With ``strict``,
        a missing or an unexpected key is an error. Values are cast to the
        variable's dtype (the layer's; int64 for a counter such as
        ``num_batches_tracked``), as PyTorch's ``load_state_dict`` copies them. On
        any mismatch (keys, shapes, a float value for a counter or an integer one for
        a float) it raises :class:`symgrad.CheckpointError` and changes nothing.
        """
        kind = type(self).__name__
        if not isinstance(prefix, str):
            raise _at_line(TypeError(f"{kind}.load_state_dict: prefix must be a str, got "
                                     f"{prefix!r}"))
        try:
            given = {k[len(prefix):]: v for k, v in state_dict.items()
                     if isinstance(k, str) and k.startswith(prefix)}
        except AttributeError:
            raise _at_line(TypeError(f"{kind}.load_state_dict: expected a dict of names to "
                                     f"arrays, got {type(state_dict).__name__}")) from None
        shapes = self._shapes()
        missing = [prefix + k for k in shapes if k not in given]
        unexpected = [prefix + k for k in given if k not in shapes]
        if strict and (missing or unexpected):
            raise _at_line(CheckpointError(
                f"{kind} {self.name!r}: the state dict does not match the layer: missing "
                f"{missing or 'none'}, unexpected {unexpected or 'none'} (expected the keys "
                f"{[prefix + k for k in shapes]}); nothing was changed"))
        values = {}
        for key, shape in shapes.items():
            if key not in given:
                continue
            value = _as_array(given[key])
            if value.shape != shape:
                raise _at_line(CheckpointError(f"{kind} {self.name!r}: {prefix + key} has "
                                               f"shape {value.shape}, expected {shape}; nothing "
                                               f"was changed"))
            target = getattr(self, key).dtype
            want = "f" if _dt.is_float(target) else "iu"
            if value.dtype.kind not in want:
                raise _at_line(CheckpointError(f"{kind} {self.name!r}: {prefix + key} has "
                                               f"dtype {value.dtype}, expected "
                                               f"{'floats' if want == 'f' else 'integers'}; "
                                               f"nothing was changed"))
            values[key] = value.astype(target)
        for key, value in values.items():
            getattr(self, key).set_value(value)


class _Recurrent(_Module):
    """What RNN, LSTM and GRU share: parameters, state dicts, argument checks, the loops.

    A subclass sets ``gates`` (``G``), ``n_states`` (1, or 2 for the LSTM's
    ``(h, c)``) and ``cell(l, x_t, states) -> new states``.
    """

    gates = 1
    n_states = 1

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 rng=None, name=None, dtype=None):
        kind = type(self).__name__
        self.input_size = _positive_int(kind, "input_size", input_size)
        self.hidden_size = _positive_int(kind, "hidden_size", hidden_size)
        self.num_layers = _positive_int(kind, "num_layers", num_layers)
        for what, flag in (("bias", bias), ("batch_first", batch_first)):
            if not isinstance(flag, (bool, np.bool_)):
                raise _at_line(TypeError(f"{kind}: {what} must be a bool, got "
                                         f"{type(flag).__name__}"))
        self.bias, self.batch_first = bool(bias), bool(batch_first)
        name = kind.lower() if name is None else name
        if not isinstance(name, str) or not name:
            raise _at_line(TypeError(f"{kind}: name must be a non-empty str, got {name!r}"))
        self.name = name
        self.dtype = _dt.as_dtype(dtype)
        if not _dt.is_float(self.dtype):
            raise _at_line(TypeError(f"{kind}: parameters must be float, got dtype {self.dtype}"))
        # PyTorch's initialisation: every weight and bias from U(-k, k), k = 1/sqrt(H)
        gen, k = _rng(rng), 1.0 / math.sqrt(self.hidden_size)
        for key, shape in self._shapes().items():
            value = gen.uniform(-k, k, shape).astype(self.dtype)
            setattr(self, key, shared(value, name=f"{name}.{key}"))

    def _shapes(self):
        """``{PyTorch name: shape}`` of every parameter, in PyTorch's order."""
        G, H, shapes = self.gates, self.hidden_size, {}
        for l in range(self.num_layers):
            shapes[f"weight_ih_l{l}"] = (G * H, self.input_size if l == 0 else H)
            shapes[f"weight_hh_l{l}"] = (G * H, H)
            if self.bias:
                shapes[f"bias_ih_l{l}"] = (G * H,)
                shapes[f"bias_hh_l{l}"] = (G * H,)
        return shapes

    # ----------------------------------------------------------------------- building

    def __call__(self, input, hx=None, mask=None):
        """Run the layer over a symbolic sequence; see the class docstring for the shapes."""
        x, batched = self._input(input)
        m = self._mask(mask, x, batched)
        states = self._initial_states(hx, x, batched)
        states_out = [[] for _ in states]        # per state, its final value per layer
        for l in range(self.num_layers):
            x, finals = self._loop(l, x, [s[l] for s in states], m)
            for out, final in zip(states_out, finals):
                out.append(final)
        if m is not None:
            x = ops.where(m[:, :, None], x, ops.zeros((), dtype=self.dtype))
        finals = [ops.stack(s) for s in states_out]
        if self.batch_first and batched:
            x = ops.transpose(x, (1, 0, 2))
        if not batched:
            x, finals = x[:, 0], [f[:, 0] for f in finals]
        return x, (tuple(finals) if self.n_states > 1 else finals[0])

    def _fail(self, error, message):
        return error(f"{type(self).__name__} {self.name!r}: {message} (at {user_trace()})")

    def _input(self, x):
        """The input as ``(T, B, input_size)`` and whether it had a batch axis."""
        if not isinstance(x, Variable):
            raise self._fail(TypeError, f"expected a symbolic Variable, got {type(x).__name__}")
        layout = "(batch, time, input_size)" if self.batch_first else "(time, batch, input_size)"
        if x.ndim not in (2, 3) or x.type.shape[-1] not in (None, self.input_size):
            raise self._fail(ShapeError, f"expected an input of shape {layout} (or "
                             f"(time, input_size) unbatched) with input_size = "
                             f"{self.input_size}, got {x.type}")
        if x.dtype != self.dtype:
            raise self._fail(TypeError, f"the input is {x.dtype} and the parameters are "
                             f"{self.dtype}: cast the input (x.astype({self.dtype!r})) or build "
                             f"the layer with dtype={x.dtype!r}")
        if x.ndim == 2:
            return x[:, None, :], False
        return (ops.transpose(x, (1, 0, 2)) if self.batch_first else x), True

    def _mask(self, mask, x, batched):
        """The mask as a ``(T, B)`` bool (True: the step runs), or None."""
        if mask is None:
            return None
        if isinstance(mask, np.ndarray):
            mask = constant(mask)
        if not isinstance(mask, Variable):
            raise self._fail(TypeError, f"mask must be a symbolic Variable or an array, got "
                             f"{type(mask).__name__}")
        T, B = x.type.shape[:2]
        if batched:
            want = (B, T) if self.batch_first else (T, B)
            layout = "(batch, time)" if self.batch_first else "(time, batch)"
        else:
            want, layout = (T,), "(time,)"
        if mask.ndim != len(want) or any(a is not None and b is not None and a != b
                                         for a, b in zip(mask.type.shape, want)):
            raise self._fail(ShapeError, f"the mask must have the shape {layout} of the input's "
                             f"leading axes, {tuple(want)}, got {mask.type}")
        m = mask if mask.dtype == "bool" else ops.neq(mask, 0)
        if not batched:
            return m[:, None]
        return m.T if self.batch_first else m

    def _initial_states(self, hx, x, batched):
        """Per state (h, and c for the LSTM), its ``(num_layers, B, H)`` initial value."""
        L, H = self.num_layers, self.hidden_size
        if hx is None:
            zero = ops.zeros((L, shape_at(x, 1), H), dtype=self.dtype)
            return [zero] * self.n_states
        names = ("h_0", "c_0")[:self.n_states]
        if self.n_states > 1:
            if not isinstance(hx, (tuple, list)) or len(hx) != self.n_states:
                raise self._fail(TypeError, f"hx must be a pair (h_0, c_0), got "
                                 f"{type(hx).__name__}")
            hx = list(hx)
        else:
            hx = [hx]
        states = []
        for what, h in zip(names, hx):
            if not isinstance(h, Variable):
                raise self._fail(TypeError, f"{what} must be a symbolic Variable, got "
                                 f"{type(h).__name__}")
            want = (L, x.type.shape[1], H) if batched else (L, H)
            layout = "(num_layers, batch, hidden_size)" if batched else "(num_layers, hidden_size)"
            if h.ndim != len(want) or any(a is not None and b is not None and a != b
                                          for a, b in zip(h.type.shape, want)):
                raise self._fail(ShapeError, f"{what} must have the shape {layout} = "
                                 f"{tuple(want)}, got {h.type}")
            if h.dtype != self.dtype:
                raise self._fail(TypeError, f"{what} is {h.dtype} and the parameters are "
                                 f"{self.dtype}")
            states.append(h if batched else h[:, None, :])
        return states

    def _loop(self, l, x, initial, m):
        """One layer over the whole sequence: ``(outputs (T, B, H), final states)``."""
        n = self.n_states

        def step(*args):
            x_t, rest = args[0], list(args[1:])
            m_t = rest.pop(0) if m is not None else None
            new = self.cell(l, x_t, rest)
            if m_t is not None:   # a skipped step keeps the state
                keep = m_t[:, None]
                new = [ops.where(keep, a, b) for a, b in zip(new, rest)]
            return new

        seqs = [x] if m is None else [x, m]
        outs, _ = ops.scan(step, sequences=seqs, outputs_info=initial,
                           name=f"{self.name}.l{l}")
        outs = outs if n > 1 else [outs]
        # The final states: the last step's, or the initial ones after no step at all (a
        # sequence of length 0, as a fully masked one keeps them; o[-1] would be out of
        # range). o[-1:] lets the loop keep only the final value of a state read nowhere
        # else (rewrite.loops.keep_last_values), as o[-1] does.
        return outs[0], [ops.concatenate([ops.expand_dims(h, 0), o[-1:]], axis=0)[-1]
                         for h, o in zip(initial, outs)]

    def _linear(self, l, x_t, h):
        """``(x_t @ W_ih.T + b_ih, h @ W_hh.T + b_hh)`` of layer ``l``."""
        gi = x_t @ getattr(self, f"weight_ih_l{l}").T
        gh = h @ getattr(self, f"weight_hh_l{l}").T
        if self.bias:
            gi = gi + getattr(self, f"bias_ih_l{l}")
            gh = gh + getattr(self, f"bias_hh_l{l}")
        return gi, gh

    def _gate(self, g, k):
        H = self.hidden_size
        return g[:, k * H:(k + 1) * H]

    def __repr__(self):
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}, "
                f"num_layers={self.num_layers}, bias={self.bias}, "
                f"batch_first={self.batch_first}, name={self.name!r})")


_SHAPES_DOC = """
    Parameters
    ----------
    input_size, hidden_size : int
        Features of the input ``I`` and of the state ``H``.
    num_layers : int
        Stacked layers; layer ``l > 0`` reads the outputs of layer ``l - 1``.
    bias : bool
        Whether the layers have ``bias_ih_l*`` and ``bias_hh_l*``.
    batch_first : bool
        Inputs and outputs (and the mask) are ``(batch, time, ...)`` rather
        than ``(time, batch, ...)``; the states are ``(num_layers, batch, H)``
        either way, as in PyTorch.
    rng : numpy.random.Generator, int or None
        Randomness for the initial weights: PyTorch's ``U(-k, k)``,
        ``k = 1/sqrt(hidden_size)``, for every weight and bias.
    name : str
        Prefix of the shared parameters' names (``<name>.weight_ih_l0``).
    dtype : str, optional
        Default ``sg.config.floatX``; inputs must have the same dtype.

    Calling it: ``layer(input, hx=None, mask=None)``
        ``input``: ``(T, B, I)`` (``(B, T, I)`` with ``batch_first``) or
        ``(T, I)`` unbatched. ``hx``: the initial state{hx}, zeros when None.
        ``mask``: ``(T, B)`` (``(B, T)`` with ``batch_first``, ``(T,)``
        unbatched), bool or numbers; where it is 0 the step is skipped: the
        state carries over and the output is zero.
        Returns ``(output, {ret})``: ``output`` ``(T, B, H)`` (``(B, T, H)``
        with ``batch_first``) holds the last layer's state at every step; the
        final states are ``(num_layers, B, H)``.

    Attributes
    ----------
    weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, ... : SharedVariable
        PyTorch's names and shapes, ``weight_ih_l0`` ``({G}*H, I)``.
    params : list of SharedVariable
        In PyTorch's order; trainable, so ``sg.train_step`` finds them.
"""


class RNN(_Recurrent):
    __doc__ = """An Elman RNN: ``h_t = act(x_t @ W_ih.T + b_ih + h_{t-1} @ W_hh.T + b_hh)``.

    ``nonlinearity``: ``"tanh"`` (default) or ``"relu"``, as PyTorch's.
    """ + _SHAPES_DOC.format(hx=" h_0, ``(num_layers, B, H)``", ret="h_n", G=1) + """
    Examples
    --------
    >>> import symgrad as sg
    >>> rnn = sg.layers.RNN(3, 5, rng=0)
    >>> out, h_n = rnn(sg.tensor3("x"))
    >>> [p.name for p in rnn.params]
    ['rnn.weight_ih_l0', 'rnn.weight_hh_l0', 'rnn.bias_ih_l0', 'rnn.bias_hh_l0']
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, rng=None, name=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise _at_line(ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got "
                                      f"{nonlinearity!r}"))
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, rng, name, dtype)

    def cell(self, l, x_t, states):
        gi, gh = self._linear(l, x_t, states[0])
        act = ops.tanh if self.nonlinearity == "tanh" else ops.relu
        return [act(gi + gh)]

    def __repr__(self):
        return super().__repr__()[:-1] + f", nonlinearity={self.nonlinearity!r})"


class LSTM(_Recurrent):
    __doc__ = """A long short-term memory layer, PyTorch's gates (i, f, g, o)::

        i, f, o = sigmoid(...), g = tanh(...)   of x_t @ W_ih.T + b_ih + h @ W_hh.T + b_hh
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)
    """ + _SHAPES_DOC.format(hx="s ``(h_0, c_0)``, each ``(num_layers, B, H)``",
                             ret="(h_n, c_n)", G=4) + """
    Examples
    --------
    >>> import symgrad as sg
    >>> lstm = sg.layers.LSTM(3, 5, batch_first=True, rng=0)
    >>> out, (h_n, c_n) = lstm(sg.tensor3("x"))
    >>> lstm.weight_ih_l0.get_value().shape
    (20, 3)

    One step of layer ``l`` -- PyTorch's ``nn.LSTMCell`` with this layer's weights --
    is :meth:`cell`, for a loop of your own (``sg.scan``, decoding one token at a time):

    >>> h, c = sg.matrix("h"), sg.matrix("c")
    >>> h1, c1 = lstm.cell(0, sg.matrix("x_t"), [h, c])
    >>> h1.type.shape
    (None, 5)
    """

    gates, n_states = 4, 2

    def cell(self, l, x_t, states):
        """One step of layer ``l`` (0-based): ``[h_t, c_t]`` from the input ``x_t``
        ``(B, I)`` (layer 0; ``(B, H)`` above) and ``states = [h, c]``, each ``(B, H)`` --
        the gates of the class docstring, which the layer's loop runs at every step."""
        h, c = states
        gi, gh = self._linear(l, x_t, h)
        g = gi + gh
        i, f = ops.sigmoid(self._gate(g, 0)), ops.sigmoid(self._gate(g, 1))
        cand, o = ops.tanh(self._gate(g, 2)), ops.sigmoid(self._gate(g, 3))
        c = f * c + i * cand
        return [o * ops.tanh(c), c]


class GRU(_Recurrent):
    __doc__ = """A gated recurrent unit, PyTorch's gates (r, z, n)::

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h_t = (1 - z) * n + z * h_{t-1}
    """ + _SHAPES_DOC.format(hx=" h_0, ``(num_layers, B, H)``", ret="h_n", G=3) + """
    Examples
    --------
    >>> import symgrad as sg
    >>> gru = sg.layers.GRU(3, 5, num_layers=2, rng=0)
    >>> out, h_n = gru(sg.tensor3("x"))
    >>> h_n.type.shape
    (2, None, 5)
    """

    gates = 3

    def cell(self, l, x_t, states):
        (h,) = states
        gi, gh = self._linear(l, x_t, h)
        r = ops.sigmoid(self._gate(gi, 0) + self._gate(gh, 0))
        z = ops.sigmoid(self._gate(gi, 1) + self._gate(gh, 1))
        n = ops.tanh(self._gate(gi, 2) + r * self._gate(gh, 2))
        return [(1 - z) * n + z * h]


# --------------------------------------------------------------------------- convolutional layers

class Conv2D(_Module):
    """A 2-d convolution layer, as ``torch.nn.Conv2d``: :func:`symgrad.nn.conv2d` with its
    ``weight`` ``(out_channels, in_channels // groups, kh, kw)`` and ``bias``
    ``(out_channels,)``, initialised as PyTorch does (both from ``U(-k, k)``,
    ``k = 1 / sqrt(in_channels // groups * kh * kw)``), so a PyTorch state dict loads.

    >>> import symgrad as sg
    >>> conv = sg.layers.Conv2D(1, 20, 5, rng=0)
    >>> conv(sg.tensor4("x")).ndim, sorted(conv.state_dict())
    (4, ['bias', 'weight'])
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, rng=None, name="conv2d", dtype=None):
        kind = "Conv2D"
        self.in_channels = _positive_int(kind, "in_channels", in_channels)
        self.out_channels = _positive_int(kind, "out_channels", out_channels)
        self.groups = _positive_int(kind, "groups", groups)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise _at_line(ValueError(f"Conv2D: in_channels {self.in_channels} and out_channels "
                                      f"{self.out_channels} must be divisible by groups "
                                      f"{self.groups}"))
        ks = kernel_size if isinstance(kernel_size, (tuple, list)) else (kernel_size,) * 2
        self.kernel_size = tuple(_positive_int(kind, "kernel_size", k) for k in ks)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        if not isinstance(name, str) or not name:
            raise _at_line(TypeError(f"Conv2D: name must be a non-empty str, got {name!r}"))
        self.name, self.dtype = name, _dt.as_dtype(dtype)
        if not _dt.is_float(self.dtype):
            raise _at_line(TypeError(f"Conv2D: parameters must be float, got dtype {self.dtype}"))
        self.has_bias = bool(bias)
        shapes = self._shapes()
        gen = _rng(rng)
        k = 1.0 / math.sqrt(math.prod(shapes["weight"][1:]))
        for key, shape in shapes.items():
            setattr(self, key, shared(gen.uniform(-k, k, shape).astype(self.dtype),
                                      name=f"{name}.{key}"))
        if not self.has_bias:
            self.bias = None
        # the argument checks of sg.nn.conv2d, now rather than at the first call
        from .nn import conv2d
        conv2d(ops.zeros((1, self.in_channels) + self.kernel_size, dtype=self.dtype),
               self.weight, stride=stride, padding=padding, dilation=dilation, groups=groups)

    def _shapes(self):
        shapes = {"weight": (self.out_channels, self.in_channels // self.groups)
                  + self.kernel_size}
        if self.has_bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def __call__(self, x, training=True):
        from .nn import conv2d
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                      self.groups)

    def __repr__(self):
        return (f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size="
                f"{self.kernel_size}, stride={self.stride}, padding={self.padding!r}, "
                f"name={self.name!r})")


class Embedding(_Module):
    """A table of ``num_embeddings`` vectors of ``embedding_dim`` features, looked up by
    integer ids, as ``torch.nn.Embedding``: ``layer(ids)`` is
    :func:`symgrad.nn.embedding` of its ``weight`` ``(num_embeddings, embedding_dim)``,
    shape ``ids.shape + (embedding_dim,)``. The weight starts as PyTorch's, from
    ``N(0, 1)``, with ``padding_idx``'s row zero; that row's gradient is always zero, so
    training leaves it as it is. A PyTorch state dict (``weight``) loads.

    >>> import symgrad as sg
    >>> emb = sg.layers.Embedding(100, 16, padding_idx=0, rng=0)
    >>> emb(sg.matrix("ids", dtype="int64")).type
    float64[?, ?, 16]
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, rng=None,
                 name="embedding", dtype=None):
        kind = "Embedding"
        self.num_embeddings = _positive_int(kind, "num_embeddings", num_embeddings)
        self.embedding_dim = _positive_int(kind, "embedding_dim", embedding_dim)
        if padding_idx is not None:
            if (isinstance(padding_idx, (bool, np.bool_))
                    or not isinstance(padding_idx, numbers.Integral)):
                raise _at_line(TypeError(f"Embedding: padding_idx must be an int or None, got "
                                         f"{padding_idx!r}"))
            n = self.num_embeddings
            if not -n <= padding_idx < n:
                raise _at_line(ValueError(f"Embedding: padding_idx must be in [-{n}, {n}) for "
                                          f"{n} embeddings, got {padding_idx}"))
            padding_idx = int(padding_idx) % n
        self.padding_idx = padding_idx
        self.name = _layer_name(kind, name)
        self.dtype = _float_dtype(kind, dtype)
        table = _rng(rng).standard_normal(self._shapes()["weight"])
        if padding_idx is not None:
            table[padding_idx] = 0
        self.weight = shared(table.astype(self.dtype), name=f"{self.name}.weight")

    def _shapes(self):
        return {"weight": (self.num_embeddings, self.embedding_dim)}

    def __call__(self, ids, training=True):
        from .nn import embedding
        return embedding(ids, self.weight, self.padding_idx)

    def __repr__(self):
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return (f"Embedding({self.num_embeddings}, {self.embedding_dim}{pad}, "
                f"name={self.name!r})")


# --------------------------------------------------------------------------- normalisation layers

def _layer_name(kind, name):
    if not isinstance(name, str) or not name:
        raise _at_line(TypeError(f"{kind}: name must be a non-empty str, got {name!r}"))
    return name


def _float_dtype(kind, dtype):
    dtype = _dt.as_dtype(dtype)
    if not _dt.is_float(dtype):
        raise _at_line(TypeError(f"{kind}: parameters must be float, got dtype {dtype}"))
    return dtype


class _BatchNorm(_Module):
    """What BatchNorm1D and BatchNorm2D share (``ndims``: the input ranks they take)."""

    ndims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, name="batchnorm", dtype=None):
        kind = type(self).__name__
        self.num_features = _positive_int(kind, "num_features", num_features)
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or eps < 0:
            raise _at_line(ValueError(f"{kind}: eps must be a number >= 0, got {eps!r}"))
        if momentum is not None and (isinstance(momentum, bool)
                                     or not isinstance(momentum, numbers.Real)
                                     or not 0 <= momentum <= 1):
            raise _at_line(ValueError(f"{kind}: momentum must be a number in [0, 1] or None (a "
                                      f"cumulative average), got {momentum!r}"))
        self.eps, self.momentum = float(eps), None if momentum is None else float(momentum)
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        self.name, self.dtype = _layer_name(kind, name), _float_dtype(kind, dtype)
        c = self.num_features
        init = {"weight": (np.ones(c), True), "bias": (np.zeros(c), True),
                "running_mean": (np.zeros(c), False), "running_var": (np.ones(c), False)}
        for key in self._shapes():
            if key == "num_batches_tracked":
                value = shared(np.array(0, dtype="int64"), name=f"{name}.{key}", trainable=False)
            else:
                data, trainable = init[key]
                value = shared(data.astype(self.dtype), name=f"{name}.{key}", trainable=trainable)
            setattr(self, key, value)
        for key in init:
            if not hasattr(self, key):
                setattr(self, key, None)
        if not self.track_running_stats:
            self.num_batches_tracked = None

    def _shapes(self):
        c, shapes = self.num_features, {}
        if self.affine:
            shapes.update(weight=(c,), bias=(c,))
        if self.track_running_stats:
            shapes.update(running_mean=(c,), running_var=(c,), num_batches_tracked=())
        return shapes

    def __call__(self, x, training=True):
        """The normalised ``x``: by the batch's statistics with ``training`` (updating the
        running ones when the step runs: ``sg.train_step`` applies the updates, and
        :func:`symgrad.nn.collect_updates` hands them to ``sg.function``), else by the
        running statistics."""
        from .nn import batch_norm
        kind = type(self).__name__
        if not isinstance(x, Variable):
            raise _at_line(TypeError(f"{kind} {self.name!r}: expected a symbolic Variable, got "
                                     f"{type(x).__name__}"))
        if x.ndim not in self.ndims or x.type.shape[1] not in (None, self.num_features):
            want = " or ".join(f"{n}-d" for n in self.ndims)
            raise ShapeError(f"{kind} {self.name!r}: expected a {want} input with "
                             f"{self.num_features} channels on axis 1, got {x.type} "
                             f"(at {user_trace()})")
        track = self.track_running_stats
        if not training and track:
            return batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                              training=False, eps=self.eps)
        momentum = self.momentum
        if track and momentum is None:  # PyTorch's cumulative average: 1 / batches seen
            momentum = 1.0 / (ops.cast(self.num_batches_tracked, self.dtype) + 1.0)
        out, updates = batch_norm(x, self.running_mean if track else None,
                                  self.running_var if track else None, self.weight, self.bias,
                                  training=True, momentum=0.0 if momentum is None else momentum,
                                  eps=self.eps)
        if track:
            nbt = self.num_batches_tracked
            out.owner.tag.updates = updates + [(nbt, nbt + 1)]
        return out

    def __repr__(self):
        return (f"{type(self).__name__}({self.num_features}, eps={self.eps:g}, "
                f"momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}, name={self.name!r})")


_BN_DOC = """
    Parameters
    ----------
    num_features : int
        The channels ``C`` (axis 1).
    eps : float
        Added to the variance.
    momentum : float or None
        ``running = (1 - momentum) * running + momentum * batch``; None: the
        cumulative average over the batches seen (``1 / num_batches_tracked``).
    affine : bool
        Whether to scale and shift by ``weight`` (ones) and ``bias`` (zeros).
    track_running_stats : bool
        Whether to keep ``running_mean`` (zeros), ``running_var`` (ones) and
        ``num_batches_tracked`` (an int64 counter); without them the layer
        normalises by the batch's statistics in inference too.
    name : str
        Prefix of the shared variables' names (``<name>.running_mean``).
    dtype : str, optional
        Default ``sg.config.floatX``.

    ``layer(x, training=True)`` builds the training graph: normalised by the batch's
    mean and biased variance, the running statistics (with the unbiased variance)
    and the counter updated when the graph runs -- :func:`symgrad.train_step` applies
    those updates; for :func:`symgrad.function` collect them with
    ``sg.nn.collect_updates(outputs)``. ``layer(x, training=False)`` builds the
    inference graph over the same variables: normalised by the running statistics.
    The state dict has PyTorch's keys, so a ``torch.nn.{torch}`` state dict loads.
"""


class BatchNorm1D(_BatchNorm):
    __doc__ = """Batch normalisation of ``(N, C)`` or ``(N, C, L)`` inputs, as
    ``torch.nn.BatchNorm1d``.
    """ + _BN_DOC.format(torch="BatchNorm1d") + """
    >>> import symgrad as sg
    >>> bn = sg.layers.BatchNorm1D(3)
    >>> list(bn.state_dict())
    ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']
    >>> [p.name for p in bn.params]
    ['batchnorm.weight', 'batchnorm.bias']
    """

    ndims = (2, 3)


class BatchNorm2D(_BatchNorm):
    __doc__ = """Batch normalisation of ``(N, C, H, W)`` inputs, as ``torch.nn.BatchNorm2d``.
    """ + _BN_DOC.format(torch="BatchNorm2d") + """
    >>> import symgrad as sg
    >>> bn = sg.layers.BatchNorm2D(16, name="bn1")
    >>> train, infer = bn(sg.tensor4("x")), bn(sg.tensor4("x"), training=False)
    """

    ndims = (4,)


class LayerNorm(_Module):
    """Layer normalisation over the last axes, as ``torch.nn.LayerNorm``:
    :func:`symgrad.nn.layer_norm` with ``weight`` (ones) and ``bias`` (zeros) of
    ``normalized_shape`` (``elementwise_affine=False``: neither; ``bias=False``: no
    bias). The same graph in training and inference.

    >>> import symgrad as sg
    >>> ln = sg.layers.LayerNorm(8)
    >>> ln(sg.matrix("x")).ndim, list(ln.state_dict())
    (2, ['weight', 'bias'])
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 name="layernorm", dtype=None):
        kind = "LayerNorm"
        shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) \
            else tuple(normalized_shape)
        self.normalized_shape = tuple(_positive_int(kind, "normalized_shape", n) for n in shape)
        if not self.normalized_shape:
            raise _at_line(ValueError("LayerNorm: normalized_shape must hold at least one length"))
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or eps < 0:
            raise _at_line(ValueError(f"LayerNorm: eps must be a number >= 0, got {eps!r}"))
        self.eps = float(eps)
        self.elementwise_affine, self.has_bias = bool(elementwise_affine), bool(bias)
        self.name, self.dtype = _layer_name(kind, name), _float_dtype(kind, dtype)
        self.weight = self.bias = None
        for key in self._shapes():
            fill = np.ones if key == "weight" else np.zeros
            setattr(self, key, shared(fill(self.normalized_shape, dtype=self.dtype),
                                      name=f"{name}.{key}"))

    def _shapes(self):
        shapes = {}
        if self.elementwise_affine:
            shapes["weight"] = self.normalized_shape
            if self.has_bias:
                shapes["bias"] = self.normalized_shape
        return shapes

    def __call__(self, x, training=True):
        from .nn import layer_norm
        return layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def __repr__(self):
        return (f"LayerNorm({self.normalized_shape}, eps={self.eps:g}, "
                f"elementwise_affine={self.elementwise_affine}, name={self.name!r})")


class _Stateless:
    """A layer without parameters: empty ``params`` and state dict."""

    params = []

    def state_dict(self):
        return collections.OrderedDict()

    def load_state_dict(self, state_dict, strict=True, prefix=""):
        return None


class MaxPool2D(_Stateless):
    """:func:`symgrad.nn.max_pool2d` as a layer (``torch.nn.MaxPool2d``'s arguments)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        self.args = dict(kernel_size=kernel_size, stride=stride, padding=padding,
                         dilation=dilation, ceil_mode=ceil_mode)

    def __call__(self, x, training=True):
        from .nn import max_pool2d
        return max_pool2d(x, **self.args)

    def __repr__(self):
        return f"MaxPool2D({', '.join(f'{k}={v!r}' for k, v in self.args.items())})"


class AvgPool2D(_Stateless):
    """:func:`symgrad.nn.avg_pool2d` as a layer (``torch.nn.AvgPool2d``'s arguments)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        self.args = dict(kernel_size=kernel_size, stride=stride, padding=padding,
                         ceil_mode=ceil_mode, count_include_pad=count_include_pad)

    def __call__(self, x, training=True):
        from .nn import avg_pool2d
        return avg_pool2d(x, **self.args)

    def __repr__(self):
        return f"AvgPool2D({', '.join(f'{k}={v!r}' for k, v in self.args.items())})"


class Flatten(_Stateless):
    """Axes ``start_dim..`` merged into one, as ``torch.nn.Flatten`` (default: all but the
    batch axis)."""

    def __init__(self, start_dim=1):
        if isinstance(start_dim, bool) or not isinstance(start_dim, numbers.Integral) \
                or start_dim < 0:
            raise _at_line(ValueError(f"Flatten: start_dim must be an int >= 0, got {start_dim!r}"))
        self.start_dim = int(start_dim)

    def __call__(self, x, training=True):
        if x.ndim <= self.start_dim:
            raise ShapeError(f"Flatten: start_dim {self.start_dim} needs an input of more "
                             f"than {self.start_dim} axes, got {x.type} (at {user_trace()})")
        # the merged length is the product of the lengths, not -1: a batch of 0 examples
        # (a data-parallel rank's empty shard) with lengths known only at call time made a
        # -1 ambiguous, which became 0
        from .ops.shape import flatten
        return flatten(x, self.start_dim + 1)

    def __repr__(self):
        return f"Flatten(start_dim={self.start_dim})"


def _takes_training(layer):
    import inspect
    try:
        return "training" in inspect.signature(layer).parameters
    except (TypeError, ValueError):
        return False


class Sequential:
    """Layers applied in order, as ``torch.nn.Sequential``: ``seq(x, training=True)`` passes
    ``training`` to the layers that take it (Dropout, the convolution and pooling layers,
    ...). ``params`` is every layer's, in order; the state dict names layer ``i``'s entries
    ``"<i>.<name>"`` (PyTorch's), so a ``torch.nn.Sequential`` of the same layers loads
    where the layers' own state dicts match PyTorch's.

    >>> import symgrad as sg
    >>> net = sg.layers.Sequential(sg.layers.Conv2D(1, 4, 3, rng=0), sg.layers.Flatten())
    >>> net(sg.tensor4("x")).ndim, list(net.state_dict())
    (2, ['0.weight', '0.bias'])
    """

    def __init__(self, *layers):
        for i, layer in enumerate(layers):
            if not callable(layer):
                raise _at_line(TypeError(f"Sequential: layer {i} is not callable: {layer!r}"))
        self.layers = list(layers)

    def __call__(self, x, training=True):
        for layer in self.layers:
            x = layer(x, training=training) if _takes_training(layer) else layer(x)
        return x

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    @property
    def params(self):
        return [p for layer in self.layers for p in getattr(layer, "params", [])]

    def state_dict(self):
        out = collections.OrderedDict()
        for i, layer in enumerate(self.layers):
            if hasattr(layer, "state_dict"):
                out.update((f"{i}.{k}", v) for k, v in layer.state_dict().items())
        return out

    def load_state_dict(self, state_dict, strict=True, prefix=""):
        """Each layer loads the entries under ``"<prefix><i>."``; with ``strict`` an entry no
        layer takes is an error. Any mismatch raises :class:`symgrad.CheckpointError` and
        changes nothing."""
        mine = [f"{prefix}{i}." for i, layer in enumerate(self.layers)
                if hasattr(layer, "load_state_dict")]
        stray = [k for k in state_dict if isinstance(k, str) and k.startswith(prefix)
                 and not any(k.startswith(m) for m in mine)]
        if strict and stray:
            raise _at_line(CheckpointError(f"Sequential: unexpected entries {stray}; nothing was "
                                           f"changed"))
        # every entry of the layers' state (running statistics too), not only the parameters
        state = [getattr(layer, k) for layer in self.layers if hasattr(layer, "_shapes")
                 for k in layer._shapes()]
        state += [p for p in self.params if all(p is not v for v in state)]
        saved = [(p, p.get_value()) for p in state]
        try:
            for i, layer in enumerate(self.layers):
                if hasattr(layer, "load_state_dict"):
                    layer.load_state_dict(state_dict, strict=strict, prefix=f"{prefix}{i}.")
        except BaseException:  # a later layer's mismatch: the earlier ones go back too
            for p, value in saved:
                p.set_value(value)
            raise

    def __repr__(self):
        return "Sequential(\n" + "".join(f"  ({i}): {l!r}\n" for i, l in
                                         enumerate(self.layers)) + ")"
