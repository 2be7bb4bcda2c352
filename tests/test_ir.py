"""The loop IR (codegen/ir.py): what lowering makes of a graph, read without any C text."""

import ast
import subprocess
from pathlib import Path

import numpy as np
import pytest

import symgrad as sg
from symgrad import compiler
from symgrad.codegen import ir, render_c
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
    assert _rows(f).count("SG_ROW int row") == 2
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
    assert len(loops) == 5 and _rows(f).count("SG_ROW int row") == 2
    assert f.source.count("sg_ew_loop(ws,") == 5
    want = np.ones((2, 3))
    for _ in range(5):
        want = np.tanh(want + 1.0)
    np.testing.assert_allclose(f(np.ones((2, 3))), want)


def _rows(f):
    """The row functions' definitions: the text of the kernel's units of row functions, or
    of a small kernel's one unit without its declarations."""
    units = f.source.units
    if len(units) == 1:
        return "\n".join(ln for ln in units[0].text.splitlines() if not ln.endswith(";"))
    return "".join(u.text for u in units if u.name.startswith("kernel_rows"))


def test_a_small_kernel_is_one_unit_with_its_glue_at_O0():
    """gcc's cost per process and per reading of the headers is most of a small kernel's
    compile: one unit, one command, the glue asking for -O0 itself (SG_STEP_O0), after
    the one header it includes first (which a precompiled form can stand for)."""
    x = sg.matrix("x")
    f = sg.function([x], (sg.tanh(x) * 1.5).sum(axis=0))
    (unit,) = f.source.units
    assert unit.name == "kernel.c" and not unit.glue
    code = [ln for ln in unit.code.splitlines() if ln.strip()]
    assert code[:5] == ['#include "sg_prelude.h"', "#undef SG_STEP", "#define SG_STEP SG_STEP_O0",
                        "#undef SG_MAIN", "#define SG_MAIN SG_MAIN_O0"]
    assert "SG_STEP int sg_steps0(" in unit.code
    # the exported functions are glue too, compiled at -O0 (and stay exported)
    for fn in ("int sg_main(", "int sg_abi_version(", "void sg_set_num_threads("):
        assert f"\nSG_MAIN {fn}" in unit.code
    compiles, link = compiler._commands(["cc"], "kernel", f.source.units)
    assert link is None and len(compiles) == 1
    drivers = (Path(sg.__file__).parent / "include" / "sg_drivers.h").read_text()
    gcc = drivers.split("#define SG_STEP __attribute__")[1].split("#if defined(__GNUC__)")[1]
    assert 'SG_STEP_O0 __attribute__((visibility("hidden"), noinline, optimize("O0")))' in \
        gcc.split("#else")[0]
    assert '#define SG_MAIN_O0 __attribute__((optimize("O0")))' in drivers
    np.testing.assert_allclose(f(np.ones((2, 3))), np.full(3, 2 * np.tanh(1.0) * 1.5))


def test_a_loop_of_one_element_has_its_row_function_at_O0():
    """A 0-d result (a mean's 1/n in its gradient) is one element: its row function asks for
    -O0 (SG_ROW_SCALAR), which gcc compiles in a third of -O2's time; loops of arrays keep
    SG_ROW, at -O2. The same expression gives the same bits either way."""
    x = sg.matrix("x")
    def expr(n):
        return sg.exp(-1.0 / sg.cast(n, "float64")) * 3.0 - sg.tanh(sg.cast(n, "float64"))
    one = expr(sg.shape(x)[0])                  # a loop over 0-d values
    vec = expr(sg.shape(x)[:1])                 # the same over a vector of one element
    f = sg.function([x], [one, vec, sg.tanh(x) * one])
    loops = [s for s in f.kernel.steps if isinstance(s, ir.FusedLoop)]
    scalar = [s for s in loops if s.root.outputs[0].ndim == 0]
    assert len(scalar) >= 1 and len(loops) > len(scalar)
    rows = _rows(f)  # no two of these loops alike: one function each
    assert rows.count("SG_ROW_SCALAR int row") == len(scalar)
    assert rows.count("SG_ROW int row") == len(loops) - len(scalar)
    v = np.linspace(-2, 2, 12).reshape(3, 4)
    got_one, got_vec, got_mat = f(v)
    assert got_one.shape == () and got_vec.shape == (1,)
    assert got_one.tobytes() == got_vec.tobytes()
    np.testing.assert_allclose(got_one, np.exp(-1 / 3) * 3 - np.tanh(3.0), rtol=1e-15)
    np.testing.assert_allclose(got_mat, np.tanh(v) * got_one, rtol=1e-15, atol=0)
    drivers = (Path(sg.__file__).parent / "include" / "sg_drivers.h").read_text()
    assert "#define SG_ROW_SCALAR SG_STEP_O0" in drivers


def test_glue_at_O0_compiles_no_helper_it_does_not_call(tmp_path):
    """gcc at -O0 compiles every plain static function a unit reads, used or not (about
    15 ms a glue unit for two loop helpers only the support library calls): the headers'
    helpers are inline, so a glue unit's object holds its own functions only."""
    cc = compiler.find_compiler()
    compile_flags, _ = compiler._flag_parts()
    flags = compiler._cflags.unit_flags(compile_flags, glue=True)
    (tmp_path / "glue.c").write_text('#include "sg_prelude.h"\nint glue(void) { return 0; }\n')
    proc = subprocess.run([*cc, *flags, "-S", "glue.c", "-o", "glue.s"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    labels = [ln.split(":")[0] for ln in (tmp_path / "glue.s").read_text().splitlines()
              if ln.endswith(":") and not ln.startswith((".", "\t", " "))]
    functions = [name for name in labels if f"\t.type\t{name}, @function" in
                 (tmp_path / "glue.s").read_text()]
    assert functions == ["glue"]


def test_steps_are_blocks_in_functions_and_units_of_bounded_size(monkeypatch):
    """The C compiler never meets one huge function (its time would grow faster than the
    graph), nor one function per step (about a millisecond each): steps are blocks in group
    functions of about _GROUP_LINES lines, in glue units of about _UNIT_LINES compiled at
    -O0 side by side, the row functions in units of their own at the command line's level."""
    monkeypatch.setattr(render_c, "_GROUP_LINES", 80)  # sizes of a graph 10 times longer
    monkeypatch.setattr(render_c, "_UNIT_LINES", 300)
    monkeypatch.setattr(render_c, "_ROW_UNIT_LINES", 150)
    monkeypatch.setattr(render_c, "_ONE_UNIT_LINES", 0)
    x = sg.vector("x")
    h = x
    for k in range(15):
        h = sg.tanh(h[1:] * (1.0 + k / 1000)) + h[:-1]
    f = sg.function([x], h)
    units = f.source.units
    glue = [u for u in units if u.glue]
    rows = [u for u in units if not u.glue][1:]
    assert units[0].name == "kernel_frame.h" and len(rows) >= 2
    assert [u.name for u in rows] == [f"kernel_rows{k}.c" for k in range(len(rows))]
    assert all(u.text.count("\n") <= 150 + 60 for u in rows)
    assert [u.name for u in glue] == [f"kernel_steps{k}.c" for k in range(len(glue))]
    assert len(glue) >= 2
    assert all(u.text.count("\n") <= render_c._UNIT_LINES + render_c._GROUP_LINES + 200
               for u in glue)
    text = "".join(u.text for u in glue)
    groups = text.count("SG_STEP int sg_steps")
    assert 2 * len(glue) <= groups <= len(f.kernel.steps) // 3
    positions = [text.index(f"/* {s.label}: ") for s in f.kernel.steps]
    assert positions == sorted(positions)
    compiles, link = compiler._commands(["cc"], "kernel", units)
    assert [c[c.index("-c") + 1] for c in compiles] == [u.name for u in units[1:]]
    assert all(("-O0" in c) == c[c.index("-c") + 1].startswith("kernel_steps") for c in compiles)
    assert all(u.name[:-2] + ".o" in link for u in units[1:]) and "-shared" in link
    want = np.arange(160.0)
    for k in range(15):
        want = np.tanh(want[1:] * (1.0 + k / 1000)) + want[:-1]
    np.testing.assert_allclose(f(np.arange(160.0)), want)


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


def test_the_compiler_reads_no_c_text():
    """compiler.py takes the renderer's code without comments (Unit.code) for the cache key:
    its only regular expression checks a name it is given, and no function of it searches the
    C for comments (issue #12, item 2)."""
    tree = ast.parse((CODEGEN.parent / "compiler.py").read_text())
    uses = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name) and n.value.id == "re"]
    assert {u.attr for u in uses} == {"compile"}
    patterns = [n.targets[0].id for n in tree.body if isinstance(n, ast.Assign)
                and isinstance(n.value, ast.Call) and getattr(n.value.func, "attr", "") == "compile"]
    assert patterns == ["_NAME"] and len(uses) == 1
    assert not hasattr(compiler, "code_of")


def test_only_the_renderer_and_the_c_helpers_know_c_types():
    """One home for the dtype -> C type table: render_c.CTYPE."""
    for path in CODEGEN.glob("*.py"):
        text = path.read_text()
        if path.name != "render_c.py":
            assert '"int64_t"' not in text, path.name
