"""``x.shape``: ints where lengths are static, symbolic lengths where not (SPEC §1).

Every argument that takes sizes accepts ints, 0-d integer Variables and
tuples or lists mixing both; static ints keep giving static result types.
"""

import importlib
import linecache
import os
import pkgutil
import re
import sys

import numpy as np
import pytest

import symgrad as sg
import symgrad.ops.methods as _methods
from symgrad.codegen.kernel import lower
from symgrad.ops.join import split
from symgrad.ops.shape import ShapeAt

import cases as _cases  # tests/ is on sys.path (conftest.py)

MODES = ["py", "c"]
LENGTHS = [0, 1, 5, 7]


def assert_names_line(err, snippet):
    """The message names a line of this file that holds ``snippet``."""
    msg = str(err)
    found = re.search(r"test_symbolic_shape\.py:(\d+)", msg)
    assert found, f"no line of this file in: {msg}"
    assert snippet in linecache.getline(__file__, int(found.group(1))), msg


# ---------------------------------------------------------------- what x.shape holds

def test_shape_mixes_ints_and_symbolic_lengths():
    x = sg.tensor("x", shape=(None, 3, 4))
    n, c, w = x.shape
    assert len(x.shape) == x.ndim == 3
    assert (c, w) == (3, 4) and type(c) is int and type(w) is int
    assert isinstance(n, sg.Variable) and n.ndim == 0 and n.dtype == "int64"
    assert isinstance(n.owner.op, ShapeAt) and n.owner.op.axis == 0 and n.owner.inputs[0] is x
    assert x.type.shape == (None, 3, 4)  # the static shape stays where it was


def test_fully_static_shape_is_a_tuple_of_ints():
    m = sg.tensor("m", shape=(2, 3))
    assert m.shape == (2, 3) and all(type(s) is int for s in m.shape)
    assert sg.scalar().shape == () and m.size == 6 and sg.scalar().size == 1
    assert sg.tensor(shape=(None, 0)).size == 0  # no element, whatever the other length


@pytest.mark.parametrize("mode", MODES)
def test_shape_and_size_values(mode):
    x = sg.tensor("x", shape=(None, 3, None))
    assert x.type.size is None
    f = sg.function([x], [*x.shape[::2], x.size], mode=mode)
    for n, k in [(0, 2), (1, 1), (5, 4)]:
        a, b, size = f(np.zeros((n, 3, k)))
        assert (int(a), int(b), int(size)) == (n, k, n * 3 * k)
        assert size.dtype == np.int64


def test_static_comparison_picks_a_branch():
    """``if x.shape[1] == 3:``: a plain int comparison when the length is static."""
    x = sg.tensor("x", shape=(None, 3))
    if x.shape[1] == 3:
        out = x * 2.0
    else:  # pragma: no cover - the static length is 3
        out = x
    assert x.shape[1] == 3 and x.shape[1] != 4
    vals = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(sg.function([x], out, mode="py")(vals), vals * 2)


# ---------------------------------------------------------------- the SPEC's examples

@pytest.mark.parametrize("mode", MODES)
def test_arange_of_an_unknown_length(mode):
    y = sg.vector("y")
    r = sg.arange(y.shape[0])
    assert r.type.shape == (None,) and r.dtype == "int64"
    f = sg.function([y], r, mode=mode)
    for n in LENGTHS:
        np.testing.assert_array_equal(f(np.ones(n)), np.arange(n))


@pytest.mark.parametrize("mode", MODES)
def test_reshape_keeping_the_batch_axis(mode):
    x = sg.tensor("x", shape=(None, 3, 4))
    out = x.reshape((x.shape[0], -1))
    assert out.type.shape == (None, 12)
    f = sg.function([x], [out, sg.reshape(x, [x.shape[0], x.shape[1], -1]),
                          x.reshape(x.shape[0], 2, -1)], mode=mode)
    for n in LENGTHS:
        v = np.arange(n * 12.0).reshape(n, 3, 4)
        a, b, c = f(v)
        # NumPy refuses the -1 next to a 0 length; the static 12 answers it
        np.testing.assert_array_equal(a, v.reshape(n, 12))
        np.testing.assert_array_equal(b, v.reshape(n, 3, 4))
        np.testing.assert_array_equal(c, v.reshape(n, 2, 6))


@pytest.mark.parametrize("mode", MODES)
def test_the_int_case_of_a_static_length_feeds_arithmetic(mode):
    x = sg.tensor("x", shape=(None, 3))
    scale = x.shape[1] * 2      # an int: 6
    assert scale == 6
    f = sg.function([x], x.sum(axis=1) / (x.shape[0] * scale), mode=mode)
    for n in [1, 4]:
        v = np.arange(n * 3.0).reshape(n, 3)
        np.testing.assert_allclose(f(v), v.sum(axis=1) / (n * 6))


# ---------------------------------------------------------------- every size-taking argument

def test_static_ints_keep_static_result_types():
    x = sg.tensor("x", shape=(None, 3, 4))
    y = sg.vector("y", dtype="int64")
    assert sg.zeros((x.shape[0], 10)).type.shape == (None, 10)
    assert sg.ones([x.shape[2], x.shape[0]]).type.shape == (4, None)
    assert sg.zeros(x.shape).type.shape == (None, 3, 4)
    assert sg.broadcast_to(sg.scalar(), (x.shape[1], x.shape[0])).type.shape == (3, None)
    assert sg.arange(x.shape[1]).type.shape == (3,)
    assert sg.one_hot(y, x.shape[2]).type.shape == (None, 4)
    assert x.flatten(2).type.shape == (None, 12) and sg.flatten(x, 3).type.shape == (None, 3, 4)
    assert x.flatten().type.shape == (None,)
    assert x.reshape((x.shape[0], 12)).type.shape == (None, 12)
    assert x.reshape(sg.shape(x)).type.shape == (None, 3, 4)
    assert x.reshape((-1, 4)).type.shape == (None, 4)


@pytest.mark.parametrize("mode", MODES)
def test_mixed_sizes_in_each_function(mode):
    x = sg.tensor("x", shape=(None, 3, None))
    labels = sg.vector("labels", dtype="int64")
    k = sg.scalar("k", dtype="int32")
    n, _, w = x.shape
    outs = {
        "zeros": sg.zeros((n, 2, w)),
        "ones": sg.ones([w, np.int64(2), n], dtype="int32"),
        "zeros_scalar": sg.zeros(w),
        "broadcast_to": sg.broadcast_to(sg.constant([1.0, 2.0, 3.0]).reshape((3, 1)), (n, 3, w)),
        "arange": sg.arange(w, n * w, k),
        "arange_float": sg.arange(0.5, n),
        "one_hot": sg.one_hot(labels, w),
        "reshape_fn": sg.reshape(x, (w, -1, np.int64(3))),
        "reshape_method": x.reshape(n * 3, w),
        "reshape_int32": x.reshape((k.astype("int64") * 0 + n, -1)),
        "flatten2": x.flatten(2),
    }
    f = sg.function([x, labels, k], outs, mode=mode)
    for nv, wv in [(1, 2), (4, 3), (6, 1)]:
        v = np.arange(nv * 3 * wv, dtype="float64").reshape(nv, 3, wv)
        lab = np.arange(5) % wv
        got = f(v, lab, 2)
        want = {
            "zeros": np.zeros((nv, 2, wv)),
            "ones": np.ones((wv, 2, nv), dtype="int32"),
            "zeros_scalar": np.zeros(wv),
            "broadcast_to": np.broadcast_to(np.array([1.0, 2.0, 3.0]).reshape(3, 1), (nv, 3, wv)),
            "arange": np.arange(wv, nv * wv, 2),
            "arange_float": np.arange(0.5, nv),
            "one_hot": np.eye(wv)[lab],
            "reshape_fn": v.reshape(wv, -1, 3),
            "reshape_method": v.reshape(nv * 3, wv),
            "reshape_int32": v.reshape(nv, -1),
            "flatten2": v.reshape(nv, -1),
        }
        for key, ref in want.items():
            assert got[key].dtype == ref.dtype, key
            np.testing.assert_array_equal(got[key], ref, err_msg=key)


@pytest.mark.parametrize("mode", MODES)
def test_split_and_slices_take_symbolic_lengths(mode):
    y = sg.vector("y")
    n = y.shape[0]
    head, tail = split(y, (n - 1, 1))  # internal (concatenate's gradient)
    f = sg.function([y], [head, tail, y[:n - 2], y[n // 2:]], mode=mode)
    for nv in [2, 3, 6]:
        v = np.arange(float(nv))
        a, b, c, d = f(v)
        np.testing.assert_array_equal(a, v[:-1])
        np.testing.assert_array_equal(b, v[-1:])
        np.testing.assert_array_equal(c, v[:nv - 2])
        np.testing.assert_array_equal(d, v[nv // 2:])


@pytest.mark.parametrize("mode", MODES)
def test_flatten_keeps_the_first_axes(mode):
    x = sg.tensor("x", shape=(None, None, 2, 3))
    outs = [x.flatten(), x.flatten(2), x.flatten(3), x.flatten(4)]
    assert [o.type.shape for o in outs] == [(None,), (None, None), (None, None, 6),
                                            (None, None, 2, 3)]
    f = sg.function([x], outs, mode=mode)
    for shape in [(2, 3, 2, 3), (0, 4, 2, 3), (3, 0, 2, 3)]:
        v = np.arange(float(np.prod(shape))).reshape(shape)
        for k, got in enumerate(f(v), start=1):
            want = v.reshape(shape[:k - 1] + (int(np.prod(shape[k - 1:])),))
            assert got.shape == want.shape
            np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("mode", MODES)
def test_gradient_through_a_reshape_with_a_symbolic_size(mode):
    def fun(x, w):
        h = x.reshape((x.shape[0], -1))      # every length symbolic here
        return sg.tanh(h @ w).sum() + (sg.zeros((x.shape[0], 1)) + h[:, :1]).sum()

    rng = np.random.default_rng(0)
    sg.verify_grad(fun, [rng.standard_normal((4, 3, 2)), rng.standard_normal((6, 5))],
                   mode=mode)


@pytest.mark.parametrize("mode", MODES)
def test_gradient_values_with_a_static_remainder(mode):
    x = sg.tensor("x", shape=(None, 3, 4))
    w = sg.matrix("w")
    h = x.reshape((x.shape[0], -1))
    cost = (h @ w).sum()
    gx, gw = sg.grad(cost, [x, w])
    assert gx.type.shape == (None, 3, 4)
    f = sg.function([x, w], [gx, gw], mode=mode)
    for n in [0, 2, 5]:
        xv = np.arange(n * 12.0).reshape(n, 3, 4)
        wv = np.arange(24.0).reshape(12, 2) / 10
        a, b = f(xv, wv)
        np.testing.assert_allclose(a, np.broadcast_to(wv.sum(axis=1), (n, 12)).reshape(n, 3, 4))
        np.testing.assert_allclose(b, np.broadcast_to(xv.reshape(n, 12).sum(axis=0)[:, None],
                                                      (12, 2)))


# ---------------------------------------------------------------- errors

def test_a_float_size_is_a_type_error_at_the_users_line():
    x = sg.tensor("x", shape=(None, 3))
    with pytest.raises(TypeError, match="an int or a 0-d integer Variable, got 2.0") as err:
        x.reshape((x.shape[0], 2.0))
    assert_names_line(err.value, "x.reshape((x.shape[0], 2.0))")
    with pytest.raises(TypeError, match="got 3.5") as err:
        sg.zeros((x.shape[0], 3.5))
    assert_names_line(err.value, "sg.zeros((x.shape[0], 3.5))")
    with pytest.raises(TypeError, match="got True") as err:
        sg.broadcast_to(x, (True, 3))
    assert_names_line(err.value, "sg.broadcast_to(x, (True, 3))")


def test_a_non_scalar_or_float_variable_as_a_size_is_a_type_error():
    x = sg.tensor("x", shape=(None, 3))
    with pytest.raises(TypeError, match=r"got a Variable of type float64\[\?\]") as err:
        sg.ones((sg.vector(), 3))
    assert_names_line(err.value, "sg.ones((sg.vector(), 3))")
    with pytest.raises(TypeError, match=r"got a Variable of type float64\[\]") as err:
        x.reshape(sg.scalar(), 3)
    assert_names_line(err.value, "x.reshape(sg.scalar(), 3)")
    with pytest.raises(TypeError, match=r"a shape must be .* got a Variable of type int64\[2, 2\]"):
        sg.zeros(sg.tensor(dtype="int64", shape=(2, 2)))
    with pytest.raises(TypeError, match="an integer scalar") as err:
        sg.one_hot(sg.vector(dtype="int64"), x.shape[0] * 1.0)
    assert_names_line(err.value, "sg.one_hot(sg.vector(dtype=")
    with pytest.raises(TypeError, match="stop must be an int or float scalar") as err:
        sg.arange(sg.shape(x))
    assert_names_line(err.value, "sg.arange(sg.shape(x))")


def test_none_as_a_size_says_what_to_write():
    x = sg.tensor("x", shape=(None, 3))
    with pytest.raises(TypeError, match=r"None .*use x\.shape\[i\]") as err:
        sg.zeros(x.type.shape)
    assert_names_line(err.value, "sg.zeros(x.type.shape)")


def test_a_negative_size_is_a_shape_error_naming_the_function():
    x = sg.vector("x")
    with pytest.raises(sg.ShapeError, match=r"zeros: negative size -2 in \(\?, -2\)") as err:
        sg.zeros((x.shape[0], -2))
    assert_names_line(err.value, "sg.zeros((x.shape[0], -2))")
    with pytest.raises(sg.ShapeError, match=r"ones: negative size -1 in \(-1,\)"):
        sg.ones(-1)
    with pytest.raises(sg.ShapeError, match=r"broadcast_to: negative size -1") as err:
        sg.broadcast_to(x, (-1, x.shape[0]))
    assert_names_line(err.value, "sg.broadcast_to(x, (-1, x.shape[0]))")
    with pytest.raises(sg.ShapeError, match=r"reshape: negative size -3"):
        x.reshape((x.shape[0], -3))
    assert x.reshape((x.shape[0], -1)).type.shape == (None, 1)  # -1: the rest, in reshape


def test_reshape_checks_what_the_static_lengths_know():
    x = sg.tensor("x", shape=(None, 3, 4))
    with pytest.raises(sg.ShapeError,
                       match=r"cannot reshape float64\[\?, 3, 4\].*\(\?, 5\)") as err:
        x.reshape((x.shape[0], 5))
    assert_names_line(err.value, "x.reshape((x.shape[0], 5))")
    with pytest.raises(sg.ShapeError, match="cannot reshape") as err:
        x.reshape((x.shape[0], 5, -1))
    assert_names_line(err.value, "x.reshape((x.shape[0], 5, -1))")
    x.reshape((x.shape[0], x.shape[0], -1))  # one cancelled axis: nothing provable, no error


def test_flatten_checks_ndim():
    x = sg.tensor("x", shape=(None, 3))
    with pytest.raises(sg.ShapeError, match="between 1 and 2") as err:
        x.flatten(3)
    assert_names_line(err.value, "x.flatten(3)")
    with pytest.raises(TypeError, match="ndim must be an int") as err:
        sg.flatten(x, 1.0)
    assert_names_line(err.value, "sg.flatten(x, 1.0)")
    assert sg.flatten(sg.scalar()).type.shape == (1,)


@pytest.mark.parametrize("mode", MODES)
def test_int32_scalars_and_numpy_ints_are_sizes_too(mode):
    x = sg.tensor("x", shape=(None, 3, 4))
    k = sg.scalar("k", dtype="int32")
    labels = sg.vector("labels", dtype="int64")
    outs = [x.reshape((k, -1)), sg.zeros((k, np.int32(2))), sg.broadcast_to(sg.constant(1.0), [k]),
            sg.one_hot(labels, k), sg.ones(x.shape[np.int64(1)])]
    assert [o.type.shape for o in outs] == [(None, None), (None, 2), (None,), (None, None), (3,)]
    f = sg.function([x, k, labels], outs, mode=mode)
    v = np.arange(24.0).reshape(2, 3, 4)
    a, b, c, d, e = f(v, 4, np.array([1, 3]))
    np.testing.assert_array_equal(a, v.reshape(4, -1))
    np.testing.assert_array_equal(b, np.zeros((4, 2)))
    np.testing.assert_array_equal(c, np.ones(4))
    np.testing.assert_array_equal(d, np.eye(4)[[1, 3]])
    np.testing.assert_array_equal(e, np.ones(3))


def test_a_symbolic_length_is_no_static_shape():
    x = sg.vector("x")
    with pytest.raises(sg.ShapeError, match=r"symbolic length .* x\.type\.shape is the static"):
        sg.tensor("y", shape=x.shape)
    assert sg.tensor("y", shape=x.type.shape).type == x.type


# ---------------------------------------------------------------- the package reads static shapes

@pytest.fixture
def static_reads_only(monkeypatch):
    """``Variable.shape`` / ``.size`` raise when read from inside the package.

    Its code must read ``x.type.shape`` / ``x.type.size``: with symbolic entries in
    ``x.shape``, a ``None in x.shape`` or ``x.shape[i] is None`` would silently be False.
    """
    pkg = os.path.dirname(sg.__file__) + os.sep

    def guard(fn, what):
        def read(self):
            caller = sys._getframe(1)
            if caller.f_code.co_filename.startswith(pkg):
                raise AssertionError(f"{caller.f_code.co_filename}:{caller.f_lineno} reads "
                                     f"Variable.{what}; the package reads .type.{what}")
            return fn(self)
        return property(read)

    monkeypatch.setattr(sg.Variable, "shape", guard(_methods._shape, "shape"))
    monkeypatch.setattr(sg.Variable, "size", guard(_methods._size, "size"))


def _registry_cases():
    found = []
    for mod in pkgutil.iter_modules(_cases.__path__):
        found.extend(importlib.import_module(f"{_cases.__name__}.{mod.name}").CASES)
    return found


def test_the_guard_catches_a_read_from_inside_the_package(static_reads_only):
    x = sg.vector("x")
    assert x.shape[0].owner.op == ShapeAt(0) and x.size.ndim == 0  # from here: allowed
    inside = compile("x.shape", os.path.join(os.path.dirname(sg.__file__), "probe.py"), "eval")
    with pytest.raises(AssertionError, match="reads Variable.shape"):
        eval(inside, {"x": x})


@pytest.mark.parametrize("static", [False, True], ids=["unknown", "static"])
def test_the_package_reads_only_static_shapes(static_reads_only, static):
    """Every registered op built, differentiated, rewritten, run, lowered to C and printed
    with ``x.shape`` guarded."""
    rng = np.random.default_rng(0)
    for case in _registry_cases():
        xs = [sg.tensor(f"a{i}", a.dtype, a.shape if static or a.static else (None,) * len(a.shape))
              for i, a in enumerate(case.args)]
        out = case.build(*xs)
        outs = [out]
        wrt = [x for x, a in zip(xs, case.args) if a.is_float and a.grad]
        if case.grad and wrt and out.dtype.startswith("float"):
            outs += sg.grad(out.sum(), wrt, disconnected="ignore")
        f = sg.function(xs, outs, mode="py")
        f(*[a.make(rng) for a in case.args])
        lower(xs, f.graph.outputs)
        sg.debugprint(f, print_type=True)
        sg.to_dot(f)
        sg.pprint(out)


def test_training_reads_only_static_shapes(static_reads_only):
    X, y = sg.matrix("X"), sg.vector("y", dtype="int64")
    layer = sg.layers.Dense(4, 3, rng=0, name="d")
    logits = layer(X)
    with sg.summary_scope():
        sg.summary("acc", sg.eq(logits.argmax(axis=1), y).astype("float64").mean())
        step = sg.train_step({"ce": sg.nn.cross_entropy(logits, y).mean()}, [X, y],
                             optimizer=sg.optim.Adam(lr=1e-2))
    rng = np.random.default_rng(0)
    got = step(rng.standard_normal((5, 4)), rng.integers(0, 3, 5))
    assert set(got) == {"loss", "ce", "acc"}
    J = sg.jacobian(sg.tensor("v", shape=(3,)) ** 2, sg.vector("w"), disconnected="ignore")
    assert J.type.shape == (3, None)
