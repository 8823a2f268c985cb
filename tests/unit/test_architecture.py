"""The shape of `worker/`: folders by layer, a bottom floor for the domain, no
upward import, no sibling import on the middle floor, no cycle between modules
or between packages, and few imports per module.

Sizes are not pinned: a module is cut where its concept splits, never to fit a
number (STYLE.md 2.10)."""

from __future__ import annotations

import ast
import functools
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "worker"
MAX_PROJECT_IMPORTS = 10
# The composition root knows every part by design: it alone builds a run.
COMPOSITION_ROOT = "worker.app"
MAX_ROOT_IMPORTS = 20

# Lowest first: a module may import its own layer and those before it, never after.
LAYERS = [
    {"worker", "worker.config", "worker.errors", "worker.exits", "worker.logs"},
    {"worker.domain"},
    {"worker.api", "worker.files", "worker.flow", "worker.report"},
    {"worker.run", "worker.collect", "worker.sim", "worker.page"},
    {"worker.app"},
    {"worker.cli", "worker.__main__"},
]
MIDDLE_FLOOR = LAYERS[2]
# Their own worlds: the simulator is a server, the command line only adapts.
OUTSIDE_PACKAGE_GRAPH = {"worker.sim", "worker.cli"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


@functools.cache
def _tree(name: str) -> ast.Module:
    """A module's syntax tree, parsed once for every test here."""
    return ast.parse(MODULES[name].read_text())


@functools.cache
def _imports(name: str) -> frozenset[str]:
    """The project modules `name` imports, lazily or not."""
    tree = _tree(name)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in MODULES else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return frozenset(m for m in found if m in MODULES and m != name)


def _layer(name: str) -> int:
    for depth in range(name.count(".") + 1, 0, -1):
        prefix = ".".join(name.split(".")[:depth])
        for index, members in enumerate(LAYERS):
            if prefix in members:
                return index
    raise AssertionError(f"{name} belongs to no layer: add it to LAYERS")


def _package(name: str) -> str | None:
    """`worker.flow` for `worker.flow.learn`; None for a top-level module."""
    parts = name.split(".")
    package = ".".join(parts[:2])
    return package if len(parts) > 2 or (ROOT / parts[-1]).is_dir() else None


def _package_graph() -> dict[str, set[str]]:
    """Which subpackage imports which, outside the simulator and the CLI."""
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        here = _package(name)
        if here is None or here in OUTSIDE_PACKAGE_GRAPH:
            continue
        for imported in _imports(name):
            there = _package(imported)
            if there not in (None, here, *OUTSIDE_PACKAGE_GRAPH):
                graph.setdefault(here, set()).add(str(there))
    return graph


def _find_cycle(graph: Mapping[str, AbstractSet[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            if (cycle := visit(nxt, [*path, node])) is not None:
                return cycle
        done.add(node)
        return None

    for node in sorted(graph):
        if (cycle := visit(node, [])) is not None:
            return cycle
    return None


def test_every_package_says_what_it_owns() -> None:
    for package in (p for p in ROOT.iterdir() if (p / "__init__.py").exists()):
        tree = ast.parse((package / "__init__.py").read_text())
        assert ast.get_docstring(tree), f"{package.name}/__init__.py has no docstring"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_few_project_imports_and_none_upward(name: str) -> None:
    imports = _imports(name)
    root = name.startswith(COMPOSITION_ROOT + ".")
    assert len(imports) <= (MAX_ROOT_IMPORTS if root else MAX_PROJECT_IMPORTS), sorted(
        imports
    )
    upward = [m for m in imports if _layer(m) > _layer(name)]
    assert not upward, f"{name} imports a layer above it: {upward}"


def test_no_import_cycle_between_modules() -> None:
    cycle = _find_cycle({name: _imports(name) for name in MODULES})
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycle_between_packages() -> None:
    cycle = _find_cycle(_package_graph())
    assert cycle is None, "package cycle: " + " -> ".join(cycle or [])


def test_the_middle_floor_never_imports_a_sibling() -> None:
    graph = _package_graph()
    siblings = {
        (package, imported)
        for package in MIDDLE_FLOOR
        for imported in graph.get(package, ())
        if imported in MIDDLE_FLOOR
    }
    assert not siblings, f"middle-floor packages import each other: {siblings}"


def test_the_domain_floor_imports_only_the_base() -> None:
    for name in (n for n in MODULES if n.startswith("worker.domain")):
        above = [m for m in _imports(name) if _layer(m) > 1]
        assert not above, f"{name} imports {above}"


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
    for name in MODULES:
        if name in owner or name.startswith("worker.sim"):  # the simulator's own
            continue
        for node in ast.walk(_tree(name)):
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


# Loaded only by what needs them: streams and proxies (aiohttp), a template
# (Jinja2), a Parquet table (pyarrow). A plain run starts without them.
LOADED_ON_DEMAND = {"aiohttp", "jinja2", "pyarrow"}
# What `mira-batch run` loads before its first request.
START_UP = ("worker.cli.main", "worker.app.run")


def _loaded_at_import(name: str) -> set[str]:
    """Every module `name` imports as it loads: not in a function, not under
    `if TYPE_CHECKING:`."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If):
                if not (
                    isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
                ):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
            elif isinstance(node, ast.ClassDef | ast.With):
                visit(node.body)

    visit(_tree(name).body)
    return found


def test_a_plain_run_starts_without_the_libraries_it_may_not_need() -> None:
    loaded: set[str] = set()
    pending = list(START_UP)
    while pending:
        name = pending.pop()
        if name in loaded:
            continue
        loaded.add(name)
        imported = _loaded_at_import(name)
        pending += [m for m in imported if m in MODULES]
        # A package's __init__ runs before any of its modules.
        pending += [p for m in imported for p in _parents(m) if p in MODULES]
        heavy = {m.split(".")[0] for m in imported} & LOADED_ON_DEMAND
        assert not heavy, f"{name} loads {sorted(heavy)} at import"


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]
