"""The supervisor of long-lived background loops: restarts with growing delays, one report per
failure streak, a state the health check reads, and a clean stop at shutdown."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from coopbot.tasks import TaskGroup

FIRST, CAP = 0.02, 0.08


class Flaky:
    """A loop that raises `failures` times, then runs until `stop` is set."""

    def __init__(self, failures: int, stop: asyncio.Event) -> None:
        self.failures = failures
        self.stop = stop
        self.starts: list[float] = []
        self.running = asyncio.Event()

    async def run(self) -> None:
        self.starts.append(time.monotonic())
        if len(self.starts) <= self.failures:
            raise ValueError(f"/secret/path failure {len(self.starts)}")
        self.running.set()
        await self.stop.wait()


async def test_a_failing_loop_is_restarted_with_growing_delays_and_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskGroup(first_delay=FIRST, max_delay=CAP, healthy_after=30)
    stop = asyncio.Event()
    flaky = Flaky(5, stop)
    caplog.set_level(logging.WARNING, logger="coopbot.tasks")
    supervisor = tasks.supervise(flaky.run, name="flaky loop", stop=stop)
    await asyncio.wait_for(flaky.running.wait(), 5)

    gaps = [later - earlier for earlier, later in zip(flaky.starts, flaky.starts[1:], strict=False)]
    expected = [FIRST, 2 * FIRST, 4 * FIRST, CAP, CAP]  # doubling, capped
    assert len(gaps) == len(expected)
    for gap, minimum in zip(gaps, expected, strict=True):
        assert gap >= minimum * 0.9, (gaps, expected)
    assert gaps[2] > gaps[0] * 2

    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(errors) == 1, "the first failure of a streak is reported once"
    assert errors[0].exc_info is not None and "flaky loop failed" in errors[0].getMessage()
    assert len(warnings) == 4
    assert "5 times in a row: ValueError" in warnings[-1].getMessage()

    (state,) = tasks.supervised()
    assert state.name == "flaky loop" and state.failures == 5
    assert state.last_error == "ValueError"  # the type only, never the message
    assert state.failing, "it is failing until it has run healthily for a while"

    stop.set()
    await asyncio.wait_for(supervisor, 1)
    assert len(tasks) == 0


async def test_a_healthy_run_resets_the_back_off_and_the_report(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskGroup(first_delay=FIRST, max_delay=CAP, healthy_after=0.2)
    stop = asyncio.Event()
    streak: list[int] = []  # the failure streak as each run starts
    fourth = asyncio.Event()

    async def fails_after_a_healthy_run() -> None:
        streak.append(tasks.supervised()[0].failures)
        if len(streak) == 3:
            await asyncio.sleep(0.25)  # longer than healthy_after
        if len(streak) == 4:
            fourth.set()
            await stop.wait()
        raise RuntimeError("boom")

    caplog.set_level(logging.WARNING, logger="coopbot.tasks")
    tasks.supervise(fails_after_a_healthy_run, name="loop", stop=stop)
    await asyncio.wait_for(fourth.wait(), 5)
    assert streak == [0, 1, 2, 1], "the failure after a healthy run starts a new streak"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2, "each streak is reported once"
    stop.set()
    await tasks.drain(timeout=1)


async def test_a_loop_that_returns_early_is_restarted_and_stop_ends_the_back_off() -> None:
    tasks = TaskGroup(first_delay=30, max_delay=60)
    stop = asyncio.Event()
    calls = 0
    called = asyncio.Event()

    async def returns_at_once() -> None:
        nonlocal calls
        calls += 1
        called.set()

    supervisor = tasks.supervise(returns_at_once, name="quitter", stop=stop)
    await asyncio.wait_for(called.wait(), 1)
    await asyncio.sleep(0.05)
    (state,) = tasks.supervised()
    assert state.last_error == "returned early" and state.failing
    started = time.monotonic()
    stop.set()  # during the 30 s back-off: the supervisor ends at once
    await asyncio.wait_for(supervisor, 1)
    assert time.monotonic() - started < 1 and calls == 1


async def test_a_loop_that_ends_because_of_the_stop_is_not_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskGroup(first_delay=FIRST)
    stop = asyncio.Event()
    calls = 0

    async def until_stop() -> None:
        nonlocal calls
        calls += 1
        await stop.wait()

    supervisor = tasks.supervise(until_stop, name="loop", stop=stop)
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(supervisor, 1)
    assert calls == 1 and not tasks.supervised()[0].failing
    assert not [r for r in caplog.records if r.name == "coopbot.tasks"]


async def test_cancelling_the_supervisor_cancels_the_loop() -> None:
    tasks = TaskGroup()
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    supervisor = tasks.supervise(forever, name="forever", stop=asyncio.Event())
    await asyncio.sleep(0.01)
    supervisor.cancel()
    await asyncio.gather(supervisor, return_exceptions=True)
    assert cancelled.is_set() and supervisor.cancelled()
