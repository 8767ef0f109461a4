"""One reading of a server's swarm: everything the watcher derives its conditions from.

Events only say that something changed; the state itself is always re-read here, through
the engine's ordinary calls, so a missed or reordered event can never leave a wrong state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from coopbot.servers.engine import DockerEngine
from coopbot.servers.states import ServerInfo, ServiceState
from coopbot.servers.task_failures import TaskFailures


@dataclass(frozen=True)
class SwarmView:
    at: float  # epoch seconds, when the reading started
    info: ServerInfo
    stacks: Mapping[str, tuple[ServiceState, ...]]
    failures: Mapping[str, TaskFailures]  # by full service name, within the failure window


async def read_view(engine: DockerEngine, *, at: float, failure_window: float) -> SwarmView:
    """Read the server's nodes, stacks and recent task failures (in parallel)."""
    info, stacks, failures = await asyncio.gather(
        engine.info(), engine.stacks(), engine.task_failures(at - failure_window)
    )
    return SwarmView(
        at=at,
        info=info,
        stacks={stack: tuple(services) for stack, services in stacks.items()},
        failures=failures,
    )
