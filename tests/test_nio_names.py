"""Every matrix-nio name coopbot uses exists in the installed matrix-nio.

A missing attribute only fails when its line runs (a background task died at start-up on
`nio.RelationshipType`, which matrix-nio 0.26 exports from `nio.api` only): this reads the
source, so every use is checked, run or not.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import nio

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "coopbot").rglob("*.py"), *(ROOT / "commands").rglob("*.py")])


def _chain(node: ast.expr) -> list[str] | None:
    """`nio.api.RelationshipType` -> ["nio", "api", "RelationshipType"]; None if not nio."""
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "nio":
        return ["nio", *reversed(names)]
    return None


def nio_references() -> set[tuple[str, str]]:
    """(file, dotted name) of every `nio.X[.Y...]` attribute chain and `from nio... import X`."""
    found: set[tuple[str, str]] = set()
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        where = str(path.relative_to(ROOT))
        # Only the outermost attribute of `nio.a.b` is checked (it covers its prefixes).
        inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and id(node) not in inner:
                chain = _chain(node)
                if chain is not None:
                    found.add((where, ".".join(chain)))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "nio":
                found.update((where, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def resolves(dotted: str) -> bool:
    """Whether `nio.a.b` resolves: attribute by attribute, importing submodules as Python
    would for `from nio.a import b`."""
    parts = dotted.split(".")
    target: object = nio
    for index, part in enumerate(parts[1:], start=1):
        if hasattr(target, part):
            target = getattr(target, part)
            continue
        try:
            target = importlib.import_module(".".join(parts[: index + 1]))
        except ImportError:
            return False
    return True


def test_the_scan_finds_the_uses() -> None:
    names = {name for _, name in nio_references()}
    # Spot checks that the scan sees attribute chains and imports at all.
    assert "nio.AsyncClient" in names
    assert any(name.endswith("RelationshipType") for name in names)


def test_every_nio_name_coopbot_uses_exists() -> None:
    missing = sorted(f"{where}: {name}" for where, name in nio_references()
                     if not resolves(name))
    assert not missing, "not in the installed matrix-nio:\n" + "\n".join(missing)


def test_a_missing_name_is_caught() -> None:
    assert not resolves("nio.NoSuchClient")
    assert not resolves("nio.api.NoSuchType")
    assert resolves("nio.api.RelationshipType") and resolves("nio.RoomMessageText")
