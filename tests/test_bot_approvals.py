"""Collective approval end to end: five real members of different power vote on real cards in a
real room; approved plans run on the real swarm exactly once."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nio import RoomMessage

from coopbot.app import Bot
from coopbot.config import load_config
from coopbot.store.approvals import ApprovalStore, RequestState
from coopbot.store.database import Database
from tests.harness.apps import app_env, create_secret, stack_of, unique_domain
from tests.harness.bot import RunningBot, StartBot, ask_bot
from tests.harness.recipes import AbraDir
from tests.harness.swarm import AppImages, Dockerd, remove_stack
from tests.harness.synapse import MakeMember, Member

pytestmark = pytest.mark.real

OPERATION_TIMEOUT = 150.0


@dataclass
class VoteRoom:
    bot: RunningBot
    room: str
    alice: Member  # creator, admin
    bob: Member  # operator: the requester in most tests
    carol: Member  # operator
    dave: Member  # operator
    eve: Member  # member only (power 0)
    abra: AbraDir

    async def command(self, member: Member, body: str, *, final: bool = True,
                      timeout: float = 30.0) -> str:
        """Send a command and return the bot's first answer (or its first non-status one)."""
        return await ask_bot(member, self.room, self.bot.user_id, body, final=final,
                             timeout=timeout)

    async def request(self, member: Member, body: str) -> tuple[int, str]:
        """Send a command that needs approval; return (request id, card event id)."""
        event_id = await member.send(self.room, body)

        def is_card(event: RoomMessage) -> bool:
            content = event.source.get("content", {})
            return (str(content.get("body", "")).startswith("Request #")
                    and content.get("m.relates_to", {}).get("m.in_reply_to", {})
                    .get("event_id") == event_id)

        card = await member.wait_for_message(self.room, sender=self.bot.user_id,
                                             predicate=is_card, after_event_id=event_id)
        match = re.match(r"Request #(\d+):", card.source["content"]["body"])
        assert match is not None
        return int(match.group(1)), card.event_id

    async def card_says(self, member: Member, card_id: str, text: str,
                        timeout: float = OPERATION_TIMEOUT) -> str:
        """Wait until the card (as last edited) contains `text`; return its body."""
        def latest() -> str:
            body = ""
            for event in member.timeline(self.room):
                content = event.source.get("content", {})
                if event.event_id == card_id:
                    body = str(content.get("body", ""))
                relates = content.get("m.relates_to", {})
                if relates.get("rel_type") == "m.replace" and relates.get("event_id") == card_id:
                    body = str(content.get("m.new_content", {}).get("body", ""))
            return body

        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            body = latest()
            if text in body:
                return body
            await asyncio.sleep(0.2)
        raise AssertionError(f"card never said {text!r}; it says:\n{latest()}")

    async def result_in_thread(self, member: Member, command_event: str, text: str) -> str:
        def matches(event: RoomMessage) -> bool:
            content = event.source.get("content", {})
            return (content.get("m.relates_to", {}).get("event_id") == command_event
                    and text in str(content.get("body", "")))

        reply = await member.wait_for_message(self.room, sender=self.bot.user_id,
                                              predicate=matches, timeout=OPERATION_TIMEOUT)
        return str(reply.source["content"]["body"])


@pytest.fixture
async def vote_room(
    make_member: MakeMember, start_bot: StartBot, abra_dir: AbraDir, tmp_path: Path,
    dockerd: Dockerd, test_images: AppImages, testapp_recipe: Path,
    request: pytest.FixtureRequest,
) -> VoteRoom:
    tag = uuid.uuid4().hex[:6]
    members = [await make_member(f"{name}-{tag}")
               for name in ("alice", "bob", "carol", "dave", "eve")]
    alice, bob, carol, dave, eve = members
    room = await alice.create_room(
        invite=[m.user_id for m in members[1:]],
        power_levels={bob.user_id: 50, carol.user_id: 50, dave.user_id: 50},
    )
    for member in members[1:]:
        await member.join(room)
    marker = request.node.get_closest_marker("policy")
    policy: dict[str, Any] = {"approvals": 2, "approver_role": "operator", "expires": "1h"}
    if marker is not None:
        policy.update(marker.kwargs)
    bot = await start_bot(
        rooms={room: {"servers": ["local"]}},
        servers={"local": {"kind": "local", "socket": dockerd.socket}},
        apps_dir=str(abra_dir.path),
        recipes={"overrides": {"testapp": str(testapp_recipe)},
                 "cache": str(tmp_path / "recipe-cache")},
        policies={"deploy": policy, "undeploy": policy},
    )
    await alice.invite(room, bot.user_id)
    await alice.wait_joined(room, bot.user_id)
    return VoteRoom(bot, room, alice, bob, carol, dave, eve, abra_dir)


@pytest.fixture
def new_app(vote_room: VoteRoom) -> Any:
    domains: list[str] = []

    def make(secret: bool = True) -> str:
        domain = unique_domain()
        domains.append(domain)
        if secret:
            create_secret(domain)
        app_env(vote_room.abra, "local", domain)
        return domain

    yield make
    for domain in domains:
        remove_stack(stack_of(domain))


async def test_quorum_by_reactions_runs_the_plan_once(vote_room: VoteRoom, new_app: Any) -> None:
    v = vote_room
    domain = new_app()
    command = await v.bob.send(v.room, f"!deploy {domain} 1.0.0+v1")
    card_id = (await v.bob.wait_for_message(
        v.room, sender=v.bot.user_id, after_event_id=command,
        predicate=lambda e: str(e.source["content"]["body"]).startswith("Request #"))).event_id
    card = await v.card_says(v.bob, card_id, "Status: open")
    assert f"deploy `{domain}` on local: not deployed -> 1.0.0+v1" in card
    assert "recipe commit" in card and "images: app: `coopbot-test/app:v1`" in card
    assert "Needs 2 approval(s) from operator" in card and "Expires" in card

    await v.carol.react(v.room, card_id, "👍")
    await v.card_says(v.bob, card_id, "Votes: 1 of 2")
    await v.dave.react(v.room, card_id, "👍")
    card = await v.card_says(v.bob, card_id, ": done")
    assert f"approved by {v.carol.user_id}, {v.dave.user_id}" in card

    result = await v.result_in_thread(v.bob, command, "converged and healthy")
    assert f"`{domain}` deployed: 1.0.0+v1 on local" in result
    assert v.bot.bot is not None
    history = await v.bot.bot.operations.history(domain)
    assert len(history) == 1 and history[0].result == "ok"
    assert set(history[0].approvers.split(",")) == {v.carol.user_id, v.dave.user_id}

    # More votes after the run change nothing: it never runs twice.
    await v.eve.react(v.room, card_id, "👍")
    await v.alice.react(v.room, card_id, "👍")
    await asyncio.sleep(2)
    assert len(await v.bot.bot.operations.history(domain)) == 1

    audit = await v.command(v.alice, f"!audit {domain}")
    assert "vote on #" in audit and v.carol.user_id in audit and "operation" in audit


async def test_mixed_votes_self_vote_and_low_power(vote_room: VoteRoom, new_app: Any) -> None:
    v = vote_room
    domain = new_app()
    request_id, card_id = await v.request(v.bob, f"!deploy {domain} 1.0.0+v1")
    await v.bob.react(v.room, card_id, "👍")  # the requester's own vote
    card = await v.card_says(v.bob, card_id, "requester's own vote does not count).")
    assert "Votes: 0 of 2" in card
    await v.eve.react(v.room, card_id, "👍")  # no operator role
    card = await v.card_says(v.bob, card_id, f"Not counted: {v.eve.user_id} (lacks the operator role).")
    assert "Votes: 0 of 2" in card
    answer = await v.command(v.carol, f"!approve {request_id}")
    assert answer.startswith(f"Your 👍 on request #{request_id} is recorded")
    await v.card_says(v.bob, card_id, "Votes: 1 of 2")
    await v.dave.react(v.room, card_id, "👍")
    await v.card_says(v.bob, card_id, ": done")


async def test_power_lowered_after_voting_and_redaction_retract(
    vote_room: VoteRoom, new_app: Any
) -> None:
    v = vote_room
    domain = new_app()
    _, card_id = await v.request(v.bob, f"!deploy {domain} 1.0.0+v1")
    await v.carol.react(v.room, card_id, "👍")
    await v.card_says(v.bob, card_id, "Votes: 1 of 2")
    # carol loses the operator role: her vote stops counting at the next tally
    await v.alice.set_power_level(v.room, v.carol.user_id, 0)
    dave_vote = await v.dave.react(v.room, card_id, "👍")
    card = await v.card_says(v.bob, card_id, f"Not counted: {v.carol.user_id} (lacks the operator role).")
    assert "Votes: 1 of 2" in card
    # dave redacts his reaction: his vote is retracted
    await v.dave.redact(v.room, dave_vote)
    card = await v.card_says(v.bob, card_id, "Votes: 0 of 2")
    assert "Status: open" in card


async def test_veto_denies(vote_room: VoteRoom, new_app: Any) -> None:
    v = vote_room
    domain = new_app()
    request_id, card_id = await v.request(v.bob, f"!deploy {domain} 1.0.0+v1")
    await v.carol.react(v.room, card_id, "👍")
    await v.command(v.dave, f'!deny {request_id} "not during the AGM"')
    card = await v.card_says(v.bob, card_id, f"denied by {v.dave.user_id}")
    assert "not during the AGM" in card
    answer = await v.command(v.carol, f"!approve {request_id}")
    assert answer == f"Request #{request_id} is denied: votes are closed."


@pytest.mark.policy(expires="3s")
async def test_expiry(vote_room: VoteRoom, new_app: Any) -> None:
    v = vote_room
    domain = new_app()
    _, card_id = await v.request(v.bob, f"!deploy {domain} 1.0.0+v1")
    card = await v.card_says(v.bob, card_id, "expired without enough votes", timeout=20)
    assert "Vote: react" not in card


async def test_cancel_by_requester_only(vote_room: VoteRoom, new_app: Any) -> None:
    v = vote_room
    domain = new_app()
    request_id, card_id = await v.request(v.bob, f"!deploy {domain} 1.0.0+v1")
    refused = await v.command(v.carol, f"!cancel {request_id}")
    assert refused == f"Only {v.bob.user_id} or an admin can cancel request #{request_id}."
    assert await v.command(v.bob, f"!cancel {request_id}") == f"Request #{request_id} is cancelled."
    await v.card_says(v.bob, card_id, f"cancelled by {v.bob.user_id}")


async def test_two_pending_requests_and_busy_app(vote_room: VoteRoom, new_app: Any) -> None:
    v = vote_room
    first, second = new_app(), new_app()
    first_id, _ = await v.request(v.bob, f"!deploy {first} 1.0.0+v1")
    second_id, _ = await v.request(v.carol, f"!deploy {second} 1.0.0+v1")
    pending = await v.command(v.eve, "!pending")
    assert f"#{first_id} deploy `{first}`" in pending and f"#{second_id} deploy `{second}`" in pending
    again = await v.command(v.dave, f"!deploy {first} 1.0.0+v1")
    assert again.startswith(f"Request #{first_id} already asks to deploy `{first}`")
    # an app held by a running operation cannot get a request
    assert v.bot.bot is not None
    await v.bot.bot.operations.try_lock(first, "held", "backup", v.alice.user_id)
    busy = await v.command(v.dave, f"!undeploy {first}")
    assert busy.startswith(f"busy: backup of `{first}` by {v.alice.user_id}")


async def test_plan_change_voids_votes(vote_room: VoteRoom, new_app: Any) -> None:
    v = vote_room
    domain = new_app()
    request_id, card_id = await v.request(v.bob, f"!deploy {domain} 1.0.0+v1")
    await v.carol.react(v.room, card_id, "👍")
    await v.card_says(v.bob, card_id, "Votes: 1 of 2")
    env = next(p for p in v.abra.written if p.name == f"{domain}.env")
    env.write_text(env.read_text() + "EXTRA_SETTING=changed\n")
    await v.dave.react(v.room, card_id, "👍")
    card = await v.card_says(v.bob, card_id, "void: The plan changed since it was approved")
    assert "app env file changed" in card

    def fresh_card(event: RoomMessage) -> bool:
        return str(event.source["content"].get("body", "")).startswith(
            f"Request #{request_id + 1}:")

    fresh = await v.bob.wait_for_message(v.room, sender=v.bot.user_id, predicate=fresh_card)
    assert f"open (replaces request #{request_id})" in fresh.source["content"]["body"]
    assert v.bot.bot is not None
    # The deployer found the change under its lock and refused: nothing ran.
    assert [r.result for r in await v.bot.bot.operations.history(domain)] == ["refused"]
    assert not await v.bot.bot.operations.deployed_versions(domain)


async def test_restart_mid_vote_counts_votes_cast_while_down(
    vote_room: VoteRoom, new_app: Any
) -> None:
    v = vote_room
    domain = new_app()
    _, card_id = await v.request(v.bob, f"!deploy {domain} 1.0.0+v1")
    await v.carol.react(v.room, card_id, "👍")
    await v.card_says(v.bob, card_id, "Votes: 1 of 2")
    await v.bot.stop()
    await v.dave.react(v.room, card_id, "👍")
    await v.dave.react(v.room, card_id, "✅")  # a second yes from the same voter: one vote
    await asyncio.sleep(1)
    await v.bot.start()
    card = await v.card_says(v.bob, card_id, ": done")
    assert f"approved by {v.carol.user_id}, {v.dave.user_id}" in card
    assert v.bot.bot is not None
    history = await v.bot.bot.operations.history(domain)
    assert [op.result for op in history] == ["ok"]


@pytest.mark.policy(expires="20s")
async def test_restart_with_an_open_request_catches_up_then_expires_on_time(
    vote_room: VoteRoom, new_app: Any
) -> None:
    v = vote_room
    domain = new_app()
    request_id, card_id = await v.request(v.bob, f"!deploy {domain} 1.0.0+v1")
    assert v.bot.bot is not None
    opened = await ApprovalStore(v.bot.bot.database).get(request_id)
    assert opened is not None
    await v.bot.stop()
    await v.carol.react(v.room, card_id, "👍")  # cast while the bot is down
    await v.bot.start()
    card = await v.card_says(v.bob, card_id, "Votes: 1 of 2")
    assert v.carol.user_id in card and "Status: open" in card

    card = await v.card_says(v.bob, card_id, "expired without enough votes", timeout=60)
    late = time.time() - opened.expires_at
    assert late < 6, f"expired {late:.1f} s after its time"  # the timer looks every 2 s
    assert "Vote: react" not in card
    # Votes after the expiry change nothing: it never runs.
    await v.dave.react(v.room, card_id, "👍")
    answer = await v.command(v.dave, f"!approve {request_id}")
    assert answer.startswith(f"Request #{request_id} expired at ")
    assert answer.endswith("votes are closed; ask again if it is still wanted.")
    await asyncio.sleep(2)
    assert await v.bot.bot.operations.history(domain) == []
    await v.card_says(v.bob, card_id, "expired without enough votes", timeout=1)


def without_expiry_timer(bot: Bot) -> None:
    """The expiry loop never looks (as when it died at start-up): votes alone must expire."""

    async def never(stop: asyncio.Event) -> None:
        await stop.wait()

    bot.approvals.run_expiry = never  # type: ignore[method-assign]


@pytest.mark.policy(expires="4s")
async def test_a_quorum_cast_after_the_expiry_while_the_bot_was_down_does_not_run(
    vote_room: VoteRoom, new_app: Any
) -> None:
    v = vote_room
    domain = new_app()
    request_id, card_id = await v.request(v.bob, f"!deploy {domain} 1.0.0+v1")
    await v.bot.stop()
    await asyncio.sleep(5)  # the request expires while nobody watches
    await v.carol.react(v.room, card_id, "👍")
    await v.dave.react(v.room, card_id, "👍")
    await v.bot.start(prepare=without_expiry_timer)
    card = await v.card_says(v.bob, card_id, "expired without enough votes", timeout=30)
    assert "done" not in card and "running" not in card
    await asyncio.sleep(2)
    assert v.bot.bot is not None
    assert await v.bot.bot.operations.history(domain) == []
    request = await ApprovalStore(v.bot.bot.database).get(request_id)
    assert request is not None and request.state == RequestState.EXPIRED
    audit = await v.bot.audit(limit=200)
    assert [row.result for row in audit if row.command == f"request #{request_id}"
            and not row.result.startswith("opened")] == ["expired: "]


async def test_a_request_left_running_is_interrupted_at_start_up(
    vote_room: VoteRoom, new_app: Any
) -> None:
    v = vote_room
    domain = new_app()
    request_id, card_id = await v.request(v.bob, f"!deploy {domain} 1.0.0+v1")
    await v.bot.stop()
    # The bot crashed while it ran the approved request: the row says running.
    config = load_config(v.bot.config_path)
    async with Database(config.database) as database:
        assert await ApprovalStore(database).transition(request_id, RequestState.OPEN,
                                                        RequestState.RUNNING)
    await v.bot.start()
    card = await v.card_says(
        v.bob, card_id, "interrupted: coopbot stopped before it recorded the outcome", timeout=30)
    assert f"`!ps {domain}` show where it stands" in card
    assert v.bot.bot is not None
    request = await ApprovalStore(v.bot.bot.database).get(request_id)
    assert request is not None and request.state == RequestState.INTERRUPTED
    assert request.closed_at is not None
    audit = await v.bot.audit(limit=200)
    assert [row.result for row in audit if row.command == f"request #{request_id}"
            and not row.result.startswith("opened")] == [
        "interrupted: coopbot stopped before it recorded the outcome"]
    answer = await v.command(v.carol, f"!approve {request_id}")
    assert answer == f"Request #{request_id} is interrupted: votes are closed."
    # A new request for the same app can be made.
    again, _ = await v.request(v.bob, f"!deploy {domain} 1.0.0+v1")
    assert again == request_id + 1
