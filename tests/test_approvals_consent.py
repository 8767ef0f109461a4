"""Consent decisions as pure functions: consent, stand aside and block, counted per person or
per member organisation, with participation, lazy consensus, veto and early close. Tables for
the cases a co-op asks about, properties for what must hold for any votes."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coopbot.approvals.organisations import Organisations
from coopbot.approvals.policy import Policy
from coopbot.approvals.tally import UNKNOWN, Electorate, Outcome, tally
from coopbot.config import OrganisationConfig
from coopbot.store.approvals import Choice, Vote
from tests.test_approvals_tally import policy

Y, A, N = Choice.CONSENT, Choice.STAND_ASIDE, Choice.BLOCK
APPROVE = {Y: True, A: None, N: False}
ORGS = {"ara": ("@a1:x", "@a2:x"), "bee": ("@b1:x", "@b2:x"), "cog": ("@c1:x", "@c2:x")}
MEMBER_OF = {person: org for org, people in ORGS.items() for person in people}
EVERYONE = tuple(MEMBER_OF)
REQUESTER = "@req:x"
PEOPLE = Electorate(people=EVERYONE, open_ended=False)
BY_ORG = Electorate(people=EVERYONE, open_ended=True, organisations=ORGS)


def votes_of(*cast: tuple[str, Choice]) -> list[Vote]:
    return [Vote(voter=f"@{who}:x", approve=APPROVE[choice], event_id=f"$v{seq}", seq=seq)
            for seq, (who, choice) in enumerate(cast, 1)]


def decide(rules: Policy, cast: list[Vote], *, electorate: Electorate = UNKNOWN,
           deadline_passed: bool = False) -> Outcome:
    return tally(rules, REQUESTER, cast, {}, electorate=electorate, organisation_of=MEMBER_OF,
                 deadline_passed=deadline_passed).outcome


ORG = {"count": "organisations"}
LAZY = {"lazy_seconds": 3600}

# (case, policy keys, votes in receive order, electorate known?, deadline passed?, outcome)
TABLE: list[tuple[str, dict[str, object], list[tuple[str, Choice]], bool, bool, Outcome]] = [
    ("people: two consents", {}, [("a1", Y), ("a2", Y)], False, False, Outcome.APPROVED),
    ("org: two of one organisation are one vote", ORG, [("a1", Y), ("a2", Y)], False, False,
     Outcome.PENDING),
    ("org: two organisations", ORG, [("a1", Y), ("b1", Y)], False, False, Outcome.APPROVED),
    ("org: latest member's vote counts", ORG, [("a1", Y), ("b1", Y), ("b2", A)], False, False,
     Outcome.PENDING),
    ("org: a later member turns a block into consent", ORG,
     [("a1", Y), ("b1", N), ("b2", Y)], False, False, Outcome.APPROVED),
    ("unanimous: members differ -> stand aside", {**ORG, "organisation_rule": "unanimous"},
     [("a1", Y), ("b1", Y), ("b2", N)], False, False, Outcome.PENDING),
    ("unanimous: a split block does not veto", {**ORG, "organisation_rule": "unanimous",
                                                "approvals": 1}, [("a1", Y), ("b1", N), ("b2", Y)],
     False, False, Outcome.APPROVED),
    ("unanimous: members agree", {**ORG, "organisation_rule": "unanimous"},
     [("a1", Y), ("a2", Y), ("b1", Y)], False, False, Outcome.APPROVED),
    ("participation: consents but too few taking part", {"approvals": 1, "participation": 3},
     [("a1", Y), ("b1", A)], False, False, Outcome.PENDING),
    ("participation: a stand aside completes it", {"approvals": 1, "participation": 3},
     [("a1", Y), ("b1", A), ("c1", A)], False, False, Outcome.APPROVED),
    ("veto: one block denies", {}, [("a1", Y), ("b1", Y), ("c1", N)], False, False,
     Outcome.DENIED),
    ("no veto: a block is outvoted", {"veto": False}, [("a1", Y), ("b1", Y), ("c1", N)], False,
     False, Outcome.APPROVED),
    ("stand asides only: pending", {}, [("a1", A), ("b1", A)], False, False, Outcome.PENDING),
    ("stand asides only, everyone voted: rejected", {}, [(p[1:3], A) for p in EVERYONE], True,
     False, Outcome.REJECTED),
    ("stand asides only, lazy at the deadline: passes", {**LAZY, "approvals": 0,
                                                         "participation": 2},
     [("a1", A), ("b1", A)], False, True, Outcome.LAZY),
    ("lazy before the deadline: waits", {**LAZY, "approvals": 0, "participation": 1},
     [("a1", Y)], False, False, Outcome.PENDING),
    ("lazy before the deadline, quorum of consents: still waits", LAZY,
     [("a1", Y), ("b1", Y)], False, False, Outcome.PENDING),
    ("lazy at the deadline: passes", {**LAZY, "approvals": 0, "participation": 1},
     [("a1", Y)], False, True, Outcome.LAZY),
    ("lazy at the deadline, too few taking part", {**LAZY, "approvals": 0, "participation": 2},
     [("a1", Y)], False, True, Outcome.REJECTED),
    ("lazy at the deadline, a block without veto still stops it",
     {**LAZY, "approvals": 0, "veto": False}, [("a1", Y), ("b1", N)], False, True,
     Outcome.REJECTED),
    ("lazy: a late block with veto denies at once", {**LAZY, "approvals": 0},
     [("a1", Y), ("b1", N)], False, False, Outcome.DENIED),
    ("lazy past the deadline with nobody voting", {**LAZY, "approvals": 0}, [], False, True,
     Outcome.LAZY),
    ("lazy, org: two organisations consent at the deadline", {**ORG, **LAZY},
     [("a1", Y), ("b2", Y)], False, True, Outcome.LAZY),
    ("lazy, org: one organisation twice is not two", {**ORG, **LAZY},
     [("a1", Y), ("a2", Y)], False, True, Outcome.REJECTED),
    ("early close, org: every organisation voted -> lazy passes now",
     {**ORG, **LAZY, "approvals": 0, "participation": 2}, [("a1", Y), ("b1", A), ("c2", Y)],
     True, False, Outcome.LAZY),
    ("early close, org: everyone voted without the quorum", {**ORG, "approvals": 3},
     [("a1", Y), ("b1", A), ("c2", Y)], True, False, Outcome.REJECTED),
    ("early close, unanimous: waits for every member", {**ORG, **LAZY, "approvals": 0,
                                                        "organisation_rule": "unanimous"},
     [("a1", Y), ("b1", A), ("c2", Y)], True, False, Outcome.PENDING),
]


@pytest.mark.parametrize(("rules", "cast", "known", "deadline", "expected"),
                         [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_decisions(rules: dict[str, object], cast: list[tuple[str, Choice]], known: bool,
                   deadline: bool, expected: Outcome) -> None:
    rules = {"veto": True, **rules}
    p = policy(**rules)
    electorate = (BY_ORG if p.count == "organisations" else PEOPLE) if known else UNKNOWN
    assert decide(p, votes_of(*cast), electorate=electorate, deadline_passed=deadline) == expected


def test_the_card_view_per_organisation() -> None:
    result = tally(policy(count="organisations"), REQUESTER,
                   votes_of(("a1", Y), ("b1", Y), ("b2", A)), {}, electorate=BY_ORG,
                   organisation_of=MEMBER_OF)
    assert [(u.name, u.choice) for u in result.units] == [("ara", Y), ("bee", A)]
    assert result.not_voted == ("cog",)
    assert result.waiting_for() == ["cog (@c1:x, @c2:x)"]
    assert result.progress == "1 of 2 organisations"
    assert result.approvers == ("@a1:x",)


def test_a_voter_outside_every_organisation_is_not_counted() -> None:
    result = tally(policy(count="organisations"), REQUESTER,
                   votes_of(("a1", Y), ("zed", Y)), {}, organisation_of=MEMBER_OF)
    assert result.outcome == Outcome.PENDING
    assert [(v.voter, why) for v, why in result.ignored] == [
        ("@zed:x", "not a member of any organisation")]


def test_people_not_voted_and_participation_progress() -> None:
    result = tally(policy(participation=3), REQUESTER, votes_of(("a1", Y), ("b1", A)), {},
                   electorate=PEOPLE)
    assert result.progress == "1 of 2, 2 of 3 taking part"
    assert result.not_voted == ("@a2:x", "@b2:x", "@c1:x", "@c2:x")


def test_organisations_listed_and_by_homeserver() -> None:
    organisations = Organisations({
        "ara": OrganisationConfig(users=["@boss:big.org"], servers=["ara.coop"]),
        "big": OrganisationConfig(servers=["big.org"])})
    assert organisations.of("@anyone:ara.coop") == "ara"
    assert organisations.of("@boss:big.org") == "ara"  # listed wins over the homeserver
    assert organisations.of("@other:big.org") == "big"
    assert organisations.of("@x:elsewhere.net") is None


# Properties, for any votes from the six members of three organisations.
voter = st.sampled_from([p[1:3] for p in EVERYONE])
choice = st.sampled_from([Y, A, N])
ballots = st.lists(st.tuples(voter, choice), max_size=12)
counting = st.sampled_from(["people", "organisations"])


@given(ballots, counting, st.integers(0, 4), st.integers(0, 4), st.booleans(), st.booleans())
def test_a_stand_aside_never_consents_or_blocks(
    cast: list[tuple[str, Choice]], count: str, approvals: int, participation: int,
    lazy: bool, deadline: bool,
) -> None:
    base = policy(count=count, approvals=approvals, participation=participation,
                  lazy_seconds=60 if lazy else 0)
    result = tally(base, REQUESTER, votes_of(*cast), {}, organisation_of=MEMBER_OF,
                   deadline_passed=deadline)
    consents = len(result.counted(Y))
    blocks = len(result.counted(N))
    # Everyone whose person (or organisation) has not voted yet stands aside: consents and
    # blocks stay as they were.
    unit = (lambda p: MEMBER_OF[p]) if count == "organisations" else (lambda p: p)
    voted = {unit(v.voter) for v in votes_of(*cast)}
    extra = cast + [(p[1:3], A) for p in EVERYONE if unit(p) not in voted]
    more = tally(base, REQUESTER, votes_of(*extra), {}, organisation_of=MEMBER_OF,
                 deadline_passed=deadline)
    assert len(more.counted(Y)) == consents and len(more.counted(N)) == blocks
    assert len(more.units) >= len(result.units)
    if result.outcome == Outcome.DENIED:
        assert more.outcome == Outcome.DENIED


@given(ballots, st.sampled_from(["latest", "unanimous"]))
def test_an_organisation_has_one_vote_however_many_members_vote(
    cast: list[tuple[str, Choice]], rule: str,
) -> None:
    result = tally(policy(count="organisations", organisation_rule=rule), REQUESTER,
                   votes_of(*cast), {}, organisation_of=MEMBER_OF)
    assert len(result.units) == len({MEMBER_OF[f"@{who}:x"] for who, _ in cast})
    assert len(result.units) <= len(ORGS)


@given(ballots, counting)
def test_with_veto_any_counted_block_denies(cast: list[tuple[str, Choice]], count: str) -> None:
    result = tally(policy(count=count), REQUESTER, votes_of(*cast), {},
                   organisation_of=MEMBER_OF)
    assert (result.outcome == Outcome.DENIED) == bool(result.counted(N))


@given(ballots, counting, st.integers(0, 3))
def test_lazy_consensus_never_passes_early_unless_everyone_voted(
    cast: list[tuple[str, Choice]], count: str, approvals: int,
) -> None:
    lazy = policy(count=count, approvals=approvals, lazy_seconds=60)
    result = tally(lazy, REQUESTER, votes_of(*cast), {}, organisation_of=MEMBER_OF)
    assert result.outcome in (Outcome.PENDING, Outcome.DENIED)
    at_deadline = tally(lazy, REQUESTER, votes_of(*cast), {}, organisation_of=MEMBER_OF,
                        deadline_passed=True)
    assert at_deadline.outcome != Outcome.PENDING
    if at_deadline.outcome == Outcome.LAZY:
        assert not at_deadline.counted(N) and len(at_deadline.counted(Y)) >= approvals


@given(ballots)
def test_only_the_latest_vote_of_each_person_counts(cast: list[tuple[str, Choice]]) -> None:
    rules = replace(policy(), veto=False, approvals=1)
    everything = tally(rules, REQUESTER, votes_of(*cast), {})
    last: dict[str, Choice] = {}
    for who, picked in cast:
        last[who] = picked
    assert sorted(v.voter for v in everything.yes) == sorted(
        f"@{who}:x" for who, picked in last.items() if picked == Y)
