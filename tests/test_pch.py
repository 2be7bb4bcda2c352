"""The kernels' precompiled prelude (symgrad/_cflags.py, built by setup.py): used by a
unit compiled with exactly the flags, compiler and headers it was built from, never
otherwise, and a damaged one falls back to the headers' text.

The suite compiles at -O1 (conftest), which has variants of its own; these tests build
every variant into a temporary folder and compile with the default flags, or with the
suite's.
"""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import symgrad as sg
from symgrad import _cflags, compiler
from symgrad.codegen import render_c

pytestmark = pytest.mark.skipif(shutil.which("cc") is None or "Free Software Foundation" not in
                                subprocess.run(["cc", "--version"], capture_output=True,
                                               text=True).stdout,
                                reason="precompiled headers are gcc's")


def _include_dirs():
    return [compiler.INCLUDE_DIR, compiler.blas_flags()[0]]


def _fits(root, cc="cc"):
    """Whether every variant under ``root`` was built by ``cc`` for its flags from the
    headers as they are now (what a kernel's compile checks before using one)."""
    dirs, path = _include_dirs(), shutil.which(cc)
    identity = _cflags.identity_of(path, compiler._compiler_version(path))
    return all(_cflags.pch_include(str(root), [path], identity, _cflags.variant_flags(v, dirs),
                                   dirs) == [f"-I{os.path.join(root, v)}"]
               for v in _cflags.VARIANTS)


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """The package's own variants (setup.py builds them) when they fit the headers as they
    are now, else every variant built into a temporary folder: 4 s of the compiler saved
    in the usual case. The tests only read the folder, or copy it before damaging it."""
    assert set(_cflags.VARIANTS) == {"O2", "O0", "O1"}
    if _fits(compiler.PCH_ROOT):
        return Path(compiler.PCH_ROOT)
    root = tmp_path_factory.mktemp("pch")
    assert _cflags.build("cc", str(root), _include_dirs()) == {v: None for v in _cflags.VARIANTS}
    assert _fits(root)
    return root


@pytest.fixture
def default_flags(monkeypatch, tmp_path, variants):
    """Kernels of the release flags (no SYMGRAD_CFLAGS) into an empty cache, the variants
    of ``variants`` standing for the package's."""
    monkeypatch.setattr(sg.config, "cflags", [])
    monkeypatch.setattr(sg.config, "cache_dir", str(tmp_path / "cache"))
    monkeypatch.setattr(compiler, "PCH_ROOT", str(variants))
    monkeypatch.setattr(compiler, "_PCH_FAILED", set())
    monkeypatch.setattr(_cflags, "_stamps", {})
    return variants


def _used(f, tmp_path):
    """For each unit of ``f``'s kernel: the precompiled header gcc read for it (the
    first line of -H), or None."""
    cc = compiler.find_compiler()
    units = compiler._units(f.source, "kernel")
    build = tmp_path / "build"
    build.mkdir()
    for u in units:
        (build / u.name).write_text(compiler._file_text(u, units))
    compiles, _ = compiler._commands(cc, "kernel", units)
    used = []
    for argv in compiles:
        argv = [a for a in argv if a != "-shared"]
        argv[argv.index("-o") + 1] = "probe.o"
        if "-c" not in argv:
            argv.append("-c")
        proc = subprocess.run([*argv, "-H"], cwd=build, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        first = proc.stderr.splitlines()[0]
        used.append(first[2:] if first.startswith("! ") else None)
    return used


def _mlp_like():
    x, W = sg.matrix("x"), sg.shared(np.linspace(-1, 1, 12).reshape(3, 4), name="W")
    h = sg.tanh(x @ W) * 1.5
    return [x], (h * h).sum(axis=1), lambda xv: ((np.tanh(xv @ W.get_value()) * 1.5) ** 2).sum(1)


def test_a_one_unit_kernel_of_the_default_flags_reads_the_precompiled_prelude(default_flags,
                                                                               tmp_path):
    inputs, out, want = _mlp_like()
    f = sg.function(inputs, out)
    assert len(f.source.units) == 1
    assert _used(f, tmp_path) == [str(default_flags / "O2" / "sg_prelude.h.gch")]
    xv = np.arange(6.0).reshape(2, 3) / 7
    np.testing.assert_allclose(f(xv), want(xv))


def test_units_of_rows_and_of_glue_read_their_own_variant(default_flags, tmp_path, monkeypatch):
    monkeypatch.setattr(render_c, "_ONE_UNIT_LINES", 0)
    inputs, out, want = _mlp_like()
    f = sg.function(inputs, out)
    units = [u for u in f.source.units if u.name.endswith(".c")]
    assert [u.glue for u in units] == [False, True]
    assert _used(f, tmp_path) == [str(default_flags / v / "sg_prelude.h.gch") for v in ("O2", "O0")]
    xv = np.arange(6.0).reshape(2, 3) / 7
    np.testing.assert_allclose(f(xv), want(xv))


def test_the_test_suites_level_reads_its_own_variants(default_flags, tmp_path, monkeypatch):
    """tests/conftest.py compiles at -O1 (SYMGRAD_CFLAGS): the rows read the variant built
    for it, the glue stays at -O0 and reads the release one, so the suite's hundreds of
    compiles skip reading the headers."""
    monkeypatch.setattr(sg.config, "cflags", ["-O1"])
    monkeypatch.setattr(render_c, "_ONE_UNIT_LINES", 0)
    inputs, out, want = _mlp_like()
    f = sg.function(inputs, out)
    assert _used(f, tmp_path) == [str(default_flags / v / "sg_prelude.h.gch")
                                  for v in ("O1", "O0")]
    xv = np.arange(6.0).reshape(2, 3) / 3
    np.testing.assert_allclose(f(xv), want(xv))


def test_no_variant_for_other_flags_another_compiler_or_changed_headers(tmp_path, monkeypatch):
    include = tmp_path / "include"
    shutil.copytree(compiler.INCLUDE_DIR, include)
    dirs = [str(include), compiler.blas_flags()[0]]
    root = tmp_path / "pch"
    assert _cflags.build("cc", str(root), dirs, variants=("O2",)) == {"O2": None}
    path = shutil.which("cc")
    ident = _cflags.compiler_identity(path)
    flags = _cflags.variant_flags("O2", dirs)

    def found(flags=flags, cc=(path,), ident=ident):
        monkeypatch.setattr(_cflags, "_stamps", {})
        return _cflags.pch_include(str(root), list(cc), ident, flags, dirs)

    assert found() == [f"-I{root / 'O2'}"]
    assert found(flags=[*flags, "-O1"]) == []  # the suite's level: its own variant, not built here
    assert found(flags=[*flags, "-fsanitize=address"]) == []  # gcc 12 would crash on it
    assert found(flags=_cflags.variant_flags("O0", dirs)) == []  # not built here
    assert found(cc=("ccache", path)) == []
    assert found(ident=[ident[0], "(another build) 12.9.9", ident[2]]) == []
    assert found(flags=[f if f != f"-I{include}" else "-I/elsewhere" for f in flags]) != []
    with open(include / "sg_math.h", "a") as f:
        f.write("\n/* edited after the build */\n")
    assert found() == []
    (root / "O2" / "pch.json").write_text("{")
    assert found() == []


def test_a_damaged_precompiled_header_falls_back_to_the_text(default_flags, tmp_path,
                                                             monkeypatch):
    broken = tmp_path / "broken"
    shutil.copytree(default_flags, broken)
    gch = broken / "O2" / "sg_prelude.h.gch"
    gch.write_bytes(gch.read_bytes()[:1000])
    monkeypatch.setattr(compiler, "PCH_ROOT", str(broken))
    inputs, out, want = _mlp_like()
    f = sg.function(inputs, out)
    xv = np.arange(6.0).reshape(2, 3) / 9
    np.testing.assert_allclose(f(xv), want(xv))
    assert compiler._PCH_FAILED == {f"-I{broken / 'O2'}"}
    cc = compiler.find_compiler()
    (argv,), _ = compiler._commands(cc, "kernel", compiler._units(f.source, "kernel"))
    assert not any(a.startswith(f"-I{broken}") for a in argv)


def test_a_precompiled_header_of_other_settings_is_passed_over_by_gcc(default_flags, tmp_path,
                                                                      monkeypatch):
    """A variant whose stamp fits but whose .gch gcc rejects (here the -O0 one in the
    -O2 folder) is read as text through the forwarding header beside it."""
    swapped = tmp_path / "swapped"
    shutil.copytree(default_flags, swapped)
    shutil.copy(swapped / "O0" / "sg_prelude.h.gch", swapped / "O2" / "sg_prelude.h.gch")
    monkeypatch.setattr(compiler, "PCH_ROOT", str(swapped))
    inputs, out, want = _mlp_like()
    f = sg.function(inputs, out)
    assert _used(f, tmp_path) == [None]
    xv = np.arange(6.0).reshape(2, 3) / 5
    np.testing.assert_allclose(f(xv), want(xv))
    assert compiler._PCH_FAILED == set()


def test_the_forwarding_header_names_the_real_one(variants):
    text = (variants / "O2" / "sg_prelude.h").read_text()
    assert '#include_next "sg_prelude.h"' in text
    assert os.path.isfile(os.path.join(compiler.INCLUDE_DIR, "sg_prelude.h"))


def test_the_objects_are_the_same_bytes_with_or_without_it(default_flags, tmp_path, monkeypatch):
    """Why the precompiled header is not in the cache key: it changes gcc's time only."""
    monkeypatch.setattr(render_c, "_ONE_UNIT_LINES", 0)
    inputs, out, _ = _mlp_like()
    f = sg.function(inputs, out)
    cc = compiler.find_compiler()
    units = compiler._units(f.source, "kernel")
    for u in units:
        (tmp_path / u.name).write_text(compiler._file_text(u, units))
    compiles, _ = compiler._commands(cc, "kernel", units)
    assert len(compiles) == 2
    for argv in compiles:
        pch = [a for a in argv if a.startswith(f"-I{default_flags}")]
        assert len(pch) == 1
        objects = []
        for cmd in (argv, [a for a in argv if a not in pch]):
            subprocess.run(cmd, cwd=tmp_path, check=True)
            objects.append((tmp_path / argv[-1]).read_bytes())
        assert objects[0] == objects[1]


@pytest.mark.parametrize("extra", [[], ["-O1"], ["-O3", "-g"], ["-Os"]])
def test_glue_units_compile_at_O0_whatever_level_the_flags_ask(extra):
    """SYMGRAD_CFLAGS' level is for the loops (row units); glue units (checks, allocations,
    calls) keep -O0 under any of them -- under the suite's -O1 they took 4x the CPU time."""
    flags = [*_cflags.BASE_FLAGS, *extra, "-I/x"]
    glue = _cflags.unit_flags(flags, glue=True)
    rows = _cflags.unit_flags(flags, glue=False)
    assert [f for f in glue if f.startswith("-O")] == ["-O0"]
    assert glue.index("-O0") == flags.index("-O2")
    assert [f for f in rows if f.startswith("-O")] == ["-O2", *[f for f in extra if f.startswith("-O")]]
    assert [f for f in glue if not f.startswith("-O")] == [f for f in rows if not f.startswith("-O")]
    assert "-shared" not in glue and "-shared" not in rows
    assert ("-g" in glue) == ("-g" in extra)
