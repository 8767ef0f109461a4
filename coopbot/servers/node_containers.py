"""Plain containers next to the swarm, on the node one engine connection reaches: the volumes
a service mounts, the task container of a service running there, a command run inside it, and
one-off helper containers (restic) run to completion, labelled and always removed.

Backups need these; stacks never do. The blocking SDK steps are in containers.py; this runs them
through the engine's threads and timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from coopbot.errors import CoopbotError, DockerError, NotFound
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

if TYPE_CHECKING:
    from coopbot.servers.engine import DockerEngine

log = logging.getLogger(__name__)

_REMOVAL_POLL = 0.5


class NodeContainers:
    """`engine.containers`: what backups do with containers on the engine's node."""

    def __init__(self, engine: DockerEngine) -> None:
        # The engine's own threads, clients and timeouts (its private plumbing, shared within
        # this package on purpose: one place bounds every call to a server).
        self._engine = engine

    async def service_mounts(self, stack: str) -> list[ServiceMounts]:
        """Each service of the stack with its labels and the named volumes its spec mounts."""
        label = {"label": f"{STACK_LABEL}={stack}"}
        found = await self._engine._call(f"read the services of stack {stack}",
                                 lambda api: api.services(filters=label))
        return sorted((service_mounts(s) for s in found), key=lambda m: m.name)

    async def local_task(self, service: str) -> RunningTask | None:
        """A running task of `service` on THIS engine's node (the only one whose containers and
        volumes the engine reaches), or None if none runs. DockerError if it runs elsewhere only."""

        def fetch(api: Any) -> tuple[str, list[RunningTask]]:
            node = str((api.info().get("Swarm") or {}).get("NodeID", ""))
            tasks = api.tasks(filters={"service": service, "desired-state": "running"})
            return node, running_tasks(service, tasks)

        node, tasks = await self._engine._call(f"find the tasks of service {service}", fetch)
        local = [t for t in tasks if t.node_id == node]
        if tasks and not local:
            raise DockerError(
                f"service {service} runs on another node than the one server {self._engine.name} "
                "reaches; its volumes are out of reach from here"
            )
        return local[0] if local else None

    async def exec_in(self, container_id: str, cmd: Sequence[str], *, env: Mapping[str, str],
                      timeout: float) -> ExecResult:
        """Run `cmd` inside a running container; RAW output (redact it before use)."""
        api = await self._engine._client()
        slow = await self._engine._slow_client()
        return await self._engine._in_thread(
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
        api = await self._engine._client()
        started: list[str] = []
        try:
            return await self._engine._in_thread(
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
        while await self._engine._call("list the containers using the volumes", users):
            if loop.time() > deadline:
                raise DockerError(f"containers on server {self._engine.name} still use the "
                                  f"volumes after {timeout:g} s")
            await asyncio.sleep(_REMOVAL_POLL)

    async def volume_names(self) -> set[str]:
        """Names of the volumes on this engine's node."""
        found = await self._engine._call("list the volumes", lambda api: api.volumes())
        return {str(v["Name"]) for v in (found.get("Volumes") or [])}

    async def _ensure_image(self, image: str, timeout: float) -> None:
        """Pull `image` once if the node lacks it (servers without a registry must have it)."""
        try:
            await self._engine._call(f"inspect the image {image}",
                                     lambda api: api.inspect_image(image))
            return
        except NotFound:
            pass
        api = await self._engine._client()
        try:
            # The SDK splits `repo:tag` itself (and pulls :latest when no tag is given).
            await self._engine._in_thread(f"pull the image {image}", lambda: api.pull(image),
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
        for container_id in await self._engine._call("list the helper containers", abandoned):
            await self._remove_container(container_id)
            removed += 1
        return removed

    async def _remove_container(self, container_id: str) -> None:
        try:
            await self._engine._call("remove a helper container",
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
