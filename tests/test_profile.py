"""profile=True: per-node times from the compiled kernel (mode "c") and the reference (mode "py")."""

import numpy as np
import pytest

import symgrad as sg


@pytest.mark.parametrize("mode", ["c", "py"])
def test_profile_report_lists_nodes_with_their_lines(mode):
    x = sg.matrix("x")
    W = sg.shared(np.ones((6, 4)), name="W")
    h = sg.tanh(x @ W)  # the line every row below names
    line = h.owner.trace.lineno
    f = sg.function([x], h.sum(), mode=mode, profile=True)
    for _ in range(5):
        f(np.ones((3, 6)))
    report = f.profile_report()
    rows = report.splitlines()
    assert rows[0].split()[:2] == ["node", "calls"]
    assert any(r.startswith("matmul") and f"test_profile.py:{line}" in r and " 5 " in r
               for r in rows), report
    assert rows[-1].split()[0] == "total"
    shares = [float(r.split()[-1].rstrip("%")) for r in rows[1:-1]]
    assert abs(sum(shares) - 100.0) < 1.0


def test_counters_start_from_zero_for_each_function():
    x = sg.vector("x")
    make = lambda: sg.function([x], sg.exp(x).sum(), profile=True)  # noqa: E731
    f = make()
    for _ in range(50):
        f(np.ones(100_000))
    g = make()  # the same library: its counters already hold f's time
    g(np.ones(10))
    t_f = sum(float(r.split()[-2]) for r in f.profile_report().splitlines()[1:-1])
    t_g = sum(float(r.split()[-2]) for r in g.profile_report().splitlines()[1:-1])
    assert t_g < t_f / 10


def test_profile_report_needs_profile():
    x = sg.scalar("x")
    with pytest.raises(RuntimeError, match="profile=True"):
        sg.function([x], x + 1.0).profile_report()
