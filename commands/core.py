"""Commands every room has: help, ping, whoami."""

from __future__ import annotations

import time

from coopbot.args import COMMAND
from coopbot.errors import UnknownCommand
from coopbot.invocation import Invocation
from coopbot.registry import Arg, CommandRegistry, CommandSpec
from coopbot.replies import Reply


class CoreCommands:
    def __init__(self, registry: CommandRegistry, prefix: str, lowest_role: str) -> None:
        self._registry = registry
        self._prefix = prefix
        self._role = lowest_role

    def specs(self) -> list[CommandSpec]:
        return [
            CommandSpec(
                name="help",
                summary="list the commands you may run here, or explain one",
                role=self._role,
                handler=self.help,
                args=(Arg("command", optional=True, kind=COMMAND),),
                examples=("!help", "!help deploy"),
            ),
            CommandSpec(
                name="ping",
                summary="check that the bot is alive and how fast messages reach it",
                role=self._role,
                handler=self.ping,
            ),
            CommandSpec(
                name="whoami",
                summary="show your roles in this room and why you hold them",
                role=self._role,
                handler=self.whoami,
            ),
        ]

    async def help(self, inv: Invocation) -> Reply:
        wanted = inv.arg("command")
        if wanted:
            return self._help_for(wanted.removeprefix(self._prefix), inv)
        allowed = [s for s in self._registry.all() if inv.grant.has(s.role)]
        lines = ["**Commands you can run here:**"]
        lines += [f"- `{s.usage(self._prefix)}`: {s.summary}" for s in allowed]
        hidden = len(self._registry.all()) - len(allowed)
        if hidden:
            lines.append(
                f"{hidden} more need a role you do not hold here (see `{self._prefix}whoami`)."
            )
        lines.append(f"`{self._prefix}help <command>` explains one command.")
        return Reply.of("\n".join(lines))

    def _help_for(self, name: str, inv: Invocation) -> Reply:
        try:
            spec = self._registry.lookup(name.lower())
        except UnknownCommand as error:
            return Reply.of(str(error))
        lines = [f"`{spec.usage(self._prefix)}`: {spec.summary}"]
        if spec.details:
            lines.append(spec.details)
        for arg in spec.args:
            if arg.describe():
                lines.append(f"- `{arg.name}`: {arg.describe()}")
        for flag in spec.flags:
            needs = f"; needs the {flag.role} role" if flag.role else ""
            lines.append(f"- `{flag.usage()[1:-1]}`: {flag.help}{needs}")
        if spec.examples:
            lines.append("Examples: " + ", ".join(f"`{e}`" for e in spec.examples))
        held = "you hold it" if inv.grant.has(spec.role) else "you do not hold it here"
        lines.append(f"Needs the {spec.role} role ({held}).")
        return Reply.of("\n".join(lines))

    async def ping(self, inv: Invocation) -> Reply:
        delivery_ms = max(0.0, inv.received_at * 1000 - inv.event_timestamp_ms)
        handling_ms = (time.time() - inv.received_at) * 1000
        return Reply.of(
            f"pong: your message reached me {delivery_ms:.0f} ms after the homeserver got it; "
            f"answering took {handling_ms:.1f} ms."
        )

    async def whoami(self, inv: Invocation) -> Reply:
        grant = inv.grant
        power = "room creator (unlimited power)" if grant.power == float("inf") else (
            f"power level {int(grant.power)}"
        )
        lines = [f"You are `{inv.sender}`, {power} in this room."]
        if not grant.roles:
            lines.append("You hold no role here.")
        else:
            lines.append("Your roles here:")
            lines += [f"- **{role}**: {grant.reasons[role]}" for role in reversed(grant.roles)]
        return Reply.of("\n".join(lines))
