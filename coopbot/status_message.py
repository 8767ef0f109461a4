"""One status message per command, posted in its thread and then edited in place."""

from __future__ import annotations

from typing import Protocol

from coopbot.ids import EventID, RoomID
from coopbot.invocation import ProgressSink
from coopbot.messages import IncomingMessage
from coopbot.replies import Reply


class StatusPoster(Protocol):
    async def reply(self, to: IncomingMessage, reply: Reply, *, key: str) -> EventID: ...

    async def edit(self, room_id: RoomID, event_id: EventID, reply: Reply) -> None: ...


class StatusLedger(Protocol):
    """Keeps where a status message is, so a restart after a crash can close it."""

    async def remember(self, command_event_id: EventID, room_id: RoomID,
                       status_event_id: EventID, thread_root: EventID) -> None: ...


def status_message(poster: StatusPoster, message: IncomingMessage, key: str,
                   ledger: StatusLedger | None = None) -> ProgressSink:
    """A sink whose first update replies to `message` (with transaction key `key`, so a retry
    never posts twice) and whose later updates edit that reply. With a `ledger`, the posted
    message is remembered the moment it exists."""
    posted: list[EventID] = []

    async def progress(update: Reply) -> None:
        if posted:
            await poster.edit(message.room_id, posted[0], update)
            return
        posted.append(await poster.reply(message, update, key=key))
        if ledger is not None:
            await ledger.remember(message.event_id, message.room_id, posted[0],
                                  message.reply_thread_root)

    return progress
