"""Fuzzing over the whole op registry: random graphs, compiled vs reference vs finite differences.

Graphs chain case rows of ``tests/cases/`` (see ``tests/fuzz_graphs.py``):

- ``test_every_op_in_a_random_graph``: every op of ``OP_REGISTRY``, shuffled
  into graphs of six, a quarter of the steps float32; the compiled kernel
  (values and the gradient graph) against the NumPy reference, and the
  reference gradient of a float64 copy against finite differences.
- ``test_random_graphs``: hypothesis draws the ops, their rows, float32 steps,
  broadcast factors of random shapes, random (zero-size included) shapes for
  elementwise rows, and the values.

CI runs a bounded, derandomized number of examples. The long profile, by hand::

    SYMGRAD_FUZZ=long python -m pytest -q tests/test_reliability_fuzz.py   # 400 examples
    SYMGRAD_FUZZ=long SYMGRAD_FUZZ_EXAMPLES=5000 python -m pytest -q tests/test_reliability_fuzz.py
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import symgrad as sg

import fuzz_graphs as fg  # tests/ is on sys.path (conftest.py)

LONG = os.environ.get("SYMGRAD_FUZZ") == "long"
EXAMPLES = int(os.environ.get("SYMGRAD_FUZZ_EXAMPLES", 400 if LONG else 8))
FUZZ = settings(max_examples=EXAMPLES, derandomize=not LONG, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
GROUPS = fg.registry_groups()
# a random graph need not read every input it is given
pytestmark = pytest.mark.filterwarnings("ignore::symgrad.UnusedInputWarning")
# A subset of the groups, "0,3,6" (the sanitizer run uses it); all of them by default.
RUN_GROUPS = [int(k) for k in os.environ.get("SYMGRAD_FUZZ_GROUPS", "").split(",") if k] or list(
    range(len(GROUPS)))


def test_the_groups_cover_the_registry():
    ops = [op for g in GROUPS for op in g]
    assert sorted(ops) == sorted(sg.graph.OP_REGISTRY)
    assert all(op in fg.BY_OP for op in ops), "an op has no case row to build it from"


# Every op already has its compiled values and gradient checked in the default run
# (tests/test_registry.py); composing all of them takes minutes, so it is a slow test.
@pytest.mark.slow
@pytest.mark.parametrize("k", RUN_GROUPS, ids=lambda k: "+".join(GROUPS[k]))
def test_every_op_in_a_random_graph(k):
    plan = fg.group_plan(GROUPS[k], seed=k)
    assert sorted(plan.ops) == sorted(GROUPS[k])
    fg.check(plan, fd=False)
    fd = fg.group_plan(GROUPS[k], seed=k, fd=True)
    assert fd.all_float64
    fg.check_fd(fd)


@st.composite
def plans(draw, max_ops=4):
    ops = draw(st.lists(st.sampled_from(sorted(fg.BY_OP)), min_size=1, max_size=max_ops))
    chosen = [fg.BY_OP[op][draw(st.integers(0, len(fg.BY_OP[op]) - 1))] for op in ops]
    f32 = draw(st.sets(st.integers(0, len(chosen) - 1)))
    shapes = {}
    for k, case in enumerate(chosen):
        if fg.shape_generic(case) and draw(st.booleans()):
            shapes[k] = draw(hnp.mutually_broadcastable_shapes(
                num_shapes=len(case.args), min_dims=0, max_dims=3, min_side=0,
                max_side=4)).input_shapes
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return fg.make_plan(rng, chosen, float32=f32, shapes=shapes,
                        broadcast=draw(st.sampled_from([0.0, 0.3, 0.8])))


@pytest.mark.slow  # fuzzing: random graphs compiled
@FUZZ
@given(plans())
def test_random_graphs(plan):
    fg.check(plan, fd=True)


# --------------------------------------------------------------------------- huge lengths

HUGE_SCRIPT = """
import sys
import numpy as np
import symgrad as sg
mode = sys.argv[1]
v = sg.vector("v", dtype="bool")
n = sg.scalar("n", dtype="int64")
try:
    a = sg.broadcast_to(v, (2**62,))
    sg.concatenate([a, a, a, a])
except sg.ShapeError as e:
    print("static:", e)
a = sg.broadcast_to(v, (n,))
f = sg.function([v, n], sg.concatenate([a, a, a, a])[:3], mode=mode)
for length in (2**62, 2**63 - 1, 2**61 + 1):
    try:
        f(np.ones(1, bool), length)
    except (sg.ShapeError, MemoryError) as e:
        print("call:", type(e).__name__, e)
print("done")
"""


@pytest.mark.parametrize("mode", ["c", "py"])
def test_a_concatenate_whose_length_overflows_is_a_shape_error(tmp_path, mode):
    """Issue #11 item 7: four 2**62-long vectors joined wrapped the length to 0 and wrote
    out of bounds (a segfault). Built with static lengths: a ShapeError at the user's line;
    with lengths known only when called: a ShapeError naming the op and that line."""
    import subprocess
    import sys

    script = tmp_path / "huge.py"
    script.write_text(HUGE_SCRIPT)
    out = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, f"exit status {out.returncode}: {out.stderr[-2000:]}"
    lines = out.stdout.splitlines()
    assert lines[-1] == "done"
    assert lines[0].startswith("static: concatenate: the lengths (4611686018427387904, ") \
        and lines[0].endswith(f"(at {script}:10)")
    if mode == "c":  # mode "py" makes broadcast_to a real array: a MemoryError there
        calls = [ln for ln in lines if ln.startswith("call:")]
        assert len(calls) == 3
        for ln in calls:
            assert ln.startswith(f"call: ShapeError concatenate{{axis=0}} at {script}:14: "
                                 f"the lengths (")
            assert ln.endswith("on axis 0 add up to more than 2**63 - 1: no array is that long")


@pytest.mark.slow
@pytest.mark.parametrize("length", fg.HUGE)
def test_every_case_row_meets_huge_lengths(length):
    """Every case row, its arrays empty with a first axis of ``length`` (or as long as
    NumPy allows): each mode, in a child process, returns the empty result or raises a
    clean error, and both modes agree (see ``fuzz_graphs.huge_args``)."""
    ids = [c.id for c in fg.CASES if c.id not in fg.HUGE_SLOW_IN_NUMPY]
    got = {m: fg.run_huge(m, ids, length) for m in ("c", "py")}
    bad = [f"{i}: c {got['c'][i]}, py {got['py'][i]}" for i in ids
           if not fg.huge_results_agree(got["c"][i], got["py"][i])]
    assert not bad, "\n".join(bad)
