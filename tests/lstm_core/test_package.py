"""The shape of the two packages: the library (lstm_core) never imports the suite (tasks), no
import cycles in either, importing lstm_core leaves the process environment alone, every
lstm_core module declares its public names."""

from __future__ import annotations

import ast
import functools
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("lstm_core", "tasks")


def module_files() -> dict[str, Path]:
    """``{module name: file}`` for every ``.py`` under the two packages (``pkg/__init__.py`` is
    ``pkg``)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def _targets(importer: str, node: ast.AST, is_package: bool) -> list[str]:
    """Modules of ours that one import statement executes: the named module (or the submodule
    a ``from package import name`` names) and the ``__init__`` of each package above it that
    the importer is not itself inside (importing ``a.b.c`` runs ``a/b/__init__.py``)."""
    if isinstance(node, ast.Import):
        named = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = importer.split(".")
            anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
            base = ".".join(anchor + ([base] if base else []))
        named = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    found = []
    for name in named:
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            target = ".".join(parts[:depth])
            inside = importer == target or importer.startswith(target + ".")
            if target in MODULES and not inside:
                found.append(target)
    return found


@functools.lru_cache(maxsize=2)
def import_graph(module_level_only: bool = False) -> dict[str, dict[str, int]]:
    """``{importer: {imported module: line}}`` among our modules, parsed with ``ast``; function-
    level (and ``TYPE_CHECKING``) imports count unless ``module_level_only``."""
    graph: dict[str, dict[str, int]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        nodes = tree.body if module_level_only else ast.walk(tree)
        edges = graph.setdefault(module, {})
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(module, node, path.name == "__init__.py"):
                    edges.setdefault(target, node.lineno)
    return graph


def find_cycle(graph: dict[str, dict[str, int]], prefix: str) -> list[str] | None:
    """One import cycle among the modules named ``prefix...`` (as a path ``a -> b -> a``), or None."""
    nodes = sorted(m for m in graph if m == prefix or m.startswith(prefix + "."))
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, {})):
            if not (target == prefix or target.startswith(prefix + ".")):
                continue
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in nodes:
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def describe(cycle: list[str], graph) -> str:
    return " -> ".join(
        f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])
    ) + f" -> {cycle[-1]}"


def test_the_graph_sees_function_level_imports():
    """The parser itself: a function-level import is an edge, a relative import resolves, and
    a package's ``__init__`` counts for importers outside it."""
    graph = import_graph()
    assert "lstm_core.layer" in graph["lstm_core"]  # TYPE_CHECKING import in lstm_core/__init__.py
    assert "lstm_core.tflm" in graph["tasks.sentiment.export"]  # inside a function there
    assert "lstm_core.tflm" in graph["lstm_core.export"]  # the package __init__ runs first
    assert "lstm_core.tflm" not in graph["lstm_core.tflm.report"]  # its own package: already running
    toy = {"p.a": {"p.b": 3}, "p.b": {"p.c": 5}, "p.c": {"p.a": 7}, "p.d": {}}
    assert find_cycle(toy, "p") == ["p.a", "p.b", "p.c", "p.a"]
    assert describe(find_cycle(toy, "p"), toy) == "p.a (line 3) -> p.b (line 5) -> p.c (line 7) -> p.a"


def test_lstm_core_never_imports_tasks():
    graph = import_graph()
    wrong = [
        f"{MODULES[importer].relative_to(ROOT)}:{line} imports {target}"
        for importer, edges in graph.items()
        if importer.startswith("lstm_core")
        for target, line in edges.items()
        if target.split(".")[0] == "tasks"
    ]
    assert not wrong, "the library imports the suite:\n" + "\n".join(wrong)


def test_no_import_cycles_in_lstm_core_even_through_function_level_imports():
    graph = import_graph()
    cycle = find_cycle(graph, "lstm_core")
    assert cycle is None, f"import cycle in lstm_core: {describe(cycle, graph)}"


@pytest.mark.parametrize("module_level_only", [True, False], ids=["module-level", "function-level-too"])
def test_no_import_cycles_in_tasks(module_level_only):
    graph = import_graph(module_level_only=module_level_only)
    cycle = find_cycle(graph, "tasks")
    assert cycle is None, f"import cycle in tasks: {describe(cycle, graph)}"


# every lstm_core module (lstm_core, layer, cell, export, tflm, streaming, embedding, kernels, cudnn ...)
IMPORTED = sorted(m for m in MODULES if m.split(".")[0] == "lstm_core")

ENV_SCRIPT = """
import json, os, sys
import tensorflow, keras  # TensorFlow sets variables of its own: not ours to judge
before = dict(os.environ)
for name in sys.argv[1:]:
    __import__(name)
after = dict(os.environ)
changed = {k: [before.get(k), after.get(k)] for k in set(before) | set(after) if before.get(k) != after.get(k)}
print(json.dumps(changed))
"""


def test_importing_lstm_core_leaves_the_environment_unchanged():
    assert {"lstm_core", "lstm_core.layer", "lstm_core.export", "lstm_core.tflm", "lstm_core.kernels"} <= set(IMPORTED)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", ENV_SCRIPT, *IMPORTED], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    changed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert changed == {}, f"importing {IMPORTED} changed os.environ: {changed}"


def test_import_lstm_core_loads_no_tensorflow():
    script = "import sys, lstm_core; lstm_core.__all__; print('tensorflow' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.stdout.strip() == "False", proc.stderr[-2000:]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("lstm_core")))
def test_every_lstm_core_module_declares_its_public_names(module):
    loaded = importlib.import_module(module)
    names = getattr(loaded, "__all__", None)
    assert isinstance(names, (list, tuple)) and names, f"{module} has no __all__"
    assert len(set(names)) == len(names), f"{module}.__all__ repeats a name"
    missing = [name for name in names if not hasattr(loaded, name)]
    assert not missing, f"{module}.__all__ names what it does not define: {missing}"


def test_lazy_root_exports_resolve_to_their_modules():
    import lstm_core

    assert sorted(lstm_core.__all__) == sorted(lstm_core._EXPORTS)
    for name, module in lstm_core._EXPORTS.items():
        assert getattr(lstm_core, name) is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError):
        lstm_core.no_such_name
