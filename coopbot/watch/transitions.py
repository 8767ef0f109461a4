"""Alerts from two sets of conditions: only what changed state. Pure.

This is the whole of suppression: an alert is made when a key appears, changes state or
clears, never while it merely persists, so a problem is announced once however often the
server is re-read, and again only after it changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from coopbot.watch.alerts import RECOVERED, Alert
from coopbot.watch.conditions import Condition

STARTUP_NOTE = " (already so when watching began)"


def transitions(
    server: str, before: Mapping[str, Condition], after: Mapping[str, Condition], at: float
) -> list[Alert]:
    alerts = [
        alert_of(server, condition, at)
        for key, condition in after.items()
        if key not in before or before[key].state != condition.state
    ]
    alerts += [
        recovery_of(server, condition, at)
        for key, condition in before.items()
        if key not in after and condition.recovery is not None
    ]
    return alerts


def initial_alerts(server: str, conditions: Iterable[Condition], at: float) -> list[Alert]:
    """At start-up only what is broken is worth a message; the rest is the known baseline."""
    return [alert_of(server, c, at, initial=True) for c in conditions if c.broken]


def alert_of(server: str, condition: Condition, at: float, *, initial: bool = False) -> Alert:
    message = condition.message
    if initial:
        message = message.removesuffix(".") + STARTUP_NOTE + "."
    return Alert(
        kind=condition.kind, server=server, app=condition.app, node=condition.node,
        severity=condition.severity, message=message, key=condition.key, state=condition.state,
        initial=initial, at=at,
    )


def recovery_of(server: str, condition: Condition, at: float) -> Alert:
    return Alert(
        kind=condition.kind, server=server, app=condition.app, node=condition.node,
        severity="info", message=condition.recovery or "", key=condition.key, state=RECOVERED,
        recovered=True, at=at,
    )
