"""A member whose client is matrix-js-sdk with its Rust crypto (the stack inside Element), in
"exclude insecure devices" mode and with its own cross-signing identity.

    make_js_member   function-scoped factory: `js = await make_js_member("dora")`

The client runs in Node (tests/jsclient/member.mjs) and is driven over JSON lines on
stdin/stdout, one request at a time. Its dependencies are installed by `scripts/setup test`
(`npm ci` in tests/jsclient); a missing Node or missing packages fail the test, never skip it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, Protocol

import pytest

from coopbot.dev.homeserver import LocalSynapse
from tests.harness.synapse import DEFAULT_TIMEOUT, password_for

JSCLIENT = Path(__file__).resolve().parent.parent / "jsclient"
SCRIPT = JSCLIENT / "member.mjs"
START_TIMEOUT = 60.0


class JsMember:
    def __init__(self, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self._process = process
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self.log_path = log_path
        self.user_id = ""
        self.device_id = ""
        self.password = ""

    async def call(self, op: str, *, timeout: float = DEFAULT_TIMEOUT, **args: Any) -> Any:
        """One request to the Node client; its result, or an AssertionError with its error."""
        assert self._process.stdin is not None and self._process.stdout is not None
        async with self._lock:
            request_id = next(self._ids)
            line = json.dumps({"id": request_id, "op": op, "timeout_ms": int(timeout * 1000),
                               **args})
            self._process.stdin.write(line.encode() + b"\n")
            await self._process.stdin.drain()
            try:
                raw = await asyncio.wait_for(self._process.stdout.readline(), timeout + 10)
            except TimeoutError:
                raise AssertionError(f"js member {self.user_id}: no answer to {op} "
                                     f"(log: {self.log_path})") from None
        if not raw:
            raise AssertionError(f"js member {self.user_id} exited during {op}; "
                                 f"log tail:\n{self._log_tail()}")
        answer = json.loads(raw)
        assert answer["id"] == request_id
        if not answer["ok"]:
            raise AssertionError(f"js member {self.user_id}: {op} failed: {answer['error']}")
        return answer["result"]

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def create_room(self, *, invite: list[str], encrypted: bool = True,
                          power_levels: dict[str, int] | None = None) -> str:
        # The session Synapse's default room version is 12: creators are never listed.
        room: str = await self.call("createRoom", invite=invite, encrypted=encrypted,
                                    power_levels=power_levels)
        return room

    async def invite(self, room: str, user: str) -> None:
        await self.call("invite", room=room, user=user)

    async def join(self, room: str) -> None:
        await self.call("join", room=room)

    async def wait_joined(self, room: str, user: str) -> None:
        await self.call("waitJoined", room=room, user=user)

    async def send(self, room: str, body: str) -> str:
        event_id: str = await self.call("send", room=room, body=body)
        return event_id

    async def react(self, room: str, event_id: str, key: str) -> str:
        reaction: str = await self.call("react", room=room, event_id=event_id, key=key)
        return reaction

    async def reply_to(self, room: str, sender: str, event_id: str, *, final: bool = True,
                       timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """The event (as the js client decrypted it) replying to `event_id` from `sender`."""
        found: dict[str, Any] = await self.call("waitReply", room=room, sender=sender,
                                                to=event_id, final=final, timeout=timeout)
        return found

    async def ask(self, room: str, bot_id: str, body: str,
                  timeout: float = DEFAULT_TIMEOUT) -> str:
        event_id = await self.send(room, body)
        reply = await self.reply_to(room, bot_id, event_id, timeout=timeout)
        return str(reply["content"]["body"])

    async def device_status(self, user: str, device: str) -> dict[str, bool]:
        status: dict[str, bool] = await self.call("deviceStatus", user=user, device=device)
        return status

    async def verify_start(self, user: str, device: str,
                           room: str | None = None) -> list[list[str]]:
        """Start SAS verification of `user`'s `device` (to-device, as Element's "Verify
        session" does; in `room` if given, as "Verify user" does); the emoji this client
        shows, as [emoji, name] pairs."""
        emoji: list[list[str]] = await self.call("verifyStart", user=user, device=device,
                                                 room=room, timeout=30)
        return emoji

    async def verify_confirm(self, timeout: float = 30) -> dict[str, Any]:
        """"They match": this side's MAC; returns once the verification ended."""
        outcome: dict[str, Any] = await self.call("verifyConfirm", timeout=timeout)
        return outcome

    async def verify_mismatch(self) -> dict[str, Any]:
        """"They don't match": cancels the verification; its outcome."""
        outcome: dict[str, Any] = await self.call("verifyMismatch", timeout=30)
        return outcome

    async def close(self) -> None:
        if self._process.returncode is None:
            try:
                await self.call("close", timeout=5)
            except (AssertionError, OSError):
                pass
            try:
                await asyncio.wait_for(self._process.wait(), 10)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()


class MakeJsMember(Protocol):
    def __call__(self, localpart: str, *, again: JsMember | None = None) -> Awaitable[JsMember]:
        """A new user, or with `again` a new device (and a new cross-signing identity, which
        replaces the account's) of that member's account."""
        ...


def _check_installed() -> str:
    node = shutil.which("node")
    if node is None:
        raise AssertionError("node is not installed: the js-sdk member needs Node 20")
    if not (JSCLIENT / "node_modules" / "matrix-js-sdk").is_dir():
        raise AssertionError("tests/jsclient has no node_modules: run `scripts/setup test` "
                             "(it runs `npm ci` there)")
    return node


@pytest.fixture
async def make_js_member(
    synapse: LocalSynapse, tmp_path: Path
) -> AsyncIterator[MakeJsMember]:
    node = _check_installed()
    members: list[JsMember] = []

    async def make(localpart: str, *, again: JsMember | None = None) -> JsMember:
        name = f"{localpart}-{uuid.uuid4().hex[:6]}"
        if again is not None:
            user_id, secret = again.user_id, again.password
        else:
            secret = password_for(name)
            user_id = await asyncio.to_thread(synapse.register, name, secret)
        log_path = tmp_path / f"js-{name}.log"
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                node, str(SCRIPT), cwd=JSCLIENT, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=log_file,
                limit=16 * 1024 * 1024,
            )
        member = JsMember(process, log_path)
        members.append(member)
        member.user_id = user_id
        member.password = secret
        session = await member.call("login", timeout=START_TIMEOUT, base_url=synapse.base_url,
                                    user_id=user_id, password=secret,
                                    device_name=f"js harness {name}")
        member.device_id = session["device_id"]
        return member

    yield make
    for member in members:
        await member.close()


__all__ = ["JsMember", "MakeJsMember", "make_js_member"]
