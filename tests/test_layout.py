"""The package's layout: folders are layers, imports only go down, no import cycle anywhere.

The graph is read from the source (every import, those inside functions included), as
/work/shared/tools/layout_check.py reads it, so a lazy import that climbs a layer or closes a cycle is seen
even though it never runs at import time. ``make lint`` runs the same layers as an import-linter contract.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "deconv_cli"
# bottom to top; a folder may import its own modules and the layers before it (engines and tensor_io: siblings)
LAYERS = [("core",), ("conventions",), ("engines", "tensor_io"), ("models",), ("checks",), ("execution",), ("render",),
          ("bench",), ("cli",)]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _targets(module: str, path: Path, node, modules) -> set[str]:
    """The package's modules an import statement names (the deepest existing module of each name)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if isinstance(node, ast.ImportFrom):
        base = ".".join(package[: len(package) - node.level + 1] + [node.module or ""]).strip(".") if node.level \
            else node.module or ""
        names = [f"{base}.{alias.name}" for alias in node.names] + [base]
    else:
        names = [alias.name for alias in node.names]
    out = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name.split(".")[0] == PACKAGE.name:
            out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the modules it imports; a submodule's import of its own package's __init__ is left out
    (importing a package runs its __init__ first anyway, so that edge closes no loop of its own)."""
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _targets(module, path, node, modules)
        graph[module] = {e for e in edges if e != module and not module.startswith(e + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in graph:
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for every import from a layer to one above it or to a sibling of the same rank."""
    bad = []
    for module, edges in graph.items():
        here = _layer(module)
        for target in edges:
            there = _layer(target)
            if here is None or there is None or here == there:
                continue
            if RANK[there] >= RANK[here]:
                bad.append(f"{module} -> {target}")
    return sorted(bad)


def test_no_import_cycle_anywhere_in_the_package():
    found = cycles(import_graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_imports_only_go_down_the_layers():
    assert upward_imports(import_graph()) == []


def test_every_folder_is_a_layer():
    folders = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert folders == sorted(RANK), "a new folder needs its place in LAYERS and in pyproject's layers contract"
    assert sorted(p.stem for p in PACKAGE.glob("*.py")) == ["__init__", "__main__"], "modules live in the layer folders"


@pytest.mark.parametrize("folder", sorted(RANK))
def test_every_layer_folder_says_what_it_owns_and_may_import(folder):
    doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text(encoding="utf-8")))
    assert doc, f"deconv_cli/{folder}/__init__.py has no docstring"
    first = doc.split("\n\n")[0]
    assert "May import" in first or "Imports nothing else" in first, first


def test_the_checks_see_a_cycle_and_an_upward_import():
    """The graph checks are not vacuous: a made-up cycle and a made-up upward import are found."""
    graph = {"deconv_cli.core.a": {"deconv_cli.core.b"}, "deconv_cli.core.b": {"deconv_cli.core.a"},
             "deconv_cli.engines.x": {"deconv_cli.tensor_io.y"}, "deconv_cli.tensor_io.y": set(),
             "deconv_cli.execution.job": {"deconv_cli.render.report"}, "deconv_cli.render.report": set()}
    assert cycles(graph) == [["deconv_cli.core.a", "deconv_cli.core.b"]]
    assert upward_imports(graph) == ["deconv_cli.engines.x -> deconv_cli.tensor_io.y",
                                     "deconv_cli.execution.job -> deconv_cli.render.report"]


def test_a_lazy_import_inside_a_function_is_in_the_graph():
    graph = import_graph()
    # run_job imports the engines inside the function only (so that `deconv shape` never loads them)
    assert "deconv_cli.engines" in graph["deconv_cli.execution.job"]
