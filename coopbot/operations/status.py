"""Read-only views: servers, apps, services, logs and recipe versions, gathered in parallel."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from coopbot.config import RoomConfig
from coopbot.errors import CoopbotError, NotFound, ServerUnreachable
from coopbot.operations.scope import AppScope
from coopbot.recipes.apps import App
from coopbot.recipes.labels import deployed_version
from coopbot.recipes.repo import RecipeStore
from coopbot.redact import Redactor
from coopbot.replies import Attachment, Reply
from coopbot.servers.node_usage import NodeUsage, UsageBoard
from coopbot.servers.pool import ServerPool
from coopbot.servers.states import NodeState, ServerInfo, ServiceState

log = logging.getLogger(__name__)

STATUS_TIMEOUT = 15.0
LOG_LINES_INLINE = 25
LOG_CHARS_INLINE = 3000
MAX_LOG_LINES = 2000
VERSIONS_SHOWN = 15


class StatusViews:
    def __init__(self, scope: AppScope, recipes: RecipeStore, pool: ServerPool,
                 usage: UsageBoard | None = None) -> None:
        self._scope = scope
        self._recipes = recipes
        self._pool = pool
        self._usage = usage or UsageBoard()

    async def servers(self, room: RoomConfig | None) -> Reply:
        names = self._scope.servers(room, self._pool.names)
        if not names:
            return Reply.of("This room controls no servers (config `rooms.<room>.servers`).")
        infos = await self._pool.info_all(timeout=STATUS_TIMEOUT)
        lines = ["**Servers:**"]
        for name in names:
            info = infos.get(name)
            lines.append(f"- {_server_line(name, info)}")
            usage = self._usage.get(name)
            if isinstance(info, ServerInfo) and (info.node_count > 1 or usage):
                lines += [f"    - {_node_line(node, usage.get(node.hostname))}"
                          for node in info.nodes]
        return Reply.of("\n".join(lines))

    async def apps(self, room: RoomConfig | None, server: str | None) -> Reply:
        if server is not None and server not in self._scope.servers(room, self._pool.names):
            raise NotFound(f"This room controls no server called `{server}`.")
        apps = await asyncio.to_thread(self._scope.apps, room, server)
        if not apps:
            return Reply.of("No apps here: this room controls no app env files.")
        by_server: dict[str, list[App]] = defaultdict(list)
        for app in apps:
            by_server[app.server].append(app)
        stacks, newest = await asyncio.gather(
            self._stacks_by_server(list(by_server)),
            self._newest_versions({app.recipe for app in apps}),
        )
        rows = []
        for server_name, server_apps in sorted(by_server.items()):
            server_stacks = stacks[server_name]
            for app in sorted(server_apps, key=lambda a: a.name):
                if isinstance(server_stacks, CoopbotError):
                    state, deployed = "unknown (server unreachable)", "?"
                else:
                    services = server_stacks.get(app.stack_name, [])
                    deployed = deployed_version(services, app.stack_name) or "-"
                    state = _stack_state(services)
                latest = newest.get(app.recipe) or "?"
                marker = " (upgrade available)" if deployed not in ("-", "?", latest) \
                    and latest != "?" and not deployed.startswith("chaos ") else ""
                rows.append((app.name, state, deployed, latest + marker, server_name, app.recipe))
        header = ("app", "state", "deployed", "newest", "server", "recipe")
        notes = [f"server {name}: {error}" for name, error in stacks.items()
                 if isinstance(error, CoopbotError)]
        title = f"**{len(rows)} apps**" + (" (" + "; ".join(notes) + ")" if notes else "")
        # The state next to the name: phones show the left of a table.
        return Reply.table(title, header, rows)

    async def ps(self, room: RoomConfig | None, name: str) -> Reply:
        app = await asyncio.to_thread(self._scope.get, name, room)
        services = await self._pool.get(app.server).services(app.stack_name)
        if not services:
            return Reply.of(f"`{app.name}` is not deployed on {app.server}.")
        redact = Redactor.for_env(app.env)
        rows = []
        for service in services:
            version = deployed_version([service], app.stack_name) or ""
            rows.append((
                service.short_name,
                service.health,
                f"{service.replicas_running}/{service.replicas_desired}",
                ", ".join(service.nodes) or "-",
                version,
                service.update_state or "-",
                # The current task's error: an older task's is history, not why it is down.
                redact(service.task_error or "")[:80] or "-",
                service.image,
            ))
        # What matters first (health, replicas, node): phones show the left of a table.
        return Reply.table(f"**`{app.name}`** on {app.server}:",
                           ("service", "health", "replicas", "node", "version", "update",
                            "last error", "image"), rows)

    async def logs(self, room: RoomConfig | None, name: str, service: str | None,
                   lines: int) -> Reply:
        app = await asyncio.to_thread(self._scope.get, name, room)
        engine = self._pool.get(app.server)
        services = await engine.services(app.stack_name)
        if not services:
            return Reply.of(f"`{app.name}` is not deployed on {app.server}.")
        wanted = service or "app"
        match = next((s for s in services if s.short_name == wanted), None)
        if match is None:
            known = ", ".join(s.short_name for s in services)
            raise NotFound(f"`{app.name}` has no service `{wanted}` (services: {known}).")
        raw = await engine.service_logs(match.name, min(lines, MAX_LOG_LINES))
        redact = Redactor.for_env(app.env)
        cleaned = [redact(line) for line in raw]
        title = (f"Last {len(cleaned)} log lines of `{app.name}` service `{wanted}` "
                 "(env values redacted):")
        text = "\n".join(cleaned)
        if len(cleaned) <= LOG_LINES_INLINE and len(text) <= LOG_CHARS_INLINE:
            return Reply.preformatted(title, text or "(no output)")
        filename = f"{app.name}-{wanted}.log"
        return Reply.of(f"{title} attached as `{filename}`.").with_attachment(
            Attachment(filename=filename, data=(text + "\n").encode())
        )

    async def versions(self, room: RoomConfig | None, recipe: str) -> Reply:
        await self._recipes.fetch(recipe)
        releases = await self._recipes.versions(recipe)
        if not releases:
            return Reply.of(f"Recipe `{recipe}` has no releases yet.")
        apps = await asyncio.to_thread(self._scope.apps, room, None)
        deployed: dict[str, list[str]] = defaultdict(list)
        for app in apps:
            if app.recipe == recipe and app.version:
                deployed[app.version].append(app.name)
        lines = [f"**Versions of `{recipe}`** (newest first):"]
        for release in releases[:VERSIONS_SHOWN]:
            text = str(release.version)
            mark = f" (deployed: {', '.join(deployed[text])})" if deployed.get(text) else ""
            lines.append(f"- `{text}`{mark}")
        if len(releases) > VERSIONS_SHOWN:
            lines.append(f"... and {len(releases) - VERSIONS_SHOWN} older.")
        return Reply.of("\n".join(lines))

    async def _stacks_by_server(
        self, servers: list[str]
    ) -> dict[str, dict[str, list[ServiceState]] | CoopbotError]:
        async def one(name: str) -> dict[str, list[ServiceState]] | CoopbotError:
            try:
                return await asyncio.wait_for(self._pool.get(name).stacks(), STATUS_TIMEOUT)
            except TimeoutError:
                return ServerUnreachable(name, f"no answer within {STATUS_TIMEOUT:g} s")
            except CoopbotError as error:
                return error

        results = await asyncio.gather(*(one(name) for name in servers))
        return dict(zip(servers, results, strict=True))

    async def _newest_versions(self, recipes: set[str]) -> dict[str, str | None]:
        async def one(recipe: str) -> str | None:
            try:
                releases = await self._recipes.versions(recipe)
            except CoopbotError as error:
                log.info("versions of %s unavailable: %s", recipe, error)
                return None
            return str(releases[0].version) if releases else None

        names = sorted(recipes)
        results = await asyncio.gather(*(one(name) for name in names))
        return dict(zip(names, results, strict=True))


def _server_line(name: str, info: ServerInfo | CoopbotError | None) -> str:
    if info is None:
        return f"❓ {name}: not configured"
    if isinstance(info, CoopbotError):
        return f"❌ {info}"
    states = ", ".join(f"{count} {state}" for state, count in sorted(info.node_states.items()))
    return (f"✅ {name}: Docker {info.docker_version}, swarm {info.swarm_role}, "
            f"{info.node_count} node(s) ({states}), {info.stack_count} stack(s)")


def _node_line(node: NodeState, usage: NodeUsage | None) -> str:
    """State first (what a phone shows without scrolling), then the rest."""
    mark = "✅" if node.state == "ready" and node.availability == "active" else "⚠️"
    role = f"{node.role} (leader)" if node.leader else node.role
    labels = ", ".join(f"{k}={v}" for k, v in sorted(node.labels.items()))
    return (f"{mark} {node.hostname}: {node.state}, {node.availability}, {role}, Docker "
            f"{node.engine_version}" + (f", labels {labels}" if labels else "")
            + (f"; {usage.line()}" if usage else ""))


def _stack_state(services: list[ServiceState]) -> str:
    if not services:
        return "not deployed"
    failing = [s.short_name for s in services
               if (s.update_failed and not _runs_after_rollback(s)) or s.health == "unhealthy"]
    if failing:
        return f"failing: {', '.join(failing)}"
    pending = [s.short_name for s in services
               if not s.converged and not _runs_after_rollback(s)]
    if pending:
        return f"converging: {', '.join(pending)}"
    return "running"


def _runs_after_rollback(service: ServiceState) -> bool:
    """Swarm rolled an update back and the previous spec runs healthy again: not failing
    (the failed deploy's answer said so when it happened)."""
    return (service.update_state == "rollback_completed" and service.health != "unhealthy"
            and service.replicas_updated >= service.replicas_desired)
