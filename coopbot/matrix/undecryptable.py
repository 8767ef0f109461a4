"""Encrypted events the bot cannot decrypt: never a silent failure.

The usual cause is that the sender's client did not share the room key with the bot's device
(a client excluding insecure devices, a key shared before the bot joined, a lost crypto store).
For each such event the bot asks its other devices for the key (m.room_key_request, as Element
does) and tells the sender, once per sender and room until it can read them again, in one short
sentence pointing at the docs. No ciphertext, key or session id goes into the room.

The sentence is sent unencrypted, on purpose: a client that would not share its key with the
bot's device (it excludes insecure devices and the bot's is not signed) does not decrypt that
device's messages either, so an encrypted answer would be one more silence. It is a fixed text.
"""

from __future__ import annotations

import json
import logging
import uuid
from urllib.parse import quote

import aiohttp
import nio

from coopbot.errors import MatrixError
from coopbot.ids import RoomID
from coopbot.matrix.content import notice
from coopbot.matrix.cross_signing import KeysApi
from coopbot.replies import Reply
from coopbot.store.kv import KeyValueStore

log = logging.getLogger(__name__)

TOLD_KEY = "matrix.undecryptable_told"
MAX_TOLD = 1_000  # (sender, room) pairs remembered; the oldest are forgotten first
SENTENCE = (
    "I could not decrypt your message, so I did not act on it: your client has not shared its "
    "encryption key with my device. I have asked for the key. If this keeps happening, see "
    "“Encrypted rooms” in coopbot's docs/security.md (verify my device, or let your client "
    "send to it)."
)
TXN_NAMESPACE = uuid.UUID("0b0e3d2c-6a2f-4f0e-9d3c-5f1f8f6e2a11")


class Undecryptable:
    def __init__(self, client: nio.AsyncClient, kv: KeyValueStore, api: KeysApi) -> None:
        self._client = client
        self._kv = kv
        self._api = api
        self._told: list[str] | None = None  # "room sender", loaded lazily from kv

    async def _load(self) -> list[str]:
        if self._told is None:
            raw = await self._kv.get(TOLD_KEY)
            try:
                told = json.loads(raw) if raw else []
            except ValueError:
                told = []
            self._told = [t for t in told if isinstance(t, str)] if isinstance(told, list) else []
        return self._told

    async def _save(self) -> None:
        await self._kv.set(TOLD_KEY, json.dumps(await self._load()))

    async def failed(self, room: RoomID, event: nio.MegolmEvent, *, quiet: bool) -> None:
        """An event nio could not decrypt. `quiet`: history from before the bot's first start
        (nothing is said about it, but the key is still asked for)."""
        log.warning("could not decrypt event %s from %s in %s; asking for its key",
                    event.event_id, event.sender, room)
        await self._request_key(event)
        if quiet or event.sender == self._client.user_id:
            return
        told = await self._load()
        pair = f"{room} {event.sender}"
        if pair in told:
            return
        told.append(pair)
        del told[:-MAX_TOLD]
        await self._save()
        content = notice(Reply.of(SENTENCE))
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": event.event_id}}
        content["m.mentions"] = {"user_ids": [event.sender]}
        await self._send_plain(room, content, event.event_id)

    async def decrypted(self, room: RoomID, sender: str) -> None:
        """The bot read an encrypted event of `sender` in `room`: the next failure is told."""
        told = await self._load()
        pair = f"{room} {sender}"
        if pair in told:
            told.remove(pair)
            await self._save()

    async def _send_plain(self, room: RoomID, content: dict[str, object], about: str) -> None:
        # A transaction id from the event: a retry is deduplicated by the homeserver.
        txn = uuid.uuid5(TXN_NAMESPACE, f"{self._client.device_id}/{about}")
        path = f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/{txn}"
        try:
            status, answer = await self._api.request("PUT", path, dict(content))
        except (TimeoutError, aiohttp.ClientError) as error:
            raise MatrixError("could not send to the room", detail=repr(error)) from error
        if status != 200:
            raise MatrixError("could not send to the room", detail=f"{status} {answer}")

    async def _request_key(self, event: nio.MegolmEvent) -> None:
        if event.session_id in self._client.outgoing_key_requests:
            return  # already asked for this session
        try:
            await self._client.request_room_key(event)
        except (TimeoutError, aiohttp.ClientError, nio.LocalProtocolError) as error:
            log.warning("could not request the key of event %s: %s", event.event_id, error)
