"""profile=True: per-node times from the compiled kernel (mode "c") and the reference (mode "py")."""

import re

import numpy as np
import pytest

import symgrad as sg


def _table(report):
    """The per-node rows of a profile report: header, rows, the total row."""
    rows = report.split("\n\n")[0].splitlines()
    assert rows[-1].split()[0] == "total", report
    return rows


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
    rows = _table(report)
    assert rows[0].split()[:2] == ["node", "calls"]
    assert any(r.startswith("matmul") and f"test_profile.py:{line}" in r and " 5 " in r
               for r in rows), report
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
    t_f = sum(float(r.split()[-2]) for r in _table(f.profile_report())[1:-1])
    t_g = sum(float(r.split()[-2]) for r in _table(g.profile_report())[1:-1])
    assert t_g < t_f / 10


def test_profile_report_needs_profile():
    x = sg.scalar("x")
    with pytest.raises(RuntimeError, match="profile=True"):
        sg.function([x], x + 1.0).profile_report()


def test_fused_groups_are_rows_of_their_own():
    x = sg.vector("x")
    y = sg.exp(sg.tanh(x) * 2.0 + 1.0)  # one fused loop of four ops
    f = sg.function([x], y, profile=True)
    f(np.ones(10))
    rows = _table(f.profile_report())
    (row,) = [r for r in rows if "fused group" in r]
    assert "4 ops" in row and "tanh" in row and "exp" in row
    assert "test_profile.py:" in row and "[K1]" in row


@pytest.mark.parametrize("mode", ["c", "py"])
def test_compile_time_by_stage(mode, monkeypatch, tmp_path):
    monkeypatch.setattr(sg.config, "cache_dir", str(tmp_path / "cache"))  # a first compile
    x = sg.vector("x")
    y = sg.exp(x) * 3.0
    f = sg.function([x], y, mode=mode, profile=True)
    stages = ["rewrite", "codegen", "compile", "load"] if mode == "c" else ["rewrite"]
    assert list(f.compile_times) == stages + ["total"]
    assert all(t >= 0 for t in f.compile_times.values())
    assert f.compile_times["total"] >= sum(f.compile_times[k] for k in stages)
    assert f.cache_hit is (None if mode == "py" else False)
    report = f.profile_report().split("\n\n")[1]
    assert report.startswith("compile time by stage")
    for stage in (["rewrite", "codegen", "C compile", "load"] if mode == "c" else ["rewrite"]):
        assert re.search(rf"^  {stage} +\d+\.\d+ s", report, re.M), stage
    if mode == "c":
        again = sg.function([x], y, profile=True)  # the same source: found in the cache
        assert again.cache_hit is True and "cache hit" in again.profile_report()
