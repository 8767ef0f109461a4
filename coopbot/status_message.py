"""One status message per command, posted in its thread and then edited in place."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from coopbot.errors import CoopbotError
from coopbot.ids import EventID, RoomID
from coopbot.messages import ReplyTarget
from coopbot.ports import RoomReplies
from coopbot.replies import Reply

log = logging.getLogger(__name__)



class StatusLedger(Protocol):
    """Keeps where a status message is, so a restart after a crash can close it."""

    async def remember(self, command_event_id: EventID, room_id: RoomID,
                       status_event_id: EventID, thread_root: EventID) -> None: ...


class StatusMessage:
    """A command's status message: the first update replies to the command (with transaction
    key `key`, so a retry never posts twice), later ones edit that reply, and `close` marks it
    done or failed once the answer is out. With a `ledger`, the posted message is remembered
    the moment it exists (a restart after a crash closes it)."""

    def __init__(self, poster: RoomReplies, message: ReplyTarget, key: str,
                 ledger: StatusLedger | None = None) -> None:
        self._poster = poster
        self._message = message
        self._key = key
        self._ledger = ledger
        self._posted: EventID | None = None
        self._started = time.monotonic()

    async def __call__(self, update: Reply) -> None:
        if self._posted is not None:
            await self._poster.edit(self._message.room_id, self._posted, update)
            return
        self._started = time.monotonic()
        self._posted = await self._poster.reply(self._message, update, key=self._key)
        if self._ledger is not None:
            await self._ledger.remember(self._message.event_id, self._message.room_id,
                                        self._posted, self._message.reply_thread_root)

    async def close(self, ok: bool) -> None:
        if self._posted is None:
            return  # nothing was shown, nothing to close
        took = time.monotonic() - self._started
        ending = "done" if ok else "failed"
        try:
            await self._poster.edit(self._message.room_id, self._posted, Reply.of(
                f"{'✅' if ok else '❌'} {ending} after {took:.0f} s; the answer follows."))
        except CoopbotError as error:
            log.warning("could not close the status message of %s: %s",
                        self._message.event_id, error)


class CommandStatuses:
    """Makes the status message of each command that runs (remembered in the ledger)."""

    def __init__(self, poster: RoomReplies, ledger: StatusLedger | None = None) -> None:
        self._poster = poster
        self._ledger = ledger

    def for_command(self, target: ReplyTarget, key: str) -> StatusMessage:
        return StatusMessage(self._poster, target, key, self._ledger)
