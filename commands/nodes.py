"""Node maintenance: prune (admin by default, an operation under the policies)."""

from __future__ import annotations

from coopbot.args import SERVER
from coopbot.invocation import Invocation
from coopbot.operation_kinds import OperationKind
from coopbot.operations.plan import Binding, PlannedChange
from coopbot.operations.prune import NodeMaintenance
from coopbot.registry import Arg, CommandSpec, Operation
from coopbot.replies import Reply


class NodeCommands:
    def __init__(self, maintenance: NodeMaintenance, *, admin_role: str) -> None:
        self._maintenance = maintenance
        self._admin = admin_role

    def specs(self) -> list[CommandSpec]:
        return [CommandSpec(
            "prune", "remove stopped containers and unused images on every node of a server",
            self._admin, self.prune, args=(Arg("server", kind=SERVER),),
            operation=Operation(OperationKind.PRUNE, self._plan),
            details="Runs `docker container prune` and `docker image prune -a` on each node "
                    "(in a helper there) and says how much each freed. Images no container "
                    "uses are gone afterwards: a server without a registry needs them loaded "
                    "again before a deploy that uses them.",
            examples=("!prune prod",))]

    async def _plan(self, inv: Invocation) -> PlannedChange:
        server = inv.args["server"]
        self._maintenance.check(server, inv.room)
        return PlannedChange(binding=Binding(kind="prune", app=f"server {server}",
                                             server=server),
                             lines=[f"prune server {server}: stopped containers and unused "
                                    "images on every node"], app=f"server {server}")

    async def prune(self, inv: Invocation) -> Reply:
        result = await self._maintenance.prune(
            inv.args["server"], inv.room, inv.sender, inv.progress, room_id=inv.room_id,
            event_id=inv.event_id, approvers=inv.approvers)
        return Reply.of(result.describe())
