"""One linear pipeline per message: accept -> parse -> authorize -> approval -> operation -> report.

Each stage either returns a value for the next or raises a typed error; `handle` turns errors into
one clear sentence in the room (details only in the log) and one audit row. Permission checks live
here and nowhere else, so no command can forget one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from coopbot.crashpoint import crash_point
from coopbot.echo import shown
from coopbot.errors import CoopbotError, PermissionDenied, UnknownCommand, UsageError, UserError
from coopbot.ids import EventID, RoomID, UserID
from coopbot.invocation import Invocation, ProgressSink
from coopbot.messages import IncomingMessage
from coopbot.observe import CommandHandled, Observers
from coopbot.parser import CommandParser, ParsedCommand
from coopbot.registry import CommandRegistry, CommandSpec
from coopbot.replies import Reply
from coopbot.roles import PowerInfo, RoleGrant, RoleResolver
from coopbot.rooms import ConfiguredRoom, RoomDirectory
from coopbot.status_message import StatusLedger, status_message
from coopbot.store.audit import AuditLog, Decision
from coopbot.store.handled import HandledEvents

log = logging.getLogger(__name__)

TYPING_REFRESH_SECONDS = 20.0


class Responder(Protocol):
    """The room side of the pipeline (the Matrix adapter implements it)."""

    async def reply(self, to: IncomingMessage, reply: Reply, *, key: str) -> EventID: ...

    async def edit(self, room_id: RoomID, event_id: EventID, reply: Reply) -> None: ...

    async def typing(self, room_id: RoomID, active: bool) -> None: ...


class PowerSource(Protocol):
    async def power_info(self, room_id: RoomID) -> PowerInfo: ...


# Approval stage hook: returns True to run now, False when the request is parked for votes.
ApprovalGate = Callable[[Invocation, IncomingMessage], Awaitable[bool]]


@dataclass(frozen=True)
class PipelineSettings:
    bot_user_id: UserID
    prefix: str


class Pipeline:
    def __init__(
        self,
        *,
        settings: PipelineSettings,
        parser: CommandParser,
        registry: CommandRegistry,
        rooms: RoomDirectory,
        roles: RoleResolver,
        power: PowerSource,
        handled: HandledEvents,
        audit: AuditLog,
        responder: Responder,
        approval: ApprovalGate | None = None,
        observers: Observers | None = None,
        status_ledger: StatusLedger | None = None,
    ) -> None:
        self._settings = settings
        self._parser = parser
        self._registry = registry
        self._rooms = rooms
        self._roles = roles
        self._power = power
        self._handled = handled
        self._audit = audit
        self._responder = responder
        self._approval = approval
        self._observers = observers or Observers()
        self._status_ledger = status_ledger

    async def handle(self, message: IncomingMessage) -> None:
        """Handle one message; nothing it does can escape as an exception. An unexpected one is
        logged once with a reference, and the event stays handled so it is never replayed."""
        try:
            await self._handle(message)
        except Exception:
            reference = uuid.uuid4().hex[:8]
            log.exception("message %s in %s could not be handled (reference %s)",
                          message.event_id, message.room_id, reference)
            try:
                await self._handled.claim(message.event_id, message.room_id)
            except Exception:
                log.exception("could not mark %s handled (reference %s)", message.event_id,
                              reference)

    async def _handle(self, message: IncomingMessage) -> None:
        if not self._accept(message):
            return
        parsed = self._parser.parse(message.body)
        if parsed is None:
            return
        if not await self._handled.claim(message.event_id, message.room_id):
            log.debug("duplicate event %s ignored", message.event_id)
            return
        room = self._rooms.get(message.room_id)
        if room is None and not self._roles.is_bot_admin(message.sender):
            # Unconfigured rooms get no answer (except for bot admins), but the attempt is recorded.
            await self._record(message, parsed.name, parsed.words, Decision.IGNORED,
                               "room not configured")
            return
        if message.during_downtime:
            await self._record(message, parsed.name, parsed.words, Decision.EXPIRED,
                               "sent while the bot was offline")
            await self._say(message, Reply.of(
                f"I was offline when you sent `{shown(parsed.text)}`, so I did not run it. "
                "Please send it again if it is still wanted."
            ))
            return
        try:
            spec = self._registry.lookup(parsed.name)
            args = spec.bind(parsed.words, self._settings.prefix)
            grant = await self._authorize(message, room, spec)
        except (UnknownCommand, UsageError) as error:
            await self._record(message, parsed.name, parsed.words, Decision.INVALID, str(error))
            await self._say(message, Reply.of(str(error)))
            return
        except PermissionDenied as error:
            await self._record(message, parsed.name, parsed.words, Decision.DENIED, str(error))
            await self._say(message, Reply.of(str(error)))
            return
        await self._run(message, parsed, room, spec, args, grant)

    def _accept(self, message: IncomingMessage) -> bool:
        """Own events, notices (other bots) and edits are never commands."""
        if message.sender == self._settings.bot_user_id:
            return False
        if message.msgtype == "m.notice" or message.is_edit:
            return False
        return message.msgtype in ("m.text", "m.emote")

    async def _authorize(
        self, message: IncomingMessage, room: ConfiguredRoom | None, spec: CommandSpec
    ) -> RoleGrant:
        power = await self._power.power_info(message.room_id)
        grant = self._roles.resolve(message.sender, room.config if room else None, power)
        if not grant.has(spec.role):
            raise PermissionDenied(spec.name, spec.role)
        return grant

    async def _run(
        self,
        message: IncomingMessage,
        parsed: ParsedCommand,
        room: ConfiguredRoom | None,
        spec: CommandSpec,
        args: dict[str, str],
        grant: RoleGrant,
    ) -> None:
        invocation = Invocation(
            room_id=message.room_id,
            event_id=message.event_id,
            sender=message.sender,
            spec=spec,
            args=args,
            grant=grant,
            room=room.config if room else None,
            event_timestamp_ms=message.timestamp_ms,
            received_at=message.received_at,
            progress=self.progress_sink(message),
        )
        if self._approval is not None and spec.operation is not None:
            try:
                run_now = await self._approval(invocation, message)
            except UserError as error:
                await self._record(message, parsed.name, parsed.words, Decision.INVALID,
                                   str(error))
                await self._say(message, Reply.of(str(error)))
                return
            if not run_now:
                await self._record(message, parsed.name, parsed.words, Decision.RAN,
                                   "waiting for approval")
                return
        await self._record(message, parsed.name, parsed.words, Decision.RAN)
        await self.execute(invocation, message)

    def progress_sink(self, message: IncomingMessage) -> ProgressSink:
        return status_message(self._responder, message, key=f"{message.event_id}/status",
                              ledger=self._status_ledger)

    async def execute(self, invocation: Invocation, message: IncomingMessage) -> bool:
        """The operation and report stages; approvals re-enter the pipeline here.
        Returns whether the handler succeeded."""
        spec = invocation.spec
        words = tuple(invocation.args.values())
        started = time.monotonic()
        # Long work shows a typing indicator for as long as it runs.
        typing = (asyncio.create_task(self._keep_typing(invocation.room_id))
                  if spec.operation is not None else None)
        try:
            reply = await spec.handler(invocation)
            outcome = "ok"
        except UserError as error:
            reply, outcome = Reply.of(str(error)), f"refused: {error}"
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
            await self._say(message, reply)
        finally:
            await self._result(message, spec.name, words, outcome, started)
            # After the answer, never before it: the status message then says how it ended.
            await invocation.progress.close(outcome == "ok")
        return outcome == "ok"

    async def _keep_typing(self, room_id: RoomID) -> None:
        while True:
            await self._responder.typing(room_id, True)
            await asyncio.sleep(TYPING_REFRESH_SECONDS)

    async def _say(self, message: IncomingMessage, reply: Reply) -> None:
        # A lost answer is logged, not raised: what ran is recorded either way, and the
        # stages after the answer (audit, approvals closing their request) must still run.
        try:
            await self._responder.reply(message, reply, key=f"{message.event_id}/answer")
        except CoopbotError as error:
            log.warning("could not answer %s in %s: %s (%s)", message.event_id,
                        message.room_id, error, error.detail or "no detail")

    async def _record(
        self, message: IncomingMessage, command: str, words: tuple[str, ...],
        decision: Decision, result: str = "",
    ) -> None:
        await self._audit.append(
            command=command,
            args=" ".join(words),
            decision=decision,
            event_id=message.event_id,
            room_id=message.room_id,
            sender=message.sender,
            result=result,
        )
        await self._observers.emit(CommandHandled(command, decision.value, message.room_id))

    async def _result(
        self, message: IncomingMessage, command: str, words: tuple[str, ...], result: str,
        started: float,
    ) -> None:
        took = time.monotonic() - started
        await self._record(message, command, words, Decision.RESULT, f"{result} ({took:.2f} s)")
