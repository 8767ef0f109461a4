"""The sync loop: events from the homeserver, handed over in timeline order, never lost.

The token is stored only after a batch was handed over (so a crash replays rather than loses;
replayed events are recognised by id), gaps of a "limited" sync are paged back, encryption
upkeep runs between syncs as nio's sync_forever does, and one event's trouble stays with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import replace
from typing import Any, Protocol

import aiohttp
import nio

from coopbot.config import MatrixConfig
from coopbot.errors import MatrixError
from coopbot.ids import RoomID, UserID
from coopbot.matrix import events
from coopbot.matrix.membership import Membership
from coopbot.matrix.power import PowerCache
from coopbot.matrix.session import MatrixSession
from coopbot.matrix.undecryptable import Undecryptable
from coopbot.matrix.verification import Verifications
from coopbot.messages import IncomingMessage, IncomingReaction, IncomingRedaction
from coopbot.observe import Observers, SyncCompleted
from coopbot.store.kv import KeyValueStore

log = logging.getLogger(__name__)

SYNC_TOKEN_KEY = "matrix.sync_token"
# Events per sync and per page of /messages. A sync that holds more is "limited": the rest is
# fetched page by page, up to MAX_GAP_EVENTS per room (a bot down for days answers at most that
# many old commands as expired rather than paging through the whole history).
TIMELINE_LIMIT = 50
GAP_PAGE = 100
MAX_GAP_EVENTS = 5_000
TOKEN_STORE_INTERVAL = 1.0  # seconds
# A stored token the homeserver keeps refusing (it answers, with an error other than rate
# limiting or a lost login) is dropped after this many tries, so stored state can never
# keep the bot deaf.
TOKEN_REFUSALS = 3
TRANSIENT_ERRCODES = ("M_LIMIT_EXCEEDED", "M_UNKNOWN_TOKEN")


class _SyncFailed(Exception):
    """A sync (or the handing over of its events) failed; it is retried after a pause.
    `refused`: the homeserver answered with an error about the request itself."""

    def __init__(self, reason: str, *, refused: bool = False) -> None:
        super().__init__(reason)
        self.refused = refused


class SyncListener(Protocol):
    """What the sync loop hands events to, in timeline order."""

    async def message(self, message: IncomingMessage) -> None: ...

    async def reaction(self, reaction: IncomingReaction) -> None: ...

    async def redaction(self, redaction: IncomingRedaction) -> None: ...

    async def tombstone(self, room_id: RoomID, sender: UserID, replacement: RoomID) -> None: ...


class SyncLoop:
    def __init__(
        self, client: nio.AsyncClient, config: MatrixConfig, kv: KeyValueStore, *,
        session: MatrixSession, power: PowerCache, membership: Membership,
        observers: Observers, undecryptable: Undecryptable, verifications: Verifications,
    ) -> None:
        self._undecryptable = undecryptable
        self._verifications = verifications
        self._client = client
        self._config = config
        self._kv = kv
        self._session = session
        self._power = power
        self._membership = membership
        self._observers = observers
        self.last_sync = time.monotonic()
        self.synced_once = asyncio.Event()
        self._token_stored_at = 0.0
        self._unstored_token: str | None = None  # newer than the stored one, written on stop
        self._started_at = time.time()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self, listener: SyncListener) -> None:
        """Sync until stopped. Events are handed to `listener` in timeline order; the token is
        stored only after the batch was handed over, so a crash replays rather than loses."""
        since = await self._kv.get(SYNC_TOKEN_KEY)
        first = True
        backoff = 1.0
        refusals = 0
        confirmations = asyncio.create_task(self._verifications.watch_confirmations(),
                                            name="verification confirmations")
        try:
            while not self._stopping.is_set():
                try:
                    response = await self._sync_and_hand_over(listener, since, first=first)
                except _SyncFailed as failure:
                    refusals = refusals + 1 if failure.refused and since is not None else 0
                    if refusals >= TOKEN_REFUSALS:
                        log.error("the homeserver keeps refusing the stored sync token (%s); "
                                  "starting from now: commands sent before are not answered",
                                  failure)
                        since, first, refusals = None, True, 0
                        continue
                    log.warning("sync failed (%s); retrying in %.0f s", failure, backoff)
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, 60.0)
                    continue
                except Exception:
                    # Not a network failure: nio could not read the response (events of a
                    # shape even its parser did not expect). Keep the bot alive and retry.
                    reference = uuid.uuid4().hex[:8]
                    log.exception("sync could not be read; retrying in %.0f s (reference %s)",
                                  backoff, reference)
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, 60.0)
                    continue
                if response is None:
                    return
                backoff, refusals = 1.0, 0
                since = response.next_batch
                now = time.monotonic()
                # At most one write a second: a token stored late only means a replay after a
                # crash, and replayed events are recognised by their ids.
                if first or now - self._token_stored_at >= TOKEN_STORE_INTERVAL:
                    await self._store_token(since, now)
                else:
                    self._unstored_token = since
                await self._observers.emit(SyncCompleted(lag_seconds=now - self.last_sync))
                self.last_sync = now
                if first:
                    first = False
                    await self._membership.join_configured_rooms()
                    self.synced_once.set()
        finally:
            confirmations.cancel()
            await asyncio.gather(confirmations, return_exceptions=True)
            if self._unstored_token is not None:
                await self._store_token(self._unstored_token, time.monotonic())

    async def _sync_and_hand_over(
        self, listener: SyncListener, since: str | None, *, first: bool
    ) -> nio.SyncResponse | None:
        """One sync, its events handed to `listener`; None when stopping. A failure anywhere
        (including while filling a gap) raises _SyncFailed and the batch is tried again: the
        handled-events table drops what was already handed over."""
        try:
            response = await self._sync_unless_stopped(
                timeout=0 if first else 30_000,
                since=since,
                # full_state on the first sync re-fetches room state (power levels) after a
                # restart, since nio keeps no room state on disk.
                full_state=True if first else None,
                sync_filter={"room": {"timeline": {"limit": TIMELINE_LIMIT}}},
            )
            if response is None:
                return None
            if not isinstance(response, nio.SyncResponse):
                errcode = response.status_code
                raise _SyncFailed(f"error: {response.message}", refused=bool(
                    errcode and errcode not in TRANSIENT_ERRCODES))
            await self._after_sync_crypto()
            await self._to_device(response)
            await self._process(response, listener, since=since,
                                history_only=first and since is None,
                                catching_up=first and since is not None)
        except (TimeoutError, aiohttp.ClientError, OSError, MatrixError) as error:
            raise _SyncFailed(type(error).__name__) from error
        return response

    async def _store_token(self, token: str, now: float) -> None:
        await self._kv.set(SYNC_TOKEN_KEY, token)
        self._token_stored_at = now
        self._unstored_token = None

    async def _sync_unless_stopped(
        self, **kwargs: Any
    ) -> nio.SyncResponse | nio.SyncError | None:
        """One sync request, abandoned (None) as soon as stop() is called: a long poll must
        not delay shutdown by up to 30 s."""
        sync = asyncio.ensure_future(self._client.sync(**kwargs))
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({sync, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if sync.done():
            stopping.cancel()
            return sync.result()
        sync.cancel()
        await asyncio.gather(sync, return_exceptions=True)
        return None

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _process(
        self, response: nio.SyncResponse, listener: SyncListener, *, since: str | None,
        history_only: bool, catching_up: bool,
    ) -> None:
        for room_id, info in response.rooms.invite.items():
            await self._membership.consider_invite(RoomID(room_id), info.invite_state)
        for room_id, join in response.rooms.join.items():
            room = RoomID(room_id)
            for state in join.state:
                self._power.note_state(room, state.source)
            events = list(join.timeline.events)
            if join.timeline.limited and since is not None and not history_only:
                # More happened since the last sync than one timeline holds: fetch what was
                # left out, so a burst of commands loses none.
                events = await self._missed_events(room, join.timeline.prev_batch, since) + events
            for event in events:
                await self._hand_over(room, event, listener, history_only=history_only,
                                      catching_up=catching_up)

    async def _missed_events(
        self, room_id: RoomID, prev_batch: str | None, since: str
    ) -> list[nio.Event]:
        """The events between the last sync (`since`) and the start of a limited timeline,
        oldest first, paged backwards with /messages."""
        if prev_batch is None:
            return []
        missed: list[nio.Event] = []
        token = prev_batch
        while len(missed) < MAX_GAP_EVENTS:
            try:
                page = await self._client.room_messages(
                    room_id, start=token, end=since, direction=nio.MessageDirection.back,
                    limit=GAP_PAGE,
                )
            except (TimeoutError, aiohttp.ClientError) as error:
                raise MatrixError("could not fetch the events a sync left out",
                                  detail=repr(error)) from error
            if not isinstance(page, nio.RoomMessagesResponse):
                raise MatrixError("could not fetch the events a sync left out",
                                  detail=page.message)
            missed.extend(page.chunk)
            if not page.chunk or not page.end or page.end == token:
                break
            token = page.end
        else:
            log.warning("more than %d events missed in %s; older ones are not read",
                        MAX_GAP_EVENTS, room_id)
        if missed:
            log.info("fetched %d events a limited sync left out in %s", len(missed), room_id)
        missed.reverse()
        return missed

    async def _hand_over(
        self, room: RoomID, event: nio.Event, listener: SyncListener, *,
        history_only: bool, catching_up: bool,
    ) -> None:
        """One event to the listener. Whatever goes wrong with one event stays with it: it is
        logged once with a reference and skipped, so it can neither stop the sync loop nor be
        replayed after a restart (the batch's token is still stored)."""
        try:
            await self._dispatch(room, event, listener, history_only=history_only,
                                 catching_up=catching_up)
        except Exception:
            reference = uuid.uuid4().hex[:8]
            log.exception("event %s in %s could not be handled and is skipped (reference %s)",
                          getattr(event, "event_id", "?"), room, reference)

    async def _dispatch(
        self, room: RoomID, event: nio.Event, listener: SyncListener, *,
        history_only: bool, catching_up: bool,
    ) -> None:
        if isinstance(event, nio.MegolmEvent):
            await self._undecryptable.failed(room, event, quiet=history_only)
            return
        if getattr(event, "decrypted", False):
            await self._undecryptable.decrypted(room, str(event.sender))
        # Read from the event's JSON (the decrypted JSON for encrypted events), never from
        # nio's classes: nio checks only some fields' types, events.py checks them all.
        source = getattr(event, "source", None)
        kind = events.event_type(source)
        if events.is_state(source):
            self._power.note_state(room, source)
            if kind == "m.room.tombstone" and not history_only:
                upgrade = events.tombstone(room, source)
                if upgrade is not None:
                    await listener.tombstone(room, upgrade.sender, upgrade.replacement)
            return
        if history_only:
            # The very first sync of a new bot shows history: never act on it.
            return
        if await self._verifications.room_event(room, source):
            return
        if kind == "m.reaction":
            reaction = events.reaction(room, source)
            if reaction is not None:
                # Votes cast while the bot was down still count (they are not commands).
                await listener.reaction(reaction)
        elif kind == "m.room.redaction":
            redaction = events.redaction(room, source)
            if redaction is not None:
                await listener.redaction(redaction)
        elif kind == "m.room.message":
            message = events.message(room, source, during_downtime=False)
            if message is None:
                return
            grace_ms = self._config.offline_grace_seconds * 1000
            if catching_up and message.timestamp_ms < self._started_at * 1000 - grace_ms:
                message = replace(message, during_downtime=True)
            await listener.message(message)

    async def _to_device(self, response: nio.SyncResponse) -> None:
        for event in response.to_device_events:
            try:
                await self._verifications.to_device(event)
            except Exception:
                log.exception("a to-device event could not be handled and is skipped")

    async def _after_sync_crypto(self) -> None:
        # What nio's sync_forever does between syncs: keep one-time keys, device lists and
        # olm sessions fresh so encrypted rooms keep working.
        try:
            await self._session.upload_keys()
            if self._client.should_query_keys:
                await self._client.keys_query()
            if self._client.should_claim_keys:
                await self._client.keys_claim(self._client.get_users_for_key_claiming())
            await self._client.send_to_device_messages()
        except (TimeoutError, aiohttp.ClientError, nio.LocalProtocolError) as error:
            log.warning("encryption upkeep failed: %s", error)
