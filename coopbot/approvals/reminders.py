"""The one reminder per request, at the policy's `remind` point before its deadline: a message
in the card's thread naming who has not voted yet. Only people who opted in (config
`reminder_mentions`) are mentioned; everyone else is named without a ping."""

from __future__ import annotations

import logging
import time

from coopbot.approvals.card import when
from coopbot.approvals.electorate import Voters
from coopbot.approvals.policy import Policy
from coopbot.approvals.tally import Tally
from coopbot.approvals.tallying import VoteCount
from coopbot.ids import EventID, RoomID
from coopbot.messages import ReplyTarget
from coopbot.ports import CardPoster
from coopbot.replies import Reply
from coopbot.store.approvals import ApprovalRequest, ApprovalStore

log = logging.getLogger(__name__)


class Reminders:
    def __init__(self, *, store: ApprovalStore, poster: CardPoster, counts: VoteCount,
                 voters: Voters, prefix: str) -> None:
        self._store = store
        self._poster = poster
        self._counts = counts
        self._voters = voters
        self._prefix = prefix

    async def remind_due(self, now: float | None = None) -> int:
        sent = 0
        moment = time.time() if now is None else now
        for request in await self._store.open_requests():
            policy = Policy(**request.policy)
            if (not policy.remind_seconds or request.reminded_at is not None
                    or request.card_event_id is None or moment >= request.expires_at
                    or moment < request.expires_at - policy.remind_seconds):
                continue
            try:
                sent += await self._remind(request, policy)
            except Exception:  # the next request still gets its reminder
                log.exception("could not remind the room of request %s", request.id)
        return sent

    async def _remind(self, request: ApprovalRequest, policy: Policy) -> bool:
        result = await self._counts.count(request, policy)
        # Claimed before it is sent: a reminder is never posted twice, even across restarts.
        if not await self._store.mark_reminded(request.id):
            return False
        names = result.waiting_for()
        if not names:
            return False
        assert request.card_event_id is not None
        await self._poster.reply(
            ReplyTarget(RoomID(request.room_id), EventID(request.card_event_id),
                        EventID(request.thread_root)),
            self.reminder(request, policy, result, names), key=f"approval/{request.id}/reminder")
        return True

    def reminder(self, request: ApprovalRequest, policy: Policy, result: Tally,
                 names: list[str]) -> Reply:
        mentioned = tuple(sorted(result.people_waited_for() & self._voters.mentions))
        closes = "is decided by lazy consensus" if policy.lazy_seconds else "expires"
        text = (f"⏰ Request #{request.id} ({request.plan_text.splitlines()[0]}) {closes} "
                f"at {when(request.expires_at)}. Not voted yet: {', '.join(names)}. "
                f"Vote on the card, or `!approve {request.id}`, `!abstain {request.id}` or "
                f"`!deny {request.id}`.")
        return Reply.of(text).mentioning(mentioned)
