"""Things that happened, for whoever watches: notifications, metrics, logs.

The core emits small immutable events; observers subscribe at the composition root. An
observer's failure is logged and never breaks the work that emitted the event.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommandHandled:
    command: str
    decision: str  # ran, denied, invalid, expired, ignored, result
    room_id: str


@dataclass(frozen=True)
class OperationFinished:
    operation_id: str
    kind: str
    app: str
    server: str
    from_version: str | None
    to_version: str | None
    requester: str
    approvers: tuple[str, ...]
    room_id: str | None
    event_id: str | None  # the command that asked: the thread the details are in
    result: str  # ok, failed, interrupted
    summary: str
    duration: float | None


@dataclass(frozen=True)
class SyncCompleted:
    lag_seconds: float  # time since the previous successful sync finished


Event = CommandHandled | OperationFinished | SyncCompleted
Observer = Callable[[Event], Awaitable[None]]


class Observers:
    def __init__(self) -> None:
        self._observers: list[Observer] = []

    def subscribe(self, observer: Observer) -> None:
        self._observers.append(observer)

    async def emit(self, event: Event) -> None:
        for observer in list(self._observers):
            try:
                await observer(event)
            except Exception:
                log.exception("observer %r failed on %s", observer, type(event).__name__)
