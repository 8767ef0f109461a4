"""Async adapter over one server's Docker engine (local socket or SSH tunnel).

Every blocking SDK call runs in this server's own small thread pool with a timeout, so a slow
or unreachable server can neither stall the event loop nor use up threads other servers need.
Results are the frozen states of `states.py`; failures are the error tree of coopbot.errors.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

from coopbot.errors import DockerError
from coopbot.servers import swarm_parse
from coopbot.servers.access import EngineAccess
from coopbot.servers.cli import run_docker
from coopbot.servers.convergence import CONVERGENCE_POLL_SECONDS, ProgressCallback
from coopbot.servers.convergence import wait_converged as _wait_converged
from coopbot.servers.events import EVENT_TYPES, EventStream
from coopbot.servers.node_containers import NodeContainers
from coopbot.servers.node_helpers import NodeHelpers
from coopbot.servers.spec import ServerSpec
from coopbot.servers.states import ConvergenceResult, ServerInfo, ServiceState, SwarmRole
from coopbot.servers.swarm_parse import STACK_LABEL
from coopbot.servers.task_failures import TaskFailures, recent_failures
from coopbot.servers.tunnel import SSHTunnel

log = logging.getLogger(__name__)

T = TypeVar("T")
ResolveImage = Literal["always", "changed", "never"]

_FAILURE_LOG_LINES = 20
_NETWORK_IN_USE = "is in use by task"
_REMOVAL_POLL = 0.5


class DockerEngine:
    """One server's Docker engine. Connects lazily on first use; `close()` when done."""

    def __init__(self, spec: ServerSpec, *, threads: int = 4) -> None:
        self.spec = spec
        self._threads = threads
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix=f"docker-{spec.name}")
        self._tunnel = SSHTunnel(spec, executor=self._executor) if spec.kind == "ssh" else None
        self.access = EngineAccess(spec, self._executor, threads, self.docker_host)
        self.containers = NodeContainers(self.access)
        self.helpers = NodeHelpers(self.access, self.containers)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def tunnel(self) -> SSHTunnel | None:
        return self._tunnel

    async def docker_host(self) -> str:
        """A DOCKER_HOST value reaching this engine (for the CLI); opens the tunnel if needed."""
        if self._tunnel is None:
            return f"unix://{self.spec.socket}"
        await self._tunnel.start()  # also reconnects a dropped transport, with a clear error
        return self._tunnel.docker_host

    async def close(self) -> None:
        self.access.close()
        if self._tunnel is not None:
            await self._tunnel.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- reading -----------------------------------------------------------------------------

    async def info(self) -> ServerInfo:
        def fetch(api: Any) -> tuple[Any, Any, Any, Any]:
            swarm = api.info().get("Swarm") or {}
            manager = bool(swarm.get("ControlAvailable"))
            nodes = api.nodes() if manager else []
            services = api.services(filters={"label": STACK_LABEL}) if manager else []
            return api.version(), swarm, nodes, services

        version, swarm, nodes, services = await self._call("read the server status", fetch)
        return ServerInfo(
            server=self.name,
            docker_version=str(version.get("Version", "?")),
            api_version=str(version.get("ApiVersion", "?")),
            swarm_role=_swarm_role(swarm),
            nodes=tuple(swarm_parse.node_state(node) for node in nodes),
            stack_count=swarm_parse.stack_count(services),
        )

    async def stacks(self) -> dict[str, list[ServiceState]]:
        grouped: dict[str, list[ServiceState]] = defaultdict(list)
        for state in await self._service_states(None):
            grouped[state.stack].append(state)
        return dict(grouped)

    async def services(self, stack: str) -> list[ServiceState]:
        return await self._service_states(stack)

    async def secret_names(self) -> set[str]:
        secrets = await self._call("list the secrets", lambda api: api.secrets())
        return {str(s["Spec"]["Name"]) for s in secrets}

    async def network_names(self) -> set[str]:
        networks = await self._call("list the networks", lambda api: api.networks())
        return {str(n["Name"]) for n in networks}

    async def image_tags(self) -> set[str]:
        """`repo:tag` of the images present on this node (what a deploy can use without a pull)."""
        images = await self._call("list the images", lambda api: api.images())
        return {str(t) for i in images for t in (i.get("RepoTags") or []) if t != "<none>:<none>"}

    async def stack_volumes(self, stack: str) -> list[str]:
        """Volumes the stack created on this node (labelled with its namespace by the CLI)."""
        found = await self._call(
            f"list the volumes of {stack}",
            lambda api: api.volumes(filters={"label": f"{STACK_LABEL}={stack}"}),
        )
        return sorted(str(v["Name"]) for v in (found.get("Volumes") or []))

    async def stack_volumes_by_node(self, stack: str) -> dict[str, list[str]]:
        """Volumes the stack created, per node hostname (volumes are local to each node);
        nodes that are not ready are left out (nothing can ask them)."""
        found: dict[str, list[str]] = {}
        for node in await self.helpers.nodes():
            if node.state != "ready":
                continue
            names = await self.helpers.volume_names(node.node_id,
                                                    label=f"{STACK_LABEL}={stack}")
            if names:
                found[node.hostname] = sorted(names)
        return found

    async def service_logs(
        self, service: str, tail: int = 100, *, timestamps: bool = False
    ) -> list[str]:
        """The last `tail` lines of stdout+stderr of the service's tasks, oldest first.

        RAW output: it may contain secrets or env values; redact before posting anywhere.
        """

        def fetch(api: Any) -> bytes:
            chunks = api.service_logs(service, stdout=True, stderr=True, tail=tail, timestamps=True)
            return b"".join(chunks)

        data = await self._call(f"read the logs of service {service}", fetch)
        # The daemon interleaves its tasks' streams as they arrive: order them by time.
        stamped = sorted(
            (line.partition(" ") for line in data.decode(errors="replace").splitlines()),
            key=lambda parts: swarm_parse.timestamp_key(parts[0]),
        )
        lines = [f"{stamp} {text}" if timestamps else text for stamp, _, text in stamped]
        return lines[-tail:] if tail > 0 else []

    async def task_logs(self, task: str, tail: int = 100) -> list[str]:
        """The last `tail` lines of one task's stdout+stderr, oldest first. RAW, as above."""

        def fetch(api: Any) -> bytes:
            # docker-py has no call for /tasks/{id}/logs (the API has had it since 1.29); it is
            # built like its service_logs: same parameters, same multiplexed stream.
            params = {"stdout": True, "stderr": True, "tail": tail, "timestamps": True,
                      "follow": False, "details": False}
            response = api._get(api._url("/tasks/{0}/logs", task), params=params, stream=True)
            return b"".join(api._get_result_tty(True, response, False))

        data = await self._call(f"read the logs of task {task}", fetch)
        stamped = sorted(
            (line.partition(" ") for line in data.decode(errors="replace").splitlines()),
            key=lambda parts: swarm_parse.timestamp_key(parts[0]),
        )
        lines = [text for _, _, text in stamped]
        return lines[-tail:] if tail > 0 else []

    async def _failure_logs(self, service: ServiceState) -> list[str]:
        """The failing task's own lines: a service's logs mix in its old, healthy tasks."""
        if service.failed_task is not None:
            try:
                return await self.task_logs(service.failed_task, _FAILURE_LOG_LINES)
            except DockerError as error:
                log.info("logs of task %s unavailable (%s): the service's instead",
                         service.failed_task, error)
        return await self.service_logs(service.name, _FAILURE_LOG_LINES)

    # --- watching ------------------------------------------------------------------------------

    def events(self, types: Sequence[str] = EVENT_TYPES) -> EventStream:
        """This server's Docker events (`async with engine.events() as stream: async for ...`).

        Entering subscribes (for SSH, through the tunnel: one long-lived channel); iterating
        raises ServerUnreachable when the connection drops. See `events.EventStream`.
        """
        return EventStream(self.name, self._socket_path, types=types,
                           connect_timeout=self.spec.connect_timeout)

    async def task_failures(self, since: float) -> dict[str, TaskFailures]:
        """Failed tasks of stack services since `since` (epoch s), by full service name."""

        def fetch(api: Any) -> tuple[Any, Any]:
            label = {"label": STACK_LABEL}
            return api.services(filters=label), api.tasks(filters=label)

        services, tasks = await self._call("list the failed tasks", fetch)
        return recent_failures(services, tasks, since)

    # --- changing ------------------------------------------------------------------------------

    async def stack_deploy(
        self,
        stack: str,
        compose_files: Sequence[Path],
        env: Mapping[str, str],
        cwd: Path,
        *,
        prune: bool = True,
        with_registry_auth: bool = False,
        resolve_image: ResolveImage = "never",
    ) -> None:
        """`docker stack deploy` with ONLY `env` (plus PATH/HOME) for interpolation.

        `resolve_image="never"` by default: the engine uses the tags as given, and the bot needs
        no registry access (tags are checked beforehand against `image_tags()` if wanted).
        """
        args = ["stack", "deploy", "--resolve-image", resolve_image]
        if prune:
            args.append("--prune")
        if with_registry_auth:
            args.append("--with-registry-auth")
        for compose_file in compose_files:
            args += ["-c", str(compose_file)]
        await self._cli([*args, "--", stack], env=env, cwd=cwd)

    async def stack_remove(self, stack: str) -> None:
        """Remove the stack and wait until its services, networks and containers are gone.

        `docker stack rm` returns at once; waiting avoids racing a redeploy or a volume removal
        against its leftovers. Volumes and external secrets stay, as with abra's undeploy.
        """
        # Swarm removes a stack's services first, then its networks; a network still used by
        # a task that is stopping cannot go yet ("is in use by task") and the CLI fails. The
        # services are gone by then: wait for their tasks, then remove what is left.
        networks_left = not await self._stack_rm(stack)
        label = {"label": f"{STACK_LABEL}={stack}"}

        def leftovers(api: Any) -> tuple[int, int]:
            running = (len(api.services(filters=label))
                       + len(api.containers(all=True, filters=label)))
            return running, len(api.networks(filters=label))

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.spec.command_timeout
        while True:
            running, networks = await self._call(f"check the removal of {stack}", leftovers)
            if not running and not networks:
                return
            if not running and networks_left:
                networks_left = not await self._stack_rm(stack)
            if loop.time() > deadline:
                raise DockerError(
                    f"stack {stack} on server {self.name} was not fully removed within "
                    f"{self.spec.command_timeout:g} s"
                )
            await asyncio.sleep(_REMOVAL_POLL)

    async def _stack_rm(self, stack: str) -> bool:
        """`docker stack rm`; False when only a network still in use stopped it."""
        try:
            await self._cli(["stack", "rm", "--", stack])
        except DockerError as error:
            if _NETWORK_IN_USE not in f"{error} {error.detail or ''}":
                raise
            log.info("stack %s on %s: a network is still in use by a stopping task; "
                     "removing it once the tasks are gone", stack, self.name)
            return False
        return True

    async def wait_converged(
        self,
        stack: str,
        timeout: float,
        progress: ProgressCallback | None = None,
        poll: float = CONVERGENCE_POLL_SECONDS,
    ) -> ConvergenceResult:
        """See `convergence.wait_converged`. Failures carry a RAW log tail (may hold secrets)."""
        return await _wait_converged(
            stack,
            lambda: self._service_states(stack),
            self._failure_logs,
            timeout=timeout,
            progress=progress,
            poll=poll,
        )

    async def scale_service(self, service: str, replicas: int) -> int:
        """Set a replicated service's replica count; returns the count it had before."""

        def scale(api: Any) -> int:
            current = api.inspect_service(service)
            mode = current["Spec"].get("Mode") or {}
            if "Replicated" not in mode:
                raise DockerError(
                    f"service {service} is not replicated, so it cannot be stopped by scaling"
                )
            before = int(mode["Replicated"].get("Replicas", 1))
            if before != replicas:
                api.update_service(
                    service, current["Version"]["Index"], fetch_current_spec=True,
                    mode={"Replicated": {"Replicas": replicas}},
                )
            return before

        return await self._call(f"scale service {service} to {replicas}", scale)

    async def create_secret(self, name: str, data: bytes) -> None:
        """A swarm secret (immutable: a new value is a new name). The value never leaves this
        call: not in an error, not in the log."""

        def create(api: Any) -> None:
            api.create_secret(name, data)

        await self._call(f"create secret {name}", create)

    async def remove_secret(self, name: str) -> None:
        await self._call(f"remove secret {name}", lambda api: api.remove_secret(name))

    async def remove_volume(self, name: str) -> None:
        await self._call(f"remove volume {name}", lambda api: api.remove_volume(name))

    async def force_update(self, service: str) -> None:
        """Restart a service's tasks the way `docker service update --force` does: the spec
        (replicas included) stays, only its force counter moves, so swarm replaces every task
        following the service's update_config (start-first, rollback on failure)."""

        def update(api: Any) -> None:
            current = api.inspect_service(service)
            template = dict(current["Spec"].get("TaskTemplate") or {})
            template["ForceUpdate"] = int(template.get("ForceUpdate") or 0) + 1
            api.update_service(service, current["Version"]["Index"], task_template=template,
                               fetch_current_spec=True)

        await self._call(f"restart service {service}", update)


    # --- plumbing --------------------------------------------------------------------------------

    async def _service_states(self, stack: str | None) -> list[ServiceState]:
        label = {"label": f"{STACK_LABEL}={stack}" if stack else STACK_LABEL}

        def fetch(api: Any) -> tuple[Any, Any, Any, Any]:
            services = api.services(filters=label, status=True)
            tasks = api.tasks(filters=label)
            # The daemon's own "matches the current spec" test, as `docker service update` uses
            # (any state: a rejected or unplaceable task of the current spec counts too).
            current = api.tasks(filters={**label, "_up-to-date": "true"})
            return services, tasks, current, api.nodes()

        where = f"stack {stack}" if stack else "all stacks"
        services, tasks, current, nodes = await self._call(f"list the services of {where}",
                                                           fetch)
        names = swarm_parse.node_names(nodes)
        by_service: dict[str, list[Any]] = defaultdict(list)
        for task in tasks:
            by_service[task["ServiceID"]].append(task)
        current_by_service: dict[str, list[Any]] = defaultdict(list)
        for task in current:
            current_by_service[task["ServiceID"]].append(task)
        states = [
            swarm_parse.service_state(s, by_service[s["ID"]], current_by_service[s["ID"]], names)
            for s in services
        ]
        return sorted(states, key=lambda state: state.name)

    async def _call(self, action: str, fn: Callable[[Any], T]) -> T:
        return await self.access.call(action, fn)

    async def _socket_path(self) -> str:
        """The local socket reaching this engine (for SSH: the tunnel's, connected first)."""
        return (await self.docker_host()).removeprefix("unix://")

    async def _cli(
        self, args: list[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> str:
        return await run_docker(
            args,
            server=self.name,
            docker_host=await self.docker_host(),
            timeout=self.spec.command_timeout,
            env=env,
            cwd=cwd,
        )


def _swarm_role(swarm: Mapping[str, Any]) -> SwarmRole:
    if swarm.get("LocalNodeState") != "active":
        return "inactive"
    return "manager" if swarm.get("ControlAvailable") else "worker"

