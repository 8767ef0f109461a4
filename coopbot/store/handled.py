"""Event ids already handled, so a redelivered or replayed event never runs twice."""

from __future__ import annotations

import time

from coopbot.ids import EventID, RoomID
from coopbot.store.database import Database


class HandledEvents:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(self, event_id: EventID, room_id: RoomID) -> bool:
        """Mark an event handled. True the first time, False for any duplicate."""
        cursor = await self._db.conn.execute(
            "INSERT OR IGNORE INTO handled_events(event_id, room_id, handled_at) VALUES(?, ?, ?)",
            (event_id, room_id, time.time()),
        )
        return cursor.rowcount == 1

    async def forget_older_than(self, seconds: float) -> int:
        """Prune old rows; sync never redelivers events this old."""
        cursor = await self._db.conn.execute(
            "DELETE FROM handled_events WHERE handled_at < ?", (time.time() - seconds,)
        )
        return cursor.rowcount
