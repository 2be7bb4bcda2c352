"""Ctrl-C during a compiled call: a loop stops at its next step, the call changes nothing.

Each scenario runs in a process of its own (the test sends it SIGINT; pytest's workers
handle signals themselves), importing the symgrad under test.
"""

import os
import subprocess
import sys
import textwrap

import pytest

import symgrad as sg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(sg.__file__)))

PRELUDE = """
import os, signal, threading, time
import numpy as np
import symgrad as sg

# Python's own handler, whatever this process inherited: a shell that starts a command in
# the background (CI's, or `cmd &`) starts it with SIGINT ignored
signal.signal(signal.SIGINT, signal.default_int_handler)

n = sg.scalar("n", dtype="int64")
W = sg.shared(np.eye(4) * 0.5, name="W")
hs, _ = sg.scan(lambda h: sg.tanh(h @ W + 0.1), outputs_info=sg.zeros((4,)), n_steps=n)
f = sg.function([n], hs[-1], updates=[(W, W * 1.0001)])
f(10)
before = W.get_value()

def interrupt_after(seconds):
    threading.Timer(seconds, lambda: os.kill(os.getpid(), signal.SIGINT)).start()


def watchdog():
    # a call the signal did not stop: say what the process saw, then end it (not a hang)
    print("watchdog: handler", signal.getsignal(signal.SIGINT),
          "blocked", signal.pthread_sigmask(signal.SIG_BLOCK, []), flush=True)
    os._exit(3)


_dog = threading.Timer(30, watchdog)
_dog.daemon = True
_dog.start()
"""


def _run(code):
    # the symgrad this test imported (an installed copy, or the source tree with its built
    # extension), not whatever the working directory holds
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120, env=env,
                          cwd=os.path.dirname(os.path.abspath(__file__)))
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    return proc.stdout


def test_ctrl_c_stops_a_long_loop_and_changes_nothing():
    out = _run("""
        interrupt_after(0.5)
        t0 = time.perf_counter()
        try:
            f(10 ** 12)  # hours of steps
            print("finished")
        except KeyboardInterrupt:
            print("interrupted after", time.perf_counter() - t0)
        print("unchanged", np.array_equal(W.get_value(), before))
        print("again", f(3).shape, not np.array_equal(W.get_value(), before))
    """)
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert "interrupted" in lines, out
    assert float(lines["interrupted"].split()[-1]) < 10
    assert lines["unchanged"] == "True"
    assert lines["again"] == "(4,) True"  # the next call runs and updates as usual


def test_a_handler_of_the_users_own_is_left_to_itself():
    # a program that catches SIGINT to stop after the current step keeps that step whole
    out = _run("""
        seen = []
        signal.signal(signal.SIGINT, lambda *a: seen.append(time.perf_counter()))
        interrupt_after(0.05)
        t0 = time.perf_counter()
        h = f(5_000_000)
        t1 = time.perf_counter()
        # (interrupted, the call would end soon after the signal, at 0.05 s; it takes ~1 s)
        print("seen", len(seen), "whole", t1 - t0 > 0.2,
              "changed", not np.array_equal(W.get_value(), before))
    """)
    assert out.split() == ["seen", "1", "whole", "True", "changed", "True"]


def test_only_kernels_with_loops_watch_for_it():
    x = sg.vector("x")
    assert not sg.function([x], x + 1).kernel.kernel.interruptible
    n = sg.scalar("n", dtype="int64")
    hs, _ = sg.scan(lambda h: h + 1.0, outputs_info=sg.zeros(()), n_steps=n)
    assert sg.function([n], hs).kernel.kernel.interruptible


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX signals")
def test_an_ignored_sigint_stays_ignored():
    out = _run("""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        interrupt_after(0.05)
        f(1_000_000)
        print("done", not np.array_equal(W.get_value(), before))
    """)
    assert out.split() == ["done", "True"]
