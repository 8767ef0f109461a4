"""Swarm watcher: Docker events of every server turned into grouped, de-duplicated alerts.

    SwarmWatcher(pool, names, is_coopbot_operation=..., emit=...).run(stop)
      └── ServerLoop per server     events -> re-read (view.py) -> ServerTracker
            ServerTracker           conditions.py + versions.py -> transitions.py (suppression)
      └── Grouper                   one message per app (or server) per window
"""

from coopbot.watch.alerts import Alert, AlertKind, Severity, VersionChange
from coopbot.watch.snapshot import Problem, ServerWatch, WatchSnapshot
from coopbot.watch.timings import WatchTimings
from coopbot.watch.watcher import Emit, OperationCheck, SwarmWatcher

__all__ = [
    "Alert",
    "AlertKind",
    "Emit",
    "OperationCheck",
    "Problem",
    "ServerWatch",
    "Severity",
    "SwarmWatcher",
    "VersionChange",
    "WatchSnapshot",
    "WatchTimings",
]
