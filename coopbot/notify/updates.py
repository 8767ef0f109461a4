"""Upgrade availability: fetch the recipes of deployed apps, announce each newer version once,
and start minor/patch upgrades for apps marked for auto-update (through the usual policies).

The running release is found as the deployer finds it (operations/deployed.py), so odd labels
(`latest`, `1.0.2+1.0.2` on a `v1.0.2` tag, the old `.app.version` scheme) still get offers.
A chaos deploy is skipped, as kadabra skips it: its operator chose a commit, not a release."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from coopbot.errors import CoopbotError
from coopbot.operations.deployed import find_deployed
from coopbot.operations.scope import AppScope
from coopbot.recipes.apps import App
from coopbot.recipes.labels import autoupdate
from coopbot.recipes.repo import RecipeStore
from coopbot.recipes.versions import Version
from coopbot.replies import Reply
from coopbot.servers.pool import ServerPool
from coopbot.servers.states import ServiceState
from coopbot.store.notices import NoticeStore
from coopbot.store.operations import OperationStore

log = logging.getLogger(__name__)

NOTES_PER_VERSION = 200


@dataclass(frozen=True)
class Available:
    app: App
    current: Version
    newest: Version
    running: str  # the running release's tag (`v1.0.1` even when its label says otherwise)
    newest_tag: str
    notes: tuple[tuple[str, str], ...]
    auto_update: bool


Announce = Callable[[str, str, Reply, str], Awaitable[int]]
AutoUpgrade = Callable[[Available], Awaitable[None]]


class UpdateChecker:
    def __init__(self, scope: AppScope, recipes: RecipeStore, pool: ServerPool,
                 notices: NoticeStore, operations: OperationStore, announce: Announce,
                 auto_patterns: list[str], auto_upgrade: AutoUpgrade | None = None,
                 prefix: str = "!") -> None:
        self._scope = scope
        self._operations = operations
        self._recipes = recipes
        self._pool = pool
        self._notices = notices
        self._announce = announce
        self._auto_patterns = auto_patterns
        self._auto_upgrade = auto_upgrade
        self._prefix = prefix

    async def check_once(self) -> list[Available]:
        """One pass over every deployed app; returns what is newly available."""
        apps = await asyncio.to_thread(self._scope.apps, None, None)
        deployed = await self._deployed(apps)
        for recipe in sorted({app.recipe for app, _ in deployed}):
            try:
                await self._recipes.fetch(recipe)
            except CoopbotError as error:
                log.warning("update check: %s", error)
        found: list[Available] = []
        for app, services in deployed:
            available = await self._available(app, services)
            if available is None:
                continue
            if await self._notices.first_announcement(app.name, str(available.newest)):
                found.append(available)
                await self._announce(app.server, app.name, self._message(available),
                                     f"update/{app.name}/{available.newest}")
                if available.auto_update and self._auto_upgrade is not None:
                    await self._auto_upgrade(available)
        return found

    async def run(self, every_seconds: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check_once()
            except CoopbotError as error:
                log.warning("update check failed: %s", error)
            try:
                await asyncio.wait_for(stop.wait(), every_seconds)
            except TimeoutError:
                pass

    async def _deployed(self, apps: list[App]) -> list[tuple[App, list[ServiceState]]]:
        servers = sorted({app.server for app in apps if app.server in self._pool.names})

        async def stacks(server: str) -> dict[str, list[ServiceState]]:
            try:
                async with self._pool.background():
                    return await self._pool.get(server).stacks()
            except CoopbotError as error:
                log.info("update check skips server %s: %s", server, error)
                return {}

        by_server = dict(zip(servers, await asyncio.gather(*(stacks(s) for s in servers)),
                             strict=True))
        result = []
        for app in apps:
            services = by_server.get(app.server, {}).get(app.stack_name)
            if services:
                result.append((app, services))
        return result

    async def _available(self, app: App, services: list[ServiceState]) -> Available | None:
        try:
            releases = await self._recipes.versions(app.recipe)
        except CoopbotError:
            return None
        deployed = await find_deployed(app, services, releases, self._operations)
        if deployed is None or deployed.release is None or deployed.chaos is not None:
            return None
        current = deployed.release.version
        newer = [r for r in releases if r.version > current and not r.version.is_prerelease]
        if not newer:
            return None
        notes = []
        for release in reversed(newer):
            try:
                text = await self._recipes.release_notes(app.recipe, release.version)
            except CoopbotError:
                text = None
            if text:
                notes.append((release.tag, " ".join(text.split())[:NOTES_PER_VERSION]))
        newest = newer[0].version
        labelled = autoupdate(services, app.stack_name)
        configured = any(fnmatch.fnmatchcase(app.name, p) for p in self._auto_patterns)
        auto = (labelled or configured) and newest.is_minor_or_patch_upgrade_of(current)
        return Available(app, current, newest, deployed.release.tag, newer[0].tag, tuple(notes),
                         auto)

    def _message(self, available: Available) -> Reply:
        app = available.app
        lines = [f"⬆️ **`{app.name}`** on {app.server}: {available.newest_tag} is available "
                 f"(running {available.running})."]
        for version, notes in available.notes:
            lines.append(f"- {version}: {notes}")
        if available.auto_update:
            lines.append("It is marked for auto-update: the bot starts the upgrade itself, "
                         "under this app's upgrade policy.")
        else:
            lines.append(f"To upgrade: `{self._prefix}upgrade {app.name} {available.newest_tag}`")
        return Reply.of("\n".join(lines))
