"""Node health: each node's disk and inode use (Docker data root and `/`) and memory, read
through a per-node helper at a modest interval, against thresholds from the config.

One alert per node when something crosses its threshold on two readings in a row (a short
spike is not worth a message), one recovery note when all is below again. The last reading of
every node is kept for `!servers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from coopbot.errors import CoopbotError
from coopbot.servers.node_usage import NodeUsage, UsageBoard
from coopbot.servers.pool import ServerPool
from coopbot.watch.alerts import Alert

log = logging.getLogger(__name__)

Emit = Callable[[Alert], Awaitable[None]]
CONFIRMATIONS = 2  # readings in a row over a threshold before the alert


@dataclass(frozen=True)
class Thresholds:
    disk: float = 90.0
    inodes: float = 90.0
    memory: float = 95.0


class NodeHealth:
    def __init__(self, pool: ServerPool, servers: Iterable[str], emit: Emit, board: UsageBoard,
                 *, interval: float, thresholds: Thresholds = Thresholds(),
                 clock: Callable[[], float] = time.time) -> None:
        self._pool = pool
        self._servers = list(servers)
        self._emit = emit
        self._interval = interval
        self.thresholds = thresholds
        self._clock = clock
        self._board = board
        self._over: dict[tuple[str, str], int] = {}  # (server, node) -> readings in a row over
        self._alerted: set[tuple[str, str]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Read every server each interval (the first one interval after the start: a bot
        starting has more urgent things to ask its servers)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
            if stop.is_set():
                return
            for server in self._servers:
                await self.read(server)

    async def read(self, server: str) -> None:
        """One reading of every ready node of `server`, and the alerts it brings."""
        engine = self._pool.get(server)
        try:
            async with self._pool.background():
                nodes = [n for n in await engine.helpers.nodes() if n.state == "ready"]
                readings = {n.hostname: await engine.helpers.usage(n.node_id) for n in nodes}
        except CoopbotError as error:
            # Unreachable servers and nodes are the swarm watcher's to announce.
            log.info("node health of server %s not read: %s (%s)", server, error, error.detail)
            return
        self._board.put(server, readings)
        for node, usage in readings.items():
            await self._judge(server, node, usage)

    async def _judge(self, server: str, node: str, usage: NodeUsage) -> None:
        t = self.thresholds
        over = usage.over(t.disk, t.inodes, t.memory)
        key = (server, node)
        subject = f"Node {node} of server {server}"
        if over:
            self._over[key] = self._over.get(key, 0) + 1
            if self._over[key] >= CONFIRMATIONS and key not in self._alerted:
                self._alerted.add(key)
                what = ", ".join(f"{name} {used:.0f}%" for name, used in over.items())
                await self._alert(server, node, "over",
                                  f"{subject} is running out: {what} (thresholds: disk "
                                  f"{t.disk:g}%, inodes {t.inodes:g}%, memory {t.memory:g}%). "
                                  f"`!prune {server}` removes unused images and stopped "
                                  "containers.")
            return
        self._over.pop(key, None)
        if key in self._alerted:
            self._alerted.discard(key)
            await self._alert(server, node, "ok",
                              f"{subject} is below its thresholds again: {usage.line()}.",
                              recovered=True)

    async def _alert(self, server: str, node: str, state: str, message: str, *,
                     recovered: bool = False) -> None:
        alert = Alert(kind="resources", server=server, app=None, node=node,
                      severity="info" if recovered else "warning", message=message,
                      key=f"{server}/node/{node}/resources", state=state, recovered=recovered,
                      at=self._clock())
        log.info("node health alert: %s", message)
        await self._emit(alert)
