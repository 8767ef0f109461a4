"""Real Synapse fixtures: a session homeserver and logged-in nio test members.

    synapse        session: a started `coopbot.dev.homeserver.LocalSynapse` (fails, never skips)
    make_member    session: `await make_member("alice")` -> a logged-in, syncing `Member`

A `Member` runs its own sync loop (a background task) and records every timeline event
it sees, per room, in receive order, already decrypted where it could be. Every wait
has a timeout and fails with an AssertionError that shows what *was* seen.

Encryption (nio 0.26): the sync loop does what `sync_forever` does, but in a fixed order
after each sync (to-device, keys upload, keys query, keys claim) and only then wakes the
waiters, so `wait_joined()` returning means the new member's devices are known and the
next `send()` shares the room key with them. Sends use `ignore_unverified_devices=True`.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Protocol
from urllib.parse import quote

import pytest
from nio import (
    AsyncClient,
    AsyncClientConfig,
    Event,
    JoinResponse,
    KeysUploadResponse,
    LoginResponse,
    MegolmEvent,
    ProfileSetDisplayNameResponse,
    RoomCreateResponse,
    RoomGetEventResponse,
    RoomGetStateEventResponse,
    RoomInviteResponse,
    RoomMessage,
    RoomPutStateResponse,
    RoomRedactResponse,
    RoomSendResponse,
    SyncResponse,
)
from nio.responses import ErrorResponse

from coopbot.dev.homeserver import LocalSynapse

DEFAULT_TIMEOUT = 15.0
# Long-poll length of each member's sync; a close cancels it, so it never delays a test.
SYNC_LONG_POLL_MS = 30_000
# Synapse's default timeline limit is 10 per room; room creation alone can exceed it
# and a "limited" sync would silently drop events from the record.
SYNC_FILTER = {"room": {"timeline": {"limit": 200}}}
# Rooms before version 12 list the creator in m.room.power_levels; 12 does not.
PRE_V12_ROOM_VERSIONS = frozenset(str(v) for v in range(1, 12))


def password_for(localpart: str) -> str:
    return f"{localpart}-harness-password"


def _check(response: Any, expected: type, what: str) -> Any:
    """Turn a nio error response into an AssertionError that says what failed."""
    if not isinstance(response, expected):
        detail = response
        if isinstance(response, ErrorResponse):
            detail = f"{response.status_code} {response.message}"
        raise AssertionError(f"{what} failed: {detail}")
    return response


def _describe(event: Event) -> str:
    source = event.source if isinstance(event.source, dict) else {}
    kind = source.get("type", type(event).__name__)
    if isinstance(event, MegolmEvent):
        kind = "m.room.encrypted (UNDECRYPTED)"
    body = getattr(event, "body", None)
    text = f" {body!r}" if body is not None else ""
    return f"{event.event_id} {kind} from {event.sender}{text}"


def _strip_fallback(body: str) -> str:
    """Drop a reply fallback ("> <@user> ..." lines and the blank line after them)."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> <"):
        return body
    rest = list(itertools.dropwhile(lambda line: line.startswith(">"), lines))
    if rest and rest[0] == "":
        rest = rest[1:]
    return "\n".join(rest)


class Member:
    """A test user: a logged-in `nio.AsyncClient` with a background sync loop."""

    def __init__(self, client: AsyncClient, *, password: str) -> None:
        self.client = client
        self.user_id: str = client.user_id
        self.password = password
        self._timelines: dict[str, list[Event]] = {}
        # Every to-device event received, in order (nio keeps some, like key requests, from
        # its to-device callbacks).
        self.to_device: list[Any] = []
        self._tick = asyncio.Event()
        self._syncs = 0
        self._sync_error: BaseException | None = None
        self._last_sync_failure: str | None = None
        self._gaps: list[str] = []
        # nio's key query / claim / share are not safe to interleave: one at a time.
        self._crypto_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------

    async def start(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Start syncing; return once the first sync ran and device keys are uploaded."""
        self._task = asyncio.create_task(self._sync_loop(), name=f"sync {self.user_id}")
        await self._wait_until(
            lambda: self._syncs >= 1 and not self._keys_pending(),
            timeout,
            lambda: f"{self.user_id}: first sync and key upload",
        )

    def _keys_pending(self) -> bool:
        return self.client.olm is not None and bool(self.client.should_upload_keys)

    async def close(self) -> None:
        """Stop syncing and close the HTTP session. Never logs out: that would delete
        the device and its keys (matrix-rules 9: never log out on shutdown)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:  # the waits already reported it as a test failure
                pass
            self._task = None
        await self.client.close()

    async def _sync_loop(self) -> None:
        first = True
        try:
            while True:
                response = await self.client.sync(
                    timeout=0 if first else SYNC_LONG_POLL_MS,
                    sync_filter=SYNC_FILTER,
                    full_state=True if first else None,
                )
                if not isinstance(response, SyncResponse):
                    self._last_sync_failure = str(response)
                    await asyncio.sleep(0.2)
                    continue
                first = False
                self._record(response)
                # The same follow-ups as nio's sync_forever, in order, so that waiters
                # woken below see a client whose keys are up to date.
                async with self._crypto_lock:
                    await self._crypto_followups()
                self._syncs += 1
                self._wake()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._sync_error = exc
            self._wake()
            raise

    async def _crypto_followups(self) -> None:
        client = self.client
        if client.olm is None:
            return
        await client.send_to_device_messages()
        if client.should_upload_keys:
            _check(await client.keys_upload(), KeysUploadResponse, "keys upload")
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())

    def _record(self, response: SyncResponse) -> None:
        self.to_device.extend(response.to_device_events)
        # nio has already replaced the Megolm events it could decrypt in `response`.
        for room_id, info in response.rooms.join.items():
            if info.timeline.limited and room_id in self._timelines:
                self._gaps.append(room_id)
            timeline = self._timelines.setdefault(room_id, [])
            seen = {event.event_id for event in timeline[-300:]}
            for event in info.timeline.events:
                if event.event_id not in seen:
                    timeline.append(event)

    def _wake(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def _wait_until(
        self,
        condition: Callable[[], Any],
        timeout: float,
        what: Callable[[], str],
    ) -> Any:
        """Re-check `condition` after every sync until it is truthy; return its value."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            tick = self._tick
            result = condition()
            if result:
                return result
            if self._sync_error is not None:
                raise AssertionError(
                    f"{self.user_id}'s sync loop died while waiting for {what()}: "
                    f"{self._sync_error!r}"
                ) from self._sync_error
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                failure = self._last_sync_failure
                extra = f" (last sync failure: {failure})" if failure else ""
                raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what()}{extra}")
            try:
                await asyncio.wait_for(tick.wait(), remaining)
            except TimeoutError:
                pass

    async def wait_until(
        self, condition: Callable[[], Any], *, timeout: float = DEFAULT_TIMEOUT, what: str
    ) -> Any:
        """Wait until `condition()` (re-checked after each of this member's syncs) is truthy."""
        return await self._wait_until(condition, timeout, lambda: what)

    # -- what this member has seen -------------------------------------------------

    def timeline(self, room_id: str) -> list[Event]:
        """Every timeline event seen in the room, in receive order (a copy)."""
        return list(self._timelines.get(room_id, []))

    def event(self, room_id: str, event_id: str) -> Event | None:
        return next((e for e in self._timelines.get(room_id, []) if e.event_id == event_id), None)

    def messages_from(self, room_id: str, sender: str) -> list[RoomMessage]:
        """m.room.message events (decrypted ones included) from `sender`, in order."""
        return [
            e
            for e in self._timelines.get(room_id, [])
            if isinstance(e, RoomMessage) and e.sender == sender
        ]

    def _after(self, room_id: str, after_event_id: str | None) -> list[Event] | None:
        """Events after `after_event_id` (all if None); None while it is not seen yet."""
        timeline = self._timelines.get(room_id, [])
        if after_event_id is None:
            return list(timeline)
        for index, event in enumerate(timeline):
            if event.event_id == after_event_id:
                return timeline[index + 1 :]
        return None

    def _room_summary(self, room_id: str, last: int = 12) -> str:
        timeline = self._timelines.get(room_id, [])
        lines = [f"  {_describe(e)}" for e in timeline[-last:]]
        head = f"{self.user_id} saw {len(timeline)} events in {room_id}"
        if room_id in self._gaps:
            head += " (WARNING: a limited sync skipped events)"
        return head + (":\n" + "\n".join(lines) if lines else "")

    async def wait_for_event(
        self,
        room_id: str,
        predicate: Callable[[Event], bool],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        after_event_id: str | None = None,
        what: str = "a matching event",
    ) -> Event:
        """The first event (after `after_event_id`, if given) matching `predicate`."""

        def found() -> Event | None:
            events = self._after(room_id, after_event_id)
            return next((e for e in events or [] if predicate(e)), None)

        def describe() -> str:
            waiting = f"{what} in {room_id}"
            if after_event_id and self._after(room_id, after_event_id) is None:
                waiting += f" (event {after_event_id} itself never arrived)"
            return f"{waiting}\n{self._room_summary(room_id)}"

        result: Event = await self._wait_until(found, timeout, describe)
        return result

    async def wait_for_message(
        self,
        room_id: str,
        *,
        sender: str,
        predicate: Callable[[RoomMessage], bool] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        after_event_id: str | None = None,
    ) -> RoomMessage:
        """The first m.room.message from `sender` (decrypted ones included)."""

        def matches(event: Event) -> bool:
            return (
                isinstance(event, RoomMessage)
                and event.sender == sender
                and (predicate is None or predicate(event))
            )

        qualifier = " matching the predicate" if predicate else ""
        event = await self.wait_for_event(
            room_id,
            matches,
            timeout=timeout,
            after_event_id=after_event_id,
            what=f"a message from {sender}{qualifier}",
        )
        assert isinstance(event, RoomMessage)
        return event

    async def assert_no_message(
        self,
        room_id: str,
        sender: str,
        *,
        within: float = 3.0,
        after_event_id: str | None = None,
    ) -> None:
        """Fail if `sender` posts an m.room.message (after `after_event_id`) within N s."""
        if after_event_id is not None:
            await self.wait_for_event(
                room_id,
                lambda e: e.event_id == after_event_id,
                what=f"event {after_event_id}",
            )
        try:
            event = await self.wait_for_message(
                room_id, sender=sender, timeout=within, after_event_id=after_event_id
            )
        except AssertionError as exc:
            if "timed out" in str(exc):
                return
            raise
        raise AssertionError(
            f"expected no message from {sender} within {within} s, got {_describe(event)}"
        )

    async def wait_joined(
        self, room_id: str, user_id: str, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        """Wait until `user_id`'s membership is join in this member's view of the room
        (and, in encrypted rooms, until their devices have been queried)."""

        def joined() -> bool:
            room = self.client.rooms.get(room_id)
            if room is None or user_id not in room.users or room.users[user_id].invited:
                return False
            olm = self.client.olm
            return not (room.encrypted and olm is not None and olm.should_query_keys)

        await self._wait_until(
            joined,
            timeout,
            lambda: f"{user_id} to be joined to {room_id} as seen by {self.user_id}",
        )

    # -- actions -------------------------------------------------------------------

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        """A raw client-server API call as this member (nio parses nothing): the JSON
        answer. For checks that must see what the server stores, not nio's view."""
        response = await self.client.send(
            method,
            path,
            json.dumps(body) if body is not None else None,
            headers={"Authorization": f"Bearer {self.client.access_token}"},
        )
        answer = await response.json()
        if response.status != 200:
            raise AssertionError(f"{method} {path} as {self.user_id}: {response.status} {answer}")
        return answer

    async def raw_event(self, room_id: str, event_id: str) -> dict[str, Any]:
        """The event as the server returns it (still encrypted in E2E rooms)."""
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/event/{quote(event_id)}"
        event: dict[str, Any] = await self.api("GET", path)
        return event

    async def _server_default_room_version(self) -> str:
        body = await self.api("GET", "/_matrix/client/v3/capabilities")
        return str(body["capabilities"]["m.room_versions"]["default"])

    async def create_room(
        self,
        *,
        invite: list[str] | None = None,
        room_version: str | None = None,
        encrypted: bool = False,
        power_levels: dict[str, int] | None = None,
        name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> str:
        """Create a private room and wait until this member's sync shows it.

        `power_levels` maps user ids to levels (the `users` of m.room.power_levels).
        Before room version 12 the creator is added at 100 unless listed, since Synapse
        requires it there; from version 12 on the creator is never listed (creators
        have unlimited power and a listed creator is rejected).
        """
        initial_state: list[dict[str, Any]] = []
        if encrypted:
            initial_state.append(
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            )
        override: dict[str, Any] | None = None
        if power_levels is not None:
            version = room_version or await self._server_default_room_version()
            users = dict(power_levels)
            if version in PRE_V12_ROOM_VERSIONS:
                users.setdefault(self.user_id, 100)
            else:
                users.pop(self.user_id, None)
            override = {"users": users}
        response = _check(
            await self.client.room_create(
                name=name,
                room_version=room_version,
                invite=list(invite or []),
                initial_state=initial_state,
                power_level_override=override,
            ),
            RoomCreateResponse,
            f"{self.user_id} creating a room",
        )
        room_id: str = response.room_id

        def ready() -> bool:
            room = self.client.rooms.get(room_id)
            return (
                room is not None
                and self.user_id in room.users
                and (room.encrypted or not encrypted)
            )

        await self._wait_until(ready, timeout, lambda: f"room {room_id} in {self.user_id}'s sync")
        return room_id

    async def invite(self, room_id: str, user_id: str) -> None:
        _check(
            await self.client.room_invite(room_id, user_id),
            RoomInviteResponse,
            f"{self.user_id} inviting {user_id}",
        )

    async def join(self, room_id: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Join and wait until this member's own sync shows the join."""
        _check(await self.client.join(room_id), JoinResponse, f"{self.user_id} joining {room_id}")
        await self.wait_joined(room_id, self.user_id, timeout=timeout)

    async def send_event(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        """Send any room event (encrypted if the room is); return its event id."""
        async with self._crypto_lock:
            room = self.client.rooms.get(room_id)
            if room is not None and room.encrypted and self.client.should_query_keys:
                # A member whose devices are not known yet would get no room key.
                await self.client.keys_query()
            response = _check(
                await self.client.room_send(
                    room_id, event_type, content, ignore_unverified_devices=True
                ),
                RoomSendResponse,
                f"{self.user_id} sending {event_type} to {room_id}",
            )
        event_id: str = response.event_id
        return event_id

    async def _quoted(self, room_id: str, event_id: str) -> tuple[str, str]:
        """(sender, body without its own reply fallback) of the event being replied to."""
        event = self.event(room_id, event_id)
        if event is None:
            fetched = _check(
                await self.client.room_get_event(room_id, event_id),
                RoomGetEventResponse,
                f"{self.user_id} fetching {event_id}",
            )
            event = fetched.event
        body = getattr(event, "body", None)
        return event.sender, _strip_fallback(body if isinstance(body, str) else "")

    async def send(
        self,
        room_id: str,
        body: str,
        *,
        msgtype: str = "m.text",
        thread_root: str | None = None,
        reply_to: str | None = None,
        formatted_body: str | None = None,
    ) -> str:
        """Send an m.room.message the way Element does; return its event id.

        `reply_to` adds the reply fallback (body "> <@user> quoted\\n\\nbody" and an
        <mx-reply> block) and m.in_reply_to; `thread_root` makes it an m.thread event.
        """
        content: dict[str, Any] = {"msgtype": msgtype, "body": body}
        html_body = formatted_body
        if reply_to is not None:
            quoted_sender, quoted = await self._quoted(room_id, reply_to)
            quoted_lines = quoted.split("\n") or [""]
            fallback = [f"> <{quoted_sender}> {quoted_lines[0]}"]
            fallback += [f"> {line}" for line in quoted_lines[1:]]
            content["body"] = "\n".join(fallback) + "\n\n" + body
            html_body = (
                "<mx-reply><blockquote>"
                f'<a href="https://matrix.to/#/{room_id}/{reply_to}">In reply to</a> '
                f'<a href="https://matrix.to/#/{quoted_sender}">{quoted_sender}</a><br />'
                f"{html.escape(quoted)}</blockquote></mx-reply>"
                + (formatted_body if formatted_body is not None else html.escape(body))
            )
        if html_body is not None:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = html_body
        if thread_root is not None:
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": thread_root,
                "is_falling_back": reply_to is None,
                "m.in_reply_to": {"event_id": reply_to or thread_root},
            }
        elif reply_to is not None:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        return await self.send_event(room_id, "m.room.message", content)

    async def edit(self, room_id: str, event_id: str, new_body: str) -> str:
        """An m.replace edit of `event_id` (body "* new", the new text in m.new_content)."""
        original = self.event(room_id, event_id)
        msgtype = getattr(original, "source", {}).get("content", {}).get("msgtype", "m.text")
        content = {
            "msgtype": msgtype,
            "body": f"* {new_body}",
            "m.new_content": {"msgtype": msgtype, "body": new_body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
        }
        return await self.send_event(room_id, "m.room.message", content)

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        """An m.annotation reaction. (nio never encrypts m.reaction, even in E2E rooms.)"""
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        return await self.send_event(room_id, "m.reaction", content)

    async def redact(self, room_id: str, event_id: str, reason: str | None = None) -> str:
        response = _check(
            await self.client.room_redact(room_id, event_id, reason=reason),
            RoomRedactResponse,
            f"{self.user_id} redacting {event_id}",
        )
        redaction_id: str = response.event_id
        return redaction_id

    async def state_event(self, room_id: str, event_type: str, state_key: str = "") -> Any:
        """The content of a state event, read from the server (not from sync)."""
        response = _check(
            await self.client.room_get_state_event(room_id, event_type, state_key),
            RoomGetStateEventResponse,
            f"{self.user_id} reading {event_type} in {room_id}",
        )
        return response.content

    async def power_levels(self, room_id: str) -> dict[str, Any]:
        content: dict[str, Any] = await self.state_event(room_id, "m.room.power_levels")
        return content

    async def set_power_level(self, room_id: str, user_id: str, level: int) -> str:
        """Read-modify-write of m.room.power_levels; returns the state event id."""
        content = await self.power_levels(room_id)
        content.setdefault("users", {})[user_id] = level
        response = _check(
            await self.client.room_put_state(room_id, "m.room.power_levels", content),
            RoomPutStateResponse,
            f"{self.user_id} setting {user_id}'s power level to {level} in {room_id}",
        )
        event_id: str = response.event_id
        return event_id

    async def set_displayname(self, name: str) -> None:
        _check(
            await self.client.set_displayname(name),
            ProfileSetDisplayNameResponse,
            f"{self.user_id} setting display name {name!r}",
        )


class MakeMember(Protocol):
    def __call__(
        self, localpart: str, *, encrypted_store: bool = True, password: str | None = None
    ) -> Awaitable[Member]: ...


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSynapse]:
    """A started Synapse for the whole session. A start failure errors every test that
    uses it (never a skip): the real homeserver is part of what is tested."""
    server = LocalSynapse(tmp_path_factory.mktemp("synapse"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def make_member(
    synapse: LocalSynapse, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MakeMember]:
    """Factory: `await make_member("alice")` registers (idempotently), logs in a new
    device and starts its sync loop. `encrypted_store=False` gives a client without
    E2EE (no crypto store): it sees encrypted events as undecryptable."""
    stores = tmp_path_factory.mktemp("nio-stores")
    members: list[Member] = []
    store_numbers = itertools.count()

    async def make(
        localpart: str, *, encrypted_store: bool = True, password: str | None = None
    ) -> Member:
        secret = password or password_for(localpart)
        user_id = await asyncio.to_thread(synapse.register, localpart, secret)
        # One crypto store per login (a login is a new device), never shared.
        store = stores / f"{localpart}-{next(store_numbers)}"
        store.mkdir(parents=True)
        client = AsyncClient(
            synapse.base_url,
            user_id,
            store_path=str(store),
            config=AsyncClientConfig(
                encryption_enabled=encrypted_store,
                store_sync_tokens=True,
                # nio retries 429s forever by default; fail loudly instead.
                max_limit_exceeded=3,
                max_timeouts=3,
                request_timeout=SYNC_LONG_POLL_MS / 1000 + 15,
            ),
        )
        try:
            _check(
                await client.login(secret, device_name=f"harness {localpart}"),
                LoginResponse,
                f"logging in {user_id}",
            )
            member = Member(client, password=secret)
            members.append(member)
        except BaseException:
            await client.close()
            raise
        await member.start()
        return member

    yield make
    for member in members:
        await member.close()


__all__ = ["MakeMember", "Member", "make_member", "password_for", "synapse"]
