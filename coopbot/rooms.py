"""Which configured room a room id is: rooms may be configured by alias, and a configured room
that is upgraded (m.room.tombstone) carries its config over to its replacement."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from coopbot.config import RoomConfig
from coopbot.errors import MatrixError
from coopbot.ids import RoomID, UserID
from coopbot.roles import PowerInfo, RoleResolver
from coopbot.store.kv import KeyValueStore

log = logging.getLogger(__name__)

ROOM_UPGRADES_KEY = "rooms.upgrades"


@dataclass(frozen=True)
class ConfiguredRoom:
    ref: str  # as written in the config: !id:server or #alias:server
    room_id: RoomID
    config: RoomConfig


class RoomDirectory:
    def __init__(self, rooms: Mapping[str, RoomConfig]) -> None:
        self._configs = dict(rooms)
        self._by_id: dict[RoomID, ConfiguredRoom] = {}
        for ref, config in rooms.items():
            if ref.startswith("!"):
                self._by_id[RoomID(ref)] = ConfiguredRoom(ref, RoomID(ref), config)

    def aliases(self) -> list[str]:
        return [ref for ref in self._configs if ref.startswith("#")]

    def bind_alias(self, alias: str, room_id: RoomID) -> None:
        """Record what an alias resolved to at start-up."""
        self._by_id[room_id] = ConfiguredRoom(alias, room_id, self._configs[alias])

    def carry_over(self, old: RoomID, new: RoomID) -> ConfiguredRoom | None:
        """A configured room was upgraded: its replacement gets the same config."""
        room = self._by_id.get(old)
        if room is None:
            return None
        moved = ConfiguredRoom(room.ref, new, room.config)
        self._by_id[new] = moved
        return moved

    def get(self, room_id: RoomID) -> ConfiguredRoom | None:
        return self._by_id.get(room_id)

    def room_ids(self) -> list[RoomID]:
        return list(self._by_id)

    def notification_rooms(self) -> list[ConfiguredRoom]:
        return [room for room in self._by_id.values() if room.config.notifications]


class RoomUpgrades:
    """Follows upgrades of configured rooms and remembers them across restarts."""

    def __init__(self, rooms: RoomDirectory, kv: KeyValueStore, roles: RoleResolver, *,
                 power: Callable[[RoomID], Awaitable[PowerInfo]],
                 join: Callable[[RoomID], Awaitable[None]]) -> None:
        self._rooms = rooms
        self._kv = kv
        self._roles = roles
        self._power = power
        self._join = join

    async def restore(self) -> None:
        """At start-up: the upgrades followed by earlier runs."""
        for old, new in (await self._followed()).items():
            self._rooms.carry_over(RoomID(old), RoomID(new))

    async def follow(self, room_id: RoomID, sender: UserID, replacement: RoomID) -> None:
        """Follow an upgrade only if its upgrader holds the top role there (anyone with power
        to send a tombstone could otherwise lead the bot into a room of their choice)."""
        room = self._rooms.get(room_id)
        if room is None:
            return
        top = self._roles.order[-1]
        if not self._roles.resolve(sender, room.config, await self._power(room_id)).has(top):
            log.warning("not following the upgrade of %s by %s: they lack the %s role",
                        room_id, sender, top)
            return
        self._rooms.carry_over(room_id, replacement)
        followed = await self._followed()
        followed[room_id] = replacement
        await self._kv.set(ROOM_UPGRADES_KEY, json.dumps(followed))
        try:
            await self._join(replacement)
        except MatrixError as error:
            log.error("room %s was upgraded to %s, which I cannot join: %s", room_id,
                      replacement, error.detail)
            return
        log.info("followed the upgrade of %s to %s (by %s)", room_id, replacement, sender)

    async def _followed(self) -> dict[str, str]:
        try:
            stored = json.loads(await self._kv.get(ROOM_UPGRADES_KEY) or "{}")
        except ValueError:
            log.error("the stored room upgrades are unreadable; ignoring them")
            return {}
        if not isinstance(stored, dict):
            return {}
        return {str(k): str(v) for k, v in stored.items()}
