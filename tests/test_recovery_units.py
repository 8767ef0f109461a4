"""Recovery's decisions for the cases the subprocess crash tests cannot hit on purpose: a
restore cut off before or after its volumes, an undeploy, an app or server gone. In addition to
tests/test_crash_recovery.py (the real swarm, the real bot, SIGKILL), never instead: the store,
the audit log and the env files here are real, only the swarm and the room are stand-ins."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coopbot.errors import ServerUnreachable
from coopbot.ids import EventID, RoomID
from coopbot.messages import ReplyTarget
from coopbot.operations.checkpoints import RestoreProgress, VolumeRestore
from coopbot.operations.recovery import Recovery
from coopbot.operations.scope import AppScope
from coopbot.recipes.apps import AppCatalog
from coopbot.replies import Reply
from coopbot.servers.states import ServiceState
from coopbot.store.audit import AuditLog
from coopbot.store.database import Database
from coopbot.store.operations import OperationStore
from coopbot.store.status_messages import StatusMessages
from tests.harness.recipes import AbraDir

APP = "blog.example.org"
STACK = "blog_example_org"


def service(version: str | None = "1.0.0", **changes: Any) -> ServiceState:
    fields: dict[str, Any] = dict(
        name=f"{STACK}_app", short_name="app", stack=STACK, image="blog:1", mode="replicated",
        replicas_desired=1, replicas_running=1, replicas_updated=1, update_state="completed",
        update_message="", last_error=None, health="healthy",
        labels={f"coop-cloud.{STACK}.version": version} if version else {})
    fields.update(changes)
    return ServiceState(**fields)


@dataclass
class Engine:
    running: list[ServiceState] = field(default_factory=list)
    scaled: list[tuple[str, int]] = field(default_factory=list)
    unreachable: bool = False

    async def services(self, stack: str) -> list[ServiceState]:
        if self.unreachable:
            raise ServerUnreachable("prod", "connection refused")
        return self.running

    async def scale_service(self, name: str, replicas: int) -> int:
        self.scaled.append((name, replicas))
        return 0


@dataclass
class Pool:
    engine: Engine

    def get(self, name: str) -> Engine:
        return self.engine


@dataclass
class Room:
    replies: list[tuple[ReplyTarget, str, str]] = field(default_factory=list)
    edits: list[tuple[str, str]] = field(default_factory=list)

    async def reply(self, to: ReplyTarget, reply: Reply, *, key: str) -> EventID:
        self.replies.append((to, reply.text, key))
        return EventID(f"$answer{len(self.replies)}")

    async def edit(self, room_id: RoomID, event_id: EventID, reply: Reply) -> None:
        self.edits.append((event_id, reply.text))


@dataclass
class Setup:
    db: Database
    operations: OperationStore
    engine: Engine
    room: Room
    abra: AbraDir
    recovery: Recovery

    async def open_operation(self, kind: str, *, event_id: str | None = "$cmd",
                             checkpoint: RestoreProgress | None = None,
                             from_version: str | None = "1.0.0") -> str:
        """An operation as a killed run leaves it: begun, locked by another process."""
        earlier = OperationStore(self.db)  # another instance: the crashed run
        await earlier.begin(operation_id="op1", kind=kind, app=APP, server="prod",
                            requester="@bob:x", from_version=from_version, to_version=None,
                            room_id="!room:x" if event_id else None, event_id=event_id)
        assert await earlier.try_lock(APP, "op1", kind, "@bob:x") is None
        if checkpoint is not None:
            await earlier.checkpoint("op1", checkpoint.encode())
        return "op1"


async def setup(tmp_path: Path, engine: Engine) -> tuple[Setup, Database]:
    abra = AbraDir(tmp_path / "abra")
    (abra.path / "servers").mkdir(parents=True)
    abra.write_app("prod", APP, version="1.0.0")
    db = Database(tmp_path / "bot.db")
    await db.open()
    operations, room = OperationStore(db), Room()
    statuses = StatusMessages(db)
    await statuses.remember(EventID("$cmd"), RoomID("!room:x"), EventID("$status"),
                            EventID("$cmd"))
    recovery = Recovery(operations, AuditLog(db), statuses, AppScope(AppCatalog(abra.path)),
                        Pool(engine), room)  # type: ignore[arg-type]
    return Setup(db, operations, engine, room, abra, recovery), db


async def outcome(s: Setup) -> tuple[str, str]:
    record = await s.operations.get("op1")
    assert record is not None
    assert await s.operations.lock_holder(APP) is None, "the lock was not released"
    rows = [r for r in await AuditLog(s.db).recent() if r.decision == "operation"]
    assert len(rows) == 1
    return record.result, record.summary


async def test_a_restore_cut_off_before_its_first_volume_starts_the_services_again(
    tmp_path: Path,
) -> None:
    s, db = await setup(tmp_path, Engine([service()]))
    try:
        await s.open_operation("restore", checkpoint=RestoreProgress(
            "abcd1234", (VolumeRestore("db", "unchanged"), VolumeRestore("files", "unchanged")),
            ((f"{STACK}_app", 2),)))
        await s.recovery.run()
        assert await outcome(s) == ("interrupted",
                                    "the bot stopped while this ran: no volume was changed")
        assert s.engine.scaled == [(f"{STACK}_app", 2)]
        [(to, text, key)] = s.room.replies
        assert (to.event_id, key) == ("$cmd", "$cmd/answer")
        assert "- volume `db`: unchanged" in text and "Services `app` were started again." in text
        assert s.room.edits == [("$status", "⚠️ restore `blog.example.org`: interrupted (after a "
                                             "restart, see below)")]
    finally:
        await db.close()


async def test_a_restore_cut_off_after_every_volume_starts_them_and_says_what_is_left(
    tmp_path: Path,
) -> None:
    s, db = await setup(tmp_path, Engine([service()]))
    try:
        await s.open_operation("restore", checkpoint=RestoreProgress(
            "abcd1234", (VolumeRestore("db", "restored"),), ((f"{STACK}_app", 1),)))
        await s.recovery.run()
        result, summary = await outcome(s)
        assert result == "interrupted"
        assert "every volume was restored from snapshot abcd1234" in summary
        assert s.engine.scaled == [(f"{STACK}_app", 1)]
    finally:
        await db.close()


async def test_a_restore_cut_off_before_it_began_changed_nothing(tmp_path: Path) -> None:
    s, db = await setup(tmp_path, Engine([service()]))
    try:
        await s.open_operation("restore")
        await s.recovery.run()
        assert await outcome(s) == ("interrupted", "the bot stopped while this ran: the restore "
                                                   "had not begun changing anything; no volume "
                                                   "was changed")
        assert s.engine.scaled == []
    finally:
        await db.close()


async def test_an_undeploy_is_done_when_the_stack_is_gone_and_not_when_it_runs(
    tmp_path: Path,
) -> None:
    s, db = await setup(tmp_path, Engine([]))
    try:
        await s.open_operation("undeploy")
        await s.recovery.run()
        assert await outcome(s) == ("ok", "undeployed 1.0.0 (finished while the bot was down)")
    finally:
        await db.close()
    s, db = await setup(tmp_path / "again", Engine([service()]))
    try:
        await s.open_operation("undeploy")
        await s.recovery.run()
        assert await outcome(s) == ("interrupted", "the bot stopped while this ran: "
                                                   "`blog.example.org` is still deployed, "
                                                   "running 1.0.0")
    finally:
        await db.close()


async def test_an_unreachable_server_is_recorded_as_unknown_and_the_env_file_kept(
    tmp_path: Path,
) -> None:
    s, db = await setup(tmp_path, Engine(unreachable=True))
    try:
        env = s.abra.path / "servers" / "prod" / f"{APP}.env"
        before = env.read_text()
        await s.open_operation("upgrade")
        await s.recovery.run()
        result, summary = await outcome(s)
        assert result == "interrupted"
        assert summary == ("the bot stopped while this ran, and checking what came of it "
                           "failed: server prod unreachable: connection refused")
        assert env.read_text() == before
    finally:
        await db.close()


async def test_a_scheduled_backup_is_recorded_and_nobody_is_answered(tmp_path: Path) -> None:
    s, db = await setup(tmp_path, Engine([service()]))
    try:
        await s.open_operation("backup", event_id=None)
        await s.recovery.run()
        assert (await outcome(s))[0] == "interrupted"
        assert s.room.replies == [] and s.room.edits == []
    finally:
        await db.close()


async def test_a_second_recovery_changes_and_says_nothing_more(tmp_path: Path) -> None:
    s, db = await setup(tmp_path, Engine([]))
    try:
        await s.open_operation("undeploy")
        await s.recovery.run()
        await Recovery(OperationStore(db), AuditLog(db), StatusMessages(db),
                       AppScope(AppCatalog(s.abra.path)), Pool(s.engine),  # type: ignore[arg-type]
                       s.room).run()
        assert len(s.room.replies) == 1 and len(s.room.edits) == 1
        assert (await outcome(s))[0] == "ok"
    finally:
        await db.close()


async def test_an_upgrade_cut_off_before_its_target_was_known_changed_nothing(
    tmp_path: Path,
) -> None:
    s, db = await setup(tmp_path, Engine([service("1.0.0")]))
    try:
        env = s.abra.path / "servers" / "prod" / f"{APP}.env"
        before = env.read_text()
        await s.open_operation("upgrade")
        await s.recovery.run()
        assert await outcome(s) == ("interrupted", "the bot stopped while this ran, before it "
                                                   "changed anything; running now is 1.0.0, "
                                                   "converged and healthy")
        assert env.read_text() == before
    finally:
        await db.close()
