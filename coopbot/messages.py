"""A room message as the pipeline sees it, after the Matrix adapter translated the event."""

from __future__ import annotations

from dataclasses import dataclass

from coopbot.ids import EventID, RoomID, UserID


@dataclass(frozen=True)
class ReplyTarget:
    """Where answers to a command go: into the command's thread, replying to the command."""

    room_id: RoomID
    event_id: EventID  # the command (or the announcement the bot acts on)
    thread_root: EventID | None = None

    @property
    def reply_thread_root(self) -> EventID:
        """Answers go into the command's thread, or start one on the command itself."""
        return self.thread_root or self.event_id


@dataclass(frozen=True)
class IncomingMessage:
    room_id: RoomID
    event_id: EventID
    sender: UserID
    body: str
    msgtype: str
    timestamp_ms: int  # origin_server_ts
    received_at: float  # when the bot saw it (time.time())
    thread_root: EventID | None = None
    is_edit: bool = False
    # It reached the homeserver while the bot was down: answer that it expired, never run it.
    during_downtime: bool = False

    @property
    def reply_thread_root(self) -> EventID:
        return self.target.reply_thread_root

    @property
    def target(self) -> ReplyTarget:
        return ReplyTarget(self.room_id, self.event_id, self.thread_root)


@dataclass(frozen=True)
class IncomingReaction:
    """An m.annotation (emoji reaction) on an event: how members vote on request cards."""

    room_id: RoomID
    event_id: EventID
    sender: UserID
    relates_to: EventID
    key: str


@dataclass(frozen=True)
class IncomingRedaction:
    room_id: RoomID
    event_id: EventID
    sender: UserID
    redacts: EventID
