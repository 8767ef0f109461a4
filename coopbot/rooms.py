"""Which configured room a room id is (rooms may be configured by alias)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from coopbot.config import RoomConfig
from coopbot.ids import RoomID


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

    def rooms(self) -> list[ConfiguredRoom]:
        return list(self._by_id.values())

    def notification_rooms(self) -> list[ConfiguredRoom]:
        return [room for room in self._by_id.values() if room.config.notifications]
