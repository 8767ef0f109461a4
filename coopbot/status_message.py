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


def status_message(poster: StatusPoster, message: IncomingMessage, key: str) -> ProgressSink:
    """A sink whose first update replies to `message` (with transaction key `key`, so a retry
    never posts twice) and whose later updates edit that reply."""
    posted: list[EventID] = []

    async def progress(update: Reply) -> None:
        if posted:
            await poster.edit(message.room_id, posted[0], update)
        else:
            posted.append(await poster.reply(message, update, key=key))

    return progress
