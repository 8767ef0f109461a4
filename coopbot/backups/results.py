"""What a backup or restore did, and how the room is told. Sentences are built from facts we
checked (names, ids, counts), never from raw tool output."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from coopbot.backups.layout import volumes_in
from coopbot.backups.output import Snapshot
from coopbot.backups.verify import VolumeStats
from coopbot.operations.checkpoints import VolumeRestore, volume_lines
from coopbot.operations.plan import Binding, PlannedChange
from coopbot.recipes.apps import App


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class CopyResult:
    """A verified snapshot's copy in one of the server's copy repositories."""

    repository: str  # its name under backups.<server>.copies
    ok: bool
    problem: str = ""  # room-safe

    def describe(self) -> str:
        if self.ok:
            return f"- copy in `{self.repository}`: verified"
        return f"- copy in `{self.repository}` FAILED: {self.problem}"


@dataclass(frozen=True)
class BackupResult:
    app: str
    server: str
    snapshot_id: str  # short id of the verified snapshot
    version: str | None
    reason: str
    files: int
    bytes: int
    volumes: tuple[VolumeStats, ...]
    seconds: float
    copies: tuple[CopyResult, ...] = ()

    @property
    def copied(self) -> bool:
        """Every configured copy holds the snapshot, verified."""
        return all(c.ok for c in self.copies)

    def describe(self) -> str:
        lines = [
            f"**`{self.app}` backed up** on {self.server}: snapshot `{self.snapshot_id}` "
            f"({self.version or 'unknown version'}), verified: {self.files} file(s), "
            f"{human_bytes(self.bytes)}, in {self.seconds:.0f} s."
        ]
        lines += [f"- volume `{v.name}`: {v.files} file(s), {human_bytes(v.bytes)}"
                  for v in self.volumes]
        lines += [c.describe() for c in self.copies]
        return "\n".join(lines)


@dataclass(frozen=True)
class SnapshotPlan:
    """An operation on a snapshot as approvers see it; `binding` changes whenever the
    snapshot or app does."""

    app: str
    binding: Binding
    lines: tuple[str, ...]

    def planned(self) -> PlannedChange:
        return PlannedChange(binding=self.binding, lines=list(self.lines), app=self.app)


@dataclass(frozen=True)
class RestorePlan(SnapshotPlan):

    @staticmethod
    def of(app: App, snapshot: Snapshot, deployed: str | None,
           node: str | None = None) -> RestorePlan:
        """`node`: the node a member named (`--node`); the vote binds to it."""
        # The snapshot stands in the target version's place.
        binding = Binding(kind="restore", app=app.name, server=app.server,
                          from_version=deployed, to_version=f"snapshot {snapshot.id}", node=node)
        volumes = sorted(v.name for v in volumes_in(snapshot, app.stack_name))
        where = f" (the copy on node {node})" if node else ""
        return RestorePlan(app.name, binding, (
            f"restore `{app.name}` on {app.server} from snapshot `{snapshot.short_id}` of "
            f"{when(snapshot.time)} ({snapshot.tag('version') or 'unknown version'}); "
            f"running now: {deployed or 'unknown version'}",
            f"volumes replaced{where}: {', '.join(f'`{v}`' for v in volumes)}",
        ))


@dataclass(frozen=True)
class ExportPlan(SnapshotPlan):
    @staticmethod
    def of(app: App, snapshot: Snapshot, exports_dir: str) -> ExportPlan:
        binding = Binding(kind="export", app=app.name, server=app.server,
                          to_version=f"snapshot {snapshot.id}")
        volumes = sorted(v.name for v in volumes_in(snapshot, app.stack_name))
        return ExportPlan(app.name, binding, (
            f"export snapshot `{snapshot.short_id}` of `{app.name}` ({when(snapshot.time)}, "
            f"{snapshot.tag('version') or 'unknown version'}) to a tar.gz in {exports_dir} "
            f"on {app.server}",
            f"volumes: {', '.join(f'`{v}`' for v in volumes)}",
        ))


@dataclass(frozen=True)
class ExportResult:
    app: str
    server: str
    snapshot: Snapshot
    path: str  # on the server
    bytes: int
    entries: int
    seconds: float

    def describe(self) -> str:
        return (
            f"**`{self.app}` exported** on {self.server}: snapshot `{self.snapshot.short_id}` "
            f"of {when(self.snapshot.time)} ({self.snapshot.tag('version') or 'unknown version'})"
            f" is in `{self.path}` ({human_bytes(self.bytes)}, {self.entries} entries, in "
            f"{self.seconds:.0f} s), laid out as backup-bot-two's download: "
            "`var/lib/docker/volumes/<volume>/_data/`."
        )


@dataclass(frozen=True)
class RestoreResult:
    app: str
    server: str
    snapshot: Snapshot
    safety_snapshot: str | None  # the backup taken just before, if one was
    volumes: tuple[VolumeRestore, ...]
    seconds: float

    def describe(self) -> str:
        lines = [
            f"**`{self.app}` restored** on {self.server} from snapshot "
            f"`{self.snapshot.short_id}` of {when(self.snapshot.time)} "
            f"({self.snapshot.tag('version') or 'unknown version'}), converged and healthy "
            f"in {self.seconds:.0f} s."
        ]
        lines += volume_lines(self.volumes)
        if self.safety_snapshot:
            lines.append(f"The data as it was before is in snapshot `{self.safety_snapshot}`.")
        return "\n".join(lines)


@dataclass(frozen=True)
class ScheduledBackup:
    """One app's scheduled backup, for the composition root to route (failures to the app's
    notification room)."""

    app: str
    server: str
    ok: bool
    message: str  # room-safe
    result: BackupResult | None = None
    pruned: int = 0  # snapshots `forget --prune` removed afterwards
