"""A command with subcommands (`!config <app> set ...`): the words after the action are bound
by that action's own arguments, with the same checks and usage help as a whole command."""

from __future__ import annotations

from collections.abc import Mapping

from coopbot.errors import UsageError
from coopbot.invocation import Invocation
from coopbot.operations.app_files import Requested
from coopbot.registry import Arg, CommandSpec
from coopbot.replies import Reply


async def _never(inv: Invocation) -> Reply:
    raise AssertionError("a subcommand spec is only used to bind")


def bind_action(command: str, role: str, actions: Mapping[str, tuple[Arg, ...]],
                lead: tuple[Arg, ...], action: str | None, rest: str | None,
                default: str = "", maxsplit: int = -1) -> tuple[str, dict[str, str]]:
    """(the action, its bound arguments); UsageError naming the action's usage."""
    name = action or default
    if name not in actions:
        choices = ", ".join(f"`{a}`" for a in actions if a)
        raise UsageError(f"`{command}` has no action `{name}`; it has {choices}.",
                         usage(command, actions, lead))
    # The registry joined the words with single spaces; a quoted word keeps its own spaces
    # when `maxsplit` leaves the last one whole.
    words = tuple(rest.split(" ", maxsplit) if maxsplit >= 0 else rest.split()) if rest else ()
    label = f"{command} {' '.join(a.usage() for a in lead)} {name}".strip()
    spec = CommandSpec(label, "", role, _never, args=actions[name])
    return name, spec.bind(words)


def usage(command: str, actions: Mapping[str, tuple[Arg, ...]], lead: tuple[Arg, ...],
          prefix: str = "!") -> str:
    lead_text = " ".join(a.usage() for a in lead)
    forms = [" ".join(p for p in (f"{prefix}{command}", lead_text, name,
                                  *(a.usage() for a in args)) if p)
             for name, args in actions.items()]
    return " | ".join(forms)


def requested(inv: Invocation) -> Requested:
    """Who asks, where, and after a vote who approved which plan: what an operation records."""
    return Requested(inv.sender, inv.room_id, inv.event_id, inv.approvers,
                     inv.expected_binding)
