"""Which rooms the bot is in: invites it accepts (config `invites`), the configured rooms it
joins, and joins it is asked for (room upgrades)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import nio

from coopbot.config import InviteConfig
from coopbot.errors import MatrixError
from coopbot.ids import RoomID, UserID, server_of
from coopbot.matrix import events

log = logging.getLogger(__name__)


class Membership:
    def __init__(
        self, client: nio.AsyncClient, invites: InviteConfig, *, bot_user_id: str,
        admins: frozenset[str], configured_rooms: Callable[[], list[RoomID]],
    ) -> None:
        self._client = client
        self._invites = invites
        self._bot_user_id = bot_user_id
        self._admins = admins
        self._configured_rooms = configured_rooms

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

    async def consider_invite(self, room_id: RoomID, invite_state: list[Any]) -> None:
        inviter: UserID | None = None
        for event in invite_state:
            source = getattr(event, "source", None)
            if (events.event_type(source) == "m.room.member" and isinstance(source, Mapping)
                    and source.get("state_key") == self._bot_user_id):
                inviter = events.user_id(source.get("sender"))
            elif (isinstance(event, nio.InviteMemberEvent)
                    and event.state_key == self._bot_user_id):
                inviter = events.user_id(event.sender)
        if self.invite_allowed(inviter, room_id):
            log.info("joining %s (invited by %s)", room_id, inviter)
            result = await self._client.join(room_id)
            if not isinstance(result, nio.JoinResponse):
                log.warning("could not join %s: %s", room_id, getattr(result, "message", result))
        else:
            log.info("declining invite to %s from %s (not allowed by config `invites`)",
                     room_id, inviter)
            await self._client.room_leave(room_id)

    async def join_configured_rooms(self) -> None:
        joined = set(self._client.rooms)
        for room_id in self._configured_rooms():
            if room_id not in joined:
                result = await self._client.join(room_id)
                if not isinstance(result, nio.JoinResponse):
                    log.warning("configured room %s could not be joined: %s",
                                room_id, getattr(result, "message", result))

    async def join(self, room_id: RoomID) -> None:
        result = await self._client.join(room_id)
        if not isinstance(result, nio.JoinResponse):
            raise MatrixError(f"could not join {room_id}", detail=getattr(result, "message", ""))

    async def resolve_alias(self, alias: str) -> RoomID:
        response = await self._client.room_resolve_alias(alias)
        if not isinstance(response, nio.RoomResolveAliasResponse):
            raise MatrixError(f"room alias {alias} could not be resolved",
                              detail=getattr(response, "message", ""))
        return RoomID(response.room_id)
