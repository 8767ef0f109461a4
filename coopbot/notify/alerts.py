"""Routes the swarm watcher's alerts to notification rooms, and tells it which version changes
coopbot made itself (those are not "outside coopbot")."""

from __future__ import annotations

import asyncio
import logging
import time

from coopbot.notify.notifier import Notifier
from coopbot.operations.scope import AppScope
from coopbot.recipes.apps import App
from coopbot.replies import Reply
from coopbot.store.operations import OperationStore
from coopbot.watch.alerts import Alert, VersionChange

log = logging.getLogger(__name__)

# A coopbot operation this recent still explains what the swarm does (rollbacks, restarts).
OPERATION_GRACE_SECONDS = 60.0
ICONS = {"info": "ℹ️", "warning": "⚠️", "critical": "🚨"}


class AlertRouter:
    def __init__(self, scope: AppScope, operations: OperationStore, notifier: Notifier) -> None:
        self._scope = scope
        self._operations = operations
        self._notifier = notifier

    async def _app_of(self, server: str, stack: str) -> App | None:
        apps = await asyncio.to_thread(self._scope.apps, None, server)
        return next((app for app in apps if app.stack_name == stack), None)

    async def is_coopbot_operation(self, change: VersionChange) -> bool:
        app = await self._app_of(change.server, change.app)
        if app is None:
            return False
        return await self._operations.active_between(
            app.name, change.last_seen - OPERATION_GRACE_SECONDS, change.at
        )

    async def emit(self, alert: Alert) -> None:
        if alert.app is None:  # server and node alerts go to every room of that server
            await self._notifier.announce(alert.server, None, self._reply(alert, None),
                                          key=Notifier.unique_key(f"alert/{alert.key}"))
            return
        app = await self._app_of(alert.server, alert.app)
        if app is None:
            log.debug("alert about a stack no app env file names: %s", alert.message)
            return
        now = time.time()
        if alert.kind != "version" and await self._operations.active_between(
                app.name, now - OPERATION_GRACE_SECONDS, now):
            # A coopbot operation on this app reports its own outcome in its thread and here.
            log.info("alert about %s during a coopbot operation not posted: %s",
                     app.name, alert.message)
            return
        await self._notifier.announce(alert.server, app.name, self._reply(alert, app),
                                      key=Notifier.unique_key(f"alert/{alert.key}"))

    @staticmethod
    def _reply(alert: Alert, app: App | None) -> Reply:
        icon = "✅" if alert.recovered else ICONS.get(alert.severity, "ℹ️")
        message = alert.message
        if app is not None and alert.app:
            message = message.replace(alert.app, app.name)
        return Reply.of(f"{icon} {message}")
