"""What the watcher tells the co-op: typed alerts with a room-safe sentence each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["info", "warning", "critical"]
AlertKind = Literal[
    "version",  # an app's version label changed, appeared or vanished outside coopbot
    "update",  # a service update rolled back or paused
    "failing",  # a service's tasks fail repeatedly
    "overdue",  # a service has not converged within its app's timeout
    "no task",  # a service should run but no task of it runs (drained, down, no suitable node)
    "node",  # a node is down, drained or paused
    "resources",  # a node's disk, inodes or memory are above their threshold
    "reachability",  # the server's Docker engine cannot be reached
    "grouped",  # several of the above about one app (or server) within one window
]

SEVERITY_RANK: dict[Severity, int] = {"info": 0, "warning": 1, "critical": 2}
RECOVERED = "ok"  # the state of a recovered alert's key


@dataclass(frozen=True)
class Alert:
    """One thing to announce.

    `message` is a sentence safe to post in a room: built from names, versions and counts only,
    never from raw daemon text. `key` names the condition ("srv/app/blog/service/blog_app/update")
    and `state` its new value: an alert is only made when a key's state changes, so the same
    alert is never repeated. A recovery has `recovered=True` and `state="ok"`. `initial` marks
    a problem that was already there when watching began. A grouped alert (kind "grouped")
    holds its alerts in `parts` and joins their messages, one per line.
    """

    kind: AlertKind
    server: str
    app: str | None  # the stack name, for app alerts
    node: str | None  # the node's hostname, for node alerts
    severity: Severity
    message: str
    key: str
    state: str
    recovered: bool = False
    initial: bool = False
    at: float = 0.0  # epoch seconds
    parts: tuple[Alert, ...] = ()

    @property
    def group(self) -> tuple[str, str | None]:
        """Alerts with the same group within one window become one message: per app, and
        per server for node and server alerts."""
        return (self.server, self.app)


@dataclass(frozen=True)
class VersionChange:
    """An app's version label changed (`old` None: the app appeared; `new` None: it vanished).

    `last_seen` (epoch s) is when the watcher last saw `old` in place: a coopbot operation on
    the app since then explains the change (the watcher may have been disconnected meanwhile).
    """

    server: str
    app: str
    old: str | None
    new: str | None
    last_seen: float
    at: float
