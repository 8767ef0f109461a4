"""One linear pipeline per message: accept -> parse -> authorize -> approval -> operation -> report.

Each stage either returns a value for the next or raises a typed error; `handle` turns errors into
one clear sentence in the room (details only in the log) and one audit row. Permission checks live
here and nowhere else, so no command can forget one. The operation and report stages are the
Executor's (execution.py), which approvals use for approved requests too.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from coopbot.echo import shown
from coopbot.errors import PermissionDenied, UnknownCommand, UsageError, UserError
from coopbot.execution import CommandAudit, Executor
from coopbot.ids import UserID
from coopbot.invocation import Invocation
from coopbot.messages import IncomingMessage
from coopbot.parser import CommandParser, ParsedCommand
from coopbot.ports import PowerSource
from coopbot.registry import CommandRegistry, CommandSpec
from coopbot.replies import Reply
from coopbot.roles import RoleGrant, RoleResolver
from coopbot.rooms import ConfiguredRoom, RoomDirectory
from coopbot.status_message import CommandStatuses
from coopbot.store.audit import Decision
from coopbot.store.handled import HandledEvents

log = logging.getLogger(__name__)


# Approval stage hook: returns True to run now, False when the request is parked for votes.
ApprovalGate = Callable[[Invocation], Awaitable[bool]]


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
        audit: CommandAudit,
        executor: Executor,
        statuses: CommandStatuses,
        approval: ApprovalGate | None = None,
    ) -> None:
        self._settings = settings
        self._parser = parser
        self._registry = registry
        self._rooms = rooms
        self._roles = roles
        self._power = power
        self._handled = handled
        self._audit = audit
        self._executor = executor
        self._statuses = statuses
        self._approval = approval

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
            await self._record(message, parsed, Decision.IGNORED, "room not configured")
            return
        if message.during_downtime:
            await self._record(message, parsed, Decision.EXPIRED,
                               "sent while the bot was offline")
            await self._say(message, Reply.of(
                f"I was offline when you sent `{shown(parsed.text)}`, so I did not run it. "
                "Please send it again if it is still wanted."
            ))
            return
        try:
            spec = self._registry.lookup(parsed.name)
            # Roles before arguments: someone who may not run a command learns nothing of it.
            grant = await self._authorize(message, room, spec)
            args = spec.bind(parsed.words, self._settings.prefix)
            self._authorize_flags(grant, spec, args)
        except (UnknownCommand, UsageError) as error:
            await self._record(message, parsed, Decision.INVALID, str(error))
            await self._say(message, Reply.of(str(error)))
            return
        except PermissionDenied as error:
            await self._record(message, parsed, Decision.DENIED, str(error))
            await self._say(message, Reply.of(str(error)))
            return
        invocation = Invocation.of_message(
            message, spec, args, grant, room.config if room else None,
            self._statuses.for_command(message.target, key=f"{message.event_id}/status"))
        await self._approve_and_run(message, parsed, invocation)

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

    @staticmethod
    def _authorize_flags(grant: RoleGrant, spec: CommandSpec, args: dict[str, str]) -> None:
        """A flag may need more than its command (`deploy --chaos`: admin by default)."""
        for what, role in spec.roles_for(args):
            if not grant.has(role):
                raise PermissionDenied(what, role)

    async def _approve_and_run(self, message: IncomingMessage, parsed: ParsedCommand,
                               invocation: Invocation) -> None:
        operation = invocation.spec.operation
        if self._approval is not None and operation is not None \
                and operation.changes(invocation.args):
            try:
                run_now = await self._approval(invocation)
            except UserError as error:
                await self._record(message, parsed, Decision.INVALID, str(error))
                await self._say(message, Reply.of(str(error)))
                return
            if not run_now:
                await self._record(message, parsed, Decision.RAN, "waiting for approval")
                return
        await self._record(message, parsed, Decision.RAN)
        await self._executor.execute(invocation)

    async def _say(self, message: IncomingMessage, reply: Reply) -> None:
        await self._executor.say(message.target, reply)

    async def _record(self, message: IncomingMessage, parsed: ParsedCommand,
                      decision: Decision, result: str = "") -> None:
        await self._audit.record(event_id=message.event_id, room_id=message.room_id,
                                 sender=message.sender, command=parsed.name,
                                 words=self._registry.audited(parsed.name, parsed.words),
                                 decision=decision, result=result)
