"""Turn Engine API dicts (services, tasks, nodes) into the package's frozen states. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from coopbot.servers.states import Health, NodeState, ServiceState

STACK_LABEL = "com.docker.stack.namespace"

_MODES = {
    "Replicated": "replicated",
    "Global": "global",
    "ReplicatedJob": "replicated-job",
    "GlobalJob": "global-job",
}

ApiDict = Mapping[str, Any]


def strip_digest(image: str) -> str:
    """`app:v1@sha256:...` -> `app:v1`: the digest is noise in a room."""
    return image.split("@", 1)[0]


def short_name(name: str, stack: str) -> str:
    prefix = f"{stack}_"
    return name[len(prefix) :] if stack and name.startswith(prefix) else name


def service_state(
    service: ApiDict, tasks: Iterable[ApiDict], current: Iterable[ApiDict] = (),
    node_names: Mapping[str, str] | None = None,
) -> ServiceState:
    """`tasks` are this service's tasks (any state); `current` those of them the daemon
    reports as up to date with the current spec (its own test, so a spec change is never
    guessed from timestamps); `node_names` maps node ids to hostnames."""
    current = list(current)
    tasks = list(tasks)
    names = node_names or {}
    updated_running = sum(1 for t in current if t.get("DesiredState") == "running"
                          and t["Status"].get("State") == "running")
    spec = service["Spec"]
    labels: dict[str, str] = dict(spec.get("Labels") or {})
    stack = labels.get(STACK_LABEL, "")
    container = spec["TaskTemplate"].get("ContainerSpec") or {}
    mode = _MODES.get(next(iter(spec.get("Mode") or {"Replicated": {}})), "replicated")
    live = [t for t in tasks if t.get("DesiredState") == "running"]
    running = sum(1 for t in live if t["Status"]["State"] == "running")
    starting = sum(1 for t in live if t["Status"]["State"] == "starting")
    desired = _desired(service, mode)
    last_error = _last_error(tasks)
    update = service.get("UpdateStatus") or {}
    return ServiceState(
        name=spec["Name"],
        short_name=short_name(spec["Name"], stack),
        stack=stack,
        image=strip_digest(str(container.get("Image", ""))),
        mode=mode,
        replicas_desired=desired,
        replicas_running=running,
        replicas_updated=updated_running,
        update_state=update.get("State"),
        update_message=str(update.get("Message", "")),
        last_error=last_error,
        health=_health(container, starting, running, desired, last_error),
        nodes=tuple(sorted({_node_name(names, t) for t in live if t.get("NodeID")})),
        task_error=_last_error(live),
        recent_nodes=tuple(sorted({_node_name(names, t) for t in tasks if t.get("NodeID")})),
        last_node=next((_node_name(names, t) for t in sorted(
            tasks, key=lambda t: timestamp_key(str(t["Status"].get("Timestamp", ""))),
            reverse=True) if t.get("NodeID")), None),
        labels=labels,
        rejections=sum(1 for t in current if t["Status"].get("State") == "rejected"),
        current_error=_last_error(current),
        unplaceable=any(t.get("DesiredState") == "running"
                        and t["Status"].get("State") == "pending" and t["Status"].get("Err")
                        for t in current),
        failed_task=_newest_failed(tasks),
    )


def _newest_failed(tasks: Iterable[ApiDict]) -> str | None:
    failed = [t for t in tasks
              if t["Status"].get("State") in ("failed", "rejected") and t.get("ID")]
    if not failed:
        return None
    return str(max(failed, key=lambda t: timestamp_key(t["Status"].get("Timestamp", "")))["ID"])




def _node_name(names: Mapping[str, str], task: ApiDict) -> str:
    node = str(task["NodeID"])
    return names.get(node, node[:12])


def _desired(service: ApiDict, mode: str) -> int:
    if mode == "replicated":
        return int(service["Spec"]["Mode"]["Replicated"].get("Replicas", 1))
    if mode == "global":
        # Only the daemon knows how many nodes are eligible (needs `status=True` on the list).
        return int((service.get("ServiceStatus") or {}).get("DesiredTasks", 0))
    return 0  # jobs run to completion: they never hold up convergence


def _last_error(tasks: Iterable[ApiDict]) -> str | None:
    failed = [t for t in tasks if t["Status"].get("Err")]
    if not failed:
        return None
    newest = max(failed, key=lambda t: timestamp_key(t["Status"].get("Timestamp", "")))
    return str(newest["Status"]["Err"])


def timestamp_key(stamp: str) -> str:
    """RFC 3339 with Go's trimmed nanoseconds sorts wrongly as text: pad the fraction."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    return f"{head}.{frac.ljust(9, '0')}"


def _health(
    container: ApiDict, starting: int, running: int, desired: int, last_error: str | None
) -> Health:
    test = (container.get("Healthcheck") or {}).get("Test") or []
    has_check = bool(test) and test[0] != "NONE"
    if starting:
        return "starting"
    if running < desired and last_error and "unhealthy" in last_error:
        return "unhealthy"
    if desired > 0 and running == 0:
        return "no running task"
    return "healthy" if has_check else "none"


def node_state(node: ApiDict) -> NodeState:
    description = node.get("Description") or {}
    return NodeState(
        hostname=str(description.get("Hostname", node.get("ID", "?"))),
        role=str(node["Spec"].get("Role", "worker")),
        state=str(node.get("Status", {}).get("State", "unknown")),
        availability=str(node["Spec"].get("Availability", "active")),
        leader=bool((node.get("ManagerStatus") or {}).get("Leader", False)),
        node_id=str(node.get("ID", "")),
        engine_version=str((description.get("Engine") or {}).get("EngineVersion", "?")),
        labels=dict(node["Spec"].get("Labels") or {}),
    )


def node_names(nodes: Iterable[ApiDict]) -> dict[str, str]:
    """Node id -> hostname."""
    return {str(n.get("ID", "")): str((n.get("Description") or {}).get("Hostname", "?"))
            for n in nodes}


def stack_count(services: Iterable[ApiDict]) -> int:
    return len({(s["Spec"].get("Labels") or {}).get(STACK_LABEL) for s in services} - {None})
