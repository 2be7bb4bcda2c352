"""Idioms a Theano program is written in, ported line by line (issue #17, items 2-4).

``x.dimshuffle``, ``x.flatten(ndim)``, ``sum/mean/prod(..., dtype=, acc_dtype=)``,
``sg.grad(..., consider_constant=)``, ``sg.In(x, value=)`` and the errors a Theano or
NumPy habit meets. Values are checked against NumPy in mode "py" (sg.evaluate) and in
one compiled function per group (few cold compiles: the suite's budget).
"""

import re

import numpy as np
import pytest

import symgrad as sg

RNG = np.random.default_rng(17)


# ---------------------------------------------------------------- dimshuffle and flatten

def _shuffles():
    x = sg.tensor("x", shape=(None, 3))
    b = sg.vector("b")
    t4 = sg.tensor4("t4")
    col = sg.tensor("col", shape=(None, 1))
    outs = {
        "row": x.dimshuffle("x", 0, 1),
        "T": x.dimshuffle(1, 0),
        "tuple": x.dimshuffle((1, "x", 0)),
        "bias": t4 + b.dimshuffle("x", 0, "x", "x"),
        "drop": col.dimshuffle(0),
        "flat2": t4.flatten(2),
        "flat3": t4.flatten(3),
        "flat1": t4.flatten(),
    }
    return [x, b, t4, col], outs


def _shuffle_values():
    return [RNG.standard_normal((4, 3)), RNG.standard_normal(5), RNG.standard_normal((2, 5, 3, 2)),
            RNG.standard_normal((4, 1))]


def _shuffle_expected(x, b, t4, col):
    return {"row": x[None], "T": x.T, "tuple": x.T[:, None, :], "bias": t4 + b[None, :, None, None],
            "drop": col[:, 0], "flat2": t4.reshape(2, -1), "flat3": t4.reshape(2, 5, -1),
            "flat1": t4.reshape(-1)}


@pytest.fixture(scope="module")
def shuffles_c():
    ins, outs = _shuffles()
    return sg.function(ins, outs)


@pytest.mark.parametrize("mode", ["py", "c"])
def test_dimshuffle_and_flatten_values(mode, shuffles_c):
    vals = _shuffle_values()
    if mode == "c":
        got = shuffles_c(*vals)
    else:
        ins, outs = _shuffles()
        got = dict(zip(outs, sg.evaluate(list(outs.values()), dict(zip(ins, vals)))))
    for k, want in _shuffle_expected(*vals).items():
        assert got[k].shape == want.shape, k
        np.testing.assert_array_equal(got[k], want, err_msg=k)


def test_dimshuffle_static_shapes_and_gradient():
    ins, outs = _shuffles()
    assert outs["row"].type.shape == (1, None, 3)
    assert outs["tuple"].type.shape == (3, 1, None)
    assert outs["flat2"].type.shape == (None, None)
    assert sg.tensor(shape=(2, 3, 4, 5)).flatten(2).type.shape == (2, 60)
    sg.verify_grad(lambda m: (m.dimshuffle(1, "x", 0) * np.arange(3.0)[:, None, None]).sum(),
                   [RNG.standard_normal((4, 3))])


def test_dimshuffle_errors():
    x = sg.tensor("x", shape=(None, 3))
    with pytest.raises(sg.ShapeError, match=r"cannot drop axis 1 of length 3.*test_theano_idioms"):
        x.dimshuffle(0)
    with pytest.raises(TypeError, match=r"axis number or 'x'.*'y'"):
        x.dimshuffle(0, "y", 1)
    with pytest.raises(sg.ShapeError, match=r"axis -1 .*no negative axes"):
        x.dimshuffle(0, -1)
    with pytest.raises(sg.ShapeError, match="repeated"):
        x.dimshuffle(0, 0, 1)
    # a length known only at call time is checked then
    col = sg.matrix("col")
    with pytest.raises(sg.ShapeError, match="cannot drop axis 1 of length 2"):
        sg.evaluate(col.dimshuffle(0), {col: np.ones((3, 2))})


# ---------------------------------------------------------------- accumulation dtypes

def test_reduction_dtypes_follow_numpy():
    xb = sg.vector("xb", dtype="bool")
    xi = sg.matrix("xi", dtype="int32")
    x32 = sg.matrix("x32", dtype="float32")
    x64 = sg.vector("x64")
    vb = np.array([True, False, True])
    vi = RNG.integers(-5, 6, size=(3, 4)).astype(np.int32)
    v32 = RNG.standard_normal((3, 4)).astype(np.float32)
    v64 = np.array([1.5, 2.5, -0.75])
    cases = [  # (expr, expected from NumPy)
        (xb.sum(dtype="float32"), np.sum(vb, dtype=np.float32)),
        (sg.sum(xi, axis=1, dtype="float64"), np.sum(vi, axis=1, dtype=np.float64)),
        (xi.mean(dtype="float32"), np.mean(vi, dtype=np.float32)),
        (xi.mean(axis=0, dtype="int64"), np.mean(vi, axis=0, dtype=np.int64)),  # truncates
        (sg.mean(x32, axis=0, dtype="float64"), np.mean(v32.astype(np.float64), axis=0)),
        (x64.sum(dtype="int64"), np.sum(v64, dtype=np.int64)),  # unsafe, as NumPy
        (x64.sum(dtype="float32"), np.sum(v64, dtype=np.float32)),
        (xi.prod(axis=1, dtype="float64", keepdims=True),
         np.prod(vi, axis=1, dtype=np.float64, keepdims=True)),
        # Theano's acc_dtype: the accumulation only, the result keeps the default dtype
        (x32.sum(acc_dtype="float64"), np.float32(np.sum(v32, dtype=np.float64))),
        (xi.sum(axis=0, acc_dtype="int64"), np.sum(vi, axis=0)),
        (sg.mean(xi, acc_dtype="float64", dtype="float32"), np.float32(np.mean(vi))),
    ]
    got = sg.evaluate([e for e, _ in cases], {xb: vb, xi: vi, x32: v32, x64: v64})
    for k, ((expr, want), g) in enumerate(zip(cases, got)):
        assert expr.dtype == np.asarray(want).dtype.name and g.dtype == want.dtype, k
        np.testing.assert_allclose(g, want, rtol=1e-6, err_msg=str(k))


def test_reduction_dtype_compiled_and_differentiated():
    x32 = sg.vector("x32", dtype="float32")
    cost = (x32 * x32).sum(dtype="float64")
    assert cost.dtype == "float64"
    g = sg.grad(cost, x32)
    assert g.dtype == "float32"
    f = sg.function([x32], [cost, g, x32.mean(dtype="float64")])
    v = np.array([1.0, 2.0, 3.5], np.float32)
    c, gv, m = f(v)
    assert c.dtype == np.float64 and c == 1 + 4 + 12.25
    np.testing.assert_array_equal(gv, 2 * v)
    assert m.dtype == np.float64 and m == pytest.approx(6.5 / 3)


def test_reduction_dtype_errors():
    with pytest.raises(TypeError, match=r"acc_dtype=float32 would lose precision on the float64"):
        sg.matrix("m").sum(acc_dtype="float32")
    with pytest.raises(TypeError, match=r"acc_dtype=int32 would lose precision on the int64"):
        sg.vector(dtype="int64").mean(acc_dtype="int32")
    with pytest.raises(TypeError, match="dtype complex128 is not supported"):
        sg.vector().sum(dtype="complex128")


# ---------------------------------------------------------------- consider_constant

def test_consider_constant_stops_at_the_given_values():
    x = sg.vector("x")
    h = x ** 2
    cost = (h * x).sum()
    v = np.array([1.0, -2.0, 3.0])
    full, partial, stopped = sg.evaluate(
        [sg.grad(cost, x), sg.grad(cost, x, consider_constant=[h]),
         sg.grad((sg.stop_gradient(h) * x).sum(), x)], {x: v})
    np.testing.assert_allclose(full, 3 * v ** 2)
    np.testing.assert_allclose(partial, v ** 2)  # d/dx through h is left out
    np.testing.assert_allclose(partial, stopped)
    # the cotangent still reaches the constant itself (a wrt may be one of them)
    gx, gh = sg.grad(cost, [x, h], consider_constant=[h])
    np.testing.assert_allclose(sg.evaluate([gx, gh], {x: v})[1], v)
    np.testing.assert_allclose(sg.evaluate(gx, {x: v}), v ** 2)


def test_consider_constant_disconnects_and_checks_its_argument():
    x = sg.vector("x")
    h = sg.exp(x)
    with pytest.raises(sg.DisconnectedInputError, match="consider_constant"):
        sg.grad(h.sum(), x, consider_constant=[h])
    z = sg.grad(h.sum(), x, consider_constant=(h,), disconnected="ignore")
    np.testing.assert_array_equal(sg.evaluate(z, {x: np.ones(2)}), np.zeros(2))
    # one Variable, not in a list (it has no truth value: never tested for one)
    one = sg.grad((h * x).sum(), x, consider_constant=h)
    np.testing.assert_allclose(sg.evaluate(one, {x: np.ones(2)}), np.exp(np.ones(2)))
    with pytest.raises(TypeError, match=r"consider_constant\[0\] must be a symbolic Variable"):
        sg.grad(h.sum(), x, consider_constant=[np.ones(2)])
    # an integer value treated as a constant is no longer a path without gradient
    k = sg.argmax(x)
    cost = (x * sg.cast(k, "float64")).sum()
    np.testing.assert_array_equal(sg.evaluate(sg.grad(cost, x, consider_constant=[k]),
                                              {x: np.array([0.0, 5.0, 1.0])}), [1.0, 1.0, 1.0])


def test_consider_constant_rbm_style_compiled():
    """The RBM tutorial's cost: free energy of the data minus that of a chain end treated
    as a constant; the gradient matches the one with stop_gradient, compiled."""
    W = sg.shared(RNG.standard_normal((4, 3)) * 0.1, name="W")
    v = sg.matrix("v")
    chain_end = sg.sigmoid(sg.sigmoid(v @ W) @ W.T)

    def free_energy(u):
        return -sg.softplus(u @ W).sum(axis=1)
    cost = free_energy(v).mean() - free_energy(chain_end).mean()
    want = free_energy(v).mean() - free_energy(sg.stop_gradient(chain_end)).mean()
    f = sg.function([v], [sg.grad(cost, W, consider_constant=[chain_end]), sg.grad(want, W)])
    a, b = f(RNG.random((5, 4)))
    np.testing.assert_allclose(a, b, rtol=1e-12)


# ---------------------------------------------------------------- input defaults: sg.In

@pytest.fixture(scope="module")
def sgd_step():
    """The tutorials' pre-training function: a learning rate and a corruption level with
    defaults, compiled once (mode "c")."""
    W = sg.shared(np.zeros(3), name="W_in")
    x = sg.vector("x")
    lr = sg.scalar("lr")
    level = sg.scalar("corruption")
    cost = ((x * (1 - level) - W) ** 2).sum()
    f = sg.function([x, sg.In(level, value=0.25), sg.In(lr, value=0.1)],
                    cost, updates=[(W, W - lr * sg.grad(cost, W))])
    return f, W


def test_in_defaults_positional_and_by_name(sgd_step):
    f, W = sgd_step
    x = np.array([1.0, 2.0, 4.0])

    def run(*args, **kw):
        W.set_value(np.zeros(3))
        cost = f(*args, **kw)
        return float(cost), W.get_value()

    def want(level, lr):
        target = x * (1 - level)
        return float((target ** 2).sum()), 2 * lr * target
    for got, (level, lr) in [(run(x), (0.25, 0.1)), (run(x, 0.5), (0.5, 0.1)),
                             (run(x, 0.5, 0.3), (0.5, 0.3)), (run(x, lr=0.2), (0.25, 0.2)),
                             (run(x=x, corruption=0.0), (0.0, 0.1)),
                             (run(x, lr=0.2, corruption=1.0), (1.0, 0.2))]:
        c, w = want(level, lr)
        assert got[0] == pytest.approx(c)
        np.testing.assert_allclose(got[1], w)
    assert f.defaults[1] == 0.25 and f.defaults[2] == 0.1 and f.inputs[1].name == "corruption"
    with pytest.raises(sg.InputError, match="missing input 'x'"):
        f(lr=0.1)


@pytest.mark.parametrize("mode", ["py", "c"])
def test_train_step_takes_in_defaults(mode):
    """The same pre-training step through sg.train_step: the optimizer's learning rate and
    the corruption level are inputs with defaults; a step whose optimizer reads an input
    it does not list says so."""
    W = sg.shared(np.zeros(3), name=f"W_step_{mode}")
    x, lr, level = sg.vector("x"), sg.scalar("lr"), sg.scalar("corruption")
    cost = ((x * (1 - level) - W) ** 2).sum()
    step = sg.train_step(cost, [x, sg.In(level, value=0.25), sg.In(lr, value=0.1)],
                         optimizer=sg.optim.SGD(lr=lr), mode=mode)
    assert step.inputs == [x, level, lr] and step.function.defaults == {1: 0.25, 2: 0.1}
    xv = np.array([1.0, 2.0, 4.0])
    for args, kw, (lv, rate) in [((xv,), {}, (0.25, 0.1)), ((xv, 0.5), {}, (0.5, 0.1)),
                                 ((xv,), {"lr": 0.3}, (0.25, 0.3)),
                                 ((), {"x": xv, "corruption": 0.0, "lr": 0.2}, (0.0, 0.2))]:
        W.set_value(np.zeros(3))
        got = step(*args, **kw)
        target = xv * (1 - lv)
        assert got["loss"] == pytest.approx(float((target ** 2).sum()), rel=1e-12)
        np.testing.assert_allclose(W.get_value(), 2 * rate * target, rtol=1e-12)
    single = sg.train_step(((W - lr) ** 2).sum(), sg.In(lr, value=1.0), mode="py")
    before = W.get_value()
    assert single()["loss"] == pytest.approx(float(((before - 1) ** 2).sum()), rel=1e-12)
    with pytest.raises(sg.InputError, match=r"needs the input lr, used by .*test_theano_idioms"):
        sg.train_step(cost, [x, sg.In(level, value=0.25)], optimizer=sg.optim.SGD(lr=lr),
                      mode="py")
    with pytest.raises(TypeError, match="a Variable, an sg.In or a list/tuple of them"):
        sg.train_step(cost, {x}, mode="py")


def test_in_checks_and_pickles(tmp_path):
    import pickle
    x = sg.vector("x")
    k = sg.scalar("k", dtype="int32")
    with pytest.raises(sg.InputError, match=r"'k' \(its default\) expects a 0-d int32.*float64"):
        sg.function([x, sg.In(k, value=1.5)], x * k, mode="py")
    with pytest.raises(TypeError, match="update=.*sg.shared"):
        sg.In(k, value=1, update=k + 1)
    with pytest.raises(TypeError, match="the first argument is the symbolic input"):
        sg.In(3, value=1)
    f = sg.function([x, sg.In(k, value=3, name="times")], x * k, mode="py")
    assert f(np.ones(2)).tolist() == [3.0, 3.0] and f(np.ones(2), times=2).tolist() == [2.0, 2.0]
    with pytest.raises(sg.InputError, match="unknown keyword 'k'"):
        f(np.ones(2), k=2)
    g = pickle.loads(pickle.dumps(f))
    assert g(np.ones(2)).tolist() == [3.0, 3.0] and g(np.ones(2), times=2).tolist() == [2.0, 2.0]
    # In without a value only renames: the input stays required
    h = sg.function([sg.In(x, name="data")], x + 1, mode="py")
    assert h(data=np.zeros(1)).tolist() == [1.0]
    with pytest.raises(sg.InputError, match="missing input"):
        h()


# ---------------------------------------------------------------- RandomStreams.binomial

def test_binomial_with_theanos_arguments():
    """``rng.binomial(size=x.shape, n=1, p=..., dtype=floatX)``, the tutorials' corruption
    mask: the same draws as ``bernoulli`` from the same seed, Theano's default dtype int64;
    ``n > 1`` counts ``n`` draws per element (mean n p, variance n p (1 - p)), the same bits
    compiled and in NumPy."""
    x = sg.matrix("x")
    xv = np.ones((4000, 5))
    a, b = sg.random.RandomStream(11), sg.random.RandomStream(11)
    mask = a.binomial(size=x.shape, n=1, p=0.3, dtype="float64") * x
    same = b.bernoulli(0.3, size=x.shape, dtype="float64") * x
    got, want = sg.evaluate([mask, same], {x: xv})
    np.testing.assert_array_equal(got, want)
    assert 0.28 < got.mean() < 0.32
    assert a.binomial(size=(2, 3)).dtype == "int64" and a.binomial(p=sg.vector("q")).ndim == 1
    # Theano's size=x.shape is a vector there: sg.shape(x) works as a size too
    assert a.binomial(size=sg.shape(x)).eval({x: xv[:3]}).shape == (3, 5)
    rng = sg.random.RandomStream(5)
    counts = rng.binomial(size=(x.shape[0], 3), n=7, p=sg.constant(np.array([0.1, 0.5, 0.9])))
    none = rng.binomial(size=(2,), n=0, p=0.4, dtype="float32")
    f = sg.function([x], [counts, none])
    rng.seed(5)
    cv, nv = f(xv)
    rng.seed(5)
    np.testing.assert_array_equal(sg.function([x], counts, mode="py")(xv), cv)
    assert cv.dtype == np.int64 and cv.shape == (4000, 3) and cv.min() >= 0 and cv.max() <= 7
    np.testing.assert_allclose(cv.mean(0), 7 * np.array([0.1, 0.5, 0.9]), atol=0.06)
    np.testing.assert_allclose(cv.var(0), 7 * np.array([0.09, 0.25, 0.09]), rtol=0.1)
    assert nv.dtype == np.float32 and nv.tolist() == [0.0, 0.0]


def test_binomial_errors_name_binomial():
    rng = sg.random.RandomStream(0)
    for call, err, want in [
            (lambda: rng.binomial(size=3, n=sg.scalar("n", dtype="int64")), TypeError,
             r"binomial: n must be an int >= 0 known when the graph is built, got a Variable.*"
             r"rng\.bernoulli\(p, size=\(n_max, \*size\)\)"),
            (lambda: rng.binomial(size=3, n=2.0), TypeError, r"n must be an int >= 0.*got 2\.0"),
            (lambda: rng.binomial(size=3, n=-1), TypeError, r"got -1"),
            (lambda: rng.binomial(size=3, n=2, dtype="bool"), TypeError,
             r"n=2 successes do not fit dtype bool"),
            (lambda: rng.binomial(size=3, n=1, p=1.5), ValueError, r"^binomial: p must be in"),
            (lambda: rng.binomial(size=3, n=4, p=-0.5), ValueError, r"^binomial: p must be in"),
            (lambda: rng.binomial(size=(3,), n=2, p=np.full(4, 0.5)), sg.ShapeError,
             r"^binomial: parameters of shapes \(4,\) do not broadcast to size \(3,\)")]:
        with pytest.raises(err, match=want) as info:
            call()
        assert "test_theano_idioms.py" in str(info.value)
    p = sg.scalar("p")
    f = sg.function([p], rng.binomial(size=2, n=3, p=p), mode="py")
    with pytest.raises(ValueError, match=r"^binomial at \S*test_theano_idioms\.py:\d+: p must be in"):
        f(2.0)


# ---------------------------------------------------------------- errors that point the way

def test_numpy_functions_on_a_variable_say_what_to_write():
    x = sg.matrix("x")
    for call, want in [(lambda: np.tanh(x), r"np\.tanh .*write sg\.tanh\(\.\.\.\)"),
                       (lambda: np.dot(x, x), r"np\.dot .*write sg\.dot"),
                       (lambda: np.sum(x, axis=0), r"np\.sum .*write sg\.sum"),
                       (lambda: np.maximum(x, 0), r"write sg\.maximum"),
                       (lambda: np.concatenate([x, x]), r"write sg\.concatenate"),
                       (lambda: np.add.reduce(x), r"np\.add\.reduce .*symgrad has no"),
                       (lambda: np.tanh(x, out=np.empty(1)), r"np\.tanh .*sg\.tanh")]:
        with pytest.raises(TypeError, match=want):
            call()
    # NumPy's operators with the array on the left still build the graph
    a = np.arange(4.0).reshape(2, 2)
    exprs = [a + x, a - x, a * x, a / x, a @ x, a ** x, -x, a < x, np.float32(2) * x]
    assert [e.owner.op.name for e in exprs] == ["add", "sub", "mul", "truediv", "matmul", "pow",
                                                "neg", "lt", "mul"]
    v = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(sg.evaluate(a - x, {x: v}), a - v)
    assert (a == x) is False and (a != x) is True  # identity, as x == a: sg.eq compares


def test_python_and_numpy_conversions_of_a_variable_say_what_to_write():
    """np.asarray(x) used to give a 0-d object array quietly; every conversion that needs a
    value is a TypeError saying what to write instead."""
    import math
    import operator
    x = sg.matrix("x")
    s = x.sum()
    n = x.shape[0]
    static = sg.tensor("t", shape=(3, 2))
    value = r"it has no value until a compiled function runs"
    for call, want in [
            (lambda: np.asarray(x), rf"cannot become a NumPy array .*{value}.*x\.eval\(.*sg\.function"),
            (lambda: np.array(x), r"cannot become a NumPy array"),
            (lambda: np.array([x, x]), r"cannot become a NumPy array .*sg\.stack"),
            (lambda: np.float64(s), r"cannot become a NumPy array"),
            (lambda: np.arange(3)[n], r"cannot become a NumPy array"),
            (lambda: sg.constant([s, 1.0]), r"cannot become a NumPy array"),
            (lambda: float(s), rf"^float\(\) of a symbolic Variable .*{value}.*x\.astype\('float64'\)"),
            (lambda: int(s), r"^int\(\) of a symbolic Variable .*x\.shape\[i\]"),
            (lambda: complex(s), r"no complex dtypes"),
            (lambda: round(s), r"sg\.round\(x\)"),
            (lambda: math.floor(s), r"sg\.floor\(x\)"),
            (lambda: math.ceil(s), r"sg\.ceil\(x\)"),
            (lambda: math.trunc(s), r"sg\.where"),
            (lambda: range(n), r"no Python int .*sg\.arange\(n\)"),
            (lambda: operator.index(n), r"no Python int"),
            (lambda: [1, 2][n], r"no Python int"),
            (lambda: np.ones((n, 3)), r"no Python int"),
            (lambda: bool(s), r"no truth value .*sg\.where.*sg\.ifelse"),
            (lambda: len(x), r"known only at call time: x\.shape\[0\] is a symbolic int64"),
            (lambda: len(static), r"its first length is static: x\.shape\[0\] is 3"),
            (lambda: len(s), r"a 0-d Variable has no length"),
            (lambda: list(x), r"cannot be iterated .*x\[0\].*sg\.map"),
            (lambda: [r for r in static], r"cannot be iterated"),
            (lambda: 1.0 in x, r"'in' cannot search .*sg\.eq"),
            (lambda: np.ndim(x), r"np\.ndim .*write x\.ndim"),
            (lambda: np.shape(x), r"np\.shape .*write x\.shape")]:
        with pytest.raises(TypeError, match=want):
            call()
    # what still works: static lengths are ints, NumPy's operators build the graph
    a, b = static.shape
    assert (a, b) == (3, 2) and len(static.shape) == 2 and static.ndim == 2
    assert isinstance(np.ones(2) + x, sg.Variable)


def test_missing_names_say_what_to_write():
    for name, want in [("nnet", r"sg\.nn .*sg\.nn\.softmax"), ("dmatrix", r"sg\.matrix\(name, dtype='float64'\)"),
                       ("ivector", r"sg\.vector\(name, dtype='int32'\)"),
                       ("fcol", r"sg\.tensor\(name, dtype='float32', shape=\(None, 1\)\)"),
                       ("softmax", r"sg\.nn\.softmax"), ("switch", r"sg\.where"),
                       ("RandomStreams", r"sg\.random\.RandomStream\(seed\)"),
                       ("tanhh", r"did you mean sg\.tanh\?"), ("Param", r"sg\.In"),
                       ("eye", r"sg\.constant\(np\.eye\(n\)\)"), ("sort", "has no sort"),
                       ("isfinite", r"sg\.eq\(x - x, 0\)"), ("Rop", r"sg\.jvp"),
                       ("Lop", r"sg\.vjp"), ("int_div", "x // y"), ("cumsum", "sg.scan"),
                       ("nothing_like_it", "docs/from_theano.md")]:
        with pytest.raises(AttributeError, match=rf"no attribute '{name}': .*{want}"):
            getattr(sg, name)
    assert not hasattr(sg, "__wrapped__") and not hasattr(sg, "dmatrix")
    for name, want in [("categorical_crossentropy", r"sg\.nn\.cross_entropy\(logits, labels\)"),
                       ("softmaxx", r"did you mean sg\.nn\.softmax\?")]:
        with pytest.raises(AttributeError, match=rf"'symgrad.nn' has no attribute '{name}': .*{want}"):
            getattr(sg.nn, name)
    x = sg.matrix("x")
    for name, want in [("exp", r"write sg\.exp\(x"), ("norm", r"sg\.sqrt\(\(x \*\* 2\)"),
                       ("nonzero", "sg.where"), ("summ", r"did you mean x\.sum\?"),
                       ("broadcastable", r"x\.type\.shape"), ("tolist", r"x\.eval")]:
        with pytest.raises(AttributeError, match=rf"'Variable' object has no attribute '{name}': .*{want}"):
            getattr(x, name)
    assert not hasattr(x, "_private") and getattr(x, "missing", 3) == 3


def test_numpy_and_theano_methods_of_a_variable():
    x = sg.matrix("x")
    v = np.array([[1.0, -2.0], [3.0, 0.5]])
    got = sg.evaluate([x.dot(x), x.clip(-1, 1), x.var(axis=0), x.std(), x.squeeze()], {x: v})
    for g, w in zip(got, [v @ v, np.clip(v, -1, 1), v.var(axis=0), v.std(), v]):
        np.testing.assert_allclose(g, w)
    np.testing.assert_array_equal((x * 2).eval({x: v}), 2 * v)  # Theano's eval
    assert sg.constant(3.0).eval() == 3.0
    with pytest.raises(TypeError, match=r"eval: inputs_to_values is a dict"):
        x.eval([v])


def test_jacobian_through_a_shared_variable():
    """Theano's shared parameters: a Jacobian with respect to one (and through one whose
    leading length may change) needs no static shape from the user."""
    W = sg.shared(np.arange(6.0).reshape(3, 2) / 10, name="W_j", shape=(None, 2))
    x = sg.vector("x")
    jx, jW = sg.jacobian(sg.tanh(W @ x), [x, W])
    xv = np.array([0.5, -1.0])
    got_x, got_W = sg.evaluate([jx, jW], {x: xv})
    d = 1 - np.tanh(W.get_value() @ xv) ** 2
    np.testing.assert_allclose(got_x, d[:, None] * W.get_value())
    want_W = np.zeros((3, 3, 2))
    for i in range(3):
        want_W[i, i] = d[i] * xv
    np.testing.assert_allclose(got_W, want_W)


@pytest.mark.parametrize("mode", ["py", "c"])
def test_a_product_that_does_not_fit_names_the_users_matmul(mode):
    """The rewrite makes ``a @ b + c`` one gemm; a call whose sizes do not fit names the
    user's ``@`` (or ``+``) and line, not gemm."""
    a, b, c = sg.matrix("a"), sg.matrix("b"), sg.vector("c")
    f = sg.function([a, b, c], a @ b + c, mode=mode)
    assert "gemm" in {n.op.name for n in f.graph.nodes}
    with pytest.raises(sg.ShapeError) as err:
        f(np.ones((2, 3)), np.ones((4, 2)), np.ones(2))
    assert re.match(r"matmul at \S*test_theano_idioms\.py:\d+: shapes \(2, 3\) and \(4, 2\) cannot "
                    r"be multiplied", str(err.value)), str(err.value)
    assert "gemm" not in str(err.value)
    with pytest.raises(sg.ShapeError, match=r"^add at \S*test_theano_idioms\.py:\d+: ") as err:
        f(np.ones((2, 3)), np.ones((3, 2)), np.ones(3))
    assert "gemm" not in str(err.value)


def _mismatched_products():
    """Products with their own inputs each (one compiled function tries them all)."""
    M = [sg.matrix(f"M{k}") for k in range(6)]
    v = [sg.vector(f"v{k}") for k in (0, 1, 2, 3, 4, 6)]
    v.insert(5, None)
    N, T3 = sg.matrix("N"), sg.tensor3("T3")
    outs = [M[0] @ v[0],                    # _PRODUCT_LINE + 0
            v[1] @ M[1],                    # + 1
            sg.dot(M[2], v[2]) + 1,         # + 2
            M[3].T @ v[3],                  # + 3: a gemm with a.T
            2 * sg.dot(v[4], M[4].T),       # + 4: a gemm with alpha and a.T
            sg.dot(M[5], N) + 1,            # + 5: a gemm accumulating
            T3 @ v[6]]                      # + 6
    return M, v, N, T3, outs


_PRODUCT_LINE = _mismatched_products.__code__.co_firstlineno + 6


@pytest.mark.parametrize("mode", ["py", "c"])
def test_a_mismatched_product_shows_the_operands_as_written(mode):
    """A vector operand of a product is a row or a column inside the graph; a call whose
    sizes do not fit shows it as the vector the user gave, names the function they called
    (``matmul`` for ``@``, or ``dot``) and their line -- through the gemm rewrite too."""
    M, v, N, T3, outs = _mismatched_products()
    f = sg.function(M + [u for u in v if u is not None] + [N, T3], outs, mode=mode)
    assert {"gemm", "matmul"} <= {n.op.name for n in f.graph.nodes}
    # sizes that fit: the rows of M3, M4 and M5 pass through transposes and N
    fit = {**{f"M{k}": np.ones((3, 4)) for k in range(6)},
           **{f"v{k}": np.ones(4) for k in (0, 2, 6)},
           "v1": np.ones(3), "v3": np.ones(3), "v4": np.ones(4), "N": np.ones((4, 2)),
           "T3": np.ones((2, 3, 4))}
    f(**fit)
    bad = [("matmul", "v0", np.ones(5), "(3, 4) and (5,)", "4 and 5"),
           ("matmul", "v1", np.ones(5), "(5,) and (3, 4)", "5 and 3"),
           ("dot", "v2", np.ones(5), "(3, 4) and (5,)", "4 and 5"),
           ("matmul", "v3", np.ones(5), "(4, 3) and (5,)", "3 and 5"),
           ("dot", "v4", np.ones(5), "(5,) and (4, 3)", "5 and 4"),
           ("dot", "N", np.ones((5, 2)), "(3, 4) and (5, 2)", "4 and 5"),
           ("matmul", "v6", np.ones(5), "(2, 3, 4) and (5,)", "4 and 5")]
    for k, (op, name, value, shapes, lengths) in enumerate(bad):
        with pytest.raises(sg.ShapeError) as err:
            f(**{**fit, name: value})
        assert str(err.value) == (f"{op} at {__file__}:{_PRODUCT_LINE + k}: shapes {shapes} "
                                  f"cannot be multiplied (contracted lengths {lengths})")
    # the same at build time, where the lengths are static
    a, u = sg.tensor("a", shape=(3, 4)), sg.tensor("u", shape=(5,))
    with pytest.raises(sg.ShapeError, match=r"^matmul: shapes \(3, 4\) and \(5,\) are not aligned"):
        a @ u
    with pytest.raises(sg.ShapeError, match=r"^dot: shapes \(5,\) and \(3, 4\) are not aligned"):
        sg.dot(u, a)


# ---------------------------------------------------------------- a tutorial, line by line

def test_logistic_regression_tutorial_in_debug_mode():
    """The deep-learning tutorials' logistic regression as a Theano user writes it: batch
    sizes known only at call time (x.shape[0], y.shape[0]), the negative log-likelihood
    through sg.arange(y.shape[0]), a learning rate with a default (sg.In), the
    zeros/reshape idioms. Mode "debug" runs the compiled kernel and NumPy's reference
    node by node (so both modes are checked); the values match a NumPy transcription."""
    x = sg.tensor("x", shape=(None, 2, 3))
    y = sg.vector("y", dtype="int64")
    lr = sg.scalar("lr")
    W = sg.shared(np.zeros((6, 4)), name="W")
    b = sg.shared(np.zeros(4), name="b")
    flat = x.reshape((x.shape[0], -1))
    p_y_given_x = sg.nn.softmax(flat @ W + b + sg.zeros((x.shape[0], 4)))
    cost = -sg.mean(sg.log(p_y_given_x)[sg.arange(y.shape[0]), y])
    errors = sg.mean(sg.neq(sg.argmax(p_y_given_x, axis=1), y))
    g_W, g_b = sg.grad(cost, [W, b])
    train = sg.function([x, y, sg.In(lr, value=0.5)], [cost, errors],
                        updates=[(W, W - lr * g_W), (b, b - lr * g_b)], mode="debug")
    rng = np.random.default_rng(3)
    Wn, bn = np.zeros((6, 4)), np.zeros(4)
    for n, step in [(3, None), (7, 0.1), (1, None)]:
        xv, yv = rng.standard_normal((n, 2, 3)), rng.integers(0, 4, n)
        got = train(xv, yv) if step is None else train(xv, yv, lr=step)
        f = xv.reshape(n, -1)
        z = f @ Wn + bn
        pn = np.exp(z - z.max(1, keepdims=True))
        pn /= pn.sum(1, keepdims=True)
        want_cost = -np.mean(np.log(pn)[np.arange(n), yv])
        d = pn.copy()
        d[np.arange(n), yv] -= 1
        d /= n
        rate = 0.5 if step is None else step
        Wn, bn = Wn - rate * f.T @ d, bn - rate * d.sum(0)
        assert float(got[0]) == pytest.approx(want_cost, rel=1e-12)
        assert float(got[1]) == np.mean(pn.argmax(1) != yv)
        np.testing.assert_allclose(W.get_value(), Wn, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(b.get_value(), bn, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- Theano's keyword arguments

def test_theano_keywords_of_shared_and_function():
    import warnings
    value = np.ones(3, dtype=np.float32)
    W = sg.shared(value, name="W_b", borrow=True)  # Theano's hint; the value is copied anyway
    value[0] = 5.0
    assert W.get_value()[0] == 1.0
    x, unused = sg.vector("x", dtype="float32"), sg.scalar("unused")
    v64 = np.array([0.1, 1e-50, 3.0])
    with pytest.raises(sg.InputError, match="without loss.*allow_input_downcast=True"):
        sg.function([x], x * 2, mode="py")(v64)
    f = sg.function([x], x * 2, mode="py", allow_input_downcast=True)
    got = f(v64)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, v64.astype(np.float32) * 2)
    k = sg.vector("k", dtype="int32")
    g = sg.function([k], k + 1, mode="py", allow_input_downcast=True)
    assert g(np.array([1, 2], dtype=np.int64)).tolist() == [2, 3]
    with pytest.raises(sg.InputError, match="without loss"):
        g(np.array([2 ** 40]))  # does not fit: refused even so
    with pytest.raises(sg.InputError, match="without loss"):
        g(np.array([1.5]))  # a float is no integer
    import pickle
    assert pickle.loads(pickle.dumps(f))(v64).dtype == np.float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sg.function([x, unused], x * 2, mode="py", on_unused_input="ignore")
    with pytest.warns(sg.UnusedInputWarning, match="'unused'"):
        sg.function([x, unused], x * 2, mode="py", on_unused_input="warn")
    with pytest.raises(sg.InputError, match="'unused' .*is not used"):
        sg.function([x, unused], x * 2, mode="py", on_unused_input="raise")
    with pytest.raises(ValueError, match="on_unused_input must be"):
        sg.function([x], x * 2, mode="py", on_unused_input="silent")


def test_reshape_takes_theanos_ndim():
    x = sg.matrix("x")
    y = x.reshape((x.shape[0] * x.shape[1],), ndim=1)
    assert y.ndim == 1
    np.testing.assert_array_equal(y.eval({x: np.ones((2, 3))}), np.ones(6))
    with pytest.raises(sg.ShapeError, match=r"reshape: ndim=2 but the shape has 1 entries .*test_theano_idioms"):
        x.reshape((-1,), ndim=2)
