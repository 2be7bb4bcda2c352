"""Kernels link with binutils' gold where it is installed (compiler._linker): GNU ld
takes about twice as long to read OpenBLAS's symbol tables. Without gold, the system's
default linker, and the command line says which (it is part of the cache key)."""

import shutil

import numpy as np
import pytest

import symgrad as sg
from symgrad import compiler


@pytest.fixture
def fresh_linker():
    compiler._linker.cache_clear()
    yield
    compiler._linker.cache_clear()


def test_gold_links_kernels_where_installed(fresh_linker, monkeypatch, tmp_path):
    if shutil.which("ld.gold") is None:
        pytest.skip("binutils' gold is not installed")
    assert compiler._flags("kernel")[-1] == "-fuse-ld=gold"
    monkeypatch.setattr(sg.config, "cache_dir", str(tmp_path / "cache"))
    x = sg.vector("x")
    f = sg.function([x], (sg.exp(x) * 2.0).sum())
    assert not f.cache_hit
    np.testing.assert_allclose(f(np.arange(4.0)), 2 * np.exp(np.arange(4.0)).sum())


def test_without_gold_the_default_linker_and_another_key(fresh_linker, monkeypatch):
    key_of = lambda: compiler.cache_key("int f(void) { return 1; }", "kernel",
                                        compiler.compiler_argv(compiler.find_compiler(), "kernel"))
    with_gold = key_of()
    compiler._linker.cache_clear()
    real_which = shutil.which
    monkeypatch.setattr(compiler.shutil, "which",
                        lambda name, *a, **k: None if name == "ld.gold" else real_which(name, *a, **k))
    assert "-fuse-ld=gold" not in compiler._flags("kernel")
    if real_which("ld.gold"):
        assert key_of() != with_gold


def test_the_linker_does_not_change_the_key_a_machine_without_a_compiler_looks_up(
        fresh_linker, monkeypatch):
    # The neutral key finds a library built where a compiler (and gold) ran, from a
    # process whose PATH has neither (test_cache_faults: a filled cache without a compiler).
    source = "int f(void) { return 1; }"
    with_gold = compiler.neutral_key(source, "kernel")
    compiler._linker.cache_clear()
    monkeypatch.setattr(compiler, "_linker", lambda: [])
    assert compiler.neutral_key(source, "kernel") == with_gold
