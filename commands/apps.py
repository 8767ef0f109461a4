"""App files from the room: new, config (show, set, unset, history) and remove. Parsing, roles,
approvals and error reporting are the pipeline's; this module declares the commands and hands
each to the operations layer."""

from __future__ import annotations

import re

from coopbot.args import APP, RECIPE, WORD, Name, Text
from coopbot.config import RoomConfig
from coopbot.errors import PermissionDenied, UsageError
from coopbot.invocation import Invocation
from coopbot.operation_kinds import OperationKind
from coopbot.operations.app_files import AppFiles, EnvEdit, Requested
from coopbot.operations.app_runtime import AppRuntime
from coopbot.operations.plan import PlannedChange
from coopbot.operations.secret_ops import ALL, SecretService
from coopbot.registry import Arg, CommandSpec, Operation
from coopbot.replies import Reply
from coopbot.subcommands import bind_action, requested

HISTORY_SHOWN = 10
_ASSIGNED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=\S*")
_READS = (None, "", "show", "history")


def mask_values(words: tuple[str, ...]) -> tuple[str, ...]:
    """`KEY=value` words as `KEY=…`: the audit names keys, never values."""
    text = " ".join(words)
    head, sep, _ = text.partition("=")
    if not sep:
        return words
    return tuple(f"{head}=…".split(" "))


class AppCommands:
    def __init__(self, files: AppFiles, secrets: SecretService, runtime: AppRuntime, *,
                 read_role: str, change_role: str) -> None:
        self._files = files
        self._secrets = secrets
        self._runtime = runtime
        self._read = read_role
        self._change = change_role
        self._config_actions: dict[str, tuple[Arg, ...]] = {
            "": (),
            "set": (Arg("KEY=value", rest=True, kind=Text(limit=4000),
                        help="one key; `--force` first for a key the recipe does not set"),),
            "unset": (Arg("KEY", rest=True, kind=Text(limit=1000), help="one or more keys"),),
            "history": (),
            "show": (),
        }

    def specs(self) -> list[CommandSpec]:
        app = Arg("app", help="the app's name: its env file name, usually its domain", kind=APP)
        return [
            CommandSpec(
                "new", "make a new app's env file from a recipe's .env.sample, as `abra app new`",
                self._change, self.new,
                args=(Arg("recipe", kind=RECIPE),
                      Arg("app", help="the new app's domain (its name)", kind=APP),
                      Arg("options", optional=True, rest=True, kind=Text(limit=200),
                          help="a server name, `--secrets` (generate them), `--chaos` (the "
                               "recipe's latest commit instead of its newest release)")),
                operation=Operation(OperationKind.NEW, self._plan_new),
                details="Copies the recipe's .env.sample of its newest release to "
                        "servers/<server>/<app>.env with TYPE and DOMAIN set, then says what "
                        "is left to do before `!deploy`.",
                examples=("!new testapp blog.example.org", "!new gitea git.example.org prod "
                          "--secrets")),
            CommandSpec(
                "config", "an app's env keys, or set, unset and the history of its env file",
                self._read, self.config,
                args=(app, Arg("action", optional=True, kind=WORD,
                               help="set, unset or history (none: show)"),
                      Arg("words", optional=True, rest=True, kind=Text(limit=4000))),
                operation=Operation(OperationKind.CONFIG, self._plan_config,
                                    reads=lambda args: args.get("action") in _READS),
                audit_words=mask_values,
                details="Shows values only of public keys (TYPE, DOMAIN, ... and the config's "
                        "`public_env_keys`); edits keep every other byte of the file. Keys "
                        "that look secret are refused: use `!secret`. Setting and unsetting "
                        "need the operator role (checked when it runs).",
                examples=("!config blog.example.org",
                          "!config blog.example.org set GREETING=hello world",
                          "!config blog.example.org unset OLD_KEY",
                          "!config blog.example.org history")),
            CommandSpec(
                "remove", "delete an undeployed app's env file (and with flags its volumes, "
                          "secrets)",
                self._change, self.remove,
                args=(app, Arg("flags", optional=True, rest=True, kind=Text(limit=100),
                               help="`--volumes` (needs a verified backup), `--secrets`")),
                operation=Operation(OperationKind.REMOVE, self._plan_remove),
                examples=("!remove blog.example.org", "!remove blog.example.org --volumes "
                          "--secrets")),
        ]

    # ---- !new --------------------------------------------------------------------------------

    @staticmethod
    def _new_options(inv: Invocation) -> tuple[str | None, bool, bool]:
        server: str | None = None
        secrets = chaos = False
        for word in (inv.arg("options") or "").split():
            if word == "--secrets":
                secrets = True
            elif word == "--chaos":
                chaos = True
            elif server is None and not word.startswith("-"):
                server = Arg("server", kind=Name("a server name")).check(
                    word, "new", inv.spec.usage())
            else:
                raise UsageError(f"`new`: unexpected `{word[:40]}`.", inv.spec.usage())
        return server, secrets, chaos

    async def _plan_new(self, inv: Invocation) -> PlannedChange:
        server, with_secrets, chaos = self._new_options(inv)
        planned, _ = await self._files.plan_new(inv.args["recipe"], inv.args["app"], server,
                                                inv.room, chaos, with_secrets)
        return planned

    async def new(self, inv: Invocation) -> Reply:
        server_arg, with_secrets, chaos = self._new_options(inv)
        recipe, name = inv.args["recipe"], inv.args["app"]
        app, made_from, note = await self._files.create(recipe, name, server_arg, inv.room,
                                                        chaos=chaos, with_secrets=with_secrets,
                                                        request=requested(inv))
        server = app.server
        lines = [f"**`{name}` created** on {server} from {recipe} {made_from}: "
                 f"servers/{server}/{name}.env with TYPE and DOMAIN set.{note}"]
        if with_secrets:
            made = await self._secrets.generate(name, inv.room, ALL, Requested(
                inv.sender, inv.room_id, inv.event_id, inv.approvers))
            lines.append("Secrets generated (values are never shown): "
                         + ", ".join(f"`{m}`" for m in made) + ".")
        lines += await self._left_to_do(name, inv.room)
        return Reply.of("\n".join(lines))

    async def _left_to_do(self, name: str, room: RoomConfig | None) -> list[str]:
        app = await self._files.app(name, room)
        todo = []
        empty = [key for key, value in app.env.items() if value == ""]
        if empty:
            todo.append("env keys without a value: " + ", ".join(f"`{k}`" for k in empty)
                        + f" (`!config {name} set KEY=value`)")
        missing = await self._secrets.missing(app)
        if missing:
            todo.append("secrets missing: " + ", ".join(f"`{m}`" for m in missing)
                        + f" (`!secret {name} generate --all`)")
        if not todo:
            return [f"Nothing left to do: `!deploy {name}` deploys it."]
        return ["Left to do:", *(f"- {t}" for t in todo), f"Then `!deploy {name}`."]

    # ---- !config -----------------------------------------------------------------------------

    def _config_action(self, inv: Invocation) -> tuple[str, EnvEdit | None]:
        action, bound = bind_action("config", self._read, self._config_actions,
                                    (Arg("app"),), inv.arg("action"), inv.arg("words"))
        if action in ("set", "unset") and not inv.grant.has(self._change):
            raise PermissionDenied(f"config {action}", self._change)
        if action == "set":
            text = bound["KEY=value"]
            force = text.startswith("--force ")
            assignment = text.removeprefix("--force ").strip()
            key, sep, value = assignment.partition("=")
            if not sep or not _ASSIGNED.match(assignment):
                raise UsageError("`config set` takes one `KEY=value`.",
                                 "!config <app> set [--force] KEY=value")
            return action, EnvEdit({key: value}, (), force)
        if action == "unset":
            return action, EnvEdit({}, tuple(bound["KEY"].split()))
        return action, None

    async def _plan_config(self, inv: Invocation) -> PlannedChange:
        _, edit = self._config_action(inv)
        assert edit is not None  # reading actions never reach the approval stage
        return await self._files.plan_edit(inv.args["app"], inv.room, edit)

    async def config(self, inv: Invocation) -> Reply:
        action, edit = self._config_action(inv)
        name = inv.args["app"]
        if action == "history":
            return await self._history(name, inv.room)
        if edit is None:
            return Reply.of("\n".join(await self._files.show(name, inv.room)))
        changed, note = await self._files.edit(name, inv.room, edit, requested(inv))
        if not changed:
            return Reply.of(f"`{name}`: nothing to change ({edit.describe()}).")
        return Reply.of(f"**`{name}` config changed**: {edit.describe()}.{note} "
                        f"`!deploy {name}` applies it.")

    async def _history(self, name: str, room: RoomConfig | None) -> Reply:
        changes = await self._files.changes(name, room, HISTORY_SHOWN)
        if changes is None:
            return Reply.of("The apps dir is not a git repository, so there is no history "
                            "(see docs/operator.md).")
        if not changes:
            return Reply.of(f"`{name}` has no commits in the apps dir's history yet.")
        rows = [f"- `{c.commit}` {c.when[:16].replace('T', ' ')} {c.subject}"
                + (f" ({c.requester})" if c.requester else "") for c in changes]
        return Reply.of("\n".join([f"**History of `{name}`** (newest first):", *rows]))

    # ---- !remove -----------------------------------------------------------------------------

    @staticmethod
    def _remove_flags(inv: Invocation) -> tuple[bool, bool]:
        words = (inv.arg("flags") or "").split()
        unknown = [w for w in words if w not in ("--volumes", "--secrets")]
        if unknown:
            raise UsageError(f"`remove`: unknown flag `{unknown[0][:40]}`.", inv.spec.usage())
        return "--volumes" in words, "--secrets" in words

    async def _plan_remove(self, inv: Invocation) -> PlannedChange:
        volumes, secrets = self._remove_flags(inv)
        return await self._runtime.plan_remove(inv.args["app"], inv.room, volumes, secrets)

    async def remove(self, inv: Invocation) -> Reply:
        volumes, secrets = self._remove_flags(inv)
        return await self._runtime.remove(inv.args["app"], inv.room, volumes, secrets,
                                          requested(inv))
