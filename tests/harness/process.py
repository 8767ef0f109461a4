"""The real bot as a subprocess (`python -m coopbot run -c config.yaml`), so a test can SIGKILL
it at any moment and start it again on the same state folder: how crashes are tested.

    start_bot_process   function-scoped factory: `bot = await start_bot_process(rooms=...)`
                        (same config as `start_bot`); every process is killed at teardown

`bot.start(crash_at=...)` sets COOPBOT_TEST_CRASH_AT (coopbot/crashpoint.py) for that run, for
the moments a test cannot observe from outside; `bot.kill()` is a real SIGKILL from the test.
The bot's log (all runs, appended) is in `bot.log_path`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml

from coopbot.crashpoint import ENV as CRASH_ENV
from coopbot.dev.homeserver import LocalSynapse
from tests.harness.bot import new_bot_config

STOP_TIMEOUT = 30.0


class BotProcess:
    def __init__(self, config_path: Path, user_id: str) -> None:
        self.config_path = config_path
        self.user_id = user_id
        self.log_path = config_path.parent / "bot.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def database(self) -> Path:
        return self.config_path.parent / yaml.safe_load(self.config_path.read_text())["database"]

    def start(self, *, crash_at: str | None = None) -> None:
        """Start a run (it logs in and syncs on its own; wait for what you need from it)."""
        assert self.process is None or self.process.poll() is not None, "already running"
        env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
        if crash_at is not None:
            env[CRASH_ENV] = crash_at
        self.runs += 1
        with self.log_path.open("ab") as log:
            log.write(f"---- run {self.runs} (crash at: {crash_at}) ----\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "coopbot", "run", "-c", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.config_path.parent,
            )

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in an OOM kill or a power cut of the process."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)

    async def exited(self, timeout: float) -> int:
        """Wait for the run to end on its own (a crash point); its return code."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while (code := self.process.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the bot did not exit within {timeout:g} s:\n"
                                     f"{self.log_tail()}")
            await asyncio.sleep(0.2)
        return code

    def stop(self) -> None:
        """SIGTERM and wait (a clean stop); SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()

    async def wait_logged(self, text: str, timeout: float, *, run: int | None = None) -> None:
        """Wait until the log of this run (default: the current one) holds `text`."""
        marker = f"---- run {run or self.runs} "
        deadline = time.monotonic() + timeout
        while True:
            log = self.log_path.read_text(errors="replace")
            if text in log[log.rfind(marker):]:
                return
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"the bot exited before logging {text!r}:\n"
                                     f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the bot did not log {text!r} within {timeout:g} s:\n"
                                     f"{self.log_tail()}")
            await asyncio.sleep(0.2)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """Read the bot's database (WAL: safe while the bot runs, and after a SIGKILL)."""
        with sqlite3.connect(self.database) as db:
            return list(db.execute(sql, params).fetchall())


class StartBotProcess(Protocol):
    def __call__(self, **config: Any) -> Awaitable[BotProcess]: ...


@pytest.fixture
async def start_bot_process(synapse: LocalSynapse,
                            tmp_path: Path) -> AsyncIterator[StartBotProcess]:
    """Factory: a fresh bot account and state folder (the `start_bot` config plus `config`),
    its first run started."""
    started: list[BotProcess] = []

    async def start(**config: Any) -> BotProcess:
        path, user_id = await new_bot_config(synapse, tmp_path, **config)
        bot = BotProcess(path, user_id)
        started.append(bot)
        bot.start()
        return bot

    yield start
    for bot in started:
        bot.stop()
