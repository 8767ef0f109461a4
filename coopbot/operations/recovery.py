"""After a crash: find out what came of each operation an earlier run left open, and say so.

At start-up (after login and the first sync, so the rooms can be told) every lock an earlier
process held names an operation that process was running when it stopped. For each:

- an operation that had recorded its result keeps it (it is never rewritten); the requester
  is told it if the answer was never sent;
- an unfinished one is compared with what the swarm runs now (the `app` service's version
  label and convergence) or, for a restore, with the progress it stored; the truth is
  recorded as its result, once (which also notifies the notification rooms), and the env
  file's TYPE is brought in line with what runs;
- the requester's thread gets a short answer, the ⏳ status message is closed, and only then
  is the lock released, so nothing else runs on the app while this is found out.

Whether the answer was sent is read from the audit log: the pipeline appends the command's
RESULT row right after answering. The answer after a restart uses the same transaction key
as the lost one, so an answer that did go out just before the crash is not posted twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from coopbot.errors import CoopbotError
from coopbot.ids import EventID
from coopbot.messages import ReplyTarget
from coopbot.operations.checkpoints import RestoreProgress, volume_lines
from coopbot.operations.deployer import EnvWritten
from coopbot.operations.scope import AppScope
from coopbot.ports import RoomReplies
from coopbot.recipes.apps import App
from coopbot.recipes.envfile import write_type_version
from coopbot.recipes.labels import chaos_text, deployed_version, running_timeout
from coopbot.replies import Reply
from coopbot.servers.engine import DockerEngine
from coopbot.servers.pool import ServerPool
from coopbot.servers.states import ServiceState
from coopbot.store.audit import AuditLog, Decision
from coopbot.store.operations import LockHolder, OperationRecord, OperationStore
from coopbot.store.status_messages import StatusMessage, StatusMessages

log = logging.getLogger(__name__)

ICONS = {"ok": "✅", "failed": "❌", "interrupted": "⚠️"}
VERBS = {"deploy": "deployed", "upgrade": "upgraded", "rollback": "rolled back",
         "undeploy": "undeployed", "backup": "backed up", "restore": "restored"}
STOPPED = "the bot stopped while this ran"
UNANSWERED_WITHIN = 24 * 3600.0  # seconds: how old an unanswered operation may be to be told



@dataclass(frozen=True)
class Outcome:
    result: str  # ok, failed, interrupted
    summary: str  # one line: the operation record, the audit log, notifications
    details: tuple[str, ...] = ()  # more lines for the requester's thread (room-safe)


class Recovery:
    def __init__(self, operations: OperationStore, audit: AuditLog, statuses: StatusMessages,
                 scope: AppScope, pool: ServerPool, poster: RoomReplies, *,
                 started_at: float | None = None,
                 env_written: EnvWritten | None = None) -> None:
        self._started_at = time.time() if started_at is None else started_at
        self._env_written = env_written
        self._operations = operations
        self._audit = audit
        self._statuses = statuses
        self._scope = scope
        self._pool = pool
        self._poster = poster

    async def run(self) -> None:
        """Resolve every operation an earlier run left open, each on its own (a slow swarm
        or an unreachable server holds up only its own apps)."""
        stale = await self._operations.stale_locks()
        locked = {lock.operation_id for lock in stale}
        orphans = await self._operations.unfinished_without_lock()
        # Finished and unlocked, but the crash came before the answer: only those an earlier
        # run finished (before this one started) and only recent ones (no old thread is
        # woken up).
        unanswered = [record for record in await self._operations.unanswered(
                          self._started_at - UNANSWERED_WITHIN, self._started_at)
                      if record.id not in locked]
        total = len(stale) + len(orphans) + len(unanswered)
        if total:
            log.warning("%d operation(s) were left open by an earlier run; finding out what "
                        "came of them", total)
        await asyncio.gather(*(self._guarded(self._resolve_lock(lock)) for lock in stale),
                             *(self._guarded(self._resolve(record))
                               for record in [*orphans, *unanswered]))
        log.info("recovery done: %d operation(s) left open by an earlier run resolved", total)

    @staticmethod
    async def _guarded(work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception:
            log.exception("recovering an operation failed")

    async def _resolve_lock(self, lock: LockHolder) -> None:
        record = await self._operations.get(lock.operation_id)
        if record is None:  # the crash fell between taking the lock and recording the operation
            log.warning("released the lock of %s (%s by %s): no operation had begun", lock.app,
                        lock.kind, lock.holder)
        else:
            try:
                await self._resolve(record)
            except Exception:
                # A bug here must not keep the app locked for the whole run.
                log.exception("recovering operation %s failed", record.id)
                await self._operations.finish(record.id, "interrupted",
                                              f"{STOPPED}; what came of it is unknown")
        await self._operations.unlock(lock.app, lock.operation_id)

    async def _resolve(self, record: OperationRecord) -> None:
        if record.finished_at is not None:
            log.warning("operation %s (%s %s) had finished before the bot stopped (%s) but "
                        "was not answered", record.id, record.kind, record.app, record.result)
            outcome = Outcome(record.result, record.summary)
            lead = (f"I restarted before answering; the {record.kind} of `{record.app}` had "
                    "finished")
        else:
            outcome = await self._find_out(record)
            log.warning("operation %s (%s %s) was cut off by a restart: %s: %s", record.id,
                        record.kind, record.app, outcome.result, outcome.summary)
            await self._operations.finish(record.id, outcome.result, outcome.summary)
            lead = f"I restarted while the {record.kind} of `{record.app}` ran"
        await self._tell(record, outcome, lead)

    # ---- what came of it -----------------------------------------------------------------

    async def _find_out(self, record: OperationRecord) -> Outcome:
        try:
            app = await asyncio.to_thread(self._scope.get, record.app, None)
            engine = self._pool.get(app.server)
            if record.kind in ("deploy", "upgrade", "rollback"):
                return await self._version_change(record, app, engine)
            if record.kind == "undeploy":
                return await self._undeploy(record, app, engine)
            if record.kind == "restore":
                return await self._restore(record, app, engine)
            if record.kind == "backup":
                return Outcome("interrupted", f"{STOPPED}: the backup was not completed",
                               ("It was not verified, so it does not count as a backup; "
                                f"`!backup {record.app}` takes a new one.",))
        except CoopbotError as error:
            log.warning("could not check the outcome of operation %s: %s (%s)", record.id,
                        error, error.detail)
            return Outcome("interrupted", f"{STOPPED}, and checking what came of it failed: "
                                          f"{error}")
        return Outcome("interrupted", STOPPED)

    async def _version_change(self, record: OperationRecord, app: App,
                              engine: DockerEngine) -> Outcome:
        stack = app.stack_name
        services = await engine.services(stack)
        failures = ""
        if services and not all(s.converged for s in services):
            timeout = running_timeout(services, stack, float(app.timeout))
            await self._status_update(record, f"⏳ {record.kind} `{app.name}`: I restarted "
                                              f"while this ran; the swarm is still converging, "
                                              f"waiting up to {timeout:.0f} s...")
            result = await engine.wait_converged(stack, timeout)
            services = list(result.services)
            failures = "; ".join(f"`{f.short_name}`: {f.reason}" for f in result.failures)
        running = deployed_version(services, stack) if services else None
        steady = bool(services) and all(_steady(s) for s in services)
        rolled_back = any((s.update_state or "").startswith("rollback") for s in services)
        target, previous = record.to_version, record.from_version
        change = f"{previous or 'not deployed'} -> {target or '?'}"
        now = (f"running now is {running or 'an unknown version'}"
               + (", converged and healthy" if steady else ", not healthy"))
        if not services:
            return Outcome("interrupted", f"{STOPPED}: {change} did not happen; nothing runs",
                           (f"`!{record.kind} {app.name}` starts it again.",))
        if target is None:  # the target is recorded before anything changes
            return Outcome("interrupted", f"{STOPPED}, before it changed anything; {now}")
        if running == target and running == target and steady and target != previous:
            await self._align_type(app, target, record.requester)
            return Outcome("ok", f"{change}: finished by the swarm while the bot was down",
                           (f"**`{app.name}` {VERBS[record.kind]}**: {change} on {app.server}, "
                            "converged and healthy.",))
        if running is not None and running == previous:
            await self._align_type(app, running, record.requester)
            what = ("the swarm rolled it back" if rolled_back
                    else "was interrupted" if target == previous else "did not happen")
            return Outcome("interrupted", f"{STOPPED}: {change}: {what}; {now}")
        if running is not None and running == target:
            return Outcome("failed", f"{STOPPED}: {target} runs but did not converge: "
                                     f"{failures or 'not healthy'}",
                           (f"`!ps {app.name}` shows its state.",))
        return Outcome("interrupted", f"{STOPPED}: {change}; {now}")

    async def _undeploy(self, record: OperationRecord, app: App,
                        engine: DockerEngine) -> Outcome:
        services = await engine.services(app.stack_name)
        if not services:
            return Outcome("ok", f"undeployed {record.from_version or ''}".strip()
                           + " (finished while the bot was down)",
                           (f"**`{app.name}` undeployed** from {app.server}; volumes and "
                            "secrets stay.",))
        running = deployed_version(services, app.stack_name) or "an unknown version"
        return Outcome("interrupted", f"{STOPPED}: `{app.name}` is still deployed, running "
                                      f"{running}", (f"`!undeploy {app.name}` tries again.",))

    async def _restore(self, record: OperationRecord, app: App,
                       engine: DockerEngine) -> Outcome:
        progress = RestoreProgress.decode(record.checkpoint)
        if progress is None:
            return Outcome("interrupted", f"{STOPPED}: the restore had not begun changing "
                                          "anything; no volume was changed")
        states = {v.state for v in progress.volumes}
        lines = volume_lines(progress.volumes)
        names = ", ".join(f"`{name.removeprefix(app.stack_name + '_')}`"
                          for name, _ in progress.stopped)
        retry = f"`!restore {app.name} {progress.snapshot}` tries again."
        if progress.stopped and len(states) == 1:
            # Every volume is as before, or every one is restored: consistent data, so the
            # services the restore stopped may run again (the restore would have done it).
            try:
                for service, replicas in progress.stopped:
                    await engine.scale_service(service, replicas)
                lines.append(f"Services {names} were started again.")
            except CoopbotError as error:
                lines.append(f"Starting services {names} again failed: {error}")
        elif progress.stopped:
            lines.append(f"Services {names} are left stopped, so nothing runs on incomplete "
                         "data.")
        if states == {"restored"}:
            summary = (f"{STOPPED}: every volume was restored from snapshot "
                       f"{progress.snapshot}, but the restore did not finish (convergence, "
                       "post-hooks)")
        elif states <= {"unchanged"}:
            summary = f"{STOPPED}: no volume was changed"
        else:
            summary = f"{STOPPED}: the restore from snapshot {progress.snapshot} is incomplete"
        return Outcome("interrupted", summary, (*lines, retry))

    async def _align_type(self, app: App, version: str, requester: str) -> None:
        """abra reads the deployed version from TYPE: make it say what runs (a chaos deploy's
        short commit, as abra writes it)."""
        version = version.removeprefix(chaos_text(""))
        try:
            if await asyncio.to_thread(write_type_version, app.env_path, app.recipe, version):
                log.info("env file of %s: TYPE set to %s:%s after a restart", app.name,
                         app.recipe, version)
                if self._env_written is not None:
                    await self._env_written(app, requester,
                                            f"recovery {app.name}: TYPE {version}")
        except CoopbotError as error:
            log.warning("could not record %s in the env file of %s: %s", version, app.name,
                        error)

    # ---- telling the room ----------------------------------------------------------------

    async def _tell(self, record: OperationRecord, outcome: Outcome, lead: str) -> None:
        if record.event_id is None or record.room_id is None:
            return  # nobody asked in a room (a scheduled backup): notifications say it
        status = await self._statuses.get(record.event_id)
        icon = ICONS.get(outcome.result, "ℹ️")
        if status is not None:
            await self._edit(status, Reply.of(f"{icon} {record.kind} `{record.app}`: "
                                              f"{outcome.result} (after a restart, see below)"))
            await self._statuses.forget(record.event_id)
        if await self._answered(record.event_id):
            return
        text = "\n".join([f"{icon} {lead}. What came of it: **{outcome.result}**: "
                          f"{outcome.summary}.", *outcome.details])
        command = ReplyTarget(
            record.room_id, record.event_id,
            (status.thread_root if status is not None
             and status.thread_root != record.event_id else None),
        )
        try:
            await self._poster.reply(command, Reply.of(text), key=f"{record.event_id}/answer")
        except CoopbotError as error:
            log.warning("could not tell %s about operation %s: %s", record.room_id, record.id,
                        error)
            return
        await self._audit.append(
            command=record.kind, args=record.app, decision=Decision.RESULT,
            event_id=record.event_id, room_id=record.room_id, sender=record.requester,
            result=f"{outcome.result} (answered after a restart)",
        )

    async def _answered(self, event_id: EventID) -> bool:
        return any(row.decision == Decision.RESULT for row in await self._audit.for_event(event_id))

    async def _status_update(self, record: OperationRecord, text: str) -> None:
        if record.event_id is not None:
            status = await self._statuses.get(record.event_id)
            if status is not None:
                await self._edit(status, Reply.of(text))

    async def _edit(self, status: StatusMessage, reply: Reply) -> None:
        try:
            await self._poster.edit(status.room_id, status.status_event_id, reply)
        except CoopbotError as error:
            log.warning("could not edit the status message %s: %s", status.status_event_id,
                        error)


def _steady(service: ServiceState) -> bool:
    """Runs all its tasks on its current spec, nothing updating. Unlike `converged`, a
    finished rollback counts: the swarm then runs the previous spec again."""
    return (service.replicas_updated >= service.replicas_desired and not service.updating
            and service.health != "unhealthy")
