"""Run the real bot in-process against the session Synapse, with its own state folder.

    start_bot   function-scoped factory: `bot = await start_bot(rooms={room_id: {...}})`
    ask_bot     send a command as a member and return the bot's (final) answer to it
    answer_to   the bot's (final) answer to a command already sent

The bot is built by the real composition root from a real config file, logs in over HTTP and
syncs like in production. `await bot.restart()` stops it (no logout) and starts it again on the
same state folder, which is how restart and downtime behaviour is tested.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml
from nio import RoomMessage

from coopbot.app import Bot, build
from coopbot.config import load_config
from coopbot.dev.homeserver import LocalSynapse
from coopbot.store.audit import AuditRow
from tests.harness.synapse import DEFAULT_TIMEOUT, MakeMember, Member

READY_TIMEOUT = 30.0
STATUS_MARK = "⏳"  # how the bot's interim status messages start (edited as work goes on)


class RunningBot:
    def __init__(self, config_path: Path, user_id: str) -> None:
        self.config_path = config_path
        self.user_id = user_id
        self.bot: Bot | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, prepare: Callable[[Bot], None] | None = None) -> None:
        """`prepare` may change the built bot before it runs (e.g. to break a part of it)."""
        config = await asyncio.to_thread(load_config, self.config_path)
        self.bot = build(config)
        if prepare is not None:
            prepare(self.bot)
        self._task = asyncio.create_task(self.bot.run(), name=f"bot {self.user_id}")
        waiter = asyncio.create_task(self.bot.gateway.synced_once.wait())
        done, _ = await asyncio.wait({waiter, self._task}, timeout=READY_TIMEOUT,
                                     return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            waiter.cancel()
            self._task.result()  # raises the start-up error
            raise AssertionError("the bot stopped during start-up")
        if waiter not in done:
            waiter.cancel()
            raise AssertionError(f"the bot did not finish its first sync in {READY_TIMEOUT} s")

    async def stop(self) -> None:
        if self.bot is None or self._task is None:
            return
        self.bot.stop()
        await asyncio.wait_for(self._task, timeout=30)
        self.bot = None
        self._task = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def rewrite_config(self, **changes: Any) -> None:
        data = yaml.safe_load(self.config_path.read_text())
        data.update(changes)
        self.config_path.write_text(yaml.safe_dump(data))

    async def audit(self, limit: int = 50) -> list[AuditRow]:
        assert self.bot is not None, "bot not running"
        from coopbot.store.audit import AuditLog

        return await AuditLog(self.bot.database).recent(limit=limit)


async def new_bot_config(synapse: LocalSynapse, parent: Path, *,
                         matrix_extra: dict[str, Any] | None = None,
                         **extra: Any) -> tuple[Path, str]:
    """A fresh bot account and a state folder under `parent` holding its config.yaml (extra
    keys merged in, `matrix_extra` into its `matrix` section); returns (config path, bot user
    id)."""
    localpart = f"bot-{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(12)
    user_id = await asyncio.to_thread(synapse.register, localpart, password)
    folder = parent / localpart
    folder.mkdir()
    (folder / "password").write_text(password)
    config: dict[str, Any] = {
        "matrix": {
            "homeserver": synapse.base_url,
            "user_id": user_id,
            "password_file": "password",
            "store": "state/matrix",
            "offline_grace_seconds": 1,
        },
        "database": "state/coopbot.db",
    }
    config["matrix"].update(matrix_extra or {})
    config.update(extra)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, user_id


class StartBot(Protocol):
    def __call__(self, **config: Any) -> Awaitable[RunningBot]: ...


@pytest.fixture
async def start_bot(synapse: LocalSynapse, tmp_path: Path) -> AsyncIterator[StartBot]:
    """Factory for a bot with a fresh account and state folder; extra config keys are merged in
    (e.g. rooms=..., admins=..., roles=...)."""
    running: list[RunningBot] = []

    async def start(**extra: Any) -> RunningBot:
        path, user_id = await new_bot_config(synapse, tmp_path, **extra)
        bot = RunningBot(path, user_id)
        running.append(bot)
        await bot.start()
        return bot

    yield start
    for bot in running:
        await bot.stop()


async def answer_to(
    member: Member,
    room: str,
    bot_id: str,
    command_id: str,
    *,
    final: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """The body of the bot's reply to the command event `command_id`, as `member` sees it.

    With `final` (the default) the first reply that is not a ⏳ status message, i.e. the
    answer; with `final=False` the first reply of any kind (a status message included)."""

    def answers(event: RoomMessage) -> bool:
        content = event.source.get("content", {})
        relates = content.get("m.relates_to", {})
        if relates.get("m.in_reply_to", {}).get("event_id") != command_id:
            return False
        return not (final and str(content.get("body", "")).startswith(STATUS_MARK))

    reply = await member.wait_for_message(
        room, sender=bot_id, predicate=answers, timeout=timeout, after_event_id=command_id
    )
    return str(reply.source["content"]["body"])


async def ask_bot(
    member: Member,
    room: str,
    bot_id: str,
    body: str,
    *,
    final: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Send the command `body` as `member` in `room`; return the bot's answer (`answer_to`)."""
    command_id = await member.send(room, body)
    return await answer_to(member, room, bot_id, command_id, final=final, timeout=timeout)


async def coop_room(
    make_member: MakeMember, *, room_version: str | None = None, encrypted: bool = False
) -> tuple[Member, Member, Member, str]:
    """A fresh room of three fresh members: alice created it (admin), bob is an operator
    (power 50), carol a plain member. Returns (alice, bob, carol, room_id)."""
    tag = uuid.uuid4().hex[:6]
    alice = await make_member(f"alice-{tag}")
    bob = await make_member(f"bob-{tag}")
    carol = await make_member(f"carol-{tag}")
    room = await alice.create_room(
        invite=[bob.user_id, carol.user_id], room_version=room_version, encrypted=encrypted,
        power_levels={bob.user_id: 50},
    )
    await bob.join(room)
    await carol.join(room)
    return alice, bob, carol, room
