"""docs/from_theano.md: every row's symgrad side runs (issue #17, item 5).

The test reads the tables of the page and evaluates the first code span of the
symgrad column of each row in mode "py" (nothing compiled: the suite's budget), with
the names the page lists defined; a Variable is evaluated, a function called, a loop's
outputs evaluated. The page must cover the names the issue lists.
"""

import re
from pathlib import Path

import numpy as np
import pytest

import symgrad as sg
from symgrad.graph import free_inputs

PAGE = Path(__file__).resolve().parent.parent / "docs" / "from_theano.md"


def _rows():
    rows = []
    for lineno, line in enumerate(PAGE.read_text().splitlines(), 1):
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert len(cells) == 3, f"line {lineno}: a row has three cells: {line}"
        code = re.search(r"`([^`]+)`", cells[1])
        assert code, f"line {lineno}: the symgrad cell has no code: {line}"
        rows.append(pytest.param(cells[0], code.group(1), id=f"L{lineno}"))
    return rows


ROWS = _rows()


def _namespace():
    rng = np.random.default_rng(0)
    x, v, y = sg.matrix("x"), sg.vector("v"), sg.vector("y", dtype="int64")
    t4, lr, idx = sg.tensor4("t4"), sg.scalar("lr"), sg.scalar("idx", dtype="int64")
    W = sg.shared(rng.standard_normal((3, 5)) * 0.1, name="W")
    b = sg.shared(np.zeros(5), name="b")
    w4 = sg.shared(rng.standard_normal((4, 3, 3, 3)) * 0.1, name="w4")
    data = sg.shared(rng.standard_normal((10, 3)), name="data")
    logits = x @ W + b
    p = sg.nn.softmax(logits)
    ns = dict(sg=sg, np=np, x=x, v=v, y=y, t4=t4, lr=lr, idx=idx, W=W, b=b, w4=w4, data=data,
              logits=logits, p=p, h=sg.tanh(logits),
              cost=-sg.mean(sg.log(p)[sg.arange(y.shape[0]), y]),
              rng=sg.random.RandomStream(0))
    values = {x: rng.standard_normal((4, 3)), v: rng.standard_normal(3),
              y: np.array([0, 4, 2, 1]), t4: rng.standard_normal((2, 3, 8, 8)), lr: 0.5, idx: 3}
    return ns, values


def _run(result, values):
    if isinstance(result, sg.Function):
        return result(**{v.name: values[v] for k, v in enumerate(result.inputs)
                         if k not in result.defaults})
    if isinstance(result, sg.train.TrainStep):
        return list(result(*[values[v] for k, v in enumerate(result.inputs)
                             if k not in result.function.defaults]).values())
    if isinstance(result, str):  # sg.config.floatX, sg.debugprint's text
        assert result
        return None
    if isinstance(result, (np.ndarray, float)):  # x.eval(...)
        return result
    if isinstance(result, sg.SharedVariable):
        return result.get_value()
    if isinstance(result, sg.random.RandomStream):
        return result.uniform(size=2).eval()
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
        result = result[0]  # scan/map: (outputs, updates)
    if isinstance(result, tuple) and not any(isinstance(o, sg.Variable) for o in result):
        return list(result)  # a static shape
    outs = list(result) if isinstance(result, (list, tuple)) else [result]
    assert all(isinstance(o, sg.Variable) for o in outs), result
    given = {}
    for k in free_inputs(outs):  # the page's names, or a new input the row declares
        given[k] = np.asarray(values[k]) if k in values else np.ones(
            [2 if s is None else s for s in k.type.shape], dtype=k.dtype)
    return sg.evaluate(outs, given)


def test_the_page_has_rows():
    assert len(ROWS) >= 50


@pytest.mark.parametrize("theano, code", ROWS)
def test_symgrad_side_runs(theano, code):
    ns, values = _namespace()
    old = sg.config.mode
    sg.config.mode = "py"
    try:
        result = eval(code, ns)  # noqa: S307 - the page's own code
        out = _run(result, values)
    finally:
        sg.config.mode = old
    for o in out if isinstance(out, list) else [out]:
        assert o is None or np.all(np.isfinite(np.asarray(o, dtype=float))), (code, o)


def test_the_page_covers_the_issue():
    text = "\n".join(r.values[0] for r in ROWS)
    for name in ["T.matrix", "T.fmatrix", "T.ivector", "T.tensor4", "theano.function", "theano.In",
                 "theano.shared", "T.grad", "consider_constant", "givens", "theano.scan",
                 "ifelse", "RandomStreams", "T.nnet.softmax", "T.nnet.sigmoid",
                 "categorical_crossentropy", "binary_crossentropy", "signal.pool", "conv2d",
                 "dimshuffle", "flatten", "x.shape", "T.arange", "dtype=", "x.eval"]:
        assert name in text, f"docs/from_theano.md has no row for {name}"


def test_conv2d_row_is_true():
    """The page says Theano's conv2d (a true convolution: flipped filters) is sg.nn.conv2d
    with the filters flipped: check against a direct convolution in NumPy."""
    rng = np.random.default_rng(1)
    xv, wv = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
    x = sg.tensor4("x")
    got = sg.nn.conv2d(x, wv[:, :, ::-1, ::-1].copy()).eval({x: xv})
    want = np.zeros((1, 3, 3, 3))
    for o in range(3):
        for i in range(3):
            for j in range(3):
                # convolution: the filter runs backwards over the window
                want[0, o, i, j] = sum(xv[0, c, i + a, j + d] * wv[o, c, 2 - a, 2 - d]
                                       for c in range(2) for a in range(3) for d in range(3))
    np.testing.assert_allclose(got, want, rtol=1e-12)
