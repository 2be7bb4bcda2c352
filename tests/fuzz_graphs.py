"""Random graphs over the whole op registry, for tests/test_reliability_fuzz.py.

A graph is a chain of steps, each one case row of ``tests/cases/`` (so every
registered op, with inputs of the kinds it accepts). Each step's float inputs
are fresh leaves, scaled by ``1 + 0.05 * sin(the cost so far)`` and, now and
then, by a factor of another leaf of a random broadcastable shape: values flow
from every op into the next through broadcasts, and the gradient of the whole
graph crosses every op. Inputs near a kink or pole of their op (``away_from``)
and integer inputs (indices, labels, lengths) stay as the case makes them.

A :class:`Plan` holds every random choice and value, so the same graph can be
built again from other symbolic leaves (``verify_grad`` needs that).
"""

import copy
import importlib
import pkgutil

import numpy as np

import symgrad as sg

import cases as _cases

MIX = 0.05  # how far one step's inputs move with the cost so far


def all_cases():
    found = []
    for mod in pkgutil.iter_modules(_cases.__path__):
        found.extend(importlib.import_module(f"{_cases.__name__}.{mod.name}").CASES)
    return found


CASES = all_cases()
BY_OP = {}
for _c in CASES:
    BY_OP.setdefault(_c.op, []).append(_c)


def _retyped(case, src, dst):
    if not any(a.dtype == src for a in case.args):
        return None
    c = copy.copy(case)
    c.args = [copy.copy(a) for a in case.args]
    for a in c.args:
        if a.dtype == src:
            a.dtype = dst
    return c


def as_float32(case):
    """The case with its float64 arguments made float32, or None when it has none."""
    return _retyped(case, "float64", "float32")


def float64_only(case):
    """The case with float32 arguments made float64; None if its graph still holds a
    float32 value (an explicit cast): finite differences need float64 throughout."""
    c = _retyped(case, "float32", "float64") or case
    xs = [sg.tensor(f"a{i}", a.dtype, a.shape if a.static else (None,) * len(a.shape))
          for i, a in enumerate(c.args)]
    nodes = sg.graph.toposort([c.build(*xs)])
    if any(o.dtype == "float32" for n in nodes for o in n.outputs):
        return None
    return c


class Leaf:
    """One input of the graph: its value, static shape or None, and whether it is differentiated."""

    def __init__(self, value, static, wrt):
        self.value, self.static, self.wrt = value, static, wrt

    def symbol(self, i):
        shape = self.value.shape if self.static else (None,) * self.value.ndim
        return sg.tensor(f"l{i}", self.value.dtype.name, shape)


class Step:
    def __init__(self, case, leaves, mixed, factors, scale, shift):
        self.case = case
        self.leaves = leaves      # leaf index per case argument
        self.mixed = mixed        # per argument: scaled by the cost so far
        self.factors = factors    # per argument: leaf index of a broadcast factor, or None
        self.scale, self.shift = scale, shift  # of this step's cost term


class Plan:
    """Every choice of one random graph; ``build`` turns it into symbolic values."""

    def __init__(self, steps, leaves):
        self.steps, self.leaves = steps, leaves

    @property
    def ops(self):
        return [s.case.op for s in self.steps]

    def describe(self):
        return " -> ".join(s.case.id + ("/f32" if any(a.dtype == "float32" for a in s.case.args)
                                        else "") for s in self.steps)

    def build(self, syms):
        """(cost, other outputs) from one symbolic value per leaf."""
        cost, others = None, []
        for step in self.steps:
            args = []
            for a, li, mixed, fi in zip(step.case.args, step.leaves, step.mixed, step.factors):
                x = syms[li]
                if mixed and cost is not None:
                    x = x * (1 + MIX * sg.sin(cost)).astype(a.dtype)
                if fi is not None:
                    x = x * (1 + MIX * sg.tanh(syms[fi]))
                args.append(x)
            out = step.case.build(*args)
            if out.dtype.startswith("float") and step.case.grad:
                term = sg.sin(out.astype("float64") * step.scale + step.shift).sum()
                cost = term if cost is None else cost + term
            else:
                others.append(out)
        if cost is None:
            cost = sg.constant(0.0)
        return cost, others

    def symbols(self):
        return [leaf.symbol(i) for i, leaf in enumerate(self.leaves)]

    def values(self):
        return [leaf.value for leaf in self.leaves]

    @property
    def all_float64(self):
        return all(leaf.value.dtype != np.float32 for leaf in self.leaves)


def broadcast_shape(rng, shape):
    """A random shape that broadcasts to ``shape`` without growing it."""
    keep = int(rng.integers(0, len(shape) + 1))
    tail = shape[len(shape) - keep:]
    return tuple(d if rng.random() < 0.5 else 1 for d in tail)


def shape_generic(case):
    """Whether the case is an elementwise row whose arguments may take any broadcastable shapes."""
    from symgrad.ops.elemwise import ELEMWISE

    return (case.op in ELEMWISE and case.id.startswith(case.op + "[")
            and all(a.value is None for a in case.args))


def with_shapes(case, shapes):
    """The case with its arguments given ``shapes`` (see :func:`shape_generic`)."""
    c = copy.copy(case)
    c.args = [copy.copy(a) for a in case.args]
    for a, shape in zip(c.args, shapes):
        a.shape = tuple(shape)
    return c


def make_plan(rng, cases, float32=(), broadcast=0.3, shapes=None):
    """A plan chaining ``cases`` in order.

    ``float32`` holds the step indices made float32; ``shapes`` maps a step
    index to argument shapes replacing the case's (for shape-generic cases).
    """
    steps, leaves = [], []
    for k, case in enumerate(cases):
        if k in float32:
            case = as_float32(case) or case
        if shapes and k in shapes:
            case = with_shapes(case, shapes[k])
        idx, mixed, factors = [], [], []
        for a in case.args:
            value = a.make(rng)
            leaves.append(Leaf(value, a.static, a.is_float and a.grad))
            idx.append(len(leaves) - 1)
            free = a.is_float and a.away_from is None and a.value is None and a.grad
            mixed.append(free)
            fi = None
            if free and rng.random() < broadcast:
                shape = broadcast_shape(rng, value.shape)
                f = rng.uniform(-1, 1, size=shape).astype(value.dtype)
                leaves.append(Leaf(f, a.static, True))
                fi = len(leaves) - 1
            factors.append(fi)
        steps.append(Step(case, idx, mixed, factors, float(rng.uniform(0.5, 1.5)),
                          float(rng.uniform(-1, 1))))
    return Plan(steps, leaves)


def check(plan, fd=True, rng=None):
    """Compiled against the reference, values and gradients; the reference against
    finite differences (float64 plans). Raises AssertionError on a mismatch."""
    syms = plan.symbols()
    cost, others = plan.build(syms)
    wrt = [s for s, leaf in zip(syms, plan.leaves) if leaf.wrt]
    grads = sg.grad(cost, wrt, disconnected="ignore") if wrt else []
    outs = [cost] + others + list(grads)
    vals = plan.values()
    got = sg.function(syms, outs, mode="c")(*vals)
    want = sg.function(syms, outs, mode="py")(*vals)
    f32 = not plan.all_float64
    for k, (g, w) in enumerate(zip(got, want)):
        where = f"output {k} of {len(outs)} ({plan.describe()})"
        assert g.dtype == w.dtype and g.shape == w.shape, \
            f"{where}: {g.dtype}{g.shape} vs {w.dtype}{w.shape}"
        if g.dtype.kind == "f":
            tol = 2e-3 if f32 else 1e-7
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol, equal_nan=True, err_msg=where)
        else:
            np.testing.assert_array_equal(g, w, err_msg=where)
    if fd and plan.all_float64 and wrt:
        check_fd(plan, rng)


def check_fd(plan, rng=None):
    """The reference gradient of a float64 plan against central finite differences."""
    rng = rng or np.random.default_rng(0)
    wrt = [i for i, leaf in enumerate(plan.leaves) if leaf.wrt]
    if not wrt:
        return
    fixed = [sg.constant(leaf.value) for leaf in plan.leaves]

    def fun(*free):
        syms = list(fixed)
        for i, f in zip(wrt, free):
            syms[i] = f
        return plan.build(syms)[0]

    # a case that needs looser finite differences (a cast through float32 rounds every
    # difference of eps = 1e-6 away) gives its own, and the plan takes the loosest
    tol = {"abs_tol": 1e-4, "rel_tol": 1e-4}
    for step in plan.steps:
        for key, value in (step.case.grad_tol or {}).items():
            tol[key] = max(tol.get(key, value), value)
    sg.verify_grad(fun, [plan.leaves[i].value for i in wrt], n_tests=1, rng=rng, mode="py",
                   **tol)


def registry_groups(size=6, seed=2024):
    """Every registered op exactly once, shuffled into groups of about ``size``."""
    ops = sorted(sg.graph.OP_REGISTRY)
    rng = np.random.default_rng(seed)
    rng.shuffle(ops)
    return [ops[i:i + size] for i in range(0, len(ops), size)]


def group_plan(ops, seed, fd=False):
    """A plan over one case of each op in ``ops`` (a fixed choice for ``seed``).

    About a quarter of the steps are made float32; with ``fd``, instead, every
    step is float64 and steps that cannot be are left out (for finite differences).
    """
    rng = np.random.default_rng(seed)
    chosen = [BY_OP[op][int(rng.integers(len(BY_OP[op])))] for op in ops]
    f32 = {k for k in range(len(chosen)) if rng.random() < 0.25}
    if fd:
        chosen = [c for c in map(float64_only, chosen) if c is not None]
        f32 = ()
    return make_plan(rng, chosen, float32=f32)


# --------------------------------------------------------------------------- huge lengths
#
# Every case row again, its array arguments empty but with a first axis as long
# as NumPy lets an array be (``HUGE``: lengths near 2**62 and 2**63 - 1 whose
# sums and products overflow int64). Each op must raise an error or return the
# empty result, the same in both modes, quickly: never wrap a size around
# (issue #11: a concatenate of four 2**62-long vectors wrote out of bounds),
# never loop over a huge length of empty rows. Run in a child per mode (see
# ``run_huge``), so a crash fails the test instead of killing pytest.

HUGE = (2**62, 2**63 - 1)
# Rows NumPy itself (mode "py") runs for as long as the length: a batched matmul
# loops over its 2**59 empty batch entries; a scan over a sequence of 2**62 empty
# entries runs its step 2**62 times, in any mode (a loop's time is its number of steps).
HUGE_SLOW_IN_NUMPY = {"matmul[3d@3d]", "matmul[3d@1d]", "matmul[1d@3d]", "matmul[batch-1]",
                      "matmul[static-3d@1d]", "dot[3d.1d]", "scan[cumsum]", "scan[map]",
                      "scan[go_backwards]"}


def huge_args(case, length):
    """The case's values: integer-fixed and 0-d arguments as the case makes them, arrays
    empty with a first axis of ``length`` (or the most NumPy allows for their dtype)."""
    rng = np.random.default_rng(0)
    vals = []
    for a in case.args:
        if a.value is not None or not a.shape:
            vals.append(a.make(rng))
            continue
        first = min(length, (2**63 - 1) // np.dtype(a.dtype).itemsize)
        shape = (first,) + (0,) * (len(a.shape) - 1) if len(a.shape) > 1 else (0,)
        vals.append(np.empty(shape, dtype=a.dtype))
    return vals


def run_huge_case(case, length, mode):
    """``("returned", shape)`` or ``("raised", error class name)``, as a JSON-able pair."""
    vals = huge_args(case, length)
    syms = [sg.tensor(f"a{i}", str(v.dtype), (None,) * v.ndim) for i, v in enumerate(vals)]
    try:
        f = sg.function(syms, case.build(*syms), mode=mode)
        out = f(*vals)
    except Exception as e:  # noqa: BLE001 - every clean error is a result here
        for cls in type(e).__mro__:  # a NumPy subclass of MemoryError counts as one
            if cls.__module__ in ("symgrad.errors", "builtins"):
                return ["raised", cls.__name__, str(e)[:300]]
    return ["returned", list(np.shape(out)), ""]


def run_huge(mode, ids, length, timeout=120):
    """{case id: result} from a child process in ``mode``. A case the child dies in, or
    spends more than ``timeout`` seconds on (compiling included; the child's own
    watchdog ends it), is ``["crashed", <how>, <stderr tail>]``; a new child goes on
    with the cases after it."""
    import json
    import os
    import subprocess
    import sys

    results, todo = {}, list(ids)
    while todo:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), mode, str(length),
                               str(timeout), json.dumps(todo)], capture_output=True, text=True)
        begun = None
        for line in proc.stdout.splitlines():
            if line.startswith("begin "):
                begun = line[6:]
            elif line.startswith("end "):
                case_id, res = json.loads(line[4:])
                results[case_id] = res
                begun = None
        how = (f"no answer in {timeout} s" if "Timeout (" in proc.stderr
               else f"exit status {proc.returncode}")
        if begun is not None:
            results[begun] = ["crashed", how, proc.stderr[-3000:]]
        elif any(i not in results for i in todo):
            raise RuntimeError(f"the {mode!r} child failed outside any case ({how}): "
                               f"{proc.stderr[-3000:]}")
        todo = [i for i in todo if i not in results]
    return results


TOO_LARGE = {"ShapeError", "MemoryError"}


def huge_results_agree(c, py):
    """Whether mode "c"'s result for a huge-length case agrees with mode "py"'s.

    The same result, or the same error class; a result too large to allocate may be a
    ShapeError in one mode and a MemoryError in the other (mode "py" makes every
    intermediate a NumPy array, and allocates some that mode "c" never needs: then
    mode "c" may also return the empty result where mode "py" found an intermediate
    too large)."""
    if "crashed" in (c[0], py[0]):
        return False
    if c[:2] == py[:2]:
        return True
    if py[0] == "raised" and py[1] in TOO_LARGE:
        return c[0] == "returned" or c[1] in TOO_LARGE
    return False


def _huge_main(argv):
    import json

    import faulthandler

    mode, length, timeout, wanted = argv[0], int(argv[1]), float(argv[2]), set(json.loads(argv[3]))
    for case in CASES:
        if case.id in wanted:
            print("begin " + case.id, flush=True)
            # A watchdog thread that needs no GIL: it ends a case hung inside a kernel too.
            faulthandler.dump_traceback_later(timeout, exit=True)
            res = run_huge_case(case, length, mode)
            faulthandler.cancel_dump_traceback_later()
            print("end " + json.dumps([case.id, res]), flush=True)


if __name__ == "__main__":
    import sys

    _huge_main(sys.argv[1:])
