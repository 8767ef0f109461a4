"""The pipeline's stages one by one: a real parser, registry, role resolver, room directory,
executor and SQLite store (handled events, audit log, status messages); only the room side is
the in-memory FakeRoom (tests/fakes.py, held to the real adapter's contract), and the approval
gate a small function. The whole-bot tests run the same paths on a real homeserver."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from coopbot.config import Config
from coopbot.errors import CoopbotError, UserError
from coopbot.execution import CommandAudit, Executor
from coopbot.ids import EventID, RoomID, UserID
from coopbot.invocation import Invocation
from coopbot.messages import IncomingMessage
from coopbot.observe import CommandHandled, Event, Observers
from coopbot.operation_kinds import OperationKind
from coopbot.operations.plan import PlannedChange
from coopbot.parser import CommandParser
from coopbot.pipeline import Pipeline, PipelineSettings
from coopbot.registry import Arg, CommandRegistry, CommandSpec, Operation
from coopbot.replies import Reply
from coopbot.roles import RoleResolver
from coopbot.rooms import RoomDirectory
from coopbot.status_message import CommandStatuses
from coopbot.store.audit import AuditLog, AuditRow
from coopbot.store.database import Database
from coopbot.store.handled import HandledEvents
from coopbot.store.status_messages import StatusMessages
from tests.fakes import FakeRoom

BOT = UserID("@bot:example.org")
ROOM = RoomID("!ops:example.org")
ELSEWHERE = RoomID("!elsewhere:example.org")
ALICE = UserID("@alice:example.org")  # operator (power 50)
CAROL = UserID("@carol:example.org")  # member (power 0)
ADMIN = UserID("@admin:example.org")  # bot admin (config `admins`)


@dataclass
class Bench:
    pipeline: Pipeline
    room: FakeRoom
    database: Database
    audit: AuditLog
    statuses: StatusMessages
    handled: list[str]  # the commands whose handler ran, in order
    gate_calls: list[Invocation]
    gate: list[Callable[[Invocation], Awaitable[bool]]]  # what the gate does next
    observed: list[Event] = field(default_factory=list)
    events: int = 0

    def message(self, body: str, *, sender: UserID = ALICE, room: RoomID = ROOM,
                msgtype: str = "m.text", is_edit: bool = False,
                during_downtime: bool = False, event_id: str | None = None) -> IncomingMessage:
        self.events += 1
        now = time.time()
        return IncomingMessage(
            room_id=room, event_id=EventID(event_id or f"$cmd{self.events}"), sender=sender,
            body=body, msgtype=msgtype, timestamp_ms=int(now * 1000), received_at=now,
            is_edit=is_edit, during_downtime=during_downtime)

    async def send(self, body: str, *, sender: UserID = ALICE, room: RoomID = ROOM,
                   during_downtime: bool = False) -> IncomingMessage:
        message = self.message(body, sender=sender, room=room, during_downtime=during_downtime)
        await self.pipeline.handle(message)
        return message

    def answer(self, message: IncomingMessage) -> str:
        """The one answer to `message` (its status message, which is always edited, aside)."""
        (answer,) = [m for m in self.room.replies_to(message.event_id) if not m.edits]
        assert answer.thread_root == message.event_id, "answers go in the command's thread"
        return answer.text

    async def rows(self, message: IncomingMessage) -> list[tuple[str, str]]:
        return [(row.decision, row.result) for row in await self.audit.for_event(message.event_id)]

    async def all_rows(self) -> list[AuditRow]:
        return await self.audit.recent(limit=100)


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    config = Config.model_validate({
        "matrix": {"homeserver": "http://x", "user_id": BOT, "password": "p"},
        "database": tmp_path / "bot.db",
        "admins": [ADMIN],
        "rooms": {ROOM: {}},
    })
    async with Database(config.database) as database:
        handled: list[str] = []
        gate_calls: list[Invocation] = []
        gate: list[Callable[[Invocation], Awaitable[bool]]] = []

        async def ping(inv: Invocation) -> Reply:
            handled.append("ping")
            return Reply.of("pong")

        async def deploy(inv: Invocation) -> Reply:
            handled.append("deploy")
            await inv.progress(Reply.of(f"⏳ deploying `{inv.args['app']}`..."))
            await inv.progress(Reply.of(f"⏳ deploying `{inv.args['app']}`: converging..."))
            return Reply.of(f"`{inv.args['app']}` deployed")

        async def refuse(inv: Invocation) -> Reply:
            handled.append("refuse")
            raise UserError("`blog` already runs 1.0.0.")

        async def fail(inv: Invocation) -> Reply:
            handled.append("fail")
            await inv.progress(Reply.of("⏳ trying..."))
            raise CoopbotError("server prod is unreachable",
                               detail="ssh: connect to 10.0.0.7 port 22: timed out")

        async def crash(inv: Invocation) -> Reply:
            handled.append("crash")
            raise KeyError("/srv/secret/path")

        async def plan(inv: Invocation) -> PlannedChange:
            raise AssertionError("the pipeline never plans: the gate does")

        registry = CommandRegistry()
        registry.register(CommandSpec("ping", "ping", "member", ping))
        registry.register(CommandSpec("deploy", "deploy", "operator", deploy,
                                      args=(Arg("app"),),
                                      operation=Operation(OperationKind.DEPLOY, plan)))
        registry.register(CommandSpec("refuse", "refuse", "member", refuse))
        registry.register(CommandSpec("fail", "fail", "member", fail))
        registry.register(CommandSpec("crash", "crash", "member", crash))

        room = FakeRoom(levels={ALICE: 50, CAROL: 0})
        audit = AuditLog(database)
        observers = Observers()
        statuses = StatusMessages(database)
        command_audit = CommandAudit(audit, observers)

        async def approval(inv: Invocation) -> bool:
            gate_calls.append(inv)
            return await gate.pop(0)(inv) if gate else True

        pipeline = Pipeline(
            settings=PipelineSettings(bot_user_id=BOT, prefix="!"),
            parser=CommandParser("!", BOT), registry=registry,
            rooms=RoomDirectory(config.rooms), roles=RoleResolver(config), power=room,
            handled=HandledEvents(database), audit=command_audit,
            executor=Executor(responder=room, audit=command_audit),
            statuses=CommandStatuses(room, statuses), approval=approval,
        )
        bench = Bench(pipeline, room, database, audit, statuses, handled, gate_calls, gate)

        async def observe(event: Event) -> None:
            bench.observed.append(event)

        observers.subscribe(observe)
        yield bench


async def test_a_command_is_answered_in_its_thread_and_audited(bench: Bench) -> None:
    message = await bench.send("!ping")
    assert bench.answer(message) == "pong"
    assert [(d, re.sub(r"\(.*\)", "(t)", r)) for d, r in await bench.rows(message)] == [
        ("ran", ""), ("result", "ok (t)")]
    row = (await bench.all_rows())[0]
    assert (row.room_id, row.sender, row.command) == (ROOM, ALICE, "ping")
    assert [e for e in bench.observed if isinstance(e, CommandHandled)] == [
        CommandHandled("ping", "ran", ROOM), CommandHandled("ping", "result", ROOM)]
    assert bench.room.typing_calls == [], "no typing indicator for a command that only reads"


@pytest.mark.parametrize("kind", ["edit", "notice", "own message", "not a command"])
async def test_edits_notices_own_messages_and_chatter_are_never_commands(
    bench: Bench, kind: str,
) -> None:
    message = {
        "edit": bench.message("!ping", is_edit=True),
        "notice": bench.message("!ping", msgtype="m.notice"),
        "own message": bench.message("!ping", sender=BOT),
        "not a command": bench.message("ping, anyone?"),
    }[kind]
    await bench.pipeline.handle(message)
    assert bench.room.sent == [] and bench.handled == []
    assert await bench.all_rows() == []
    # Not claimed either: nothing of it was handled.
    assert await HandledEvents(bench.database).claim(message.event_id, message.room_id)


async def test_a_redelivered_event_runs_once(bench: Bench) -> None:
    message = bench.message("!ping", event_id="$same")
    await bench.pipeline.handle(message)
    await bench.pipeline.handle(message)
    assert bench.handled == ["ping"]
    assert len(bench.room.replies_to(message.event_id)) == 1
    assert [d for d, _ in await bench.rows(message)] == ["ran", "result"]


async def test_an_unconfigured_room_gets_no_answer_but_the_attempt_is_audited(
    bench: Bench,
) -> None:
    message = await bench.send("!ping", room=ELSEWHERE)
    assert bench.room.sent == [] and bench.handled == []
    assert await bench.rows(message) == [("ignored", "room not configured")]
    # A bot admin is answered anywhere.
    admin = await bench.send("!ping", room=ELSEWHERE, sender=ADMIN)
    assert bench.answer(admin) == "pong"


async def test_a_command_sent_while_the_bot_was_offline_is_answered_as_expired(
    bench: Bench,
) -> None:
    message = await bench.send("!deploy blog", during_downtime=True)
    assert bench.handled == [] and bench.gate_calls == []
    assert bench.answer(message) == (
        "I was offline when you sent `deploy blog`, so I did not run it. Please send it again "
        "if it is still wanted.")
    assert await bench.rows(message) == [("expired", "sent while the bot was offline")]


async def test_an_unknown_command_gets_a_suggestion(bench: Bench) -> None:
    message = await bench.send("!pnig")
    assert bench.answer(message) == "Unknown command `pnig`. Did you mean `ping`? Try `!help`."
    assert await bench.rows(message) == [("invalid", bench.answer(message))]
    nothing_close = await bench.send("!xyzzy")
    assert bench.answer(nothing_close) == "Unknown command `xyzzy`. Try `!help`."


async def test_roles_are_checked_before_arguments(bench: Bench) -> None:
    # Carol may not deploy: she learns that, not the command's usage (bad arguments or none).
    for body in ("!deploy", "!deploy blog extra words"):
        message = await bench.send(body, sender=CAROL)
        assert bench.answer(message) == "`deploy` needs the operator role in this room."
        assert await bench.rows(message) == [("denied", bench.answer(message))]
    assert bench.handled == [] and bench.gate_calls == []


async def test_a_usage_error_shows_the_usage(bench: Bench) -> None:
    message = await bench.send("!deploy")
    assert bench.answer(message) == "`deploy` needs <app>.\nUsage: !deploy <app>"
    extra = await bench.send("!ping now")
    assert bench.answer(extra) == "`ping` got unexpected words: `now`\nUsage: !ping"
    assert [d for d, _ in await bench.rows(extra)] == ["invalid"]
    assert bench.handled == [] and bench.gate_calls == []


async def test_an_operation_parked_by_the_gate_waits_for_votes(bench: Bench) -> None:
    async def park(inv: Invocation) -> bool:
        return False

    bench.gate.append(park)
    message = await bench.send("!deploy blog")
    (asked,) = bench.gate_calls
    assert (asked.spec.name, asked.args, asked.sender) == ("deploy", {"app": "blog"}, ALICE)
    assert asked.grant.has("operator") and asked.reply_to == message.target
    assert bench.handled == [] and bench.room.sent == []  # the gate posts its own card
    assert await bench.rows(message) == [("ran", "waiting for approval")]


async def test_an_operation_the_gate_lets_through_runs_with_typing_and_a_status_message(
    bench: Bench,
) -> None:
    message = await bench.send("!deploy blog")
    assert len(bench.gate_calls) == 1 and bench.handled == ["deploy"]
    assert bench.answer(message) == "`blog` deployed"
    # The status message: posted in the thread, edited in place, closed after the answer.
    (status,) = [m for m in bench.room.replies_to(message.event_id) if m.edits]
    assert status.thread_root == message.event_id
    assert status.edits[0] == "⏳ deploying `blog`: converging..."
    assert re.fullmatch(r"✅ done after \d+ s; the answer follows\.", status.text)
    assert [kind for kind, _ in bench.room.log] == ["reply", "edit", "reply", "edit"]
    assert bench.room.log[2] == ("reply", "`blog` deployed"), "the answer comes before the close"
    remembered = await bench.statuses.get(message.event_id)
    assert remembered is not None and remembered.status_event_id == status.event_id
    assert bench.room.typing_calls[0] == (ROOM, True)
    assert bench.room.typing_calls[-1] == (ROOM, False)
    assert [d for d, _ in await bench.rows(message)] == ["ran", "result"]


async def test_a_gate_that_refuses_answers_its_reason(bench: Bench) -> None:
    async def refuse(inv: Invocation) -> bool:
        raise UserError("No policy lets `deploy` run here.")

    bench.gate.append(refuse)
    message = await bench.send("!deploy blog")
    assert bench.answer(message) == "No policy lets `deploy` run here."
    assert bench.handled == []
    assert await bench.rows(message) == [("invalid", "No policy lets `deploy` run here.")]


async def test_a_refusal_is_answered_as_it_is(bench: Bench) -> None:
    message = await bench.send("!refuse")
    assert bench.answer(message) == "`blog` already runs 1.0.0."
    assert (await bench.rows(message))[-1][1].startswith(
        "refused: `blog` already runs 1.0.0. (")


async def test_a_failure_says_what_failed_and_keeps_the_detail_in_the_log(
    bench: Bench, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        message = await bench.send("!fail")
    assert bench.answer(message) == "`fail` failed: server prod is unreachable"
    assert "10.0.0.7" not in " ".join(bench.room.texts())
    assert "10.0.0.7" in caplog.text
    (status,) = [m for m in bench.room.replies_to(message.event_id) if m.edits]
    assert re.fullmatch(r"❌ failed after \d+ s; the answer follows\.", status.text)
    assert (await bench.rows(message))[-1][1].startswith(
        "failed: server prod is unreachable (")


async def test_an_unexpected_error_is_an_internal_error_with_a_reference(
    bench: Bench, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR):
        message = await bench.send("!crash")
    answer = bench.answer(message)
    match = re.fullmatch(r"`crash` hit an internal error; the details are in the bot's log "
                         r"\(reference ([0-9a-f]{8})\)\.", answer)
    assert match is not None, answer
    assert "/srv/secret" not in answer
    assert f"reference {match[1]}" in caplog.text and "/srv/secret/path" in caplog.text
    assert (await bench.rows(message))[-1][1].startswith(f"crashed (reference {match[1]})")


async def test_a_lost_answer_is_still_recorded_and_never_escapes(bench: Bench) -> None:
    bench.room.fail_replies = True
    message = await bench.send("!ping")
    assert bench.handled == ["ping"] and bench.room.sent == []
    assert [d for d, _ in await bench.rows(message)] == ["ran", "result"]
    # Handled once and for all: a redelivery does not run it again.
    bench.room.fail_replies = False
    await bench.pipeline.handle(message)
    assert bench.handled == ["ping"]
