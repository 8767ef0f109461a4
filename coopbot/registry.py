"""Commands declared as data: name, arguments, help, required role, and for a command that
changes something, its operation (kind and planner); one explicit registry.

The dispatcher (pipeline.py) does parsing, permission checks, approvals and error reporting for
every command, so a command module only declares a CommandSpec and writes its handler (the
executor) and, for an operation, the planner a vote binds to.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from coopbot.args import TEXT, ArgKind, Duration, InvalidArg, Number
from coopbot.echo import shown
from coopbot.errors import ConfigError, UnknownCommand, UsageError
from coopbot.operation_kinds import OperationKind

if TYPE_CHECKING:
    from coopbot.invocation import Invocation
    from coopbot.operations.plan import PlannedChange
    from coopbot.replies import Reply

Handler = Callable[["Invocation"], Awaitable["Reply"]]
# What a vote binds to: the plan an invocation would run now, changing nothing.
Planner = Callable[["Invocation"], Awaitable["PlannedChange"]]


@dataclass(frozen=True)
class Operation:
    """What a changing command is, for policies, locks and the audit: its kind, and how to
    plan it so a request card can show, and votes bind to, exactly what will run."""

    kind: OperationKind
    planner: Planner
    # For a command whose subcommands differ (`!config <app>` reads, `!config <app> set`
    # changes): whether these bound arguments only read. Those skip the approval stage.
    reads: Callable[[dict[str, str]], bool] | None = None

    def changes(self, args: dict[str, str]) -> bool:
        return self.reads is None or not self.reads(args)


@dataclass(frozen=True)
class Arg:
    name: str
    help: str = ""
    optional: bool = False
    rest: bool = False  # takes every remaining word (e.g. a reason)
    kind: ArgKind = TEXT  # what the value must look like; checked by CommandSpec.bind
    secret: bool = False  # a value never repeated back (in an error or anywhere else)

    @staticmethod
    def number(name: str, low: int, high: int, *, help: str = "", optional: bool = False,
               prefix: str = "") -> Arg:
        return Arg(name, help=help, optional=optional, kind=Number(low, high, prefix))

    def describe(self) -> str:
        """The help line of this argument: its own words, then what it accepts if that is not
        obvious (numbers and durations; names are told when they are wrong)."""
        rule = self.kind.rule if _tells_rule(self.kind) else ""
        return "; ".join(part for part in (self.help, rule) if part)

    def check(self, value: str, command: str, usage: str) -> str:
        try:
            return self.kind.parse(value)
        except InvalidArg as rule:
            if self.secret:
                raise UsageError(f"`{command}`: {self.name} must be {rule}.", usage) from None
            raise UsageError(f"`{command}`: {self.name} must be {rule}; "
                             f"`{shown(value)}` is not.", usage) from None

    def usage(self) -> str:
        label = f"{self.name}..." if self.rest else self.name
        return f"[{label}]" if self.optional else f"<{label}>"


@dataclass(frozen=True)
class Flag:
    """`--name [value]` anywhere after the command: a different way to run it (abra's
    `deploy --chaos [ref]`). Its value, if declared, is the next word unless that is another
    flag; bound as args[name] ("" without a value). A flag may need a higher role than the
    command (config `command_roles` key `<command> --<flag>`)."""

    name: str
    help: str = ""
    value: Arg | None = None
    role: str | None = None
    needs_value: bool = False  # `--node <node>`: the flag alone is refused with the usage

    def usage(self) -> str:
        value = ""
        if self.value is not None:
            value = f" <{self.value.name}>" if self.needs_value else f" [{self.value.name}]"
        return f"[--{self.name}{value}]"


@dataclass(frozen=True)
class CommandSpec:
    name: str
    summary: str
    role: str
    handler: Handler
    args: tuple[Arg, ...] = ()
    details: str = ""
    examples: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    operation: Operation | None = None  # None: reads only, never needs a vote
    flags: tuple[Flag, ...] = ()
    # What the audit log may keep of the command's words (e.g. keys, never values); all of
    # them when None.
    audit_words: Callable[[tuple[str, ...]], tuple[str, ...]] | None = None

    def audited(self, words: tuple[str, ...]) -> tuple[str, ...]:
        return self.audit_words(words) if self.audit_words is not None else words

    def usage(self, prefix: str = "!") -> str:
        return " ".join([f"{prefix}{self.name}", *(a.usage() for a in self.args),
                         *(f.usage() for f in self.flags)])

    def roles_for(self, values: dict[str, str]) -> list[tuple[str, str]]:
        """(what, role) pairs a sender must hold to run it with these bound values: the
        command's role, then each given flag's."""
        needed = [(self.name, self.role)]
        needed += [(f"{self.name} --{f.name}", f.role) for f in self.flags
                   if f.role is not None and f.name in values]
        return needed

    def _take_flags(self, words: list[str], usage: str) -> tuple[dict[str, str], list[str]]:
        if not self.flags:
            # Commands with sub-actions (`!secret <app> generate --all`) read their own
            # options from their words; any other command refuses `--x` as an unexpected word.
            return {}, words
        values: dict[str, str] = {}
        rest: list[str] = []
        known = {f"--{f.name}": f for f in self.flags}
        pos = 0
        while pos < len(words):
            word = words[pos]
            pos += 1
            if not word.startswith("--"):
                rest.append(word)
                continue
            flag = known.get(word)
            if flag is None or flag.name in values:
                what = "twice" if flag is not None else "an unknown option"
                raise UsageError(f"`{self.name}` got {what}: `{shown(word)}`", usage)
            values[flag.name] = ""
            if flag.value is not None and pos < len(words) and not words[pos].startswith("--"):
                values[flag.name] = flag.value.check(words[pos], self.name, usage)
                pos += 1
            elif flag.needs_value and flag.value is not None:
                raise UsageError(f"`--{flag.name}` needs {flag.value.name}.", usage)
        return values, rest

    def bind(self, words: tuple[str, ...], prefix: str = "!") -> dict[str, str]:
        """Match words to declared flags and arguments and check each against its kind, or
        raise UsageError with this command's usage. Returns the canonical values."""
        usage = self.usage(prefix)
        values, remaining = self._take_flags(list(words), usage)
        for arg in self.args:
            if arg.rest:
                if remaining:
                    values[arg.name] = arg.check(" ".join(remaining), self.name, usage)
                    remaining = []
                elif not arg.optional:
                    raise UsageError(f"`{self.name}` needs {arg.usage()}.", usage)
                continue
            if remaining:
                values[arg.name] = arg.check(remaining.pop(0), self.name, usage)
            elif not arg.optional:
                raise UsageError(f"`{self.name}` needs {arg.usage()}.", usage)
        if remaining:
            extra = shown(" ".join(remaining))
            raise UsageError(f"`{self.name}` got unexpected words: `{extra}`", usage)
        return values


def _tells_rule(kind: ArgKind) -> bool:
    return isinstance(kind, Number | Duration)


class CommandRegistry:
    def __init__(self, specs: Iterable[CommandSpec] = ()) -> None:
        self._specs: dict[str, CommandSpec] = {}
        self._aliases: dict[str, str] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: CommandSpec) -> None:
        for name in (spec.name, *spec.aliases):
            if name in self._specs or name in self._aliases:
                raise ValueError(f"command name {name!r} registered twice")
        self._specs[spec.name] = spec
        for alias in spec.aliases:
            self._aliases[alias] = spec.name

    def override_role(self, name: str, role: str) -> None:
        """Config `command_roles`: a co-op may require another role for a command, or for one
        of its flags (`deploy --chaos`)."""
        command, _, flag = name.partition(" --")
        if command not in self._specs:
            raise ConfigError([f"command_roles.{name}: unknown command "
                               f"(one of {', '.join(sorted(self._specs))})"])
        spec = self._specs[command]
        if not flag:
            self._specs[command] = replace(spec, role=role)
            return
        if flag not in {f.name for f in spec.flags}:
            known = ", ".join(f"`{command} --{f.name}`" for f in spec.flags) or "none"
            raise ConfigError([f"command_roles.{name}: `{command}` has no flag --{flag} "
                               f"(flags: {known})"])
        flags = tuple(replace(f, role=role) if f.name == flag else f for f in spec.flags)
        self._specs[command] = replace(spec, flags=flags)

    def lookup(self, name: str) -> CommandSpec:
        key = self._aliases.get(name, name)
        spec = self._specs.get(key)
        if spec is None:
            raise UnknownCommand(name, self.suggest(name))
        return spec

    def suggest(self, name: str) -> str | None:
        close = difflib.get_close_matches(name, [*self._specs, *self._aliases], n=1, cutoff=0.6)
        return self._aliases.get(close[0], close[0]) if close else None

    def audited(self, name: str, words: tuple[str, ...]) -> tuple[str, ...]:
        """The words of command `name` as the audit log may keep them; a mistyped name is
        masked as the command it is closest to (`!secrte <app> insert ...` holds a value
        too)."""
        key = self._aliases.get(name, name)
        spec = self._specs.get(key) or self._specs.get(self.suggest(name) or "")
        return spec.audited(words) if spec is not None else words

    def all(self) -> list[CommandSpec]:
        return list(self._specs.values())
