"""The import graph of model_diff/, gitdriver/ and hooks/: no cycle, no private name, layers kept.

Walks every module's ``import`` statements with ``ast`` (no module is imported). Counted:
module-level imports AND imports inside functions (a lazy import is still a dependency: it
runs, just later); not counted: imports under ``if TYPE_CHECKING:`` (they never run).
``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import PROJECT_ROOT

#: Import name -> folder, as the wheel installs them (setuptools package-dir).
PACKAGES = {
    "model_diff": PROJECT_ROOT / "model_diff",
    "model_diff.gitdriver": PROJECT_ROOT / "gitdriver",
    "model_diff.hooks": PROJECT_ROOT / "hooks",
}
#: The front end: the only modules of model_diff/ that may import click, gitdriver or hooks.
FRONT_END = ("model_diff.cli", "model_diff.__main__")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for f in sorted(folder.rglob("*.py")):
            parts = list(f.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = f
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that runs (TYPE_CHECKING blocks skipped), at any depth."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[tuple[str, str | None]]:
    """(imported module, imported name or None) for one statement."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, None
        return
    if node.level:
        pkg = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
        base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    for alias in node.names:
        yield target, alias.name


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        edges = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            for target, name in _targets(module, node):
                sub = f"{target}.{name}" if name else None
                hit = sub if sub in MODULES else target
                if hit in MODULES and hit != module:
                    edges.add(hit)
        graph[module] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walk_sees_the_packages_and_their_edges() -> None:
    """The walker finds the modules and known edges (so the tests below check something)."""
    graph = _graph()
    assert len(MODULES) > 60
    assert "model_diff.analysis" in graph["model_diff.pipeline"]
    assert "model_diff.gitdriver.spec" in graph["model_diff.hooks.gate"]
    # a function-level import counts: the checkpoint computes its stats with metrics
    assert "model_diff.metrics" in graph["model_diff.checkpoint"]


def test_there_is_no_import_cycle() -> None:
    """No module imports, directly or through others, one that imports it back."""
    graph = _graph()
    cycles = _cycles(graph)
    detail = [[f"{a} -> {b}" for a in c for b in sorted(graph[a]) if b in c] for c in cycles]
    assert cycles == [], detail


def test_no_private_name_is_imported_across_modules() -> None:
    """No `from x import _name` and no `import _x` / `x._y`, ours or a dependency's."""
    found = []
    for module, path in MODULES.items():
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            for target, name in _targets(module, node):
                dotted = f"{target}.{name}" if name else target
                if any(p.startswith("_") and not p.startswith("__") for p in dotted.split(".")):
                    found.append(f"{module}: {type(node).__name__} {dotted} (line {node.lineno})")
    assert found == []


def test_the_engine_imports_neither_click_nor_gitdriver_nor_hooks() -> None:
    """Only the front end (cli*, __main__) wires click, gitdriver and hooks to the engine."""
    found = []
    for module, path in MODULES.items():
        if not module.startswith("model_diff.") or module.startswith(
            ("model_diff.gitdriver", "model_diff.hooks", "model_diff.cli", *FRONT_END)
        ):
            continue
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            for target, _ in _targets(module, node):
                if target.split(".")[0] == "click" or target.startswith(
                    ("model_diff.gitdriver", "model_diff.hooks")
                ):
                    found.append(f"{module} imports {target}")
    assert found == []
