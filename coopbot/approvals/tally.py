"""Counting votes: a pure function of the policy, the votes, each voter's eligibility now and
who could vote (the electorate).

Eligibility is decided by the caller at tally time (current role in the room, homeserver
allowed), never at vote time, so a voter whose power was lowered after voting stops counting.

A vote is consent (👍), stand aside (🤷) or block (👎). A unit of the count is a person, or with
`count: organisations` an organisation: its latest member's vote counts for it, or under
`organisation_rule: unanimous` its members' common vote (stand aside when they differ).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from coopbot.approvals.policy import Policy
from coopbot.store.approvals import Choice, Vote

SYMBOL = {Choice.CONSENT: "👍", Choice.STAND_ASIDE: "🤷", Choice.BLOCK: "👎"}
NOT_IN_AN_ORGANISATION = "not a member of any organisation"


class Outcome(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # the quorum of consents is reached
    LAZY = "lazy"  # lazy consensus: the deadline (or everyone's vote) came without a block
    DENIED = "denied"  # blocked (veto)
    REJECTED = "rejected"  # everyone has voted and the quorum cannot be reached any more


@dataclass(frozen=True)
class Electorate:
    """Who may vote now, as far as the bot can tell. `people`: the eligible people it knows of;
    `open_ended`: others may be eligible too (a power level everyone has grants the role), so
    it cannot tell when everyone has voted. `organisations`: each organisation with a possible
    voter, and its eligible members the bot knows of; `open_members`: organisations whose
    members are not all known (listed by homeserver)."""

    people: tuple[str, ...] = ()
    open_ended: bool = True
    organisations: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    open_members: frozenset[str] = frozenset()


UNKNOWN = Electorate()


@dataclass(frozen=True)
class Unit:
    """One counted vote: a person's, or an organisation's (with the votes it came from)."""

    name: str
    choice: Choice
    votes: tuple[Vote, ...]


@dataclass(frozen=True)
class Tally:
    outcome: Outcome
    yes: tuple[Vote, ...]
    no: tuple[Vote, ...]
    ignored: tuple[tuple[Vote, str], ...]  # (vote, why it did not count)
    needed: int
    aside: tuple[Vote, ...] = ()
    units: tuple[Unit, ...] = ()  # what counted, in the order the votes arrived
    not_voted: tuple[str, ...] = ()  # people or organisations the bot knows have not voted
    by_organisation: bool = False
    participation: int = 0  # votes of any kind needed before a decision
    electorate: Electorate = UNKNOWN

    @property
    def approvers(self) -> tuple[str, ...]:
        return tuple(v.voter for v in self.yes)

    def waiting_for(self) -> list[str]:
        """Who has not voted, as shown: people, or organisations with their known people."""
        if not self.by_organisation:
            return list(self.not_voted)
        return [f"{o} ({', '.join(people)})" if (people := self.electorate.organisations[o])
                else o for o in self.not_voted]

    def people_waited_for(self) -> set[str]:
        if not self.by_organisation:
            return set(self.not_voted)
        return {p for o in self.not_voted for p in self.electorate.organisations[o]}

    def counted(self, choice: Choice) -> tuple[Unit, ...]:
        return tuple(u for u in self.units if u.choice == choice)

    @property
    def progress(self) -> str:
        what = " organisations" if self.by_organisation else ""
        consents = len(self.counted(Choice.CONSENT))
        text = (f"{consents} of {self.needed}{what}" if self.needed else
                f"{consents} consenting" + (" organisation(s)" if self.by_organisation else ""))
        if self.participation:
            text += f", {len(self.units)} of {self.participation} taking part"
        return text


def latest_per_voter(votes: Sequence[Vote]) -> list[Vote]:
    """One vote per user: the one received last."""
    latest: dict[str, Vote] = {}
    for vote in sorted(votes, key=lambda v: v.seq):
        latest[vote.voter] = vote
    return sorted(latest.values(), key=lambda v: v.seq)


def tally(
    policy: Policy, requester: str, votes: Sequence[Vote],
    ineligible: Mapping[str, str], *, electorate: Electorate = UNKNOWN,
    organisation_of: Mapping[str, str] | None = None, deadline_passed: bool = False,
) -> Tally:
    """`ineligible` maps a voter to why they may not vote now (missing role, homeserver);
    `organisation_of` maps a user to their organisation (used with `count: organisations`);
    `deadline_passed`: the request's time ran out (lazy consensus decides then)."""
    by_org = policy.count == "organisations"
    members = organisation_of or {}
    counted: list[Vote] = []
    ignored: list[tuple[Vote, str]] = []
    for vote in latest_per_voter(votes):
        if vote.voter == requester and not policy.self_vote:
            ignored.append((vote, "the requester's own vote does not count"))
        elif vote.voter in ineligible:
            ignored.append((vote, ineligible[vote.voter]))
        elif by_org and vote.voter not in members:
            ignored.append((vote, NOT_IN_AN_ORGANISATION))
        else:
            counted.append(vote)
    units = _organisations(counted, members, policy) if by_org else [
        Unit(v.voter, v.choice, (v,)) for v in counted]
    voted = {u.name for u in units}
    if by_org:
        not_voted = tuple(o for o in electorate.organisations if o not in voted)
        complete = not not_voted and bool(electorate.organisations) and (
            policy.organisation_rule != "unanimous" or _all_members_voted(
                electorate, {v.voter for v in counted}))
    else:
        not_voted = tuple(p for p in electorate.people if p not in voted)
        complete = not not_voted and not electorate.open_ended
    return Tally(
        _outcome(policy, units, complete, deadline_passed),
        yes=_behind(units, Choice.CONSENT), no=_behind(units, Choice.BLOCK),
        ignored=tuple(ignored), needed=policy.approvals,
        aside=tuple(v for u in units if u.choice == Choice.STAND_ASIDE for v in u.votes),
        units=tuple(units), not_voted=not_voted, by_organisation=by_org,
        participation=policy.participation, electorate=electorate,
    )


def _behind(units: list[Unit], choice: Choice) -> tuple[Vote, ...]:
    """The votes that gave units this choice (an organisation's other members' not)."""
    return tuple(v for u in units if u.choice == choice for v in u.votes if v.choice == choice)


def _organisations(counted: list[Vote], members: Mapping[str, str],
                   policy: Policy) -> list[Unit]:
    grouped: dict[str, list[Vote]] = {}
    for vote in counted:  # in receive order: the last one is the organisation's latest
        grouped.setdefault(members[vote.voter], []).append(vote)
    units = []
    for name, group in grouped.items():
        if policy.organisation_rule == "unanimous":
            choices = {v.choice for v in group}
            choice = group[0].choice if len(choices) == 1 else Choice.STAND_ASIDE
        else:
            choice = group[-1].choice
        units.append(Unit(name, choice, tuple(group)))
    return sorted(units, key=lambda u: u.votes[-1].seq)


def _all_members_voted(electorate: Electorate, voters: set[str]) -> bool:
    if electorate.open_members:
        return False
    return all(m in voters for group in electorate.organisations.values() for m in group)


def _outcome(policy: Policy, units: list[Unit], complete: bool,
             deadline_passed: bool) -> Outcome:
    consents = sum(1 for u in units if u.choice == Choice.CONSENT)
    blocked = any(u.choice == Choice.BLOCK for u in units)
    quorum = consents >= policy.approvals and len(units) >= policy.participation
    if policy.veto and blocked:
        return Outcome.DENIED
    if policy.lazy_seconds:
        # Lazy consensus waits for its deadline (a late block still counts) unless everyone
        # has voted already.
        if deadline_passed or complete:
            return Outcome.LAZY if quorum and not blocked else Outcome.REJECTED
        return Outcome.PENDING
    if quorum and (policy.approvals or policy.participation):
        return Outcome.APPROVED
    if complete:
        return Outcome.REJECTED
    return Outcome.PENDING
