"""The package's shape, which docs/design.md describes: no import cycle, modules small enough to
read in one sitting, and a command line that uses only the public API."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import augcam

PACKAGE = Path(augcam.__file__).parent
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """augcam modules that `path` imports anywhere (functions included), except under TYPE_CHECKING
    and the root package itself (which only forwards names lazily)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("augcam"):
                for alias in child.names:
                    submodule = f"{child.module}.{alias.name}"
                    found.add(submodule if submodule in MODULES else child.module)
            elif isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names if alias.name.startswith("augcam."))
            visit(child)

    visit(ast.parse(path.read_text()))
    return {name for name in found if name in MODULES and name != "augcam"}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph`, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_anywhere_in_the_package():
    graph = {name: _imports(path) - {name} for name, path in MODULES.items()}
    assert _cycle(graph) is None, " → ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_reads_in_one_sitting(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]}: {lines} lines; split it by what its parts do"


def test_the_command_line_uses_only_the_public_api():
    tree = ast.parse(MODULES["augcam.cli"].read_text())
    imported = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    internal = [
        ast.unparse(node)
        for node in imported
        if (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("augcam."))
        or (isinstance(node, ast.Import) and any(a.name.startswith("augcam.") for a in node.names))
    ]
    assert not internal
    from_root = {
        alias.name
        for node in imported
        if isinstance(node, ast.ImportFrom) and node.module == "augcam"
        for alias in node.names
    }
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "augcam"
    }
    assert (from_root | used) <= set(augcam.__all__), sorted((from_root | used) - set(augcam.__all__))


@pytest.mark.parametrize("name", sorted(set(augcam.__all__) - {"__version__"}))
def test_every_public_name_resolves(name):
    assert getattr(augcam, name) is not None
