"""What a command handler receives: who asked, where, with which arguments and roles."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from coopbot.config import RoomConfig
from coopbot.ids import EventID, RoomID, UserID
from coopbot.messages import IncomingMessage, ReplyTarget
from coopbot.operations.plan import Binding
from coopbot.registry import CommandSpec
from coopbot.replies import Reply
from coopbot.roles import RoleGrant

log = logging.getLogger(__name__)


class ProgressSink(Protocol):
    """Where an operation's progress goes: `update` posts or edits its status message, and
    `close` marks it done or failed once the answer is out, so no status is left at ⏳."""

    async def __call__(self, update: Reply) -> None: ...

    async def close(self, ok: bool) -> None: ...


class LoggedProgress:
    """Progress nobody waits for in a room (the bot's own runs): into the log."""

    def __init__(self, what: str) -> None:
        self._what = what

    async def __call__(self, update: Reply) -> None:
        log.info("%s: %s", self._what, update.text)

    async def close(self, ok: bool) -> None:
        log.info("%s: %s", self._what, "done" if ok else "failed")


@dataclass(frozen=True)
class Invocation:
    """One command about to run. Built in one of three ways, below: from a member's message,
    from an approved request (the requester's command, the approvers' votes), or by the bot
    itself (an auto-update); everything after that treats them alike."""

    room_id: RoomID
    event_id: EventID  # the command's event: the thread its answers go to
    sender: UserID
    spec: CommandSpec
    args: dict[str, str]
    grant: RoleGrant
    room: RoomConfig | None
    event_timestamp_ms: int
    received_at: float  # time.time() when the bot saw the event
    progress: ProgressSink
    thread_root: EventID | None = None  # the thread the command was sent in, if any
    # Set when the operation runs after a vote: who approved it, and the plan they approved.
    approvers: tuple[str, ...] = ()
    expected_binding: Binding | None = None
    request_id: int | None = None
    # Set when the bot itself asks (auto-update): skips nothing, but is shown as such.
    automatic: bool = False

    def arg(self, name: str, default: str | None = None) -> str | None:
        return self.args.get(name, default)

    @property
    def reply_to(self) -> ReplyTarget:
        return ReplyTarget(self.room_id, self.event_id, self.thread_root)

    @staticmethod
    def of_message(message: IncomingMessage, spec: CommandSpec, args: dict[str, str],
                   grant: RoleGrant, room: RoomConfig | None,
                   progress: ProgressSink) -> Invocation:
        return Invocation(
            room_id=message.room_id, event_id=message.event_id, sender=message.sender,
            spec=spec, args=args, grant=grant, room=room,
            event_timestamp_ms=message.timestamp_ms, received_at=message.received_at,
            progress=progress, thread_root=message.thread_root,
        )

    @staticmethod
    def of_request(target: ReplyTarget, requester: UserID, spec: CommandSpec,
                   args: dict[str, str], grant: RoleGrant, room: RoomConfig | None, *,
                   asked_at: float, progress: ProgressSink, approvers: tuple[str, ...],
                   binding: Binding | None, request_id: int) -> Invocation:
        return Invocation(
            room_id=target.room_id, event_id=target.event_id, sender=requester, spec=spec,
            args=args, grant=grant, room=room, event_timestamp_ms=int(asked_at * 1000),
            received_at=time.time(), progress=progress, thread_root=target.thread_root,
            approvers=approvers, expected_binding=binding, request_id=request_id,
        )

    @staticmethod
    def of_bot(target: ReplyTarget, bot: UserID, spec: CommandSpec, args: dict[str, str],
               order: tuple[str, ...], room: RoomConfig | None,
               progress: ProgressSink) -> Invocation:
        now = time.time()
        return Invocation(
            room_id=target.room_id, event_id=target.event_id, sender=bot, spec=spec,
            args=args, grant=RoleGrant.automatic(bot, order), room=room,
            event_timestamp_ms=int(now * 1000), received_at=now, progress=progress,
            thread_root=target.thread_root, automatic=True,
        )
