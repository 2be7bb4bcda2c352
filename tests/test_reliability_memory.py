"""Long runs do not leak: resident memory stays flat and reference counts balance.

A small MLP trained with Adam (parameters and optimizer state replaced by
fresh arrays on every call) runs 20,000 steps (100,000 in the slow run, a soak)
in a fresh interpreter; RSS is sampled from ``/proc/self/statm`` ten times
after a warm-up. A fresh process, because what ran before in the same one
decides what the allocator does: after other tests have fragmented the heap,
malloc extends it once at some call of the soak (by a few hundred KiB here,
by 3.25 MiB once in CI) and it stays flat after -- a one-time growth that says
nothing about the step (measured: +296 KiB in ``[heap]`` between two samples,
then flat for 80,000 calls). Failed calls (a label out of range, an argument of the wrong
dtype) must not leak either, and nothing a call touches may keep a reference
it did not have before.
"""

import gc
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import symgrad as sg

CALLS = int(os.environ.get("SYMGRAD_MEMORY_CALLS", 100_000))
WARMUP = 2_000
# Growth allowed over the whole run, warm-up of arenas and pools included:
# 2 MiB is 20 bytes a call, far less than one leaked array or Python object.
BOUND_MIB = 2.0


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _model(mode="c"):
    rng = np.random.default_rng(0)
    X = sg.matrix("X")
    y = sg.vector("y", dtype="int64")
    with sg.summary_scope():
        hidden = sg.layers.Dense(4, 8, activation=sg.tanh, rng=1, name="h")
        out = sg.layers.Dense(8, 3, rng=2, name="out")
        logits = out(hidden(X))
        sg.summary("accuracy", sg.eq(logits.argmax(axis=1), y).astype("float64").mean())
        step = sg.train_step({"ce": sg.nn.cross_entropy(logits, y).mean(),
                              "l2": 1e-4 * (out.W ** 2).sum()}, [X, y],
                             optimizer=sg.optim.Adam(lr=1e-3), mode=mode)
    x = rng.normal(size=(16, 4))
    labels = rng.integers(0, 3, size=16)
    return step, x, labels


def _shared(step):
    return [v for v in step.function._shared_updated]


def soak(calls):
    """Train ``calls`` steps after a warm-up; what the test asserts, as a dict."""
    step, x, labels = _model()
    for _ in range(WARMUP):
        step(x, labels)
    gc.collect()
    refs = (sys.getrefcount(x), sys.getrefcount(labels))
    objects = len(gc.get_objects())
    start = rss_mib()
    samples = []
    t0 = time.perf_counter()
    for i in range(calls):
        result = step(x, labels)
        if (i + 1) % (calls // 10) == 0:
            samples.append(round(rss_mib() - start, 2))
    seconds = time.perf_counter() - t0
    gc.collect()
    return {"loss": float(result["loss"]), "refs_before": refs,
            "refs_after": (sys.getrefcount(x), sys.getrefcount(labels)),
            "new_objects": len(gc.get_objects()) - objects, "growth": rss_mib() - start,
            "samples": samples, "seconds": seconds}


@pytest.mark.parametrize("calls", [20_000, pytest.param(CALLS, marks=pytest.mark.slow)])
def test_train_steps_keep_rss_flat_and_refcounts_balanced(capsys, calls):
    from bad_inputs import child_env  # tests/ is on sys.path (conftest.py)

    proc = subprocess.run([sys.executable, os.path.abspath(__file__), str(calls)],
                          capture_output=True, text=True, env=child_env(), timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(proc.stdout.splitlines()[-1])
    growth, samples = r["growth"], r["samples"]
    assert np.isfinite(r["loss"]) and r["loss"] < 1.2
    assert r["refs_after"] == r["refs_before"]
    assert r["new_objects"] < 50
    assert growth < BOUND_MIB, f"RSS grew by {growth:.2f} MiB over {calls} calls: {samples}"
    # After the first sample nothing may grow: 0.25 MiB over 18,000 calls is 15 bytes a call
    # (3 over the soak's 90,000), less than any leaked object.
    assert samples[-1] - samples[0] < 0.25, f"RSS kept growing: {samples}"
    with capsys.disabled():
        print(f"\n{calls} train steps in {r['seconds']:.1f} s "
              f"({1e6 * r['seconds'] / calls:.1f} us each); RSS growth {growth:+.2f} MiB, "
              f"samples every {calls // 10} calls (MiB): {samples}")


def test_a_call_keeps_no_reference_to_its_arguments_or_old_state():
    step, x, labels = _model()
    step(x, labels)
    params = _shared(step)
    old = [p.get_value(borrow=True) for p in params]
    before = [sys.getrefcount(v) for v in old]
    args = (sys.getrefcount(x), sys.getrefcount(labels))
    step(x, labels)
    # Each old value lost exactly the reference its shared variable held.
    assert [sys.getrefcount(v) for v in old] == [b - 1 for b in before]
    assert (sys.getrefcount(x), sys.getrefcount(labels)) == args
    for p in params:
        new = p.get_value(borrow=True)
        assert sys.getrefcount(new) == 3  # p._value, `new`, the argument
        assert new.flags.owndata or new.base is not None


def test_returned_arrays_are_referenced_only_by_the_caller():
    x = sg.vector("x")
    W = sg.shared(np.ones(3), name="W")
    f = sg.function([x], [x * 2, (x * W).sum(), x], updates=[(W, W + x)])
    v = np.arange(3.0)
    refs = sys.getrefcount(v)
    outs = f(v)
    assert [sys.getrefcount(o) for o in outs] == [3, 3, 3]  # the list, the loop, the argument
    assert sys.getrefcount(v) == refs
    assert not any(np.shares_memory(o, v) for o in outs)


@pytest.mark.parametrize("mode", ["c", "py"])
def test_failed_calls_do_not_leak(mode):
    step, x, labels = _model(mode)
    bad_labels = labels.copy()
    bad_labels[3] = 7
    bad_x = x.astype(np.float32).astype(np.complex64)

    def fail():
        with pytest.raises(IndexError):
            step(x, bad_labels)
        with pytest.raises(sg.InputError):
            step(bad_x, labels)

    for _ in range(500):
        fail()
    params = [p.get_value() for p in _shared(step)]
    gc.collect()
    refs = (sys.getrefcount(x), sys.getrefcount(bad_labels), sys.getrefcount(bad_x))
    start = rss_mib()
    for _ in range(10_000 if mode == "c" else 2_000):
        fail()
    gc.collect()
    assert rss_mib() - start < 1.0
    assert (sys.getrefcount(x), sys.getrefcount(bad_labels), sys.getrefcount(bad_x)) == refs
    # A failed step changes nothing.
    for before, p in zip(params, _shared(step)):
        np.testing.assert_array_equal(before, p.get_value())


if __name__ == "__main__":  # the soak's child: one line of JSON
    print(json.dumps(soak(int(sys.argv[1]))))
