"""What a command handler receives: who asked, where, with which arguments and roles."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from coopbot.config import RoomConfig
from coopbot.ids import EventID, RoomID, UserID
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
    room_id: RoomID
    event_id: EventID
    sender: UserID
    spec: CommandSpec
    args: dict[str, str]
    grant: RoleGrant
    room: RoomConfig | None
    event_timestamp_ms: int
    received_at: float  # time.time() when the bot saw the event
    progress: ProgressSink
    # Set when the operation runs after a vote: who approved it, and the plan they approved.
    approvers: tuple[str, ...] = ()
    expected_binding: str | None = None
    request_id: int | None = None
    # Set when the bot itself asks (auto-update): skips nothing, but is shown as such.
    automatic: bool = False

    def arg(self, name: str, default: str | None = None) -> str | None:
        return self.args.get(name, default)
