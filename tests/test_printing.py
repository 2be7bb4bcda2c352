"""debugprint, pprint, to_dot and render: structure of the output, not its exact whitespace."""

import io
import re
import shutil
import sys

import numpy as np
import pytest

import symgrad as sg
from symgrad.ops.join import split

THIS_FILE = "test_printing.py"


def _tanh_cost():
    """A scalar cost without reductions: d(cost)/d(W) through mul, tanh and pow."""
    x = sg.scalar("x")
    W = sg.shared(np.float64(0.5), name="W")
    cost = sg.tanh(W * x) ** 2
    return x, W, cost


def _tags(line):
    return re.findall(r"\[id ([A-Z]+)\]", line)


# --------------------------------------------------------------------------- debugprint

def test_debugprint_shows_ops_names_tags_and_leaves():
    x, b = sg.vector("x"), sg.vector("b")
    y = sg.tanh(x * 2 + b)
    y.name = "y"
    text = sg.debugprint(y)
    lines = text.splitlines()
    assert lines[0].startswith("tanh") and "'y'" in lines[0] and _tags(lines[0]) == ["A"]
    for word in ("add", "mul", "x", "b", "constant{2.0}"):
        assert word in text
    # one node per line, inputs indented below their user
    assert len(lines) == 6
    assert all(line.startswith(" |") for line in lines[1:])
    assert len({t for line in lines for t in _tags(line)}) == 6


def test_debugprint_marks_shared_variables():
    x, W, cost = _tanh_cost()
    line = next(ln for ln in sg.debugprint(cost).splitlines() if "W [id" in ln)
    assert "(shared)" in line


def test_shared_subgraph_is_printed_once():
    x = sg.vector("x")
    h = sg.exp(x)
    y = h * h + h
    text = sg.debugprint(y)
    assert text.count("exp") == 1
    (tag,) = _tags(next(ln for ln in text.splitlines() if "exp" in ln))
    refs = [ln for ln in text.splitlines() if "(see above)" in ln]
    assert len(refs) == 2 and all(_tags(ln) == [tag] for ln in refs)


def test_subgraph_shared_between_outputs_is_printed_once():
    x = sg.vector("x")
    h = sg.sigmoid(x)
    text = sg.debugprint([h + 1, h * 2])
    assert text.count("sigmoid") == 1 and "(see above)" in text


def test_gradient_nodes_are_named_and_marked():
    x, W, cost = _tanh_cost()
    g = sg.grad(cost, W)
    text = sg.debugprint(g)
    first = text.splitlines()[0]
    assert "d(cost)/d(W)" in first
    assert "grad of" in first and THIS_FILE in first
    # every forward op whose rule ran shows up in some marker, with this file's line
    for fwd in ("tanh", "pow", "mul"):
        assert re.search(rf"grad of {fwd} \({THIS_FILE}:\d+\)", text), fwd
    # forward nodes (the tanh the gradient re-uses) carry no marker
    tanh_line = next(ln for ln in text.splitlines() if re.search(r"\|tanh \[id", ln))
    assert "grad of" not in tanh_line


def test_gradient_of_named_cost_and_intermediate():
    x, W, cost = _tanh_cost()
    cost.name = "loss"
    h = cost.owner.inputs[0]
    h.name = "h"
    text = sg.debugprint(sg.grad(cost, W))
    assert "d(loss)/d(W)" in text and "d(loss)/d(h)" in text


def test_unnamed_cotangents_say_what_they_belong_to():
    x, W, cost = _tanh_cost()
    text = sg.debugprint(sg.grad(cost, W))
    assert "cotangent of tanh" in text


def test_known_grads_gradient_prints():
    X = sg.matrix("X")
    W = sg.shared(np.ones((2, 3)), name="W")
    y = sg.tanh(X @ W)
    g = sg.grad(None, W, known_grads={y: sg.ones_like(y)})
    text = sg.debugprint(g)
    assert "d(cost)/d(W)" in text and "grad of matmul" in text and "grad of tanh" in text


def test_print_type_shows_dtype_and_static_shape():
    x = sg.tensor("x", shape=(None, 3))
    text = sg.debugprint(sg.exp(x), print_type=True)
    assert text.count("float64[?, 3]") == 2
    assert "float64[?, 3]" not in sg.debugprint(sg.exp(x))


def test_multi_output_nodes_show_which_output():
    x = sg.vector("x")
    a, b = split(x, [1, 2])
    text = sg.debugprint([a, b])
    assert "out 0/2" in text and "out 1/2" in text
    assert text.count("split") == 1  # the second output refers to the first by tag


def test_depth_limits_nesting():
    x = sg.scalar("x")
    y = sg.exp(sg.sin(sg.cos(sg.tanh(x))))
    full = sg.debugprint(y).splitlines()
    assert len(full) == 5
    cut = sg.debugprint(y, depth=2).splitlines()
    assert cut[0].startswith("exp") and "sin" in cut[1]
    assert cut[-1].strip(" |") == "..." and len(cut) == 3
    assert "cos" not in "\n".join(cut)
    assert len(sg.debugprint(y, depth=1).splitlines()) == 2
    with pytest.raises(ValueError, match="depth"):
        sg.debugprint(y, depth=0)


def test_depth_cut_node_is_printed_in_full_where_shallower():
    x = sg.scalar("x")
    h = sg.exp(x)
    y = sg.sin(sg.cos(h)) + h  # h sits at depth 3 and at depth 1
    text = sg.debugprint(y, depth=3)
    assert "(see above)" not in text
    assert "x [id" in text  # printed below the shallower use


def test_dict_and_list_inputs():
    x = sg.vector("x")
    text = sg.debugprint({"loss": sg.exp(x), "aux": sg.sin(x)})
    lines = text.splitlines()
    assert lines[0].startswith("loss: exp")
    assert any(ln.startswith("aux: sin") for ln in lines)
    assert text.count("x [id") == 2 and len(set(_tags(text))) == 3  # x has one tag
    text = sg.debugprint((sg.exp(x), sg.cos(x)))
    assert "exp" in text and "cos" in text


def test_function_graph_with_updates():
    x, W, cost = _tanh_cost()
    gW = sg.grad(cost, W)
    f = sg.function([x], cost, updates={W: W - 0.1 * gW}, mode="py")
    text = sg.debugprint(f)
    assert text.splitlines()[0] == "inputs: x"
    assert any(ln.startswith("output 0: pow") for ln in text.splitlines())
    assert re.search(r"^update W <- sub", text, re.M)
    assert "d(cost)/d(W)" in text and "grad of tanh" in text
    assert str(f.graph) == text
    # the forward tanh is shared by cost and update: printed once, then referred to
    assert len(re.findall(r"\|tanh \[id", text)) == 1


def test_any_object_with_a_graph_prints():
    x = sg.scalar("x")
    f = sg.function([x], sg.exp(x), mode="py")

    class Step:  # stands in for a train step
        graph = f.graph

    assert sg.debugprint(Step()) == sg.debugprint(f)


def test_file_argument_and_bad_objects():
    x = sg.scalar("x")
    buf = io.StringIO()
    text = sg.debugprint(sg.exp(x), file=buf)
    assert buf.getvalue() == text + "\n"
    with pytest.raises(TypeError, match="Variable"):
        sg.debugprint(3.0)
    with pytest.raises(TypeError, match="#1"):
        sg.debugprint([x, "y"])


def test_constants_show_value_or_type():
    x = sg.vector("x")
    text = sg.debugprint(x + sg.constant([1.0, 2.0]) + sg.constant(np.zeros((50, 2))) * 0)
    assert "constant{[1.0, 2.0]}" in text and "constant{float64[50, 2]}" in text


def _chain(n):
    x = sg.scalar("x")
    y = x
    for _ in range(n):
        y = sg.sin(y)
    return x, y


def test_deep_chain_prints_without_recursion_error():
    x, y = _chain(3000)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # the default; the walk must not depend on more
    try:
        text = sg.debugprint(y)
        formula = sg.pprint(y)
        dot = sg.to_dot(y)
    finally:
        sys.setrecursionlimit(limit)
    lines = text.splitlines()
    assert len(lines) == 3001 and lines[-1].endswith("x [id " + _tags(lines[-1])[0] + "]")
    assert max(len(ln) for ln in lines) < 300  # indentation is capped
    assert "(3000)" in lines[-1]  # past the cap the depth is written out
    assert len(formula) < 10_000 and formula.startswith("sin(")
    assert dot.count("->") == 6000


def test_gradient_of_deep_chain_prints():
    x, y = _chain(1500)
    text = sg.debugprint(sg.grad(y, x))
    assert "d(cost)/d(x)" in text.splitlines()[0]


# --------------------------------------------------------------------------- pprint

def test_pprint_infix_and_function_syntax():
    x, W, b = sg.vector("x"), sg.vector("W"), sg.vector("b")
    assert sg.pprint(x * W + b) == "((x * W) + b)"
    assert sg.pprint(sg.tanh(x)) == "tanh(x)"
    assert sg.pprint(-x) == "-x"
    assert sg.pprint(x / 2 - 1) == "((x / 2.0) - 1.0)"
    assert sg.pprint(x ** 2 < b) == "((x ** 2.0) < b)"
    assert sg.pprint(sg.where(x < 0, -x, b)) == "where((x < 0.0), -x, b)"
    assert sg.pprint(sg.cast(x, "float32")) == "cast(x, dtype='float32')"
    assert sg.pprint(x) == "x"


def test_pprint_repeats_shared_subexpressions_and_shows_outputs():
    x = sg.vector("x")
    h = sg.exp(x)
    assert sg.pprint(h * h) == "(exp(x) * exp(x))"
    a, b = split(x, [1, 2])
    assert sg.pprint(sg.exp(b)).startswith("exp(split(x,") and "[1]" in sg.pprint(b)


def test_pprint_caps_large_expressions():
    x = sg.scalar("x")
    y = x
    for _ in range(12):  # 2**12 leaves if written out in full
        y = y * y
    text = sg.pprint(y, max_nodes=50, share=None)  # written out each time, but capped
    assert "mul(...)" in text and len(text) < 2000
    text = sg.pprint(y, max_nodes=50)  # long repeated sub-expressions are written once
    assert "\nwhere\n" in text and len(text) < 500 and "mul(...)" not in text
    with pytest.raises(TypeError):
        sg.pprint([x])


def test_pprint_reductions_when_available():
    x = sg.matrix("x")
    if not hasattr(x, "sum"):
        pytest.skip("reductions not available")
    try:
        y = x.sum(axis=1)
    except (AttributeError, NotImplementedError):
        pytest.skip("reductions not available")
    assert sg.pprint(y) == "sum(x, axis=1)"


def test_pprint_of_gradient_is_a_formula():
    x, W, cost = _tanh_cost()
    text = sg.pprint(sg.grad(cost, W))
    assert "tanh((W * x))" in text and text.endswith("* x)")


# --------------------------------------------------------------------------- to_dot

def _braces_balanced(dot):
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', dot)
    return unquoted.count("{") == unquoted.count("}") == 1


def test_to_dot_is_valid_looking_and_colours_gradients():
    x, W, cost = _tanh_cost()
    g = sg.grad(cost, W)
    dot = sg.to_dot(g)
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    assert _braces_balanced(dot)
    assert "orange" in dot and "lightblue" in dot
    assert "d(cost)/d(W)" in dot and "->" in dot
    assert "orange" not in sg.to_dot(cost)
    # edges go input -> op -> output: every node id used in an edge is declared
    declared = set(re.findall(r"^\s*([av]\d+) \[", dot, re.M))
    used = set(re.findall(r"([av]\d+) -> ([av]\d+)", dot)[0])
    assert used <= declared


def test_to_dot_shapes_function_updates_and_escaping():
    x, W, cost = _tanh_cost()
    f = sg.function([x], cost, updates={W: W * 0.5}, mode="py")
    dot = sg.to_dot(f)
    assert "cylinder" in dot and "palegreen" in dot and "note" in dot
    assert "update" in dot and "style=dashed" in dot
    odd = sg.vector('say "hi" \\ {x}')
    dot = sg.to_dot(sg.exp(odd))
    assert 'say \\"hi\\" \\\\ {x}' in dot
    assert _braces_balanced(dot)
    m = sg.matrix("m")
    assert _braces_balanced(sg.to_dot(m.T))  # dimshuffle{...} in a label


# --------------------------------------------------------------------------- render

def test_render_without_graphviz_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # import graphviz -> ImportError
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    x = sg.scalar("x")
    with pytest.raises(RuntimeError) as err:
        sg.render(sg.exp(x), tmp_path / "g.svg")
    msg = str(err.value)
    assert "pip install graphviz" in msg and "apt-get install graphviz" in msg
    assert not (tmp_path / "g.svg").exists()


def test_render_rejects_other_suffixes(tmp_path):
    x = sg.scalar("x")
    with pytest.raises(ValueError, match="svg"):
        sg.render(sg.exp(x), tmp_path / "g.pdf")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_render_with_dot_program(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # force the subprocess path
    x, W, cost = _tanh_cost()
    g = sg.grad(cost, W)
    svg = sg.render(g, str(tmp_path / "g.svg"))
    assert svg == str(tmp_path / "g.svg")
    assert "<svg" in (tmp_path / "g.svg").read_text()
    sg.render(g, tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_render_with_graphviz_package(tmp_path):
    pytest.importorskip("graphviz")
    x = sg.scalar("x")
    sg.render(sg.exp(x), tmp_path / "g.svg")
    assert "<svg" in (tmp_path / "g.svg").read_text()


# --------------------------------------------------------------------------- compiled

def _mlp_step(mode="c"):
    """A two-layer model's SGD step: gemm, a fused tanh gradient, updates."""
    X, y = sg.matrix("X"), sg.vector("y", dtype="int64")
    W1 = sg.shared(np.full((4, 5), 0.1), name="W1")
    b1 = sg.shared(np.zeros(5), name="b1")
    W2 = sg.shared(np.full((5, 3), 0.1), name="W2")
    h = sg.tanh(X @ W1 + b1)
    loss = sg.nn.cross_entropy(h @ W2, y).mean()
    return sg.train_step(loss, [X, y], optimizer=sg.optim.SGD(lr=0.1), mode=mode)


def test_debugprint_of_compiled_step_shows_kernel_steps():
    step = _mlp_step()
    text = sg.debugprint(step)
    lines = text.splitlines()
    assert lines[0] == "inputs: X, y" and lines[1].startswith("kernel: ")
    steps = step.function.kernel.steps
    fused = [s for s in steps if s.fused]
    assert fused and any(s.blas for s in steps)
    assert f"{len(steps)} steps" in lines[1] and "BLAS" in lines[1]
    # every step is named once as a root, and its members point at it
    for s in steps:
        assert len(re.findall(rf"\[{s.label}[\]:]", text)) == 1, s.label
    for s in fused:
        over = f", over {s.over.name}" if s.over is not None else ""
        assert f"[{s.label}: fused loop of {len(s.members)} ops{over}]" in text
        assert text.count(f"[in {s.label}]") == len(s.members) - 1
    assert re.search(r"\[K\d+: BLAS\]", text)
    # the updates written over their variable say so
    assert re.search(r"^update W1 <- gemm.*\[K\d+: BLAS, over W1\]", text, re.M)
    # the gradient of W1 was folded into its update by a gemm: still named
    assert re.search(r"^update W1 <- gemm.*\(product: d\(loss\)/d\(W1\) ← grad of matmul "
                     rf"\({THIS_FILE}:\d+\)\)", text, re.M)
    assert f"grad of tanh ({THIS_FILE}:" in text
    # the same numbers head the steps of the generated C
    for s in steps:
        assert f"/* {s.label}: " in step.source


def test_debugprint_of_compiled_step_with_types_and_depth():
    step = _mlp_step()
    text = sg.debugprint(step, print_type=True, depth=2)
    assert "<float64[?, ?]>" in text and "..." in text
    first = next(ln for ln in text.splitlines() if ln.startswith("output 0:"))
    assert "'loss'" in first and re.search(r"\[K\d+\]", first)


def test_py_mode_function_has_no_kernel_notes():
    text = sg.debugprint(_mlp_step(mode="py"))
    assert "kernel:" not in text and "[K" not in text


def test_cotangent_of_a_rewritten_forward_node_names_its_line():
    text = sg.debugprint(_mlp_step())
    # X @ W1 + b1 became one gemm: the cotangent of the add (which, with b1's static
    # length, is also the matmul's) refers to it by line
    assert re.search(rf"\(cotangent of (add|matmul) at {THIS_FILE}:\d+\)", text)


def test_to_dot_draws_fused_groups_as_clusters():
    step = _mlp_step()
    dot = sg.to_dot(step)
    fused = [s for s in step.function.kernel.steps if s.fused]
    clusters = re.findall(r"subgraph cluster_(K\d+) \{", dot)
    assert clusters == [s.label for s in fused]
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', dot)
    assert unquoted.count("{") == unquoted.count("}") == 1 + len(fused)
    for s in fused:
        body = dot.split(f"subgraph cluster_{s.label} {{")[1].split("}")[0]
        assert f"fused loop of {len(s.members)} ops" in body
        # its ops and the values that stay inside its loop
        assert len(re.findall(r"\ba\d+\b", body)) == len(s.members)
        assert len(re.findall(r"\bv\d+\b", body)) == len(s.members) - 1
    assert "BLAS" in dot and "orange" in dot and "lightblue" in dot
    assert "cluster" not in sg.to_dot(step.gradients[step.params[0]])


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_render_compiled_step(tmp_path):
    sg.render(_mlp_step(), tmp_path / "step.svg")
    svg = (tmp_path / "step.svg").read_text()
    assert "<svg" in svg and "fused loop of" in svg


# --------------------------------------------------------------------------- pprint, more

def test_pprint_uses_python_notation_for_products_axes_and_indexing():
    x, b = sg.vector("x"), sg.vector("b")
    W, X = sg.matrix("W"), sg.matrix("X")
    assert sg.pprint(x @ W + b) == "((x[None] @ W)[0] + b)"
    assert sg.pprint(X.T @ W) == "(X.T @ W)"
    assert sg.pprint(X[:, None, 1:]) == "X[:, None, 1:]"
    i = sg.scalar("i", dtype="int64")
    assert sg.pprint(X[i]) == "X[i]"
    assert sg.pprint(sg.shape(X)[0]) in ("shape(X)[0]", "shape(X)[0:1]")


def test_pprint_writes_long_repeated_subexpressions_once():
    x, W, b = sg.vector("x"), sg.matrix("W"), sg.vector("b")
    h = sg.tanh(x @ W + b)
    text = sg.pprint((h * h) - h)
    formula, where = text.split("\nwhere\n")
    assert formula == "((_1 * _1) - _1)"
    assert where.strip() == "_1 = tanh(((x[None] @ W)[0] + b))"
    h.name = "h"
    assert sg.pprint((h * h) - h).splitlines()[0] == "((h * h) - h)"
    g = sg.pprint(sg.grad(((h * h) - h).sum(), b))
    assert "\nwhere\n" in g and "  h = tanh(" in g


def test_inspect_gradient_example_and_readme_agree(monkeypatch, tmp_path, capsys):
    import pathlib
    import runpy

    root = pathlib.Path(__file__).resolve().parents[1]
    monkeypatch.setattr(sys, "argv", ["inspect_gradient.py", str(tmp_path)])
    runpy.run_path(str(root / "examples" / "inspect_gradient.py"), run_name="__main__")
    out = capsys.readouterr().out
    printed = out.split("the compiled training step:\n")[1].split("\n\n")[0]
    assert "[K1: BLAS]" in printed and "fused loop of" in printed and "d(loss)/d(W)" in printed
    assert "FLOPs" in out and "/* K1: " in out and "/* BLAS (" in out
    if shutil.which("dot") is not None:
        assert "<svg" in (tmp_path / "gradient_graph.svg").read_text()
    else:
        assert "no picture" in out and "apt-get install graphviz" in out
    # the README shows this very text
    readme = (root / "README.md").read_text()
    assert printed in readme
    assert (root / "docs" / "gradient_graph.svg").exists()
