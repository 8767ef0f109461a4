"""A room member's client for the benchmarks: plain matrix-nio, its own sync loop, and the arrival
time (time.perf_counter) of every answer, keyed by the event it answers (m.in_reply_to).

Plain rooms, no encryption: both bots are measured through exactly the same client.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    LoginResponse,
    RoomCreateResponse,
    RoomSendResponse,
    SyncResponse,
)

T = TypeVar("T")

SYNC_LONG_POLL_MS = 30_000
# Bursts put hundreds of events into one sync: a "limited" timeline would hide some of them.
SYNC_FILTER: dict[str, Any] = {
    "room": {"timeline": {"limit": 1000}},
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
}


@dataclass(frozen=True)
class Answer:
    event_id: str
    sender: str
    body: str
    arrived: float  # time.perf_counter() when this member's sync delivered it


class Member:
    def __init__(self, base_url: str, user_id: str, password: str) -> None:
        self.user_id = user_id
        self._password = password
        self.client = AsyncClient(
            base_url, user_id,
            config=AsyncClientConfig(
                encryption_enabled=False,
                # A 429 comes back as an error at once instead of being retried: it is counted.
                max_limit_exceeded=0,
                max_timeouts=3,
                request_timeout=SYNC_LONG_POLL_MS / 1000 + 30,
            ),
        )
        self.answers: dict[str, list[Answer]] = defaultdict(list)
        self.send_errors: list[str] = []
        self.limited_syncs = 0
        self._seen_rooms: set[str] = set()
        self._tick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        response = await self.client.login(self._password, device_name="bench member")
        if not isinstance(response, LoginResponse):
            raise RuntimeError(f"login of {self.user_id} failed: {response}")
        first = await self.client.sync(timeout=0, full_state=True, sync_filter=SYNC_FILTER)
        if not isinstance(first, SyncResponse):
            raise RuntimeError(f"first sync of {self.user_id} failed: {first}")
        self._task = asyncio.create_task(self._loop(), name=f"sync {self.user_id}")

    async def stop_syncing(self) -> None:
        """A member that only sends needs no sync loop (it would only load this process)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def close(self) -> None:
        await self.stop_syncing()
        await self.client.close()

    async def _loop(self) -> None:
        try:
            while True:
                response = await self.client.sync(timeout=SYNC_LONG_POLL_MS,
                                                  sync_filter=SYNC_FILTER)
                arrived = time.perf_counter()
                if not isinstance(response, SyncResponse):
                    await asyncio.sleep(0.2)
                    continue
                self._record(response, arrived)
                self._wake()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._failure = exc
            self._wake()
            raise

    def _record(self, response: SyncResponse, arrived: float) -> None:
        for room_id, info in response.rooms.join.items():
            # A room's first appearance (just joined) is limited by design: not a lost event.
            if info.timeline.limited and room_id in self._seen_rooms:
                self.limited_syncs += 1
            self._seen_rooms.add(room_id)
            for event in info.timeline.events:
                source = event.source if isinstance(event.source, dict) else {}
                if source.get("type") != "m.room.message":
                    continue
                content = source.get("content") or {}
                relates = content.get("m.relates_to") or {}
                reply_to = (relates.get("m.in_reply_to") or {}).get("event_id")
                if reply_to:
                    self.answers[str(reply_to)].append(Answer(
                        str(source.get("event_id")), str(source.get("sender")),
                        str(content.get("body", "")), arrived))

    def _wake(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def wait_until(self, condition: Callable[[], T | None], timeout: float,
                         what: str) -> T:
        deadline = time.monotonic() + timeout
        while True:
            if self._failure is not None:
                raise RuntimeError(f"{self.user_id}'s sync failed: {self._failure!r}")
            value = condition()
            if value is not None and value is not False:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.user_id}: no {what} within {timeout:g} s")
            try:
                await asyncio.wait_for(self._tick.wait(), remaining)
            except TimeoutError:
                pass

    # -- rooms --------------------------------------------------------------------------

    async def create_room(self, invite: list[str], name: str) -> str:
        response = await self.client.room_create(name=name, invite=invite)
        if not isinstance(response, RoomCreateResponse):
            raise RuntimeError(f"{self.user_id} could not create a room: {response}")
        return str(response.room_id)

    async def join(self, room_id: str) -> None:
        response = await self.client.join(room_id)
        if not isinstance(response, JoinResponse):
            raise RuntimeError(f"{self.user_id} could not join {room_id}: {response}")

    async def wait_joined(self, room_id: str, user_id: str, timeout: float = 60.0) -> None:
        def joined() -> bool:
            room = self.client.rooms.get(room_id)
            return (room is not None and user_id in room.users
                    and not room.users[user_id].invited)

        await self.wait_until(joined, timeout, f"join of {user_id} in {room_id}")

    # -- messages -----------------------------------------------------------------------

    async def send(self, room_id: str, body: str) -> tuple[str | None, float]:
        """Send a text message; (event id or None on error, perf_counter before the send)."""
        started = time.perf_counter()
        response = await self.client.room_send(room_id, "m.room.message",
                                               {"msgtype": "m.text", "body": body})
        if isinstance(response, RoomSendResponse):
            return str(response.event_id), started
        self.send_errors.append(f"{getattr(response, 'status_code', '')} "
                                f"{getattr(response, 'message', response)}")
        return None, started

    def answer(self, event_id: str, sender: str,
               final: Callable[[Answer], bool] | None = None) -> Answer | None:
        for answer in self.answers.get(event_id, ()):
            if answer.sender == sender and (final is None or final(answer)):
                return answer
        return None

    async def wait_answer(self, event_id: str, sender: str, timeout: float,
                          final: Callable[[Answer], bool] | None = None) -> Answer:
        return await self.wait_until(lambda: self.answer(event_id, sender, final), timeout,
                                     f"answer from {sender} to {event_id}")

    async def ask(self, room_id: str, body: str, sender: str, timeout: float = 60.0,
                  final: Callable[[Answer], bool] | None = None) -> tuple[float, Answer]:
        """Send `body`, wait for `sender`'s answer: (seconds from send to arrival, answer)."""
        event_id, started = await self.send(room_id, body)
        if event_id is None:
            raise RuntimeError(f"{self.user_id} could not send {body!r}: {self.send_errors[-1]}")
        answer = await self.wait_answer(event_id, sender, timeout, final)
        return answer.arrived - started, answer

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.client.send(
            method, path, json.dumps(body) if body is not None else None,
            headers={"Authorization": f"Bearer {self.client.access_token}"},
        )
        answer = await response.json()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {answer}")
        return answer

    async def room_history(self, room_id: str, max_events: int = 20_000,
                           until: set[str] | None = None) -> list[dict[str, Any]]:
        """The room's events as the server stores them (newest first), by /messages; with
        `until`, paging back stops once every one of those event ids has been seen."""
        events: list[dict[str, Any]] = []
        missing = set(until) if until else None
        token: str | None = None
        base = f"/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=b&limit=1000"
        while len(events) < max_events:
            page = await self.api("GET", base + (f"&from={quote(token)}" if token else ""))
            chunk = page.get("chunk") or []
            events.extend(chunk)
            token = page.get("end")
            if missing is not None:
                missing.difference_update(str(e.get("event_id")) for e in chunk)
                if not missing:
                    break
            if not chunk or not token:
                break
        return events
