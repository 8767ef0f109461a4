"""Which version each app runs, and the alert when that changes. Pure.

Co-op Cloud's version of an app is the label `coop-cloud.<stack>.version` on its `app` service:
abra and coopbot both set it on every deploy, so a change that no coopbot operation explains
was made by hand (abra, the docker CLI, an autoupdater).
"""

from __future__ import annotations

from collections.abc import Mapping

from coopbot.recipes.labels import deployed_version
from coopbot.servers.states import ServiceState
from coopbot.watch.alerts import Alert, Severity, VersionChange


def app_versions(stacks: Mapping[str, tuple[ServiceState, ...]]) -> dict[str, str]:
    """stack -> version, for the stacks that carry a version label (Co-op Cloud apps)."""
    versions: dict[str, str] = {}
    for stack, services in stacks.items():
        version = deployed_version(services, stack)
        if version:
            versions[stack] = version
    return versions


def version_changes(
    server: str,
    before: Mapping[str, str],
    after: Mapping[str, str],
    last_seen: Mapping[str, float],
    at: float,
) -> list[VersionChange]:
    """Apps whose version changed, appeared or vanished between two readings."""
    changes: list[VersionChange] = []
    for app in sorted(set(before) | set(after)):
        old, new = before.get(app), after.get(app)
        if old != new:
            changes.append(VersionChange(server, app, old, new, last_seen.get(app, at), at))
    return changes


def version_alert(change: VersionChange, *, still_deployed: bool) -> Alert:
    """The announcement of a change that no coopbot operation explains."""
    app, server = change.app, change.server
    severity: Severity
    if change.old is None:
        severity, state = "info", change.new or ""
        message = f"App {app} was deployed on server {server} at {change.new} outside coopbot."
    elif change.new is None:
        severity, state = "warning", "absent"
        message = (
            f"App {app} on server {server} lost its version label ({change.old}) outside coopbot."
            if still_deployed
            else f"App {app} ({change.old}) was removed from server {server} outside coopbot."
        )
    else:
        severity, state = "warning", change.new
        message = (
            f"App {app} on server {server} changed from {change.old} to {change.new} "
            "outside coopbot."
        )
    return Alert(
        kind="version", server=server, app=app, node=None, severity=severity, message=message,
        key=f"{server}/app/{app}/version", state=state, at=change.at,
    )
