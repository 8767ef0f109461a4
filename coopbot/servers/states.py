"""Small immutable views of a server's swarm, so no Docker SDK object leaves this package."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

SwarmRole = Literal["manager", "worker", "inactive"]
# "healthy": every running task passed its healthcheck (swarm keeps a task "starting" until
# then); "starting": some task is still waiting for its first healthy check (start_period);
# "unhealthy": tasks are being killed for failing their healthcheck; "none": no healthcheck
# in the service spec (an image's own HEALTHCHECK still holds tasks in "starting").
Health = Literal["healthy", "starting", "unhealthy", "none", "no running task"]

UPDATE_IN_PROGRESS = frozenset({"updating", "rollback_started"})
UPDATE_FAILED = frozenset({"paused", "rollback_paused", "rollback_completed"})


@dataclass(frozen=True)
class NodeState:
    hostname: str
    role: str  # "manager" | "worker"
    state: str  # "ready" | "down" | "unknown" | "disconnected"
    availability: str  # "active" | "pause" | "drain"
    leader: bool = False
    node_id: str = ""
    engine_version: str = "?"
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerInfo:
    server: str
    docker_version: str
    api_version: str
    swarm_role: SwarmRole
    nodes: tuple[NodeState, ...]
    stack_count: int

    @property
    def node_count(self) -> int:
        return len(self.nodes)

    @property
    def node_states(self) -> dict[str, int]:
        """How many nodes are in each state, e.g. {"ready": 2, "down": 1}."""
        return dict(Counter(node.state for node in self.nodes))


@dataclass(frozen=True)
class ServiceState:
    name: str  # full swarm name, e.g. "blog_example_com_app"
    short_name: str  # without the stack prefix, e.g. "app"
    stack: str
    image: str  # without the @sha256 digest
    mode: str  # "replicated" | "global" | "replicated-job" | "global-job"
    replicas_desired: int
    replicas_running: int  # tasks running now, any spec version (what `docker service ls` shows)
    replicas_updated: int  # running tasks of the CURRENT spec (daemon's "_up-to-date" filter)
    update_state: str | None  # None if never updated, else "updating", "completed", "paused", ...
    update_message: str
    last_error: str | None  # the newest task error the daemon reported, verbatim
    health: Health
    labels: Mapping[str, str] = field(default_factory=dict)
    # Tasks of the current spec that swarm rejected (no such image, invalid mount, ...), and
    # the newest error of a current-spec task: a new service has no update status that could
    # say it failed, so these do.
    rejections: int = 0
    current_error: str | None = None
    # A current-spec task swarm cannot place (e.g. "no suitable node"): it waits with an error.
    unplaceable: bool = False
    # The newest task that failed or was rejected, any spec (after a rollback the failing spec
    # is no longer the current one): its own logs explain a failure, the healthy tasks' not.
    failed_task: str | None = None
    # Hostnames of the nodes its live tasks are on (running or on their way), sorted.
    nodes: tuple[str, ...] = ()
    # The newest error of the service's current task (the one swarm keeps trying to run).
    task_error: str | None = None
    # Hostnames of every node its remembered tasks (any state) were on, and of the newest's.
    recent_nodes: tuple[str, ...] = ()
    last_node: str | None = None

    @property
    def update_failed(self) -> bool:
        return self.update_state in UPDATE_FAILED

    @property
    def updating(self) -> bool:
        return self.update_state in UPDATE_IN_PROGRESS

    @property
    def converged(self) -> bool:
        """All desired tasks run the current spec and no update is running or failed."""
        return (
            self.replicas_updated >= self.replicas_desired
            and not self.updating
            and not self.update_failed
        )


@dataclass(frozen=True)
class ServiceFailure:
    """Why one service did not converge.

    `reason` is room-safe (built from states and counts). `task_error` is the daemon's text
    and may name paths. `raw_log_tail` is the service's RAW output: it may hold secrets or env
    values, so callers must redact it (the app env values) before it reaches a room or a log.
    """

    service: str
    short_name: str
    reason: str
    update_state: str | None
    task_error: str | None
    raw_log_tail: tuple[str, ...]


@dataclass(frozen=True)
class ConvergenceProgress:
    stack: str
    elapsed: float
    services: tuple[ServiceState, ...]
    pending: tuple[str, ...]  # short names of services not converged yet


@dataclass(frozen=True)
class ConvergenceResult:
    stack: str
    ok: bool
    timed_out: bool
    elapsed: float
    services: tuple[ServiceState, ...]
    failures: tuple[ServiceFailure, ...]

    @property
    def rolled_back(self) -> bool:
        return any((f.update_state or "").startswith("rollback") for f in self.failures)
