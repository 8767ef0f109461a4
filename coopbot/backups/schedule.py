"""Scheduled backups: `hourly`, `daily` (00:00 UTC) or `daily HH:MM` (UTC) per server.

`BackupScheduler.run()` is meant to be a background task of the composition root. Each app's
result goes to the `report` callback, which decides where it is said (the issue: the app's
notification room, on failure only unless asked for more).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta

from coopbot.backups.results import ScheduledBackup
from coopbot.backups.service import BackupService
from coopbot.errors import CoopbotError
from coopbot.replies import Reply

log = logging.getLogger(__name__)

Report = Callable[[ScheduledBackup], Awaitable[None]]
Clock = Callable[[], datetime]
# Sleep in slices so a clock jump (suspend, NTP step) delays a run by at most this.
MAX_SLEEP = 300.0


def next_run(schedule: str, now: datetime) -> datetime:
    """The first time strictly after `now` (UTC) that `schedule` names."""
    now = now.astimezone(UTC)
    if schedule == "hourly":
        return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    kind, _, at = schedule.partition(" ")
    if kind != "daily":
        raise ValueError(f"unknown schedule {schedule!r}")
    hour, _, minute = (at or "00:00").partition(":")
    candidate = now.replace(hour=int(hour), minute=int(minute), second=0, microsecond=0)
    return candidate if candidate > now else candidate + timedelta(days=1)


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def _quiet(_: Reply) -> None:
    """Scheduled runs have no room thread to show progress in."""


class BackupScheduler:
    def __init__(self, backups: BackupService, schedules: Mapping[str, str], report: Report, *,
                 clock: Clock = _utc_now) -> None:
        self._backups = backups
        self._schedules = dict(schedules)
        self._report = report
        self._clock = clock

    async def run(self) -> None:
        """Forever (until cancelled): at each server's time, back up its apps."""
        if not self._schedules:
            return
        due = {server: next_run(s, self._clock()) for server, s in self._schedules.items()}
        while True:
            server, at = min(due.items(), key=lambda item: item[1])
            wait = (at - self._clock()).total_seconds()
            if wait > 0:
                await asyncio.sleep(min(wait, MAX_SLEEP))
                continue
            await self.run_server(server)
            due[server] = next_run(self._schedules[server], self._clock())

    async def run_server(self, server: str) -> list[ScheduledBackup]:
        """One scheduled round for `server` (also callable on request, e.g. from a test)."""
        log.info("scheduled backups of server %s", server)
        try:
            results = await self._backups.scheduled(server, _quiet)
        except CoopbotError as error:
            log.error("scheduled backups of server %s failed: %s (%s)", server, error,
                      error.detail)
            return []
        for result in results:
            try:
                await self._report(result)
            except Exception:
                log.exception("reporting the scheduled backup of %s failed", result.app)
        return results
