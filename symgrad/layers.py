"""Model-building helpers: initialisers and a dense layer.

A model stays plain Python that builds graph; these only save typing. An
initialiser returns a NumPy array (wrap it in :func:`symgrad.shared`); a
:class:`Dense` layer holds its weights as shared variables and, called on a
symbolic input, builds ``activation(x @ W + b)``. Calling a layer twice (a
training graph and an inference graph) reuses the same parameters.

Random initialisers take ``rng``: a ``numpy.random.Generator``, an int seed,
or None for fresh, unseeded randomness.

Weight shapes follow ``x @ W``: ``(fan_in, fan_out)``; for more than two
axes the leading ones are a receptive field, ``(..., fan_in, fan_out)``.
"""

import math
import numbers

import numpy as np

from . import dtypes as _dt
from .errors import ShapeError
from .graph import Variable, shared

__all__ = ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "zeros",
           "fans", "Dense", "INITIALISERS"]


def _rng(rng):
    if rng is None or isinstance(rng, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(rng, bool):
            raise TypeError("rng must be a numpy Generator, an int seed or None, got a bool")
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got "
                    f"{type(rng).__name__}")


def _shape(shape):
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    if not shape or not all(isinstance(s, numbers.Integral) and s > 0 for s in shape):
        raise ValueError(f"an initialiser needs a shape of positive ints, got {shape}")
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
            raise ValueError(f"{what}: unknown initialiser {init!r}; one of "
                             f"{sorted(INITIALISERS)} or a function (shape, rng, dtype) -> array")
        return INITIALISERS[init]
    if not callable(init):
        raise TypeError(f"{what} must be an initialiser name or a function (shape, rng, dtype) "
                        f"-> array, got {type(init).__name__}")
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
        for what, n in (("n_in", n_in), ("n_out", n_out)):
            if isinstance(n, bool) or not isinstance(n, numbers.Integral):
                raise TypeError(f"Dense: {what} must be a positive int, got {type(n).__name__}")
            if n < 1:
                raise ValueError(f"Dense: {what} must be a positive int, got {n}")
        if activation is not None and not callable(activation):
            raise TypeError(f"Dense: activation must be callable (e.g. sg.relu) or None, got "
                            f"{type(activation).__name__}")
        if not isinstance(name, str) or not name:
            raise TypeError(f"Dense: name must be a non-empty str, got {name!r}")
        dtype = _dt.as_dtype(dtype)
        if not _dt.is_float(dtype):
            raise TypeError(f"Dense: parameters must be float, got dtype {dtype}")
        init = _initialiser(init, "Dense: init")
        self.n_in, self.n_out, self.activation, self.name = int(n_in), int(n_out), activation, name
        weights = np.asarray(init((self.n_in, self.n_out), rng=_rng(rng), dtype=dtype))
        if weights.shape != (self.n_in, self.n_out):
            raise ValueError(f"Dense: the initialiser returned shape {weights.shape}, expected "
                             f"{(self.n_in, self.n_out)}")
        self.W = shared(weights.astype(dtype), name=f"{name}.W")
        self.b = shared(np.zeros(self.n_out, dtype=dtype), name=f"{name}.b") if bias else None

    @property
    def params(self):
        return [self.W] if self.b is None else [self.W, self.b]

    def __call__(self, x):
        """``activation(x @ W + b)`` for a symbolic ``x`` of shape ``(..., n_in)``."""
        if not isinstance(x, Variable):
            raise TypeError(f"Dense {self.name!r}: expected a symbolic Variable, got "
                            f"{type(x).__name__}")
        if x.ndim == 0 or x.type.shape[-1] not in (None, self.n_in):
            raise ShapeError(f"Dense {self.name!r}: expected an input of shape (..., {self.n_in}), "
                             f"got {x.type}")
        y = x @ self.W
        if self.b is not None:
            y = y + self.b
        return y if self.activation is None else self.activation(y)

    def __repr__(self):
        act = getattr(self.activation, "__name__", None) if self.activation else None
        return f"Dense({self.n_in}, {self.n_out}, activation={act}, name={self.name!r})"
