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
from coopbot.operations.data_safety import DataSafety
from coopbot.operations.deployed import Deployed, find_deployed
from coopbot.operations.plan import OperationRequest, Plan, PlanChanged, digest
from coopbot.operations.preflight import Preflight
from coopbot.operations.scope import AppScope
from coopbot.operations.targets import Targets
from coopbot.recipes.apps import App
from coopbot.recipes.compose import deploy_env, load_compose
from coopbot.recipes.compose import images as compose_images
from coopbot.recipes.envfile import write_type_version
from coopbot.recipes.labels import (
    CHAOS_COMMIT_LENGTH,
    chaos_text,
    compose_timeout,
    deploy_labels,
    deployed_version,
    labels_overlay,
)
from coopbot.recipes.repo import Checkout, RecipeStore, RecipeVersion
from coopbot.redact import Redactor
from coopbot.replies import Reply
from coopbot.servers.convergence import ProgressCallback
from coopbot.servers.engine import DockerEngine, ResolveImage
from coopbot.servers.pool import ServerPool
from coopbot.servers.states import ConvergenceProgress, ConvergenceResult
from coopbot.status_message import Progress, Throttle
from coopbot.store.operations import OperationStore

log = logging.getLogger(__name__)

NeedsBackup = Callable[[str, RoomConfig | None, str], bool]
# A backup run before a risky operation: (app, operation id, kind, progress) -> the snapshot
# (None when the app has nothing to back up); raises to stop the operation.
PreBackup = Callable[[App, OperationID, str, Progress], Awaitable[str | None]]
# Told when a deploy rewrote an app's env file (TYPE): (app, requester, what happened).
EnvWritten = Callable[[App, str, str], Awaitable[None]]
LOG_LINES_IN_ROOM = 8
LOG_LINE_WIDTH = 200
# Given last to `docker stack deploy`: abra's deploy labels on the `app` service. It lives in
# the operation's private checkout, so it goes with the tree.
LABELS_FILE = ".coopbot-deploy-labels.yml"


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
        env_written: EnvWritten | None = None,
        data_safety: DataSafety | None = None,
    ) -> None:
        self._scope = scope
        self._recipes = recipes
        self._pool = pool
        self._operations = operations
        self._preflight = preflight
        self._targets = Targets(recipes, operations)
        self._pre_backup = pre_backup
        # Whether the policy (global, room, app) asks for a verified backup first.
        self._needs_backup = needs_backup or (lambda kind, room, app: kind == "upgrade")
        self._env_written = env_written
        self._data_safety = data_safety

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
            async with Throttle(progress) as throttled:
                if request.kind == "undeploy":
                    return await self._undeploy(request, app, engine, operation_id, throttled)
                return await self._change_version(request, app, engine, operation_id,
                                                  throttled, started, room)

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
        if request.chaos is not None and (request.kind != "deploy" or request.version):
            raise UserError("A chaos deploy takes a commit or branch after `--chaos`, not a "
                            f"version: `!deploy {app.name} --chaos [ref]`.")
        services = await engine.services(app.stack_name)
        await self._recipes.fetch(app.recipe)
        releases = await self._recipes.versions(app.recipe)
        deployed = await find_deployed(app, services, releases, self._operations)
        if request.chaos is not None:
            async with self._recipes.checkout(app.recipe, chaos=True,
                                              ref=request.chaos or None) as checkout:
                last = releases[0] if releases else None
                plan = await self._plan(request.kind, app, engine, checkout, deployed, (),
                                        last)
                yield Prepared(plan, checkout, None, last, deployed)
            return
        target = await self._targets.target(request, app, deployed, releases)
        notes = (await self._targets.notes_between(app, deployed, target, releases)
                 if request.kind == "upgrade" else ())
        async with self._recipes.checkout(app.recipe, target.tag) as checkout:
            plan = await self._plan(request.kind, app, engine, checkout, deployed, notes, target)
            yield Prepared(plan, checkout, target, target, deployed)

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
            plan, checkout = prepared.plan, prepared.checkout
            await self._operations.set_versions(operation_id, plan.from_version,
                                                plan.to_version)
            # Under the app's lock: only the plan that was voted on may run.
            PlanChanged.check(request.expected_binding, plan.planned())
            for warning in plan.warnings:
                await progress.say(f"{request.kind} `{app.name}`: ⚠️ {warning}")
            snapshot = None
            if self._needs_backup(request.kind, room, app.name):
                snapshot = await self._backup_first(request.kind, app, operation_id, progress)
            await progress.say(
                f"{request.kind} `{app.name}`: deploying {plan.to_version} on {app.server} "
                f"(recipe commit {checkout.commit[:8]})..."
            )
            result = await self._deploy_and_wait(app, engine, checkout, plan, prepared,
                                                 progress)

        took = time.monotonic() - started
        if result.ok:
            # What abra writes: the release's tag, or a chaos deploy's short commit.
            recorded = (prepared.target.tag if prepared.target is not None
                        else checkout.commit[:CHAOS_COMMIT_LENGTH])
            if await asyncio.to_thread(write_type_version, app.env_path, app.recipe,
                                       recorded) and self._env_written is not None:
                await self._env_written(app, request.requester,
                                        f"{request.kind} {app.name}: TYPE {recorded}")
            summary = f"{plan.describe()}: ok in {took:.0f} s"
            await self._operations.finish(operation_id, "ok", summary)
            offer = ""
            if plan.kind == "rollback" and self._data_safety is not None and plan.to_version:
                offer = await self._data_safety.rollback_offer(app, plan.to_version)
            return self._success_reply(plan, took, offer)

        failure = self._describe_failure(app, result)
        recovery, returned = await self._recover(app, engine, prepared.deployed, progress)
        data = ""
        if self._data_safety is not None:
            data = await self._data_safety.after_return(
                app, request.kind, room, operation_id, snapshot, returned,
                plan.to_version or "the new version", progress.say, progress.relay)
        message = "\n".join(part for part in (
            f"{plan.describe()} failed after {took:.0f} s.", failure, recovery, data) if part)
        raise OperationFailed(message)  # run() records it, once

    async def _backup_first(self, kind: str, app: App, operation_id: OperationID,
                            progress: Throttle) -> str | None:
        """After preflight, before anything changes: a failed backup stops the operation.
        The snapshot taken, if any."""
        if self._pre_backup is None:
            return None
        try:
            return await self._pre_backup(app, operation_id, kind, progress.relay)
        except CoopbotError as error:
            raise OperationFailed(
                f"{kind} of `{app.name}` did not run, nothing was changed: the backup before "
                f"it failed: {error}", detail=error.detail,
            ) from error

    async def _plan(self, kind: str, app: App, engine: DockerEngine, checkout: Checkout,
                    deployed: Deployed | None, notes: tuple[tuple[str, str], ...],
                    release: RecipeVersion | None) -> Plan:
        env = deploy_env(app, checkout)
        compose = await asyncio.to_thread(load_compose, checkout.path, app.compose_files, env)
        warnings = await self._preflight.check(app, engine, checkout, compose)
        chaos = checkout.version is None
        return Plan(
            kind=kind, app=app, from_version=deployed.text if deployed is not None else None,
            to_version=(chaos_text(checkout.commit[:CHAOS_COMMIT_LENGTH]) if chaos
                        else release.tag if release is not None else str(checkout.version)),
            commit=checkout.commit, compose_digest=digest(compose), env_digest=digest(app.env),
            images=compose_images(compose), release_notes=notes, warnings=tuple(warnings),
            timeout=convergence_timeout(app, compose),
        )

    async def _deploy_and_wait(self, app: App, engine: DockerEngine, checkout: Checkout,
                               plan: Plan, prepared: Prepared,
                               progress: Throttle) -> ConvergenceResult:
        converging = self.converging_progress(f"{plan.kind} `{app.name}` to {plan.to_version}",
                                              plan.timeout, progress)
        return await self._stack_deploy(app, engine, checkout, plan.timeout, prepared.labelled,
                                        converging)

    @staticmethod
    def converging_progress(what: str, timeout: float, progress: Throttle) -> ProgressCallback:
        """The status line while a stack converges (deploys, restarts); the throttle's ticker
        adds the time spent."""

        async def converging(state: ConvergenceProgress) -> None:
            done = len(state.services) - len(state.pending)
            waiting = f" (waiting for {', '.join(state.pending)})" if state.pending else ""
            await progress.say(
                f"{what}: converging, {done}/{len(state.services)} services ready{waiting}, "
                f"giving it up to {timeout:.0f} s"
            )

        return converging

    async def converge(self, app: App, engine: DockerEngine, what: str, timeout: float,
                       progress: Throttle) -> ConvergenceResult:
        """Wait for the app's stack as a deploy does (for a change made another way, e.g. a
        restart), with the same progress lines."""
        return await engine.wait_converged(
            app.stack_name, timeout, self.converging_progress(what, timeout, progress))

    async def timeout_of(self, app: App) -> float:
        """The app's convergence timeout: the recipe's label at the version it runs."""
        current = deployed_version(await self._pool.get(app.server).services(app.stack_name),
                                   app.stack_name)
        async with self._recipes.checkout(app.recipe, current or app.version) as checkout:
            compose = await asyncio.to_thread(load_compose, checkout.path, app.compose_files,
                                              deploy_env(app, checkout))
        return convergence_timeout(app, compose)

    async def _stack_deploy(self, app: App, engine: DockerEngine, checkout: Checkout,
                            timeout: float, labelled: RecipeVersion | None,
                            progress: ProgressCallback | None = None) -> ConvergenceResult:
        """`docker stack deploy` of a checked-out tree with abra's deploy labels, then the
        wait for convergence. `labelled`: the release the `.version` label names (a chaos
        deploy's last release)."""
        env = deploy_env(app, checkout)
        files = [checkout.path / name for name in app.compose_files]
        compose = await asyncio.to_thread(load_compose, checkout.path, app.compose_files, env)
        chaos = checkout.commit if checkout.version is None else None
        labels = deploy_labels(app.stack_name, app.recipe,
                               labelled.tag if labelled is not None else None, chaos, app.env)
        overlay = labels_overlay(compose, labels)
        if overlay is not None:
            path = checkout.path / LABELS_FILE
            await asyncio.to_thread(path.write_text, overlay, encoding="utf-8")
            files.append(path)
        else:
            log.warning("recipe %s has no `app` service: abra's deploy labels are not set",
                        app.recipe)
        crash_point("before-stack-deploy")
        # abra's deploy: no prune (services dropped from the compose keep running, as abra
        # leaves them) and image digests resolved, except on servers whose images are checked
        # to be on the node (no registry there). docs/operator.md says why.
        resolve: ResolveImage = "never" if self._preflight.checks_images(app.server) else "always"
        await engine.stack_deploy(app.stack_name, files, env, checkout.path, prune=False,
                                  resolve_image=resolve)
        return await engine.wait_converged(app.stack_name, timeout, progress)

    async def _recover(self, app: App, engine: DockerEngine, previous: Deployed | None,
                       progress: Throttle) -> tuple[str, bool]:
        """Bring the version that ran before back, by redeploying it (stack deploy is
        declarative, so this also repairs services swarm already rolled back). What to say,
        and whether it runs again, converged and healthy."""
        if previous is None:
            return ("There was no earlier version to return to; the stack is left as it is "
                    f"(`!ps {app.name}` shows it, `!undeploy {app.name}` removes it)."), False
        if previous.chaos is None and previous.release is None:
            return (f"It ran {previous.text} before, which names no release, so there is "
                    f"nothing known to return to (`!ps {app.name}` shows what runs)."), False
        await progress.say(f"returning `{app.name}` to {previous.text}...")
        try:
            if previous.chaos is not None:
                checking_out = self._recipes.checkout(app.recipe, chaos=True, ref=previous.chaos)
            else:
                assert previous.release is not None
                checking_out = self._recipes.checkout(app.recipe, previous.release.tag)
            async with checking_out as checkout:
                compose = await asyncio.to_thread(load_compose, checkout.path,
                                                  app.compose_files, deploy_env(app, checkout))
                result = await self._stack_deploy(app, engine, checkout,
                                                  convergence_timeout(app, compose),
                                                  previous.release)
        except CoopbotError as error:
            log.warning("recovery of %s failed: %s (%s)", app.name, error, error.detail)
            return f"Returning to {previous.text} failed too: {error}", False
        now = deployed_version(list(result.services), app.stack_name) or "unknown"
        if result.ok:
            return (f"Returned to {previous.text}: running now is {now}, converged and "
                    "healthy."), True
        return (f"Returning to {previous.text} did not converge either; running now is {now}. "
                + self._describe_failure(app, result)), False

    def describe_failure(self, app: App, result: ConvergenceResult) -> str:
        """Which service failed and why, with its redacted log tail, as a deploy reports it."""
        return self._describe_failure(app, result)

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

    def _success_reply(self, plan: Plan, took: float, offer: str = "") -> Reply:
        verb = {"deploy": "deployed", "upgrade": "upgraded", "rollback": "rolled back"}[plan.kind]
        changed = (f"{plan.from_version} -> {plan.to_version}" if plan.from_version
                   and plan.from_version != plan.to_version else f"{plan.to_version}")
        lines = [f"**`{plan.app.name}` {verb}**: {changed} on {plan.app.server}, converged and "
                 f"healthy in {took:.0f} s."]
        for version, notes in plan.release_notes:
            lines.append(f"Release notes {version}:")
            lines += [f"    {line}" for line in notes.splitlines()[:10]]
        if offer:
            lines.append(offer)
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
        # A stack whose tasks never started (a missing image, say) ran nothing.
        ran = any(s.replicas_running > 0 or s.converged for s in services)
        await engine.stack_remove(app.stack_name)
        await self._operations.finish(operation_id, "ok", f"undeployed {current}")
        # Volumes are per node: on a multi-node swarm, say where each copy is.
        several = len(await engine.helpers.nodes()) > 1
        kept = ", ".join(f"`{v}`" + (f" on {node}" if several else "")
                         for node, names in volumes.items() for v in names) or "none"
        what = (f"it ran {current or 'an unknown version'}" if ran
                else f"{current or 'it'} was deployed but never ran")
        return Reply.of(
            f"**`{app.name}` undeployed** from {app.server} ({what}). "
            f"Volumes and secrets stay: volumes {kept}. `!deploy {app.name}` brings it back."
        )


@dataclass(frozen=True)
class Prepared:
    """A version change ready to run: its plan, the checked-out target tree, the release
    (None for a chaos deploy), the release its version label names (a chaos deploy's last
    release) and what ran before."""

    plan: Plan
    checkout: Checkout
    target: RecipeVersion | None
    labelled: RecipeVersion | None
    deployed: Deployed | None = None





def convergence_timeout(app: App, compose: dict[str, Any]) -> float:
    """The recipe's timeout label on its app service, else the app's TIMEOUT (300 s unless
    set, as abra)."""
    return compose_timeout(compose, app.stack_name, float(app.timeout))
