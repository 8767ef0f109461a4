"""Recent task failures per service, from the daemon's task history. Pure.

Swarm keeps a few finished tasks per slot (TaskHistoryRetentionLimit, 5 by default), so a
crash-looping service shows up as several failed tasks in a short time. Counts are bounded by
that limit: enough to tell "failed once" from "failing repeatedly".
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from coopbot.servers.swarm_parse import ApiDict

# "rejected": the node could not even start it (missing image, bad mount); "failed": it ran and
# exited non-zero or was killed as unhealthy. "shutdown"/"complete" are normal ends.
FAILED_STATES = frozenset({"failed", "rejected"})
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


@dataclass(frozen=True)
class TaskFailures:
    """`latest_error` is the daemon's text, verbatim: it may name paths, so it is not room-safe."""

    service: str  # full swarm name, e.g. "blog_example_com_app"
    count: int
    latest_error: str | None
    latest_at: float  # epoch seconds


def recent_failures(
    services: Iterable[ApiDict], tasks: Iterable[ApiDict], since: float
) -> dict[str, TaskFailures]:
    """Failed tasks whose last state change is at or after `since` (epoch s), by service name."""
    names = {str(s["ID"]): str(s["Spec"]["Name"]) for s in services}
    found: dict[str, list[tuple[float, str | None]]] = defaultdict(list)
    for task in tasks:
        status = task.get("Status") or {}
        name = names.get(str(task.get("ServiceID")))
        if name is None or status.get("State") not in FAILED_STATES:
            continue
        at = parse_timestamp(str(status.get("Timestamp", "")))
        if at is not None and at >= since:
            found[name].append((at, status.get("Err")))
    result: dict[str, TaskFailures] = {}
    for name, failures in found.items():
        at, error = max(failures, key=lambda failure: failure[0])
        result[name] = TaskFailures(name, len(failures), error, at)
    return result


def parse_timestamp(stamp: str) -> float | None:
    """Go's RFC 3339 with nanoseconds (`2024-05-01T12:00:00.123456789Z`) as epoch seconds."""
    match = _STAMP.match(stamp)
    if match is None:
        return None
    head, fraction, zone = match.groups()
    # Python keeps microseconds: drop the nanoseconds.
    text = f"{head}.{(fraction or '')[:6].ljust(6, '0')}{'+00:00' if zone == 'Z' else zone}"
    return datetime.fromisoformat(text).timestamp()
