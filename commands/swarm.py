"""Swarm commands: servers, apps, versions, ps, logs (read) and deploy, upgrade, rollback,
undeploy (change). Parsing, roles and error reporting are the pipeline's; this module only
declares the commands and hands each to the operations layer."""

from __future__ import annotations

from coopbot.args import APP, RECIPE, SERVER, SERVICE, VERSION, Name
from coopbot.invocation import Invocation
from coopbot.operation_kinds import OperationKind
from coopbot.operations.deployer import Deployer
from coopbot.operations.plan import OperationRequest, PlannedChange
from coopbot.operations.status import StatusViews
from coopbot.registry import Arg, CommandSpec, Flag, Operation
from coopbot.replies import Reply

DEFAULT_LOG_LINES = 50
MAX_LOG_LINES = 2000
GIT_REF = Name("a commit or branch", extra="._+-/")
# Deploying an untagged tree skips the recipe's release process: the highest role (admin by
# default), unless a co-op's `command_roles: {"deploy --chaos": ...}` says otherwise.
CHAOS_ROLE = "admin"


class SwarmCommands:
    def __init__(self, deployer: Deployer, status: StatusViews, *, read_role: str,
                 change_role: str, chaos_role: str = CHAOS_ROLE) -> None:
        self._deployer = deployer
        self._status = status
        self._read = read_role
        self._change = change_role
        self._chaos = chaos_role

    def specs(self) -> list[CommandSpec]:
        app = Arg("app", help="the app's name: its env file name, usually its domain", kind=APP)
        version = Arg("version", optional=True, help="a recipe version tag, e.g. 1.2.0+1.21.0",
                      kind=VERSION)
        return [
            CommandSpec("servers", "each server's reachability, Docker, swarm and stacks, and "
                        "its nodes' state, availability, role, engine and labels",
                        self._read, self.servers),
            CommandSpec("apps", "apps this room controls, deployed and newest versions, state",
                        self._read, self.apps, args=(Arg("server", optional=True, kind=SERVER),)),
            CommandSpec("versions", "a recipe's versions, newest first, deployed ones marked",
                        self._read, self.versions, args=(Arg("recipe", kind=RECIPE),),
                        examples=("!versions gitea",)),
            CommandSpec("ps", "an app's services: health, replicas, node, version, update, last "
                        "error, image",
                        self._read, self.ps, args=(app,)),
            CommandSpec("logs", "the last log lines of an app's service (env values redacted)",
                        self._change, self.logs,
                        args=(app, Arg("service", optional=True, help="default: app",
                                       kind=SERVICE),
                              Arg.number("lines", 1, MAX_LOG_LINES, optional=True,
                                         help=f"default {DEFAULT_LOG_LINES}")),
                        examples=("!logs blog.example.org", "!logs blog.example.org db 200")),
            CommandSpec(
                "deploy", "deploy an app (version: given, else its env file's, else the newest)",
                self._change, self.deploy, args=(app, version),
                operation=self._operation(OperationKind.DEPLOY),
                flags=(Flag("chaos", help="deploy the recipe's newest commit (or the given "
                                          "commit or branch) untagged, as abra's --chaos does",
                            value=Arg("ref", kind=GIT_REF), role=self._chaos),),
                details="Runs preflight checks (env keys, secrets, networks, images), deploys "
                        "with `docker stack deploy`, waits until every service is healthy, and "
                        "returns to the previous version if it is not.",
                examples=("!deploy blog.example.org", "!deploy blog.example.org 1.2.0+1.21.0",
                          "!deploy bore.example.org --chaos")),
            CommandSpec(
                "upgrade", "upgrade an app to the newest (or given newer) version",
                self._change, self.upgrade, args=(app, version),
                operation=self._operation(OperationKind.UPGRADE),
                details="Shows the release notes in between; never goes back to an older "
                        "version. A failed upgrade returns to the version that ran before.",
                examples=("!upgrade blog.example.org",)),
            CommandSpec(
                "rollback", "roll an app back to the version it ran before (or a given older one)",
                self._change, self.rollback, args=(app, version),
                operation=self._operation(OperationKind.ROLLBACK),
                examples=("!rollback blog.example.org",)),
            CommandSpec(
                "undeploy", "remove an app's stack; its volumes and secrets stay",
                self._change, self.undeploy, args=(app,),
                operation=self._operation(OperationKind.UNDEPLOY)),
        ]

    async def servers(self, inv: Invocation) -> Reply:
        return await self._status.servers(inv.room)

    async def apps(self, inv: Invocation) -> Reply:
        return await self._status.apps(inv.room, inv.arg("server"))

    async def versions(self, inv: Invocation) -> Reply:
        return await self._status.versions(inv.room, inv.args["recipe"])

    async def ps(self, inv: Invocation) -> Reply:
        return await self._status.ps(inv.room, inv.args["app"])

    async def logs(self, inv: Invocation) -> Reply:
        # `lines` was checked by its kind when the command was bound.
        lines = int(inv.arg("lines") or DEFAULT_LOG_LINES)
        return await self._status.logs(inv.room, inv.args["app"], inv.arg("service"), lines)

    async def deploy(self, inv: Invocation) -> Reply:
        return await self._operate("deploy", inv)

    async def upgrade(self, inv: Invocation) -> Reply:
        return await self._operate("upgrade", inv)

    async def rollback(self, inv: Invocation) -> Reply:
        return await self._operate("rollback", inv)

    async def undeploy(self, inv: Invocation) -> Reply:
        return await self._operate("undeploy", inv)

    async def _operate(self, kind: str, inv: Invocation) -> Reply:
        return await self._deployer.run(self.request(kind, inv), inv.room, inv.progress)

    def _operation(self, kind: OperationKind) -> Operation:
        async def plan(inv: Invocation) -> PlannedChange:
            planned = await self._deployer.plan(self.request(kind, inv), inv.room)
            return planned.planned()

        return Operation(kind, plan)

    @staticmethod
    def request(kind: str, inv: Invocation) -> OperationRequest:
        return OperationRequest(
            kind=kind, app_name=inv.args["app"], version=inv.arg("version"),
            requester=inv.sender, room_id=inv.room_id, event_id=inv.event_id,
            approvers=inv.approvers, expected_binding=inv.expected_binding,
            chaos=inv.arg("chaos"),
        )
