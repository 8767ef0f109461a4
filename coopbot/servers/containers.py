"""Plain containers next to the swarm: service volume mounts, running tasks, execs, helpers.

Backups need what stacks never do: the volumes a service mounts (from its spec), the container
of a task that runs on the node we talk to (volumes are local to a node), a command run inside
it, and a one-off helper container run to completion. The blocking SDK steps live here; the
engine runs them in its threads with its timeouts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from coopbot.servers.swarm_parse import STACK_LABEL, short_name

# Every helper carries this label, so leftovers of a crashed run can be found and removed.
HELPER_LABEL = "coopbot.helper"
ApiDict = Mapping[str, Any]


@dataclass(frozen=True)
class VolumeMount:
    """A named volume in a service's spec: `source` is the Docker volume, `target` the path
    inside the service's containers."""

    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class ServiceMounts:
    name: str  # full swarm name
    short_name: str
    labels: Mapping[str, str]
    mounts: tuple[VolumeMount, ...]
    replicated: bool
    replicas: int  # desired replicas (0 for global services)


@dataclass(frozen=True)
class RunningTask:
    service: str
    task_id: str
    container_id: str
    node_id: str


@dataclass(frozen=True)
class ExecResult:
    """RAW output (stdout and stderr interleaved): may hold secrets, redact before use."""

    exit_code: int
    output: str


@dataclass(frozen=True)
class HelperRun:
    """A helper container's exit code and RAW output streams."""

    exit_code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Bind:
    """What a helper mounts at `target`: a named volume or an absolute path on the node."""

    source: str
    target: str
    read_only: bool = True

    def spec(self) -> str:
        return f"{self.source}:{self.target}:{'ro' if self.read_only else 'rw'}"


def service_mounts(service: ApiDict) -> ServiceMounts:
    """The volume mounts (not binds or tmpfs) of one service, from the Engine API dict."""
    spec = service["Spec"]
    labels: dict[str, str] = dict(spec.get("Labels") or {})
    container = spec["TaskTemplate"].get("ContainerSpec") or {}
    mounts = tuple(
        VolumeMount(str(m["Source"]), str(m["Target"]), bool(m.get("ReadOnly", False)))
        for m in container.get("Mounts") or []
        if m.get("Type", "volume") == "volume" and m.get("Source")
    )
    mode = spec.get("Mode") or {"Replicated": {}}
    replicated = "Replicated" in mode
    return ServiceMounts(
        name=str(spec["Name"]),
        short_name=short_name(str(spec["Name"]), labels.get(STACK_LABEL, "")),
        labels=labels,
        mounts=mounts,
        replicated=replicated,
        replicas=int(mode["Replicated"].get("Replicas", 1)) if replicated else 0,
    )


def running_tasks(service: str, tasks: Sequence[ApiDict]) -> list[RunningTask]:
    """Tasks of `service` that run now and have a container."""
    found = []
    for task in tasks:
        status = task.get("Status") or {}
        container = (status.get("ContainerStatus") or {}).get("ContainerID")
        if task.get("DesiredState") == "running" and status.get("State") == "running" \
                and container:
            found.append(RunningTask(service, str(task["ID"]), str(container),
                                     str(task.get("NodeID", ""))))
    return found


def run_helper_blocking(
    api: Any,
    *,
    image: str,
    entrypoint: Sequence[str],
    args: Sequence[str],
    env: Mapping[str, str],
    binds: Sequence[Bind],
    network: str,
    timeout: float,
    label: str,
    started: list[str],
) -> HelperRun:
    """Create, start and wait for a helper; its id goes into `started` at once, so the caller
    can remove it whatever happens (a timeout leaves this thread blocked in `wait`)."""
    host_config = api.create_host_config(
        binds=[b.spec() for b in binds],
        tmpfs={"/tmp": "rw"},  # restic needs a temp dir; scratch images have none
        network_mode=network,
        # Readable logs whatever the daemon's default driver is: they are the helper's output.
        log_config={"Type": "json-file", "Config": {}},
    )
    container = api.create_container(
        image,
        command=list(args),
        entrypoint=list(entrypoint),
        environment=dict(env),  # secrets go here, never into `args`
        host_config=host_config,
        labels={HELPER_LABEL: label},
        use_config_proxy=False,
    )
    container_id = str(container["Id"])
    started.append(container_id)
    api.start(container_id)
    status = api.wait(container_id, timeout=timeout)
    stdout = api.logs(container_id, stdout=True, stderr=False)
    stderr = api.logs(container_id, stdout=False, stderr=True)
    return HelperRun(
        exit_code=int(status.get("StatusCode", -1)),
        stdout=stdout.decode(errors="replace"),
        stderr=stderr.decode(errors="replace"),
    )


def exec_blocking(api: Any, slow_api: Any, container_id: str, cmd: Sequence[str],
                  env: Mapping[str, str]) -> ExecResult:
    """Run `cmd` in a running container; `slow_api` reads the output (it may take long)."""
    exec_id = api.exec_create(container_id, list(cmd), environment=dict(env))["Id"]
    output = slow_api.exec_start(exec_id)
    code = api.exec_inspect(exec_id).get("ExitCode")
    return ExecResult(exit_code=int(code if code is not None else -1),
                      output=output.decode(errors="replace"))
