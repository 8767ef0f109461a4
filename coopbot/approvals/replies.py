"""The approval commands' answers: a vote by command (consent, stand aside, block), `!cancel`
and `!pending`, each about a request of the room it is asked in."""

from __future__ import annotations

import time

from coopbot.approvals.card import when
from coopbot.approvals.inflight import past_expiry
from coopbot.approvals.policy import Policy
from coopbot.approvals.record import RequestRecord
from coopbot.approvals.tally import SYMBOL
from coopbot.approvals.tallying import Evaluation, VoteCount
from coopbot.approvals.votes import Votes
from coopbot.echo import shown
from coopbot.errors import NotFound, UserError
from coopbot.invocation import Invocation
from coopbot.replies import Reply
from coopbot.roles import RoleResolver
from coopbot.store.approvals import OPEN, ApprovalRequest, ApprovalStore, Choice, RequestState


class CommandReplies:
    def __init__(self, *, store: ApprovalStore, roles: RoleResolver, counts: VoteCount,
                 record: RequestRecord, votes: Votes, evaluation: Evaluation,
                 prefix: str) -> None:
        self._store = store
        self._roles = roles
        self._counts = counts
        self._record = record
        self._votes = votes
        self._evaluation = evaluation
        self._prefix = prefix

    async def vote_command(self, inv: Invocation, approve: bool | None) -> Reply:
        request = await self._request_in_room(inv)
        if request.state == OPEN and past_expiry(request):
            await self._evaluation.evaluate(request)  # expires it: the card says so
            request = await self._store.get(request.id) or request
        if request.state == RequestState.EXPIRED:
            raise UserError(f"Request #{request.id} expired at {when(request.expires_at)}: votes "
                            "are closed; ask again if it is still wanted.")
        if request.state != OPEN:
            raise UserError(f"Request #{request.id} is {request.state}: votes are closed.")
        counted = await self._votes.cast(request, inv.sender, approve, inv.event_id,
                                         inv.args.get("reason", ""), "command")
        if not counted:
            return Reply.of(f"That vote on request #{request.id} was already counted.")
        return Reply.of(f"Your {SYMBOL[Choice.of(approve)]} on request #{request.id} is "
                        "recorded; the card shows the count.")

    async def cancel(self, inv: Invocation) -> Reply:
        request = await self._request_in_room(inv)
        top_role = self._roles.order[-1]
        if inv.sender != request.requester and not inv.grant.has(top_role):
            raise UserError(f"Only {request.requester} or an {top_role} can cancel "
                            f"request #{request.id}.")
        if not await self._store.transition(request.id, OPEN, RequestState.CANCELLED,
                                            f"cancelled by {inv.sender}"):
            raise UserError(f"Request #{request.id} is {request.state}; it cannot be cancelled.")
        policy = Policy(**request.policy)
        closed = await self._store.get(request.id)
        assert closed is not None
        await self._record.edit_card(closed, policy, await self._counts.count(closed, policy),
                                     f"cancelled by {inv.sender}")
        await self._record.close_audit(closed, "cancelled", inv.sender)
        return Reply.of(f"Request #{request.id} is cancelled.")

    async def pending(self, inv: Invocation) -> Reply:
        requests = await self._store.open_requests(inv.room_id)
        if not requests:
            return Reply.of("No open requests in this room.")
        lines = ["**Open requests:**"]
        for request in requests:
            policy = Policy(**request.policy)
            result = await self._counts.count(request, policy)
            expires = time.strftime("%H:%M UTC", time.gmtime(request.expires_at))
            deadline = "decided" if policy.lazy_seconds else "expires"
            waiting = (f"; not voted yet: {', '.join(result.waiting_for())}"
                       if result.not_voted else "")
            lines.append(f"- #{request.id} {request.plan_text.splitlines()[0]} (by "
                         f"{request.requester}; votes {result.progress}{waiting}; "
                         f"{deadline} {expires})")
        return Reply.of("\n".join(lines))

    async def _request_in_room(self, inv: Invocation) -> ApprovalRequest:
        text = inv.args.get("id", "").lstrip("#")
        # ASCII digits within range only ("²".isdigit() is true); bind has checked this already.
        if not (text.isascii() and text.isdigit()) or len(text) > 9:
            raise UserError(
                f"`{shown(text)}` is not a request number; `{self._prefix}pending` lists them.")
        request = await self._store.get(int(text))
        if request is None or request.room_id != inv.room_id:
            raise NotFound(f"There is no request #{text} in this room.")
        return request
