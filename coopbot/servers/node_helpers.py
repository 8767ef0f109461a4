"""Work on a given node of the swarm, reached only through the manager the bot talks to.

Volumes and task containers are local to a node. On the engine's own node a plain helper
container does the job (node_containers.py). On any other node the portable way through a
manager is a one-shot swarm service constrained to `node.id==<id>`, restart condition none,
labelled `coopbot.helper`, with a deadline label, removed on every path (and by
`remove_abandoned` after a crash). Secrets never sit in its spec: they travel in a swarm
secret mounted for the run (sourced into the environment by a small `sh` wrapper) and removed
with the service. The helper learns which node it runs on from swarm's own template
(`{{.Node.ID}}` in COOPBOT_NODE), so a caller can check where its data came from.

`exec_in_task` is THE way to run a command inside a task's container on whatever node it is:
a direct exec on the engine's node, else the node's own engine via a helper running the docker
CLI against that node's /var/run/docker.sock.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from coopbot.errors import CoopbotError, DockerError
from coopbot.servers.access import EngineAccess
from coopbot.servers.containers import HELPER_LABEL, Bind, ExecResult, HelperRun, RunningTask
from coopbot.servers.node_containers import NodeContainers
from coopbot.servers.node_usage import (
    HOST_MOUNT,
    PRUNE_SCRIPT,
    USAGE_SCRIPT,
    NodeUsage,
    parse_reclaimed,
    parse_usage,
)
from coopbot.servers.task_failures import parse_timestamp

log = logging.getLogger(__name__)

DEADLINE_LABEL = "coopbot.helper.deadline"
NODE_VARIABLE = "COOPBOT_NODE"  # the node the helper runs on, filled in by swarm
SECRET_FILE = "coopbot-env"
# Source the mounted secret into the environment, then run the helper's own command.
_WRAPPER = f'set -a; . /run/secrets/{SECRET_FILE}; set +a; exec "$@"'
_DOCKER_SOCKET = "/var/run/docker.sock"
_TERMINAL = {"complete", "failed", "rejected", "shutdown", "orphaned", "remove"}
_POLL = 0.3


@dataclass(frozen=True)
class SwarmNodeRef:
    node_id: str
    hostname: str
    role: str
    state: str
    availability: str


class NodeHelpers:
    """`engine.helpers`: helpers and execs on any node of the engine's swarm."""

    def __init__(self, access: EngineAccess, containers: NodeContainers) -> None:
        self._engine = access
        self._containers = containers

    async def own_node(self) -> str:
        return await self._containers.own_node_id()

    async def nodes(self) -> list[SwarmNodeRef]:
        found = await self._engine.call("list the nodes", lambda api: api.nodes())
        return sorted((_node_ref(n) for n in found), key=lambda n: n.hostname)

    async def hostname(self, node_id: str) -> str:
        """A node's hostname for messages (its id when the manager does not know it)."""
        return next((n.hostname for n in await self.nodes() if n.node_id == node_id), node_id)

    async def run(
        self, node_id: str, image: str, *, entrypoint: Sequence[str], args: Sequence[str],
        env: Mapping[str, str], secret_env: Mapping[str, str], binds: Sequence[Bind],
        network: str = "none", timeout: float, label: str = "coopbot",
    ) -> HelperRun:
        """Run a one-off helper on `node_id` to completion: exit code and RAW output.
        `secret_env` values never appear in a container or service spec on another node."""
        if node_id == await self.own_node():
            return await self._containers.run_helper(
                image, entrypoint=entrypoint, args=args,
                env={**env, **secret_env, NODE_VARIABLE: node_id}, binds=binds,
                network=network, timeout=timeout, label=label)
        return await self._run_service(node_id, image, entrypoint, args, env, secret_env, binds,
                                       network, timeout, label)

    async def exec_in_task(self, task: RunningTask, cmd: Sequence[str], *,
                           env: Mapping[str, str], timeout: float) -> ExecResult:
        """Run `cmd` inside the task's container, on whichever node it runs. RAW output."""
        if task.node_id == await self.own_node():
            return await self._containers.exec_in(task.container_id, cmd, env=env,
                                                  timeout=timeout)
        names = [arg for key in env for arg in ("-e", key)]  # values come from the secret
        run = await self._run_service(
            task.node_id, self._engine.spec.node_helper_image, ("docker",),
            ["exec", *names, task.container_id, *cmd], {}, env,
            [Bind(_DOCKER_SOCKET, _DOCKER_SOCKET, read_only=False)], "none", timeout,
            "exec in a task")
        return ExecResult(exit_code=run.exit_code, output=run.stdout + run.stderr)

    async def exec_in_service(self, service: str, cmd: Sequence[str], *,
                              env: Mapping[str, str], timeout: float
                              ) -> tuple[RunningTask, ExecResult] | None:
        """Run `cmd` in a running task of `service` (full swarm name), wherever it runs: the
        task it ran in and the RAW result, or None when no task of it runs."""
        task = await self._containers.running_task(service)
        if task is None:
            return None
        return task, await self.exec_in_task(task, cmd, env=env, timeout=timeout)

    async def volume_names(self, node_id: str, *, label: str | None = None) -> set[str]:
        """The volumes on one node (with `label`: only those carrying it)."""
        if node_id == await self.own_node():
            return await self._containers.volume_names(label=label)
        args = ["volume", "ls", "-q", *(["--filter", f"label={label}"] if label else [])]
        return set((await self._node_cli(node_id, args, "list the volumes")).split())

    async def image_tags(self, node_id: str) -> set[str]:
        """`repo:tag` of the images on one node (what a task there can use without a pull)."""
        if node_id == await self.own_node():
            images = await self._engine.call("list the images", lambda api: api.images())
            return {str(t) for i in images for t in (i.get("RepoTags") or [])
                    if t != "<none>:<none>"}
        out = await self._node_cli(node_id, ["images", "--format", "{{.Repository}}:{{.Tag}}"],
                                   "list the images")
        return {line for line in out.split() if line != "<none>:<none>"}

    async def usage(self, node_id: str, timeout: float = 120.0) -> NodeUsage:
        """Disk and inode use of the node's Docker data root and `/`, and its memory."""
        run = await self.run(
            node_id, self._engine.spec.node_helper_image, entrypoint=("sh",),
            args=["-c", USAGE_SCRIPT], env={}, secret_env={},
            binds=[Bind(_DOCKER_SOCKET, _DOCKER_SOCKET, read_only=False),
                   Bind("/", HOST_MOUNT, read_only=True)],
            timeout=timeout, label="read the node's usage")
        try:
            return parse_usage(run.stdout)
        except ValueError as error:
            raise DockerError(f"could not read the usage of node {node_id} of server "
                              f"{self._engine.name}", detail=f"{error}; {run.stderr[-1000:]}"
                              ) from None

    async def prune(self, node_id: str, timeout: float = 1800.0) -> int:
        """Remove the node's stopped containers and unused images; bytes freed."""
        run = await self.run(
            node_id, self._engine.spec.node_helper_image, entrypoint=("sh",),
            args=["-c", PRUNE_SCRIPT], env={}, secret_env={},
            binds=[Bind(_DOCKER_SOCKET, _DOCKER_SOCKET, read_only=False)],
            timeout=timeout, label="prune the node")
        if run.exit_code != 0:
            raise DockerError(f"could not prune node {node_id} of server {self._engine.name}",
                              detail=run.stderr[-2000:])
        return parse_reclaimed(run.stdout)

    async def _node_cli(self, node_id: str, args: list[str], action: str,
                        timeout: float = 120.0) -> str:
        """The docker CLI against one node's own engine, in a helper there; its stdout."""
        run = await self._run_service(
            node_id, self._engine.spec.node_helper_image, ("docker",), args, {}, {},
            [Bind(_DOCKER_SOCKET, _DOCKER_SOCKET, read_only=False)], "none", timeout, action)
        if run.exit_code != 0:
            raise DockerError(f"could not {action} on node {node_id} of server "
                              f"{self._engine.name}", detail=run.stderr[-2000:])
        return run.stdout

    async def remove_abandoned(self, older_than: float) -> int:
        """Remove helper services past their deadline or finished more than `older_than`
        seconds ago, and helper secrets no service uses: what a crashed bot left behind."""

        def sweep(api: Any) -> int:
            now = time.time()
            removed = 0
            services = api.services(filters={"label": HELPER_LABEL})
            for service in services:
                labels = service["Spec"].get("Labels") or {}
                deadline = float(labels.get(DEADLINE_LABEL, "0") or 0)
                tasks = api.tasks(filters={"service": service["ID"]})
                done = all((t.get("Status") or {}).get("State") in _TERMINAL for t in tasks)
                updated = parse_timestamp(str(service.get("UpdatedAt") or "")) or now
                if deadline < now or (done and updated < now - older_than):
                    api.remove_service(service["ID"])
                    removed += 1
            in_use = {str(ref.get("SecretID")) for s in api.services(filters={"label":
                                                                               HELPER_LABEL})
                      for ref in (s["Spec"]["TaskTemplate"].get("ContainerSpec") or {})
                      .get("Secrets") or []}
            for secret in api.secrets(filters={"label": HELPER_LABEL}):
                created = parse_timestamp(str(secret.get("CreatedAt") or "")) or now
                if secret["ID"] not in in_use and created < now - min(older_than, 60.0):
                    api.remove_secret(secret["ID"])
                    removed += 1
            return removed

        return await self._engine.call("remove abandoned helper services", sweep)

    # --- the swarm-service helper --------------------------------------------------------------

    async def _run_service(self, node_id: str, image: str, entrypoint: Sequence[str],
                           args: Sequence[str], env: Mapping[str, str],
                           secret_env: Mapping[str, str], binds: Sequence[Bind], network: str,
                           timeout: float, label: str) -> HelperRun:
        name = f"coopbot-helper-{uuid.uuid4().hex[:12]}"
        labels = {HELPER_LABEL: label, DEADLINE_LABEL: f"{time.time() + timeout + 60:.0f}"}
        created: dict[str, str] = {}
        try:
            await self._engine.call(
                f"start a helper on node {node_id}",
                lambda api: _create_blocking(api, name, node_id, image, entrypoint, args, env,
                                             secret_env, binds, network, labels, created))
            return await self._wait(created["service"], node_id, timeout)
        finally:
            if created:
                # Shielded: a cancelled operation must still not leave its helper behind.
                await asyncio.shield(self._remove(created))

    async def _wait(self, service_id: str, node_id: str, timeout: float) -> HelperRun:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            tasks = await self._engine.call(
                "follow a helper", lambda api: api.tasks(filters={"service": service_id}))
            done = [t for t in tasks if (t.get("Status") or {}).get("State") in _TERMINAL]
            if done:
                break
            if loop.time() > deadline:
                states = ", ".join(str((t.get("Status") or {}).get("State")) for t in tasks)
                raise DockerError(
                    f"the helper on node {node_id} of server {self._engine.name} did not "
                    f"finish within {timeout:g} s (task state: {states or 'not scheduled'})")
            await asyncio.sleep(_POLL)
        status = done[0].get("Status") or {}
        container = status.get("ContainerStatus") or {}
        if status.get("State") == "rejected" or "ExitCode" not in container:
            raise DockerError(
                f"the helper on node {node_id} of server {self._engine.name} could not run",
                detail=str(status.get("Err") or status.get("Message") or status))

        def logs(api: Any) -> tuple[bytes, bytes]:
            out = b"".join(api.service_logs(service_id, stdout=True, stderr=False))
            err = b"".join(api.service_logs(service_id, stdout=False, stderr=True))
            return out, err

        out, err = await self._engine.call("read a helper's output", logs)
        return HelperRun(exit_code=int(container["ExitCode"]), stdout=out.decode(errors="replace"),
                         stderr=err.decode(errors="replace"))

    async def _remove(self, created: Mapping[str, str]) -> None:
        def remove(api: Any) -> None:
            if "service" in created:
                api.remove_service(created["service"])
            if "secret" in created:
                api.remove_secret(created["secret"])

        try:
            await self._engine.call("remove a helper service", remove)
        except CoopbotError as error:
            # Labelled with HELPER_LABEL: remove_abandoned finds it later.
            log.warning("could not remove helper %s: %s (%s)", created, error, error.detail)


def _create_blocking(api: Any, name: str, node_id: str, image: str, entrypoint: Sequence[str],
                     args: Sequence[str], env: Mapping[str, str], secret_env: Mapping[str, str],
                     binds: Sequence[Bind], network: str, labels: Mapping[str, str],
                     created: dict[str, str]) -> None:
    """Create the secret (if any) and the service; ids go into `created` at once, so the
    caller removes them whatever happens next."""
    from docker import types

    secrets = []
    command = list(entrypoint)
    if secret_env:
        data = "".join(f"{key}={shlex.quote(value)}\n" for key, value in secret_env.items())
        secret = api.create_secret(name, data.encode(), labels=dict(labels))
        created["secret"] = str(secret["ID"])
        secrets.append(types.SecretReference(created["secret"], name, filename=SECRET_FILE,
                                             mode=0o400))
        command = ["sh", "-c", _WRAPPER, "coopbot-helper", *command]
    mounts = [types.Mount(b.target, b.source, type="bind" if b.source.startswith("/")
                          else "volume", read_only=b.read_only) for b in binds]
    mounts.append(types.Mount("/tmp", None, type="tmpfs"))  # restic needs a temp dir
    spec = types.ContainerSpec(
        image, command=command, args=list(args),
        env={**env, NODE_VARIABLE: "{{.Node.ID}}"}, mounts=mounts, secrets=secrets)
    template = types.TaskTemplate(
        spec, restart_policy=types.RestartPolicy(condition="none"),
        placement=types.Placement(constraints=[f"node.id=={node_id}"]),
        log_driver=types.DriverConfig("json-file"),
        networks=[] if network == "none" else ["host"],
    )
    service = api.create_service(template, name=name, labels=dict(labels),
                                 mode=types.ServiceMode("replicated", replicas=1))
    created["service"] = str(service["ID"])


def _node_ref(node: Mapping[str, Any]) -> SwarmNodeRef:
    spec = node.get("Spec") or {}
    return SwarmNodeRef(
        node_id=str(node.get("ID", "")),
        hostname=str((node.get("Description") or {}).get("Hostname", "?")),
        role=str(spec.get("Role", "?")),
        state=str((node.get("Status") or {}).get("State", "unknown")),
        availability=str(spec.get("Availability", "?")),
    )
