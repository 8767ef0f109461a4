"""Everything known about one server between readings, and the alerts each reading brings.

Pure (no I/O, times passed in), so start-up, reconnects and suppression are testable without
a swarm. The first reading is the baseline: only what is broken is announced then. After a
disconnection the last known state is kept, so what changed meanwhile is announced on return
and what did not is not announced again.
"""

from __future__ import annotations

from coopbot.errors import CoopbotError
from coopbot.recipes.labels import running_timeout
from coopbot.watch.alerts import Alert, VersionChange
from coopbot.watch.conditions import Condition, derive, is_pending, unreachable
from coopbot.watch.snapshot import Problem, ServerWatch
from coopbot.watch.timings import WatchTimings
from coopbot.watch.transitions import alert_of, initial_alerts, recovery_of, transitions
from coopbot.watch.versions import app_versions, version_alert, version_changes
from coopbot.watch.view import SwarmView

VersionNews = list[tuple[VersionChange, Alert]]


class ServerTracker:
    def __init__(self, server: str, timings: WatchTimings) -> None:
        self.server = server
        self._timings = timings
        self._conditions: dict[str, Condition] | None = None  # None until the first reading
        self._first_seen: dict[str, float] = {}  # condition key -> when it began
        self._pending_since: dict[str, float] = {}  # service -> first seen not converged
        self._overdue_at: dict[str, float] = {}  # service -> when it will be overdue
        self._versions: dict[str, str] = {}
        self._version_seen: dict[str, float] = {}  # app -> last reading that showed its version
        self._unreachable: Condition | None = None
        self._reachable: bool | None = None
        self._reachable_since: float | None = None
        self._last_view: SwarmView | None = None

    def observe(self, view: SwarmView) -> tuple[list[Alert], VersionNews]:
        """A successful reading: the alerts it brings, and version changes (each with the alert
        to emit unless a coopbot operation explains it)."""
        alerts: list[Alert] = []
        if self._unreachable is not None:
            alerts.append(recovery_of(self.server, self._unreachable, view.at))
            self._unreachable = None
        self._set_reachable(True, view.at)
        self._track_pending(view)
        conditions = derive(self.server, view, self._pending_since, self._timings)
        versions = app_versions(view.stacks)
        news: VersionNews = []
        if self._conditions is None:
            alerts += initial_alerts(self.server, conditions.values(), view.at)
        else:
            alerts += transitions(self.server, self._conditions, conditions, view.at)
            for change in version_changes(
                self.server, self._versions, versions, self._version_seen, view.at
            ):
                deployed = change.app in view.stacks
                news.append((change, version_alert(change, still_deployed=deployed)))
        self._first_seen = {key: self._first_seen.get(key, view.at) for key in conditions}
        self._conditions = conditions
        self._versions = versions
        self._version_seen = {app: view.at for app in versions}
        self._last_view = view
        return alerts, news

    def lost(self, error: CoopbotError, at: float) -> list[Alert]:
        """The server could not be reached or read: announced once per state."""
        condition = unreachable(self.server, error)
        previous, self._unreachable = self._unreachable, condition
        self._set_reachable(False, at)
        if previous is not None and previous.state == condition.state:
            return []
        if previous is None:
            self._first_seen[condition.key] = at
        never_read = self._conditions is None and previous is None
        return [alert_of(self.server, condition, at, initial=never_read)]

    def next_deadline(self) -> float | None:
        """When a service not converged yet becomes overdue (epoch s): read again then."""
        now = self._last_view.at if self._last_view else 0.0
        return min((at for at in self._overdue_at.values() if at > now), default=None)

    def snapshot(self) -> ServerWatch:
        known = list((self._conditions or {}).values())
        if self._unreachable is not None:
            known.insert(0, self._unreachable)
        problems = tuple(
            Problem(c.kind, c.severity, c.message, c.key, c.app, c.node,
                    self._first_seen.get(c.key, 0.0))
            for c in known
        )
        view = self._last_view
        return ServerWatch(
            server=self.server, reachable=self._reachable, since=self._reachable_since,
            last_read=view.at if view else None, apps=dict(self._versions),
            nodes=len(view.info.nodes) if view else 0, problems=problems,
        )

    def _set_reachable(self, reachable: bool, at: float) -> None:
        if self._reachable is not reachable:
            self._reachable, self._reachable_since = reachable, at

    def _track_pending(self, view: SwarmView) -> None:
        pending: dict[str, float] = {}
        overdue_at: dict[str, float] = {}
        for stack, services in view.stacks.items():
            timeout = running_timeout(services, stack, self._timings.default_timeout)
            for service in services:
                if is_pending(service):
                    since = self._pending_since.get(service.name, view.at)
                    pending[service.name] = since
                    overdue_at[service.name] = since + timeout
        self._pending_since, self._overdue_at = pending, overdue_at
