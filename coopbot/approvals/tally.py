"""Counting votes: a pure function of the policy, the votes and each voter's eligibility now.

Eligibility is decided by the caller at tally time (current role in the room, homeserver
allowed), never at vote time, so a voter whose power was lowered after voting stops counting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from coopbot.approvals.policy import Policy
from coopbot.store.approvals import Vote


class Outcome(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


@dataclass(frozen=True)
class Tally:
    outcome: Outcome
    yes: tuple[Vote, ...]
    no: tuple[Vote, ...]
    ignored: tuple[tuple[Vote, str], ...]  # (vote, why it did not count)
    needed: int

    @property
    def progress(self) -> str:
        return f"{len(self.yes)} of {self.needed}"


def latest_per_voter(votes: Sequence[Vote]) -> list[Vote]:
    """One vote per user: the one received last."""
    latest: dict[str, Vote] = {}
    for vote in sorted(votes, key=lambda v: v.seq):
        latest[vote.voter] = vote
    return sorted(latest.values(), key=lambda v: v.seq)


def tally(
    policy: Policy, requester: str, votes: Sequence[Vote],
    ineligible: Mapping[str, str],
) -> Tally:
    """`ineligible` maps a voter to why they may not vote now (missing role, homeserver)."""
    yes: list[Vote] = []
    no: list[Vote] = []
    ignored: list[tuple[Vote, str]] = []
    for vote in latest_per_voter(votes):
        if vote.voter == requester and not policy.self_vote:
            ignored.append((vote, "the requester's own vote does not count"))
        elif vote.voter in ineligible:
            ignored.append((vote, ineligible[vote.voter]))
        elif vote.approve:
            yes.append(vote)
        else:
            no.append(vote)
    if policy.veto and no:
        outcome = Outcome.DENIED
    elif len(yes) >= policy.approvals:
        outcome = Outcome.APPROVED
    else:
        outcome = Outcome.PENDING
    return Tally(outcome, tuple(yes), tuple(no), tuple(ignored), policy.approvals)
