"""Progress, in one place: one status message per command, posted in its thread, edited in place
(at most every two seconds, the latest update never lost) and closed when the answer is out."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
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
        self._closed = False

    async def __call__(self, update: Reply) -> None:
        if self._closed:
            return  # a late update (a throttled one, say) must not reopen a closed status
        if self._posted is not None:
            await self._poster.edit(self._message.room_id, self._posted, update)
            return
        self._started = time.monotonic()
        self._posted = await self._poster.reply(self._message, update, key=self._key)
        if self._ledger is not None:
            await self._ledger.remember(self._message.event_id, self._message.room_id,
                                        self._posted, self._message.reply_thread_root)

    async def close(self, ok: bool) -> None:
        self._closed = True
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


Progress = Callable[[Reply], Awaitable[None]]
# Status edits at most this often: a long deploy must not trip the homeserver's rate limits.
PROGRESS_MIN_INTERVAL = 2.0
# While nothing new happens (a long convergence, a slow pull), the line is shown again with the
# time so far this often: a status that does not move looks like a hung bot.
TICK_SECONDS = 5.0


class Throttle:
    """Progress lines at most every PROGRESS_MIN_INTERVAL seconds. A line that comes sooner is
    kept and shown when the interval is over (unless a newer one replaced it): the status
    never stays on an old line while the operation has moved on.

    Used as `async with Throttle(sink) as progress:`, it also ticks: the latest line is shown
    again with the elapsed time whenever nothing was shown for `tick` seconds; leaving the
    block stops the ticker and drops a line still waiting for its interval (the answer is
    out by then, and the status message is closed next)."""

    def __init__(self, sink: Progress, interval: float = PROGRESS_MIN_INTERVAL,
                 tick: float = TICK_SECONDS) -> None:
        self.sink = sink
        self._interval = interval
        self._tick = tick
        self._started = time.monotonic()
        self._last = -interval
        self._line: str | None = None
        self._pending: str | None = None
        self._later: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._sending = asyncio.Lock()  # one edit at a time: the first one posts the message
        self._closed = False

    async def __aenter__(self) -> Throttle:
        self._started = time.monotonic()
        self._ticker = asyncio.create_task(self._ticking())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        tasks = [t for t in (self._later, self._ticker) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._later = self._ticker = None

    async def relay(self, update: Reply) -> None:
        """A Progress for work done inside this one (a backup before an upgrade): its lines
        go through this throttle, so the ticker shows them, not this operation's older one."""
        await self.say(update.text.removeprefix("⏳ "))

    async def say(self, text: str) -> None:
        if self._closed:
            return
        self._line = self._pending = text
        wait = self._last + self._interval - time.monotonic()
        if wait <= 0:
            await self._show()
        elif self._later is None:
            self._later = asyncio.create_task(self._show_after(wait))

    async def _show_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._later = None
        await self._show()

    async def _ticking(self) -> None:
        while True:
            await asyncio.sleep(max(self._tick - (time.monotonic() - self._last), 0.1))
            if self._line is not None and time.monotonic() - self._last >= self._tick:
                self._pending = self._line
                await self._show(ticked=True)

    async def _show(self, *, ticked: bool = False) -> None:
        async with self._sending:
            text, self._pending = self._pending, None
            if text is None or self._closed:
                return
            self._last = time.monotonic()
            elapsed = self._last - self._started
            suffix = f" · {elapsed:.0f} s" if elapsed >= 1 or ticked else ""
            try:
                await self.sink(Reply.of(f"⏳ {text}{suffix}"))
            except CoopbotError as error:
                log.warning("progress update failed: %s", error)
