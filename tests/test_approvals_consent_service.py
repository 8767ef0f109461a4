"""Consent decisions through the approvals service on a real SQLite store (the Matrix side a
recording fake, time moved by ageing the request): lazy consensus at the deadline, early close
once everyone has voted, and the one reminder with its mentions."""

from __future__ import annotations

from pathlib import Path

import pytest

from coopbot.errors import UserError
from coopbot.ids import UserID
from coopbot.store.approvals import RequestState
from tests.test_approvals_service import BOB, CAROL, DAVE, Bench, make_bench

LAZY = {"approvals": 0, "participation": 1, "approver_role": "operator", "lazy": "1h"}


async def vote(bench: Bench, voter: str, request_id: int, event_id: str,
               approve: bool | None) -> str:
    inv = bench.invocation("approve", {"id": str(request_id)}, UserID(voter), event_id)
    return (await bench.approvals.vote_command(inv, approve)).text


async def test_lazy_consensus_passes_when_the_timer_finds_its_deadline(tmp_path: Path) -> None:
    async with make_bench(tmp_path, LAZY) as bench:
        request_id, card = await bench.open_request()
        answer = await vote(bench, CAROL, request_id, "$v1", None)
        assert answer == f"Your 🤷 on request #{request_id} is recorded; the card shows the count."
        assert await bench.approvals.expire_due() == 0
        assert bench.runs == [] and "Decided by lazy consensus" in bench.cards.texts[card]
        await bench.age(request_id, 3601)
        assert await bench.approvals.expire_due() == 1
        await bench.tasks.drain(timeout=5)
        assert len(bench.runs) == 1 and await bench.state(request_id) == RequestState.DONE
        status = "passed by lazy consensus (0 consenting, 1 of 1 taking part, nobody blocked)"
        assert f"{status}: done" in bench.cards.texts[card]
        assert await bench.closing_audit(request_id) == [
            f"done: {status.removeprefix('passed by ')}"]


async def test_lazy_consensus_never_passes_a_deadline_the_bot_did_not_watch(
    tmp_path: Path,
) -> None:
    async with make_bench(tmp_path, LAZY) as bench:
        request_id, card = await bench.open_request()
        await vote(bench, CAROL, request_id, "$v1", True)
        # Down from before the deadline until well after it: a block cast meanwhile would
        # arrive late and not count, so lazy consensus cannot pass.
        await bench.age(request_id, 3600 + 120)
        assert await bench.approvals.expire_due() == 1
        assert bench.runs == [] and await bench.state(request_id) == RequestState.EXPIRED
        assert "time ran out while coopbot was not running" in bench.cards.texts[card]
        assert await bench.closing_audit(request_id) == ["expired: not watched at the deadline"]


async def test_lazy_consensus_with_too_few_taking_part_expires(tmp_path: Path) -> None:
    async with make_bench(tmp_path, {**LAZY, "participation": 2}) as bench:
        request_id, card = await bench.open_request()
        await vote(bench, CAROL, request_id, "$v1", True)
        await bench.age(request_id, 3601)
        # A vote after the deadline does not count: it finds the request decided (expired).
        with pytest.raises(UserError, match=r"expired at .*: votes are closed"):
            await vote(bench, DAVE, request_id, "$v2", True)
        assert await bench.approvals.expire_due() == 0
        assert bench.runs == [] and await bench.state(request_id) == RequestState.EXPIRED
        assert ("time ran out without consent: 1 consenting, 1 of 2 taking part"
                in bench.cards.texts[card])


async def test_everyone_voted_without_the_quorum_closes_at_once(tmp_path: Path) -> None:
    async with make_bench(tmp_path) as bench:  # 2 approvals; carol and dave may vote
        request_id, card = await bench.open_request()
        assert f"Not voted yet: {CAROL}, {DAVE}." in bench.cards.texts[card]
        await vote(bench, CAROL, request_id, "$v1", None)
        assert await bench.state(request_id) == RequestState.OPEN
        await vote(bench, DAVE, request_id, "$v2", True)
        assert bench.runs == [] and await bench.state(request_id) == RequestState.DENIED
        assert "not approved: everyone has voted: 1 of 2" in bench.cards.texts[card]
        assert await bench.closing_audit(request_id) == ["denied: everyone has voted: 1 of 2"]


async def test_the_reminder_is_posted_once_and_mentions_only_who_opted_in(
    tmp_path: Path,
) -> None:
    policy = {"approvals": 2, "approver_role": "operator", "expires": "1h", "remind": "30m"}
    async with make_bench(tmp_path, policy, reminder_mentions=[DAVE, BOB]) as bench:
        request_id, card = await bench.open_request()
        await bench.approvals.expire_due()
        assert len(bench.cards.sent) == 1  # the card only: not yet time to remind
        await bench.age(request_id, 1801)
        await bench.approvals.expire_due()
        await bench.approvals.expire_due()
        (target, reminder), = bench.cards.sent[1:]
        assert target.event_id == card
        assert reminder.text.startswith(f"⏰ Request #{request_id} (deploy `blog.example.org`")
        assert f"Not voted yet: {CAROL}, {DAVE}." in reminder.text
        assert reminder.mentions == (DAVE,)  # bob opted in but is the requester
