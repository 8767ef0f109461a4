"""Which rooms are notified about an app: rooms with `notifications: true` that control it."""

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
