"""Issue #11 item 14: the compiled source names no user file or line.

A kernel's error messages name the op and the user's file:line, but the C
source carries only a failure-site number (``codegen.kernel.location``); the
runtime puts the text back. So moving the model's code within its file (a
blank line added above it) or running it from another file is a cache hit,
and each function's errors still name its own line.
"""

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import symgrad as sg
from symgrad import compiler

MODEL = textwrap.dedent("""\
    import symgrad as sg
    a = sg.matrix("a")
    b = sg.matrix("b")
    y = (a @ b).sum() + sg.concatenate([a, b], axis=1).sum()
    f = sg.function([a, b], y, name="model")
    """)
MATMUL_LINE = 4  # the line of `y = ...` in MODEL


def _build(code, filename):
    scope = {}
    exec(compile(code, filename, "exec"), scope)
    return scope["f"]


def _error(f, *args):
    with pytest.raises(sg.ShapeError) as info:
        f(*args)
    return str(info.value)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(sg.config, "cache_dir", str(tmp_path / "cache"))


def _code(f):
    """The kernel's C without its comments, as the renderer hands it to the cache key."""
    return "".join(u.code for u in f.source.units)


def test_moved_code_is_a_cache_hit_and_errors_name_each_line(cache_dir):
    f1 = _build(MODEL, "/home/u/proj/model.py")
    f2 = _build("\n\n\n" + MODEL, "/home/u/other dir/train.py")
    assert _code(f1) == _code(f2)
    assert f1.cache_hit is False and f2.cache_hit is True
    for f in (f1, f2):
        code = _code(f)
        assert ".py" not in code and "/home/u" not in code
    bad = (np.ones((2, 3)), np.ones((2, 3)))
    m1, m2 = _error(f1, *bad), _error(f2, *bad)
    assert m1.startswith(f"matmul at /home/u/proj/model.py:{MATMUL_LINE}: shapes (2, 3) and")
    assert m2.startswith(f"matmul at /home/u/other dir/train.py:{MATMUL_LINE + 3}: shapes (2, 3)")
    ok = (np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(sg.ShapeError, match=f"concatenate.* at .*train.py:{MATMUL_LINE + 3}: "
                                            "the inputs' lengths differ on axis 0"):
        f2(*ok)
    assert f1(np.ones((3, 3)), np.ones((3, 3))) == pytest.approx(27.0 + 18.0)


def test_error_sites_survive_pickling(cache_dir):
    f = _build("\n" * 7 + MODEL, "/srv/m.py")
    g = pickle.loads(pickle.dumps(f))
    assert g.cache_hit is True
    bad = (np.ones((2, 3)), np.ones((2, 3)))
    assert _error(g, *bad) == _error(f, *bad)
    assert f"m.py:{MATMUL_LINE + 7}:" in _error(g, *bad)


def test_two_processes_share_one_library(tmp_path):
    """Same model, other lines and file names, separate processes: one compile."""
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(tmp_path / "cache"))
    hits, msgs = [], []
    for blank, name in ((0, "first.py"), (5, "second.py")):
        script = tmp_path / name
        script.write_text("\n" * blank + MODEL + textwrap.dedent("""\
            import numpy as np
            print(f.cache_hit)
            try:
                f(np.ones((2, 3)), np.ones((2, 3)))
            except sg.ShapeError as e:
                print(e)
            """))
        out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        hit, msg = out.stdout.splitlines()[:2]
        hits.append(hit)
        msgs.append(msg)
    assert hits == ["False", "True"]
    assert msgs[0].startswith(f"matmul at {tmp_path / 'first.py'}:{MATMUL_LINE}: ")
    assert msgs[1].startswith(f"matmul at {tmp_path / 'second.py'}:{MATMUL_LINE + 5}: ")
