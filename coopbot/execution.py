"""The operation and report stages, the same for every way a command comes to run: at once
from the pipeline, after a vote from approvals, or on the bot's own authority.

Run the handler (with a typing indicator for operations), turn its errors into one sentence,
answer in the command's thread, record the result, close the status message. Also the one
place that writes a command's audit rows, for the pipeline's earlier stages too.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

from coopbot.crashpoint import crash_point
from coopbot.errors import CoopbotError, UserError
from coopbot.ids import EventID, RoomID, UserID
from coopbot.invocation import Invocation
from coopbot.messages import ReplyTarget
from coopbot.observe import CommandHandled, Observers
from coopbot.operations.plan import PlanChanged
from coopbot.ports import Responder
from coopbot.replies import Reply
from coopbot.store.audit import AuditLog, Decision

log = logging.getLogger(__name__)

TYPING_REFRESH_SECONDS = 20.0


@dataclass(frozen=True)
class Executed:
    """How a run ended. `plan_changed`: the operation found, under its lock, that the plan is
    no longer the one approved (approvals then ask again with the fresh plan)."""

    ok: bool
    plan_changed: PlanChanged | None = None


class CommandAudit:
    """A command's audit rows (and the matching observer event), keyed by its event."""

    def __init__(self, audit: AuditLog, observers: Observers) -> None:
        self._audit = audit
        self._observers = observers

    async def record(self, *, event_id: EventID, room_id: RoomID, sender: UserID,
                     command: str, words: tuple[str, ...], decision: Decision,
                     result: str = "") -> None:
        await self._audit.append(
            command=command, args=" ".join(words), decision=decision, event_id=event_id,
            room_id=room_id, sender=sender, result=result,
        )
        await self._observers.emit(CommandHandled(command, decision.value, room_id))


class Executor:
    def __init__(self, *, responder: Responder, audit: CommandAudit) -> None:
        self._responder = responder
        self._audit = audit

    async def execute(self, invocation: Invocation) -> Executed:
        spec = invocation.spec
        started = time.monotonic()
        plan_changed: PlanChanged | None = None
        # Long work shows a typing indicator for as long as it runs.
        typing = (asyncio.create_task(self._keep_typing(invocation.room_id))
                  if spec.operation is not None and spec.operation.changes(invocation.args)
                  else None)
        try:
            reply = await spec.handler(invocation)
            outcome = "ok"
        except UserError as error:
            reply, outcome = Reply.of(str(error)), f"refused: {error}"
            plan_changed = error if isinstance(error, PlanChanged) else None
        except CoopbotError as error:
            log.warning("%s failed: %s (%s)", spec.name, error, error.detail or "no detail")
            reply, outcome = Reply.of(f"`{spec.name}` failed: {error}"), f"failed: {error}"
        except Exception:
            reference = uuid.uuid4().hex[:8]
            log.exception("%s crashed (reference %s)", spec.name, reference)
            reply = Reply.of(
                f"`{spec.name}` hit an internal error; the details are in the bot's log "
                f"(reference {reference})."
            )
            outcome = f"crashed (reference {reference})"
        finally:
            if typing is not None:
                typing.cancel()
                await asyncio.gather(typing, return_exceptions=True)
                await self._responder.typing(invocation.room_id, False)
        # The member is waiting for the answer, not for the audit row: answer first, and
        # record the result even when the answer cannot be sent.
        crash_point("before-answer")
        try:
            await self.say(invocation.reply_to, reply)
        finally:
            took = time.monotonic() - started
            await self._audit.record(
                event_id=invocation.event_id, room_id=invocation.room_id,
                sender=invocation.sender, command=spec.name,
                words=spec.audited(tuple(invocation.args.values())), decision=Decision.RESULT,
                result=f"{outcome} ({took:.2f} s)")
            # After the answer, never before it: the status message then says how it ended.
            await invocation.progress.close(outcome == "ok")
        return Executed(ok=outcome == "ok", plan_changed=plan_changed)

    async def say(self, target: ReplyTarget, reply: Reply) -> None:
        """The answer to a command. A lost answer is logged, not raised: what ran is recorded
        either way, and the stages after the answer (audit, approvals closing their request)
        must still run."""
        try:
            await self._responder.reply(target, reply, key=f"{target.event_id}/answer")
        except CoopbotError as error:
            log.warning("could not answer %s in %s: %s (%s)", target.event_id,
                        target.room_id, error, error.detail or "no detail")

    async def _keep_typing(self, room_id: RoomID) -> None:
        while True:
            await self._responder.typing(room_id, True)
            await asyncio.sleep(TYPING_REFRESH_SECONDS)
