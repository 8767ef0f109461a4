"""matrix-nio behind the interfaces the rest of the bot needs, composed of small parts (as
mautrix-python splits its client):

    MatrixSession  login on a stable device, never a logout          (session.py)
    SyncLoop       events in timeline order, gaps filled, token kept   (sync.py)
    PowerCache     power levels and creators per room                  (power.py)
    Membership     invites, configured rooms, joins, aliases           (membership.py)
    RoomSender     answers, posts, edits, files, typing, card votes    (sender.py)

nio errors become MatrixError in those parts. Everything that must survive a restart is
persisted: the sync token (in the bot's database), the device id and token (session.json) and
the crypto store (nio's).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nio

from coopbot.config import InviteConfig, MatrixConfig
from coopbot.ids import EventID, RoomID, UserID
from coopbot.matrix.cross_signing import NioKeysApi
from coopbot.matrix.device_trust import DeviceTrust
from coopbot.matrix.membership import Membership
from coopbot.matrix.power import PowerCache
from coopbot.matrix.sender import RoomSender
from coopbot.matrix.session import MatrixSession
from coopbot.matrix.sync import SYNC_TOKEN_KEY, SyncListener, SyncLoop
from coopbot.matrix.undecryptable import Undecryptable
from coopbot.matrix.verification import Verifications
from coopbot.messages import IncomingReaction, ReplyTarget
from coopbot.observe import Observers
from coopbot.replies import Reply
from coopbot.roles import PowerInfo
from coopbot.store.kv import KeyValueStore

log = logging.getLogger(__name__)

__all__ = ["SYNC_TOKEN_KEY", "MatrixGateway", "SyncListener"]

# Per-request retries on 429 and timeouts are bounded: nio would otherwise retry forever.
MAX_RETRIES = 5


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
        store = Path(config.store)
        store.mkdir(parents=True, exist_ok=True)
        store.chmod(0o700)
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
        self.sender = RoomSender(self.client, prefix=config.command_prefix)
        # Which device sent a vote or command (the verified_devices_only policy).
        self.device_trust = DeviceTrust(self.client, NioKeysApi(self.client))
        self.verifications = Verifications(
            self.client, store, auto_confirm=config.auto_confirm_verification,
            send_to_room=self._send_verification)
        self.session = MatrixSession(self.client, config, store / "session.json",
                                     verifications=self.verifications)
        self.power = PowerCache(self.client)
        self.membership = Membership(self.client, invites, bot_user_id=config.user_id,
                                     admins=admins, configured_rooms=configured_rooms)
        self.sync = SyncLoop(
            self.client, config, kv, session=self.session, power=self.power,
            membership=self.membership, observers=observers or Observers(),
            undecryptable=Undecryptable(self.client, kv, NioKeysApi(self.client)),
            verifications=self.verifications,
        )

    @property
    def user_id(self) -> UserID:
        return UserID(self._config.user_id)

    # ---- lifecycle ------------------------------------------------------------------------

    async def login(self) -> None:
        await self.session.login()

    async def run(self, listener: SyncListener) -> None:
        await self.sync.run(listener)

    def stop(self) -> None:
        self.sync.stop()

    async def close(self) -> None:
        """Stop syncing and close connections. Deliberately no logout."""
        self.sync.stop()
        await self.client.close()

    @property
    def last_sync(self) -> float:
        return self.sync.last_sync

    @property
    def synced_once(self) -> asyncio.Event:
        return self.sync.synced_once

    # ---- what the pipeline, approvals and notifications use ---------------------------------

    async def power_info(self, room_id: RoomID) -> PowerInfo:
        return await self.power.power_info(room_id)

    async def join(self, room_id: RoomID) -> None:
        await self.membership.join(room_id)

    async def resolve_alias(self, alias: str) -> RoomID:
        return await self.membership.resolve_alias(alias)

    async def send(self, room_id: RoomID, content: dict[str, Any], *, key: str,
                   event_type: str = "m.room.message") -> EventID:
        return await self.sender.send(room_id, content, key=key, event_type=event_type)

    async def reply(self, to: ReplyTarget, reply: Reply, *, key: str) -> EventID:
        return await self.sender.reply(to, reply, key=key)

    async def post(self, room_id: RoomID, reply: Reply, *, key: str,
                   thread_root: EventID | None = None) -> EventID:
        return await self.sender.post(room_id, reply, key=key, thread_root=thread_root)

    async def edit(self, room_id: RoomID, event_id: EventID, reply: Reply) -> None:
        await self.sender.edit(room_id, event_id, reply)

    async def reactions_to(self, room_id: RoomID, event_id: EventID) -> list[IncomingReaction]:
        return await self.sender.reactions_to(room_id, event_id)

    async def typing(self, room_id: RoomID, active: bool) -> None:
        await self.sender.typing(room_id, active)

    def is_direct_encrypted(self, room_id: RoomID, member: str) -> bool:
        """The room is encrypted and holds (joined or invited) only the bot and `member`."""
        room = self.client.rooms.get(room_id)
        return bool(room is not None and room.encrypted
                    and set(room.users) == {self._config.user_id, member})

    async def redact(self, room_id: RoomID, event_id: EventID, reason: str) -> bool:
        """Redact an event; False (logged) when the homeserver refused."""
        try:
            response = await self.client.room_redact(room_id, event_id, reason=reason)
        except Exception as error:  # nio raises transport errors of several libraries
            log.warning("could not redact %s in %s: %r", event_id, room_id, error)
            return False
        if isinstance(response, nio.RoomRedactError):
            log.warning("could not redact %s in %s: %s", event_id, room_id, response.message)
            return False
        return True

    async def _send_verification(self, room: RoomID, kind: str, content: dict[str, Any]) -> None:
        await self.sender.send(room, content, key=f"verification/{uuid.uuid4()}",
                               event_type=kind)
