"""The kernel's steps (codegen/steps.py): comments in f.source that map C to graph nodes."""

import re
from types import SimpleNamespace

import numpy as np

import symgrad as sg
from symgrad.codegen.steps import Step
from symgrad.graph import Trace

THIS_FILE = "test_steps.py"


def _block(source, label):
    """The C of step ``label``: from its comment to the next step's."""
    start = source.index(f"/* {label}: ")
    nxt = re.compile(r"/\* K\d+: ").search(source, start + 1)
    return source[start:nxt.start() if nxt else len(source)]


def test_each_step_is_headed_by_its_node_and_line():
    x = sg.vector("x")
    y = sg.tanh(x).sum()
    line = y.owner.trace.lineno
    f = sg.function([x], [y, sg.grad(y, x)])
    steps = f.kernel.steps
    assert [s.index for s in steps] == list(range(1, len(steps) + 1))
    for s in steps:
        head = _block(f.source, s.label).split("*/")[0]
        assert f"{THIS_FILE}:" in head, head
        if not s.fused:
            assert str(s.root.op) in head
    grads = [s for s in steps if any(m.grad_of is not None for m in s.members)]
    assert grads and all("(gradient of " in _block(f.source, s.label) for s in grads)
    assert f"{THIS_FILE}:{line}" in f.source


def test_fused_group_comment_lists_every_member_with_its_line():
    x = sg.vector("x")
    a = sg.tanh(x)            # each op on its own line
    b = a * 2.0
    c = sg.exp(b + 1.0)
    f = sg.function([x], c)
    (step,) = [s for s in f.kernel.steps if s.fused]
    assert [m.op.name for m in step.members] == ["tanh", "mul", "add", "exp"]
    head = _block(f.source, step.label).split("*/")[0]
    assert "fused loop of 4 ops" in head
    for var in (a, b, c):
        assert f"{var.owner.op.name} at {THIS_FILE}:{var.owner.trace.lineno}" in head
    assert f"{THIS_FILE}:{c.owner.inputs[0].owner.trace.lineno}" in head  # the add
    np.testing.assert_allclose(f(np.array([0.5])), np.exp(np.tanh([0.5]) * 2 + 1))


def test_blas_calls_name_their_node():
    X = sg.matrix("X")
    W = sg.shared(np.ones((3, 2)), name="W")
    y = sg.tanh(X @ W).sum()
    line = y.owner.inputs[0].owner.inputs[0].owner.trace.lineno
    f = sg.function([X], [y, sg.grad(y, W)])
    blas = [s for s in f.kernel.steps if s.blas]
    assert len(blas) == 2  # the forward product and the one of the gradient
    for s in blas:
        block = _block(f.source, s.label)
        calls = re.findall(r"^\s*/\* BLAS \((\w+)\): (.*) \*/\n(.*)$", block, re.M)
        assert calls, block
        for fname, node, code in calls:
            assert fname in code and f"{THIS_FILE}:{line}" in node
    assert "gradient of matmul" in "".join(_block(f.source, s.label) for s in blas)
    np.testing.assert_allclose(f(np.ones((4, 3)))[0], np.tanh(np.full((4, 2), 3.0)).sum())


def test_steps_record_buffers():
    x = sg.vector("x")
    f = sg.function([x], [sg.exp(x).sum(), sg.sin(x)])
    kinds = [where for s in f.kernel.steps for _, where in s.buffers]
    assert kinds.count("output") == 2


def test_comment_text_cannot_close_the_comment():
    node = SimpleNamespace(op="odd*/op", trace=Trace("/a/model.py", 3), grad_of=None,
                           tag=SimpleNamespace(), outputs=[])
    text = Step(1, node, [node]).comment()
    assert text.startswith("/* K1: ") and text.endswith(" */") and text.count("*/") == 1
    fused = Step(2, node, [node, node]).comment()
    assert fused.count("*/") == 1 and "model.py:3" in fused


def test_an_unpickled_function_has_the_same_source_and_finds_it_in_the_cache(monkeypatch,
                                                                              tmp_path):
    import pickle

    monkeypatch.setattr(sg.config, "cache_dir", str(tmp_path / "cache"))

    X, y = sg.matrix("X"), sg.vector("y")
    W = sg.shared(np.ones((3, 2)), name="W")
    loss = ((sg.tanh(X @ W).sum(axis=1) - y) ** 2).mean()
    f = sg.function([X, y], [loss, sg.grad(loss, W)])  # BLAS, fused loops, gradient nodes
    assert any(s.blas for s in f.kernel.steps) and any(s.fused for s in f.kernel.steps)
    g = pickle.loads(pickle.dumps(f))
    assert f.cache_hit is False and g.source == f.source and g.cache_hit is True
