"""What restic's `--json` output says: backup summaries, snapshots, listings, forget. Pure.

restic mixes JSON with text on some commands (`forget --prune` prints the prune report after
its JSON line), so each parser picks the lines it knows and ignores the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from coopbot.backups.verify import Node
from coopbot.errors import ResticError

# Tags coopbot writes on every snapshot, as key=value (restic tags may not hold commas).
APP, VERSION, OPERATION, REASON, SIZE, FILES = "app", "version", "op", "reason", "size", "files"
NODE = "node"  # the swarm node id the helper ran on, as swarm itself told the helper
MARK, VERIFIED = "coopbot", "verified"


@dataclass(frozen=True)
class BackupSummary:
    snapshot_id: str
    files: int
    bytes: int


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: datetime
    paths: tuple[str, ...]
    tags: tuple[str, ...]
    original: str | None = None  # the id it had before `restic tag` rewrote it

    def tag(self, key: str) -> str | None:
        prefix = f"{key}="
        return next((t[len(prefix):] for t in self.tags if t.startswith(prefix)), None)

    @property
    def verified(self) -> bool:
        return VERIFIED in self.tags

    @property
    def size(self) -> int | None:
        value = self.tag(SIZE)
        return int(value) if value and value.isascii() and value.isdigit() else None


@dataclass(frozen=True)
class ForgetResult:
    kept: tuple[Snapshot, ...]
    removed: tuple[Snapshot, ...]


def tag(key: str, value: str) -> str:
    return f"{key}={value.replace(',', '_')}"


def parse_backup(stdout: str) -> BackupSummary:
    for item in _json_lines(stdout):
        if isinstance(item, dict) and item.get("message_type") == "summary":
            return BackupSummary(
                snapshot_id=str(item["snapshot_id"]),
                files=int(item.get("total_files_processed", 0)),
                bytes=int(item.get("total_bytes_processed", 0)),
            )
    raise ResticError("restic reported no snapshot for the backup",
                      detail=stdout[-2000:])


def parse_snapshots(stdout: str) -> list[Snapshot]:
    """Newest first."""
    for item in _json_lines(stdout):
        if isinstance(item, list):
            found = [_snapshot(s) for s in item]
            return sorted(found, key=lambda s: s.time, reverse=True)
    raise ResticError("restic listed no snapshots", detail=stdout[-2000:])


def parse_ls(stdout: str) -> list[Node]:
    return [
        Node(path=str(item["path"]), type=str(item.get("type", "")),
             size=int(item.get("size") or 0))
        for item in _json_lines(stdout)
        if isinstance(item, dict) and item.get("struct_type") == "node"
    ]


def parse_ls_tags(stdout: str) -> tuple[str, ...]:
    """The tags of the snapshot a `restic ls --json` listed (its first line)."""
    for item in _json_lines(stdout):
        if isinstance(item, dict) and item.get("struct_type") == "snapshot":
            return tuple(str(t) for t in item.get("tags") or ())
    return ()


def parse_forget(stdout: str) -> ForgetResult:
    for item in _json_lines(stdout):
        if isinstance(item, list):
            kept = [_snapshot(s) for group in item for s in group.get("keep") or []]
            removed = [_snapshot(s) for group in item for s in group.get("remove") or []]
            return ForgetResult(tuple(kept), tuple(removed))
    return ForgetResult((), ())  # nothing matched the filter: restic prints no groups


def _snapshot(item: dict[str, Any]) -> Snapshot:
    return Snapshot(
        id=str(item["id"]),
        short_id=str(item.get("short_id") or item["id"][:8]),
        time=datetime.fromisoformat(str(item["time"])).astimezone(UTC),
        paths=tuple(str(p) for p in item.get("paths") or ()),
        tags=tuple(str(t) for t in item.get("tags") or ()),
        original=str(item["original"]) if item.get("original") else None,
    )


def _json_lines(text: str) -> Iterator[Any]:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(("{", "[")):
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue
