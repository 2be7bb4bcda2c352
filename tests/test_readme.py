"""The README's code runs as written (issue #11, item 18).

Every ```python block of README.md is run on its own, in a fresh interpreter
whose working directory and symgrad cache are temporary (a snippet may write
``ckpt.npz``), so each must be self-contained: its imports and its small data
included. A block added to the README is picked up by this test. The ```bash
blocks are not run (they install packages); the first is checked to hold the
two commands a newcomer types, the second of which `.ci/run` runs.
"""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import symgrad as sg

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"( *)```(\w*)\s*$")


def code_blocks(text, language):
    """``(line, code)`` of each fenced block of ``language``, in order; ``line`` is the
    1-based line of its first code line. Blocks indented in a list item are dedented."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.fullmatch(lines[i])
        i += 1
        if not m or not m.group(2):
            continue
        start, indent = i, m.group(1)
        while i < len(lines) and lines[i].rstrip() != indent + "```":
            i += 1
        if m.group(2) == language:
            blocks.append((start + 1, textwrap.dedent("\n".join(lines[start:i])) + "\n"))
        i += 1
    return blocks


def test_code_blocks_are_found_with_their_lines():
    text = "a\n```python\nx = 1\n```\n- item\n\n  ```python\n  y = 2\n  ```\n```bash\nls\n```\n"
    assert code_blocks(text, "python") == [(3, "x = 1\n"), (8, "y = 2\n")]
    assert code_blocks(text, "bash") == [(11, "ls\n")]


PYTHON_BLOCKS = code_blocks(README.read_text(encoding="utf-8"), "python")


def child_env(tmp_path):
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(tmp_path / "cache"), MPLBACKEND="Agg")
    # The symgrad under test, also when it is the source tree with the extension built in place.
    where = str(Path(sg.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([where] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def test_the_readme_has_python_blocks():
    assert len(PYTHON_BLOCKS) >= 3


@pytest.mark.parametrize("line, code", PYTHON_BLOCKS,
                         ids=[f"README.md:{line}" for line, _ in PYTHON_BLOCKS])
def test_a_readme_python_block_runs_as_written(tmp_path, line, code):
    work = tmp_path / "work"
    work.mkdir()
    script = work / f"README_md_line_{line}.py"
    script.write_text(code, encoding="utf-8")
    proc = subprocess.run([sys.executable, script.name], cwd=work, env=child_env(tmp_path),
                          capture_output=True, text=True, timeout=600)
    status = proc.returncode
    assert status == 0, f"the ```python block at README.md:{line} fails:\n{proc.stderr[-4000:]}"


def commands(block):
    """The commands of a bash block, comments and blank lines left out."""
    return [c for c in (line.split("#", 1)[0].strip() for line in block.splitlines()) if c]


def test_the_first_bash_block_holds_the_two_commands_ci_runs():
    first = commands(code_blocks(README.read_text(encoding="utf-8"), "bash")[0][1])
    assert len(first) == 2, first
    assert "examples/train_digits.py" in first[0] and (ROOT / "examples/train_digits.py").exists()
    ci = ROOT / ".ci" / "run"
    if not ci.exists():
        pytest.skip(".ci/run is not here (an installed copy without the CI script)")
    assert first[1] in ci.read_text(encoding="utf-8").splitlines()
