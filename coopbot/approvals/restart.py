"""After a restart: requests an earlier run left `running` are closed as interrupted, and the
reactions cast on open cards while the bot was down are counted (redacted ones dropped)."""

from __future__ import annotations

import logging

from coopbot.approvals.inflight import InFlight
from coopbot.approvals.policy import Policy
from coopbot.approvals.run import ApprovedRun
from coopbot.approvals.tallying import Evaluation, VoteCount
from coopbot.approvals.votes import Votes
from coopbot.errors import CoopbotError
from coopbot.ids import EventID, RoomID
from coopbot.ports import CardPoster
from coopbot.store.approvals import RUNNING, ApprovalRequest, ApprovalStore

log = logging.getLogger(__name__)


class Restart:
    def __init__(self, *, store: ApprovalStore, inflight: InFlight, poster: CardPoster,
                 counts: VoteCount, votes: Votes, evaluation: Evaluation,
                 run: ApprovedRun) -> None:
        self._store = store
        self._inflight = inflight
        self._poster = poster
        self._counts = counts
        self._votes = votes
        self._evaluation = evaluation
        self._run = run

    async def resolve_interrupted(self) -> int:
        """At start-up: close the requests an earlier run left `running` (it stopped, or could
        not finish reporting) as interrupted, with their card and audit row."""
        resolved = 0
        for request in await self._store.in_state(RUNNING):
            if self._inflight.running_here(request.id):
                continue
            try:
                policy = Policy(**request.policy)
                await self._run.close(
                    request, policy, await self._counts.count_or_none(request, policy),
                    self._run.interrupted(request,
                                          "coopbot stopped before it recorded the outcome"))
            except Exception:
                log.exception("could not close interrupted request %s", request.id)
                continue
            resolved += 1
            log.warning("request %s (%s %s) was left running by an earlier run: interrupted",
                        request.id, request.operation, request.app)
        return resolved

    async def catch_up(self) -> None:
        """Count reactions cast while the bot was down (from the card's relations), drop
        reaction votes whose reaction was redacted meanwhile, re-tally."""
        for request in await self._store.open_requests():
            if request.card_event_id is None:
                continue
            try:
                await self._catch_up(request)
            except CoopbotError as error:
                log.warning("could not catch up votes of request %s: %s", request.id, error)
            except Exception:  # the next request still gets its votes
                log.exception("could not catch up votes of request %s", request.id)

    async def _catch_up(self, request: ApprovalRequest) -> None:
        assert request.card_event_id is not None
        reactions = await self._poster.reactions_to(
            RoomID(request.room_id), EventID(request.card_event_id))
        present = {r.event_id for r in reactions}
        stale = {v.event_id for v in await self._store.votes(request.id)
                 if v.via == "reaction" and v.event_id not in present}
        await self._store.drop_votes_by_event(request.id, stale)
        for reaction in reactions:
            await self._votes.reaction(reaction)
        await self._evaluation.evaluate(request)
