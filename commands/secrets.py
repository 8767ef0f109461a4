"""`!secret`: list an app's swarm secrets, generate, insert, rotate and remove versions. The
pipeline parses, checks roles and asks for votes; this module declares the command."""

from __future__ import annotations

from dataclasses import replace

from coopbot.args import APP, SERVICE, VERSION, WORD, Text
from coopbot.errors import PermissionDenied, UserError
from coopbot.invocation import Invocation
from coopbot.operation_kinds import OperationKind
from coopbot.operations.plan import PlannedChange
from coopbot.operations.secret_ops import ALL, SecretService
from coopbot.ports import PrivateRooms
from coopbot.registry import Arg, CommandSpec, Operation
from coopbot.replies import Reply
from coopbot.subcommands import bind_action, requested

_NAME = Arg("name", kind=SERVICE, help="the secret's name in the recipe, e.g. db_password")
_WHICH = Arg("name", help="a secret's name or --all", kind=Text(limit=64))
_VERSION = Arg("version", kind=VERSION, help="e.g. v2")
ACTIONS: dict[str, tuple[Arg, ...]] = {
    "": (),
    "generate": (_WHICH,),
    # Never echoed in a usage error: a mistyped insert may carry the value in any place.
    "insert": (replace(_NAME, secret=True), replace(_VERSION, secret=True),
               Arg("value", rest=True, secret=True, kind=Text(limit=8000))),
    "rotate": (_NAME,),
    "rm": (_NAME, _VERSION),
}


def mask_insert(words: tuple[str, ...]) -> tuple[str, ...]:
    """An insert's value never reaches the audit log: only `<app> insert <name> <version>`."""
    tokens = " ".join(words).split(" ")
    if len(tokens) > 1 and tokens[1] == "insert":
        return (*tokens[:4], "[value]") if len(tokens) > 4 else tuple(tokens)
    return words


class SecretCommands:
    def __init__(self, secrets: SecretService, rooms: PrivateRooms, *, read_role: str,
                 change_role: str) -> None:
        self._secrets = secrets
        self._rooms = rooms
        self._read = read_role
        self._change = change_role

    def specs(self) -> list[CommandSpec]:
        return [CommandSpec(
            "secret", "an app's swarm secrets (never values); generate, insert, rotate, rm",
            self._read, self.secret,
            args=(Arg("app", help="the app's name", kind=APP),
                  Arg("action", optional=True, kind=WORD,
                      help="generate, insert, rotate or rm (none: list)"),
                  Arg("words", optional=True, rest=True, secret=True, kind=Text(limit=8000))),
            operation=Operation(OperationKind.SECRET, self._plan,
                                reads=lambda args: not args.get("action")),
            audit_words=mask_insert,
            details="Secrets are named `<stack>_<name>_<version>` as abra names them. "
                    "`generate <name>|--all` makes a random value: as many letters and "
                    "digits as the `# length=N` on the version line says, 32 without one. "
                    "`insert <name> <version> <value>` works only in a direct encrypted room "
                    "with the bot, and the message is redacted at once. `rotate <name>` makes "
                    "version N+1, sets the version key, redeploys and says which version is "
                    "unused; `rm <name> <version>` removes an unused one. Changing needs the "
                    "operator role.",
            examples=("!secret blog.example.org", "!secret blog.example.org generate --all",
                      "!secret blog.example.org rotate db_password",
                      "!secret blog.example.org rm db_password v1"),
        )]

    def _action(self, inv: Invocation) -> tuple[str, dict[str, str]]:
        action = inv.arg("action") or ""
        if action == "insert":
            # Before anything reads the value: only a private, encrypted room may carry one.
            self._private_only(inv)
        if action and not inv.grant.has(self._change):
            raise PermissionDenied(f"secret {action}", self._change)
        return bind_action("secret", self._read, ACTIONS, (Arg("app"),), action or None,
                           inv.arg("words"), maxsplit=2 if action == "insert" else -1)

    def _private_only(self, inv: Invocation) -> None:
        if not self._rooms.is_direct_encrypted(inv.room_id, inv.sender):
            raise UserError("`secret insert` only works in a direct, encrypted room with me; "
                            "a value sent here is visible to the room: treat it as leaked, and "
                            "`!secret <app> rotate <name>` makes a new one.")

    async def _plan(self, inv: Invocation) -> PlannedChange:
        try:
            return await self._plan_action(inv)
        finally:
            if inv.arg("action") == "insert":
                await self._rooms.redact(inv.room_id, inv.event_id, "held a secret value")

    async def _plan_action(self, inv: Invocation) -> PlannedChange:
        action, bound = self._action(inv)
        name = inv.args["app"]
        if action == "generate":
            return await self._secrets.plan_generate(name, inv.room, bound["name"])
        if action == "rotate":
            return await self._secrets.plan_rotate(name, inv.room, bound["name"])
        if action == "rm":
            return await self._secrets.plan_remove(name, inv.room, bound["name"],
                                                   bound["version"])
        # The value would have to wait, stored, for the votes.
        raise UserError("`secret insert` cannot wait for votes: the `secret` policy asks for "
                        "approvals here, so insert with `abra app secret insert` instead.")

    async def secret(self, inv: Invocation) -> Reply:
        try:
            action, bound = self._action(inv)
        finally:
            if inv.arg("action") == "insert":
                await self._rooms.redact(inv.room_id, inv.event_id, "held a secret value")
        name = inv.args["app"]
        request = requested(inv)
        if action == "":
            return Reply.of("\n".join(await self._secrets.describe(name, inv.room)))
        if action == "generate":
            which = bound["name"]
            if which != ALL:
                _NAME.check(which, "secret", "!secret <app> generate <name>|--all")
            made = await self._secrets.generate(name, inv.room, which, request)
            return Reply.of(f"**Secrets of `{name}` generated** (values are never shown): "
                            + ", ".join(f"`{m}`" for m in made) + ".")
        if action == "insert":
            made_name = await self._secrets.insert(name, inv.room, bound["name"],
                                                   bound["version"], bound["value"], request)
            return Reply.of(f"**`{made_name}` stored** on the swarm; your message with the "
                            "value is redacted. The version key in the env file is unchanged "
                            f"(`!config {name} set ...` to use it).")
        if action == "rotate":
            lines = await self._secrets.rotate(name, inv.room, bound["name"], request,
                                               inv.progress)
            return Reply.of("\n".join(lines))
        removed = await self._secrets.remove(name, inv.room, bound["name"], bound["version"],
                                             request)
        return Reply.of(f"**`{removed}` removed** from the swarm.")
