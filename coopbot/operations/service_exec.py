"""Running a command inside one of a service's running containers: the one seam `!cmd` uses.

The task may run on any node of the swarm: the engine's node helpers exec into it there (a
one-shot helper on that node when it is not the one the connection reaches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from coopbot.errors import NotFound
from coopbot.servers.containers import ExecResult
from coopbot.servers.engine import DockerEngine


async def exec_in_service(engine: DockerEngine, service: str, cmd: Sequence[str], *,
                          timeout: float, env: Mapping[str, str] | None = None) -> ExecResult:
    """Run `cmd` in a running task of `service` (its full swarm name); RAW output."""
    done = await engine.helpers.exec_in_service(service, cmd, env=env or {}, timeout=timeout)
    if done is None:
        raise NotFound(f"service {service} has no running task on server {engine.name}")
    return done[1]
