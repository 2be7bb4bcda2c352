"""The package's import graph: no cycles, and every module imports on its own (issue 12, item 4).

The static check reads every module of the package with ``ast`` and takes
every import, at module level and inside functions alike (an import moved
into a function still closes a cycle; it only hides it until that function
runs), as an edge of the module graph. That graph must have no cycle except
those closed by the imports listed in ``KNOWN_CYCLE_EDGES``, and each listed
import must still exist and still close a cycle, so the list cannot outlive
the cycles it excuses.

The dynamic check imports each module in a process of its own, forked from
a fresh interpreter that has loaded NumPy and nothing of symgrad, with the
packages above the module present but not run (their ``__init__`` would
import the whole package first and hide an order the module depends on).
"""

import ast
import functools
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys

import pytest

PACKAGE = "symgrad"
PACKAGE_DIR = importlib.util.find_spec(PACKAGE).submodule_search_locations[0]

# The imports that close the cycles still allowed, each an edge (importer, imported)
# of the module graph, with the cycles it closes. Delete an entry with the cycle it
# excuses: the test fails while a listed import is gone or closes no cycle any more.
KNOWN_CYCLE_EDGES = {
    # none left: codegen/ and ops/ lost theirs with the loop IR of issue 12, and
    # compiler.py reads the version from symgrad._version, not the package's __init__
}


# --------------------------------------------------------------------------- the graph

def _modules():
    """``{module name: file path}`` for every module of the package, extensions included."""
    found = {}
    # Extension modules carry their ABI tag (_runtime.cpython-311-x86_64-linux-gnu.so); a
    # plain .so beside them is a C library the runtime loads, not a module.
    suffixes = [".py"] + [s for s in importlib.machinery.EXTENSION_SUFFIXES if s != ".so"]
    for dirpath, dirnames, filenames in os.walk(PACKAGE_DIR):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        rel = os.path.relpath(dirpath, os.path.dirname(PACKAGE_DIR))
        prefix = rel.replace(os.sep, ".")
        if "__init__.py" not in filenames:
            continue  # not a package: nothing in it can be imported as part of symgrad
        for f in sorted(filenames):
            suffix = next((s for s in suffixes if f.endswith(s)), None)
            if suffix is None:
                continue
            stem = f[:-len(suffix)]
            name = prefix if stem == "__init__" else f"{prefix}.{stem}"
            found.setdefault(name, os.path.join(dirpath, f))
    return found


def _imported(module, path, node, modules):
    """The package modules an ``import`` / ``from ... import`` statement ``node`` loads."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in modules}
    if node.level:
        parts = module.split(".")
        if not path.endswith("__init__.py"):
            parts = parts[:-1]
        base = ".".join(parts[:len(parts) - node.level + 1])
        source = f"{base}.{node.module}" if node.module else base
    else:
        source = node.module
    if source not in modules:
        return set()
    # ``from pkg import sub`` loads the submodule; ``from pkg import name`` needs pkg's
    # __init__ to have run (and to define name).
    return {f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source
            for a in node.names}


@functools.cache
def import_graph():
    """``{module: {(imported module, line)}}`` over every import of every module."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, set())
        if not path.endswith(".py"):
            continue
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update((target, node.lineno)
                             for target in _imported(name, path, node, modules)
                             if target != name)
    return graph


def _successors(graph, skip=frozenset()):
    return {m: sorted({t for t, _ in edges if (m, t) not in skip}) for m, edges in graph.items()}


def find_cycle(succ):
    """One cycle of the graph ``succ`` (a list of modules, the first repeated last), or None."""
    state = {}  # module -> 1 on the current path, 2 done
    for root in sorted(succ):
        if state.get(root):
            continue
        path, stack = [root], [iter(succ[root])]
        state[root] = 1
        while stack:
            for nxt in stack[-1]:
                if state.get(nxt) == 1:
                    return path[path.index(nxt):] + [nxt]
                if not state.get(nxt):
                    state[nxt] = 1
                    path.append(nxt)
                    stack.append(iter(succ.get(nxt, ())))
                    break
            else:
                state[path.pop()] = 2
                stack.pop()
    return None


def _reaches(succ, start, goal):
    seen, todo = {start}, [start]
    while todo:
        for nxt in succ.get(todo.pop(), ()):
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def _describe(graph, cycle):
    lines = {(a, t): line for a, edges in graph.items() for t, line in edges}
    return " -> ".join(cycle) + "\n" + "\n".join(
        f"  {a} imports {b} at line {lines[a, b]}" for a, b in zip(cycle, cycle[1:]))


# --------------------------------------------------------------------------- static checks

def test_finder_reads_every_kind_of_import():
    """The graph sees relative, absolute, submodule and in-function imports."""
    graph = import_graph()

    def targets(m):
        return {t for t, _ in graph[m]}

    assert "symgrad.graph" in targets("symgrad.interp")                # from .graph import ...
    assert "symgrad.dtypes" in targets("symgrad.graph")                # from . import dtypes
    assert "symgrad.ops" in targets("symgrad.autodiff")                # from .ops import shape_ops
    assert "symgrad.rewrite.engine" in targets("symgrad.rewrite.gemm")  # from .engine import ...
    assert "symgrad.backend" in targets("symgrad.function")            # inside a function
    assert "symgrad._runtime" in _modules()                             # the extension module


def test_cycle_finder_finds_a_cycle_and_only_one():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None
    assert find_cycle({"a": ["a"]}) == ["a", "a"]


def test_no_import_cycle_but_the_listed_ones():
    graph = import_graph()
    cycle = find_cycle(_successors(graph, skip=KNOWN_CYCLE_EDGES))
    assert cycle is None, (
        f"an import cycle (neither an imported function nor an import inside a function breaks "
        f"it; move the shared piece down or invert the dependency):\n{_describe(graph, cycle)}")


@pytest.mark.parametrize("edge", sorted(KNOWN_CYCLE_EDGES), ids=lambda e: f"{e[0]}->{e[1]}")
def test_each_listed_cycle_still_exists(edge):
    importer, imported = edge
    graph = import_graph()
    assert imported in {t for t, _ in graph.get(importer, ())}, (
        f"{importer} no longer imports {imported}: delete its entry from KNOWN_CYCLE_EDGES")
    assert _reaches(_successors(graph), imported, importer), (
        f"{importer} -> {imported} closes no cycle any more: delete its entry from "
        f"KNOWN_CYCLE_EDGES")


# --------------------------------------------------------------------------- each module alone

# One fresh interpreter loads NumPy (every module needs it; it takes most of an
# interpreter's start) and nothing of symgrad, then forks one child process per
# module. In its child, each module is imported alone: the packages above it exist
# (so relative imports resolve) but their __init__ does not run, so nothing but the
# module's own imports loads anything of symgrad before it.
_IMPORT_EACH_ALONE = """
import importlib, importlib.machinery, importlib.util, json, os, sys, traceback
import numpy  # noqa: F401

root, names, jobs = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
sys.path.insert(0, os.path.dirname(root))
assert not [m for m in sys.modules if m.split(".")[0] == "symgrad"]


def import_alone(name):
    parts = name.split(".")
    for k in range(1, len(parts)):
        pkg = ".".join(parts[:k])
        spec = importlib.machinery.ModuleSpec(pkg, None, is_package=True)
        spec.submodule_search_locations = [os.path.join(root, *parts[1:k])]
        sys.modules[pkg] = importlib.util.module_from_spec(spec)
    importlib.import_module(name)


def child(name, w):
    try:
        import_alone(name)
        os._exit(0)
    except BaseException:
        os.write(w, traceback.format_exc()[-3000:].encode())
        os._exit(1)


running, failed = {}, {}


def reap():
    pid, status = os.wait()
    name, r = running.pop(pid)
    text = os.read(r, 4096).decode(errors="replace")
    os.close(r)
    if status:
        failed[name] = text or f"exit status {status}"


for name in names:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        child(name, w)
    os.close(w)
    running[pid] = (name, r)
    while len(running) >= jobs:
        reap()
while running:
    reap()
print(json.dumps(failed))
"""


def test_every_module_imports_alone_in_a_process_of_its_own():
    names = sorted(_modules())
    jobs = max(2, os.cpu_count() or 1)
    proc = subprocess.run([sys.executable, "-c", _IMPORT_EACH_ALONE, PACKAGE_DIR,
                           ",".join(names), str(jobs)], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    assert proc.returncode == 0, proc.stderr
    failed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not failed, "modules that do not import on their own:\n" + "\n".join(
        f"{name}:\n{text}" for name, text in sorted(failed.items()))


def test_the_import_alone_check_catches_a_module_that_needs_its_package_first(tmp_path):
    """A module that works only once its package's __init__ ran fails in its own process."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("VALUE = 1\nfrom . import good, bad\n")
    (pkg / "good.py").write_text("import json\n")
    (pkg / "bad.py").write_text("from . import VALUE\n")
    proc = subprocess.run([sys.executable, "-c", _IMPORT_EACH_ALONE.replace("symgrad", "pkg"),
                           str(pkg), "pkg,pkg.good,pkg.bad", "2"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    failed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(failed) == ["pkg.bad"] and "VALUE" in failed["pkg.bad"]


def test_the_package_imports_without_loading_the_compiled_runtime():
    """``import symgrad`` loads neither the runtime extension nor the C backend (mode "py"
    needs neither): the reason ``function.py`` imports the backend only for mode "c"."""
    code = ("import sys, symgrad; "
            "print(sorted(m for m in sys.modules if m.startswith(("
            "'symgrad.backend', 'symgrad._runtime', 'symgrad.compiler', 'symgrad.cache'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout
