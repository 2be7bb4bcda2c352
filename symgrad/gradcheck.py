"""``sg.verify_grad``: symbolic gradients checked against finite differences.

It compiles functions (:mod:`symgrad.function`) of the gradient graphs
:mod:`symgrad.autodiff` builds, so it lives above both.
"""

import numpy as np

from .autodiff import grad
from .errors import GradientError
from .function import function
from .graph import Constant, TensorType, Variable

__all__ = ["verify_grad"]


def verify_grad(fun, pt, n_tests=2, rng=None, eps=None, abs_tol=None, rel_tol=None, mode=None):
    """Check the symbolic gradient of ``fun`` at ``pt`` against central finite differences.

    ``fun`` maps symbolic inputs (one per array in ``pt``) to a symbolic
    output; a non-scalar output is projected onto a random direction. Raises
    :class:`GradientError` saying which input and element differ and by how
    much. Tolerances default to the precision of the inputs' dtype.

    >>> import numpy as np, symgrad as sg
    >>> sg.verify_grad(lambda x: sg.tanh(x).sum(), [np.array([0.1, 0.5])])
    """
    if not isinstance(pt, (list, tuple)):
        raise TypeError(f"verify_grad: pt must be a list of arrays, got {type(pt).__name__}")
    pt = [np.array(p, dtype=p.dtype if isinstance(p, np.ndarray) and p.dtype.kind == "f"
                   else "float64") for p in pt]
    rng = rng if rng is not None else np.random.default_rng(42)
    dtype = "float32" if any(p.dtype == np.float32 for p in pt) else "float64"
    eps = eps if eps is not None else (1e-3 if dtype == "float32" else 1e-6)
    abs_tol = abs_tol if abs_tol is not None else (1e-2 if dtype == "float32" else 1e-5)
    rel_tol = rel_tol if rel_tol is not None else (1e-2 if dtype == "float32" else 1e-5)
    xs = [Variable(TensorType(p.dtype.name, (None,) * p.ndim), name=f"x{i}")
          for i, p in enumerate(pt)]
    out = fun(*xs)
    if not isinstance(out, Variable):
        raise TypeError(f"verify_grad: fun must return a symbolic Variable, got {type(out).__name__}")
    out_val = function(xs, out, mode=mode)(*pt)
    for t in range(n_tests):
        proj = rng.standard_normal(out_val.shape).astype(out.dtype) if out.ndim else None
        cost = out if proj is None else (out * Constant(proj)).sum()
        gs = grad(cost, xs, disconnected="ignore")
        f = function(xs, [cost] + list(gs), mode=mode)
        cost_fn = function(xs, cost, mode=mode)
        res = f(*pt)
        for k, (p, sym) in enumerate(zip(pt, res[1:])):
            num = _numeric_grad(cost_fn, pt, k, eps)
            _compare(sym, num, k, abs_tol, rel_tol, t)


def _numeric_grad(cost_fn, pt, k, eps):
    x = pt[k]
    g = np.zeros(x.shape, dtype="float64")
    flat = x.reshape(-1)
    for j in range(flat.size):
        orig = flat[j]
        flat[j] = orig + eps
        hi = float(cost_fn(*pt))
        flat[j] = orig - eps
        lo = float(cost_fn(*pt))
        flat[j] = orig
        g.reshape(-1)[j] = (hi - lo) / (2 * eps)
    return g


def _compare(sym, num, k, abs_tol, rel_tol, t):
    sym = np.asarray(sym, dtype="float64")
    abs_err = np.abs(sym - num)
    denom = np.abs(sym) + np.abs(num)
    rel_err = np.where(denom > 0, abs_err / np.where(denom > 0, denom, 1), 0)
    bad = (abs_err > abs_tol) & (rel_err > rel_tol) | (np.isnan(sym) != np.isnan(num))
    if np.any(bad):
        j = np.unravel_index(int(np.argmax(np.where(bad, abs_err, -1))), sym.shape) if sym.ndim else ()
        raise GradientError(
            f"verify_grad: the gradient of input #{k} at index {tuple(int(i) for i in j)} is "
            f"{sym[j]!r} symbolically but {num[j]!r} by finite differences (abs error "
            f"{abs_err[j]:.3g} > {abs_tol:g}, rel error {rel_err[j]:.3g} > {rel_tol:g}; test {t})",
            where=(k, tuple(int(i) for i in j)), abs_err=float(abs_err[j]),
            rel_err=float(rel_err[j]))
