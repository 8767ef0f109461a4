"""What a command handler receives: who asked, where, with which arguments and roles."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from coopbot.config import RoomConfig
from coopbot.ids import EventID, RoomID, UserID
from coopbot.registry import CommandSpec
from coopbot.replies import Reply
from coopbot.roles import RoleGrant

# Posts or edits the operation's status message in the command's thread.
ProgressSink = Callable[[Reply], Awaitable[None]]


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
