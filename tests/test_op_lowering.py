"""Ops lower to typed statements (codegen/ir.py), never to C text (issue #12, items 1-3).

Every op of the registry is lowered here from its test rows (tests/cases/): what its
``lower`` returns holds only the IR's statements and expressions, graph values,
numbers and the few strings that are names (a support function, a local's hint, a
dtype) or a message -- no C. What the analyses ask of a step (does it run BLAS, can
it fail, which results does it make) is answered from those statements, and a walk
of them -- a second "renderer" written here -- finds the work of a compiled graph
without the C renderer.
"""

import ast
import dataclasses
import importlib
import pkgutil

import numpy as np
import pytest

import symgrad as sg
from symgrad.codegen import ir
from symgrad.codegen.lower import to_program
from symgrad.graph import Variable
from symgrad.ops.shape import dimshuffle

import cases as _cases  # tests/ is on sys.path (conftest.py)

# Every module of ops: none writes C text any more.
OP_MODULES = sorted(f"symgrad.ops.{m.name}" for m in pkgutil.iter_modules(sg.ops.__path__))

# The fields of IR objects that may hold text: names of support functions, hints of
# locals, dtypes, operators, error kinds, messages and BLAS routines.
TEXT_FIELDS = {"name", "hint", "dtype", "dtypes", "elem", "op", "kind", "message", "blas"}

EXPRESSIONS = (ir.Int, ir.Lit, ir.Dim, ir.Stride, ir.Size, ir.Elem, ir.Local, ir.At, ir.Bin,
               ir.Not, ir.Cast, ir.Select, ir.Fn, ir.Arr, ir.Arrs, ir.Data, ir.Shape, ir.Addr,
               ir.Workspace, ir.ItemSize, ir.Ints, ir.ValuePtr, ir.FnPtr, ir.ShapeText)
STATEMENTS = (ir.Let, ir.Array, ir.Assign, ir.Declare, ir.Alloc, ir.CopyOf, ir.View, ir.Call, ir.Check,
              ir.Store, ir.If)


def _cases_list():
    found = []
    for mod in pkgutil.iter_modules(_cases.__path__):
        found.extend(importlib.import_module(f"{_cases.__name__}.{mod.name}").CASES)
    return found


CASES = _cases_list()


def _graph(case):
    xs = [sg.tensor(f"a{i}", a.dtype, a.shape if a.static else (None,) * len(a.shape))
          for i, a in enumerate(case.args)]
    return xs, case.build(*xs)


def _pure(obj, where, field=None):
    """Fail unless ``obj`` is made of IR objects, graph values, numbers and allowed text."""
    if isinstance(obj, str):
        assert field in TEXT_FIELDS, f"{where}: text {obj!r} in field {field!r}"
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _pure(item, where, field)
    elif isinstance(obj, (Variable, bool, int, float, np.number, type(None))):
        pass
    elif isinstance(obj, STATEMENTS + EXPRESSIONS):
        for f in dataclasses.fields(obj):
            _pure(getattr(obj, f.name), f"{where}.{type(obj).__name__}", f.name)
    else:
        raise AssertionError(f"{where}: {obj!r} is not IR")


def _op_steps(case):
    xs, out = _graph(case)
    program = to_program(xs, [out])
    return [s for s in program.steps if isinstance(s, ir.OpStep)]


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_lowered_ops_return_only_ir_statements(case):
    for step in _op_steps(case):
        op = step.root.op
        assert not hasattr(op, "c_code"), f"{op} still writes C"
        if getattr(op, "lower", None) is None:
            assert step.body is None  # no C lowering yet (scan, ifelse): NoLowering
            continue
        assert step.body is not None, f"{op} has no statements"
        for s in step.body:
            assert isinstance(s, STATEMENTS), f"{op}: {s!r} is not a statement"
        _pure(step.body, str(op))


# The elementwise ops' scalar forms (c_scalar: a C expression per element, written into
# the fused loops' row functions) are not statements of an OpStep; their move into the
# IR is a separate item of issue #12. The random draws are elementwise ops too.
SCALAR_FORMS = {"symgrad.ops.elemwise", "symgrad.ops.random"}


def test_op_modules_write_no_c():
    """No op has ``c_code``; no module of ops but the scalar forms' imports the C renderer."""
    assert "symgrad.ops.nn" in OP_MODULES and "symgrad.ops.subtensor" in OP_MODULES
    for name in OP_MODULES:
        mod = importlib.import_module(name)
        imported = set(_imports(mod.__file__))
        assert not any("c_support" in m for m in imported), name
        assert name in SCALAR_FORMS or not any("render_c" in m for m in imported), name
        for v in vars(mod).values():
            if isinstance(v, type) and v.__module__ == name:
                assert "c_code" not in vars(v), f"{name}.{v.__name__}"


def _imports(path):
    """The modules a source file imports (``from ..codegen.render_c import X`` gives
    ``codegen.render_c``)."""
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module or ""
            yield from (f"{node.module}.{a.name}" for a in node.names)


def _step_of(fn, opname):
    (step,) = [s for s in fn.kernel.steps if str(s.root.op).startswith(opname)]
    return step


def test_analyses_read_the_statements():
    x = sg.matrix("x")
    y = sg.tensor("y", dtype="int64", shape=(None,))
    f = sg.function([x, y], [sg.nn.cross_entropy(x, y), sg.nn.softmax(x) * 1])
    ce, sm = _step_of(f, "cross_entropy"), _step_of(f, "softmax")
    # cross_entropy checks its labels (a call that can fail); softmax makes its result
    calls = [s for s in ce.statements if isinstance(s, ir.Call)]
    assert [c.name for c in calls] == ["sg_cross_entropy_check", "sg_cross_entropy_on"]
    assert all(c.can_fail for c in calls) and ce.can_fail and ce.blas == []
    (call,) = [s for s in sm.statements if isinstance(s, ir.Call)]
    assert not call.can_fail and call.dtypes == ("float64",)
    # the results given fresh memory are the Alloc statements' values
    for step in (ce, sm):
        assert [v for v, _ in step.buffers] == step.allocs == [step.root.outputs[0]]


def test_a_step_that_only_reads_cannot_fail():
    x = sg.matrix("x")
    step = ir.OpStep(1, None, [], body=[ir.Let(ir.Local("n"), ir.Dim(x, 0))])
    assert not step.can_fail and step.allocs == [] and step.blas == []
    step.body.append(ir.If(ir.Bin("<", ir.Dim(x, 0), ir.Int(0)),
                           [ir.Check(ir.Bin("==", ir.Dim(x, 1), ir.Int(1)), "shape", "no")]))
    assert step.can_fail  # a check nested in an If counts
    step.body.append(ir.Call("sg_matmul", [], dtypes=("float32",), blas=("sgemm",)))
    assert step.blas == ["sgemm"]


def test_views_cannot_fail_and_make_no_memory():
    x = sg.matrix("x")
    col = sg.matrix("col")
    f = sg.function([x, col], [x.T * 1, dimshuffle(col, 0) * 1])
    t, drop = _step_of(f, "dimshuffle{order=(1, 0)"), _step_of(f, "dimshuffle{order=(0,)")
    assert [type(s) for s in t.body] == [ir.View] and not t.can_fail and t.allocs == []
    # dropping an axis checks its length
    (check,) = [s for s in drop.body if isinstance(s, ir.Check)]
    assert check.kind == "shape" and drop.can_fail and drop.buffers == []
    with pytest.raises(sg.ShapeError, match=r"cannot drop axis 1 of length 2 \(only length 1\)"):
        f(np.zeros((2, 2)), np.zeros((3, 2)))


def test_blas_is_read_from_the_calls():
    A = sg.tensor("A", dtype="float32", shape=(None,) * 3)
    B = sg.tensor("B", dtype="float32", shape=(None,) * 3)
    Ai = sg.tensor("Ai", dtype="int64", shape=(None,) * 3)
    f = sg.function([A, B, Ai], [A @ B, Ai @ Ai])
    fl, it = [s for s in f.kernel.steps if str(s.root.op) == "matmul"]
    (call,) = [s for s in fl.statements if isinstance(s, ir.Call) and s.name == "sg_matmul"]
    assert call.blas == ("sgemm",) and fl.blas == ["sgemm"]
    assert it.blas == []  # integers have no BLAS routine


def test_statements_reject_unknown_operators_and_kinds():
    with pytest.raises(ValueError, match="unknown operator"):
        ir.Bin("<<", ir.Int(1), ir.Int(2))
    with pytest.raises(ValueError, match="unknown error kind"):
        ir.Check(ir.Int(1), "oops", "message")


def _walk(steps):
    """A second 'renderer': what each op step does, read from its statements alone."""
    seen = []
    for step in steps:
        if not isinstance(step, ir.OpStep) or step.body is None:
            continue
        for s in step.statements:
            if isinstance(s, ir.Call):
                seen.append(("call", s.name + "".join("/" + d for d in s.dtypes)))
            elif isinstance(s, ir.Alloc):
                seen.append(("alloc", str(step.root.op).split("{")[0]))
            elif isinstance(s, ir.Check):
                seen.append(("check", s.kind))
    return seen


def test_a_walk_of_the_statements_finds_the_work_of_a_compiled_graph():
    X = sg.matrix("X")
    y = sg.tensor("y", dtype="int64", shape=(None,))
    W = sg.shared(np.zeros((3, 4)), name="W")
    h = sg.tanh(X @ W)
    n = sg.scalar("n", dtype="int64")
    loss = sg.nn.cross_entropy(h, y).mean() + (sg.nn.softmax(h) * sg.one_hot(y, 4)).sum()
    f = sg.function([X, y, n], [loss, sg.arange(n) * 2])
    seen = _walk(f.kernel.steps)
    assert ("call", "sg_softmax_on/float64") in seen
    assert ("call", "sg_one_hot") in seen and ("check", "shape") in seen
    assert ("call", "sg_cross_entropy_on/float64/int64") in seen
    assert ("alloc", "one_hot") in seen and ("alloc", "softmax") in seen
    assert ("call", "sg_arange_length/int64") in seen and ("alloc", "arange") in seen
    assert ("call", "sg_arange/int64/int64") in seen
    got, r = f(np.ones((2, 3)), np.array([0, 3]), np.int64(4))
    np.testing.assert_array_equal(r, [0, 2, 4, 6])
