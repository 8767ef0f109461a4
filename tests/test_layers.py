"""The packages of coopbot form layers: no sub-package imports one that imports it back.

Every module under coopbot/ (and commands/, imported as coopbot.commands) is parsed, and its
module-level imports are folded into a graph between sub-packages (coopbot.store,
coopbot.approvals, ...; a top-level module such as coopbot.pipeline is its own node). Imports
under `if TYPE_CHECKING:` only serve the type checker and do not count; nor do imports inside
functions.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"coopbot": ROOT / "coopbot", "coopbot.commands": ROOT / "commands"}

# Cycles between sub-packages that are known and not yet broken, as sorted pairs of nodes.
KNOWN_CYCLES: frozenset[tuple[str, str]] = frozenset()


def modules() -> Iterator[tuple[str, Path]]:
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join((package, *parts)), path


def node(module: str) -> str:
    """The sub-package a module belongs to (coopbot.store.approvals -> coopbot.store), or the
    module itself when it sits at the top (coopbot.pipeline)."""
    parts = module.split(".")
    if len(parts) <= 2:
        return module
    return ".".join(parts[:2])


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_level_imports(tree: ast.Module, module: str, is_package: bool) -> Iterator[str]:
    """The coopbot modules imported at module level (also under plain `if` and `try`)."""
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        statement = stack.pop()
        if isinstance(statement, ast.Import):
            yield from (alias.name for alias in statement.names)
        elif isinstance(statement, ast.ImportFrom):
            if statement.level:
                base = module.split(".")
                base = base[:len(base) - statement.level + (1 if is_package else 0)]
                name = ".".join(base + ([statement.module] if statement.module else []))
            else:
                name = statement.module or ""
            yield name
            # `from coopbot import pipeline` imports the module coopbot.pipeline.
            yield from (f"{name}.{alias.name}" for alias in statement.names)
        elif isinstance(statement, ast.If):
            if not is_type_checking(statement.test):
                stack.extend(statement.body)
            stack.extend(statement.orelse)
        elif isinstance(statement, ast.Try):
            stack.extend(statement.body + statement.orelse + statement.finalbody)
            for handler in statement.handlers:
                stack.extend(handler.body)


def package_graph() -> dict[str, set[str]]:
    known = dict(modules())
    graph: dict[str, set[str]] = {node(name): set() for name in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for imported in module_level_imports(tree, name, path.name == "__init__.py"):
            if imported not in known:
                continue  # a name from a module, or another distribution
            source, target = node(name), node(imported)
            if source != target and target != "coopbot":
                graph[source].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(vertex: str) -> None:
        index[vertex] = low[vertex] = len(index)
        stack.append(vertex)
        on_stack.add(vertex)
        for successor in sorted(graph.get(vertex, ())):
            if successor not in index:
                visit(successor)
                low[vertex] = min(low[vertex], low[successor])
            elif successor in on_stack:
                low[vertex] = min(low[vertex], index[successor])
        if low[vertex] == index[vertex]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == vertex:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for vertex in sorted(graph):
        if vertex not in index:
            visit(vertex)
    return found


def without_known(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {source: {target for target in targets
                     if tuple(sorted((source, target))) not in KNOWN_CYCLES}
            for source, targets in graph.items()}


def test_the_graph_sees_the_packages_and_their_imports() -> None:
    graph = package_graph()
    assert {"coopbot.approvals", "coopbot.store", "coopbot.matrix", "coopbot.commands",
            "coopbot.app", "coopbot.pipeline"} <= set(graph)
    assert "coopbot.store" in graph["coopbot.approvals"]
    assert "coopbot.approvals" in graph["coopbot.app"]


def test_no_sub_package_imports_one_that_imports_it_back() -> None:
    found = cycles(without_known(package_graph()))
    assert found == [], "import cycles between sub-packages: " + "; ".join(
        " <-> ".join(component) for component in found)


def test_type_checking_imports_do_not_count() -> None:
    tree = ast.parse("from typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    from coopbot.store import audit\n"
                     "import coopbot.ids\n")
    assert set(module_level_imports(tree, "coopbot.x", False)) == {
        "typing", "typing.TYPE_CHECKING", "coopbot.ids"}


def test_a_cycle_is_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
