"""What is being watched and what is wrong right now, for a `!watch` command."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from coopbot.watch.alerts import AlertKind, Severity


@dataclass(frozen=True)
class Problem:
    kind: AlertKind
    severity: Severity
    message: str  # room-safe sentence
    key: str
    app: str | None
    node: str | None
    since: float  # epoch seconds, when the watcher first saw it


@dataclass(frozen=True)
class ServerWatch:
    server: str
    reachable: bool | None  # None: no answer and no failure yet (just started)
    since: float | None  # when `reachable` last changed (epoch s)
    last_read: float | None  # the last successful reading (epoch s)
    apps: Mapping[str, str]  # stack -> version label, as last read
    nodes: int
    problems: tuple[Problem, ...]  # as last known (kept while the server is unreachable)


@dataclass(frozen=True)
class WatchSnapshot:
    servers: tuple[ServerWatch, ...]
    pending_alerts: int  # alerts held in a grouping window, not yet emitted

    @property
    def problems(self) -> tuple[Problem, ...]:
        return tuple(problem for server in self.servers for problem in server.problems)

    def lines(self) -> list[str]:
        """A room-safe summary: one line per server, then one per problem."""
        lines: list[str] = []
        for server in self.servers:
            state = {True: "reachable", False: "UNREACHABLE", None: "connecting"}[server.reachable]
            lines.append(
                f"{server.server}: {state}, {len(server.apps)} apps, {server.nodes} nodes, "
                f"{len(server.problems) or 'no'} problems"
            )
            lines += [f"  {problem.severity}: {problem.message}" for problem in server.problems]
        return lines or ["No server is being watched."]
