"""The loop IR (codegen/ir.py): what lowering makes of a graph, read without any C text."""

import ast
from pathlib import Path

import numpy as np
import pytest

import symgrad as sg
from symgrad.codegen import ir
from symgrad.codegen.lower import to_program
from symgrad.codegen.render_c import render

CODEGEN = Path(sg.__file__).parent / "codegen"


def _program(inputs, outputs, updates=()):
    return to_program(inputs, outputs, updates)


def test_a_fused_loop_holds_its_operands_and_one_expression_per_member():
    x = sg.vector("x")
    b = sg.shared(np.ones(1), name="b", shape=(1,))
    y = sg.tanh(x * 2.0 + b)
    (step,) = _program([x], [y]).steps
    assert isinstance(step, ir.FusedLoop) and step.accumulation is None
    assert [n.op.name for n in step.members] == ["mul", "add", "tanh"]
    # x is read per element, the one-element b once before the loop, 2.0 is a literal
    assert step.operands == [x, b] and step.modes == ["load", "hoist"]
    mul, add, tanh = step.exprs
    assert isinstance(mul.args[0], ir.Ref) and mul.args[0].index == 0
    assert isinstance(mul.args[1], ir.Lit) and mul.args[1].value == 2.0
    assert add.args[0] is mul and tanh.args == [add]
    assert step.loaded == [x]


def test_work_per_element_comes_from_the_ops():
    x = sg.vector("x")
    (cheap,) = _program([x], [x + 1.0]).steps
    (costly,) = _program([x], [sg.tanh(sg.exp(x))]).steps
    # a load, a store, and the ops' own costs (ELEMWISE rows: add 1, exp and tanh 8)
    assert cheap.work_per_element() == 1 + 1 + 1
    assert costly.work_per_element() == 1 + 1 + 8 + 8


def test_an_accumulation_absorbs_its_elementwise_producer():
    x = sg.matrix("x")
    (step,) = _program([x], [(x * x).sum(axis=1)]).steps
    assert isinstance(step, ir.FusedLoop)
    assert step.accumulation.kind == "sum" and step.accumulation.axes == (1,)
    assert step.accumulation.acc_dtype == "float64"
    assert [n.op.name for n in step.elementwise] == ["mul"]
    assert step.term is step.exprs[-1]


def test_value_errors_are_known_from_the_op_not_the_text():
    i = sg.vector("i", dtype="int64")
    f = sg.vector("f")
    (int_pow,) = _program([i], [(i + 1) ** i]).steps
    (float_pow,) = _program([f], [(f + 1) ** f]).steps
    assert int_pow.value_error is int_pow.root and int_pow.exprs[-1].can_fail
    assert float_pow.value_error is None


def test_blas_steps_are_typed():
    X, W, b = sg.matrix("X"), sg.matrix("W"), sg.vector("b")
    f = sg.function([X, W, b], sg.tanh(X @ W + b))  # the rewrites make X @ W + b a gemm
    (gemm,) = [s for s in f.kernel.steps if s.blas]
    assert isinstance(gemm, ir.BlasCall) and gemm.blas == ["dgemm"] and gemm.c is b
    assert (gemm.a, gemm.b, gemm.alpha, gemm.beta) == (X, W, 1.0, 1.0)
    # a product the rewrites leave as matmul (a batch) is the op's own step, declared BLAS
    A3 = sg.tensor("A", dtype="float32", shape=(None,) * 3)
    B3 = sg.tensor("B", dtype="float32", shape=(None,) * 3)
    f = sg.function([A3, B3], A3 @ B3)
    (mm,) = [s for s in f.kernel.steps if s.blas]
    assert isinstance(mm, ir.OpStep) and mm.blas == ["sgemm"]


def test_updates_written_in_place_are_planned_in_the_ir():
    x = sg.vector("x")
    w = sg.shared(np.zeros(3), name="w")
    prog = _program([x], [w * 0.9 + x], updates=[(0, w)])
    assert prog.steps == []
    (u,) = prog.in_place.updates
    assert u.kind == "loop" and u.var is w and u.out_index == 0 and u.leaf == 1
    assert u.step.over is w and prog.all_steps() == [u.step]


def test_rendering_fills_buffers_and_numbers_steps_in_source_order():
    x = sg.vector("x")
    prog = _program([x], [sg.exp(x).sum(), sg.sin(x)])
    source, locations, timed = render(prog, "t")
    steps = prog.all_steps()
    assert [s.index for s in steps] == list(range(1, len(steps) + 1))
    positions = [source.index(f"/* {s.label}: ") for s in steps]
    assert positions == sorted(positions)
    assert [kind for s in steps for _, kind in s.buffers].count("output") == 2
    assert timed == [] and all(isinstance(t, str) for t in locations)


def test_each_fused_loop_is_one_row_function_and_one_driver_call():
    x, y = sg.matrix("x"), sg.vector("y")
    f = sg.function([x, y], [sg.tanh(x + y), (x * y).sum(axis=0)])
    src = f.source
    assert src.count("sg_ew_loop(ws,") == 1 and src.count("sg_acc_run(err,") == 1
    assert src.count("static int row") == 2
    np.testing.assert_allclose(f(np.ones((2, 3)), np.arange(3.0))[1], [0.0, 2.0, 4.0])


def test_equal_loops_share_one_row_function():
    """An unrolled recurrence repeats its loops at every step: their C is written once."""
    x = sg.matrix("x")
    h = x
    for _ in range(5):
        h = sg.tanh(h @ sg.shared(np.eye(3), shape=(3, 3)) + 1.0)
    f = sg.function([x], h)
    loops = [s for s in f.kernel.steps if isinstance(s, ir.FusedLoop)]
    # two functions: one for the four loops that may write over their operand (the
    # product's buffer), one for the last, whose result is the output (fresh memory)
    assert len(loops) == 5 and f.source.count("static int row") == 2
    assert f.source.count("sg_ew_loop(ws,") == 5
    want = np.ones((2, 3))
    for _ in range(5):
        want = np.tanh(want + 1.0)
    np.testing.assert_allclose(f(np.ones((2, 3))), want)


def test_each_step_is_a_function_of_its_own():
    """sg_main calls one function per step: the C compiler never optimises one huge function."""
    x = sg.vector("x")
    f = sg.function([x], [sg.exp(x).sum(), sg.sin(x) * 2.0])
    for s in f.kernel.steps:
        assert f"static SG_STEP int sg_{s.label}(" in f.source
        assert f"if (sg_{s.label}(in, out, ws, err, F)) goto fail;" in f.source


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


# cstr.py escapes the user's text on its way into C; it never reads the C written.
@pytest.mark.parametrize("module", sorted(p.name for p in CODEGEN.glob("*.py")
                                          if p.name != "cstr.py"))
def test_no_analysis_reads_the_generated_c(module):
    """Questions about the kernel are answered from the IR: no module of the code generator
    runs regular expressions (over the C it wrote or anything else)."""
    assert "re" not in set(_imports(CODEGEN / module))


def test_only_the_renderer_and_the_c_helpers_know_c_types():
    """One home for the dtype -> C type table: render_c.CTYPE."""
    for path in CODEGEN.glob("*.py"):
        text = path.read_text()
        if path.name != "render_c.py":
            assert '"int64_t"' not in text, path.name
