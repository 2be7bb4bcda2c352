"""The bad-input matrix: what users pass to compiled functions, and what must happen.

Each case calls one of a few small functions (built once per mode) with one
argument list and expects either an error of a given type or values equal to
a NumPy reference. ``tests/test_reliability_inputs.py`` runs every case in a
child process per mode, so that a crash is a failed case, not a lost run:

    python tests/bad_inputs.py c          # one JSON line per case, on stdout

The child prints ``begin <id>`` before a case and ``end <json>`` after it;
a case begun but never ended is one the interpreter died in.
"""

import json
import os
import sys

import numpy as np

BIG = 2**31 + 5  # elements: past every 32-bit index


class _Any:
    def __repr__(self):
        return "any result or error, the same in both modes"


ANY = _Any()


# --------------------------------------------------------------------------- functions

def _functions(sg):
    """name -> (inputs, outputs, updates) builders; each is compiled once per mode."""
    x = sg.vector("x")
    i = sg.vector("i", dtype="int64")
    k = sg.scalar("k", dtype="int64")
    n = sg.scalar("n", dtype="int64")
    s = sg.scalar("s")
    z = sg.matrix("z")
    y = sg.vector("y", dtype="int64")
    c = sg.vector("c", dtype="int64")
    m = sg.tensor("m", shape=(2, 3))
    k32 = sg.vector("k32", dtype="int32")
    f32 = sg.vector("f32", dtype="float32")
    a = sg.tensor("a", shape=(None, 1))
    b = sg.tensor("b", shape=(1, None))
    x2 = sg.vector("x2")
    W = sg.shared(np.arange(3.0), name="W")
    bv = sg.vector("bv", dtype="bool")
    bm = sg.matrix("bm", dtype="bool")
    lens = sg.vector("lens", dtype="int64")
    return {
        "vec": lambda: ([x], [x * 2 + 1, x.sum(), x.max(), x.argmax(), sg.nn.softmax(x)], None),
        "two": lambda: ([x, i], x.sum() + i.sum(), None),
        "scalar": lambda: ([s], s * 2, None),
        "int32": lambda: ([k32], k32 * 2, None),
        "float32": lambda: ([f32], f32 * 2, None),
        "static": lambda: ([m], (m * 2).sum(axis=0), None),
        "matrix": lambda: ([z], [z.sum(axis=0), z.T @ z], None),
        "gather": lambda: ([x, i], x[i], None),
        "gather_grad": lambda: ([x, i], sg.grad((x[i] ** 2).sum(), x), None),
        "rows_cols": lambda: ([z, y, c], z[y, c], None),
        "const_index": lambda: ([x], x[5], None),
        "sym_index": lambda: ([x, k], x[k], None),
        "sym_slice": lambda: ([x, k], x[k:], None),
        "sym_step": lambda: ([x, k], x[::k], None),
        "cross_entropy": lambda: ([z, y], sg.nn.cross_entropy(z, y), None),
        "one_hot": lambda: ([y], sg.one_hot(y, 4), None),
        "one_hot_n": lambda: ([n], sg.one_hot(sg.arange(3), n), None),
        "same": lambda: ([x, x2], [x * x2 + x, x2], None),
        "unary": lambda: ([x], [sg.log(x), sg.sqrt(x), sg.round(x), sg.sigmoid(x), sg.softplus(x),
                                x.astype("int64"), x.astype("int32"), x.astype("bool"),
                                sg.isnan(x), x // 0.0, x % 0.0], None),
        "broadcast": lambda: ([z, x], z + x, None),
        "matmul": lambda: ([z, x], z @ x, None),
        "reshape": lambda: ([x, n], x.reshape((n, -1)), None),
        "big": lambda: ([x], [x.sum(), sg.shape(x)[0], x[-1], x[BIG - 2:]], None),
        "big_rows": lambda: ([z], z[2**31 + 1, 3], None),
        "square_ones": lambda: ([n], sg.ones((n, n)).sum(), None),
        "arange": lambda: ([n], sg.arange(n).sum(), None),
        "outer_sum": lambda: ([a, b], (a * b).sum(), None),
        "outer": lambda: ([a, b], a * b, None),
        "broadcast_to": lambda: ([x, n], sg.broadcast_to(x, (n, 3)), None),
        "update": lambda: ([x, i], x[i].sum(), [(W, W + x[i].sum())]),
        "int64_wrap": lambda: ([i], [i + i, i - 3 * i, i * i, -i, abs(i), i.sum(), i.prod(),
                                     i // -1, i % -1], None),
        "arange2": lambda: ([k, n], sg.arange(k, n).sum(), None),
        # lengths that add up or multiply past int64 (issue #11 item 7)
        "concat4": lambda: ([bv], [sg.concatenate([bv, bv, bv, bv])[:3]], None),
        "concat2": lambda: ([bv, x], [sg.concatenate([bv, bv])[:2], x[:1]], None),
        "concat_cols": lambda: ([bm], sg.concatenate([bm, bm], axis=1)[:, :2], None),
        "reshape3": lambda: ([x, n], x.reshape((n, 8, -1)), None),
        "split_big": lambda: ([bv, lens], _split(bv, [lens[0], lens[1]])[0][:2], None),
    }


def _split(x, lengths):
    from symgrad.ops.join import split

    return split(x, lengths)


def _build(sg, name, mode, cache):
    """(compiled function, the shared variables it updates), made once per mode."""
    if (name, mode) not in cache:
        inputs, outputs, updates = _functions(sg)[name]()
        cache[(name, mode)] = (sg.function(inputs, outputs, updates=updates, mode=mode),
                               [sv for sv, _ in updates or ()])
    return cache[(name, mode)]


def _as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


# --------------------------------------------------------------------------- cases

def _np_softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def _vec_ref(v):
    v = np.asarray(v, dtype=np.float64)
    with np.errstate(all="ignore"):
        # softmax of inf is a matter of formula (NaN or the limit): compared across modes only
        return [v * 2 + 1, v.sum(), v.max(), v.argmax(),
                ANY if np.isinf(v).any() else _np_softmax(v)]


def _misaligned():
    buf = np.zeros(8 * 4 + 1, np.uint8)
    buf[1:] = np.arange(4.0).view(np.uint8)
    return np.frombuffer(buf, np.float64, count=4, offset=1)


def _record_field():
    rec = np.zeros(4, dtype=[("a", np.float64), ("b", np.int32)])  # itemsize 12
    rec["a"] = np.arange(4.0)
    return rec["a"]


def _readonly():
    v = np.arange(4.0)
    v.setflags(write=False)
    return v


class Case:
    """One call: ``fn`` (a name in ``_functions``), its args/kwargs, what must happen.

    ``expect`` is an error class name (in ``symgrad`` or builtins), a
    callable giving the expected outputs from the arguments (an ``ANY``
    among them is not checked), or ``ANY``: then only the two modes are
    compared with each other.
    """

    def __init__(self, kind, id, fn, args, expect, kwargs=None, names_input=None):
        self.kind, self.id, self.fn, self.args, self.expect = kind, id, fn, args, expect
        self.kwargs = kwargs or {}
        self.names_input = names_input  # an InputError must name this input


def _symbolic():
    import symgrad
    return symgrad.vector("v")


E = V = Case  # read as: a case expecting an Error, a case expecting Values


def _v3():
    return np.arange(3.0)


def _wide(rows, cols):
    """Two stride-0 matrices, (rows, 1) and (1, cols), of ones: any size, no memory."""
    one = np.ones((1, 1))
    return [np.broadcast_to(one, (rows, 1)), np.broadcast_to(one, (1, cols))]


def _dtype_cases():
    takes = [("int64 array", lambda: np.arange(4)),
             ("float32 array", lambda: np.arange(4.0, dtype=np.float32)),
             ("float16 array", lambda: np.arange(4.0, dtype=np.float16)),
             ("bool array", lambda: np.ones(4, bool)),
             ("uint64 array", lambda: np.arange(4, dtype=np.uint64)),
             ("list of ints", lambda: [0, 1, 2, 3]),
             ("big-endian float64", lambda: np.arange(4.0).astype(">f8")),
             ("big-endian int32", lambda: np.arange(4).astype(">i4")),
             ("masked array", lambda: np.ma.array(np.arange(4.0), mask=[0, 1, 0, 0]))]
    refuses = [("complex", lambda: np.arange(3) + 1j),
               ("datetime", lambda: np.array(["2020-01-01"], "M8[D]")),
               ("timedelta", lambda: np.array([1], "m8[s]")),
               ("structured", lambda: np.zeros(3, [("a", "f8")])),
               ("bytes array", lambda: np.array([b"ab"])),
               ("object array", lambda: np.array([1.0, None])),
               ("object array of floats", lambda: np.array([1.0, 2.0], dtype=object)),
               ("string array", lambda: np.array(["1.0", "2.0"])),
               ("str", lambda: "1.0"), ("None", lambda: None), ("dict", lambda: {}),
               ("set", lambda: {1.0}), ("ragged list", lambda: [[1.0], [1.0, 2.0]]),
               ("list with a string", lambda: [1.0, "a"]),
               ("python int too big for any dtype", lambda: [2**70]),
               ("a symbolic variable", _symbolic)]
    out = [V("dtype", f"float64 input takes {label}", "vec", lambda make=make: [make()],
             lambda a: _vec_ref(np.asarray(a))) for label, make in takes]
    out += [E("dtype", f"float64 input refuses {label}", "vec", lambda make=make: [make()],
              "InputError", names_input="x") for label, make in refuses]
    for label, make in [("float64 array", lambda: np.zeros(2)), ("python float", lambda: [1.5]),
                        ("python 2**63", lambda: [2**63]),
                        ("uint64 2**63", lambda: np.array([2**63], np.uint64)),
                        ("uint64 array", lambda: np.array([1], np.uint64))]:
        out.append(E("dtype", f"int64 input refuses {label}", "two",
                     lambda make=make: [_v3(), make()], "InputError", names_input="i"))
    for label, make in [("int64 array", lambda: np.array([1, 2])),
                        ("python 2**40", lambda: [2**40]),
                        ("python -2**31-1", lambda: [-2**31 - 1]),
                        ("uint32 array", lambda: np.array([1], np.uint32))]:
        out.append(E("dtype", f"int32 input refuses {label}", "int32", lambda make=make: [make()],
                     "InputError", names_input="k32"))
    for label, value in [("python ints in range", [2**31 - 1, -2**31]),
                         ("int16 array", np.array([-3, 4], np.int16)),
                         ("bool array", np.array([True, False]))]:
        out.append(V("dtype", f"int32 input takes {label}", "int32", lambda value=value: [value],
                     lambda a: [np.array(a, np.int32) * 2]))
    for label, value in [("a float64 array", np.zeros(2)),
                         ("an int64 array", np.zeros(2, np.int64))]:
        out.append(E("dtype", f"float32 input refuses {label}", "float32",
                     lambda value=value: [value], "InputError", names_input="f32"))
    out.append(V("dtype", "float32 input takes python floats", "float32", lambda: [[0.1, 2.5]],
                 lambda a: [np.array(a, np.float32) * 2]))
    for label, make in [("python float", lambda: 1.5), ("python int", lambda: 3),
                        ("python bool", lambda: True), ("numpy float32", lambda: np.float32(1.5)),
                        ("0-d array", lambda: np.array(2.5)),
                        ("float subclass", lambda: type("F", (float,), {})(2.0)),
                        ("nan", lambda: float("nan")), ("inf", lambda: float("inf"))]:
        out.append(V("dtype", f"scalar input takes {label}", "scalar", lambda make=make: [make()],
                     lambda a: [np.float64(a) * 2]))
    out.append(E("dtype", "scalar input refuses a string", "scalar", lambda: ["1"], "InputError",
                 names_input="s"))
    return out


def _shape_cases():
    out = [E("ndim", f"vector input refuses {label}", "vec", lambda make=make: [make()],
             "InputError", names_input="x")
           for label, make in [("0-d", lambda: np.array(1.0)), ("2-d", lambda: np.zeros((2, 2))),
                               ("np.matrix", lambda: np.matrix([[1.0, 2.0]])),
                               ("nested list", lambda: [[1.0]])]]
    out.append(E("ndim", "scalar input refuses a 1-element list", "scalar", lambda: [[1.0]],
                 "InputError", names_input="s"))
    for shape in [(3, 2), (2, 4)]:
        out.append(E("shape", f"static (2, 3) refuses {shape}", "static",
                     lambda shape=shape: [np.zeros(shape)], "InputError", names_input="m"))
    out.append(V("shape", "static (2, 3) takes a transposed (3, 2)", "static",
                 lambda: [np.arange(6.0).reshape(3, 2).T], lambda a: [(a * 2).sum(axis=0)]))
    out += [
        E("shape", "broadcast mismatch at call time", "broadcast",
          lambda: [np.zeros((2, 3)), np.zeros(4)], "ShapeError"),
        E("shape", "matmul inner lengths differ", "matmul",
          lambda: [np.zeros((2, 3)), np.zeros(4)], "ShapeError"),
        E("shape", "reshape to an impossible shape", "reshape", lambda: [np.arange(6.0), 4],
          "ShapeError"),
        E("shape", "reshape to a negative length", "reshape", lambda: [np.arange(6.0), -2],
          "ShapeError"),
        E("shape", "cross_entropy with fewer labels than rows", "cross_entropy",
          lambda: [np.zeros((2, 3)), np.array([0])], "ShapeError"),
        E("shape", "broadcast_to a negative length", "broadcast_to", lambda: [np.ones(3), -1],
          "ShapeError"),
    ]
    return out


def _nan_cases():
    out = [V("nan", f"values: {label}", "vec", lambda vals=vals: [np.array(vals)], _vec_ref)
           for label, vals in [("nan", [1.0, np.nan, 3.0]), ("inf", [np.inf, 1.0, -np.inf]),
                               ("nan and inf", [np.nan, np.inf, 0.0]),
                               ("all nan", [np.nan, np.nan]),
                               ("huge", [1e308, 1e308, -1e308]),
                               ("denormal", [5e-324, -5e-324, 0.0])]]
    out += [
        V("nan", "unary functions and casts of nan, inf, negative, huge", "unary",
          lambda: [np.array([-1.0, np.nan, np.inf, -np.inf, 1e300, 0.0, -0.0, 2.5])],
          lambda a: [np.log(a), np.sqrt(a), np.round(a), 1 / (1 + np.exp(-a)),
                     np.logaddexp(0, a), a.astype(np.int64), a.astype(np.int32),
                     a.astype(bool), np.isnan(a), a // 0.0, a % 0.0]),
        V("nan", "matrix with nan and inf", "matrix",
          lambda: [np.array([[np.nan, 1.0], [np.inf, 2.0]])], lambda a: [a.sum(axis=0), a.T @ a]),
        # Whether inf or NaN is "right" here is a matter of formula: both modes must agree.
        V("nan", "cross_entropy with inf logits", "cross_entropy",
          lambda: [np.array([[np.inf, 0.0], [0.0, 1e308]]), np.array([1, 0])], ANY),
        V("nan", "softmax of a row holding inf", "vec",
          lambda: [np.array([np.inf, 0.0, np.inf])], ANY),
    ]
    return out


def _layout_cases():
    vectors = [("every other element", lambda: np.arange(10.0)[::2]),
               ("reversed (negative stride)", lambda: np.arange(5.0)[::-1]),
               ("negative step 3", lambda: np.arange(12.0)[::-3]),
               ("zero stride (broadcast)", lambda: np.broadcast_to(np.array(2.0), (5,))),
               ("a column of a matrix", lambda: np.arange(12.0).reshape(3, 4)[:, 1]),
               ("Fortran-ordered row", lambda: np.asfortranarray(np.arange(12.0).reshape(3, 4))[1]),
               ("misaligned", _misaligned),
               ("stride not a multiple of the item size", _record_field),
               ("read-only", _readonly), ("one element", lambda: np.array([7.0]))]
    matrices = [("transposed", lambda: np.arange(12.0).reshape(3, 4).T),
                ("reversed rows and columns", lambda: np.arange(12.0).reshape(3, 4)[::-1, ::-2]),
                ("zero rows", lambda: np.zeros((0, 3))), ("zero columns", lambda: np.zeros((3, 0))),
                ("zero both", lambda: np.zeros((0, 0)))]
    out = [V("layout", f"vector {label}", "vec", lambda make=make: [make()], _vec_ref)
           for label, make in vectors]
    out += [V("layout", f"matrix {label}", "matrix", lambda make=make: [make()],
              lambda a: [a.sum(axis=0), a.T @ a]) for label, make in matrices]
    out += [
        # The max of nothing is an error in NumPy.
        E("layout", "zero-size vector: max of nothing", "vec", lambda: [np.zeros(0)], "ValueError"),
        V("layout", "the same array for two inputs", "same", lambda: [np.arange(3.0)] * 2,
          lambda a, b: [a * b + a, b]),
    ]
    return out


def _overflow_cases():
    return [
        V("overflow", f"sum, length, last element and tail of {BIG} elements (stride 0)", "big",
          lambda: [np.broadcast_to(np.ones(1), (BIG,))],
          lambda a: [np.float64(BIG), np.int64(BIG), np.float64(1.0), np.ones(2)]),
        V("overflow", "an element in row 2**31 + 1", "big_rows",
          lambda: [np.broadcast_to(np.arange(4.0), (2**31 + 3, 4))], lambda a: [np.float64(3.0)]),
        E("overflow", "ones((2**32, 2**32)).sum(): 2**64 elements", "square_ones",
          lambda: [2**32], "ShapeError"),
        E("overflow", "ones((n, n)).sum() with n*n just past int64", "square_ones",
          lambda: [3037000500], "ShapeError"),
        E("overflow", "(a * b).sum() over a 2**32 x 2**32 broadcast", "outer_sum",
          lambda: _wide(2**32, 2**32), "ShapeError"),
        E("overflow", "a * b: a 2**32 x 2**32 result", "outer", lambda: _wide(2**32, 2**32),
          "ShapeError"),
        E("overflow", "a * b: an 8 TiB result", "outer", lambda: _wide(2**20, 2**20),
          "MemoryError"),
        E("overflow", "arange(2**62)", "arange", lambda: [2**62], "ShapeError"),
        E("overflow", "arange(-2**62, 2**62): the length overflows", "arange2",
          lambda: [-2**62, 2**62], "ShapeError"),
        E("overflow", "arange(-2**63, 2**63 - 1)", "arange2", lambda: [-2**63, 2**63 - 1],
          "ShapeError"),
        V("overflow", "int64 arithmetic wraps around as in NumPy", "int64_wrap",
          lambda: [np.array([2**62, -2**63, 2**63 - 1, 3])],
          lambda a: [a + a, a - 3 * a, a * a, -a, np.abs(a), a.sum(), a.prod(), a // -1, a % -1]),
        E("overflow", "one_hot with 2**62 classes", "one_hot_n", lambda: [2**62], "ShapeError"),
        E("overflow", "broadcast_to (2**62, 3)", "broadcast_to", lambda: [np.ones(3), 2**62],
          "ShapeError"),
        E("overflow", "broadcast_to (2**61, 3): the returned copy's bytes overflow",
          "broadcast_to", lambda: [np.ones(3), 2**61], "ShapeError"),
        E("overflow", "broadcast_to (2**40, 3): a 24 TiB returned copy", "broadcast_to",
          lambda: [np.ones(3), 2**40], "MemoryError"),
        E("overflow", "concatenate of four 2**62-long bool vectors: the length wraps to 0",
          "concat4", lambda: [_huge_bool(2**62)], "ShapeError"),
        E("overflow", "concatenate of four (2**63 - 1)-long vectors", "concat4",
          lambda: [_huge_bool(2**63 - 1)], "ShapeError"),
        E("overflow", "concatenate of two 2**62-long vectors: 2**63, one past int64", "concat2",
          lambda: [_huge_bool(2**62), np.ones(3)], "ShapeError"),
        V("overflow", "concatenate of two (2**62 - 1)-long vectors: 2**63 - 2 fits (a view)",
          "concat2", lambda: [np.ones(3, bool), np.ones(3)],
          lambda a, b: [np.ones(2, bool), np.ones(1)]),
        E("overflow", "concatenate on axis 1 of two (1, 2**62) matrices", "concat_cols",
          lambda: [np.broadcast_to(np.ones((1, 1), bool), (1, 2**62))], "ShapeError"),
        E("overflow", "reshape of 0 elements to (2**62, 8, -1): the product wraps to 0",
          "reshape3", lambda: [np.zeros(0), 2**62], "ShapeError"),
        E("overflow", "split of a (2**63 - 1)-long vector into lengths 2**62 and 2**62",
          "split_big", lambda: [_huge_bool(2**63 - 1), np.array([2**62, 2**62])], "ShapeError"),
    ]


def _huge_bool(n):
    """A bool vector of length ``n`` in one byte (stride 0)."""
    return np.broadcast_to(np.ones(1, bool), (n,))


def _index_cases():
    out = [E("index", f"gather: index {label}", "gather", lambda idx=idx: [_v3(), np.array(idx)],
             "IndexError")
           for label, idx in [("past the end", [5]), ("negative past the start", [-4]),
                              ("2**62", [2**62]), ("int64 min", [-2**63]),
                              ("one bad among good", [0, 1, 2, 3])]]
    out += [
        V("index", "gather: negative index in range", "gather",
          lambda: [_v3(), np.array([-1, -3])], lambda a, i: [a[i]]),
        V("index", "gather: no indices", "gather", lambda: [_v3(), np.zeros(0, np.int64)],
          lambda a, i: [a[i]]),
        E("index", "gather from an empty vector", "gather", lambda: [np.zeros(0), np.array([0])],
          "IndexError"),
        E("index", "gradient of a gather: index past the end", "gather_grad",
          lambda: [_v3(), np.array([3])], "IndexError"),
        E("index", "rows and columns: column past the end", "rows_cols",
          lambda: [np.zeros((2, 3)), np.array([1]), np.array([3])], "IndexError"),
        E("index", "rows and columns: lengths differ", "rows_cols",
          lambda: [np.zeros((2, 3)), np.array([1, 0]), np.array([1, 2, 0])], "ShapeError"),
        E("index", "constant index past the end", "const_index", lambda: [_v3()], "IndexError"),
        E("index", "symbolic index past the end", "sym_index", lambda: [_v3(), 3], "IndexError"),
        E("index", "symbolic index before the start", "sym_index", lambda: [_v3(), -4],
          "IndexError"),
        V("index", "slice start past the end", "sym_slice", lambda: [_v3(), 2**62],
          lambda a, k: [a[3:]]),
        V("index", "slice start far before the start", "sym_slice", lambda: [_v3(), -2**62],
          lambda a, k: [a.copy()]),
        E("index", "slice step zero", "sym_step", lambda: [_v3(), 0], "ValueError"),
        V("index", "slice step int64 min", "sym_step", lambda: [_v3(), -2**63],
          lambda a, k: [a[::-2**63]]),
    ]
    for label, bad in [("label past the end", 3), ("negative label", -1)]:
        out.append(E("index", f"cross_entropy (3 classes): {label}", "cross_entropy",
                     lambda bad=bad: [np.zeros((2, 3)), np.array([0, bad])], "IndexError"))
        out.append(E("index", f"one_hot (4 classes): {label}", "one_hot",
                     lambda bad=bad: [np.array([0, bad + (bad > 0)])], "IndexError"))
    out += [
        E("index", "one_hot with a negative number of classes", "one_hot_n", lambda: [-1],
          "ShapeError"),
        E("index", "a failed call leaves shared variables unchanged", "update",
          lambda: [_v3(), np.array([7])], "IndexError"),
    ]
    return out


def _argument_cases():
    def two():
        return [_v3(), np.arange(2)]

    def total(*_):
        return [np.float64(3.0 + 1.0)]

    return [
        E("args", "one argument too many", "two", lambda: two() + [1.0], "InputError"),
        E("args", "one argument too few", "two", lambda: two()[:1], "InputError",
          names_input="i"),
        E("args", "no arguments", "two", lambda: [], "InputError", names_input="x"),
        E("args", "unknown keyword", "two", two, "InputError", kwargs={"z": 1.0}),
        E("args", "an input by position and by name", "two", two, "InputError",
          kwargs={"x": _v3()}, names_input="x"),
        V("args", "every input by name", "two", lambda: [], total,
          kwargs={"i": np.arange(2), "x": _v3()}),
        V("args", "mixed position and name", "two", lambda: [_v3()], total,
          kwargs={"i": np.arange(2)}),
    ]


def cases():
    """Every case, built fresh (argument factories run in the child)."""
    return (_dtype_cases() + _shape_cases() + _nan_cases() + _layout_cases() + _overflow_cases()
            + _index_cases() + _argument_cases())


# --------------------------------------------------------------------------- the parent

TIMEOUT_S = 600


def child_env(**extra):
    """This environment, with the symgrad this process imported first on the path."""
    import symgrad

    parent = os.path.dirname(os.path.dirname(os.path.abspath(symgrad.__file__)))
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [parent, env.get("PYTHONPATH")]))
    return env


def run_matrix(mode, ids, env=None, cwd=None):
    """{case id: result} for ``ids`` in ``mode``, from child processes.

    A child that dies in a case marks that case "crashed" (with its exit
    status and stderr) and a new child goes on with the cases after it.
    ``cwd`` should not be the source tree (``python script`` puts the
    script's folder first on the path, not the working directory, but the
    children of children may not).
    """
    import subprocess

    results, todo = {}, list(ids)
    while todo:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), mode, json.dumps(todo)],
                              capture_output=True, text=True, timeout=TIMEOUT_S,
                              env=env or child_env(), cwd=cwd)
        begun = None
        for line in proc.stdout.splitlines():
            if line.startswith("begin "):
                begun = line[6:]
            elif line.startswith("end "):
                res = json.loads(line[4:])
                results[res["id"]] = res
                begun = None
        if begun is not None:
            results[begun] = {"id": begun, "mode": mode, "outcome": "crashed", "ok": False,
                              "type": None, "detail": f"the interpreter died (exit status "
                                                      f"{proc.returncode}): {proc.stderr[-4000:]}"}
        elif proc.returncode != 0 or any(i not in results for i in todo):
            raise RuntimeError(f"the {mode!r} child failed outside any case (exit status "
                               f"{proc.returncode}):\n{proc.stderr[-4000:]}")
        todo = [i for i in todo if i not in results]
    return results


# --------------------------------------------------------------------------- the child

def _exc_class(name):
    import builtins

    import symgrad
    return getattr(symgrad, name, None) or getattr(builtins, name)


def run_case(sg, case, mode, cache):
    """The case's result as a dict: outcome, type, message, values, ok, detail."""
    f, shared = _build(sg, case.fn, mode, cache)
    before = [s.get_value() for s in shared]
    args = case.args()
    res = {"id": case.id, "mode": mode}
    try:
        got = f(*args, **case.kwargs)
    except Exception as e:  # noqa: BLE001 - every error is a result here
        res.update(outcome="raised", type=_public_type(e), message=str(e)[:600])
        ok, detail = (True, "") if case.expect is ANY else _check_error(case, e)
        if ok and any(not np.array_equal(a, s.get_value()) for a, s in zip(before, shared)):
            ok, detail = False, "a failed call changed a shared variable"
        res.update(ok=ok, detail=detail)
        return res
    got = _as_list(got)
    res.update(outcome="returned", type=None, values=[np.asarray(g).tolist() for g in got],
               dtypes=[np.asarray(g).dtype.str for g in got])
    if case.expect is ANY:
        ok, detail = True, ""
    elif isinstance(case.expect, str):
        ok, detail = False, f"expected {case.expect}, got a result {_short(got)}"
    else:
        with np.errstate(all="ignore"):
            want = case.expect(*args, *case.kwargs.values())
        ok, detail = _same(got, _as_list(want))
    if ok:
        ok, detail = _owned(got, args + list(case.kwargs.values()))
    res.update(ok=ok, detail=detail)
    return res


def _public_type(e):
    """The first class of ``e``'s that symgrad or Python defines (NumPy's MemoryError subclass
    is a MemoryError)."""
    for cls in type(e).__mro__:
        if cls.__module__ in ("symgrad.errors", "builtins"):
            return cls.__name__
    return type(e).__name__


def _owned(got, args):
    """Returned arrays belong to the caller (see sg.function): fresh, writeable, not an input."""
    for k, g in enumerate(got):
        if not isinstance(g, np.ndarray):
            return False, f"output {k} is a {type(g).__name__}, not an ndarray"
        if not g.flags.writeable:
            return False, f"output {k} is read-only"
        for a in args:
            if isinstance(a, np.ndarray) and np.shares_memory(g, a):
                return False, f"output {k} shares memory with an input"
        for j, h in enumerate(got[:k]):
            if np.shares_memory(g, h):
                return False, f"outputs {j} and {k} share memory"
    return True, ""


def _check_error(case, e):
    if not isinstance(case.expect, str):
        return False, f"expected a result, got {type(e).__name__}: {e}"
    cls = _exc_class(case.expect)
    if not isinstance(e, cls):
        return False, f"expected {case.expect}, got {type(e).__name__}: {e}"
    msg = str(e)
    if case.names_input and f"'{case.names_input}'" not in msg:
        return False, f"the message does not name input {case.names_input!r}: {msg}"
    if not msg.strip():
        return False, "the error has no message"
    return True, ""


def _same(got, want):
    if len(got) != len(want):
        return False, f"{len(got)} outputs, expected {len(want)}"
    for k, (g, w) in enumerate(zip(got, want)):
        if w is ANY:
            continue
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape:
            return False, f"output {k}: shape {g.shape}, expected {w.shape}"
        if g.dtype.kind == "f" or w.dtype.kind == "f":
            close = np.allclose(g, w, rtol=1e-12, atol=0, equal_nan=True) and np.array_equal(
                np.isinf(g), np.isinf(w))
        else:
            close = np.array_equal(g, w)
        if not close:
            return False, f"output {k}: {_short(g)}, expected {_short(w)}"
    return True, ""


def _short(v):
    return repr(v)[:300]


def main(argv):
    import symgrad as sg

    mode = argv[0]
    wanted = set(json.loads(argv[1])) if len(argv) > 1 else None
    cache = {}
    crash = os.environ.get("BAD_INPUTS_CRASH")  # the harness's own test: die in this case
    for case in cases():
        if wanted is not None and case.id not in wanted:
            continue
        print("begin " + case.id, flush=True)
        if case.id == crash:
            os.abort()
        try:
            res = run_case(sg, case, mode, cache)
        except Exception as e:  # noqa: BLE001 - a case that cannot even be built
            res = {"id": case.id, "mode": mode, "outcome": "harness", "type": type(e).__name__,
                   "message": str(e)[:600], "ok": False, "detail": f"harness error: {e!r}"}
        print("end " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
