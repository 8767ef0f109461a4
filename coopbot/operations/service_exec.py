"""Running a command inside one of a service's running containers: the one seam `!cmd` uses.

Today it reaches the task on the node the server's engine connection talks to
(`engine.containers.local_task` + `exec_in`); a node-aware variant for multi-node swarms
replaces this function and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from coopbot.errors import NotFound
from coopbot.servers.containers import ExecResult
from coopbot.servers.engine import DockerEngine


async def exec_in_service(engine: DockerEngine, service: str, cmd: Sequence[str], *,
                          timeout: float, env: Mapping[str, str] | None = None) -> ExecResult:
    """Run `cmd` in a running task of `service` (its full swarm name); RAW output."""
    task = await engine.containers.local_task(service)
    if task is None:
        raise NotFound(f"service {service} has no running container on server {engine.name}")
    return await engine.containers.exec_in(task.container_id, cmd, env=env or {},
                                           timeout=timeout)
