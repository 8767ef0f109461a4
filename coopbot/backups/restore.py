"""One restore: checks -> safety backup -> restore pre-hooks -> stop the services that use the
volumes -> per volume: empty what the snapshot holds, restore it -> start the services ->
wait for convergence -> restore post-hooks.

A restore makes the snapshot's paths exactly as they were (files added since are removed;
the safety backup keeps them). Each volume's state is tracked, so a failure midway says which
volumes are restored, which are incomplete and which were not touched; services stay stopped
then, so nothing runs on half-restored data.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from coopbot.backups.backup import Say
from coopbot.backups.hooks import run_hook
from coopbot.backups.labels import volume_name
from coopbot.backups.layout import volumes_in
from coopbot.backups.output import Snapshot
from coopbot.backups.restic import RestoreFailed
from coopbot.backups.results import RestoreResult
from coopbot.backups.target import AppTarget
from coopbot.errors import CoopbotError, OperationFailed
from coopbot.operations.checkpoints import RestoreProgress, VolumeRestore, VolumeState, volume_lines
from coopbot.servers.containers import Bind, ServiceMounts

SafetyBackup = Callable[[], Awaitable[str | None]]
Checkpoint = Callable[[RestoreProgress], Awaitable[None]]


@dataclass
class _Volume:
    name: str  # as the recipe names it
    volume: str  # the Docker volume
    root: str  # where the snapshot keeps it, and the helper mounts it
    clear: tuple[str, ...]  # what to empty first: `dir/` = the folder's contents
    state: VolumeState = "unchanged"
    note: str = ""

    def report(self) -> VolumeRestore:
        return VolumeRestore(self.name, self.state, self.note)


async def restore_snapshot(target: AppTarget, snapshot: Snapshot, say: Say,
                           safety_backup: SafetyBackup,
                           checkpoint: Checkpoint | None = None) -> RestoreResult:
    """With `checkpoint`, every step that changes something is recorded before and after it,
    so a crash at any moment leaves a true account of the volumes and stopped services."""
    app, engine = target.app, target.engine
    started = time.monotonic()
    by_name = {volume_name(m.source, app.stack_name): m.source
               for s in target.services for m in s.mounts}
    work = [_Volume(v.name, v.volume or by_name.get(v.name, f"{app.stack_name}_{v.name}"),
                    v.root, v.clear)
            for v in volumes_in(snapshot, app.stack_name)]
    await target.check_volumes([w.volume for w in work])
    users = _users(target.services, {w.volume for w in work})
    stopped: dict[str, int] = {}

    async def note() -> None:
        if checkpoint is not None:
            await checkpoint(RestoreProgress(snapshot.short_id,
                                             tuple(w.report() for w in work),
                                             tuple(stopped.items())))
    pre_tasks = {s.service: await target.task_for_hook(s.short_name, s.service, "restore hook")
                 for s in target.plan.services if s.hooks.pre_restore}

    safety = await safety_backup()
    for service in target.plan.services:
        if service.hooks.pre_restore:
            await say(f"restore `{app.name}`: pre-hook of `{service.short_name}`...")
            try:
                await run_hook(engine, pre_tasks[service.service], service.short_name,
                               "restore pre-hook", service.hooks.pre_restore, target.redact,
                               timeout=target.hook_timeout)
            except CoopbotError as error:
                raise OperationFailed(f"restore of `{app.name}` did not run, no volume was "
                                      f"changed: {error}") from error

    await say(f"restore `{app.name}`: stopping {', '.join(s.short_name for s in users)}...")
    try:
        for user in users:
            # Recorded before it is stopped: a crash in between must not forget the service.
            stopped[user.name] = user.replicas
            await note()
            stopped[user.name] = await engine.scale_service(user.name, 0)
        await note()
        await engine.containers.wait_stopped([u.name for u in users], float(app.timeout))
        if target.node.node_id == await engine.helpers.own_node():
            await engine.containers.wait_volumes_unused([w.volume for w in work],
                                                        float(app.timeout))
    except CoopbotError as error:
        try:
            await _start(target, stopped)
            started_again = "its services were started again"
        except CoopbotError as start_error:
            started_again = f"starting its services again failed too: {start_error}"
        raise OperationFailed(f"restore of `{app.name}` did not run: stopping its services "
                              f"failed: {error}. No volume was changed; {started_again}.",
                              ) from error

    for volume in work:
        await say(f"restore `{app.name}`: volume `{volume.name}` from `{snapshot.short_id}`...")
        bind = Bind(volume.volume, volume.root, read_only=False)
        try:
            volume.state, volume.note = "incomplete", "the bot stopped while restoring it"
            await note()
            volume.note = "emptying it failed midway"
            await target.restic.replace(snapshot.id, bind, volume.clear, volume.root,
                                        node=target.node.node_id)
            volume.state, volume.note = "restored", ""
            await note()
        except CoopbotError as error:
            if isinstance(error, RestoreFailed) and error.emptied:
                volume.note = "it was emptied, then restoring into it failed"
            raise OperationFailed("\n".join([
                f"restore of `{app.name}` from snapshot `{snapshot.short_id}` failed at volume "
                f"`{volume.name}`: {error}",
                *volume_lines([w.report() for w in work]),
                f"Services {', '.join(f'`{s.short_name}`' for s in users)} are left stopped, "
                "so nothing runs on incomplete data." + _retry_hint(app.name, snapshot, safety),
            ])) from error

    await say(f"restore `{app.name}`: starting the services again...")
    await _start(target, stopped)
    stopped.clear()
    await note()
    result = await engine.wait_converged(app.stack_name, float(app.timeout))
    if not result.ok:
        reasons = "; ".join(f"`{f.short_name}`: {f.reason}" for f in result.failures)
        raise OperationFailed("\n".join([
            f"restore of `{app.name}`: every volume was restored, but the app did not converge "
            f"afterwards: {reasons}",
            *volume_lines([w.report() for w in work]),
        ]))
    for service in target.plan.services:
        if service.hooks.post_restore:
            await say(f"restore `{app.name}`: post-hook of `{service.short_name}`...")
            task = await target.task_for_hook(service.short_name, service.service,
                                              "restore hook")
            try:
                await run_hook(engine, task, service.short_name, "restore post-hook",
                               service.hooks.post_restore, target.redact,
                               timeout=target.hook_timeout)
            except CoopbotError as error:
                raise OperationFailed(f"restore of `{app.name}`: every volume was restored and "
                                      f"the app runs, but {error}") from error
    return RestoreResult(
        app=app.name, server=app.server, snapshot=snapshot, safety_snapshot=safety,
        volumes=tuple(w.report() for w in work), seconds=time.monotonic() - started,
    )


def _users(services: tuple[ServiceMounts, ...], volumes: set[str]) -> list[ServiceMounts]:
    users = [s for s in services if any(m.source in volumes for m in s.mounts)]
    global_ones = [s.short_name for s in users if not s.replicated]
    if global_ones:
        raise OperationFailed(
            f"service(s) {', '.join(f'`{n}`' for n in global_ones)} use the volumes but run "
            "in global mode, which cannot be stopped for a restore; nothing was changed"
        )
    return [s for s in users if s.replicas > 0]


async def _start(target: AppTarget, stopped: dict[str, int]) -> None:
    for service, replicas in stopped.items():
        await target.engine.scale_service(service, replicas)


def _retry_hint(app: str, snapshot: Snapshot, safety: str | None) -> str:
    hint = f" `!restore {app} {snapshot.short_id}` tries again"
    if safety:
        hint += f"; `!restore {app} {safety}` brings back the data from before this restore"
    return hint + "."
