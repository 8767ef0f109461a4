"""The append-only audit log: every command received, what was decided and what came of it.

Rows are never updated (the schema has triggers that refuse it): a command that runs for a while
gets one row when it is decided and one more row with its result.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from enum import StrEnum

from coopbot.ids import EventID, OperationID, RoomID, UserID
from coopbot.store.database import Database


class Decision(StrEnum):
    RAN = "ran"
    DENIED = "denied"
    INVALID = "invalid"
    EXPIRED = "expired"
    IGNORED = "ignored"
    RESULT = "result"
    OPERATION = "operation"  # a swarm operation's outcome, with its operation id


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: float
    event_id: EventID | None
    room_id: RoomID | None
    sender: UserID | None
    command: str
    args: str
    decision: str
    result: str
    operation_id: OperationID | None

    @staticmethod
    def of_row(row: sqlite3.Row) -> AuditRow:
        return AuditRow(
            id=row["id"], at=row["at"], event_id=row["event_id"], room_id=row["room_id"],
            sender=row["sender"], command=row["command"], args=row["args"],
            decision=row["decision"], result=row["result"], operation_id=row["operation_id"],
        )


_COLUMNS = "id, at, event_id, room_id, sender, command, args, decision, result, operation_id"


class AuditLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(
        self,
        *,
        command: str,
        decision: Decision,
        event_id: str | None = None,
        room_id: str | None = None,
        sender: str | None = None,
        args: str = "",
        result: str = "",
        operation_id: str | None = None,
    ) -> int:
        cursor = await self._db.conn.execute(
            "INSERT INTO audit_log(at, event_id, room_id, sender, command, args, decision, result,"
            " operation_id) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (time.time(), event_id, room_id, sender, command, args, decision.value, result,
             operation_id),
        )
        return int(cursor.lastrowid or 0)

    async def recent(self, *, room_id: RoomID | None = None, limit: int = 20,
                     mentioning: str | None = None) -> list[AuditRow]:
        """Newest first; `mentioning` narrows to rows whose arguments name it (an app)."""
        clauses: list[str] = []
        params: list[object] = []
        if room_id is not None:
            clauses.append("room_id = ?")
            params.append(room_id)
        if mentioning is not None:
            clauses.append("instr(args, ?) > 0")
            params.append(mentioning)
        query = f"SELECT {_COLUMNS} FROM audit_log"
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY id DESC LIMIT ?"
        async with self._db.conn.execute(query, (*params, limit)) as cursor:
            rows = await cursor.fetchall()
        return [AuditRow.of_row(row) for row in rows]

    async def for_event(self, event_id: EventID) -> list[AuditRow]:
        async with self._db.conn.execute(
            f"SELECT {_COLUMNS} FROM audit_log WHERE event_id = ? ORDER BY id", (event_id,)
        ) as cursor:
            rows = await cursor.fetchall()
        return [AuditRow.of_row(row) for row in rows]
