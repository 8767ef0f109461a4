"""Background tasks that are referenced (so they are not garbage-collected) and whose failures
are logged, as mautrix's `background_task` does; long-lived loops are supervised: restarted
with back-off when they die, reported once, and visible to the health check."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 60.0
# A run that lasted this long counts as healthy again: back-off and reporting start over.
HEALTHY_AFTER_SECONDS = 300.0

Factory = Callable[[], Coroutine[Any, Any, Any]]


@dataclass
class Supervised:
    """What the health check reads about one supervised loop."""

    name: str
    failures: int = 0  # failures since it last ran healthily
    last_error: str = ""  # the exception's type only: messages may hold paths or hosts
    started_at: float | None = None  # time.monotonic() of the current run; None while waiting
    healthy_after: float = HEALTHY_AFTER_SECONDS

    @property
    def failing(self) -> bool:
        """True from a failure until a run has lasted `healthy_after` seconds."""
        if self.failures == 0:
            return False
        return self.started_at is None or time.monotonic() - self.started_at < self.healthy_after


class TaskGroup:
    def __init__(self, *, first_delay: float = FIRST_DELAY_SECONDS,
                 max_delay: float = MAX_DELAY_SECONDS,
                 healthy_after: float = HEALTHY_AFTER_SECONDS) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._healthy_after = healthy_after
        self._supervised: list[Supervised] = []

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def supervise(self, factory: Factory, *, name: str, stop: asyncio.Event) -> asyncio.Task[Any]:
        """Run `factory()` until `stop` is set (or the task is cancelled). A loop meant to run
        until shutdown that raises or returns early is started again after a delay that doubles
        up to `max_delay`; the first failure of a streak is logged at ERROR with its traceback,
        later ones at WARNING in one line."""
        state = Supervised(name, healthy_after=self._healthy_after)
        self._supervised.append(state)
        return self.spawn(self._supervise(factory, state, stop), name=f"supervisor of {name}")

    def supervised(self) -> list[Supervised]:
        return list(self._supervised)

    async def _supervise(self, factory: Factory, state: Supervised, stop: asyncio.Event) -> None:
        delay = self._first_delay
        while not stop.is_set():
            state.started_at = time.monotonic()
            error: BaseException | None = None
            try:
                await factory()
            except Exception as caught:
                error = caught
            ran = time.monotonic() - state.started_at
            state.started_at = None
            if stop.is_set():
                return
            if ran >= self._healthy_after:
                state.failures, delay = 0, self._first_delay
            state.failures += 1
            state.last_error = type(error).__name__ if error is not None else "returned early"
            self._report(state, error, delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return
            except TimeoutError:
                pass
            delay = min(delay * 2, self._max_delay)

    @staticmethod
    def _report(state: Supervised, error: BaseException | None, delay: float) -> None:
        what = "failed" if error is not None else "ended before shutdown"
        if state.failures == 1:
            log.error("background task %s %s; restarting it in %.0f s", state.name, what, delay,
                      exc_info=error)
        else:
            log.warning("background task %s %s again (%d times in a row: %s); restarting it in "
                        "%.0f s", state.name, what, state.failures, state.last_error, delay)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("background task %s failed", task.get_name(), exc_info=error)

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float) -> None:
        """Give running work a chance to finish, then cancel what is left."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
