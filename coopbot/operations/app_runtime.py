"""Day-2 and end-of-life operations on an app: `!restart` (a forced update per service,
converging like a deploy), `!cmd` (a function of the recipe's abra.sh run inside a service's
container, as `abra app cmd`) and `!remove` (the env file, and on request volumes and secrets,
as `abra app remove`)."""

from __future__ import annotations

import asyncio
import re
import shlex
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from coopbot.config import RoomConfig
from coopbot.errors import CoopbotError, NotFound, OperationFailed, UserError
from coopbot.operations.app_files import AppFiles, Requested
from coopbot.operations.deployer import Deployer
from coopbot.operations.plan import Binding, PlanChanged, PlannedChange, digest
from coopbot.operations.secret_ops import SecretService
from coopbot.operations.service_exec import exec_in_service
from coopbot.recipes.app_secrets import versions_on_swarm
from coopbot.recipes.apps import App
from coopbot.redact import Redactor
from coopbot.replies import Attachment, Reply
from coopbot.servers.pool import ServerPool
from coopbot.servers.states import ServiceState
from coopbot.status_message import Progress, Throttle
from coopbot.store.operations import OperationStore

# A shell function definition in abra.sh: `name() {` or `function name {`.
_FUNCTION = re.compile(r"^\s*(?:function\s+([A-Za-z_][A-Za-z0-9_]*)\s*(?:\(\s*\))?|"
                       r"([A-Za-z_][A-Za-z0-9_]*)\s*\(\s*\))\s*\{?", re.MULTILINE)
OUTPUT_LINES_IN_ROOM = 20
OUTPUT_CHARS_IN_ROOM = 2000
# When the app last got new data in its volumes: a backup must be newer than this.
_RUNS = ("deploy", "upgrade", "rollback", "restore", "restart", "cmd")
# The newest verified snapshot of an app, None if it has none (or backups are not set up).
LatestBackup = Callable[[App], Awaitable[datetime | None]]


def abra_functions(script: str) -> list[str]:
    """The functions an abra.sh defines (only these may be run by `!cmd`)."""
    return sorted({a or b for a, b in _FUNCTION.findall(script)})


class AppRuntime:
    def __init__(self, files: AppFiles, secrets: SecretService, deployer: Deployer,
                 pool: ServerPool, operations: OperationStore, *, cmd_timeout: float,
                 latest_backup: LatestBackup | None = None) -> None:
        self._files = files
        self._secrets = secrets
        self._deployer = deployer
        self._pool = pool
        self._operations = operations
        self._cmd_timeout = cmd_timeout
        self._latest_backup = latest_backup

    async def _deployed(self, app: App) -> list[ServiceState]:
        services = await self._pool.get(app.server).services(app.stack_name)
        if not services:
            raise UserError(f"`{app.name}` is not deployed on {app.server}.")
        return services

    @staticmethod
    def _pick(app: App, services: list[ServiceState], wanted: str | None) -> list[ServiceState]:
        if wanted is None:
            return services
        chosen = [s for s in services if s.short_name == wanted]
        if not chosen:
            names = ", ".join(f"`{s.short_name}`" for s in services)
            raise NotFound(f"`{app.name}` has no service `{wanted}` (it has {names}).")
        return chosen

    # ---- restart -----------------------------------------------------------------------------

    async def plan_restart(self, name: str, room: RoomConfig | None,
                           service: str | None) -> PlannedChange:
        app = await self._files.app(name, room)
        chosen = self._pick(app, await self._deployed(app), service)
        return self._restart_plan(app, chosen)

    @staticmethod
    def _restart_plan(app: App, chosen: list[ServiceState]) -> PlannedChange:
        names = ", ".join(s.short_name for s in chosen)
        return PlannedChange(
            binding=Binding(kind="restart", app=app.name, server=app.server, to_version=names),
            lines=[f"restart `{app.name}` on {app.server}: {names}"], app=app.name)

    async def restart(self, name: str, room: RoomConfig | None, service: str | None,
                      request: Requested, progress: Progress) -> Reply:
        app = await self._files.app(name, room)
        engine = self._pool.get(app.server)
        started = time.monotonic()
        async with self._operations.running(
                kind="restart", app=app.name, server=app.server, requester=request.requester,
                room_id=request.room_id, event_id=request.event_id,
                approvers=request.approvers) as operation_id:
            chosen = self._pick(app, await self._deployed(app), service)
            PlanChanged.check(request.expected_binding, self._restart_plan(app, chosen))
            throttled = Throttle(progress)
            names = ", ".join(s.short_name for s in chosen)
            await throttled.say(f"restart `{app.name}`: restarting {names}...")
            for state in chosen:
                await engine.force_update(state.name)
            try:
                timeout = await self._deployer.timeout_of(app)
            except CoopbotError:
                timeout = float(app.timeout)
            result = await self._deployer.converge(app, engine, f"restart `{app.name}`",
                                                   timeout, throttled)
            took = time.monotonic() - started
            if not result.ok:
                raise OperationFailed(f"restart of `{app.name}` ({names}) failed after "
                                      f"{took:.0f} s.\n"
                                      + self._deployer.describe_failure(app, result))
            await self._operations.finish(operation_id, "ok", f"restarted {names}")
        return Reply.of(f"**`{app.name}` restarted**: {names} on {app.server}, converged and "
                        f"healthy in {took:.0f} s.")

    # ---- cmd ---------------------------------------------------------------------------------

    async def _script(self, app: App) -> str:
        async with self._files.checkout(app) as checkout:
            path = checkout.path / "abra.sh"
            if not path.is_file():
                raise UserError(f"Recipe `{app.recipe}` has no abra.sh, so no functions to run.")
            return await asyncio.to_thread(path.read_text, "utf-8", "replace")

    async def plan_cmd(self, name: str, room: RoomConfig | None, service: str, function: str,
                       args: tuple[str, ...]) -> PlannedChange:
        app = await self._files.app(name, room)
        self._pick(app, await self._deployed(app), service)
        script = await self._script(app)
        self._check_function(app, script, function)
        return self._cmd_plan(app, service, function, args, script)

    @staticmethod
    def _cmd_plan(app: App, service: str, function: str, args: tuple[str, ...],
                  script: str) -> PlannedChange:
        shown = " ".join([function, *(shlex.quote(a) for a in args)])
        return PlannedChange(
            binding=Binding(kind="cmd", app=app.name, server=app.server,
                            to_version=f"{service}: {shown}", compose_digest=digest(script)),
            lines=[f"cmd `{app.name}` on {app.server}: `{shown}` in service `{service}`"],
            app=app.name)

    @staticmethod
    def _check_function(app: App, script: str, function: str) -> None:
        defined = abra_functions(script)
        if function not in defined:
            known = ", ".join(f"`{f}`" for f in defined) or "none"
            raise UserError(f"`{app.recipe}`'s abra.sh defines no function `{function}` "
                            f"(it defines {known}).")

    async def cmd(self, name: str, room: RoomConfig | None, service: str, function: str,
                  args: tuple[str, ...], request: Requested, progress: Progress) -> Reply:
        app = await self._files.app(name, room)
        engine = self._pool.get(app.server)
        started = time.monotonic()
        async with self._operations.running(
                kind="cmd", app=app.name, server=app.server, requester=request.requester,
                room_id=request.room_id, event_id=request.event_id,
                approvers=request.approvers) as operation_id:
            chosen = self._pick(app, await self._deployed(app), service)[0]
            script = await self._script(app)
            self._check_function(app, script, function)
            PlanChanged.check(request.expected_binding,
                              self._cmd_plan(app, service, function, args, script))
            await Throttle(progress).say(f"cmd `{app.name}`: running `{function}` in "
                                         f"`{service}`...")
            # abra sources abra.sh in the container and calls the function; the script is the
            # body of `sh -c` here (the same as sourcing it), the arguments its "$@" (never
            # parsed by a shell).
            program = f'{script}\n{function} "$@"\n'
            result = await exec_in_service(engine, chosen.name, ["sh", "-c", program, function,
                                                                 *args],
                                           timeout=self._cmd_timeout)
            took = time.monotonic() - started
            await self._operations.finish(
                operation_id, "ok" if result.exit_code == 0 else "failed",
                f"{function} exited with {result.exit_code}")
        output = Redactor.for_env(app.env)(result.output)
        status = ("ok" if result.exit_code == 0 else f"failed (exit status {result.exit_code})")
        title = (f"**`{function}`** in `{app.name}` service `{service}`: {status} in "
                 f"{took:.0f} s.")
        return _output_reply(title, output, f"{app.name}-{function}.txt")

    # ---- remove ------------------------------------------------------------------------------

    async def _removal(self, app: App, volumes: bool, secrets: bool) -> tuple[list[str],
                                                                               list[str]]:
        engine = self._pool.get(app.server)
        if await engine.services(app.stack_name):
            raise UserError(f"`{app.name}` is deployed on {app.server}; `!undeploy "
                            f"{app.name}` first.")
        gone_volumes = await engine.stack_volumes(app.stack_name) if volumes else []
        gone_secrets: list[str] = []
        if secrets:
            existing = await engine.secret_names()
            for spec in await self._secrets.specs(app):
                gone_secrets += [spec.swarm_name_at(app.stack_name, v)
                                 for v in versions_on_swarm(spec, app.stack_name, existing)]
        return gone_volumes, gone_secrets

    async def _check_backup(self, app: App, volumes: list[str]) -> str:
        if not volumes:
            return ""
        latest = await self._latest_backup(app) if self._latest_backup else None
        if latest is None:
            raise UserError(f"`{app.name}` has no verified backup, so its volumes stay "
                            f"(`!backup {app.name}` before `!undeploy` takes one).")
        last_run = max((op.started_at for op in await self._operations.history(app.name, 50)
                        if op.kind in _RUNS and op.result == "ok"), default=0.0)
        if latest.timestamp() < last_run:
            raise UserError(f"`{app.name}`'s newest verified backup is older than its last "
                            f"run; `!deploy` and `!backup` it, `!undeploy`, then `!remove`.")
        return latest.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")

    async def plan_remove(self, name: str, room: RoomConfig | None, volumes: bool,
                          secrets: bool) -> PlannedChange:
        app = await self._files.app(name, room)
        gone_volumes, gone_secrets = await self._removal(app, volumes, secrets)
        backup = await self._check_backup(app, gone_volumes)
        return self._remove_plan(app, gone_volumes, gone_secrets, backup)

    @staticmethod
    def _remove_plan(app: App, volumes: list[str], secrets: list[str],
                     backup: str) -> PlannedChange:
        parts = ["its env file"]
        if volumes:
            parts.append("volumes " + ", ".join(f"`{v}`" for v in volumes)
                         + f" (verified backup of {backup})")
        if secrets:
            parts.append("secrets " + ", ".join(f"`{s}`" for s in secrets))
        return PlannedChange(
            binding=Binding(kind="remove", app=app.name, server=app.server,
                            to_version=digest([volumes, secrets]), env_digest=digest(app.env)),
            lines=[f"remove `{app.name}` from {app.server}: " + "; ".join(parts)],
            app=app.name)

    async def remove(self, name: str, room: RoomConfig | None, volumes: bool, secrets: bool,
                     request: Requested) -> Reply:
        app = await self._files.app(name, room)
        engine = self._pool.get(app.server)
        async with self._operations.running(
                kind="remove", app=app.name, server=app.server, requester=request.requester,
                room_id=request.room_id, event_id=request.event_id,
                approvers=request.approvers) as operation_id:
            gone_volumes, gone_secrets = await self._removal(app, volumes, secrets)
            backup = await self._check_backup(app, gone_volumes)
            PlanChanged.check(request.expected_binding,
                              self._remove_plan(app, gone_volumes, gone_secrets, backup))
            for volume in gone_volumes:
                await engine.remove_volume(volume)
            for secret in gone_secrets:
                await engine.remove_secret(secret)
            await asyncio.to_thread(app.env_path.unlink)
            note = await self._files.commit(app.env_path, f"remove {app.name} from "
                                            f"{app.server}", request.requester)
            await self._operations.finish(
                operation_id, "ok", f"removed: env file, {len(gone_volumes)} volume(s), "
                f"{len(gone_secrets)} secret(s)")
        kept = []
        if not volumes:
            kept.append("volumes stay (`--volumes` removes them)")
        if not secrets:
            kept.append("secrets stay (`--secrets` removes them)")
        removed = ["the env file", *(f"volume `{v}`" for v in gone_volumes),
                   *(f"secret `{s}`" for s in gone_secrets)]
        return Reply.of(f"**`{app.name}` removed** from {app.server}: {', '.join(removed)}."
                        + (f" Its {'; '.join(kept)}." if kept else "") + note)


def _output_reply(title: str, output: str, filename: str) -> Reply:
    lines = output.rstrip("\n").splitlines()
    if len(lines) <= OUTPUT_LINES_IN_ROOM and len(output) <= OUTPUT_CHARS_IN_ROOM:
        return Reply.preformatted(title, "\n".join(lines) or "(no output)")
    tail = "\n".join(line[:200] for line in lines[-OUTPUT_LINES_IN_ROOM:])
    reply = Reply.preformatted(f"{title} The last {OUTPUT_LINES_IN_ROOM} of {len(lines)} "
                               "lines (all of them attached):", tail)
    return reply.with_attachment(Attachment(filename, output.encode()))
