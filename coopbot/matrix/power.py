"""Who has which power in each room, from m.room.power_levels and m.room.create.

nio keeps no room state on disk, so the cache is filled from the first (full-state) sync and
every state event after it, and from the homeserver on a miss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import nio

from coopbot.errors import MatrixError
from coopbot.ids import RoomID
from coopbot.matrix import events
from coopbot.roles import PowerInfo

POWER_STATE = ("m.room.power_levels", "m.room.create")


class PowerCache:
    def __init__(self, client: nio.AsyncClient) -> None:
        self._client = client
        self._power: dict[RoomID, PowerInfo] = {}
        self._state: dict[RoomID, dict[str, Any]] = {}

    def note_state(self, room_id: RoomID, source: object) -> None:
        """Keep a state event if it decides power (any other event is ignored)."""
        kind = events.event_type(source)
        if (kind not in POWER_STATE or not isinstance(source, Mapping)
                or source.get("state_key") != ""):
            return
        state = self._state.setdefault(room_id, {})
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
        return await self.refresh(room_id)

    async def refresh(self, room_id: RoomID) -> PowerInfo:
        """Fetch the room's state from the homeserver (used on a cache miss)."""
        response = await self._client.room_get_state(room_id)
        if not isinstance(response, nio.RoomGetStateResponse):
            raise MatrixError("could not read this room's power levels",
                              detail=getattr(response, "message", ""))
        for source in response.events:
            self.note_state(room_id, source)
        return self._power.get(room_id, PowerInfo())
