"""Which apps a room controls: the servers listed for the room, narrowed by app patterns."""

from __future__ import annotations

import fnmatch

from coopbot.config import RoomConfig
from coopbot.errors import NotFound, UserError
from coopbot.recipes.apps import App, AppCatalog


class AppScope:
    def __init__(self, catalog: AppCatalog) -> None:
        self._catalog = catalog

    @staticmethod
    def controls(room: RoomConfig | None, app: App) -> bool:
        # room None: a bot admin in an unconfigured room, who may reach every app.
        if room is None:
            return True
        return app.server in room.servers and any(
            fnmatch.fnmatchcase(app.name, pattern) for pattern in room.apps
        )

    @staticmethod
    def controls_name(room: RoomConfig | None, server: str, name: str) -> bool:
        """Whether the room would control an app `name` on `server` (one not made yet)."""
        return room is None or (server in room.servers and any(
            fnmatch.fnmatchcase(name, pattern) for pattern in room.apps))

    @property
    def catalog(self) -> AppCatalog:
        return self._catalog

    def apps(self, room: RoomConfig | None, server: str | None = None) -> list[App]:
        servers = [server] if server else (room.servers if room is not None else None)
        return [app for app in self._catalog.list(servers) if self.controls(room, app)]

    def get(self, name: str, room: RoomConfig | None) -> App:
        app = self._catalog.get(name)
        if not self.controls(room, app):
            # Same wording as an unknown app would be a lie; say plainly it is not this room's.
            raise UserError(f"App `{name}` is not controlled from this room.")
        return app

    def servers(self, room: RoomConfig | None, all_servers: list[str]) -> list[str]:
        if room is None:
            return all_servers
        unknown = [s for s in room.servers if s not in all_servers]
        if unknown:
            raise NotFound(f"unknown server {unknown[0]}")
        return list(room.servers)
