"""Notification state: maintenance-window mutes and which new versions were announced."""

from __future__ import annotations

import time
from dataclasses import dataclass

from coopbot.store.database import Database


@dataclass(frozen=True)
class Mute:
    app: str
    until: float
    muted_by: str
    room_id: str


class NoticeStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def mute(self, app: str, seconds: float, by: str, room_id: str) -> Mute:
        until = time.time() + seconds
        await self._db.conn.execute(
            "INSERT INTO mutes(app, until, muted_by, room_id) VALUES(?, ?, ?, ?)"
            " ON CONFLICT(app) DO UPDATE SET until = excluded.until,"
            " muted_by = excluded.muted_by, room_id = excluded.room_id",
            (app, until, by, room_id),
        )
        return Mute(app, until, by, room_id)

    async def unmute(self, app: str) -> bool:
        cursor = await self._db.conn.execute("DELETE FROM mutes WHERE app = ?", (app,))
        return cursor.rowcount > 0

    async def muted(self, app: str) -> Mute | None:
        async with self._db.conn.execute(
            "SELECT app, until, muted_by, room_id FROM mutes WHERE app = ? AND until > ?",
            (app, time.time()),
        ) as cursor:
            row = await cursor.fetchone()
        return Mute(*row) if row else None

    async def active_mutes(self) -> list[Mute]:
        async with self._db.conn.execute(
            "SELECT app, until, muted_by, room_id FROM mutes WHERE until > ? ORDER BY app",
            (time.time(),),
        ) as cursor:
            return [Mute(*row) for row in await cursor.fetchall()]

    async def first_announcement(self, app: str, version: str) -> bool:
        """True the first time (app, version) is announced; False ever after."""
        cursor = await self._db.conn.execute(
            "INSERT OR IGNORE INTO announced_versions(app, version, announced_at)"
            " VALUES(?, ?, ?)", (app, version, time.time()),
        )
        return cursor.rowcount == 1
