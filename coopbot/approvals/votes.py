"""Vote intake: reactions on a card, `!approve` / `!deny`, and redacted reactions. Each vote
is stored once (a vote event delivered twice counts once) and audited, then the request is
evaluated again from the stored votes."""

from __future__ import annotations

from coopbot.approvals.card import NO_KEYS, YES_KEYS
from coopbot.approvals.inflight import past_expiry
from coopbot.approvals.tallying import Evaluation
from coopbot.ids import EventID, UserID
from coopbot.messages import IncomingReaction, IncomingRedaction
from coopbot.store.approvals import OPEN, ApprovalRequest, ApprovalStore, Vote
from coopbot.store.audit import AuditLog, Decision


class Votes:
    def __init__(self, *, store: ApprovalStore, audit: AuditLog,
                 evaluation: Evaluation) -> None:
        self._store = store
        self._audit = audit
        self._evaluation = evaluation

    async def reaction(self, reaction: IncomingReaction) -> None:
        if reaction.key in YES_KEYS:
            approve = True
        elif reaction.key in NO_KEYS:
            approve = False
        else:
            return
        request = await self._store.by_card(reaction.relates_to)
        if request is None or request.state != OPEN:
            return
        if past_expiry(request):
            await self._evaluation.evaluate(request)  # expires it; the vote is not recorded
            return
        await self.cast(request, reaction.sender, approve, reaction.event_id, "", "reaction")

    async def redaction(self, redaction: IncomingRedaction) -> None:
        request_id = await self._store.retract(redaction.redacts)
        if request_id is None:
            return
        request = await self._store.get(request_id)
        if request is not None and request.state == OPEN:
            await self._audit.append(
                command=f"vote on #{request_id}", args=f"{request.app}: retracted",
                decision=Decision.RESULT,
                event_id=redaction.event_id, room_id=redaction.room_id, sender=redaction.sender,
                result=f"retracted (reaction {redaction.redacts} redacted)",
            )
            await self._evaluation.evaluate(request)

    async def cast(self, request: ApprovalRequest, voter: UserID, approve: bool,
                   event_id: EventID,
                   reason: str, via: str) -> bool:
        """Record a vote and evaluate; False when this vote event was already counted."""
        seq = await self._store.next_seq(event_id)
        if seq is None:
            return False  # the same vote event delivered twice
        await self._store.record_vote(
            request.id, Vote(voter, approve, event_id, seq, reason, via)
        )
        choice = "yes" if approve else f"no {reason}".strip()
        await self._audit.append(
            command=f"vote on #{request.id}", args=f"{request.app}: {choice}",
            decision=Decision.RESULT, event_id=event_id, room_id=request.room_id, sender=voter,
            result=f"{'approve' if approve else 'deny'} via {via}",
        )
        await self._evaluation.evaluate(request)
        return True
