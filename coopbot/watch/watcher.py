"""The swarm watcher: every configured server watched at once, alerts grouped and emitted.

Collaborators come in through the constructor (the composition root wires them): the server
pool, a check telling whether a coopbot operation explains a version change (the operation
store knows), and `emit`, which delivers an alert (to notification rooms, minding mutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from coopbot.servers.pool import ServerPool
from coopbot.watch.alerts import Alert, VersionChange
from coopbot.watch.grouping import Grouper
from coopbot.watch.server_loop import ServerLoop
from coopbot.watch.snapshot import WatchSnapshot
from coopbot.watch.timings import WatchTimings
from coopbot.watch.tracker import ServerTracker, VersionNews

log = logging.getLogger(__name__)

# True when a coopbot operation on `change.app` ran (or finished shortly before) between
# `change.last_seen` and `change.at`: the change is then coopbot's own, not news.
OperationCheck = Callable[[VersionChange], Awaitable[bool]]
Emit = Callable[[Alert], Awaitable[None]]

# After `stop`, how long server loops may take to finish a reading before being cancelled.
_STOP_GRACE = 2.0


class SwarmWatcher:
    def __init__(
        self,
        pool: ServerPool,
        server_names: Iterable[str] | None = None,
        *,
        is_coopbot_operation: OperationCheck,
        emit: Emit,
        timings: WatchTimings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        names = list(pool.names if server_names is None else server_names)
        for name in names:
            pool.spec(name)  # an unknown server is a NotFound now, not a silent gap later
        self._timings = timings or WatchTimings()
        self._trackers = {name: ServerTracker(name, self._timings) for name in names}
        self._is_coopbot_operation = is_coopbot_operation
        self._emit = emit
        self._clock = clock
        self._grouper = Grouper(self._timings.group_window)
        self._added = asyncio.Event()  # wakes the flusher when a group opens
        self._running = False

    @property
    def servers(self) -> list[str]:
        return list(self._trackers)

    def snapshot(self) -> WatchSnapshot:
        """What is watched and what is wrong now (as last known), for `!watch`."""
        return WatchSnapshot(
            servers=tuple(tracker.snapshot() for tracker in self._trackers.values()),
            pending_alerts=len(self._grouper),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Watch every server until `stop` is set; then emit what is still held, and return."""
        if self._running:
            raise RuntimeError("this watcher is already running")
        self._running = True
        loops = [
            ServerLoop(self._pool.get(name), tracker, self._timings, self._report, self._clock,
                       self._pool.background())
            for name, tracker in self._trackers.items()
        ]
        tasks = [asyncio.create_task(loop.run(stop), name=f"watch-{loop.server}")
                 for loop in loops]
        flusher = asyncio.create_task(self._flush_until(stop), name="watch-flush")
        try:
            await stop.wait()
            _, late = await asyncio.wait(tasks, timeout=_STOP_GRACE)
            for task in late:
                task.cancel()  # e.g. stuck in a reading of a server that stopped answering
            await asyncio.gather(*tasks, return_exceptions=True)
            await flusher  # not cancelled: it may be delivering an alert; it ends on `stop`
            for alert in self._grouper.drain():  # reported after the flusher's last look
                await self._deliver(alert)
        finally:
            for task in [*tasks, flusher]:
                task.cancel()  # no-op for finished tasks; all of them if run() is cancelled
            for outcome in await asyncio.gather(*tasks, flusher, return_exceptions=True):
                if isinstance(outcome, Exception):
                    log.error("a watch task failed", exc_info=outcome)
            self._running = False

    async def _report(self, alerts: list[Alert], news: VersionNews) -> None:
        """Called by the server loops: version news is checked against coopbot's operations,
        then everything waits in its group's window."""
        alerts = list(alerts)
        for change, alert in news:
            try:
                explained = await self._is_coopbot_operation(change)
            except Exception:  # the check is advisory: better a spurious alert than a lost one
                log.exception("could not check operations for %s", change.app)
                explained = False
            if explained:
                log.info("server %s: %s changed %s -> %s by a coopbot operation",
                         change.server, change.app, change.old, change.new)
            else:
                alerts.append(alert)
        now = asyncio.get_running_loop().time()
        for alert in alerts:
            self._grouper.add(alert, now)
        if alerts:
            self._added.set()

    async def _flush_until(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            self._added.clear()
            due = self._grouper.next_due()
            timeout = None if due is None else max(0.0, due - loop.time())
            await _wait_any(stop, self._added, timeout)
            for alert in self._grouper.due(loop.time()):
                await self._deliver(alert)

    async def _deliver(self, alert: Alert) -> None:
        log.info("watch alert (%s, %s): %s", alert.kind, alert.severity, alert.message)
        try:
            await self._emit(alert)
        except Exception:  # one failed delivery must not stop the watch
            log.exception("could not emit a watch alert about %s", alert.key)


async def _wait_any(first: asyncio.Event, second: asyncio.Event, timeout: float | None) -> None:
    waiters = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*waiters)
