"""Is a new snapshot a real backup? Pure checks on its file listing (`restic ls --json`).

Backup tools fail quietly: restic 0.14 skips a path that does not exist and still exits 0,
and a dump hook that wrote nothing leaves a zero-byte file that restic saves happily. So a
snapshot counts only if every expected path is in it, it holds data, and no file that the
labels or the pre-hook name is empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from coopbot.backups.labels import ROOT


@dataclass(frozen=True)
class Node:
    path: str
    type: str  # "file", "dir", "symlink", ...
    size: int = 0


@dataclass(frozen=True)
class VolumeStats:
    name: str
    files: int
    bytes: int


@dataclass(frozen=True)
class Verification:
    files: int
    bytes: int
    volumes: tuple[VolumeStats, ...]
    problems: tuple[str, ...]  # room-safe sentences (paths inside /backup only)

    @property
    def ok(self) -> bool:
        return not self.problems

    def with_problem(self, problem: str) -> Verification:
        return Verification(self.files, self.bytes, self.volumes, (*self.problems, problem))


def verify(nodes: Iterable[Node], expected: Sequence[str],
           named_files: Sequence[str]) -> Verification:
    by_path = {node.path: node for node in nodes}
    problems = [f"`{path}` is missing from the snapshot" for path in expected
                if path not in by_path]
    files = [n for n in by_path.values() if n.type == "file" and _under(n.path, expected)]
    total = sum(n.size for n in files)
    if not files:
        problems.append("the snapshot holds no files")
    elif total == 0:
        problems.append(f"the snapshot's {len(files)} file(s) are all empty")
    for path in named_files:
        node = by_path.get(path)
        if node is not None and node.type == "file" and node.size == 0:
            problems.append(f"`{path}` is empty (0 bytes): the dump did not write anything")
    volumes: dict[str, list[Node]] = {}
    for path in expected:
        volumes.setdefault(_volume_of(path), [])
    for node in files:
        volumes.setdefault(_volume_of(node.path), []).append(node)
    stats = tuple(VolumeStats(name, len(found), sum(n.size for n in found))
                  for name, found in volumes.items())
    return Verification(len(files), total, stats, tuple(problems))


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(f"{root}/") for root in roots)


def _volume_of(path: str) -> str:
    """`/backup/db/dump.sql` -> `db`."""
    return path.removeprefix(f"{ROOT}/").split("/", 1)[0]
