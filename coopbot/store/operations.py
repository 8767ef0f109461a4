"""Operation records and per-app locks.

A lock row names the bot process (`instance`) that holds it. A lock of an earlier process means
that process stopped (crashed) while the operation ran: operations/recovery.py finds out what
came of it at start-up, records that and only then releases the lock, so a crash never leaves
an app locked forever and the record says what really happened. An operation's result is
written exactly once: `finish` never overwrites one.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from coopbot.crashpoint import crash_point
from coopbot.errors import Busy, CoopbotError, UserError
from coopbot.ids import EventID, OperationID, RoomID, UserID
from coopbot.observe import Observers, OperationFinished
from coopbot.store.audit import AuditLog, Decision
from coopbot.store.database import Database

log = logging.getLogger(__name__)

# The result of an operation refused before it changed anything.
REFUSED = "refused"


@dataclass(frozen=True)
class LockHolder:
    app: str
    operation_id: OperationID
    kind: str
    holder: UserID
    since: float

    @staticmethod
    def of_row(row: sqlite3.Row) -> LockHolder:
        return LockHolder(app=row["app"], operation_id=row["operation_id"], kind=row["kind"],
                          holder=row["holder"], since=row["since"])


@dataclass(frozen=True)
class OperationRecord:
    id: OperationID
    kind: str
    app: str
    server: str
    from_version: str | None
    to_version: str | None
    requester: UserID
    approvers: str  # comma-separated user ids
    room_id: RoomID | None
    event_id: EventID | None
    started_at: float
    finished_at: float | None
    result: str
    summary: str
    checkpoint: str = ""  # progress so far, for recovery after a crash (a restore's volumes)

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at

    @staticmethod
    def of_row(row: sqlite3.Row) -> OperationRecord:
        return OperationRecord(
            id=row["id"], kind=row["kind"], app=row["app"], server=row["server"],
            from_version=row["from_version"], to_version=row["to_version"],
            requester=row["requester"], approvers=row["approvers"], room_id=row["room_id"],
            event_id=row["event_id"], started_at=row["started_at"],
            finished_at=row["finished_at"], result=row["result"], summary=row["summary"],
            checkpoint=row["checkpoint"],
        )


_LOCK_COLUMNS = "app, operation_id, kind, holder, since"
_OPERATION_COLUMNS = ("id, kind, app, server, from_version, to_version, requester, approvers,"
                      " room_id, event_id, started_at, finished_at, result, summary, checkpoint")


class OperationStore:
    def __init__(self, db: Database, instance: str | None = None,
                 observers: Observers | None = None) -> None:
        self._db = db
        self._audit = AuditLog(db)
        self._observers = observers or Observers()
        self.instance = instance or uuid.uuid4().hex

    @asynccontextmanager
    async def running(
        self, *, kind: str, app: str, server: str, requester: UserID, room_id: RoomID | None,
        event_id: EventID | None, approvers: tuple[str, ...] = (), to_version: str | None = None,
    ) -> AsyncIterator[OperationID]:
        """Hold the app's lock and an operation record while the body runs; yields the id.

        Busy when another operation holds the app. A body that raises leaves the record
        `failed` (the body itself calls finish() for its own outcomes) and releases the lock.
        A body cancelled (the bot stopping mid-operation, while the swarm may well finish it)
        leaves both as a crash would: the next start finds out what came of it."""
        operation_id = OperationID(uuid.uuid4().hex[:8])
        busy = await self.try_lock(app, operation_id, kind, requester)
        if busy is not None:
            since = time.strftime("%H:%M:%S UTC", time.gmtime(busy.since))
            raise Busy(f"busy: {busy.kind} of `{app}` by {busy.holder} since {since}")
        await self.begin(
            operation_id=operation_id, kind=kind, app=app, server=server, requester=requester,
            from_version=None, to_version=to_version, room_id=room_id, event_id=event_id,
            approvers=",".join(approvers),
        )
        log.info("operation %s: %s %s on %s for %s", operation_id, kind, app, server, requester)
        started = time.monotonic()
        cut_off = False
        try:
            yield operation_id
            crash_point("operation-done")
        except UserError as error:
            # Refused before it changed anything (already the newest version, the plan changed
            # since the vote, ...): recorded, but not a failure of the app.
            log.info("operation %s refused: %s", operation_id, error)
            await self.finish(operation_id, REFUSED, str(error))
            raise
        except CoopbotError as error:
            log.info("operation %s failed: %s (%s)", operation_id, error, error.detail)
            await self.finish(operation_id, "failed", str(error))
            raise
        except asyncio.CancelledError:
            cut_off = True
            log.warning("operation %s cut off by the bot stopping; the next start finds out "
                        "what came of it", operation_id)
            raise
        except BaseException:
            await self.finish(operation_id, "failed", "internal error")
            raise
        finally:
            if not cut_off:
                await self.unlock(app, operation_id)
        log.info("operation %s: done in %.1f s", operation_id, time.monotonic() - started)

    async def stale_locks(self) -> list[LockHolder]:
        """Locks held by earlier bot processes: their operations were cut off by a crash."""
        async with self._db.conn.execute(
            f"SELECT {_LOCK_COLUMNS} FROM app_locks WHERE instance != ? ORDER BY since",
            (self.instance,),
        ) as cursor:
            return [LockHolder.of_row(row) for row in await cursor.fetchall()]

    async def unfinished_without_lock(self) -> list[OperationRecord]:
        """Operations with no result and no lock (a lock is taken before the record is begun
        and released after it is finished, so only a damaged database holds any)."""
        async with self._db.conn.execute(
            f"SELECT {_OPERATION_COLUMNS} FROM operations WHERE finished_at IS NULL AND id NOT IN"
            " (SELECT operation_id FROM app_locks) ORDER BY started_at",
        ) as cursor:
            return [OperationRecord.of_row(row) for row in await cursor.fetchall()]

    async def unanswered(self, since: float, until: float) -> list[OperationRecord]:
        """Operations finished between `since` and `until` whose command was never answered:
        the pipeline appends the command's RESULT audit row right after answering, so a crash
        between an operation's end and its answer leaves none."""
        async with self._db.conn.execute(
            f"SELECT {_OPERATION_COLUMNS} FROM operations AS op"
            " WHERE op.finished_at BETWEEN ? AND ?"
            " AND op.event_id IS NOT NULL AND op.room_id IS NOT NULL AND NOT EXISTS"
            " (SELECT 1 FROM audit_log WHERE audit_log.event_id = op.event_id"
            "  AND audit_log.decision = 'result') ORDER BY op.started_at",
            (since, until),
        ) as cursor:
            return [OperationRecord.of_row(row) for row in await cursor.fetchall()]

    async def try_lock(
        self, app: str, operation_id: OperationID, kind: str, holder: UserID
    ) -> LockHolder | None:
        """Take the app's lock. Returns None on success, or the current holder when busy."""
        try:
            await self._db.conn.execute(
                "INSERT INTO app_locks(app, operation_id, kind, holder, since, instance)"
                " VALUES(?, ?, ?, ?, ?, ?)",
                (app, operation_id, kind, holder, time.time(), self.instance),
            )
            return None
        except sqlite3.IntegrityError:
            async with self._db.conn.execute(
                f"SELECT {_LOCK_COLUMNS} FROM app_locks WHERE app = ?", (app,)
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:  # released in between: try once more
                return await self.try_lock(app, operation_id, kind, holder)
            return LockHolder.of_row(row)

    async def lock_holder(self, app: str) -> LockHolder | None:
        async with self._db.conn.execute(
            f"SELECT {_LOCK_COLUMNS} FROM app_locks WHERE app = ?", (app,)
        ) as cursor:
            row = await cursor.fetchone()
        return LockHolder.of_row(row) if row else None

    async def unlock(self, app: str, operation_id: OperationID) -> None:
        await self._db.conn.execute(
            "DELETE FROM app_locks WHERE app = ? AND operation_id = ?", (app, operation_id)
        )

    async def begin(
        self, *, operation_id: OperationID, kind: str, app: str, server: str,
        requester: UserID, from_version: str | None, to_version: str | None,
        room_id: RoomID | None, event_id: EventID | None, approvers: str = "",
    ) -> None:
        await self._db.conn.execute(
            "INSERT INTO operations(id, kind, app, server, from_version, to_version, requester,"
            " approvers, room_id, event_id, started_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (operation_id, kind, app, server, from_version, to_version, requester, approvers,
             room_id, event_id, time.time()),
        )

    async def set_versions(self, operation_id: OperationID, from_version: str | None,
                           to_version: str | None) -> None:
        await self._db.conn.execute(
            "UPDATE operations SET from_version = ?, to_version = ? WHERE id = ?",
            (from_version, to_version, operation_id),
        )

    async def checkpoint(self, operation_id: OperationID, progress: str) -> None:
        """Store how far the operation got (read by recovery after a crash)."""
        await self._db.conn.execute(
            "UPDATE operations SET checkpoint = ? WHERE id = ?", (progress, operation_id))

    async def finish(self, operation_id: OperationID, result: str, summary: str) -> bool:
        """Close the operation record and append its outcome to the audit log, once: an
        operation that already has a result keeps it (returns False, records nothing)."""
        cursor = await self._db.conn.execute(
            "UPDATE operations SET finished_at = ?, result = ?, summary = ?"
            " WHERE id = ? AND finished_at IS NULL",
            (time.time(), result, summary, operation_id),
        )
        if cursor.rowcount != 1:
            log.info("operation %s already has its result; %s not recorded", operation_id,
                     result)
            return False
        record = await self.get(operation_id)
        if record is None:
            return False
        took = f" in {record.duration:.1f} s" if record.duration is not None else ""
        await self._audit.append(
            command=record.kind,
            args=f"{record.app} on {record.server}: {record.from_version or '-'} -> "
                 f"{record.to_version or '-'}",
            decision=Decision.OPERATION,
            event_id=record.event_id,
            room_id=record.room_id,
            sender=record.requester,
            result=f"{result}{took}: {summary}"[:2000],
            operation_id=operation_id,
        )
        await self._observers.emit(OperationFinished(
            operation_id=record.id, kind=record.kind, app=record.app, server=record.server,
            from_version=record.from_version, to_version=record.to_version,
            requester=record.requester,
            approvers=tuple(a for a in record.approvers.split(",") if a),
            room_id=record.room_id, event_id=record.event_id, result=result, summary=summary,
            duration=record.duration,
        ))
        return True

    async def get(self, operation_id: OperationID) -> OperationRecord | None:
        async with self._db.conn.execute(
            f"SELECT {_OPERATION_COLUMNS} FROM operations WHERE id = ?", (operation_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return OperationRecord.of_row(row) if row else None

    async def history(self, app: str | None = None, limit: int = 20) -> list[OperationRecord]:
        """Newest first."""
        query = f"SELECT {_OPERATION_COLUMNS} FROM operations"
        params: tuple[object, ...] = ()
        if app is not None:
            query += " WHERE app = ?"
            params = (app,)
        async with self._db.conn.execute(
            query + " ORDER BY started_at DESC, rowid DESC LIMIT ?", (*params, limit)
        ) as cursor:
            return [OperationRecord.of_row(row) for row in await cursor.fetchall()]

    async def active_between(self, app: str, start: float, end: float) -> bool:
        """Whether an operation on `app` ran at any time between `start` and `end`."""
        async with self._db.conn.execute(
            "SELECT 1 FROM operations WHERE app = ? AND started_at <= ?"
            " AND (finished_at IS NULL OR finished_at >= ?) LIMIT 1",
            (app, end, start),
        ) as cursor:
            return await cursor.fetchone() is not None

    async def deployed_versions(self, app: str) -> list[str]:
        """Versions this app was successfully brought to, newest first (for rollback)."""
        async with self._db.conn.execute(
            "SELECT to_version FROM operations WHERE app = ? AND result = 'ok'"
            " AND kind IN ('deploy', 'upgrade', 'rollback') AND to_version IS NOT NULL"
            " ORDER BY started_at DESC, rowid DESC",
            (app,),
        ) as cursor:
            return [str(row["to_version"]) for row in await cursor.fetchall()]
