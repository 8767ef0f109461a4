"""Expiry: a request past its deadline is decided by whichever comes first, the timer
(`expire_due`, every few seconds) or a vote arriving (through the evaluation). Under lazy
consensus it passes then (no block, enough taking part); otherwise it expires."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from coopbot.approvals.inflight import InFlight, past_expiry
from coopbot.approvals.policy import Policy
from coopbot.approvals.record import RequestRecord
from coopbot.approvals.run import ApprovedRun
from coopbot.approvals.tally import Outcome, Tally
from coopbot.errors import CoopbotError
from coopbot.store.approvals import OPEN, ApprovalRequest, ApprovalStore, RequestState

log = logging.getLogger(__name__)

EXPIRY_CHECK_SECONDS = 2.0
EXPIRED_STATUS = "expired without enough votes; ask again if still wanted"

LAZY_FAILED_STATUS = "time ran out without consent: {why}; ask again if still wanted"
# Lazy consensus passes only if the bot was watching when the time ran out: a block cast while
# it was down would reach it after the deadline and not count, so then nothing passes.
LAZY_GRACE_SECONDS = 60.0
LAZY_UNWATCHED_STATUS = ("time ran out while coopbot was not running, so it cannot tell whether "
                         "anyone blocked in time; ask again if still wanted")


class Counts(Protocol):
    async def count(self, request: ApprovalRequest, policy: Policy, *,
                    deadline_passed: bool = False) -> Tally: ...

    async def count_or_none(self, request: ApprovalRequest, policy: Policy) -> Tally | None: ...


class Expiry:
    def __init__(self, *, store: ApprovalStore, inflight: InFlight, record: RequestRecord,
                 counts: Counts, run: ApprovedRun) -> None:
        self._store = store
        self._inflight = inflight
        self._record = record
        self._counts = counts
        self._run = run
        self._failures: set[int] = set()  # requests whose expiry failed (logged once)

    async def expire_due(self) -> int:
        expired = 0
        for request in await self._store.open_requests():
            if not past_expiry(request):
                continue
            try:
                async with self._inflight.lock(request.id):
                    expired += await self.expire(request)
            except Exception:
                # One broken request must not keep the others from expiring.
                if request.id not in self._failures:
                    self._failures.add(request.id)
                    log.exception("could not expire request %s", request.id)
        return expired

    async def expire(self, request: ApprovalRequest) -> bool:
        """At the deadline (the caller holds the request's lock): lazy consensus passes, or
        open -> expired; False if already closed."""
        policy = Policy(**request.policy)
        status, detail = EXPIRED_STATUS, ""
        result: Tally | None = None
        if policy.lazy_seconds:
            # Only the votes that came before the deadline are stored: they decide.
            result = await self._counts.count(request, policy, deadline_passed=True)
            watched = time.time() - request.expires_at <= LAZY_GRACE_SECONDS
            if result.outcome == Outcome.LAZY and watched:
                return await self._run.begin(request, policy, result)
            detail = "blocked" if result.no else f"{result.progress}"
            status = LAZY_FAILED_STATUS.format(why=detail)
            if result.outcome == Outcome.LAZY:
                detail, status = "not watched at the deadline", LAZY_UNWATCHED_STATUS
        if not await self._store.transition(request.id, OPEN, RequestState.EXPIRED, "expired"):
            return False
        closed = await self._store.get(request.id)
        assert closed is not None
        await self._record.close_audit(closed, RequestState.EXPIRED, detail)
        if result is None:
            result = await self._counts.count_or_none(closed, policy)
        await self._record.edit_card(closed, policy, result, status)
        return True


async def run_expiry(expire_due: Callable[[], Awaitable[int]], stop: asyncio.Event) -> None:
    """The timer: `expire_due` every few seconds until `stop` is set."""
    while not stop.is_set():
        try:
            await expire_due()
        except CoopbotError as error:
            log.warning("expiry check failed: %s", error)
        try:
            await asyncio.wait_for(stop.wait(), EXPIRY_CHECK_SECONDS)
        except TimeoutError:
            pass
