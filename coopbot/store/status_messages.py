"""Where each command's ⏳ status message is, so a restart after a crash can close it.

Written when the status message is first posted (keyed by the command event); the answer's
thread root is kept with it, so what the bot says after a restart lands in the same thread.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from coopbot.ids import EventID, RoomID
from coopbot.store.database import Database


@dataclass(frozen=True)
class StatusMessage:
    command_event_id: EventID
    room_id: RoomID
    status_event_id: EventID
    thread_root: EventID

    @staticmethod
    def of_row(row: sqlite3.Row) -> StatusMessage:
        return StatusMessage(command_event_id=row["command_event_id"], room_id=row["room_id"],
                             status_event_id=row["status_event_id"],
                             thread_root=row["thread_root"])


class StatusMessages:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def remember(self, command_event_id: EventID, room_id: RoomID,
                       status_event_id: EventID, thread_root: EventID) -> None:
        await self._db.conn.execute(
            "INSERT OR REPLACE INTO status_messages(command_event_id, room_id, status_event_id,"
            " thread_root, posted_at) VALUES(?, ?, ?, ?, ?)",
            (command_event_id, room_id, status_event_id, thread_root, time.time()),
        )

    async def get(self, command_event_id: EventID) -> StatusMessage | None:
        async with self._db.conn.execute(
            "SELECT command_event_id, room_id, status_event_id, thread_root FROM status_messages"
            " WHERE command_event_id = ?", (command_event_id,),
        ) as cursor:
            row = await cursor.fetchone()
        return StatusMessage.of_row(row) if row else None

    async def forget(self, command_event_id: EventID) -> None:
        await self._db.conn.execute(
            "DELETE FROM status_messages WHERE command_event_id = ?", (command_event_id,))

    async def forget_older_than(self, seconds: float) -> int:
        cursor = await self._db.conn.execute(
            "DELETE FROM status_messages WHERE posted_at < ?", (time.time() - seconds,))
        return cursor.rowcount
