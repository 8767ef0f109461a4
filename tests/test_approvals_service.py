"""The approvals service on a real SQLite store: expiry decided when a vote arrives, and every
way out of `running` (done, a raising executor, a failing card edit, a crash before start-up)
ends closed with its audit row. Only the Matrix side (cards, power levels) is a recording fake;
the whole-bot tests in test_bot_approvals.py run the same paths on a real homeserver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from coopbot.approvals.electorate import Voters
from coopbot.approvals.policy import PolicyResolver
from coopbot.approvals.service import Approvals
from coopbot.config import Config, RoomConfig
from coopbot.errors import MatrixError, UserError
from coopbot.execution import Executed
from coopbot.ids import EventID, RoomID, UserID
from coopbot.invocation import Invocation, LoggedProgress
from coopbot.messages import IncomingReaction, ReplyTarget
from coopbot.operation_kinds import OperationKind
from coopbot.operations.plan import Binding, PlanChanged, PlannedChange
from coopbot.registry import Arg, CommandRegistry, CommandSpec, Operation, Planner
from coopbot.replies import Reply
from coopbot.roles import PowerInfo, RoleResolver
from coopbot.rooms import RoomDirectory
from coopbot.status_message import CommandStatuses
from coopbot.store.approvals import ApprovalStore, RequestState
from coopbot.store.audit import AuditLog
from coopbot.store.database import Database
from coopbot.store.operations import OperationStore
from coopbot.tasks import TaskGroup

ROOM = RoomID("!ops:example.org")
BOB, CAROL, DAVE = UserID("@bob:example.org"), UserID("@carol:example.org"), UserID(
    "@dave:example.org")
APP = "blog.example.org"
ROOM_CONFIG = RoomConfig()
APPROVED = Binding(kind="deploy", app=APP, server="local", to_version="1.0.0", commit="abc")


@dataclass
class Cards:
    """The Matrix side approvals talk to: posts and edits are recorded (or fail on demand)."""

    texts: dict[str, str] = field(default_factory=dict)
    sent: list[tuple[ReplyTarget, Reply]] = field(default_factory=list)  # every reply posted
    fail_edits: bool = False
    levels: dict[str, int] = field(default_factory=lambda: {BOB: 50, CAROL: 50, DAVE: 50})

    async def reply(self, to: ReplyTarget, reply: Reply, *, key: str) -> EventID:
        event_id = EventID(f"$card{len(self.texts)}")
        self.texts[event_id] = reply.text
        self.sent.append((to, reply))
        return event_id

    async def edit(self, room_id: RoomID, event_id: EventID, reply: Reply) -> None:
        if self.fail_edits:
            raise MatrixError("could not send to the room", detail="HTTP 502")
        self.texts[event_id] = reply.text

    async def reactions_to(self, room_id: RoomID, event_id: EventID) -> list[IncomingReaction]:
        return []

    async def power_info(self, room_id: RoomID) -> PowerInfo:
        return PowerInfo(users=self.levels)


@dataclass
class Bench:
    approvals: Approvals
    store: ApprovalStore
    audit: AuditLog
    cards: Cards
    tasks: TaskGroup
    runs: list[Invocation]
    executor: list[Callable[[], Awaitable[Executed]]]  # what the next execution does
    database: Database
    registry: CommandRegistry
    roles: RoleResolver
    planners: dict[str, Planner]  # what the deploy command's planner does

    def invocation(self, command: str, args: dict[str, str], sender: UserID,
                   event_id: str) -> Invocation:
        spec = self.registry.lookup(command)
        grant = self.roles.resolve(
            sender, ROOM_CONFIG, PowerInfo(users={BOB: 50, CAROL: 50, DAVE: 50}))

        return Invocation(
            room_id=ROOM, event_id=EventID(event_id), sender=sender, spec=spec, args=args,
            grant=grant, room=ROOM_CONFIG, event_timestamp_ms=int(time.time() * 1000),
            received_at=time.time(), progress=LoggedProgress("test"))

    async def open_request(self) -> tuple[int, str]:
        inv = self.invocation("deploy", {"app": APP}, BOB, "$deploy")
        assert await self.approvals.gate(inv) is False
        (request,) = await self.store.open_requests()
        assert request.card_event_id is not None
        return request.id, request.card_event_id

    async def approve(self, voter: UserID, request_id: int, event_id: str) -> Reply:
        inv = self.invocation("approve", {"id": str(request_id)}, voter, event_id)
        return await self.approvals.vote_command(inv, True)

    async def state(self, request_id: int) -> str:
        request = await self.store.get(request_id)
        assert request is not None
        return request.state

    async def closing_audit(self, request_id: int) -> list[str]:
        return [row.result for row in await self.audit.recent(limit=100)
                if row.command == f"request #{request_id}" and not row.result.startswith("opened")]

    async def age(self, request_id: int, seconds: float) -> None:
        """Move the request's expiry into the past (as if `seconds` had gone by)."""
        await self.database.conn.execute(
            "UPDATE approval_requests SET expires_at = expires_at - ? WHERE id = ?",
            (seconds, request_id))


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    async with make_bench(tmp_path) as made:
        yield made


@asynccontextmanager
async def make_bench(tmp_path: Path, policy: dict[str, object] | None = None,
                     **config_keys: object) -> AsyncIterator[Bench]:
    """A bench whose deploy policy and config keys (organisations, say) the test chooses."""
    config = Config.model_validate({
        "matrix": {"homeserver": "http://x", "user_id": "@bot:example.org", "password": "p"},
        "database": tmp_path / "bot.db",
        "policies": {"deploy": policy or {"approvals": 2, "approver_role": "operator",
                                          "expires": "1h"}},
        "rooms": {ROOM: {}},
        **config_keys,
    })
    async with Database(config.database) as database:
        registry = CommandRegistry()
        runs: list[Invocation] = []
        executor: list[Callable[[], Awaitable[Executed]]] = []

        async def handler(inv: Invocation) -> Reply:
            return Reply.of("unused")

        async def plan_deploy(inv: Invocation) -> PlannedChange:
            return await planners["deploy"](inv)

        registry.register(CommandSpec("deploy", "deploy", "operator", handler,
                                      args=(Arg("app"),),
                                      operation=Operation(OperationKind.DEPLOY, plan_deploy)))
        registry.register(CommandSpec("approve", "approve", "member", handler,
                                      args=(Arg("id"),)))

        async def plan(inv: Invocation) -> PlannedChange:
            return PlannedChange(binding=APPROVED, lines=[f"deploy `{APP}` on local"], app=APP)

        async def execute(inv: Invocation) -> Executed:
            runs.append(inv)
            return await executor.pop(0)() if executor else Executed(ok=True)

        cards = Cards()
        tasks = TaskGroup()
        store = ApprovalStore(database)
        audit = AuditLog(database)
        roles = RoleResolver(config)
        planners: dict[str, Planner] = {"deploy": plan}
        approvals = Approvals(
            store=store, policies=PolicyResolver(config), roles=roles,
            power=cards, rooms=RoomDirectory(config.rooms), registry=registry,
            operations=OperationStore(database), audit=audit, poster=cards,
            execute=execute, statuses=CommandStatuses(cards), tasks=tasks,
            bot_user_id="@bot:example.org", voters=Voters.of(config))
        yield Bench(approvals, store, audit, cards, tasks, runs, executor, database, registry,
                    roles, planners)
        await tasks.drain(timeout=5)


async def test_a_quorum_reached_in_time_runs_once(bench: Bench) -> None:
    request_id, card = await bench.open_request()
    await bench.approve(CAROL, request_id, "$v1")
    await bench.approve(DAVE, request_id, "$v2")
    await bench.tasks.drain(timeout=5)
    assert len(bench.runs) == 1 and await bench.state(request_id) == RequestState.DONE
    assert f"approved by {CAROL}, {DAVE}: done" in bench.cards.texts[card]
    assert await bench.closing_audit(request_id) == [f"done: {CAROL}, {DAVE}"]


async def test_a_vote_after_the_expiry_expires_the_request_and_never_runs_it(
    bench: Bench,
) -> None:
    request_id, card = await bench.open_request()
    await bench.approve(CAROL, request_id, "$v1")
    await bench.age(request_id, 3601)  # the timer never ran (it had died, say)
    # The vote that would complete the quorum arrives after the expiry, as a reaction.
    await bench.approvals.reaction(IncomingReaction(ROOM, EventID("$r1"), DAVE, EventID(card),
                                                    "👍"))
    await bench.tasks.drain(timeout=5)
    assert bench.runs == [], "an expired request ran"
    assert await bench.state(request_id) == RequestState.EXPIRED
    assert "expired without enough votes" in bench.cards.texts[card]
    assert "Vote: react" not in bench.cards.texts[card]
    assert await bench.closing_audit(request_id) == ["expired: "]
    with pytest.raises(UserError, match=rf"Request #{request_id} expired at .*: votes are closed"):
        await bench.approve(DAVE, request_id, "$v3")


async def test_an_approve_command_after_the_expiry_is_refused_and_expires_it(
    bench: Bench,
) -> None:
    request_id, card = await bench.open_request()
    await bench.approve(CAROL, request_id, "$v1")
    await bench.age(request_id, 3601)
    with pytest.raises(UserError, match="votes are closed; ask again if it is still wanted"):
        await bench.approve(DAVE, request_id, "$v2")
    await bench.tasks.drain(timeout=5)
    assert bench.runs == [] and await bench.state(request_id) == RequestState.EXPIRED
    assert "expired without enough votes" in bench.cards.texts[card]
    # The timer finds nothing left to do, and does not audit twice.
    assert await bench.approvals.expire_due() == 0
    assert await bench.closing_audit(request_id) == ["expired: "]


async def test_the_timer_expires_a_request_at_its_time(bench: Bench) -> None:
    request_id, card = await bench.open_request()
    assert await bench.approvals.expire_due() == 0
    await bench.age(request_id, 3601)
    assert await bench.approvals.expire_due() == 1
    assert await bench.state(request_id) == RequestState.EXPIRED
    assert "expired without enough votes" in bench.cards.texts[card]


async def test_an_executor_that_raises_leaves_the_request_interrupted_not_running(
    bench: Bench,
) -> None:
    async def answer_cannot_be_sent() -> Executed:
        raise MatrixError("could not send the answer", detail="HTTP 502 from the homeserver")

    bench.executor.append(answer_cannot_be_sent)
    request_id, card = await bench.open_request()
    await bench.approve(CAROL, request_id, "$v1")
    await bench.approve(DAVE, request_id, "$v2")
    await bench.tasks.drain(timeout=5)
    assert len(bench.runs) == 1
    assert await bench.state(request_id) == RequestState.INTERRUPTED
    assert "interrupted: coopbot stopped before it recorded the outcome" in bench.cards.texts[card]
    assert "HTTP 502" not in bench.cards.texts[card]  # details go to the log only
    assert await bench.closing_audit(request_id) == [
        "interrupted: its outcome could not be reported"]


async def test_a_card_that_cannot_be_edited_does_not_keep_the_request_running(
    bench: Bench,
) -> None:
    request_id, _ = await bench.open_request()
    await bench.approve(CAROL, request_id, "$v1")
    bench.cards.fail_edits = True
    await bench.approve(DAVE, request_id, "$v2")
    await bench.tasks.drain(timeout=5)
    assert len(bench.runs) == 1 and await bench.state(request_id) == RequestState.DONE
    assert await bench.closing_audit(request_id) == [f"done: {CAROL}, {DAVE}"]


async def test_a_plan_changed_under_the_lock_voids_the_request_and_asks_again(
    bench: Bench,
) -> None:
    """Approvals never plan a second time: the operation finds the change under its lock, and
    the fresh plan it carries becomes a new request."""
    request_id, card = await bench.open_request()
    fresh = PlannedChange(binding=Binding(kind="deploy", app=APP, server="local",
                                          to_version="1.1.0", commit="def"),
                          lines=[f"deploy `{APP}` on local: 1.1.0"], app=APP)

    async def tag_moved() -> Executed:
        return Executed(ok=False, plan_changed=PlanChanged(APPROVED, fresh))

    bench.executor.append(tag_moved)
    await bench.approve(CAROL, request_id, "$v1")
    await bench.approve(DAVE, request_id, "$v2")
    await bench.tasks.drain(timeout=5)
    assert len(bench.runs) == 1 and bench.runs[0].expected_binding == APPROVED
    assert await bench.state(request_id) == RequestState.VOID
    assert "void: The plan changed since it was approved (target version, recipe commit " \
           "changed)" in bench.cards.texts[card]
    (replacement,) = await bench.store.open_requests()
    assert Binding.parse(replacement.binding) == fresh.binding
    assert replacement.plan_text == f"deploy `{APP}` on local: 1.1.0"
    assert replacement.card_event_id is not None
    assert f"replaces request #{request_id}" in bench.cards.texts[replacement.card_event_id]


async def test_a_requester_who_lost_the_role_fails_the_request_without_running_it(
    bench: Bench,
) -> None:
    request_id, card = await bench.open_request()
    bench.cards.levels = {CAROL: 50, DAVE: 50}  # bob is no longer an operator
    await bench.approve(CAROL, request_id, "$v1")
    await bench.approve(DAVE, request_id, "$v2")
    await bench.tasks.drain(timeout=5)
    assert bench.runs == [] and await bench.state(request_id) == RequestState.FAILED
    assert "could not run: `deploy` needs the operator role" in bench.cards.texts[card]


async def test_requests_left_running_are_interrupted_at_start_up_but_not_our_own(
    bench: Bench,
) -> None:
    # A request an earlier run left running (it crashed mid-operation).
    left_id, left_card = await bench.open_request()
    assert await bench.store.transition(left_id, RequestState.OPEN, RequestState.RUNNING)
    # A request this process is running right now.
    await bench.database.conn.execute("UPDATE approval_requests SET command = 'deploy', "
                                      "app = 'other' WHERE id = ?", (left_id,))
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> Executed:
        started.set()
        await release.wait()
        return Executed(ok=True)

    bench.executor.append(slow)
    own_id, _ = await bench.open_request()
    await bench.approve(CAROL, own_id, "$v1")
    await bench.approve(DAVE, own_id, "$v2")
    await asyncio.wait_for(started.wait(), 5)

    assert await bench.approvals.resolve_interrupted() == 1
    assert await bench.state(left_id) == RequestState.INTERRUPTED
    assert await bench.state(own_id) == RequestState.RUNNING
    assert "interrupted: coopbot stopped before it recorded the outcome" in (
        bench.cards.texts[left_card])
    assert "`!ps other`" in bench.cards.texts[left_card]
    assert await bench.closing_audit(left_id) == [
        "interrupted: coopbot stopped before it recorded the outcome"]
    release.set()
    await bench.tasks.drain(timeout=5)
    assert await bench.state(own_id) == RequestState.DONE
    assert await bench.approvals.resolve_interrupted() == 0
