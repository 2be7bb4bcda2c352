"""Optimizers: update rules built as graph and compiled into the train step.

An optimizer is any object with ``updates(params, grads) -> list of (shared,
expr)``: given the parameters (shared variables) and their gradients
(symbolic Variables), it returns the new value of every parameter and of every
piece of its own state, as graph. :func:`symgrad.train_step` compiles these
updates together with the forward and backward pass into one function, so an
optimizer step costs no Python work per call.

State (momentum buffers, moment estimates, step counters) lives in shared
variables with readable names (``W.m``, ``W.v``, ``W.t``; ``trainable=False``),
created on the first ``updates`` call and reused by later ones, so two train
steps built with one optimizer share its state, and a checkpoint of a step
holds it (:func:`symgrad.save`).

``lr`` is a Python number (fixed into the graph) or a 0-d float shared
variable, or an expression of shared variables: ``lr.set_value(...)``
between calls is a learning-rate schedule. It may also read a 0-d input of
the train step (Theano's ``sg.In(lr, value=0.1)`` among the step's inputs);
a step that does not list that input is an ``InputError`` naming it.

The update rules follow PyTorch's conventions; each class's docstring states
its formula exactly.
"""

import math
import numbers

import numpy as np

from . import dtypes as _dt
from .graph import SharedVariable, Variable
from .ops import cast, minimum, sqrt

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_by_global_norm"]

CLIP_EPS = 1e-6  # added to the norm before dividing, as torch.nn.utils.clip_grad_norm_


# --------------------------------------------------------------------------- checks

def _number(value, what, low=0.0, high=math.inf, high_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    value = float(value)
    if not (low <= value and (value < high if high_open else value <= high)) or math.isnan(value):
        bound = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{what} must lie in {bound}, got {value}")
    return value


def _check_lr(lr):
    if isinstance(lr, Variable):
        if lr.ndim != 0 or not _dt.is_float(lr.dtype):
            raise TypeError(f"lr must be a number or a 0-d float Variable, got a "
                            f"{lr.ndim}-d {lr.dtype} variable")
        return lr
    return _number(lr, "lr")


def _check_clip(clip_norm):
    if clip_norm is None:
        return None
    value = _number(clip_norm, "clip_norm")
    if value == 0:
        raise ValueError("clip_norm must be positive (or None for no clipping), got 0")
    return value


def _check_params_grads(params, grads):
    if isinstance(params, Variable) or not isinstance(params, (list, tuple)):
        raise TypeError(f"updates(params, grads): params must be a list of shared variables, got "
                        f"{type(params).__name__}")
    if isinstance(grads, dict):
        missing = [_label(p, i) for i, p in enumerate(params) if p not in grads]
        if missing:
            raise TypeError(f"updates(params, grads): no gradient for {', '.join(missing)}")
        grads = [grads[p] for p in params]
    if not isinstance(grads, (list, tuple)) or len(grads) != len(params):
        raise TypeError(f"updates(params, grads): grads must be a list as long as params "
                        f"({len(params)}), got {type(grads).__name__}"
                        + (f" of length {len(grads)}" if isinstance(grads, (list, tuple)) else ""))
    for i, (p, g) in enumerate(zip(params, grads)):
        if not isinstance(p, SharedVariable) or not _dt.is_float(p.dtype):
            raise TypeError(f"updates: params[{i}] must be a float shared variable, got {p!r}")
        if not isinstance(g, Variable) or g.ndim != p.ndim:
            raise TypeError(f"updates: the gradient of {_label(p, i)} must be a {p.ndim}-d "
                            f"Variable, got {g!r}")
    return list(params), [g if g.dtype == p.dtype else cast(g, p.dtype)
                          for p, g in zip(params, grads)]


def _label(param, i):
    return param.name or f"param{i}"


# --------------------------------------------------------------------------- clipping

def clip_by_global_norm(grads, max_norm):
    """Scale ``grads`` together so that their global L2 norm is at most ``max_norm``.

    ``norm = sqrt(sum_i sum(g_i ** 2))``; every gradient is multiplied by
    ``min(1, max_norm / (norm + 1e-6))`` (as ``torch.nn.utils.clip_grad_norm_``),
    which keeps the direction of the whole update.

    Parameters
    ----------
    grads : list of Variable
    max_norm : float
        Positive.

    Returns
    -------
    (list of Variable, Variable)
        The scaled gradients (each in its own dtype) and the norm before scaling.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> g = sg.vector("g")
    >>> (clipped,), norm = sg.optim.clip_by_global_norm([g], 1.0)
    >>> sg.evaluate(clipped, {g: np.array([3.0, 4.0])}).round(6)
    array([0.6, 0.8])
    """
    max_norm = _check_clip(max_norm)
    if max_norm is None:
        raise ValueError("clip_by_global_norm needs a positive max_norm, got None")
    grads = list(grads)
    if not grads or not all(isinstance(g, Variable) and _dt.is_float(g.dtype) for g in grads):
        raise TypeError("clip_by_global_norm needs a non-empty list of float Variables")
    wide = "float64" if any(g.dtype == "float64" for g in grads) else grads[0].dtype
    squares = [cast((g * g).sum(), wide) if g.dtype != wide else (g * g).sum() for g in grads]
    total = squares[0]
    for s in squares[1:]:
        total = total + s
    norm = sqrt(total)
    norm.name = "grad_norm"
    scale = minimum(1.0, max_norm / (norm + CLIP_EPS))
    return [g * (scale if g.dtype == wide else cast(scale, g.dtype)) for g in grads], norm


# --------------------------------------------------------------------------- base

class Optimizer:
    """Base of the built-in optimizers: learning rate, clipping and state slots.

    A subclass implements ``_param_updates(param, grad, label) -> list of
    (shared, expr)`` for one parameter; the base clips the gradients (when
    ``clip_norm`` is set) and concatenates the lists. Any object with an
    ``updates(params, grads)`` method works as an optimizer without deriving
    from this class.

    Parameters
    ----------
    lr : float or Variable
        A non-negative number, or a 0-d float shared variable (or an expression
        of shared variables) for schedules, or a 0-d input of the train step.
    clip_norm : float, optional
        Clip the gradients to this global L2 norm first
        (:func:`clip_by_global_norm`).
    """

    def __init__(self, lr, clip_norm=None):
        self.lr = _check_lr(lr)
        self.clip_norm = _check_clip(clip_norm)
        self._slots = {}   # (param, slot name) -> SharedVariable
        self._state = []   # the same, in creation order

    @property
    def state(self):
        """Every state shared variable created so far, in creation order."""
        return list(self._state)

    def updates(self, params, grads):
        """The update pairs for ``params`` given their gradients ``grads``.

        Parameters
        ----------
        params : list of SharedVariable
            Float shared variables.
        grads : list of Variable, or dict param -> Variable
            One gradient per parameter, of the parameter's ndim.

        Returns
        -------
        list of (SharedVariable, Variable)
            Parameters and optimizer state with their new values; every
            right-hand side sees the values from before the step.
        """
        params, grads = _check_params_grads(params, grads)
        if self.clip_norm is not None and params:
            grads, _ = clip_by_global_norm(grads, self.clip_norm)
        pairs = []
        for i, (p, g) in enumerate(zip(params, grads)):
            pairs.extend(self._param_updates(p, g, _label(p, i)))
        return pairs

    def _param_updates(self, param, grad, label):
        raise NotImplementedError(f"{type(self).__name__}._param_updates")

    def _slot(self, param, slot, label, dtype=None, suffix=None):
        """The state variable ``slot`` of ``param`` (zeros like it), made on first use."""
        key = (param, slot)
        if key not in self._slots:
            value = (np.zeros_like(param.get_value(borrow=True)) if dtype is None
                     else np.zeros((), dtype=dtype))
            sv = SharedVariable(value, name=f"{label}.{suffix or slot}", trainable=False)
            self._slots[key] = sv
            self._state.append(sv)
        return self._slots[key]

    def _lr(self, dtype):
        lr = self.lr
        return lr if not isinstance(lr, Variable) or lr.dtype == dtype else cast(lr, dtype)

    def _hyper(self):
        return {}

    def __repr__(self):
        lr = (self.lr.name or "<variable>") if isinstance(self.lr, Variable) else self.lr
        args = [f"lr={lr}"] + [f"{k}={v}" for k, v in self._hyper().items()]
        if self.clip_norm is not None:
            args.append(f"clip_norm={self.clip_norm}")
        return f"{type(self).__name__}({', '.join(args)})"


# --------------------------------------------------------------------------- SGD

class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and weight decay.

    For each parameter ``p`` with gradient ``g`` (after clipping), with state
    ``buf`` (named ``<p>.momentum``, zeros at first, kept only when
    ``momentum > 0``), exactly as ``torch.optim.SGD`` with ``dampening=0``::

        g   = g + weight_decay * p                  # L2 penalty on the gradient
        buf = momentum * buf + g                    # if momentum > 0
        g   = g + momentum * buf   if nesterov      # if momentum > 0
              buf                  otherwise
        p   = p - lr * g

    Parameters
    ----------
    lr : float or Variable
        Default 0.01.
    momentum : float
        In [0, 1].
    nesterov : bool
        Needs ``momentum > 0``.
    weight_decay : float
        Non-negative.
    clip_norm : float, optional
        Global gradient-norm clipping, applied before weight decay.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> w = sg.shared(np.array([1.0, -2.0]), name="w")
    >>> step = sg.train_step((w ** 2).sum(), [], optimizer=sg.optim.SGD(lr=0.25), mode="py")
    >>> step()["loss"], w.get_value()
    (5.0, array([ 0.5, -1. ]))
    """

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, clip_norm=None):
        super().__init__(lr, clip_norm)
        self.momentum = _number(momentum, "momentum", 0.0, 1.0)
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = nesterov
        self.weight_decay = _number(weight_decay, "weight_decay")

    def _hyper(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}

    def _param_updates(self, p, g, label):
        pairs = []
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            buf = self._slot(p, "momentum", label)
            new_buf = self.momentum * buf + g
            pairs.append((buf, new_buf))
            g = g + self.momentum * new_buf if self.nesterov else new_buf
        pairs.append((p, p - self._lr(p.dtype) * g))
        return pairs


# --------------------------------------------------------------------------- Adam

class Adam(Optimizer):
    """Adam (Kingma & Ba), with bias correction; ``weight_decay`` is an L2 penalty.

    For each parameter ``p`` with gradient ``g`` (after clipping), with state
    ``m``, ``v`` (``<p>.m``, ``<p>.v``, zeros at first) and the int64 step
    counter ``t`` (``<p>.t``, 0 at first), exactly as ``torch.optim.Adam``::

        g = g + weight_decay * p                    # L2 penalty on the gradient
        t = t + 1
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g ** 2
        m_hat = m / (1 - beta1 ** t)
        v_hat = v / (1 - beta2 ** t)
        p = p - lr * m_hat / (sqrt(v_hat) + eps)

    Each parameter counts its own steps (as PyTorch does), so two train steps
    that share an optimizer and some parameters keep correct bias corrections.

    Parameters
    ----------
    lr : float or Variable
        Default 1e-3.
    beta1, beta2 : float
        In [0, 1).
    eps : float
        Non-negative.
    weight_decay : float
        Non-negative. For decoupled weight decay use :class:`AdamW`.
    clip_norm : float, optional
        Global gradient-norm clipping, applied first.
    """

    _decoupled = False

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 clip_norm=None):
        super().__init__(lr, clip_norm)
        self.beta1 = _number(beta1, "beta1", 0.0, 1.0, high_open=True)
        self.beta2 = _number(beta2, "beta2", 0.0, 1.0, high_open=True)
        self.eps = _number(eps, "eps")
        self.weight_decay = _number(weight_decay, "weight_decay")

    def _hyper(self):
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _param_updates(self, p, g, label):
        lr, wd, b1, b2 = self._lr(p.dtype), self.weight_decay, self.beta1, self.beta2
        if wd and not self._decoupled:
            g = g + wd * p
        m, v = self._slot(p, "m", label), self._slot(p, "v", label)
        t = self._slot(p, "t", label, dtype="int64")
        new_t = t + 1
        tf = cast(new_t, p.dtype)
        new_m = b1 * m + (1 - b1) * g
        new_v = b2 * v + (1 - b2) * (g * g)
        m_hat = new_m / (1 - b1 ** tf)
        v_hat = new_v / (1 - b2 ** tf)
        base = p * (1 - lr * wd) if wd and self._decoupled else p
        return [(m, new_m), (v, new_v), (t, new_t),
                (p, base - lr * m_hat / (sqrt(v_hat) + self.eps))]


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter).

    As :class:`Adam` without the L2 term on the gradient; instead the
    parameter itself decays, exactly as ``torch.optim.AdamW``::

        t = t + 1
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g ** 2
        m_hat = m / (1 - beta1 ** t)
        v_hat = v / (1 - beta2 ** t)
        p = p * (1 - lr * weight_decay) - lr * m_hat / (sqrt(v_hat) + eps)

    Parameters
    ----------
    lr : float or Variable
        Default 1e-3.
    beta1, beta2, eps : float
        As :class:`Adam`.
    weight_decay : float
        Default 0.01 (PyTorch's default).
    clip_norm : float, optional
        Global gradient-norm clipping, applied first.
    """

    _decoupled = True

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01,
                 clip_norm=None):
        super().__init__(lr, beta1, beta2, eps, weight_decay, clip_norm)
