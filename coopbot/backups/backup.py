"""One backup: pre-hooks -> restic snapshot of the volumes (mounted read-only) -> post-hooks ->
verification -> tags. A snapshot that fails verification is discarded at once, so `latest`
never points at a backup known to be broken; one that passes is tagged `verified`, with its size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from coopbot.backups import output
from coopbot.backups.hooks import run_hook
from coopbot.backups.labels import ServiceTarget
from coopbot.backups.output import BackupSummary
from coopbot.backups.restic import NewSnapshot
from coopbot.backups.results import BackupResult, CopyResult
from coopbot.backups.target import AppTarget
from coopbot.backups.verify import Verification, verify
from coopbot.errors import CoopbotError, OperationFailed, UserError
from coopbot.servers.containers import Bind, RunningTask

log = logging.getLogger(__name__)

Say = Callable[[str], Awaitable[None]]


def app_tags(app: str) -> list[str]:
    """The tags that select one app's snapshots (made by coopbot)."""
    return [output.MARK, output.tag(output.APP, app)]


async def take_backup(target: AppTarget, operation_id: str, reason: str, say: Say) -> BackupResult:
    app, plan = target.app, target.plan
    started = time.monotonic()
    if not plan.services:
        raise UserError(f"`{app.name}` has no service labelled backupbot.backup=true, so there "
                        "is nothing to back up.")
    # Every check before the first hook runs: a refused backup changes nothing.
    tasks: dict[str, RunningTask] = {}
    for service in plan.services:
        if service.hooks.pre_backup or service.hooks.post_backup:
            tasks[service.service] = await target.task_for_hook(
                service.short_name, service.service, "backup hook")
    await target.check_volumes([v.volume for v in plan.volumes])
    await target.restic.ensure_repository()

    tags = [*app_tags(app.name), output.tag(output.VERSION, target.version or "none"),
            output.tag(output.OPERATION, operation_id), output.tag(output.REASON, reason)]
    snapshot, post_error = await _hooks_and_snapshot(target, tasks, tags, say)
    summary = snapshot.summary
    checked = verify(snapshot.nodes, plan.backup_paths, plan.named_files)
    if snapshot.node != target.node.node_id:
        checked = checked.with_problem(
            f"the snapshot was taken on node {snapshot.node or 'unknown'}, not on node "
            f"{target.node.hostname} where the app's data is")
    if not checked.ok:
        await _discard(target, summary.snapshot_id)
        raise OperationFailed(
            f"the backup of `{app.name}` FAILED verification: " + "; ".join(checked.problems)
            + f". The snapshot `{summary.snapshot_id}` was discarded; earlier snapshots are kept."
        )
    snapshot_id = await _mark_verified(target, summary, checked.files, checked.bytes, tags)
    copies = [await _copy(target, name, snapshot_id, tags, checked, say)
              for name in target.restic.copies]
    if post_error is not None:
        raise OperationFailed(f"{post_error} The snapshot `{snapshot_id}` itself was verified "
                              "and is kept.")
    log.info("backup of %s: snapshot %s, %d files, %d bytes", app.name, snapshot_id,
             checked.files, checked.bytes)
    return BackupResult(
        app=app.name, server=app.server, snapshot_id=snapshot_id, version=target.version,
        reason=reason, files=checked.files, bytes=checked.bytes, volumes=checked.volumes,
        seconds=time.monotonic() - started, copies=tuple(copies),
    )


async def _copy(target: AppTarget, name: str, snapshot_id: str, tags: list[str],
                checked: Verification, say: Say) -> CopyResult:
    """Copy the verified snapshot into the copy repository `name`, then verify the copy as
    the snapshot was (same paths, files and bytes). A failed copy leaves the snapshot itself
    verified and kept: it is reported, not raised."""
    plan = target.plan
    await say(f"backup `{target.app.name}`: copying snapshot `{snapshot_id}` to `{name}`...")
    try:
        nodes = await target.restic.copy_and_list(name, snapshot_id, tags)
    except CoopbotError as error:
        log.warning("copy of snapshot %s of %s to %s failed: %s (%s)", snapshot_id,
                    target.app.name, name, error, error.detail)
        return CopyResult(name, False, str(error))
    copied = verify(nodes, plan.backup_paths, plan.named_files)
    if not copied.ok or (copied.files, copied.bytes) != (checked.files, checked.bytes):
        problems = "; ".join(copied.problems) or (
            f"it holds {copied.files} file(s), {copied.bytes} bytes instead of "
            f"{checked.files}, {checked.bytes}")
        log.warning("copy of snapshot %s of %s in %s failed verification: %s", snapshot_id,
                    target.app.name, name, problems)
        return CopyResult(name, False, f"the copy failed verification: {problems}")
    return CopyResult(name, True)


async def _hooks_and_snapshot(target: AppTarget, tasks: dict[str, RunningTask], tags: list[str],
                              say: Say) -> tuple[NewSnapshot, CoopbotError | None]:
    """Pre-hooks, the snapshot, then the post-hooks of every service whose pre-hook ran (also
    when something failed in between: a post-hook undoes its pre-hook, e.g. a maintenance
    mode). Returns the post-hooks' first error rather than raising it."""
    app, plan = target.app, target.plan
    binds = [Bind(v.volume, v.root, read_only=True) for v in plan.volumes]
    entered: list[ServiceTarget] = []
    try:
        for service in plan.services:
            if service.hooks.pre_backup:
                await say(f"backup `{app.name}`: pre-hook of `{service.short_name}`...")
                await run_hook(target.engine, tasks[service.service], service.short_name,
                               "backup pre-hook", service.hooks.pre_backup, target.redact,
                               timeout=target.hook_timeout)
            entered.append(service)
        await say(f"backup `{app.name}`: snapshotting and verifying {len(plan.volumes)} "
                  "volume(s)...")
        snapshot = await target.restic.backup_and_list(binds, plan.backup_paths, tags,
                                                       node=target.node.node_id)
    except BaseException:
        error = await _post_hooks(target, entered, tasks)
        if error is not None:
            log.warning("backup of %s: a post-hook failed too: %s", app.name, error)
        raise
    return snapshot, await _post_hooks(target, entered, tasks)


async def _post_hooks(target: AppTarget, services: list[ServiceTarget],
                      tasks: dict[str, RunningTask]) -> CoopbotError | None:
    """Run every post-hook even if one fails (each undoes its own pre-hook); the first error."""
    first: CoopbotError | None = None
    for service in services:
        if not service.hooks.post_backup:
            continue
        try:
            await run_hook(target.engine, tasks[service.service], service.short_name,
                           "backup post-hook", service.hooks.post_backup, target.redact,
                           timeout=target.hook_timeout)
        except CoopbotError as error:
            first = first or error
    return first


async def _discard(target: AppTarget, snapshot_id: str) -> None:
    try:
        await target.restic.forget([snapshot_id])
    except CoopbotError as error:
        log.error("could not discard the unverified snapshot %s of %s: %s (%s)", snapshot_id,
                  target.app.name, error, error.detail)


async def _mark_verified(target: AppTarget, summary: BackupSummary, files: int, size: int,
                         tags: list[str]) -> str:
    """Tag the snapshot verified with its size (restic 0.14's listing has no sizes); restic
    gives it a new id, found again by the operation tag. The short id, old one on failure."""
    try:
        marks = [output.VERIFIED, output.tag(output.SIZE, str(size)),
                 output.tag(output.FILES, str(files))]
        for snapshot in await target.restic.tag_and_list(summary.snapshot_id, marks, tags):
            if (snapshot.original or snapshot.id).startswith(summary.snapshot_id):
                return snapshot.short_id
    except CoopbotError as error:
        log.warning("could not tag snapshot %s of %s as verified: %s (%s)", summary.snapshot_id,
                    target.app.name, error, error.detail)
    return summary.snapshot_id
