"""Auto-updates: the bot asks for a minor/patch upgrade itself, in the app's notification room,
through the same approval stage and operation stage as a member's `!upgrade`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from coopbot.execution import Executed
from coopbot.ids import UserID
from coopbot.invocation import Invocation, LoggedProgress
from coopbot.messages import ReplyTarget
from coopbot.notify.targets import NotificationTargets
from coopbot.notify.updates import Available
from coopbot.ports import RoomPoster
from coopbot.registry import CommandRegistry
from coopbot.replies import Reply
from coopbot.rooms import RoomDirectory

log = logging.getLogger(__name__)

Gate = Callable[[Invocation], Awaitable[bool]]
Execute = Callable[[Invocation], Awaitable[Executed]]


class AutoUpgrader:
    def __init__(self, *, bot_user_id: str, registry: CommandRegistry, rooms: RoomDirectory,
                 targets: NotificationTargets, role_order: list[str], poster: RoomPoster,
                 gate: Gate, execute: Execute) -> None:
        self._bot = UserID(bot_user_id)
        self._registry = registry
        self._rooms = rooms
        self._targets = targets
        self._roles = tuple(role_order)
        self._poster = poster
        self._gate = gate
        self._execute = execute

    async def __call__(self, available: Available) -> None:
        app = available.app
        targets = self._targets.for_app(app.server, app.name)
        if not targets:
            log.info("auto-update of %s skipped: no notification room to ask in", app.name)
            return
        room_id = targets[0]
        announcement = await self._poster.post(room_id, Reply.of(
            f"🤖 auto-update: upgrading `{app.name}` from {available.running} to "
            f"{available.newest_tag} (minor/patch release)."
        ), key=f"auto/{app.name}/{available.newest}")
        room = self._rooms.get(room_id)
        # The bot asks on its own authority; policies (votes, backups) still apply in full.
        invocation = Invocation.of_bot(
            ReplyTarget(room_id, announcement), self._bot, self._registry.lookup("upgrade"),
            {"app": app.name, "version": available.newest_tag}, self._roles,
            room.config if room else None, LoggedProgress(f"auto-update of {app.name}"))
        if await self._gate(invocation):
            await self._execute(invocation)

