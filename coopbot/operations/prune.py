"""`!prune <server>`: stopped containers and unused images removed on every node of a server,
one per-node helper each, recorded as an operation like any other change."""

from __future__ import annotations

import time
from dataclasses import dataclass

from coopbot.config import RoomConfig
from coopbot.errors import CoopbotError, NotFound
from coopbot.ids import EventID, RoomID, UserID
from coopbot.operations.scope import AppScope
from coopbot.servers.pool import ServerPool
from coopbot.status_message import Progress, Throttle
from coopbot.store.operations import OperationStore


def human_bytes(count: int) -> str:
    """Decimal units, as docker itself reports what a prune reclaimed."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


@dataclass(frozen=True)
class PruneResult:
    server: str
    freed: dict[str, int]  # node hostname -> bytes
    failed: dict[str, str]  # node hostname -> room-safe reason
    seconds: float

    def describe(self) -> str:
        total = sum(self.freed.values())
        lines = [f"**Pruned {self.server}**: {human_bytes(total)} freed on "
                 f"{len(self.freed)} node(s) in {self.seconds:.0f} s."]
        lines += [f"- {node}: {human_bytes(size)}" for node, size in sorted(self.freed.items())]
        lines += [f"- {node}: FAILED: {why}" for node, why in sorted(self.failed.items())]
        return "\n".join(lines)


class NodeMaintenance:
    def __init__(self, pool: ServerPool, scope: AppScope, operations: OperationStore) -> None:
        self._pool = pool
        self._scope = scope
        self._operations = operations

    def check(self, server: str, room: RoomConfig | None) -> None:
        if server not in self._scope.servers(room, self._pool.names):
            raise NotFound(f"This room controls no server called `{server}`.")

    async def prune(self, server: str, room: RoomConfig | None, requester: UserID,
                    progress: Progress, *, room_id: RoomID | None = None,
                    event_id: EventID | None = None, approvers: tuple[str, ...] = ()
                    ) -> PruneResult:
        self.check(server, room)
        engine = self._pool.get(server)
        say = Throttle(progress).say
        started = time.monotonic()
        # Locked as "server <name>": one prune of a server at a time; apps are not locked.
        async with self._operations.running(
                kind="prune", app=f"server {server}", server=server, requester=requester,
                room_id=room_id, event_id=event_id, approvers=approvers) as operation_id:
            freed: dict[str, int] = {}
            failed: dict[str, str] = {}
            for node in await engine.helpers.nodes():
                if node.state != "ready":
                    failed[node.hostname] = f"the node is {node.state}"
                    continue
                await say(f"prune {server}: node {node.hostname}...")
                try:
                    freed[node.hostname] = await engine.helpers.prune(node.node_id)
                except CoopbotError as error:
                    failed[node.hostname] = str(error)
            result = PruneResult(server, freed, failed, time.monotonic() - started)
            await self._operations.finish(
                operation_id, "ok" if not failed else "failed",
                f"{sum(freed.values())} bytes freed on {len(freed)} node(s)"
                + (f"; failed on {', '.join(sorted(failed))}" if failed else ""))
            return result
