"""Interactive verification of the bot's device by a member (SAS with emoji), answered by the bot.

The member's client (Element: "Verify session" / "Verify user") drives the flow; the bot answers,
to-device or in the room (Matrix client-server spec, "Key verification framework" and "SAS"):

    member                         bot
    m.key.verification.request ->
                               <-  m.key.verification.ready
    m.key.verification.start   ->
                               <-  m.key.verification.accept   (commitment to the bot's key)
    m.key.verification.key     ->
                               <-  m.key.verification.key      (now both sides show 7 emoji)
         the member compares; a bot admin confirms with `coopbot verify <user> <device>`
         (or `matrix.verification.auto_confirm`)
    m.key.verification.mac     <-> m.key.verification.mac      (device key and master key)
    m.key.verification.done    <-> m.key.verification.done

nio's own SAS (nio/crypto/sas.py) knows neither request/ready/done nor in-room flows, and uses
the corrected MAC encoding under the name of the old one, so clients on Rust crypto (Element)
reject its MACs. This module reuses nio's emoji table and vodozemac's SAS (key agreement, HKDF,
MACs), keeps nio out of the to-device flow, and handles the protocol itself.

Emoji are not secret: they are logged, and written to `<store>/verification-pending.json` for
`coopbot verify` to show. The CLI confirms by dropping a file the bot picks up.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import nio
import vodozemac
from canonicaljson import encode_canonical_json
from nio.crypto.sas import Sas as NioSas

from coopbot.ids import RoomID
from coopbot.matrix.cross_signing import KEYS_FILE, load_keys, unpadded_b64

log = logging.getLogger(__name__)

PENDING_FILE = "verification-pending.json"
CONFIRM_PREFIX = "verification-confirm-"
PREFIX = "m.key.verification."
SAS = "m.sas.v1"
KEY_AGREEMENT = "curve25519-hkdf-sha256"
HASH = "sha256"
# MAC methods, preferred first. The old "hkdf-hmac-sha256" encodes its base64 wrongly (as
# libolm did); the others encode it correctly.
MACS = ("hkdf-hmac-sha256.v2", "org.matrix.msc3783.hkdf-hmac-sha256", "hkdf-hmac-sha256")
MAX_AGE_MS = 10 * 60 * 1000  # the spec's limit for requests and flows
CONFIRM_POLL = 1.0  # seconds between looks for a CLI confirmation
# nio's emoji table names three emoji unlike the spec (and Element): the spec's names, so an
# admin reads what the member reads.
SPEC_NAMES = {"Wrench": "Spanner", "Thumbs up": "Thumbs Up", "Airplane": "Aeroplane"}
MAX_FLOWS = 20  # flows open at once; anyone may ask, so the oldest make room

SendToRoom = Callable[[RoomID, str, dict[str, Any]], Awaitable[None]]


class _Cancel(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass
class Flow:
    """One verification with one device of one member."""

    txn: str  # the transaction id (to-device) or the request's event id (in the room)
    user: str
    device: str
    room: RoomID | None
    created_ms: float = field(default_factory=lambda: time.time() * 1000)
    started: dict[str, Any] | None = None  # the m.key.verification.start content
    sas: vodozemac.Sas | None = None
    established: vodozemac.EstablishedSas | None = None
    mac_method: str = ""
    emoji: list[tuple[str, str]] = field(default_factory=list)
    confirmed: bool = False
    their_mac: dict[str, Any] | None = None
    their_mac_ok: bool = False
    done_sent: bool = False


class Verifications:
    def __init__(
        self, client: nio.AsyncClient, store: Path, *, auto_confirm: bool,
        send_to_room: SendToRoom,
    ) -> None:
        self._client = client
        self._store = store
        self._auto_confirm = auto_confirm
        self._send_to_room = send_to_room
        self._flows: dict[str, Flow] = {}
        self.verified: list[tuple[str, str]] = []  # (user, device), in order

    def attach(self) -> None:
        """Keep nio's own SAS machine out of the to-device flow (it would answer `start`
        with messages of its own). Called once nio's crypto is loaded (after login)."""
        olm = self._client.olm
        if olm is not None:
            olm.handle_key_verification = lambda event: None

    # ---- receiving ---------------------------------------------------------------------

    async def to_device(self, event: object) -> None:
        source = getattr(event, "source", None)
        if not isinstance(source, Mapping):
            return
        kind, sender, content = source.get("type"), source.get("sender"), source.get("content")
        if not (isinstance(kind, str) and kind.startswith(PREFIX) and isinstance(sender, str)
                and isinstance(content, Mapping)):
            return
        txn = content.get("transaction_id")
        if isinstance(txn, str) and txn:
            await self._handle(kind, sender, dict(content), txn, None)

    async def room_event(self, room: RoomID, source: object) -> bool:
        """An in-room verification event; True if it was one (and is not a command)."""
        if not isinstance(source, Mapping):
            return False
        kind, sender, content = source.get("type"), source.get("sender"), source.get("content")
        if not isinstance(content, Mapping) or not isinstance(sender, str):
            return False
        if kind == "m.room.message" and content.get("msgtype") == PREFIX + "request":
            if content.get("to") != self._client.user_id:
                return True
            event_id, sent = source.get("event_id"), source.get("origin_server_ts")
            if isinstance(sent, int) and time.time() * 1000 - sent > MAX_AGE_MS:
                return True  # a request from long ago (the bot was down): expired
            if isinstance(event_id, str):
                await self._handle(PREFIX + "request", sender, dict(content), event_id, room)
            return True
        if not (isinstance(kind, str) and kind.startswith(PREFIX)):
            return False
        relates = content.get("m.relates_to")
        txn = relates.get("event_id") if isinstance(relates, Mapping) else None
        if isinstance(txn, str) and txn:
            await self._handle(kind, sender, dict(content), txn, room)
        return True

    async def _handle(self, kind: str, sender: str, content: dict[str, Any], txn: str,
                      room: RoomID | None) -> None:
        if sender == self._client.user_id:
            return  # our own events echoed back in the room (the bot verifies no own devices)
        step = kind.removeprefix(PREFIX)
        flow = self._flows.get(txn)
        try:
            if step == "request":
                await self._request(sender, content, txn, room)
                return
            if flow is None or flow.user != sender:
                if step not in ("cancel", "done"):
                    log.info("verification event %s from %s for an unknown flow", kind, sender)
                return
            if step == "cancel":
                self._flows.pop(txn, None)
                log.info("verification with %s %s cancelled by them: %s", flow.user,
                         flow.device, content.get("reason") or content.get("code"))
                self._write_pending()
            elif step == "start":
                await self._start(flow, content)
            elif step == "key":
                await self._key(flow, content)
            elif step == "mac":
                await self._mac(flow, content)
            elif step == "done":
                if flow.done_sent:
                    self._flows.pop(txn, None)
                    self._write_pending()
        except _Cancel as cancel:
            await self._cancel(flow or Flow(txn, sender, str(content.get("from_device", "")),
                                            room), cancel.code, str(cancel))
        except (TimeoutError, aiohttp.ClientError, nio.LocalProtocolError) as error:
            log.warning("verification with %s: sending failed (%s)", sender, error)

    async def _request(self, sender: str, content: dict[str, Any], txn: str,
                       room: RoomID | None) -> None:
        device = content.get("from_device")
        methods = content.get("methods")
        if not isinstance(device, str) or not isinstance(methods, list):
            raise _Cancel("m.invalid_message", "malformed request")
        timestamp = content.get("timestamp")
        if room is None and (not isinstance(timestamp, int)
                             or abs(time.time() * 1000 - timestamp) > MAX_AGE_MS):
            log.info("ignoring a stale verification request from %s %s", sender, device)
            return
        flow = Flow(txn, sender, device, room)
        if SAS not in methods:
            raise _Cancel("m.unknown_method", "only SAS (emoji) verification is supported")
        if self._device(sender, device) is None:
            await self._query_keys(sender)
        while len(self._flows) >= MAX_FLOWS:
            del self._flows[next(iter(self._flows))]
        self._flows[txn] = flow
        log.info("verification requested by %s (device %s)%s", sender, device,
                 f" in {room}" if room else "")
        await self._send(flow, "ready", {"from_device": self._client.device_id,
                                          "methods": [SAS]})

    async def _start(self, flow: Flow, content: dict[str, Any]) -> None:
        if flow.started is not None:
            raise _Cancel("m.unexpected_message", "the flow was already started")
        if content.get("method") != SAS:
            raise _Cancel("m.unknown_method", "only SAS (emoji) verification is supported")
        agreements, hashes = content.get("key_agreement_protocols"), content.get("hashes")
        macs, strings = (content.get("message_authentication_codes"),
                         content.get("short_authentication_string"))
        if not all(isinstance(x, list) for x in (agreements, hashes, macs, strings)):
            raise _Cancel("m.invalid_message", "malformed start")
        assert isinstance(agreements, list) and isinstance(hashes, list)
        assert isinstance(macs, list) and isinstance(strings, list)
        mac = next((m for m in MACS if m in macs), None)
        if KEY_AGREEMENT not in agreements or HASH not in hashes or mac is None \
                or "emoji" not in strings:
            raise _Cancel("m.unknown_method", "no common SAS methods")
        flow.started, flow.mac_method, flow.sas = content, mac, vodozemac.Sas()
        # The commitment binds the bot's (not yet sent) key to this exact start message.
        commitment = unpadded_b64(hashlib.sha256(
            flow.sas.public_key.to_base64().encode() + encode_canonical_json(content)).digest())
        await self._send(flow, "accept", {
            "key_agreement_protocol": KEY_AGREEMENT, "hash": HASH,
            "message_authentication_code": mac, "short_authentication_string": ["emoji"],
            "commitment": commitment,
        })

    async def _key(self, flow: Flow, content: dict[str, Any]) -> None:
        key = content.get("key")
        if flow.sas is None or flow.established is not None or not isinstance(key, str):
            raise _Cancel("m.unexpected_message", "unexpected key")
        try:
            their_key = vodozemac.Curve25519PublicKey.from_base64(key)
            flow.established = flow.sas.diffie_hellman(their_key)
        except (vodozemac.KeyException, ValueError) as error:
            raise _Cancel("m.invalid_message", "invalid key") from error
        ours = flow.sas.public_key.to_base64()
        await self._send(flow, "key", {"key": ours})
        me = f"{self._client.user_id}|{self._client.device_id}|{ours}"
        them = f"{flow.user}|{flow.device}|{key}"
        # The member started the flow: their part comes first.
        info = f"MATRIX_KEY_VERIFICATION_SAS|{them}|{me}|{flow.txn}"
        indices = flow.established.bytes(info).emoji_indices
        flow.emoji = [(emoji, SPEC_NAMES.get(name, name))
                      for emoji, name in (NioSas.emoji[i] for i in indices)]
        log.info("verification with %s %s: compare these emoji with theirs: %s; confirm with "
                 "`coopbot verify %s %s`", flow.user, flow.device,
                 " ".join(f"{e} {name}" for e, name in flow.emoji), flow.user, flow.device)
        self._write_pending()
        if self._auto_confirm:
            await self.confirm(flow.user, flow.device)

    def _calculate(self, flow: Flow, value: str, info: str) -> str:
        assert flow.established is not None
        if flow.mac_method == "hkdf-hmac-sha256":
            return flow.established.calculate_mac_invalid_base64(value, info)
        return flow.established.calculate_mac(value, info)

    async def _mac(self, flow: Flow, content: dict[str, Any]) -> None:
        mac, keys = content.get("mac"), content.get("keys")
        if flow.established is None or not isinstance(mac, Mapping) or not isinstance(keys, str):
            raise _Cancel("m.unexpected_message", "unexpected mac")
        device = self._device(flow.user, flow.device)
        if device is None:
            raise _Cancel("m.key_mismatch", "their device keys are unknown")
        info = (f"MATRIX_KEY_VERIFICATION_MAC{flow.user}{flow.device}"
                f"{self._client.user_id}{self._client.device_id}{flow.txn}")
        if self._calculate(flow, ",".join(sorted(mac)), info + "KEY_IDS") != keys:
            raise _Cancel("m.key_mismatch", "the key list does not match")
        device_key_id = f"ed25519:{flow.device}"
        their = mac.get(device_key_id)
        if their != self._calculate(flow, device.ed25519, info + device_key_id):
            raise _Cancel("m.key_mismatch", "their device key does not match")
        # Other keys (their master key) are not checked: the bot trusts devices, not users.
        flow.their_mac, flow.their_mac_ok = dict(mac), True
        await self._finish_if_ready(flow)

    async def confirm(self, user: str, device: str) -> bool:
        """The emoji matched (an admin said so): send the bot's MAC. False if no such flow."""
        flow = next((f for f in self._flows.values() if f.user == user and f.device == device
                     and f.emoji), None)
        if flow is None:
            return False
        flow.confirmed = True
        info = (f"MATRIX_KEY_VERIFICATION_MAC{self._client.user_id}{self._client.device_id}"
                f"{flow.user}{flow.device}{flow.txn}")
        assert self._client.olm is not None
        keys = {f"ed25519:{self._client.device_id}":
                self._client.olm.account.identity_keys["ed25519"]}
        cross_signing = load_keys(self._store / KEYS_FILE, str(self._client.user_id))
        if cross_signing is not None:
            # The master key too: the member's client then trusts the bot's identity.
            keys[f"ed25519:{cross_signing.master_public}"] = cross_signing.master_public
        macs = {key_id: self._calculate(flow, value, info + key_id)
                for key_id, value in keys.items()}
        await self._send(flow, "mac", {
            "mac": macs, "keys": self._calculate(flow, ",".join(sorted(macs)), info + "KEY_IDS"),
        })
        log.info("verification with %s %s confirmed", user, device)
        await self._finish_if_ready(flow)
        return True

    async def _finish_if_ready(self, flow: Flow) -> None:
        if not (flow.confirmed and flow.their_mac_ok) or flow.done_sent:
            return
        device = self._device(flow.user, flow.device)
        if device is not None:
            self._client.verify_device(device)
        flow.done_sent = True
        await self._send(flow, "done", {})
        self.verified.append((flow.user, flow.device))
        log.info("verified %s's device %s", flow.user, flow.device)
        self._write_pending()

    async def _query_keys(self, user: str) -> None:
        """Fetch the device keys of a user the bot shares no room with (their MAC is checked
        against them)."""
        olm = self._client.olm
        if olm is None:
            return
        olm.users_for_key_query.add(user)
        try:
            await self._client.keys_query()
        except nio.LocalProtocolError:
            pass  # nothing to query after all

    def _device(self, user: str, device: str) -> Any:
        olm = self._client.olm
        if olm is None:
            return None
        try:
            return olm.device_store[user][device]
        except KeyError:
            return None

    async def _cancel(self, flow: Flow, code: str, reason: str) -> None:
        self._flows.pop(flow.txn, None)
        log.info("verification with %s %s cancelled: %s", flow.user, flow.device, reason)
        self._write_pending()
        if flow.room is None and not flow.device:
            return  # nowhere to send it
        try:
            await self._send(flow, "cancel", {"code": code, "reason": reason})
        except (TimeoutError, aiohttp.ClientError, nio.LocalProtocolError) as error:
            log.warning("could not send the cancellation: %s", error)

    # ---- sending -----------------------------------------------------------------------

    async def _send(self, flow: Flow, step: str, content: dict[str, Any]) -> None:
        if flow.room is not None:
            content["m.relates_to"] = {"rel_type": "m.reference", "event_id": flow.txn}
            await self._send_to_room(flow.room, PREFIX + step, content)
            return
        content["transaction_id"] = flow.txn
        response = await self._client.to_device(
            nio.ToDeviceMessage(PREFIX + step, flow.user, flow.device, content),
            tx_id=uuid.uuid4().hex)
        if not isinstance(response, nio.ToDeviceResponse):
            log.warning("verification with %s: %s could not be sent: %s", flow.user, step,
                        getattr(response, "message", response))

    # ---- the CLI's side: pending emoji and confirmations ---------------------------------

    def _write_pending(self) -> None:
        now = time.time() * 1000
        pending = [{"user": f.user, "device": f.device, "emoji": f.emoji,
                    "room": f.room} for f in self._flows.values()
                   if f.emoji and not f.confirmed and now - f.created_ms < MAX_AGE_MS]
        path = self._store / PENDING_FILE
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"pending": pending}, handle, ensure_ascii=False)
        os.replace(temporary, path)

    async def watch_confirmations(self) -> None:
        """Pick up `coopbot verify` confirmations (files in the store) while the bot runs."""
        while True:
            await asyncio.sleep(CONFIRM_POLL)
            try:
                await self._pick_up_confirmations()
            except Exception:
                # Never let one bad file stop confirmations for the rest of the run.
                log.exception("verification confirmations could not be read")

    async def _pick_up_confirmations(self) -> None:
        self._expire()
        for path in sorted(self._store.glob(CONFIRM_PREFIX + "*")):
            try:
                request = json.loads(path.read_text(encoding="utf-8"))
                user, device = str(request["user"]), str(request["device"])
            except (OSError, ValueError, KeyError, TypeError):
                user = device = ""
            path.unlink(missing_ok=True)
            if user and not await self._confirm_logged(user, device):
                log.warning("`coopbot verify %s %s`: no verification with that device is "
                            "waiting for confirmation", user, device)

    async def _confirm_logged(self, user: str, device: str) -> bool:
        try:
            return await self.confirm(user, device)
        except (TimeoutError, aiohttp.ClientError, nio.LocalProtocolError) as error:
            log.warning("verification with %s %s: sending failed (%s)", user, device, error)
            return True

    def _expire(self) -> None:
        now = time.time() * 1000
        old = [txn for txn, f in self._flows.items() if now - f.created_ms > MAX_AGE_MS]
        for txn in old:
            del self._flows[txn]
        if old:
            self._write_pending()


def pending(store: Path) -> list[dict[str, Any]]:
    """What `coopbot verify` (without a device) shows: flows waiting for a confirmation."""
    try:
        data = json.loads((store / PENDING_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    items = data.get("pending") if isinstance(data, dict) else None
    return [p for p in items if isinstance(p, dict)] if isinstance(items, list) else []


def request_confirmation(store: Path, user: str, device: str) -> Path:
    """`coopbot verify <user> <device>`: tell the running bot the emoji matched. The bot
    removes the file when it has read it."""
    path = store / f"{CONFIRM_PREFIX}{uuid.uuid4().hex}.json"
    temporary = store / f".{path.name}.tmp"  # not matched by the bot until complete
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"user": user, "device": device}, handle)
    os.replace(temporary, path)
    return path
