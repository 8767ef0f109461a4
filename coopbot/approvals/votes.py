"""Vote intake: reactions on a card, `!approve` / `!abstain` / `!deny`, and redacted
reactions. Each vote is stored once (a vote event delivered twice counts once) and audited,
then the request is evaluated again from the stored votes."""

from __future__ import annotations

from coopbot.approvals.card import ASIDE_KEYS, NO_KEYS, YES_KEYS
from coopbot.approvals.inflight import past_expiry
from coopbot.approvals.tallying import Evaluation
from coopbot.ids import EventID, UserID
from coopbot.messages import IncomingReaction, IncomingRedaction
from coopbot.store.approvals import OPEN, ApprovalRequest, ApprovalStore, Choice, Vote
from coopbot.store.audit import AuditLog, Decision


class Votes:
    def __init__(self, *, store: ApprovalStore, audit: AuditLog,
                 evaluation: Evaluation) -> None:
        self._store = store
        self._audit = audit
        self._evaluation = evaluation

    async def reaction(self, reaction: IncomingReaction) -> None:
        approve: bool | None
        if reaction.key in YES_KEYS:
            approve = True
        elif reaction.key in NO_KEYS:
            approve = False
        elif reaction.key in ASIDE_KEYS:
            approve = None  # stand aside
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

    async def cast(self, request: ApprovalRequest, voter: UserID, approve: bool | None,
                   event_id: EventID,
                   reason: str, via: str) -> bool:
        """Record a vote and evaluate; False when this vote event was already counted."""
        seq = await self._store.next_seq(event_id)
        if seq is None:
            return False  # the same vote event delivered twice
        vote = Vote(voter, approve, event_id, seq, reason, via)
        await self._store.record_vote(request.id, vote)
        # Earlier rows say yes / no: consent and block keep those words.
        said = {Choice.CONSENT: "yes", Choice.BLOCK: "no",
                Choice.STAND_ASIDE: "stand aside"}[vote.choice]
        verb = {Choice.CONSENT: "approve", Choice.BLOCK: "deny",
                Choice.STAND_ASIDE: "stand aside"}[vote.choice]
        await self._audit.append(
            command=f"vote on #{request.id}", args=f"{request.app}: {said} {reason}".strip(),
            decision=Decision.RESULT, event_id=event_id, room_id=request.room_id, sender=voter,
            result=f"{verb} via {via}",
        )
        await self._evaluation.evaluate(request)
        return True
