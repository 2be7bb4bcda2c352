"""The op-registry test: every registered op, value vs NumPy and gradient vs finite differences."""

import importlib
import pkgutil

import numpy as np
import pytest

import symgrad as sg
from symgrad.graph import OP_REGISTRY

import cases as _cases  # tests/ is on sys.path (conftest.py)


def _all_cases():
    found = []
    for mod in pkgutil.iter_modules(_cases.__path__):
        found.extend(importlib.import_module(f"{_cases.__name__}.{mod.name}").CASES)
    return found


CASES = _all_cases()


def _symbolic(case):
    return [sg.tensor(f"a{i}", a.dtype, a.shape if a.static else (None,) * len(a.shape))
            for i, a in enumerate(case.args)]


def test_every_registered_op_has_a_case():
    covered = {c.op for c in CASES}
    missing = sorted(set(OP_REGISTRY) - covered)
    assert not missing, f"ops without a row in tests/cases/: {missing}"
    unknown = sorted(covered - set(OP_REGISTRY))
    assert not unknown, f"cases name ops that are not registered: {unknown}"


def test_cases_exercise_the_op_they_name():
    for case in CASES:
        out = case.build(*_symbolic(case))
        # the registry's names are the classes' (an instance may print as the user's
        # function: conv1d, adaptive_avg_pool2d)
        nodes = sg.graph.toposort([out])
        names = {n.op.name for n in nodes} | {type(n.op).__dict__.get("name") for n in nodes}
        assert case.op in names, f"{case.id}: the graph has {sorted(names)}, not {case.op}"


@pytest.mark.parametrize("case", CASES, ids=repr)
@pytest.mark.parametrize("seed", [0, 1])
def test_value_matches_numpy(case, seed):
    rng = np.random.default_rng(seed)
    xs = _symbolic(case)
    out = case.build(*xs)
    vals = [a.make(rng) for a in case.args]
    got = sg.function(xs, out, mode="py")(*vals)
    with np.errstate(all="ignore"):
        want = np.asarray(case.ref(*[v.copy() for v in vals]))
    assert got.dtype == want.dtype, f"dtype {got.dtype}, NumPy gives {want.dtype}"
    assert got.shape == want.shape
    assert out.type.accepts_shape(got.shape), f"static {out.type} vs actual {got.shape}"
    if got.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, want)


GRAD_CASES = [c for c in CASES if c.grad and any(a.is_float and a.grad for a in c.args)]


@pytest.mark.parametrize("case", GRAD_CASES, ids=repr)
def test_gradient_matches_finite_differences(case):
    rng = np.random.default_rng(7)
    vals = [a.make(rng) for a in case.args]
    diff = [i for i, a in enumerate(case.args) if a.is_float and a.grad]

    def fun(*free):
        xs = [sg.constant(v) for v in vals]
        for i, f in zip(diff, free):
            xs[i] = f  # gradients are checked in float64 whatever the case's dtype
        out = case.build(*xs)
        return out if out.dtype == "float64" else out.astype("float64")

    tol = case.grad_tol or {}
    sg.verify_grad(fun, [vals[i].astype("float64") for i in diff], rng=rng, mode="py", **tol)


def _as_float32(case):
    """The case with every float64 argument made float32 (None if it has none)."""
    if not any(a.dtype == "float64" for a in case.args):
        return None
    import copy
    args = []
    for a in case.args:
        b = copy.copy(a)
        if a.dtype == "float64":
            b.dtype = "float32"
        args.append(b)
    c = copy.copy(case)
    c.args = args
    return c


COMPILED = [(c, "as-is") for c in CASES] + [
    (c, "float32") for c in CASES if _as_float32(c) is not None]


# Cases are compiled in batches: one kernel computes the values and gradients of CHUNK
# independent cases (each with inputs of its own), so the suite pays one C compile per
# batch instead of one per case. A failure names the case.
CHUNK = 32
BATCHES = [COMPILED[i:i + CHUNK] for i in range(0, len(COMPILED), CHUNK)]


def _batch_id(batch):
    return f"{batch[0][0].id}-{batch[0][1]}..{batch[-1][0].id}-{batch[-1][1]}"


def _compiled_case(case, variant, rng):
    """(label, inputs, outputs, values) of one case: its output and gradient graph."""
    if variant == "float32":
        case = _as_float32(case)
    xs = _symbolic(case)
    out = case.build(*xs)
    vals = [a.make(rng) for a in case.args]
    outs = [out]
    diff = [x for x, a in zip(xs, case.args) if a.is_float and a.grad]
    if case.grad and diff and out.dtype.startswith("float"):
        shape = sg.function(xs, out, mode="py")(*vals).shape
        proj = sg.constant(rng.standard_normal(shape).astype(out.dtype))
        outs += sg.grad((out * proj).sum(), diff, disconnected="ignore")
    return f"{case.id} ({variant})", xs, outs, vals


@pytest.mark.parametrize("batch", BATCHES, ids=_batch_id)
def test_compiled_matches_reference(batch):
    """Every op compiled (values and the gradient graph) against the NumPy reference."""
    rng = np.random.default_rng(3)
    parts = [_compiled_case(case, variant, rng) for case, variant in batch]
    xs = [x for _, ins, _, _ in parts for x in ins]
    outs = [o for _, _, os, _ in parts for o in os]
    vals = [v for _, _, _, vs in parts for v in vs]
    labels = [label for label, _, os, _ in parts for _ in os]
    got = sg.function(xs, outs, mode="c")(*vals)
    want = sg.function(xs, outs, mode="py")(*vals)
    for label, g, w in zip(labels, got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, label
        tol = 2e-4 if g.dtype == np.float32 else 1e-9
        if g.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol, equal_nan=True, err_msg=label)
        else:
            np.testing.assert_array_equal(g, w, err_msg=label)


@pytest.mark.slow
@pytest.mark.parametrize("batch", BATCHES, ids=_batch_id)
def test_compiled_matches_reference_at_release_flags(batch, monkeypatch):
    """The same, compiled with the release flags alone (the default run adds -O1)."""
    monkeypatch.setattr(sg.config, "cflags", [f for f in sg.config.cflags if f != "-O1"])
    test_compiled_matches_reference(batch)
