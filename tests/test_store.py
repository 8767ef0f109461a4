"""The SQLite store: migrations, dedup, append-only audit, locks that survive a crash."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from coopbot.ids import EventID, RoomID
from coopbot.store.audit import AuditLog, Decision
from coopbot.store.database import Database
from coopbot.store.handled import HandledEvents
from coopbot.store.kv import KeyValueStore
from coopbot.store.migrations import MIGRATIONS
from coopbot.store.notices import NoticeStore
from coopbot.store.operations import OperationStore
from coopbot.store.status_messages import StatusMessages


async def test_migrations_apply_once_and_state_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    async with Database(path) as db:
        assert await db.schema_version() == len(MIGRATIONS)
        await KeyValueStore(db).set("matrix.sync_token", "s1")
        await KeyValueStore(db).set("matrix.sync_token", "s2")
    async with Database(path) as db:
        assert await db.schema_version() == len(MIGRATIONS)
        assert await KeyValueStore(db).get("matrix.sync_token") == "s2"


async def test_handled_events_claim_once(tmp_path: Path) -> None:
    async with Database(tmp_path / "bot.db") as db:
        handled = HandledEvents(db)
        assert await handled.claim(EventID("$a"), RoomID("!r"))
        assert not await handled.claim(EventID("$a"), RoomID("!r"))
        assert await handled.claim(EventID("$b"), RoomID("!r"))


async def test_audit_log_is_append_only(tmp_path: Path) -> None:
    async with Database(tmp_path / "bot.db") as db:
        audit = AuditLog(db)
        row_id = await audit.append(command="ping", decision=Decision.RAN, sender="@a:x")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            await db.conn.execute("UPDATE audit_log SET result = 'forged' WHERE id = ?", (row_id,))
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            await db.conn.execute("DELETE FROM audit_log")
        rows = await audit.recent()
        assert [(r.command, r.decision, r.sender) for r in rows] == [("ping", "ran", "@a:x")]


async def test_locks_are_exclusive_and_released_after_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    async with Database(path) as db:
        first = OperationStore(db)
        await first.begin(operation_id="op1", kind="deploy", app="blog", server="s",
                          requester="@a:x", from_version=None, to_version="1.0.0",
                          room_id=None, event_id=None)
        assert await first.try_lock("blog", "op1", "deploy", "@a:x") is None
        busy = await first.try_lock("blog", "op2", "upgrade", "@b:x")
        assert busy is not None and busy.holder == "@a:x" and busy.kind == "deploy"
        # another app is independent
        assert await first.try_lock("wiki", "op3", "deploy", "@b:x") is None
    # The process "crashed" with locks held: a new process sees them as stale (recovery
    # resolves them), still held until released, and its own locks are not stale.
    async with Database(path) as db:
        second = OperationStore(db)
        stale = await second.stale_locks()
        assert sorted(lock.app for lock in stale) == ["blog", "wiki"]
        assert await second.try_lock("blog", "op4", "deploy", "@b:x") is not None
        await second.unlock("blog", "op1")
        assert await second.try_lock("blog", "op4", "deploy", "@b:x") is None
        assert [lock.app for lock in await second.stale_locks()] == ["wiki"]


async def test_an_operation_result_is_written_once(tmp_path: Path) -> None:
    async with Database(tmp_path / "bot.db") as db:
        ops = OperationStore(db)
        await ops.begin(operation_id="op1", kind="deploy", app="blog", server="s",
                        requester="@a:x", from_version=None, to_version="1.0.0",
                        room_id=None, event_id=None)
        assert await ops.finish("op1", "ok", "deployed")
        assert not await ops.finish("op1", "interrupted", "the bot stopped")
        record = await ops.get("op1")
        assert record is not None and (record.result, record.summary) == ("ok", "deployed")
        audit = await AuditLog(db).recent()
        assert [(r.decision, r.operation_id) for r in audit] == [("operation", "op1")]
        assert audit[0].result.startswith("ok in ")


async def test_deployed_versions_newest_first(tmp_path: Path) -> None:
    async with Database(tmp_path / "bot.db") as db:
        ops = OperationStore(db)
        for number, (version, result) in enumerate(
            [("1.0.0", "ok"), ("1.1.0", "ok"), ("1.2.0", "failed")]
        ):
            await ops.begin(operation_id=f"op{number}", kind="deploy", app="blog", server="s",
                            requester="@a:x", from_version=None, to_version=version,
                            room_id=None, event_id=None)
            await ops.finish(f"op{number}", result, "")
        assert await ops.deployed_versions("blog") == ["1.1.0", "1.0.0"]
        assert [(r.id, r.to_version, r.result) for r in await ops.history("blog", limit=2)] == [
            ("op2", "1.2.0", "failed"), ("op1", "1.1.0", "ok")]
        assert await ops.history("wiki") == []


async def test_mutes_are_per_room_and_earlier_mutes_stay_with_the_room_that_set_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bot.db"
    conn = sqlite3.connect(path)  # a database of the release before per-room mutes
    for script in MIGRATIONS[:4]:
        conn.executescript(script)
    conn.execute("INSERT INTO mutes(app, until, muted_by, room_id) VALUES(?, ?, ?, ?)",
                 ("blog", time.time() + 3600, "@a:x", "!ops:x"))
    conn.execute("PRAGMA user_version = 4")
    conn.commit()
    conn.close()
    async with Database(path) as db:
        notices = NoticeStore(db)
        kept = await notices.muted("blog", ["!ops:x"])
        assert kept is not None and kept.muted_by == "@a:x"
        assert await notices.muted("blog", ["!news:x"]) is None
        await notices.mute("!news:x", "blog", 60, "@b:x")
        await notices.mute("!news:x", "wiki", 60, "@b:x")
        assert [(m.room_id, m.app) for m in await notices.active_mutes(["!ops:x", "!news:x"])] \
            == [("!news:x", "blog"), ("!ops:x", "blog"), ("!news:x", "wiki")]
        assert await notices.active_mutes([]) == []
        assert await notices.unmute("!ops:x", "blog")
        assert not await notices.unmute("!ops:x", "blog")  # the other room's mute is untouched
        left = await notices.muted("blog", ["!ops:x", "!news:x"])
        assert left is not None and left.room_id == "!news:x"
        await notices.mute("!news:x", "blog", -1, "@b:x")  # an expired mute silences nothing
        assert await notices.muted("blog", ["!news:x"]) is None


async def test_unanswered_operations_are_those_without_a_result_row(tmp_path: Path) -> None:
    async with Database(tmp_path / "bot.db") as db:
        ops, audit = OperationStore(db), AuditLog(db)
        for op_id, event in (("answered", "$a"), ("lost", "$b"), ("scheduled", None)):
            await ops.begin(operation_id=op_id, kind="backup", app="blog", server="s",
                            requester="@a:x", from_version=None, to_version=None,
                            room_id="!r:x" if event else None, event_id=event)
            await ops.finish(op_id, "ok", "done")
        await audit.append(command="backup", decision=Decision.RESULT, event_id="$a",
                           result="ok (1.00 s)")
        await audit.append(command="backup", decision=Decision.RAN, event_id="$b")
        now = time.time()
        assert [r.id for r in await ops.unanswered(now - 60, now + 1)] == ["lost"]
        assert await ops.unanswered(now - 120, now - 60) == []


async def test_status_messages_and_checkpoints_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    async with Database(path) as db:
        await StatusMessages(db).remember(EventID("$cmd"), RoomID("!r:x"), EventID("$status"),
                                          EventID("$root"))
        ops = OperationStore(db)
        await ops.begin(operation_id="op1", kind="restore", app="blog", server="s",
                        requester="@a:x", from_version=None, to_version=None, room_id=None,
                        event_id=None)
        await ops.checkpoint("op1", '{"snapshot": "abcd1234"}')
    async with Database(path) as db:
        statuses = StatusMessages(db)
        status = await statuses.get("$cmd")
        assert status is not None
        assert (status.room_id, status.status_event_id, status.thread_root) == (
            "!r:x", "$status", "$root")
        record = await OperationStore(db).get("op1")
        assert record is not None and record.checkpoint == '{"snapshot": "abcd1234"}'
        await statuses.forget("$cmd")
        assert await statuses.get("$cmd") is None
