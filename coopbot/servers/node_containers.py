"""Plain containers next to the swarm, on the node one engine connection reaches: the volumes
a service mounts, a service's running task (on any node: the manager knows them all), a
command run inside a container here, and one-off helper containers (restic) run to
completion, labelled and always removed. Other nodes: node_helpers.py.

Backups need these; stacks never do. The blocking SDK steps are in containers.py; this runs them
through the engine's threads and timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from coopbot.errors import CoopbotError, DockerError, NotFound
from coopbot.servers.access import EngineAccess
from coopbot.servers.containers import (
    HELPER_LABEL,
    Bind,
    ExecResult,
    HelperRun,
    RunningTask,
    ServiceMounts,
    exec_blocking,
    run_helper_blocking,
    running_tasks,
    service_mounts,
)
from coopbot.servers.swarm_parse import STACK_LABEL
from coopbot.servers.task_failures import parse_timestamp

log = logging.getLogger(__name__)

_REMOVAL_POLL = 0.5
_LIVE = {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"}


class NodeContainers:
    """`engine.containers`: what backups do with containers on the engine's node."""

    def __init__(self, access: EngineAccess) -> None:
        self._engine = access  # the engine's threads, clients and timeouts
        self._node_id: str | None = None

    async def service_mounts(self, stack: str) -> list[ServiceMounts]:
        """Each service of the stack with its labels and the named volumes its spec mounts."""
        label = {"label": f"{STACK_LABEL}={stack}"}
        found = await self._engine.call(f"read the services of stack {stack}",
                                 lambda api: api.services(filters=label))
        return sorted((service_mounts(s) for s in found), key=lambda m: m.name)

    async def own_node_id(self) -> str:
        """The swarm node id of the node this engine connection lands on."""
        if self._node_id is None:
            info = await self._engine.call("read the node's id", lambda api: api.info())
            self._node_id = str((info.get("Swarm") or {}).get("NodeID", ""))
        return self._node_id

    async def running_task(self, service: str) -> RunningTask | None:
        """A running task of `service` on any node (its node id says which), or None.
        A task on this engine's node is preferred: it is the cheapest to reach."""
        tasks = await self._engine.call(
            f"find the tasks of service {service}",
            lambda api: running_tasks(service, api.tasks(
                filters={"service": service, "desired-state": "running"})))
        own = await self.own_node_id()
        tasks.sort(key=lambda t: t.node_id != own)
        return tasks[0] if tasks else None

    async def exec_in(self, container_id: str, cmd: Sequence[str], *, env: Mapping[str, str],
                      timeout: float) -> ExecResult:
        """Run `cmd` inside a running container; RAW output (redact it before use)."""
        api = await self._engine.client()
        slow = await self._engine.slow_client()
        return await self._engine.run(
            "run a command in a container",
            lambda: exec_blocking(api, slow, container_id, cmd, env),
            timeout,
            on_timeout=DockerError(
                f"a command in a container on server {self._engine.name} did not finish within "
                f"{timeout:g} s"
            ),
        )

    async def run_helper(
        self,
        image: str,
        *,
        entrypoint: Sequence[str],
        args: Sequence[str],
        env: Mapping[str, str],
        binds: Sequence[Bind],
        network: str = "none",
        timeout: float,
        label: str = "coopbot",
    ) -> HelperRun:
        """Run a one-off container on this engine's node to completion and return its exit
        code and RAW output. The container is removed afterwards, also on timeout or cancel.
        Secrets belong in `env` (never in `args`, which `docker ps` shows)."""
        await self._ensure_image(image, timeout)
        api = await self._engine.client()
        started: list[str] = []
        try:
            return await self._engine.run(
                f"run the helper image {image}",
                lambda: run_helper_blocking(
                    api, image=image, entrypoint=entrypoint, args=args, env=env, binds=binds,
                    network=network, timeout=timeout + self._engine.spec.command_timeout,
                    label=label, started=started,
                ),
                timeout,
                on_timeout=DockerError(
                    f"the helper {image} on server {self._engine.name} did not finish within "
                    f"{timeout:g} s"
                ),
            )
        finally:
            if started:
                # Shielded: a cancelled operation must still not leave its helper behind.
                await asyncio.shield(self._remove_container(started[0]))

    async def wait_volumes_unused(self, volumes: Sequence[str], timeout: float) -> None:
        """Wait until no running container on this node mounts any of `volumes`."""

        def users(api: Any) -> int:
            return sum(len(api.containers(filters={"volume": v})) for v in volumes)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self._engine.call("list the containers using the volumes", users):
            if loop.time() > deadline:
                raise DockerError(f"containers on server {self._engine.name} still use the "
                                  f"volumes after {timeout:g} s")
            await asyncio.sleep(_REMOVAL_POLL)

    async def wait_stopped(self, services: Sequence[str], timeout: float) -> None:
        """Wait until no task of `services` runs on any node (the manager knows them all)."""

        def live(api: Any) -> int:
            return sum(1 for s in services for t in api.tasks(filters={"service": s})
                       if (t.get("Status") or {}).get("State") in _LIVE)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self._engine.call("list the tasks of the stopped services", live):
            if loop.time() > deadline:
                raise DockerError(f"tasks on server {self._engine.name} still run after "
                                  f"{timeout:g} s")
            await asyncio.sleep(_REMOVAL_POLL)

    async def volume_names(self, *, label: str | None = None) -> set[str]:
        """Names of the volumes on this engine's node (with `label`: those carrying it)."""
        filters = {"label": label} if label else None
        found = await self._engine.call("list the volumes",
                                        lambda api: api.volumes(filters=filters))
        return {str(v["Name"]) for v in (found.get("Volumes") or [])}

    async def _ensure_image(self, image: str, timeout: float) -> None:
        """Pull `image` once if the node lacks it (servers without a registry must have it)."""
        try:
            await self._engine.call(f"inspect the image {image}",
                                     lambda api: api.inspect_image(image))
            return
        except NotFound:
            pass
        api = await self._engine.client()
        try:
            # The SDK splits `repo:tag` itself (and pulls :latest when no tag is given).
            await self._engine.run(f"pull the image {image}", lambda: api.pull(image),
                                          timeout)
        except CoopbotError as error:
            raise DockerError(
                f"the image {image} is not on server {self._engine.name} and could not be pulled",
                detail=error.detail or str(error),
            ) from None

    async def remove_abandoned_helpers(self, older_than: float) -> int:
        """Remove helper containers that finished (or never started) more than `older_than`
        seconds ago: a bot that crashed mid-backup leaves its helper behind, with the restic
        password in its environment. Running helpers are left alone: restic is still working,
        and another coopbot sharing this server may own them. Returns how many went."""

        def abandoned(api: Any) -> list[str]:
            found = api.containers(all=True, filters={"label": HELPER_LABEL})
            cutoff = time.time() - older_than
            return [str(c["Id"]) for c in found
                    if c.get("State") in ("exited", "created", "dead")
                    and _finished_before(api.inspect_container(c["Id"]), cutoff)]

        removed = 0
        for container_id in await self._engine.call("list the helper containers", abandoned):
            await self._remove_container(container_id)
            removed += 1
        return removed

    async def _remove_container(self, container_id: str) -> None:
        try:
            await self._engine.call("remove a helper container",
                             lambda api: api.remove_container(container_id, force=True))
        except CoopbotError as error:
            # Labelled with HELPER_LABEL: a later `docker ps -a --filter label=` finds it.
            log.warning("could not remove helper container %s: %s (%s)", container_id[:12],
                        error, error.detail)

def _finished_before(container: Mapping[str, Any], cutoff: float) -> bool:
    """Whether a stopped container finished (or, never started, was created) before `cutoff`
    (epoch seconds)."""
    state = container.get("State") or {}
    stamp = str(state.get("FinishedAt") or "")
    if not stamp or stamp.startswith("0001-"):  # Go's zero time: it never ran
        stamp = str(container.get("Created") or "")
    when = parse_timestamp(stamp)
    return when is not None and when < cutoff
