"""Was an event sent from a device its owner has cross-signed? (the `verified_devices_only`
policy for votes and changing commands)

The answer is worked out from the event itself each time it is asked (at tally, not only at vote
time), so a device whose owner reset their identity stops counting:

1. the event must be encrypted, and decrypt with a room key the sending device shared over Olm
   itself (not forwarded by another device): that ties it to one Curve25519/Ed25519 key pair;
2. that key pair must be one of the sender's devices as the homeserver publishes them;
3. the sender's self-signing key must be signed by their master key, and the device by the
   self-signing key (signatures checked here, over canonical JSON).

The bot does not require that anyone verified the sender's master key: the policy is about
devices their owner vouched for, which is what clients excluding insecure devices check too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import aiohttp
import nio

from coopbot.matrix.cross_signing import KeysApi, single_key, verify

log = logging.getLogger(__name__)

UNSIGNED = "not sent from a device its owner has cross-signed"


class DeviceTrust:
    def __init__(self, client: nio.AsyncClient, api: KeysApi) -> None:
        self._client = client
        self._api = api

    async def unsigned(self, room_id: str, event_id: str, sender: str) -> str | None:
        """None if `event_id` was sent by `sender` from a device they cross-signed; else why
        not, as a short phrase for the room (never key material)."""
        try:
            why = await self._check(room_id, event_id, sender)
        except (TimeoutError, aiohttp.ClientError, nio.LocalProtocolError) as error:
            log.warning("device check of %s failed: %r", event_id, error)
            why = "its device could not be checked"
        if why is not None:
            log.info("event %s from %s: %s", event_id, sender, why)
        return why

    async def _check(self, room_id: str, event_id: str, sender: str) -> str | None:
        olm = self._client.olm
        if olm is None:
            return "its device could not be checked"
        response = await self._client.room_get_event(room_id, event_id)
        if not isinstance(response, nio.RoomGetEventResponse):
            return "its device could not be checked"
        # nio decrypts what it fetches: a MegolmEvent is one it could not decrypt.
        event = response.event
        if isinstance(event, nio.MegolmEvent):
            return f"{UNSIGNED} (the bot cannot decrypt it)"
        sender_key, session_id = getattr(event, "sender_key", None), getattr(event, "session_id",
                                                                             None)
        if not getattr(event, "decrypted", False) or not sender_key or not session_id:
            return f"{UNSIGNED} (it was not encrypted)"
        if event.sender != sender:
            return UNSIGNED
        session = olm.inbound_group_store.get(room_id, sender_key, session_id)
        if session is None or session.forwarding_chain:
            # A forwarded key says nothing about which device encrypted with it.
            return f"{UNSIGNED} (its key was forwarded)"
        return await self._cross_signed(sender, sender_key, session.ed25519)

    async def _cross_signed(self, user: str, curve25519: str, ed25519: str) -> str | None:
        status, body = await self._api.request(
            "POST", "/_matrix/client/v3/keys/query", {"device_keys": {user: []}})
        if status != 200:
            return "its device could not be checked"

        def of_user(field: str) -> object:
            section = body.get(field)
            return section.get(user) if isinstance(section, Mapping) else None

        master_key, self_signing_key = of_user("master_keys"), of_user("self_signing_keys")
        master, self_signing = single_key(master_key), single_key(self_signing_key)
        if master is None or self_signing is None or not verify(self_signing_key, user, master):
            return f"{UNSIGNED} (its owner has no cross-signing)"
        devices = of_user("device_keys")
        for device_id, device in (devices.items() if isinstance(devices, Mapping) else []):
            keys = device.get("keys") if isinstance(device, Mapping) else None
            if (isinstance(keys, Mapping) and keys.get(f"ed25519:{device_id}") == ed25519
                    and keys.get(f"curve25519:{device_id}") == curve25519):
                # The device's own signature proves the keys belong together.
                if not verify(device, user, ed25519, key_id=device_id):
                    return UNSIGNED
                return None if verify(device, user, self_signing) else UNSIGNED
        return f"{UNSIGNED} (no such device of theirs)"
