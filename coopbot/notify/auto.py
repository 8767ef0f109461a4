"""Auto-updates: the bot asks for a minor/patch upgrade itself, in the app's notification room,
through the same approval stage and operation stage as a member's `!upgrade`."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from coopbot.ids import EventID, RoomID, UserID
from coopbot.invocation import Invocation, LoggedProgress
from coopbot.messages import IncomingMessage
from coopbot.notify.targets import NotificationTargets
from coopbot.notify.updates import Available
from coopbot.registry import CommandRegistry
from coopbot.replies import Reply
from coopbot.roles import RoleGrant
from coopbot.rooms import RoomDirectory

log = logging.getLogger(__name__)

Gate = Callable[[Invocation, IncomingMessage], Awaitable[bool]]
Execute = Callable[[Invocation, IncomingMessage], Awaitable[bool]]
Post = Callable[[RoomID, Reply, str], Awaitable[EventID]]


class AutoUpgrader:
    def __init__(self, *, bot_user_id: str, registry: CommandRegistry, rooms: RoomDirectory,
                 targets: NotificationTargets, role_order: list[str], post: Post,
                 gate: Gate, execute: Execute) -> None:
        self._bot = UserID(bot_user_id)
        self._registry = registry
        self._rooms = rooms
        self._targets = targets
        self._roles = tuple(role_order)
        self._post = post
        self._gate = gate
        self._execute = execute

    async def __call__(self, available: Available) -> None:
        app = available.app
        targets = self._targets.for_app(app.server, app.name)
        if not targets:
            log.info("auto-update of %s skipped: no notification room to ask in", app.name)
            return
        room_id = targets[0]
        announcement = await self._post(room_id, Reply.of(
            f"🤖 auto-update: upgrading `{app.name}` from {available.current} to "
            f"{available.newest} (minor/patch release)."
        ), f"auto/{app.name}/{available.newest}")
        message = IncomingMessage(
            room_id=room_id, event_id=announcement, sender=self._bot, body="", msgtype="m.text",
            timestamp_ms=int(time.time() * 1000), received_at=time.time(),
        )
        spec = self._registry.lookup("upgrade")
        room = self._rooms.get(room_id)
        # The bot asks on its own authority; policies (votes, backups) still apply in full.
        grant = RoleGrant(self._bot, float("inf"), self._roles,
                          {role: "automatic update" for role in self._roles})
        invocation = Invocation(
            room_id=room_id, event_id=announcement, sender=self._bot, spec=spec,
            args={"app": app.name, "version": str(available.newest)}, grant=grant,
            room=room.config if room else None, event_timestamp_ms=message.timestamp_ms,
            received_at=message.received_at, progress=LoggedProgress(f"auto-update of {app.name}"),
            automatic=True,
        )
        if await self._gate(invocation, message):
            await self._execute(invocation, message)

