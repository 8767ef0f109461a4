"""An app's env file, from the room: `!new` makes it from the recipe's `.env.sample` the way
`abra app new` does, `!config` shows it (values only of public keys) and edits it byte by byte.

Every write goes through `AppFiles.commit`, which records it in the apps dir's git history
(when it is a repository) with the requester's MXID.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from coopbot.config import RoomConfig
from coopbot.errors import CoopbotError, NotFound, UserError
from coopbot.ids import EventID, RoomID, UserID
from coopbot.operations.plan import Binding, PlanChanged, PlannedChange, digest
from coopbot.operations.scope import AppScope
from coopbot.recipes.apps import App, app_from_env_file
from coopbot.recipes.apps_history import AppsHistory, Change
from coopbot.recipes.envedit import KEY, edit_env_file, set_values
from coopbot.recipes.envfile import TYPE_KEYS, EnvFile, parse_env_file, parse_env_text
from coopbot.recipes.repo import Checkout, RecipeStore
from coopbot.redact import PUBLIC_ENV_KEYS
from coopbot.servers.pool import ServerPool
from coopbot.store.operations import OperationStore

# Keys whose names say they hold a secret: swarm secrets are for those (`!secret`).
_SECRET_LOOKING = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE|API_?KEY|(^|_)KEY$", re.I)
# Set by deploys and `!new`, never by hand from a room.
_MANAGED_KEYS = frozenset(TYPE_KEYS)
HIDDEN = "(hidden)"


@dataclass(frozen=True)
class Requested:
    """Who asks, where, and (after a vote) who approved which plan."""

    requester: UserID
    room_id: RoomID | None
    event_id: EventID | None
    approvers: tuple[str, ...] = ()
    expected_binding: Binding | None = None


@dataclass(frozen=True)
class EnvEdit:
    """One `!config set|unset`: keys to set (with values) or to remove, and --force."""

    sets: dict[str, str]
    unsets: tuple[str, ...]
    force: bool = False

    @property
    def keys(self) -> list[str]:
        return [*self.sets, *self.unsets]

    def describe(self) -> str:
        """Names the keys, never a value: this is what the audit, cards and git history see."""
        parts = []
        if self.sets:
            parts.append("set " + ", ".join(self.sets))
        if self.unsets:
            parts.append("unset " + ", ".join(self.unsets))
        return "; ".join(parts)


def looks_secret(key: str) -> bool:
    return bool(_SECRET_LOOKING.search(key)) and not key.upper().endswith("_VERSION")


class AppFiles:
    def __init__(self, scope: AppScope, recipes: RecipeStore, pool: ServerPool,
                 operations: OperationStore, history: AppsHistory, *,
                 public_keys: tuple[str, ...] = ()) -> None:
        self._scope = scope
        self._recipes = recipes
        self._pool = pool
        self._operations = operations
        self.history = history
        self._public = frozenset((*PUBLIC_ENV_KEYS, *public_keys))

    @property
    def servers_dir(self) -> Path:
        return self._scope.catalog.servers_dir

    async def app(self, name: str, room: RoomConfig | None) -> App:
        return await asyncio.to_thread(self._scope.get, name, room)

    async def commit(self, path: Path, subject: str, requester: str) -> str:
        """Record the file's change in the apps dir's git history; a sentence for the answer."""
        try:
            commit = await self.history.record(path, subject, requester)
        except CoopbotError as error:
            return f" Note: {error}."
        return f" Committed to the apps dir's history as `{commit[:10]}`." if commit else ""

    async def env_written(self, app: App, requester: str, subject: str) -> None:
        """A deploy or a recovery rewrote the app's TYPE: into the history, too."""
        await self.commit(app.env_path, subject, requester)

    # ---- !new --------------------------------------------------------------------------------

    def server_for(self, room: RoomConfig | None, server: str | None, name: str) -> str:
        known = self._pool.names
        if server is None:
            choices = room.servers if room is not None else known
            if len(choices) != 1:
                raise UserError("Which server? This room has several: "
                                + ", ".join(f"`{s}`" for s in choices) + ".")
            server = choices[0]
        if server not in known:
            raise NotFound(f"Unknown server `{server}`.")
        if not self._scope.controls_name(room, server, name):
            raise UserError(f"This room does not control an app `{name}` on {server}.")
        return server

    def _refuse_existing(self, name: str) -> None:
        try:
            existing = self._scope.catalog.get(name)
        except NotFound:
            return
        except UserError:  # on several servers, or a file that does not parse: it exists
            raise UserError(f"App `{name}` exists already.") from None
        raise UserError(f"App `{name}` exists already (on {existing.server}).")

    async def plan_new(self, recipe: str, name: str, server: str | None,
                       room: RoomConfig | None, chaos: bool,
                       with_secrets: bool = False) -> tuple[PlannedChange, str]:
        server = self.server_for(room, server, name)
        await asyncio.to_thread(self._refuse_existing, name)
        await self._recipes.fetch(recipe)
        async with self._recipes.checkout(recipe, None, chaos=chaos) as checkout:
            version = str(checkout.version) if checkout.version else None
            commit = checkout.commit
        what = version or f"chaos commit {commit[:8]}"
        # Approvers of `new --secrets` approve making the secrets too: the card and the
        # binding say so (the `new` policy governs them then, not `secret`).
        secrets = " and generate every secret it needs" if with_secrets else ""
        planned = PlannedChange(
            binding=Binding(kind="new", app=name, server=server, to_version=version,
                            commit=commit, compose_digest="with secrets" if secrets else None),
            lines=[f"new `{name}` on {server} from {recipe} {what}{secrets}"], app=name)
        return planned, server

    async def create(self, recipe: str, name: str, server: str | None,
                     room: RoomConfig | None, *, chaos: bool, request: Requested,
                     with_secrets: bool = False) -> tuple[App, str, str]:
        """Write `servers/<server>/<name>.env` from the recipe's `.env.sample` with TYPE and
        DOMAIN set, as planned; (the app, what it was made from, the history sentence)."""
        planned, server = await self.plan_new(recipe, name, server, room, chaos, with_secrets)
        async with self._operations.running(
                kind="new", app=name, server=server, requester=request.requester,
                room_id=request.room_id, event_id=request.event_id,
                approvers=request.approvers) as operation_id:
            PlanChanged.check(request.expected_binding, planned)
            result = await self._create(recipe, name, server, chaos, request.requester)
            await self._operations.finish(operation_id, "ok", f"created from {result[1]}")
        return result

    async def _create(self, recipe: str, name: str, server: str, chaos: bool,
                      requester: UserID) -> tuple[App, str, str]:
        await asyncio.to_thread(self._refuse_existing, name)
        async with self._recipes.checkout(recipe, None, chaos=chaos) as checkout:
            sample_path = checkout.path / ".env.sample"
            if not sample_path.is_file():
                raise UserError(f"Recipe `{recipe}` has no .env.sample to copy.")
            sample = sample_path.read_bytes().decode("utf-8", "surrogateescape")
            version = str(checkout.version) if checkout.version else None
            made_from = version or f"its latest commit {checkout.commit[:8]} (chaos)"
        folder = self.servers_dir / server
        path = folder / f"{name}.env"
        type_value = f"{recipe}:{version}" if version else recipe
        text = set_values(sample, {"TYPE": type_value, "DOMAIN": name}, path)
        await asyncio.to_thread(_write_new, folder, path, text)
        app = app_from_env_file(parse_env_text(text, path), server)
        note = await self.commit(path, f"new {name} on {server}: {recipe} {made_from}",
                                 requester)
        return app, made_from, note

    # ---- !config -----------------------------------------------------------------------------

    @asynccontextmanager
    async def checkout(self, app: App) -> AsyncIterator[Checkout]:
        """The recipe at the app's version (TYPE's), else the newest (or chaos head)."""
        await self._recipes.fetch(app.recipe)
        version = app.version
        if version is not None:
            try:
                await self._recipes.resolve(app.recipe, version)
            except NotFound:
                version = None
        async with self._recipes.checkout(app.recipe, version) as checkout:
            yield checkout

    async def sample_of(self, app: App) -> EnvFile | None:
        """The recipe's `.env.sample` at the app's version, None if it has none."""
        async with self.checkout(app) as checkout:
            sample = checkout.path / ".env.sample"
            if not sample.is_file():
                return None
            return await asyncio.to_thread(parse_env_file, sample)

    def public_keys(self, sample: EnvFile | None) -> frozenset[str]:
        marked = {key for key, mods in (sample.modifiers if sample else {}).items()
                  if mods.get("public") == "true"}
        return self._public | marked

    async def show(self, name: str, room: RoomConfig | None) -> list[str]:
        app = await self.app(name, room)
        sample = await self.sample_of(app)
        public = self.public_keys(sample)
        sample_values = sample.values if sample else {}
        lines = [f"**Config of `{app.name}`** on {app.server} ({app.recipe}):"]
        for key, value in app.env.items():
            shown = f"`{value}`" if key in public else HIDDEN
            notes = []
            if key not in sample_values:
                notes.append("not in .env.sample")
            elif sample_values[key] != value:
                notes.append("differs from .env.sample")
            if app.modifiers.get(key):
                notes.append(" ".join(f"{k}={v}" for k, v in app.modifiers[key].items()))
            lines.append(f"- `{key}` = {shown}" + (f" ({', '.join(notes)})" if notes else ""))
        missing = [key for key in sample_values if key not in app.env]
        if missing:
            lines.append("The recipe's .env.sample sets keys this app lacks: "
                         + ", ".join(f"`{k}`" for k in missing)
                         + f" (`!config {app.name} set KEY=value`).")
        empty = [key for key, value in app.env.items() if value == "" and key in sample_values]
        if empty:
            lines.append("Keys without a value: " + ", ".join(f"`{k}`" for k in empty) + ".")
        return lines

    async def check_edit(self, app: App, edit: EnvEdit) -> None:
        """Refuse what a room must not set: managed and secret-looking keys, keys the recipe
        does not know (unless --force), keys the file does not have (for unset)."""
        for key in edit.keys:
            if not KEY.fullmatch(key):
                raise UserError(f"`{key}` is not an env key (letters, digits and _).")
            if key in _MANAGED_KEYS:
                raise UserError(f"`{key}` is set by `!deploy`, `!upgrade` and `!rollback`.")
            if looks_secret(key):
                raise UserError(f"`{key}` looks like a secret: keep it in a swarm secret "
                                f"(`!secret {app.name}`), not in the env file.")
        sample = await self.sample_of(app)
        known = set(sample.values) if sample else set()
        unknown = [key for key in edit.sets if key not in known and key not in app.env]
        if unknown and not edit.force:
            raise UserError("The recipe's .env.sample does not set "
                            + ", ".join(f"`{k}`" for k in unknown)
                            + "; add `--force` to set it anyway.")
        absent = [key for key in edit.unsets if key not in app.env]
        if absent:
            raise UserError(f"`{app.name}` has no key " + ", ".join(f"`{k}`" for k in absent)
                            + ".")

    async def plan_edit(self, name: str, room: RoomConfig | None,
                        edit: EnvEdit) -> PlannedChange:
        app = await self.app(name, room)
        await self.check_edit(app, edit)
        return self.edit_plan(app, edit)

    @staticmethod
    def edit_plan(app: App, edit: EnvEdit) -> PlannedChange:
        # The requested values bind the vote (as a digest): other values need a new vote.
        return PlannedChange(
            binding=Binding(kind="config", app=app.name, server=app.server,
                            to_version=edit.describe(),
                            compose_digest=digest({"set": edit.sets, "unset": edit.unsets}),
                            env_digest=digest(app.env)),
            lines=[f"config `{app.name}` on {app.server}: {edit.describe()}"], app=app.name)

    async def edit(self, name: str, room: RoomConfig | None, edit: EnvEdit,
                   request: Requested) -> tuple[bool, str]:
        """Apply the edit under the app's lock, as the operation voted on; (changed, note)."""
        app = await self.app(name, room)
        async with self._operations.running(
                kind="config", app=app.name, server=app.server, requester=request.requester,
                room_id=request.room_id, event_id=request.event_id,
                approvers=request.approvers) as operation_id:
            await self.check_edit(app, edit)
            PlanChanged.check(request.expected_binding, self.edit_plan(app, edit))
            _, changed = await asyncio.to_thread(edit_env_file, app.env_path, set_=edit.sets,
                                                 unset=edit.unsets)
            note = (await self.commit(app.env_path, f"config {app.name}: {edit.describe()}",
                                      request.requester) if changed else "")
            await self._operations.finish(operation_id, "ok", edit.describe()
                                          if changed else "nothing to change")
        return changed, note

    async def changes(self, name: str, room: RoomConfig | None, limit: int) -> list[Change] | None:
        app = await self.app(name, room)
        return await self.history.log(app.env_path, limit)


def _write_new(folder: Path, path: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # "x": never overwrite a file that appeared since the check (abra or another request).
    try:
        with path.open("xb") as handle:
            handle.write(text.encode("utf-8", "surrogateescape"))
    except FileExistsError:
        raise UserError(f"App `{path.name.removesuffix('.env')}` exists already.") from None
