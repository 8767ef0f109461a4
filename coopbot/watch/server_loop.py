"""Watch one server: follow its events, re-read its state, reconnect with backoff.

A session subscribes to the events FIRST and reads the state second, so no change can slip in
between. Each relevant event triggers a reading (after a short debounce that lets a burst of
events share one); a reading also happens every `poll_interval` (events of other nodes'
containers never reach us, time-based conditions need a clock, and a failing reading is how a
silently dead connection is found) and when a service is due to become overdue.

A session that drops is retried at once and quietly: only a failure to connect or to read says
the server is unreachable. Failed attempts are retried with doubling delays up to a cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from coopbot.errors import CoopbotError
from coopbot.servers.engine import DockerEngine
from coopbot.servers.events import Event, EventStream
from coopbot.watch.alerts import Alert
from coopbot.watch.backoff import backoff_delay
from coopbot.watch.timings import WatchTimings
from coopbot.watch.tracker import ServerTracker, VersionNews
from coopbot.watch.view import read_view

log = logging.getLogger(__name__)

Report = Callable[[list[Alert], VersionNews], Awaitable[None]]
_SERVICE_ATTRIBUTE = "com.docker.swarm.service.name"


class _Dropped(Exception):
    """An established session ended; `lasted` seconds after it began."""

    def __init__(self, lasted: float, error: CoopbotError) -> None:
        super().__init__(str(error))
        self.lasted = lasted
        self.error = error


class ServerLoop:
    def __init__(
        self,
        engine: DockerEngine,
        tracker: ServerTracker,
        timings: WatchTimings,
        report: Report,
        clock: Callable[[], float],
        background: asyncio.Semaphore,
    ) -> None:
        self._engine = engine
        self._background = background  # shared by all servers' background readings
        self._tracker = tracker
        self._timings = timings
        self._report = report
        self._clock = clock

    @property
    def server(self) -> str:
        return self._engine.name

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until `stop` is set. Never raises for the server's failures: it reports them."""
        failures = 0  # consecutive attempts that could not connect or read
        drops = 0  # consecutive sessions that dropped soon after they began
        timings = self._timings
        while not stop.is_set():
            try:
                await self._session(stop)
                return  # only returns once `stop` is set
            except _Dropped as dropped:
                log.info("server %s: watch connection dropped (%s); reconnecting", self.server,
                         dropped.error.detail or dropped.error)
                failures = 0
                # A connection that keeps dropping right after it opens must not spin.
                drops = drops + 1 if dropped.lasted < timings.backoff_max else 1
                delay = backoff_delay(drops - 1, timings.backoff_initial, timings.backoff_max)
            except CoopbotError as error:
                failures += 1
                log.warning("server %s: cannot watch: %s (%s)", self.server, error, error.detail)
                await self._report(self._tracker.lost(error, self._clock()), [])
                delay = backoff_delay(failures, timings.backoff_initial, timings.backoff_max)
            except Exception:  # a bug must not end the watch of this server for good
                failures += 1
                log.exception("server %s: watch failed", self.server)
                delay = backoff_delay(failures, timings.backoff_initial, timings.backoff_max)
            await _sleep_unless(stop, delay)

    async def _session(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        stream = self._engine.events()
        try:
            async with self._background:
                await stream.open()
            await self._read()
            began = loop.time()
            try:
                await self._follow(stream, stop)
            except CoopbotError as error:
                raise _Dropped(loop.time() - began, error) from error
        finally:
            stream.close()

    async def _follow(self, stream: EventStream, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_read = loop.time() + self._timings.poll_interval
        followups: list[float] = []
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                wake = min([next_read, *followups])
                deadline = self._tracker.next_deadline()
                if deadline is not None:
                    wake = min(wake, loop.time() + max(0.0, deadline - self._clock()))
                event = await _next_event(stream, stopping, wake - loop.time())
                if stop.is_set():
                    return
                followups = [t for t in followups if t > loop.time()]
                if event is not None:
                    if not _relevant(event):
                        continue
                    if event.get("Type") == "node":
                        followups = sorted({*followups, *(
                            loop.time() + d for d in self._timings.node_followups)})
                    await _sleep_unless(stop, self._timings.debounce)  # let its siblings come
                    stream.discard_pending()  # the reading below covers them
                    if stop.is_set():
                        return
                await self._read()
                next_read = loop.time() + self._timings.poll_interval
        finally:
            stopping.cancel()

    async def _read(self) -> None:
        async with self._background:
            view = await read_view(
                self._engine, at=self._clock(), failure_window=self._timings.failure_window
            )
        alerts, news = self._tracker.observe(view)
        if alerts or news:
            await self._report(alerts, news)


def _relevant(event: Event) -> bool:
    """Service and node events always; container events only of swarm tasks (not helpers)."""
    if event.get("Type") != "container":
        return True
    attributes = (event.get("Actor") or {}).get("Attributes") or {}
    return _SERVICE_ATTRIBUTE in attributes


async def _next_event(
    stream: EventStream, stopping: asyncio.Future[Any], timeout: float
) -> Event | None:
    """The next event, or None when `timeout` passed or `stopping` finished first."""
    getter: asyncio.Future[Any] = asyncio.ensure_future(stream.__anext__())
    done, _ = await asyncio.wait(
        {getter, stopping}, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED
    )
    if getter not in done:
        getter.cancel()  # safe: an event not yet taken stays queued
        return None
    event: Event = getter.result()  # raises ServerUnreachable when the stream dropped
    return event


async def _sleep_unless(stop: asyncio.Event, delay: float) -> None:
    if delay > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
