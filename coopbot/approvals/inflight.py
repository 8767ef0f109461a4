"""What the parts of approvals share about requests in flight: one lock per request (votes on
a request are evaluated one at a time, so card edits stay in order), the requests this process
is running (the start-up clean-up leaves them alone), and when a request's voting closes."""

from __future__ import annotations

import asyncio
import time

from coopbot.store.approvals import ApprovalRequest


def past_expiry(request: ApprovalRequest, now: float | None = None) -> bool:
    """Votes reaching the bot at or after `expires_at` come too late (the bot's clock decides,
    never a sender's timestamp)."""
    return (time.time() if now is None else now) >= request.expires_at


class InFlight:
    def __init__(self) -> None:
        self._locks: dict[int, asyncio.Lock] = {}
        self._running_here: set[int] = set()

    def lock(self, request_id: int) -> asyncio.Lock:
        return self._locks.setdefault(request_id, asyncio.Lock())

    def started(self, request_id: int) -> None:
        self._running_here.add(request_id)

    def finished(self, request_id: int) -> None:
        self._running_here.discard(request_id)

    def running_here(self, request_id: int) -> bool:
        return request_id in self._running_here
