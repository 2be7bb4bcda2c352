"""Issue #11 item 5: no user string reaches generated C but as an escaped literal or comment.

A function's name, input and shared variable names, summary names, loss
keys and the path of the user's script all end up near the kernel's C: in
comments (``f.source`` names nodes and lines for people) or, through error
messages, in string literals. Hostile text must neither run (a constructor
injected through ``*/`` runs when the library loads, also on unpickling),
nor break the build, nor change the text the user reads back in errors.
``symgrad.codegen.cstr`` is the one place such text is made C.
"""

import ctypes
import os
import pickle
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import symgrad as sg
from symgrad import compiler
from symgrad.codegen.cstr import c_comment, c_format, c_string


def _payloads(marker):
    """Text that would run ``touch marker`` or break the C if pasted as it is."""
    run = f'system("touch {marker}")'
    return [
        f"*/ __attribute__((constructor)) static void pwn(void) {{ {run}; }} /*",
        f'"); {run}; //',
        f"\\\n__attribute__((constructor)) static void pwn2(void) {{ {run}; }}",
        f"x\r\n#include <stdlib.h>\n__attribute__((constructor)) static void p3(void) {{ {run}; }}",
        "??/", "??/\n", "a ??= b ??' c", "back\\slash\\", 'quote " in', "%s%n%p%%",
        "nul\x00byte", "tab\tbell\x07del\x7f", "ünï€😀", "\ud800 lone surrogate",
        "/* nested", "*/", "// line", "x" * 20000,
    ]


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(sg.config, "cache_dir", str(tmp_path / "cache"))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a hostile name ran a command"


# A C string or character literal (kept), or a comment (dropped), as the C compiler reads them.
_C_TOKENS = re.compile(r""""(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|/\*.*?\*/|//[^\n]*""",
                       re.DOTALL)


def _c_code_of(source):
    """``source`` without its comments, found the way the C compiler finds them: whatever a
    name put in a comment must not have escaped it."""
    return _C_TOKENS.sub(lambda m: m.group(0) if m.group(0)[0] in "\"'" else " ", source)


def _assert_no_code_from(source, marker, literals=False):
    """No payload outside comments (and, with ``literals``, outside string literals)."""
    code = _c_code_of(source)  # comments dropped: what the compiler acts on
    if literals:
        code = re.sub(r'"(?:\\.|[^"\\\n])*"', '""', code)
    assert "system" not in code and str(marker) not in code and "pwn" not in code


# --------------------------------------------------------------------------- the helper

def _load_strings(texts, fmt, tmp_path):
    """Compile each text as a literal; return the bytes each holds, as C sees them."""
    lines = ['#include <stddef.h>']
    for k, t in enumerate(texts):
        lines.append(f"/* {c_comment(t)} */")
        lines.append(f"static const char s{k}[] = {fmt(t)};")
        lines.append(f"const char *get{k}(void) {{ return s{k}; }}")
        lines.append(f"size_t len{k}(void) {{ return sizeof s{k} - 1; }}")
    lines.append("int sg_abi_version(void) { return 0; }")
    source = "\n".join(lines) + "\n"
    lib = ctypes.CDLL(compiler.compile_library(source))
    out = []
    for k in range(len(texts)):
        get, size = getattr(lib, f"get{k}"), getattr(lib, f"len{k}")
        get.restype, size.restype = ctypes.c_void_p, ctypes.c_size_t
        out.append(ctypes.string_at(get(), size()))
    return source, out


def test_literals_hold_exactly_the_text_and_comments_stay_comments(cache_dir, marker, tmp_path):
    texts = _payloads(marker)
    source, got = _load_strings(texts, c_format, tmp_path)
    assert got == [t.encode("utf-8", "surrogatepass") for t in texts]
    _assert_no_code_from(source, marker, literals=True)
    for t in texts:
        lit, com = c_string(t), c_comment(t)
        assert lit.isascii() and "??" not in lit and "\n" not in lit
        assert "%" not in lit.replace("%%", "")  # safe as a printf format
        assert com.isprintable() and com.isascii()
        assert "*/" not in com and "/*" not in com and "??" not in com
        assert len(com) <= 203  # a huge name does not bloat the source


# --------------------------------------------------------------------------- every path

def _model(name, tmp_path):
    """A function whose name, input, shared variable and summary all carry ``name``."""
    x = sg.vector(name)
    W = sg.shared(np.arange(3.0), name=name)
    with sg.summary_scope():
        m = sg.summary(name, (x * W).mean())
    y = (x * W).sum() + m
    return x, W, sg.function([x], [y, x[1:] * 2], updates=[(W, W * 0.5 + x)], name=name)


def _hostile_name(marker, k):
    """Case ``k``: every payload in one name, in order or reversed, or one code payload alone."""
    every = _payloads(marker)
    return ["".join(every), "".join(reversed(every)), every[0], every[1], every[3]][k]


@pytest.mark.parametrize("k", range(5))
def test_hostile_names_build_run_and_read_back(cache_dir, marker, tmp_path, k):
    name = _hostile_name(marker, k)
    x, W, f = _model(name, tmp_path)
    _assert_no_code_from(f.source, marker)
    y, tail = f(np.ones(3))
    assert y == pytest.approx(3.0 + 1.0)
    np.testing.assert_array_equal(tail, [2.0, 2.0])
    np.testing.assert_array_equal(W.get_value(), [1.0, 1.5, 2.0])
    with pytest.raises(sg.InputError) as info:  # the name read back as the user wrote it
        f(np.ones((2, 2)))
    assert name in str(info.value)
    g = pickle.loads(pickle.dumps(f))  # unpickling compiles (or finds) the kernel again
    _assert_no_code_from(g.source, marker)
    assert g.name == f.name == name
    assert g(np.ones(3))[0] == pytest.approx(f(np.ones(3))[0])


def test_hostile_loss_keys_and_summaries_in_a_train_step(cache_dir, marker, tmp_path):
    names = _payloads(marker)[:4] + ["??/", "%s%n"]
    x = sg.vector("x")
    W = sg.shared(np.ones(3), name=names[0])
    losses = {n: ((W * x) ** 2).sum() * (k + 1) for k, n in enumerate(names)}
    with sg.summary_scope():
        sg.summary("s*/" + names[1], W.sum())
        step = sg.train_step(losses, [x], optimizer=sg.optim.SGD(lr=0.0), name=names[2])
        _assert_no_code_from(step.source, marker)
        out = step(np.ones(3))
    for k, n in enumerate(names):
        assert out[n] == pytest.approx(3.0 * (k + 1))
    assert out["s*/" + names[1]] == pytest.approx(3.0)


SCRIPT = textwrap.dedent("""\
    import sys
    import numpy as np
    import symgrad as sg
    a, b = sg.matrix("a"), sg.matrix("b")
    f = sg.function([a, b], (a @ b).sum() + a[0, 5])
    try:
        f(np.ones((2, 3)), np.ones((2, 3)))
    except sg.ShapeError as e:
        print("shape:" + str(e))
    try:
        f(np.ones((2, 3)), np.ones((3, 3)))
    except sg.IndexError as e:
        print("index:" + str(e))
    print("source:" + repr(f.source))
    """)


def test_a_hostile_script_path(cache_dir, marker, tmp_path):
    """The user's file path reaches error messages whole, and the C not at all."""
    folder = tmp_path / "evil*" / '*/ q"uote ??/ back\\slash' / "new\nline ünï"
    folder.mkdir(parents=True)
    script = folder / 'm??"x\\.py'  # with the folders: "*/", "??/", a quote, a newline
    script.write_text(SCRIPT)
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    # The path holds a newline: each message is read back whole from all of stdout.
    assert f"matmul at {script}:5: shapes (2, 3) and (2, 3)" in out.stdout
    assert f" at {script}:5: index 5 is out of range" in out.stdout
    [line] = [ln for ln in out.stdout.split("\n") if ln.startswith("source:")]
    source = eval(line[len("source:"):])  # noqa: S307 - our own repr()
    assert "evil" not in _c_code_of(source)
    _assert_no_code_from(source, marker)
