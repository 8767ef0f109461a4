"""Notification state: maintenance-window mutes per room and which new versions were announced."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection
from dataclasses import dataclass

from coopbot.ids import RoomID, UserID
from coopbot.store.database import Database


@dataclass(frozen=True)
class Mute:
    app: str
    until: float
    muted_by: UserID
    room_id: RoomID  # the room it was set in: it silences that room and the rooms it answers for

    @staticmethod
    def of_row(row: sqlite3.Row) -> Mute:
        return Mute(app=row["app"], until=row["until"], muted_by=row["muted_by"],
                    room_id=row["room_id"])


class NoticeStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def mute(self, room_id: RoomID, app: str, seconds: float, by: UserID) -> Mute:
        until = time.time() + seconds
        await self._db.conn.execute(
            "INSERT INTO mutes(room_id, app, until, muted_by) VALUES(?, ?, ?, ?)"
            " ON CONFLICT(room_id, app) DO UPDATE SET until = excluded.until,"
            " muted_by = excluded.muted_by",
            (room_id, app, until, by),
        )
        return Mute(app=app, until=until, muted_by=by, room_id=room_id)

    async def unmute(self, room_id: RoomID, app: str) -> bool:
        cursor = await self._db.conn.execute(
            "DELETE FROM mutes WHERE room_id = ? AND app = ?", (room_id, app))
        return cursor.rowcount > 0

    async def muted(self, app: str, room_ids: Collection[RoomID]) -> Mute | None:
        """A current mute of `app` set in any of `room_ids`, if there is one."""
        mutes = await self._active(room_ids, app)
        return mutes[0] if mutes else None

    async def active_mutes(self, room_ids: Collection[RoomID]) -> list[Mute]:
        """The current mutes set in any of `room_ids`, by app."""
        return await self._active(room_ids, None)

    async def _active(self, room_ids: Collection[RoomID], app: str | None) -> list[Mute]:
        if not room_ids:
            return []
        marks = ", ".join("?" for _ in room_ids)
        query = ("SELECT app, until, muted_by, room_id FROM mutes"
                 f" WHERE room_id IN ({marks}) AND until > ?")
        params: list[object] = [*room_ids, time.time()]
        if app is not None:
            query += " AND app = ?"
            params.append(app)
        async with self._db.conn.execute(query + " ORDER BY app, room_id", params) as cursor:
            return [Mute.of_row(row) for row in await cursor.fetchall()]

    async def first_announcement(self, app: str, version: str) -> bool:
        """True the first time (app, version) is announced; False ever after."""
        cursor = await self._db.conn.execute(
            "INSERT OR IGNORE INTO announced_versions(app, version, announced_at)"
            " VALUES(?, ?, ?)", (app, version, time.time()),
        )
        return cursor.rowcount == 1
