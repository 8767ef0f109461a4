"""`!secret`: the swarm secrets an app needs, made, inserted, rotated and removed the way abra
names them (`<stack>_<name>_<version>`).

A value exists in this process only between its making and `engine.create_secret`: it is never
returned, logged, recorded or posted. Inserted values come from a direct, encrypted room whose
message is redacted at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager

from coopbot.config import RoomConfig
from coopbot.errors import CoopbotError, NotFound, UserError
from coopbot.ids import OperationID
from coopbot.operations.app_files import AppFiles, Requested
from coopbot.operations.plan import Binding, OperationRequest, PlanChanged, PlannedChange, digest
from coopbot.recipes.app_secrets import (
    SecretSpec,
    check_name,
    generate,
    next_version,
    raw_secrets,
    secret_specs,
    versions_on_swarm,
)
from coopbot.recipes.apps import App
from coopbot.recipes.compose import deploy_env
from coopbot.recipes.envedit import edit_env_file
from coopbot.replies import Reply
from coopbot.servers.pool import ServerPool
from coopbot.status_message import Progress
from coopbot.store.operations import OperationStore

log = logging.getLogger(__name__)

ALL = "--all"
# How rotate redeploys: the deployer's own run of `deploy` (same version, the new env).
Redeploy = Callable[[OperationRequest, RoomConfig | None, Progress], Awaitable[Reply]]


class SecretService:
    def __init__(self, files: AppFiles, pool: ServerPool, operations: OperationStore,
                 redeploy: Redeploy) -> None:
        self._files = files
        self._pool = pool
        self._operations = operations
        self._redeploy = redeploy

    async def specs(self, app: App) -> list[SecretSpec]:
        async with self._files.checkout(app) as checkout:
            env = deploy_env(app, checkout)
            raw = await asyncio.to_thread(raw_secrets, checkout.path, app.compose_files)
        try:
            return secret_specs(raw, env, app.modifiers)
        except CoopbotError as error:
            raise UserError(f"`{app.name}`'s secret names cannot be worked out: {error}") \
                from None

    async def _spec(self, app: App, name: str) -> SecretSpec:
        for spec in await self.specs(app):
            if spec.name == name:
                return spec
        raise NotFound(f"`{app.name}`'s recipe needs no secret `{name}`.")

    # ---- reading -----------------------------------------------------------------------------

    async def describe(self, name: str, room: RoomConfig | None) -> list[str]:
        app = await self._files.app(name, room)
        specs = await self.specs(app)
        if not specs:
            return [f"`{app.name}`'s recipe needs no swarm secrets."]
        existing = await self._pool.get(app.server).secret_names()
        lines = [f"**Secrets of `{app.name}`** on {app.server} (values are never shown):"]
        for spec in specs:
            state = "exists" if spec.swarm_name in existing else "**missing**"
            versions = versions_on_swarm(spec, app.stack_name, existing)
            others = [v for v in versions if v != spec.version]
            rule = f"length {spec.length}" if spec.length else "no length set"
            lines.append(
                f"- `{spec.name}`: `{spec.version_key or 'no version variable'}` = "
                f"`{spec.version or '?'}`, `{spec.swarm_name}` {state} ({rule})"
                + (f"; other versions on the swarm: {', '.join(others)}" if others else ""))
        missing = [s.name for s in specs if s.swarm_name not in existing]
        if missing:
            lines.append(f"`!secret {app.name} generate --all` creates the missing ones.")
        return lines

    async def missing(self, app: App) -> list[str]:
        existing = await self._pool.get(app.server).secret_names()
        return [s.name for s in await self.specs(app) if s.swarm_name not in existing]

    # ---- generate ----------------------------------------------------------------------------

    async def plan_generate(self, name: str, room: RoomConfig | None,
                            which: str) -> PlannedChange:
        app = await self._files.app(name, room)
        targets = await self._to_generate(app, which)
        return self._plan(app, "generate", [s.swarm_name for s in targets])

    async def _to_generate(self, app: App, which: str) -> list[SecretSpec]:
        specs = await self.specs(app) if which == ALL else [await self._spec(app, which)]
        existing = await self._pool.get(app.server).secret_names()
        for spec in specs:
            if spec.version is None:
                raise UserError(f"`{app.name}` sets no version for secret `{spec.name}` "
                                f"(`{spec.version_key}`); `!config {app.name} set "
                                f"{spec.version_key}=v1` first.")
            check_name(spec.swarm_name)
        todo = [s for s in specs if s.swarm_name not in existing]
        if not todo:
            what = "every secret" if which == ALL else f"`{which}`"
            raise UserError(f"{what} of `{app.name}` exists already at its version; "
                            f"`!secret {app.name} rotate <name>` makes a new one.")
        return todo

    async def generate(self, name: str, room: RoomConfig | None, which: str,
                       request: Requested) -> list[str]:
        app = await self._files.app(name, room)
        async with self._operation(app, request) as operation_id:
            todo = await self._to_generate(app, which)
            PlanChanged.check(request.expected_binding,
                              self._plan(app, "generate", [s.swarm_name for s in todo]))
            made = await self.create_generated(app, todo)
            await self._operations.finish(operation_id, "ok", "generated " + ", ".join(made))
        return made

    async def create_generated(self, app: App, specs: Sequence[SecretSpec]) -> list[str]:
        engine = self._pool.get(app.server)
        made = []
        for spec in specs:
            check_name(spec.swarm_name)
            await engine.create_secret(spec.swarm_name, generate(spec.length).encode())
            made.append(spec.swarm_name)
        return made

    # ---- insert ------------------------------------------------------------------------------

    async def insert(self, name: str, room: RoomConfig | None, secret: str, version: str,
                     value: str, request: Requested) -> str:
        app = await self._files.app(name, room)
        spec = await self._spec(app, secret)
        swarm_name = spec.swarm_name_at(app.stack_name, version)
        check_name(swarm_name)
        async with self._operation(app, request) as operation_id:
            await self._pool.get(app.server).create_secret(swarm_name, value.encode())
            await self._operations.finish(operation_id, "ok", f"inserted {swarm_name}")
        return swarm_name

    # ---- rotate ------------------------------------------------------------------------------

    async def plan_rotate(self, name: str, room: RoomConfig | None, which: str) -> PlannedChange:
        app = await self._files.app(name, room)
        spec = await self._spec(app, which)
        new = next_version(spec.version)
        return self._plan(app, "rotate", [spec.swarm_name, spec.swarm_name_at(
            app.stack_name, new)])

    async def rotate(self, name: str, room: RoomConfig | None, which: str,
                     request: Requested, progress: Progress) -> list[str]:
        """Create version N+1, bump the version variable, redeploy (if deployed), and say
        which version is no longer used."""
        app = await self._files.app(name, room)
        engine = self._pool.get(app.server)
        async with self._operation(app, request) as operation_id:
            spec = await self._spec(app, which)
            if spec.version_key is None:
                raise UserError(f"Secret `{which}` has no version variable to count up.")
            new = next_version(spec.version)
            new_name = spec.swarm_name_at(app.stack_name, new)
            PlanChanged.check(request.expected_binding,
                              self._plan(app, "rotate", [spec.swarm_name, new_name]))
            check_name(new_name)
            if new_name in await engine.secret_names():
                raise UserError(f"`{new_name}` exists already; `!secret {app.name} rm {which} "
                                f"{new}` first if it is a leftover.")
            await engine.create_secret(new_name, generate(spec.length).encode())
            await asyncio.to_thread(edit_env_file, app.env_path, set_={spec.version_key: new})
            note = await self._files.commit(
                app.env_path, f"secret {app.name}: {which} {spec.version} -> {new}",
                request.requester)
            await self._operations.finish(operation_id, "ok",
                                          f"rotated {which}: {spec.version} -> {new}")
        lines = [f"**`{app.name}`: secret `{which}` rotated** {spec.version} -> {new} "
                 f"(`{new_name}` created, `{spec.version_key}` = {new}).{note}"]
        deployed = bool(await engine.services(app.stack_name))
        if not deployed:
            lines.append(f"`{app.name}` is not deployed: `!deploy {app.name}` uses the new "
                         f"version. `{spec.swarm_name}` is no longer used "
                         f"(`!secret {app.name} rm {which} {spec.version}`).")
            return lines
        try:
            answer = await self._redeploy(
                OperationRequest(kind="deploy", app_name=app.name, version=None,
                                 requester=request.requester, room_id=request.room_id,
                                 event_id=request.event_id, approvers=request.approvers),
                room, progress)
        except CoopbotError as error:
            lines.append(f"The redeploy failed: {error} The old version `{spec.swarm_name}` "
                         "is still needed by what runs.")
            return lines
        lines.append(answer.text)
        lines.append(f"`{spec.swarm_name}` is no longer used; `!secret {app.name} rm {which} "
                     f"{spec.version}` removes it.")
        return lines

    # ---- rm ----------------------------------------------------------------------------------

    async def plan_remove(self, name: str, room: RoomConfig | None, which: str,
                          version: str) -> PlannedChange:
        app = await self._files.app(name, room)
        target = await self._removable(app, which, version)
        return self._plan(app, "rm", [target])

    async def _removable(self, app: App, which: str, version: str) -> str:
        spec = await self._spec(app, which)
        if version == spec.version:
            raise UserError(f"`{app.name}` uses {which} {version} (`{spec.version_key}`); "
                            f"only versions it no longer uses can go (`!secret {app.name} "
                            f"rotate {which}` first).")
        target = spec.swarm_name_at(app.stack_name, version)
        if target not in await self._pool.get(app.server).secret_names():
            raise NotFound(f"There is no secret `{target}` on {app.server}.")
        return target

    async def remove(self, name: str, room: RoomConfig | None, which: str, version: str,
                     request: Requested) -> str:
        app = await self._files.app(name, room)
        async with self._operation(app, request) as operation_id:
            target = await self._removable(app, which, version)
            PlanChanged.check(request.expected_binding, self._plan(app, "rm", [target]))
            await self._pool.get(app.server).remove_secret(target)
            await self._operations.finish(operation_id, "ok", f"removed {target}")
        return target

    # ---- plumbing ----------------------------------------------------------------------------

    @staticmethod
    def _plan(app: App, action: str, names: list[str]) -> PlannedChange:
        return PlannedChange(
            binding=Binding(kind="secret", app=app.name, server=app.server,
                            to_version=f"{action} {' '.join(names)}",
                            env_digest=digest(app.env)),
            lines=[f"secret {action} `{app.name}` on {app.server}: "
                   + ", ".join(f"`{n}`" for n in names)],
            app=app.name)

    def _operation(self, app: App,
                   request: Requested) -> AbstractAsyncContextManager[OperationID]:
        return self._operations.running(
            kind="secret", app=app.name, server=app.server, requester=request.requester,
            room_id=request.room_id, event_id=request.event_id, approvers=request.approvers)
