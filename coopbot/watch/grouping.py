"""Related alerts become one message: per app (or per server) and per short window. Pure.

A failed deploy is several alerts within seconds (tasks failing, the update rolled back, the
version label put back); a room wants one message about it. The window opens with a group's
first alert and is not extended by later ones, so a flapping app still gets a message per
window instead of never.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from coopbot.watch.alerts import SEVERITY_RANK, Alert

GroupKey = tuple[str, str | None]


@dataclass
class _Pending:
    due: float
    alerts: list[Alert] = field(default_factory=list)


class Grouper:
    """Holds alerts until their group's window ends. Times are the caller's monotonic clock."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._pending: dict[GroupKey, _Pending] = {}

    def __len__(self) -> int:
        return sum(len(pending.alerts) for pending in self._pending.values())

    def add(self, alert: Alert, now: float) -> None:
        pending = self._pending.setdefault(alert.group, _Pending(now + self.window))
        pending.alerts.append(alert)

    def next_due(self) -> float | None:
        return min((p.due for p in self._pending.values()), default=None)

    def due(self, now: float) -> list[Alert]:
        """The groups whose window has ended, merged, oldest first."""
        ready = [key for key, pending in self._pending.items() if pending.due <= now]
        return self._take(ready)

    def drain(self) -> list[Alert]:
        """Everything still held (on shutdown: better early than lost)."""
        return self._take(list(self._pending))

    def _take(self, keys: list[GroupKey]) -> list[Alert]:
        keys.sort(key=lambda key: self._pending[key].due)
        return [merge(self._pending.pop(key).alerts) for key in keys]


def merge(alerts: Sequence[Alert]) -> Alert:
    """One alert standing for `alerts` (all of one group): itself if alone, else a "grouped"
    alert whose message has one line per part and whose severity is the worst part's."""
    if not alerts:
        raise ValueError("nothing to merge")
    if len(alerts) == 1:
        return alerts[0]
    parts = tuple(part for alert in alerts for part in (alert.parts or (alert,)))
    first = parts[0]
    nodes = {part.node for part in parts}
    return Alert(
        kind="grouped",
        server=first.server,
        app=first.app,
        node=first.node if len(nodes) == 1 else None,
        severity=max((part.severity for part in parts), key=SEVERITY_RANK.__getitem__),
        message="\n".join(part.message for part in parts),
        key=f"{first.server}/group/{first.app or '-'}",
        state=",".join(part.state for part in parts),
        recovered=all(part.recovered for part in parts),
        initial=all(part.initial for part in parts),
        at=max(part.at for part in parts),
        parts=parts,
    )
