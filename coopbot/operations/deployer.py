"""Deploy, upgrade, rollback and undeploy, the way abra means them, with recovery on failure.

Flow of a version change: lock the app -> fetch the recipe -> resolve versions -> check out the
target into a private tree -> preflight (env keys, secrets, networks, images) -> `docker stack
deploy` (the maintained compose implementation) -> wait for convergence -> on success record
the version in the env file and the store; on failure report the failing service and bring the
previous version back, then say what runs now.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from coopbot.config import RoomConfig
from coopbot.crashpoint import crash_point
from coopbot.errors import CoopbotError, NotFound, OperationFailed, UserError
from coopbot.ids import OperationID
from coopbot.operations.plan import OperationRequest, Plan, PlanChanged, digest
from coopbot.operations.preflight import Preflight
from coopbot.operations.scope import AppScope
from coopbot.recipes.apps import App
from coopbot.recipes.compose import deploy_env, load_compose
from coopbot.recipes.compose import images as compose_images
from coopbot.recipes.envfile import write_type_version
from coopbot.recipes.labels import compose_timeout, deployed_version
from coopbot.recipes.repo import Checkout, RecipeStore, RecipeVersion
from coopbot.recipes.versions import Version, try_parse
from coopbot.redact import Redactor
from coopbot.replies import Reply
from coopbot.servers.convergence import ProgressCallback
from coopbot.servers.engine import DockerEngine
from coopbot.servers.pool import ServerPool
from coopbot.servers.states import ConvergenceProgress, ConvergenceResult
from coopbot.status_message import Progress, Throttle
from coopbot.store.operations import OperationStore

log = logging.getLogger(__name__)

NeedsBackup = Callable[[str, RoomConfig | None, str], bool]
# A backup run before a risky operation: (app, operation id, kind, progress); raises to stop it.
PreBackup = Callable[[App, OperationID, str, Progress], Awaitable[None]]
LOG_LINES_IN_ROOM = 8
LOG_LINE_WIDTH = 200


class Deployer:
    def __init__(
        self,
        scope: AppScope,
        recipes: RecipeStore,
        pool: ServerPool,
        operations: OperationStore,
        preflight: Preflight,
        *,
        pre_backup: PreBackup | None = None,
        needs_backup: NeedsBackup | None = None,
    ) -> None:
        self._scope = scope
        self._recipes = recipes
        self._pool = pool
        self._operations = operations
        self._preflight = preflight
        self._pre_backup = pre_backup
        # Whether the policy (global, room, app) asks for a verified backup first.
        self._needs_backup = needs_backup or (lambda kind, room, app: kind == "upgrade")

    # ---- entry point -------------------------------------------------------------------------

    async def run(self, request: OperationRequest, room: RoomConfig | None,
                  progress: Progress) -> Reply:
        app = await asyncio.to_thread(self._scope.get, request.app_name, room)
        engine = self._pool.get(app.server)
        started = time.monotonic()
        async with self._operations.running(
            kind=request.kind, app=app.name, server=app.server, requester=request.requester,
            room_id=request.room_id, event_id=request.event_id, approvers=request.approvers,
            to_version=request.version,
        ) as operation_id:
            throttled = Throttle(progress)
            if request.kind == "undeploy":
                return await self._undeploy(request, app, engine, operation_id, throttled)
            return await self._change_version(request, app, engine, operation_id, throttled,
                                              started, room)

    async def plan(self, request: OperationRequest, room: RoomConfig | None) -> Plan:
        """The plan this request would run now, with preflight, changing nothing."""
        app = await asyncio.to_thread(self._scope.get, request.app_name, room)
        engine = self._pool.get(app.server)
        if request.kind == "undeploy":
            current = deployed_version(await engine.services(app.stack_name), app.stack_name)
            return self._undeploy_plan(app, current)
        async with self._prepare(request, app, engine) as prepared:
            return prepared.plan

    @asynccontextmanager
    async def _prepare(self, request: OperationRequest, app: App,
                       engine: DockerEngine) -> AsyncIterator[Prepared]:
        """The one way to a version change's plan, for a vote and for the run alike: what the
        swarm runs, the recipe fetched, the target resolved, release notes, the target checked
        out into a private tree (kept while the body runs) and preflight."""
        current = deployed_version(await engine.services(app.stack_name), app.stack_name)
        await self._recipes.fetch(app.recipe)
        target = await self._target(request, app, current)
        notes = await self._notes_between(app, current, target) if request.kind == "upgrade" else ()
        async with self._recipes.checkout(app.recipe, str(target.version)) as checkout:
            plan = await self._plan(request.kind, app, engine, checkout, current, notes)
            yield Prepared(plan, checkout, target)

    @staticmethod
    def _undeploy_plan(app: App, current: str | None) -> Plan:
        if current is None:
            raise NotFound(f"`{app.name}` is not deployed on {app.server}.")
        return Plan(kind="undeploy", app=app, from_version=current, to_version=None,
                    commit=None, compose_digest=None, env_digest=digest(app.env))

    # ---- version changes -------------------------------------------------------------------------

    async def _change_version(
        self, request: OperationRequest, app: App, engine: DockerEngine,
        operation_id: OperationID,
        progress: Throttle, started: float, room: RoomConfig | None,
    ) -> Reply:
        await progress.say(f"{request.kind} `{app.name}`: reading the swarm and the recipe...")
        async with self._prepare(request, app, engine) as prepared:
            plan, checkout, target = prepared.plan, prepared.checkout, prepared.target
            current = plan.from_version
            await self._operations.set_versions(operation_id, current, str(target.version))
            # Under the app's lock: only the plan that was voted on may run.
            PlanChanged.check(request.expected_binding, plan.planned())
            for warning in plan.warnings:
                await progress.say(f"{request.kind} `{app.name}`: ⚠️ {warning}")
            if self._needs_backup(request.kind, room, app.name):
                await self._backup_first(request.kind, app, operation_id, progress)
            await progress.say(
                f"{request.kind} `{app.name}`: deploying {plan.to_version} on {app.server} "
                f"(recipe commit {checkout.commit[:8]})..."
            )
            result = await self._deploy_and_wait(app, engine, checkout, plan, progress)

        took = time.monotonic() - started
        if result.ok:
            await asyncio.to_thread(write_type_version, app.env_path, app.recipe, target.version)
            summary = f"{plan.describe()}: ok in {took:.0f} s"
            await self._operations.finish(operation_id, "ok", summary)
            return self._success_reply(plan, took)

        failure = self._describe_failure(app, result)
        recovery = await self._recover(app, engine, current, progress)
        message = f"{plan.describe()} failed after {took:.0f} s.\n{failure}\n{recovery}"
        raise OperationFailed(message)  # run() records it, once

    async def _backup_first(self, kind: str, app: App, operation_id: OperationID,
                            progress: Throttle) -> None:
        """After preflight, before anything changes: a failed backup stops the operation."""
        if self._pre_backup is None:
            return
        try:
            await self._pre_backup(app, operation_id, kind, progress.sink)
        except CoopbotError as error:
            raise OperationFailed(
                f"{kind} of `{app.name}` did not run, nothing was changed: the backup before "
                f"it failed: {error}", detail=error.detail,
            ) from error

    async def _target(self, request: OperationRequest, app: App,
                      current: str | None) -> RecipeVersion:
        current_version = try_parse(current) if current else None
        if request.kind == "deploy":
            if current is not None and request.version is None:
                # Redeploying what runs (e.g. after an env change) is fine; changing version is
                # what upgrade and rollback are for.
                return await self._recipes.resolve(app.recipe, current)
            wanted = request.version or app.version
            target = await self._recipes.resolve(app.recipe, wanted)
            if current is not None and str(target.version) != current:
                raise UserError(
                    f"`{app.name}` already runs {current}. Use `!upgrade` or `!rollback` to "
                    f"change its version, or `!undeploy` it first."
                )
            return target
        if current is None:
            raise UserError(f"`{app.name}` is not deployed; use `!deploy` first.")
        releases = await self._recipes.versions(app.recipe)
        if request.kind == "upgrade":
            newest = (await self._recipes.resolve(app.recipe, request.version) if request.version
                      else releases[0] if releases else None)
            if newest is None or (current_version is not None
                                  and not newest.version > current_version):
                if request.version and newest is not None:
                    raise UserError(
                        f"{newest.version} is not newer than {current}; upgrades never go "
                        "back (use `!rollback`)."
                    )
                raise UserError(f"`{app.name}` already runs the newest version, {current}.")
            return newest
        # rollback
        if request.version:
            target = await self._recipes.resolve(app.recipe, request.version)
            if current_version is not None and not target.version < current_version:
                raise UserError(
                    f"{target.version} is not older than {current}; use `!upgrade` to go forward."
                )
            return target
        previous = await self._previous_version(app, current_version, releases)
        if previous is None:
            raise UserError(f"There is no older version of `{app.name}` to roll back to.")
        return previous

    async def _previous_version(
        self, app: App, current: Version | None, releases: list[RecipeVersion]
    ) -> RecipeVersion | None:
        """The version this app ran before (from the store), else the next older release."""
        by_text = {str(r.version): r for r in releases}
        for version in await self._operations.deployed_versions(app.name):
            parsed = try_parse(version)
            if parsed is not None and current is not None and parsed < current \
                    and version in by_text:
                return by_text[version]
        older = [r for r in releases if current is not None and r.version < current]
        return older[0] if older else None

    async def _notes_between(self, app: App, current: str | None,
                             target: RecipeVersion) -> tuple[tuple[str, str], ...]:
        current_version = try_parse(current) if current else None
        releases = await self._recipes.versions(app.recipe)
        between = [r for r in releases
                   if r.version <= target.version
                   and (current_version is None or r.version > current_version)]
        notes: list[tuple[str, str]] = []
        for release in reversed(between):
            text = await self._recipes.release_notes(app.recipe, release.version)
            if text:
                notes.append((str(release.version), text.strip()))
        return tuple(notes)

    async def _plan(self, kind: str, app: App, engine: DockerEngine, checkout: Checkout,
                    current: str | None, notes: tuple[tuple[str, str], ...]) -> Plan:
        env = deploy_env(app, checkout)
        compose = await asyncio.to_thread(load_compose, checkout.path, app.compose_files, env)
        warnings = await self._preflight.check(app, engine, checkout, compose)
        return Plan(
            kind=kind, app=app, from_version=current,
            to_version=str(checkout.version) if checkout.version else checkout.commit[:8],
            commit=checkout.commit, compose_digest=digest(compose), env_digest=digest(app.env),
            images=compose_images(compose), release_notes=notes, warnings=tuple(warnings),
            timeout=convergence_timeout(app, compose),
        )

    async def _deploy_and_wait(self, app: App, engine: DockerEngine, checkout: Checkout,
                               plan: Plan, progress: Throttle) -> ConvergenceResult:
        timeout = plan.timeout

        async def converging(state: ConvergenceProgress) -> None:
            done = len(state.services) - len(state.pending)
            waiting = f" (waiting for {', '.join(state.pending)})" if state.pending else ""
            await progress.say(
                f"{plan.kind} `{app.name}` to {plan.to_version}: converging, {done}/"
                f"{len(state.services)} services ready{waiting}, {state.elapsed:.0f} s of "
                f"{timeout:.0f} s"
            )

        return await self._stack_deploy(app, engine, checkout, timeout, converging)

    @staticmethod
    async def _stack_deploy(app: App, engine: DockerEngine, checkout: Checkout, timeout: float,
                            progress: ProgressCallback | None = None) -> ConvergenceResult:
        """`docker stack deploy` of a checked-out tree, then the wait for convergence."""
        env = deploy_env(app, checkout)
        files = [checkout.path / name for name in app.compose_files]
        crash_point("before-stack-deploy")
        await engine.stack_deploy(app.stack_name, files, env, checkout.path)
        return await engine.wait_converged(app.stack_name, timeout, progress)

    async def _recover(self, app: App, engine: DockerEngine, previous: str | None,
                       progress: Throttle) -> str:
        """Bring the version that ran before back, by redeploying it (stack deploy is
        declarative, so this also repairs services swarm already rolled back)."""
        if previous is None:
            return ("There was no earlier version to return to; the stack is left as it is "
                    f"(`!ps {app.name}` shows it, `!undeploy {app.name}` removes it).")
        await progress.say(f"returning `{app.name}` to {previous}...")
        try:
            async with self._recipes.checkout(app.recipe, previous) as checkout:
                compose = await asyncio.to_thread(load_compose, checkout.path,
                                                  app.compose_files, deploy_env(app, checkout))
                result = await self._stack_deploy(app, engine, checkout,
                                                  convergence_timeout(app, compose))
        except CoopbotError as error:
            log.warning("recovery of %s failed: %s (%s)", app.name, error, error.detail)
            return f"Returning to {previous} failed too: {error}"
        now = deployed_version(list(result.services), app.stack_name) or "unknown"
        if result.ok:
            return f"Returned to {previous}: running now is {now}, converged and healthy."
        return (f"Returning to {previous} did not converge either; running now is {now}. "
                + self._describe_failure(app, result))

    def _describe_failure(self, app: App, result: ConvergenceResult) -> str:
        redact = Redactor.for_env(app.env)
        parts: list[str] = []
        for failure in result.failures:
            line = f"Service `{failure.short_name}`: {failure.reason}."
            if failure.task_error:
                line += f" Last task error: {redact(failure.task_error)[:LOG_LINE_WIDTH]}."
            parts.append(line)
            tail = [redact(x)[:LOG_LINE_WIDTH] for x in failure.raw_log_tail[-LOG_LINES_IN_ROOM:]]
            if tail:
                parts.append("Last log lines:\n" + "\n".join(f"    {x}" for x in tail))
        if result.timed_out:
            parts.append(f"Gave up waiting after {result.elapsed:.0f} s.")
        return "\n".join(parts) or "The stack did not converge."

    def _success_reply(self, plan: Plan, took: float) -> Reply:
        verb = {"deploy": "deployed", "upgrade": "upgraded", "rollback": "rolled back"}[plan.kind]
        changed = (f"{plan.from_version} -> {plan.to_version}" if plan.from_version
                   and plan.from_version != plan.to_version else f"{plan.to_version}")
        lines = [f"**`{plan.app.name}` {verb}**: {changed} on {plan.app.server}, converged and "
                 f"healthy in {took:.0f} s."]
        for version, notes in plan.release_notes:
            lines.append(f"Release notes {version}:")
            lines += [f"    {line}" for line in notes.splitlines()[:10]]
        return Reply.of("\n".join(lines))

    # ---- undeploy ----------------------------------------------------------------------------

    async def _undeploy(self, request: OperationRequest, app: App, engine: DockerEngine,
                        operation_id: OperationID, progress: Throttle) -> Reply:
        services = await engine.services(app.stack_name)
        if not services:
            raise NotFound(f"`{app.name}` is not deployed on {app.server}.")
        current = deployed_version(services, app.stack_name)
        plan = self._undeploy_plan(app, current)
        PlanChanged.check(request.expected_binding, plan.planned())
        await self._operations.set_versions(operation_id, current, None)
        volumes = await engine.stack_volumes_by_node(app.stack_name)
        await progress.say(f"undeploy `{app.name}`: removing stack {app.stack_name}...")
        await engine.stack_remove(app.stack_name)
        await self._operations.finish(operation_id, "ok", f"undeployed {current}")
        # Volumes are per node: on a multi-node swarm, say where each copy is.
        several = len(await engine.helpers.nodes()) > 1
        kept = ", ".join(f"`{v}`" + (f" on {node}" if several else "")
                         for node, names in volumes.items() for v in names) or "none"
        return Reply.of(
            f"**`{app.name}` undeployed** from {app.server} "
            f"(it ran {current or 'an unknown version'}). "
            f"Volumes and secrets stay: volumes {kept}. `!deploy {app.name}` brings it back."
        )


@dataclass(frozen=True)
class Prepared:
    """A version change ready to run: its plan, the checked-out target tree, the release."""

    plan: Plan
    checkout: Checkout
    target: RecipeVersion





def convergence_timeout(app: App, compose: dict[str, Any]) -> float:
    """The recipe's timeout label on its app service, else the app's TIMEOUT (300 s unless
    set, as abra)."""
    return compose_timeout(compose, app.stack_name, float(app.timeout))
