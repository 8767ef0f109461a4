"""Decisions the co-op way, end to end: six real members of three member organisations (listed
by MXID: the harness's Synapse has one server name) vote 👍 🤷 👎 on real cards; lazy consensus
passes at its deadline or is blocked late; a request closes once every organisation has voted,
also when the votes came while the bot was down; the reminder is posted once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nio import RoomMessage

from coopbot.store.approvals import ApprovalStore, RequestState
from tests.harness.apps import app_env, create_secret, stack_of, unique_domain
from tests.harness.bot import StartBot
from tests.harness.recipes import AbraDir
from tests.harness.swarm import AppImages, Dockerd, remove_stack
from tests.harness.synapse import MakeMember, Member
from tests.test_bot_approvals import OPERATION_TIMEOUT, VoteRoom

pytestmark = pytest.mark.real


@dataclass
class Federation:
    v: VoteRoom  # the room, the bot and the card helpers
    people: dict[str, Member]  # a1, a2 (ara), b1, b2 (bee), c1, c2 (cog)

    def __getattr__(self, name: str) -> Member:
        return self.people[name]

    def app(self) -> str:
        domain = unique_domain()
        create_secret(domain)
        app_env(self.v.abra, "local", domain)
        self.domains.append(domain)
        return domain

    domains: list[str]


@pytest.fixture
async def federation(
    make_member: MakeMember, start_bot: StartBot, abra_dir: AbraDir, tmp_path: Path,
    dockerd: Dockerd, test_images: AppImages, testapp_recipe: Path,
    request: pytest.FixtureRequest,
) -> Any:
    tag = uuid.uuid4().hex[:6]
    names = ("a1", "a2", "b1", "b2", "c1", "c2")
    people = {name: await make_member(f"{name}-{tag}") for name in names}
    creator = people["a1"]
    room = await creator.create_room(invite=[m.user_id for m in people.values()][1:],
                                     power_levels={m.user_id: 50 for m in people.values()})
    for member in list(people.values())[1:]:
        await member.join(room)
    policy: dict[str, Any] = {"approver_role": "operator", "count": "organisations",
                              "expires": "1h"}
    marker = request.node.get_closest_marker("policy")
    policy.update(marker.kwargs if marker is not None else {})
    organisations = {org: {"users": [people[f"{org[0]}1"].user_id, people[f"{org[0]}2"].user_id]}
                     for org in ("ara", "bee", "cog")}
    bot = await start_bot(
        rooms={room: {"servers": ["local"]}},
        servers={"local": {"kind": "local", "socket": dockerd.socket}},
        apps_dir=str(abra_dir.path),
        recipes={"overrides": {"testapp": str(testapp_recipe)},
                 "cache": str(tmp_path / "recipe-cache")},
        policies={"deploy": policy}, organisations=organisations,
        reminder_mentions=[people["c2"].user_id],
    )
    await creator.invite(room, bot.user_id)
    await creator.wait_joined(room, bot.user_id)
    v = VoteRoom(bot, room, people["a1"], people["a2"], people["b1"], people["b2"],
                 people["c1"], abra_dir)
    f = Federation(v, people, [])
    yield f
    for domain in f.domains:
        remove_stack(stack_of(domain))


def reminders_of(member: Member, room: str, bot: str, request_id: int) -> list[RoomMessage]:
    return [e for e in member.messages_from(room, bot)
            if str(e.source["content"].get("body", "")).startswith(f"⏰ Request #{request_id} ")]


@pytest.mark.policy(approvals=2, participation=3)
async def test_three_kinds_of_vote_one_per_organisation(federation: Federation) -> None:
    f, v = federation, federation.v
    domain = f.app()
    request_id, card_id = await v.request(f.a1, f"!deploy {domain} 1.0.0+v1")
    card = await v.card_says(f.a1, card_id, "Status: open")
    assert "one vote per organisation (its latest member's vote)" in card
    assert (f"Not voted yet: ara ({f.a2.user_id}), bee ({f.b1.user_id}, {f.b2.user_id}), "
            f"cog ({f.c1.user_id}, {f.c2.user_id})") in card

    await f.b1.react(v.room, card_id, "👍")
    await v.card_says(f.a1, card_id, f"👍 bee (👍 {f.b1.user_id})")
    # Another member of bee stands aside: bee's vote is now a stand aside.
    await f.b2.react(v.room, card_id, "🤷")
    card = await v.card_says(f.a1, card_id, f"🤷 bee (👍 {f.b1.user_id}, 🤷 {f.b2.user_id})")
    assert "Votes: 0 of 2 organisations, 1 of 3 taking part" in card
    answer = await v.command(f.c1, f"!standaside {request_id} fine by us")
    assert answer == f"Your 🤷 on request #{request_id} is recorded; the card shows the count."
    await v.card_says(f.a1, card_id, f"🤷 cog (🤷 {f.c1.user_id} (fine by us))")
    pending = await v.command(f.b1, "!pending")
    assert f"not voted yet: ara ({f.a2.user_id})" in pending
    assert "0 of 2 organisations, 2 of 3 taking part" in pending

    await f.a2.react(v.room, card_id, "👎")
    card = await v.card_says(f.a1, card_id, f"Status: denied by {f.a2.user_id}")
    assert f"👎 ara (👎 {f.a2.user_id})" in card and "Not voted yet" not in card
    assert v.bot.bot is not None
    assert await v.bot.bot.operations.history(domain) == []
    audit = await v.command(f.a1, f"!audit {domain}")
    assert f"{f.b2.user_id} vote on #{request_id} {domain}: stand aside: " in audit
    assert "stand aside via reaction ($" in audit  # with the reaction's event id
    assert f"{domain}: stand aside fine by us: result -> stand aside via command" in audit


@pytest.mark.policy(approvals=0, participation=2, lazy="1h")
async def test_votes_cast_while_down_close_the_request_once_everyone_has_voted(
    federation: Federation,
) -> None:
    f, v = federation, federation.v
    domain = f.app()
    request_id, card_id = await v.request(f.a1, f"!deploy {domain} 1.0.0+v1")
    await f.b1.react(v.room, card_id, "👍")
    await v.card_says(f.a1, card_id, "1 consenting organisation(s), 1 of 2 taking part")
    await v.bot.stop()
    await f.c2.react(v.room, card_id, "🤷")
    await f.a2.react(v.room, card_id, "👍")
    await v.bot.start()
    # Every organisation has voted: lazy consensus passes now, not in an hour.
    card = await v.card_says(f.a1, card_id, ": done")
    assert "passed by lazy consensus (2 consenting organisation(s), 3 of 2 taking part, " \
           "nobody blocked): done" in card
    assert f"🤷 cog (🤷 {f.c2.user_id})" in card
    assert v.bot.bot is not None
    assert [op.result for op in await v.bot.bot.operations.history(domain)] == ["ok"]
    audit = await v.bot.audit(limit=200)
    votes = [row for row in audit if row.command == f"vote on #{request_id}"]
    assert {(row.sender, row.result) for row in votes} == {
        (f.b1.user_id, "approve via reaction"), (f.c2.user_id, "stand aside via reaction"),
        (f.a2.user_id, "approve via reaction")}
    assert all(row.event_id and row.event_id.startswith("$") for row in votes)


@pytest.mark.policy(approvals=0, participation=1, lazy="12s", remind="8s")
async def test_lazy_consensus_passes_at_the_deadline_or_is_blocked_late_and_reminds_once(
    federation: Federation,
) -> None:
    f, v = federation, federation.v
    passing, blocked = f.app(), f.app()
    passing_id, passing_card = await v.request(f.a1, f"!deploy {passing} 1.0.0+v1")
    blocked_id, blocked_card = await v.request(f.a1, f"!deploy {blocked} 1.0.0+v1")
    card = await v.card_says(f.a1, passing_card, "Decided by lazy consensus")
    await f.b1.react(v.room, passing_card, "👍")
    await f.b1.react(v.room, blocked_card, "👍")
    await v.card_says(f.a1, blocked_card, "1 consenting organisation(s), 1 of 1 taking part")

    def reminder(request_id: int) -> Any:
        return lambda e: str(e.source["content"].get("body", "")).startswith(
            f"⏰ Request #{request_id} ")

    late = await f.c1.wait_for_message(v.room, sender=v.bot.user_id,
                                       predicate=reminder(blocked_id), timeout=30)
    await f.c1.react(v.room, blocked_card, "👎")  # after the reminder, before the deadline
    content = late.source["content"]
    assert (f"Not voted yet: ara ({f.a2.user_id}), cog ({f.c1.user_id}, {f.c2.user_id})"
            in content["body"])
    assert content["m.mentions"] == {"user_ids": [f.c2.user_id]}  # only who opted in
    card = await v.card_says(f.a1, blocked_card, f"Status: denied by {f.c1.user_id}")

    card = await v.card_says(f.a1, passing_card, "passed by lazy consensus")
    assert "nobody blocked" in card
    card = await v.card_says(f.a1, passing_card, ": done", timeout=OPERATION_TIMEOUT)
    assert v.bot.bot is not None
    assert [op.result for op in await v.bot.bot.operations.history(passing)] == ["ok"]
    assert await v.bot.bot.operations.history(blocked) == []
    store = ApprovalStore(v.bot.bot.database)
    for request_id, state in ((passing_id, RequestState.DONE), (blocked_id, RequestState.DENIED)):
        stored = await store.get(request_id)
        assert stored is not None and stored.state == state and stored.reminded_at is not None
        assert len(reminders_of(f.a1, v.room, v.bot.user_id, request_id)) == 1
