"""The watcher's timings and thresholds: defaults for production, shrunk by tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WatchTimings:
    group_window: float = 10.0  # alerts about one app within this many seconds: one message
    debounce: float = 0.3  # after an event, wait this long for its siblings before re-reading
    poll_interval: float = 30.0  # re-read anyway: events of other nodes, time-based conditions
    backoff_initial: float = 1.0  # first reconnect delay after a failed connection
    backoff_max: float = 60.0  # reconnect delays double up to this
    failure_window: float = 300.0  # task failures counted over this many seconds
    failure_threshold: int = 3  # this many failed tasks in the window: "failing repeatedly"
    default_timeout: float = 300.0  # convergence timeout of apps without a timeout label
    # Re-read this many seconds after a node event: tasks on other nodes move (or fail to)
    # without an event the manager's stream would show.
    node_followups: tuple[float, ...] = (2.0, 6.0)

    def __post_init__(self) -> None:
        if min(self.group_window, self.debounce) < 0 or self.failure_threshold < 1:
            raise ValueError("watch timings must not be negative; the threshold at least 1")
        if min(self.poll_interval, self.backoff_initial, self.failure_window) <= 0:
            raise ValueError("watch intervals must be positive")
