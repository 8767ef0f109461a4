"""Which rooms are notified about an app (rooms with `notifications: true` that control it), and
which rooms' mutes silence a notification room: its own, and those of the rooms that list it
under `mute_rooms`. A mute never reaches any other room."""

from __future__ import annotations

import fnmatch

from coopbot.ids import RoomID
from coopbot.rooms import RoomDirectory


class NotificationTargets:
    def __init__(self, rooms: RoomDirectory) -> None:
        self._rooms = rooms

    def for_app(self, server: str, app: str | None) -> list[RoomID]:
        targets = []
        for room in self._rooms.notification_rooms():
            if server not in room.config.servers:
                continue
            if app is None or any(fnmatch.fnmatchcase(app, p) for p in room.config.apps):
                targets.append(room.room_id)
        return targets

    def rooms_watching(self, room_id: RoomID) -> tuple[list[str], list[str]]:
        """What a room is notified about: (servers, app patterns); empty if not notified."""
        room = self._rooms.get(room_id)
        if room is None or not room.config.notifications:
            return [], []
        return list(room.config.servers), list(room.config.apps)

    def silenced_by(self, room_id: RoomID) -> list[RoomID]:
        """The rooms whose mutes apply to notifications posted in `room_id`, itself first."""
        room = self._rooms.get(room_id)
        if room is None:
            return [room_id]
        others = [other.room_id for other in self._rooms.rooms()
                  if room.ref in other.config.mute_rooms and other.room_id != room_id]
        return [room_id, *others]

    def name_of(self, room_id: str) -> str:
        """How the config names a room (its alias, if configured by one)."""
        room = self._rooms.get(RoomID(room_id))
        return room.ref if room is not None else room_id

    def silenced_from(self, room_id: RoomID) -> tuple[bool, list[str]]:
        """What a mute set in `room_id` silences: (this room itself?, the other notification
        rooms, as written in the config)."""
        room = self._rooms.get(room_id)
        if room is None:
            return False, []
        return room.config.notifications, [r for r in room.config.mute_rooms if r != room.ref]
