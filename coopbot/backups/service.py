"""Backups, snapshots and restores of apps: what the commands, the deployer and the scheduler
call. Takes the app lock and records an operation like the deployer does; the flows
themselves live in backup.py and restore.py.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from coopbot.backups import output
from coopbot.backups.backup import Say, app_tags, take_backup
from coopbot.backups.labels import volume_name
from coopbot.backups.layout import BACKUP_BOT_TWO, maker, volumes_in
from coopbot.backups.output import ForgetResult, Snapshot
from coopbot.backups.password import PasswordReader, read_password
from coopbot.backups.restic import Restic, Timeouts
from coopbot.backups.restore import restore_snapshot
from coopbot.backups.results import (
    BackupResult,
    ExportPlan,
    ExportResult,
    RestorePlan,
    RestoreResult,
    ScheduledBackup,
)
from coopbot.backups.target import AppTarget, load_target
from coopbot.config import BackupConfig, RoomConfig
from coopbot.errors import CoopbotError, NotFound, OperationFailed, UserError
from coopbot.ids import EventID, OperationID, RoomID, UserID
from coopbot.operations.checkpoints import RestoreProgress
from coopbot.operations.plan import Binding, PlanChanged, PlannedChange
from coopbot.operations.scope import AppScope
from coopbot.recipes.apps import App
from coopbot.servers.pool import ServerPool
from coopbot.status_message import TICK_SECONDS, Progress, Throttle
from coopbot.store.operations import OperationStore

log = logging.getLogger(__name__)

SCHEDULER = UserID("coopbot (schedule)")
DEFAULT_HOOK_TIMEOUT = 3600.0
SNAPSHOT_ID_MIN = 4
SAFE_PATH = re.compile(r"^[A-Za-z0-9._/-]+$")  # what an export's shell script may be given


class BackupService:
    def __init__(
        self,
        pool: ServerPool,
        scope: AppScope,
        operations: OperationStore,
        configs: Mapping[str, BackupConfig],
        password: PasswordReader = read_password,
        *,
        needs_backup: Callable[[str, RoomConfig | None, str], bool] | None = None,
        hook_timeout: float = DEFAULT_HOOK_TIMEOUT,
        timeouts: Timeouts | None = None,
        progress_tick: float = TICK_SECONDS,
    ) -> None:
        self._pool = pool
        self._scope = scope
        self._operations = operations
        self._configs = dict(configs)
        self._password = password
        # The restore policy's backup_first (global, room, app); default: back up first.
        self._needs_backup = needs_backup or (lambda kind, room, app: True)
        self._hook_timeout = hook_timeout
        self._timeouts = timeouts or Timeouts()
        self._restic: dict[str, Restic] = {}
        self._tick = progress_tick

    def configured(self, server: str) -> bool:
        return server in self._configs

    # --- backups -------------------------------------------------------------------------------

    async def backup(self, app_name: str, room: RoomConfig | None, requester: UserID,
                     progress: Progress, *, reason: str = "manual",
                     room_id: RoomID | None = None, event_id: EventID | None = None,
                     approvers: tuple[str, ...] = (), node: str | None = None,
                     ) -> BackupResult:
        """`node`: the node whose copy of a stopped app's volumes to back up (`--node`)."""
        app = await self._app(app_name, room)
        # A room waits on this one: its status ticks with the time so far until the answer.
        async with (Throttle(progress, tick=self._tick) as throttled,
                    self._operation(app, "backup", requester, room_id, event_id,
                                    approvers) as operation_id):
            target = await self._target(app, node)
            result = await take_backup(target, operation_id, reason, throttled.say)
            await self._operations.set_versions(operation_id, result.version, None)
            await self._operations.finish(
                operation_id, "ok", f"snapshot {result.snapshot_id}: {result.files} files, "
                f"{result.bytes} bytes, verified")
            return result

    async def backup_locked(self, app: App, operation_id: OperationID, progress: Progress, *,
                            reason: str) -> BackupResult:
        """A backup inside an operation that already holds the app's lock (upgrade, restore);
        the snapshot carries that operation's id. That operation's progress ticks already."""
        target = await self._target(app)
        return await take_backup(target, operation_id, reason, Throttle(progress).say)

    async def before_operation(self, app: App, operation_id: OperationID, kind: str,
                               progress: Progress) -> str | None:
        """The deployer's pre-operation backup, its snapshot. Apps without backups configured
        or labelled are let through (with a note); a backup that fails raises, which stops
        the operation."""
        if not self.configured(app.server):
            return None
        target = await self._target(app)
        say = Throttle(progress).say
        if not target.plan.services:
            await say(f"{kind} `{app.name}`: no backupbot labels, so no backup is taken first")
            return None
        return (await take_backup(target, operation_id, f"pre-{kind}", say)).snapshot_id

    async def apply_retention(self, app: App) -> ForgetResult:
        """`forget --prune` of this app's snapshots by the server's retention policy."""
        return await self._restic_for(app.server).forget_by_policy(
            app_tags(app.name), self._config(app.server).retention)

    async def scheduled(self, server: str, progress: Progress) -> list[ScheduledBackup]:
        """Back up every labelled app of `server`, each followed by retention; one result per
        app that has something to back up (apps without labels or not deployed are skipped)."""
        results = []
        for app in await asyncio.to_thread(self._scope.apps, None, server):
            try:
                target = await self._target(app)
            except NotFound:
                continue  # not deployed: nothing runs, nothing to back up
            except CoopbotError as error:
                results.append(ScheduledBackup(app.name, server, False, str(error)))
                continue
            if not target.plan.services:
                continue
            results.append(await self._scheduled_one(app, progress))
        return results

    async def _scheduled_one(self, app: App, progress: Progress) -> ScheduledBackup:
        try:
            result = await self.backup(app.name, None, SCHEDULER, progress, reason="schedule")
        except CoopbotError as error:
            log.warning("scheduled backup of %s failed: %s (%s)", app.name, error, error.detail)
            return ScheduledBackup(app.name, app.server, False,
                                   f"scheduled backup of `{app.name}` failed: {error}")
        try:
            forgotten = await self.apply_retention(app)
        except CoopbotError as error:
            log.warning("retention of %s failed: %s (%s)", app.name, error, error.detail)
            return ScheduledBackup(app.name, app.server, False,
                                   f"scheduled backup of `{app.name}` is done (snapshot "
                                   f"`{result.snapshot_id}`), but applying the retention "
                                   f"policy failed: {error}", result)
        if not result.copied:
            # Worth a word in the room: the off-site copy is the point of having one.
            failed = "; ".join(f"`{c.repository}`: {c.problem}" for c in result.copies if not c.ok)
            return ScheduledBackup(app.name, app.server, False,
                                   f"scheduled backup of `{app.name}` is done (snapshot "
                                   f"`{result.snapshot_id}`, verified), but copying it failed: "
                                   f"{failed}", result, pruned=len(forgotten.removed))
        return ScheduledBackup(app.name, app.server, True, result.describe(), result,
                               pruned=len(forgotten.removed))

    # --- snapshots and restores ----------------------------------------------------------------

    async def snapshots(self, app_name: str, room: RoomConfig | None) -> list[Snapshot]:
        """The app's snapshots, newest first."""
        return await self._snapshots_of(await self._app(app_name, room))

    async def restore(self, app_name: str, room: RoomConfig | None, requester: UserID,
                      progress: Progress, snapshot_id: str | None = None, *,
                      backup_first: bool | None = None, room_id: RoomID | None = None,
                      event_id: EventID | None = None, approvers: tuple[str, ...] = (),
                      expected_binding: Binding | None = None,
                      node: str | None = None) -> RestoreResult:
        """Restore `snapshot_id` (default: the newest verified one) into the app's volumes
        (a stopped app's: the copy on `node`, when a member named it)."""
        app = await self._app(app_name, room)
        async with (Throttle(progress, tick=self._tick) as throttled,
                    self._operation(app, "restore", requester, room_id, event_id,
                                    approvers) as operation_id):
            say = throttled.say
            # The snapshot is chosen before the safety backup, which becomes the newest one.
            snapshot = await self.find_snapshot(app, snapshot_id)
            target = await self._target(app, node)
            planned = RestorePlan.of(app, snapshot, target.version, node)
            PlanChanged.check(expected_binding, planned.planned())
            await self._operations.set_versions(operation_id, target.version,
                                                snapshot.tag(output.VERSION))
            safety = (backup_first if backup_first is not None
                      else self._needs_backup("restore", room, app.name))
            result = await self._restore_into(app, operation_id, snapshot, target, say, safety)
            await self._operations.finish(
                operation_id, "ok", f"restored snapshot {snapshot.short_id}"
                + (f"; data from before in {result.safety_snapshot}"
                   if result.safety_snapshot else ""))
            return result

    async def restore_locked(self, app: App, operation_id: OperationID, snapshot_id: str,
                             progress: Progress, room: RoomConfig | None) -> str:
        """A restore inside an operation that already holds the app's lock (a failed upgrade
        returning its data, policy restore_on_failure: always); the restore policy's
        backup_first keeps the data it replaces. The result as a room sentence."""
        snapshot = await self.find_snapshot(app, snapshot_id)
        target = await self._target(app)
        result = await self._restore_into(app, operation_id, snapshot, target,
                                          Throttle(progress).say,
                                          self._needs_backup("restore", room, app.name))
        return result.describe()

    async def pre_upgrade_snapshot(self, app: App, version: str) -> str | None:
        """The newest verified snapshot an upgrade from `version` took first."""
        for snapshot in await self._snapshots_of(app):
            if (snapshot.verified and snapshot.tag(output.REASON) == "pre-upgrade"
                    and snapshot.tag(output.VERSION) == version):
                return snapshot.short_id
        return None

    async def _restore_into(self, app: App, operation_id: OperationID, snapshot: Snapshot,
                            target: AppTarget, say: Say, safety: bool) -> RestoreResult:
        """The restore itself, with the safety backup first when `safety`, each step
        checkpointed in the operation's record."""

        async def safety_backup() -> str | None:
            if not safety:
                return None
            await say(f"restore `{app.name}`: backing up the current data first...")
            try:
                taken = await take_backup(target, operation_id, "pre-restore", say)
            except CoopbotError as error:
                raise OperationFailed(f"restore of `{app.name}` did not run, nothing was "
                                      f"changed: the backup before it failed: {error}",
                                      detail=error.detail) from error
            return taken.snapshot_id

        async def checkpoint(progress: RestoreProgress) -> None:
            await self._operations.checkpoint(operation_id, progress.encode())

        return await restore_snapshot(target, snapshot, say, safety_backup, checkpoint)

    async def plan_restore(self, app_name: str, room: RoomConfig | None,
                           snapshot_id: str | None, node: str | None = None) -> RestorePlan:
        """What a restore would do now, changing nothing (votes bind to its `binding`)."""
        app = await self._app(app_name, room)
        snapshot = await self.find_snapshot(app, snapshot_id)
        target = await self._target(app, node)
        return RestorePlan.of(app, snapshot, target.version, node)

    async def plan_backup(self, app_name: str, room: RoomConfig | None,
                          node: str | None) -> PlannedChange:
        """A backup binds to its app, and to the node a member named: that node is checked
        before anyone votes (a node of the server, holding the data)."""
        lines = [f"back up `{app_name}`"]
        if node is not None:
            target = await self._target(await self._app(app_name, room), node)
            lines = [f"back up `{app_name}` (the copy on node {target.node.hostname})"]
        return PlannedChange(binding=Binding(kind="backup", app=app_name, node=node),
                             lines=lines, app=app_name)

    async def export(self, app_name: str, room: RoomConfig | None, requester: UserID,
                     progress: Progress, snapshot_id: str | None = None, *,
                     room_id: RoomID | None = None, event_id: EventID | None = None,
                     approvers: tuple[str, ...] = (),
                     expected_binding: Binding | None = None) -> ExportResult:
        """A tar.gz of a snapshot's volumes (default: the newest verified one) on the server,
        in backup-bot-two's download layout, for moving an app or reading its data."""
        app = await self._app(app_name, room)
        started = time.monotonic()
        async with (Throttle(progress, tick=self._tick) as throttled,
                    self._operation(app, "export", requester, room_id, event_id,
                                    approvers) as operation_id):
            say = throttled.say
            snapshot = await self.find_snapshot(app, snapshot_id)
            exports_dir = self._config(app.server).exports_dir
            PlanChanged.check(expected_binding,
                              ExportPlan.of(app, snapshot, exports_dir).planned())
            volumes = await self._export_volumes(app, snapshot)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            file_name = f"{app.stack_name}-{snapshot.short_id}-{stamp}.tar.gz"
            await say(f"export `{app.name}`: restoring snapshot `{snapshot.short_id}` into a "
                      "tar.gz on the server...")
            size, entries = await self._restic_for(app.server).export(
                snapshot.id, volumes, file_name)
            path = f"{exports_dir.rstrip('/')}/{file_name}"
            await self._operations.finish(operation_id, "ok",
                                          f"exported snapshot {snapshot.short_id} to {path}")
            return ExportResult(app.name, app.server, snapshot, path, size, entries,
                                time.monotonic() - started)

    async def plan_export(self, app_name: str, room: RoomConfig | None,
                          snapshot_id: str | None) -> ExportPlan:
        app = await self._app(app_name, room)
        snapshot = await self.find_snapshot(app, snapshot_id)
        return ExportPlan.of(app, snapshot, self._config(app.server).exports_dir)

    async def _export_volumes(self, app: App, snapshot: Snapshot) -> list[tuple[str, str]]:
        """(Where the snapshot keeps it, the Docker volume) per volume: the deployed app's
        volume names where it runs (external volumes keep theirs), else the stack's."""
        mounts = await self._pool.get(app.server).containers.service_mounts(app.stack_name)
        by_name = {volume_name(m.source, app.stack_name): m.source
                   for s in mounts for m in s.mounts}
        pairs = [(v.root, v.volume or by_name.get(v.name, f"{app.stack_name}_{v.name}"))
                 for v in volumes_in(snapshot, app.stack_name)]
        for root, volume in pairs:
            if not (SAFE_PATH.match(root) and SAFE_PATH.match(volume)):
                raise OperationFailed(f"snapshot `{snapshot.short_id}` names a volume or path "
                                      "that cannot be exported safely")
        return pairs

    async def find_snapshot(self, app: App, snapshot_id: str | None) -> Snapshot:
        """Only this app's snapshots qualify: an id of another app's snapshot is refused."""
        snapshots = await self._snapshots_of(app)
        if snapshot_id is None or snapshot_id == "latest":
            chosen = next((s for s in snapshots if s.verified), None)
            if chosen is None:
                raise NotFound(f"`{app.name}` has no verified snapshot to restore yet.")
            return chosen
        if len(snapshot_id) < SNAPSHOT_ID_MIN:
            raise UserError(f"give at least {SNAPSHOT_ID_MIN} characters of the snapshot id.")
        matches = [s for s in snapshots if s.id.startswith(snapshot_id.lower())]
        if len(matches) != 1:
            what = "no" if not matches else "more than one"
            raise NotFound(f"`{app.name}` has {what} snapshot `{snapshot_id}`; "
                           f"`!snapshots {app.name}` lists them.")
        return matches[0]

    # --- plumbing ------------------------------------------------------------------------------

    async def _snapshots_of(self, app: App) -> list[Snapshot]:
        """coopbot's snapshots of the app (by its tags) and backup-bot-two's (by the paths of
        the app's volumes), newest first, from one listing of the repository."""
        everything = await self._restic_for(app.server).snapshots(())
        own = set(app_tags(app.name))
        return [s for s in everything
                if own <= set(s.tags) or maker(s, app.stack_name) == BACKUP_BOT_TWO]

    async def _app(self, name: str, room: RoomConfig | None) -> App:
        app = await asyncio.to_thread(self._scope.get, name, room)
        self._config(app.server)
        return app

    def _config(self, server: str) -> BackupConfig:
        config = self._configs.get(server)
        if config is None:
            raise UserError(f"Server {server} has no backups configured (`backups.{server}` in "
                            "the config).")
        return config

    def _restic_for(self, server: str) -> Restic:
        restic = self._restic.get(server)
        if restic is None:
            restic = self._restic[server] = Restic(
                server, self._pool.get(server), self._config(server), self._password,
                timeouts=self._timeouts)
        return restic

    async def _target(self, app: App, node: str | None = None) -> AppTarget:
        return await load_target(app, self._pool.get(app.server), self._restic_for(app.server),
                                 hook_timeout=self._hook_timeout,
                                 volume_nodes=self._config(app.server).volume_nodes,
                                 chosen_node=node)

    @asynccontextmanager
    async def _operation(self, app: App, kind: str, requester: UserID,
                         room_id: RoomID | None, event_id: EventID | None,
                         approvers: tuple[str, ...]) -> AsyncIterator[OperationID]:
        """The app's lock and an operation record, as the deployer keeps them."""
        async with self._operations.running(
            kind=kind, app=app.name, server=app.server, requester=requester, room_id=room_id,
            event_id=event_id, approvers=approvers,
        ) as operation_id:
            yield operation_id
