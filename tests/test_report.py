"""sg.explain: kernel structure, buffers, compile stages, FLOPs and measured workspace."""

import io
import re

import numpy as np
import pytest

import symgrad as sg
from symgrad.report import node_flops


def _model():
    X = sg.matrix("X")
    W = sg.shared(np.full((3, 2), 0.5), name="W")
    return X, W, sg.tanh(X @ W).sum()


def test_flops_of_a_small_function_by_hand():
    X, W, y = _model()
    f = sg.function([X], y)
    e = sg.explain(f, np.ones((5, 3)))
    assert e.flops == 2 * 5 * 3 * 2 + 10 + 10  # product, tanh, sum
    assert sum(e.flops_by_step.values()) == e.flops
    (blas,) = e.blas_calls
    assert e.flops_by_step[blas.label] == 60
    assert "5x3 @ 3x2" in str(e) and re.search(r"FLOPs +80 per call: BLAS 60 \(75%\)", str(e))


def test_workspace_is_measured_at_the_given_shapes():
    X, W, y = _model()
    f = sg.function([X], y)
    small = sg.explain(f, np.ones((5, 3)))
    big = sg.explain(f, np.ones((1000, 3)))
    # the product's result is the only intermediate: 8 bytes x rows x 2, in a 64-byte aligned arena
    assert small.workspace_bytes >= 5 * 2 * 8 and small.workspace_bytes < 1024
    assert big.workspace_bytes >= 1000 * 2 * 8
    assert big.result_bytes == 8
    assert "workspace" in str(big) and "measured" in str(big)


def test_explain_changes_no_state():
    X = sg.matrix("X")
    W = sg.shared(np.ones((3, 2)), name="W")
    loss = (X @ W).sum()
    step = sg.train_step(loss, [X], optimizer=sg.optim.SGD(lr=0.5))
    before = W.get_value()
    e = sg.explain(step, np.ones((4, 3)))
    np.testing.assert_array_equal(W.get_value(), before)
    assert e.flops > 0 and e.workspace_bytes is not None
    step(np.ones((4, 3)))
    assert not np.array_equal(W.get_value(), before)  # the step itself still updates


def test_profile_counters_leave_out_explains_call():
    x = sg.vector("x")
    f = sg.function([x], sg.exp(x).sum(), profile=True)
    f(np.ones(10))
    sg.explain(f, np.ones(2_000_000))
    t = sum(float(r.split()[-2]) for r in f.profile_report().split("\n\n")[0].splitlines()[1:-1])
    g = sg.function([x], sg.exp(x).sum(), profile=True)
    g(np.ones(2_000_000))
    t_big = sum(float(r.split()[-2])
                for r in g.profile_report().split("\n\n")[0].splitlines()[1:-1])
    assert t < t_big / 4


def test_summary_of_a_train_step_without_arguments():
    X, y = sg.matrix("X"), sg.vector("y", dtype="int64")
    W1 = sg.shared(np.full((4, 5), 0.1), name="W1")
    W2 = sg.shared(np.full((5, 3), 0.1), name="W2")
    loss = sg.nn.cross_entropy(sg.tanh(X @ W1) @ W2, y).mean()
    step = sg.train_step(loss, [X, y])
    e = sg.explain(step)
    text = str(e)
    assert text.startswith("function 'train_step': mode 'c'")
    assert re.search(r"^graph +\d+ nodes \(\d+ made by gradient rules\); inputs X, y", text, re.M)
    n_steps = len(e.steps)
    assert re.search(rf"^kernel .* {n_steps} steps: \d+ fused loops? \(\d+ ops?\), "
                     rf"{len(e.blas_calls)} BLAS calls?", text, re.M)
    assert len(e.blas_calls) >= 3 and e.buffers["workspace"] > 0 and e.buffers["output"] >= 3
    assert re.search(r"^compile .*rewrite .*codegen .*C compile .*\((cache hit|compiled)\)",
                     text, re.M)
    assert "sg.explain(f, X, y)" in text and e.flops is None
    assert "computes d(loss)/d(W1) into an update" in text
    assert all(s.label in text for s in e.blas_calls)


def test_arguments_by_name_file_and_steps_listing():
    X, W, y = _model()
    f = sg.function([X], y)
    buf = io.StringIO()
    e = sg.explain(f, X=np.ones((2, 3)), file=buf, steps=True)
    assert buf.getvalue() == str(e) + "\n" and repr(e) == str(e)
    assert re.search(r"^at X: float64 \(2, 3\):", str(e), re.M)
    listing = str(e).split("\nsteps:\n")[1].splitlines()
    assert [ln.split()[0] for ln in listing] == [s.label for s in e.steps]
    with pytest.raises(sg.InputError):
        sg.explain(f, np.ones((2, 3, 4)))
    with pytest.raises(TypeError, match="compiled function"):
        sg.explain(y)


def test_mode_py_has_flops_but_no_kernel():
    X, W, y = _model()
    f = sg.function([X], y, mode="py")
    e = sg.explain(f, np.ones((5, 3)))
    assert e.steps is None and e.workspace_bytes is None and e.flops == 80
    assert "mode 'py'" in str(e) and "NumPy reference" in str(e)


def test_node_flops_rules():
    A, B = sg.matrix("A"), sg.matrix("B")
    x = sg.vector("x")
    assert node_flops((A @ B).owner, [(2, 3), (3, 4)], [(2, 4)]) == 48
    assert node_flops(sg.exp(x).owner, [(7,)], [(7,)]) == 7
    assert node_flops(x.sum().owner, [(7,)], [()]) == 7
    assert node_flops(sg.nn.softmax(A).owner, [(2, 3)], [(2, 3)]) == 24
    assert node_flops(A.T.owner, [(2, 3)], [(3, 2)]) == 0
    assert node_flops(sg.cast(x, "float32").owner, [(7,)], [(7,)]) == 0


# --------------------------------------------------------------------------- FLOPs come from the op

class _Scale(sg.Op):
    """A custom op: ``x * 2`` (1 FLOP per element), declared by flops_per_element."""

    name = "test_report_scale"
    register = False  # kept out of OP_REGISTRY, which the registry tests walk
    flops_per_element = 1

    def infer(self, x):
        return [x.type]

    def perform(self, node, x):
        return [x * 2]


class _Quartic(_Scale):
    """Counts itself with its own ``flops``."""

    name = "test_report_quartic"
    register = False
    flops_per_element = None

    def flops(self, node, in_shapes, out_shapes):
        return 4 * int(np.prod(in_shapes[0]))


class _Silent(_Scale):
    """Says nothing about its FLOPs."""

    name = "test_report_silent"
    register = False
    flops_per_element = None


def test_an_op_counts_its_own_flops():
    x = sg.vector("x")
    assert node_flops(_Scale()(x).owner, [(7,)], [(7,)]) == 7
    assert node_flops(_Quartic()(x).owner, [(7,)], [(7,)]) == 28
    f = sg.function([x], _Quartic()(_Scale()(x)), mode="py")
    assert sg.explain(f, np.ones(5)).flops == 5 + 20


def test_an_op_without_a_flop_count_is_an_error_not_a_zero():
    x = sg.vector("x")
    with pytest.raises(NotImplementedError, match="_Silent.*declares no FLOP count"):
        node_flops(_Silent()(x).owner, [(7,)], [(7,)])
    # explain says the total is unknown, and why, instead of counting the op as 0
    e = sg.explain(sg.function([x], _Silent()(x).sum(), mode="py"), np.ones(5))
    assert e.flops is None and e.uncounted_ops == ["_Silent"]
    assert "FLOPs      unknown: _Silent declares no count" in str(e)


def test_every_registered_op_has_a_flop_count():
    """Declared by the op (Op.flops_per_element or Op.flops): a new op cannot be counted
    as 0 unnoticed."""
    from symgrad.graph import OP_REGISTRY, Op
    from symgrad.ops.elemwise import Elemwise

    # An op class made without __init__: declares_flops reads class attributes only.
    ops = [entry.__new__(entry) if isinstance(entry, type) else Elemwise(name)
           for name, entry in OP_REGISTRY.items()]
    missing = sorted(op.name for op in ops if not op.declares_flops())
    assert not missing, f"ops with no FLOP count (set flops_per_element or define flops): {missing}"
    assert Op.flops_per_element is None  # the base declares nothing: no silent default
