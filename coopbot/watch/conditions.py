"""The problems that hold on a server right now, derived from one reading. Pure.

A condition is keyed by what it is about (a service's update, a node's state, ...) and has a
state: the watcher announces a key when its state changes, and its recovery when it clears.
Sentences name apps, services, nodes, versions and counts only: they are safe for a room.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from coopbot.errors import CoopbotError, ServerUnreachable
from coopbot.recipes.labels import running_timeout
from coopbot.servers.states import NodeState, ServiceState
from coopbot.servers.task_failures import TaskFailures
from coopbot.watch.alerts import AlertKind, Severity
from coopbot.watch.reasons import failure_reason
from coopbot.watch.timings import WatchTimings
from coopbot.watch.view import SwarmView


@dataclass(frozen=True)
class Condition:
    kind: AlertKind
    key: str
    state: str
    severity: Severity
    message: str
    recovery: str | None  # announced when the condition clears; None: it clears silently
    app: str | None = None
    node: str | None = None
    broken: bool = True  # announced when already there at start-up (a drained node is not)


def is_pending(service: ServiceState) -> bool:
    """Not converged yet. A finished rollback is not pending: the old spec runs again."""
    return service.replicas_updated < service.replicas_desired or service.updating


def derive(
    server: str, view: SwarmView, pending_since: Mapping[str, float], timings: WatchTimings
) -> dict[str, Condition]:
    """Every condition that holds in `view`. `pending_since` maps the full names of services
    that are not converged to when the watcher first saw them so."""
    found: list[Condition] = []
    every = [s for services in view.stacks.values() for s in services]
    for node in view.info.nodes:
        found += node_conditions(server, node, every)
    nodes = {node.hostname: node for node in view.info.nodes}
    for stack, services in view.stacks.items():
        timeout = running_timeout(services, stack, timings.default_timeout)
        for service in services:
            found += service_conditions(server, service, view.failures.get(service.name), timings)
            found += no_task(server, service, nodes)
            since = pending_since.get(service.name)
            if since is not None and view.at - since >= timeout:
                found.append(overdue(server, service, timeout))
    return {condition.key: condition for condition in found}


def service_conditions(
    server: str, service: ServiceState, failures: TaskFailures | None, timings: WatchTimings
) -> list[Condition]:
    found: list[Condition] = []
    subject = f"service {service.short_name} of {service.stack} on server {server}"
    base = f"{server}/app/{service.stack}/service/{service.name}"
    state = service.update_state or ""
    if state == "rollback_completed":
        # Swarm's final message is "rollback completed" whether a failure or a person asked
        # for it: a task failure in the window tells the two apart.
        failed = failures is not None or "fail" in service.update_message.lower()
        how = "failed and was rolled back" if failed else "was rolled back to its previous version"
        found.append(Condition(
            "update", f"{base}/update", state, "warning", f"The update of {subject} {how}.",
            recovery=None,  # the old version runs: nothing to recover; the next update clears it
            app=service.stack, broken=False,
        ))
    elif state in ("paused", "rollback_paused"):
        what = "rollback" if state == "rollback_paused" else "update"
        found.append(Condition(
            "update", f"{base}/update", state, "critical",
            f"The {what} of {subject} is paused after a failure: it needs a fix or a rollback.",
            recovery=f"The {what} of {subject} is no longer paused.", app=service.stack,
        ))
    if failures is not None and failures.count >= timings.failure_threshold:
        short = service.replicas_running < service.replicas_desired
        found.append(Condition(
            "failing", f"{base}/failing", "failing", "critical" if short else "warning",
            f"Tasks of {subject} failed {times(failures.count)} in the last "
            f"{duration(timings.failure_window)}; the latest "
            f"{failure_reason(failures.latest_error)}.",
            recovery=f"Tasks of {subject} stopped failing.", app=service.stack,
        ))
    return found


def no_task(server: str, service: ServiceState,
            nodes: Mapping[str, NodeState]) -> list[Condition]:
    """A service that should run but whose task swarm cannot place (a first deploy that is
    merely starting has no error, so it does not count)."""
    if not (service.replicas_desired > 0 and service.replicas_running == 0
            and service.unplaceable):
        return []
    subject = f"Service {service.short_name} of {service.stack} on server {server}"
    why = []
    where = nodes.get(service.last_node or "")
    if where is not None and where.state != "ready":
        why.append(f"its node {where.hostname} is {where.state}")
    elif where is not None and where.availability != "active":
        how = "drained" if where.availability == "drain" else "paused"
        why.append(f"its node {where.hostname} is {how}")
    if service.task_error and "no suitable node" in service.task_error:
        why.append("no other node may run it (its placement constraints)")
    reason = " and ".join(why) or "swarm cannot place its task"
    return [Condition(
        "no task", f"{server}/app/{service.stack}/service/{service.name}/no-task", "no-task",
        "critical", f"{subject} has no running task: {reason}.",
        recovery=f"{subject} runs again.", app=service.stack,
    )]


def overdue(server: str, service: ServiceState, timeout: float) -> Condition:
    subject = f"Service {service.short_name} of {service.stack} on server {server}"
    return Condition(
        "overdue", f"{server}/app/{service.stack}/service/{service.name}/overdue", "overdue",
        "critical",
        f"{subject} has not converged within {duration(timeout)}: "
        f"{service.replicas_updated} of {service.replicas_desired} tasks run its current version.",
        recovery=f"{subject} has converged again.", app=service.stack,
    )


def node_conditions(server: str, node: NodeState,
                    services: Sequence[ServiceState] = ()) -> list[Condition]:
    found: list[Condition] = []
    subject = f"Node {node.hostname} of server {server}"
    base = f"{server}/node/{node.hostname}"
    apps = _apps_on(node, services)
    # The apps' fates are part of the state: "moving" settles into "moved" or "did NOT move",
    # and that is worth a second message.
    if node.state != "ready":
        found.append(Condition(
            "node", f"{base}/state", f"{node.state}{apps}", "critical",
            f"{subject} is {node.state}.{apps}",
            recovery=f"{subject} is ready again.", node=node.hostname,
        ))
    if node.availability in ("drain", "pause"):
        what = ("drained: it runs no tasks" if node.availability == "drain"
                else "paused: it takes no new tasks")
        found.append(Condition(
            "node", f"{base}/availability", f"{node.availability}{apps}", "warning",
            f"{subject} is {what}.{apps}", recovery=f"{subject} is active again.",
            node=node.hostname, broken=False,  # usually an admin's decision, not a failure
        ))
    return found


def _apps_on(node: NodeState, services: Sequence[ServiceState]) -> str:
    """Which apps had tasks on the node, and whether they moved (never assumed)."""
    fates = []
    for service in services:
        if node.hostname not in service.recent_nodes:
            continue
        elsewhere = [n for n in service.nodes if n != node.hostname]
        if node.hostname in service.nodes:
            continue  # still there (a paused node keeps its tasks)
        if service.replicas_running >= service.replicas_desired and elsewhere:
            fate = f"moved to {', '.join(elsewhere)}"
        elif service.replicas_running == 0 and service.unplaceable:
            fate = "did NOT move: no other node may run it"
        else:
            fate = "moving"
        fates.append(f"{service.stack} (service {service.short_name}: {fate})")
    return f" Apps with tasks there: {'; '.join(fates)}." if fates else ""


def unreachable(server: str, error: CoopbotError) -> Condition:
    """The server could not be read. `str(error)` is room-safe by the error tree's contract."""
    if isinstance(error, ServerUnreachable):
        state, message = "unreachable", f"Server {server} is unreachable: {error.reason}."
    else:
        state, message = "unwatchable", f"Server {server} cannot be watched: {error}."
    return Condition(
        "reachability", f"{server}/reachability", state, "critical", message,
        recovery=f"Server {server} is reachable again.",
    )


def times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def duration(seconds: float) -> str:
    """`300` -> "5 min", `90` -> "90 s": how people say timeouts."""
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
