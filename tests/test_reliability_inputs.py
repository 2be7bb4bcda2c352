"""The bad-input matrix (tests/bad_inputs.py), each case in a child process, modes "c" and "py".

One child per mode runs every case and reports each as a JSON line; if the
child dies, the case it was in is recorded as a crash and a new child goes on
with the rest. A case passes when both modes did what it expects (an error of
the named type whose message names the input, or the NumPy result in arrays
the caller owns) and did the same thing: the same error type, or equal values.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import bad_inputs  # tests/ is on sys.path (conftest.py)
from bad_inputs import child_env, run_matrix

SCRIPT = os.path.abspath(bad_inputs.__file__)
CASES = bad_inputs.cases()
IDS = [c.id for c in CASES]
MODES = ("c", "py")


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("bad_inputs")  # not the source tree: see conftest.py
    with ThreadPoolExecutor(len(MODES)) as pool:
        runs = {m: pool.submit(run_matrix, m, IDS, None, cwd) for m in MODES}
        return {m: r.result() for m, r in runs.items()}


@pytest.mark.parametrize("case_id", IDS)
def test_bad_input(matrix, case_id):
    c, py = matrix["c"][case_id], matrix["py"][case_id]
    failures = [f"mode {r['mode']!r}: {r['detail']}" for r in (c, py) if not r["ok"]]
    assert not failures, "\n".join(failures)
    assert (c["outcome"], c["type"]) == (py["outcome"], py["type"]), \
        f"the modes differ: c {c['outcome']} {c['type']} ({c.get('message')}), " \
        f"py {py['outcome']} {py['type']} ({py.get('message')})"
    if c["outcome"] == "returned":
        assert c["dtypes"] == py["dtypes"]
        for k, (a, b) in enumerate(zip(c["values"], py["values"])):
            assert _close(a, b), f"output {k}: c gives {a}, py gives {b}"


def _close(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-12, atol=0, equal_nan=True))


def test_errors_raised_while_running_name_the_op_and_line(matrix):
    """An error from a running function names the op and the user's file:line."""
    runtime = {"IndexError", "ShapeError"}
    for mode in MODES:
        for r in matrix[mode].values():
            if r["outcome"] == "raised" and r["type"] in runtime:
                assert f"{os.path.basename(SCRIPT)}:" in r["message"], (mode, r["id"], r["message"])


def test_the_matrix_covers_every_kind_the_issue_names():
    kinds = {c.kind for c in CASES}
    assert kinds >= {"dtype", "ndim", "shape", "nan", "layout", "overflow", "index", "args"}
    assert len(CASES) >= 120 and len(set(IDS)) == len(IDS)


def test_a_crash_is_reported_as_its_case_and_the_rest_still_run(tmp_path):
    ids = IDS[:3]
    results = run_matrix("py", ids, env=child_env(BAD_INPUTS_CRASH=ids[1]), cwd=tmp_path)
    assert results[ids[1]]["outcome"] == "crashed" and not results[ids[1]]["ok"]
    assert "exit status" in results[ids[1]]["detail"]
    assert results[ids[0]]["ok"] and results[ids[2]]["ok"]



# --- in-process checks of the guards behind some of the cases -------------------------

def test_byte_swapped_shared_values_are_stored_natively():
    import symgrad as sg

    swapped = np.arange(3.0).astype(">f8")
    W = sg.shared(swapped, name="W")
    assert W.get_value(borrow=True).dtype.isnative
    x = sg.vector("x")
    f = sg.function([x], x + W)
    np.testing.assert_array_equal(f(np.zeros(3)), [0.0, 1.0, 2.0])
    W.set_value(swapped[::-1], borrow=True)
    assert W.get_value(borrow=True).dtype.isnative
    np.testing.assert_array_equal(f(np.zeros(3)), [2.0, 1.0, 0.0])


def test_the_runtime_refuses_byte_swapped_arrays():
    import symgrad as sg

    x = sg.vector("x")
    f = sg.function([x], x * x)
    with pytest.raises(TypeError, match="byte-swapped"):
        f._kernel.kernel([np.arange(3.0).astype(">f8")])


def test_mode_c_refuses_arrays_of_more_than_maxdim_axes():
    import symgrad as sg
    from symgrad import _runtime
    from symgrad.codegen import kernel

    assert kernel.MAXDIM == _runtime.MAXDIM
    x = sg.tensor("x", shape=(None,) * kernel.MAXDIM)
    wide = sg.expand_dims(x, 0)  # one axis more than a descriptor holds
    with pytest.raises(ValueError, match="at most 16 dimensions"):
        sg.function([x], (wide * wide).sum(axis=0))
    out = sg.function([x], (wide * wide).sum(axis=0), mode="py")(np.ones((2,) * kernel.MAXDIM))
    assert out.shape == (2,) * kernel.MAXDIM
