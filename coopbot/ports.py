"""What the rest of the bot needs of its room side, in one place (the Matrix adapter's
MatrixGateway implements every one; tests use small fakes).

    RoomReplies   answer in a command's thread, and edit what was sent
    Responder     RoomReplies + the typing indicator (the pipeline)
    CardPoster    RoomReplies + the reactions on a card (approvals)
    RoomPoster    a message into a room, e.g. a notification
    PowerSource   the power levels and creators of a room
    DeviceCheck   whether an event came from a cross-signed device (approvals)
    PrivateRooms  whether a room is a direct, encrypted one with a member; redacting there
"""

from __future__ import annotations

from typing import Protocol

from coopbot.ids import EventID, RoomID
from coopbot.messages import IncomingReaction, ReplyTarget
from coopbot.replies import Reply
from coopbot.roles import PowerInfo


class RoomReplies(Protocol):
    async def reply(self, to: ReplyTarget, reply: Reply, *, key: str) -> EventID: ...

    async def edit(self, room_id: RoomID, event_id: EventID, reply: Reply) -> None: ...


class Responder(RoomReplies, Protocol):
    async def typing(self, room_id: RoomID, active: bool) -> None: ...


class CardPoster(RoomReplies, Protocol):
    async def reactions_to(self, room_id: RoomID, event_id: EventID) -> list[IncomingReaction]: ...


class RoomPoster(Protocol):
    async def post(self, room_id: RoomID, reply: Reply, *, key: str,
                   thread_root: EventID | None = None) -> EventID: ...


class PowerSource(Protocol):
    async def power_info(self, room_id: RoomID) -> PowerInfo: ...


class DeviceCheck(Protocol):
    """Whether an event came from a device its owner cross-signed (the Matrix adapter's
    DeviceTrust): None if it did, else a short reason for the room."""

    async def unsigned(self, room_id: str, event_id: str, sender: str) -> str | None: ...


class PrivateRooms(Protocol):
    """For values that may only come by a private channel (`!secret insert`)."""

    def is_direct_encrypted(self, room_id: RoomID, member: str) -> bool: ...

    async def redact(self, room_id: RoomID, event_id: EventID, reason: str) -> bool: ...
