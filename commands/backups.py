"""Backup commands: backup, snapshots (read), restore and export. Parsing, roles, approvals
and error reporting are the pipeline's; this module declares the commands and hands each to
the BackupService."""

from __future__ import annotations

from coopbot.args import APP, NODE, SNAPSHOT
from coopbot.backups import output
from coopbot.backups.layout import BACKUP_BOT_TWO
from coopbot.backups.results import human_bytes, when
from coopbot.backups.service import BackupService
from coopbot.invocation import Invocation
from coopbot.operation_kinds import OperationKind
from coopbot.operations.plan import PlannedChange
from coopbot.registry import Arg, CommandSpec, Flag, Operation
from coopbot.replies import Reply

SNAPSHOTS_SHOWN = 20


class BackupCommands:
    def __init__(self, backups: BackupService, *, read_role: str, change_role: str) -> None:
        self._backups = backups
        self._read = read_role
        self._change = change_role

    def specs(self) -> list[CommandSpec]:
        app = Arg("app", help="the app's name: its env file name, usually its domain", kind=APP)
        node = Flag("node", help="for a stopped app whose volumes exist on several nodes: "
                                 "the node whose copy is its data (hostname or node id)",
                    value=Arg("node", kind=NODE), needs_value=True)
        return [
            CommandSpec(
                "backup", "back up an app's labelled volumes now, and verify the snapshot",
                self._change, self.backup, args=(app,), flags=(node,),
                operation=Operation(OperationKind.BACKUP, self._plan_backup),
                details="Runs the backupbot pre-hooks in the running containers, snapshots "
                        "the volumes with restic (read-only), runs the post-hooks, then checks "
                        "that every expected path is in the snapshot and that no dump is empty. "
                        "A stopped app whose volumes exist on several nodes needs `--node`.",
                examples=("!backup blog.example.org",
                          "!backup blog.example.org --node worker-2")),
            CommandSpec(
                "snapshots", "an app's backups, newest first: time, version, size "
                "(backup-bot-two's too)",
                self._read, self.snapshots, args=(app,),
                examples=("!snapshots blog.example.org",)),
            CommandSpec(
                "restore", "put an app's volumes back as they were in a snapshot",
                self._change, self.restore,
                args=(app, Arg("snapshot", optional=True, kind=SNAPSHOT,
                               help="a snapshot id from `!snapshots` (default: the newest "
                                    "verified one; backup-bot-two's by id only)")),
                flags=(node,),
                operation=Operation(OperationKind.RESTORE, self._plan_restore),
                details="Backs up the current data first, runs the restore pre-hooks, stops "
                        "the services that use the volumes, replaces the snapshot's paths, "
                        "starts them again, runs the restore post-hooks and waits until the "
                        "app is healthy. If it fails midway it says which volume is in which "
                        "state. A stopped app whose volumes exist on several nodes needs "
                        "`--node`.",
                examples=("!restore blog.example.org", "!restore blog.example.org 1a2b3c4d")),
            CommandSpec(
                "export", "write a snapshot of an app to a tar.gz on its server",
                self._change, self.export,
                args=(app, Arg("snapshot", optional=True, kind=SNAPSHOT,
                               help="a snapshot id from `!snapshots` (default: the newest "
                                    "verified one)")),
                operation=Operation(OperationKind.EXPORT, self._plan_export),
                details="Restores the snapshot's volumes into a tar.gz in the server's "
                        "exports folder (`backups.<server>.exports_dir`), laid out as "
                        "backup-bot-two's download: `var/lib/docker/volumes/<volume>/_data/`. "
                        "The app is not touched. The answer gives the file's path.",
                examples=("!export blog.example.org", "!export blog.example.org 1a2b3c4d")),
        ]

    async def _plan_export(self, inv: Invocation) -> PlannedChange:
        plan = await self._backups.plan_export(inv.args["app"], inv.room, inv.arg("snapshot"))
        return plan.planned()

    async def export(self, inv: Invocation) -> Reply:
        result = await self._backups.export(
            inv.args["app"], inv.room, inv.sender, inv.progress, inv.arg("snapshot"),
            room_id=inv.room_id, event_id=inv.event_id, approvers=inv.approvers,
            expected_binding=inv.expected_binding)
        return Reply.of(result.describe())

    async def _plan_restore(self, inv: Invocation) -> PlannedChange:
        plan = await self._backups.plan_restore(inv.args["app"], inv.room, inv.arg("snapshot"),
                                                _node(inv))
        return plan.planned()

    async def _plan_backup(self, inv: Invocation) -> PlannedChange:
        return await self._backups.plan_backup(inv.args["app"], inv.room, _node(inv))

    async def backup(self, inv: Invocation) -> Reply:
        result = await self._backups.backup(
            inv.args["app"], inv.room, inv.sender, inv.progress, room_id=inv.room_id,
            event_id=inv.event_id, approvers=inv.approvers, node=_node(inv))
        return Reply.of(result.describe())

    async def snapshots(self, inv: Invocation) -> Reply:
        name = inv.args["app"]
        found = await self._backups.snapshots(name, inv.room)
        if not found:
            return Reply.of(f"`{name}` has no snapshots yet; `!backup {name}` takes one.")
        rows = []
        for snapshot in found[:SNAPSHOTS_SHOWN]:
            size = snapshot.size
            if output.MARK not in snapshot.tags:
                rows.append(f"- `{snapshot.short_id}` {when(snapshot.time)}, made by "
                            f"{BACKUP_BOT_TWO}, not verified by coopbot")
                continue
            rows.append(
                f"- `{snapshot.short_id}` {when(snapshot.time)}, "
                f"{snapshot.tag('version') or 'unknown version'}, "
                f"{human_bytes(size) if size is not None else 'size unknown'}"
                f"{'' if snapshot.verified else ', not verified'}"
                f" ({snapshot.tag('reason') or 'other'})"
            )
        more = len(found) - SNAPSHOTS_SHOWN
        tail = [f"{more} older snapshot(s) not shown."] if more > 0 else []
        return Reply.of("\n".join([f"**Snapshots of `{name}`** (newest first):", *rows, *tail]))

    async def restore(self, inv: Invocation) -> Reply:
        result = await self._backups.restore(
            inv.args["app"], inv.room, inv.sender, inv.progress, inv.arg("snapshot"),
            room_id=inv.room_id, event_id=inv.event_id, approvers=inv.approvers,
            expected_binding=inv.expected_binding, node=_node(inv))
        return Reply.of(result.describe())


def _node(inv: Invocation) -> str | None:
    return inv.arg("node")
