"""matrix-nio behind the interfaces the pipeline needs (Responder, PowerSource) plus the sync loop.

nio errors are turned into MatrixError here. Everything that must survive a restart is persisted:
the sync token (in the bot's database), the device id and token (session.json) and the crypto
store (nio's). The bot never logs out: that would destroy its device keys.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import nio
from nio.api import RelationshipType

from coopbot.config import InviteConfig, MatrixConfig
from coopbot.errors import MatrixError
from coopbot.ids import EventID, RoomID, UserID, server_of
from coopbot.matrix import events
from coopbot.matrix.content import edit_of, in_thread, notice
from coopbot.matrix.cross_signing import NioKeysApi, ensure_cross_signed
from coopbot.matrix.device_trust import DeviceTrust
from coopbot.matrix.session import StoredSession, load_session, save_session
from coopbot.matrix.undecryptable import Undecryptable
from coopbot.matrix.verification import Verifications
from coopbot.messages import IncomingMessage, IncomingReaction, IncomingRedaction
from coopbot.observe import Observers, SyncCompleted
from coopbot.replies import Attachment, Reply
from coopbot.roles import PowerInfo
from coopbot.store.kv import KeyValueStore

log = logging.getLogger(__name__)

SYNC_TOKEN_KEY = "matrix.sync_token"
# Per-request retries on 429 and timeouts are bounded: nio would otherwise retry forever.
MAX_RETRIES = 5
TXN_NAMESPACE = uuid.UUID("6f1f1c5e-8a55-4c38-9e8e-3f8d2a1b7c01")
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


class MatrixGateway:
    def __init__(
        self,
        config: MatrixConfig,
        kv: KeyValueStore,
        invites: InviteConfig,
        *,
        admins: frozenset[str],
        configured_rooms: Callable[[], list[RoomID]],
        observers: Observers | None = None,
    ) -> None:
        self._config = config
        self._kv = kv
        self._invites = invites
        self._admins = admins
        self._configured_rooms = configured_rooms
        self._observers = observers or Observers()
        self.last_sync = time.monotonic()
        self._token_stored_at = 0.0
        self._unstored_token: str | None = None  # newer than the stored one, written on stop
        self._power: dict[RoomID, PowerInfo] = {}
        self._power_state: dict[RoomID, dict[str, Any]] = {}
        self._started_at = time.time()
        self._stopping = asyncio.Event()
        self.synced_once = asyncio.Event()
        store = Path(config.store)
        store.mkdir(parents=True, exist_ok=True)
        store.chmod(0o700)
        self._session_file = store / "session.json"
        self.client = nio.AsyncClient(
            config.homeserver,
            config.user_id,
            store_path=str(store),
            config=nio.AsyncClientConfig(
                encryption_enabled=True,
                store_sync_tokens=False,  # the bot's own database holds the token
                max_limit_exceeded=MAX_RETRIES,
                max_timeouts=MAX_RETRIES,
                request_timeout=45,
            ),
        )
        # Which device sent a vote or command (the verified_devices_only policy).
        self.device_trust = DeviceTrust(self.client, NioKeysApi(self.client))
        self._undecryptable = Undecryptable(self.client, kv, NioKeysApi(self.client))
        self.verifications = Verifications(
            self.client, store, auto_confirm=config.auto_confirm_verification,
            send_to_room=self._send_verification)

    @property
    def user_id(self) -> UserID:
        return UserID(self._config.user_id)

    # ---- start and stop -------------------------------------------------------------------

    async def login(self) -> None:
        """Restore the stored device, or log in once and store it. Never creates a second device
        while the stored one still works."""
        stored = load_session(self._session_file)
        if stored and stored.user_id == self._config.user_id:
            self.client.restore_login(stored.user_id, stored.device_id, stored.access_token)
            whoami = await self.client.whoami()
            if isinstance(whoami, nio.WhoamiResponse):
                log.info("restored Matrix session for device %s", stored.device_id)
                await self._device_ready()
                return
            log.warning("stored Matrix session no longer valid; logging in again")
            self.client.device_id = stored.device_id
        if self._config.access_token:
            self.client.access_token = self._config.access_token
            whoami = await self.client.whoami()
            if not isinstance(whoami, nio.WhoamiResponse) or not whoami.device_id:
                raise MatrixError("the configured access token was refused by the homeserver")
            self.client.restore_login(
                self._config.user_id, whoami.device_id, self._config.access_token
            )
        else:
            response = await self.client.login(
                password=self._config.password, device_name=self._config.device_name
            )
            if not isinstance(response, nio.LoginResponse):
                raise MatrixError(f"login as {self._config.user_id} failed",
                                  detail=getattr(response, "message", ""))
        save_session(self._session_file, StoredSession(
            homeserver=self._config.homeserver,
            user_id=self._config.user_id,
            device_id=str(self.client.device_id),
            access_token=str(self.client.access_token),
        ))
        log.info("logged in as %s on device %s", self._config.user_id, self.client.device_id)
        await self._device_ready()

    async def _device_ready(self) -> None:
        """Device keys on the homeserver, then the device signed by the account's
        cross-signing identity (created on first start): see cross_signing.py."""
        await self._upload_keys()
        self.verifications.attach()
        if self._config.cross_signing:
            await ensure_cross_signed(self.client, store=Path(self._config.store),
                                      password=self._config.password,
                                      recovery_key=self._config.recovery_key)

    async def close(self) -> None:
        """Stop syncing and close connections. Deliberately no logout."""
        self._stopping.set()
        await self.client.close()

    def stop(self) -> None:
        self._stopping.set()

    # ---- the sync loop --------------------------------------------------------------------

    async def run(self, listener: SyncListener) -> None:
        """Sync until stopped. Events are handed to `listener` in timeline order; the token is
        stored only after the batch was handed over, so a crash replays rather than loses."""
        since = await self._kv.get(SYNC_TOKEN_KEY)
        first = True
        backoff = 1.0
        refusals = 0
        confirmations = asyncio.create_task(self.verifications.watch_confirmations(),
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
                    await self._join_configured_rooms()
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
        sync = asyncio.ensure_future(self.client.sync(**kwargs))
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
            await self._consider_invite(RoomID(room_id), info.invite_state)
        for room_id, join in response.rooms.join.items():
            room = RoomID(room_id)
            for state in join.state:
                self._note_state(room, state.source)
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
                page = await self.client.room_messages(
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
            self._note_state(room, source)
            if kind == "m.room.tombstone" and not history_only:
                upgrade = events.tombstone(room, source)
                if upgrade is not None:
                    await listener.tombstone(room, upgrade.sender, upgrade.replacement)
            return
        if history_only:
            # The very first sync of a new bot shows history: never act on it.
            return
        if await self.verifications.room_event(room, source):
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
                await self.verifications.to_device(event)
            except Exception:
                log.exception("a to-device event could not be handled and is skipped")

    async def _send_verification(self, room: RoomID, kind: str, content: dict[str, Any]) -> None:
        await self.send(room, content, key=f"verification/{uuid.uuid4()}", event_type=kind)

    async def _after_sync_crypto(self) -> None:
        # What nio's sync_forever does between syncs: keep one-time keys, device lists and
        # olm sessions fresh so encrypted rooms keep working.
        try:
            await self._upload_keys()
            if self.client.should_query_keys:
                await self.client.keys_query()
            if self.client.should_claim_keys:
                await self.client.keys_claim(self.client.get_users_for_key_claiming())
            await self.client.send_to_device_messages()
        except (TimeoutError, aiohttp.ClientError, nio.LocalProtocolError) as error:
            log.warning("encryption upkeep failed: %s", error)

    async def _upload_keys(self) -> None:
        if self.client.should_upload_keys:
            await self.client.keys_upload()

    # ---- room state: power levels and creators ---------------------------------------------

    def _note_state(self, room_id: RoomID, source: object) -> None:
        kind = events.event_type(source)
        if (kind not in ("m.room.power_levels", "m.room.create")
                or not isinstance(source, Mapping) or source.get("state_key") != ""):
            return
        state = self._power_state.setdefault(room_id, {})
        state[kind] = source
        self._power[room_id] = self._power_from(state)

    @staticmethod
    def _power_from(state: dict[str, Any]) -> PowerInfo:
        create = state.get("m.room.create")
        return PowerInfo.from_state(
            events.state_content(state.get("m.room.power_levels")),
            events.state_content(create),
            events.user_id(create.get("sender")) if create else None,
        )

    async def power_info(self, room_id: RoomID) -> PowerInfo:
        cached = self._power.get(room_id)
        if cached is not None:
            return cached
        return await self.refresh_power(room_id)

    async def refresh_power(self, room_id: RoomID) -> PowerInfo:
        """Fetch the room's state from the homeserver (used on a cache miss)."""
        response = await self.client.room_get_state(room_id)
        if not isinstance(response, nio.RoomGetStateResponse):
            raise MatrixError("could not read this room's power levels",
                              detail=getattr(response, "message", ""))
        for source in response.events:
            self._note_state(room_id, source)
        return self._power.get(room_id, PowerInfo())

    # ---- invites and joins ---------------------------------------------------------------

    def invite_allowed(self, inviter: str | None, room_id: RoomID) -> bool:
        if room_id in self._configured_rooms():
            return True
        if inviter is None:
            return False
        return (
            inviter in self._admins
            or inviter in self._invites.users
            or server_of(inviter) in self._invites.servers
        )

    async def _consider_invite(self, room_id: RoomID, invite_state: list[Any]) -> None:
        inviter: UserID | None = None
        for event in invite_state:
            source = getattr(event, "source", None)
            if (events.event_type(source) == "m.room.member" and isinstance(source, Mapping)
                    and source.get("state_key") == self._config.user_id):
                inviter = events.user_id(source.get("sender"))
            elif (isinstance(event, nio.InviteMemberEvent)
                    and event.state_key == self._config.user_id):
                inviter = events.user_id(event.sender)
        if self.invite_allowed(inviter, room_id):
            log.info("joining %s (invited by %s)", room_id, inviter)
            result = await self.client.join(room_id)
            if not isinstance(result, nio.JoinResponse):
                log.warning("could not join %s: %s", room_id, getattr(result, "message", result))
        else:
            log.info("declining invite to %s from %s (not allowed by config `invites`)",
                     room_id, inviter)
            await self.client.room_leave(room_id)

    async def _join_configured_rooms(self) -> None:
        joined = set(self.client.rooms)
        for room_id in self._configured_rooms():
            if room_id not in joined:
                result = await self.client.join(room_id)
                if not isinstance(result, nio.JoinResponse):
                    log.warning("configured room %s could not be joined: %s",
                                room_id, getattr(result, "message", result))

    async def join(self, room_id: RoomID) -> None:
        result = await self.client.join(room_id)
        if not isinstance(result, nio.JoinResponse):
            raise MatrixError(f"could not join {room_id}", detail=getattr(result, "message", ""))

    async def resolve_alias(self, alias: str) -> RoomID:
        response = await self.client.room_resolve_alias(alias)
        if not isinstance(response, nio.RoomResolveAliasResponse):
            raise MatrixError(f"room alias {alias} could not be resolved",
                              detail=getattr(response, "message", ""))
        return RoomID(response.room_id)

    # ---- sending -------------------------------------------------------------------------

    async def send(
        self, room_id: RoomID, content: dict[str, Any], *, key: str,
        event_type: str = "m.room.message",
    ) -> EventID:
        # A transaction id derived from a stable key: a retried send (even after a restart)
        # is deduplicated by the homeserver instead of posted twice.
        txn = str(uuid.uuid5(TXN_NAMESPACE, f"{self.client.device_id}/{key}"))
        try:
            response = await self.client.room_send(
                room_id, event_type, content, tx_id=txn, ignore_unverified_devices=True
            )
        except (TimeoutError, aiohttp.ClientError, nio.LocalProtocolError) as error:
            raise MatrixError("could not send to the room", detail=repr(error)) from error
        if not isinstance(response, nio.RoomSendResponse):
            raise MatrixError("could not send to the room", detail=getattr(response, "message", ""))
        return EventID(response.event_id)

    async def reply(self, to: IncomingMessage, reply: Reply, *, key: str) -> EventID:
        content = in_thread(notice(reply), to.reply_thread_root, to.event_id)
        event_id = await self.send(to.room_id, content, key=key)
        if reply.attachment is not None:
            file_content = await self._upload(to.room_id, reply.attachment)
            await self.send(to.room_id, in_thread(file_content, to.reply_thread_root, event_id),
                            key=f"{key}/file")
        return event_id

    async def _upload(self, room_id: RoomID, attachment: Attachment) -> dict[str, Any]:
        """Upload a file (encrypted when the room is) and return its m.file content."""
        room = self.client.rooms.get(room_id)
        encrypt = bool(room and room.encrypted)
        try:
            response, keys = await self.client.upload(
                io.BytesIO(attachment.data), content_type=attachment.mimetype,
                filename=attachment.filename, encrypt=encrypt, filesize=len(attachment.data),
            )
        except (TimeoutError, aiohttp.ClientError) as error:
            raise MatrixError("could not upload the file", detail=repr(error)) from error
        if not isinstance(response, nio.UploadResponse):
            raise MatrixError("could not upload the file", detail=getattr(response, "message", ""))
        content: dict[str, Any] = {
            "msgtype": "m.file",
            "body": attachment.filename,
            "filename": attachment.filename,
            "info": {"mimetype": attachment.mimetype, "size": len(attachment.data)},
        }
        if encrypt and keys:
            content["file"] = {"url": response.content_uri, **keys}
        else:
            content["url"] = response.content_uri
        return content

    async def post(self, room_id: RoomID, reply: Reply, *, key: str,
                   thread_root: EventID | None = None) -> EventID:
        content = notice(reply)
        if thread_root is not None:
            content = in_thread(content, thread_root, thread_root)
        return await self.send(room_id, content, key=key)

    async def edit(self, room_id: RoomID, event_id: EventID, reply: Reply) -> None:
        await self.send(room_id, edit_of(event_id, reply), key=f"edit/{uuid.uuid4()}")

    async def reactions_to(self, room_id: RoomID, event_id: EventID) -> list[IncomingReaction]:
        """Every (unredacted) reaction on an event, from the homeserver's relations API: how
        votes cast while the bot was down are caught up after a restart."""
        found: list[IncomingReaction] = []
        try:
            async for event in self.client.room_get_event_relations(
                room_id, event_id, rel_type=RelationshipType.annotation,
            ):
                reaction = events.reaction(room_id, getattr(event, "source", None))
                if reaction is not None:
                    found.append(reaction)
        except (TimeoutError, aiohttp.ClientError, nio.LocalProtocolError,
                AttributeError) as error:
            # nio 0.26 raises AttributeError when the homeserver answers with an error.
            raise MatrixError("could not read the votes on a request card",
                              detail=repr(error)) from error
        return found

    async def typing(self, room_id: RoomID, active: bool) -> None:
        try:
            await self.client.room_typing(room_id, active, timeout=30_000)
        except (TimeoutError, aiohttp.ClientError) as error:
            log.debug("typing notice failed: %s", error)
