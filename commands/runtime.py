"""Day-2 commands: restart an app's services, run a function of its recipe's abra.sh. The
pipeline parses, checks roles and asks for votes; this module declares the commands."""

from __future__ import annotations

from coopbot.args import APP, SERVICE, Name, Text
from coopbot.invocation import Invocation
from coopbot.operation_kinds import OperationKind
from coopbot.operations.app_runtime import AppRuntime
from coopbot.operations.plan import PlannedChange
from coopbot.registry import Arg, CommandSpec, Operation
from coopbot.replies import Reply
from coopbot.subcommands import requested

FUNCTION = Name("a shell function name", extra="_", limit=64)


class RuntimeCommands:
    def __init__(self, runtime: AppRuntime, *, change_role: str, cmd_role: str) -> None:
        self._runtime = runtime
        self._change = change_role
        self._cmd_role = cmd_role

    def specs(self) -> list[CommandSpec]:
        app = Arg("app", help="the app's name", kind=APP)
        return [
            CommandSpec(
                "restart", "restart an app's services (or one) and wait until they are healthy",
                self._change, self.restart,
                args=(app, Arg("service", optional=True, kind=SERVICE,
                               help="default: every service of the app")),
                operation=Operation(OperationKind.RESTART, self._plan_restart),
                details="A forced update per service (`docker service update --force`): the "
                        "replica count and spec stay, swarm replaces the tasks following the "
                        "recipe's update_config, and coopbot waits for convergence and "
                        "health as after a deploy.",
                examples=("!restart blog.example.org", "!restart blog.example.org app")),
            CommandSpec(
                "cmd", "run a function of the recipe's abra.sh inside a service's container",
                self._cmd_role, self.cmd,
                args=(app, Arg("service", kind=SERVICE),
                      Arg("function", kind=FUNCTION, help="a function abra.sh defines"),
                      Arg("args", optional=True, rest=True, kind=Text(limit=1000),
                          help="words passed to the function as its arguments, one per word")),
                operation=Operation(OperationKind.CMD, self._plan_cmd),
                details="Like `abra app cmd`: abra.sh is sourced inside the service's running "
                        "container and the function called with the words as arguments "
                        "(never parsed by a shell). Output is redacted, attached as a file "
                        "when long; a run is given up after `cmd_timeout_seconds`.",
                examples=("!cmd blog.example.org app migrate",)),
        ]

    @staticmethod
    def _words(inv: Invocation) -> tuple[str, ...]:
        return tuple((inv.arg("args") or "").split())

    async def _plan_restart(self, inv: Invocation) -> PlannedChange:
        return await self._runtime.plan_restart(inv.args["app"], inv.room, inv.arg("service"))

    async def restart(self, inv: Invocation) -> Reply:
        return await self._runtime.restart(inv.args["app"], inv.room, inv.arg("service"),
                                           requested(inv), inv.progress)

    async def _plan_cmd(self, inv: Invocation) -> PlannedChange:
        return await self._runtime.plan_cmd(inv.args["app"], inv.room, inv.args["service"],
                                            inv.args["function"], self._words(inv))

    async def cmd(self, inv: Invocation) -> Reply:
        return await self._runtime.cmd(inv.args["app"], inv.room, inv.args["service"],
                                       inv.args["function"], self._words(inv),
                                       requested(inv), inv.progress)
