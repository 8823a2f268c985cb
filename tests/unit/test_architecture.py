"""The shape of `worker/`: small modules, folders by layer, no upward import."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "worker"
MAX_MODULE_LINES = 250
MAX_FUNCTION_LINES = 50
MAX_TOP_LEVEL_MODULES = 8
MAX_PACKAGE_MODULES = 10
MAX_PROJECT_IMPORTS = 10

# Lowest first: a module may import its own layer and those before it, never after.
LAYERS = [
    {"worker", "worker.config", "worker.errors", "worker.exits", "worker.logs"},
    {"worker.api", "worker.files", "worker.flow", "worker.report"},
    {"worker.run", "worker.collect", "worker.sim", "worker.page"},
    {"worker.app"},
    {"worker.cli", "worker.__main__"},
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """The project modules `name` imports, lazily or not."""
    tree = ast.parse(MODULES[name].read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in MODULES else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in MODULES and m != name}


def _layer(name: str) -> int:
    for depth in range(name.count(".") + 1, 0, -1):
        prefix = ".".join(name.split(".")[:depth])
        for index, members in enumerate(LAYERS):
            if prefix in members:
                return index
    raise AssertionError(f"{name} belongs to no layer: add it to LAYERS")


def _functions(path: Path) -> Iterator[tuple[str, int]]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            yield node.name, node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_and_functions_are_small(name: str) -> None:
    path = MODULES[name]
    assert path.read_text().count("\n") <= MAX_MODULE_LINES
    long = [(f, n) for f, n in _functions(path) if n > MAX_FUNCTION_LINES]
    assert not long, f"{name}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_folders_hold_few_modules() -> None:
    top = list(ROOT.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, sorted(p.name for p in top)
    for package in (p for p in ROOT.iterdir() if (p / "__init__.py").exists()):
        modules = list(package.glob("*.py"))
        assert len(modules) <= MAX_PACKAGE_MODULES, package.name


def test_every_package_says_what_it_owns() -> None:
    for package in (p for p in ROOT.iterdir() if (p / "__init__.py").exists()):
        tree = ast.parse((package / "__init__.py").read_text())
        assert ast.get_docstring(tree), f"{package.name}/__init__.py has no docstring"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_few_project_imports_and_none_upward(name: str) -> None:
    imports = _imports(name)
    assert len(imports) <= MAX_PROJECT_IMPORTS, sorted(imports)
    upward = [m for m in imports if _layer(m) > _layer(name)]
    assert not upward, f"{name} imports a layer above it: {upward}"


def test_no_import_cycle() -> None:
    graph = {name: _imports(name) for name in MODULES}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = [*path[path.index(name) :], name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for imported in graph[name]:
            visit(imported, [*path, name])
        done.add(name)

    for name in graph:
        visit(name, [])


def _rooted_at_stats(node: ast.expr) -> bool:
    """True for `stats.x`, `self.stats.x[k]`, `parts.tally.stats.y` and the like."""
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
        if isinstance(node, ast.Attribute) and node.attr == "stats":
            return True
        if isinstance(node, ast.Name) and node.id == "stats":
            return True
    return False


def test_only_the_tally_changes_the_run_counts() -> None:
    owner = {"worker.report.tally", "worker.report.stats"}
    changes = []
    for name, path in MODULES.items():
        if name in owner or name.startswith("worker.sim"):  # the simulator's own
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"add", "setdefault", "update", "clear"}
            ):
                targets = [node.func]
            line = getattr(node, "lineno", 0)
            changes += [f"{name}:{line}" for t in targets if _rooted_at_stats(t)]
    assert not changes, f"RunStats changed outside report/tally.py: {changes}"
