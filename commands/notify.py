"""Notification commands: what this room is told about, and maintenance-window mutes.

A mute is set in a room, for an app that room controls, and silences only that room's
notifications and those of the rooms it lists under `mute_rooms`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from coopbot.args import APP, Duration
from coopbot.config import parse_duration
from coopbot.errors import UsageError, UserError
from coopbot.invocation import Invocation
from coopbot.notify.targets import NotificationTargets
from coopbot.operations.scope import AppScope
from coopbot.registry import Arg, CommandSpec
from coopbot.replies import Reply
from coopbot.store.notices import Mute, NoticeStore

MAX_MUTE_SECONDS = 30 * 86400


def _until(mute: Mute) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(mute.until))


class NotifyCommands:
    def __init__(self, targets: NotificationTargets, notices: NoticeStore, scope: AppScope, *,
                 read_role: str, change_role: str,
                 swarm_state: Callable[[], list[str]] | None = None) -> None:
        self._swarm_state = swarm_state
        self._targets = targets
        self._notices = notices
        self._scope = scope
        self._read = read_role
        self._change = change_role

    def specs(self) -> list[CommandSpec]:
        return [
            CommandSpec("watch", "what this room is notified about, and current mutes",
                        self._read, self.watch),
            CommandSpec("mute", "silence an app's notifications for a while (maintenance)",
                        self._change, self.mute,
                        args=(Arg("app", kind=APP), Arg("duration", help="how long",
                                                        kind=Duration(1, MAX_MUTE_SECONDS))),
                        details="Only apps this room controls. Silences this room's "
                                "notifications about the app, and those of the notification "
                                "rooms the config lists for this room (`mute_rooms`); other "
                                "rooms still get theirs.",
                        examples=("!mute blog.example.org 2h",)),
            CommandSpec("unmute", "end an app's mute now", self._change, self.unmute,
                        args=(Arg("app", kind=APP),), details="Ends the mute set in this room."),
        ]

    async def watch(self, inv: Invocation) -> Reply:
        servers, apps = self._targets.rooms_watching(inv.room_id)
        if not servers:
            lines = ["This room gets no notifications (config `rooms.<room>.notifications`)."]
        else:
            lines = [f"This room is notified about apps {', '.join(f'`{a}`' for a in apps)} on "
                     f"{', '.join(servers)}: operation outcomes, changes made outside coopbot, "
                     "failing services, nodes and servers going down, new versions."]
        here = await self._notices.active_mutes([inv.room_id])
        for mute in here:
            lines.append(f"- `{mute.app}` muted until {_until(mute)} by {mute.muted_by}")
        # Mutes set in rooms that answer for this one (their `mute_rooms` lists it).
        elsewhere = await self._notices.active_mutes(self._targets.silenced_by(inv.room_id)[1:])
        for mute in elsewhere:
            origin = self._targets.name_of(mute.room_id)
            lines.append(f"- `{mute.app}` muted here from {origin} until {_until(mute)} by "
                         f"{mute.muted_by}")
        if not here and not elsewhere:
            lines.append("Nothing is muted.")
        if self._swarm_state is not None:
            lines.append("**What the watcher sees:**")
            lines += [f"- {line}" for line in self._swarm_state()] or ["- (nothing yet)"]
        return Reply.of("\n".join(lines))

    async def mute(self, inv: Invocation) -> Reply:
        try:
            seconds = parse_duration(inv.args["duration"])
        except ValueError as error:
            raise UsageError(str(error), inv.spec.usage()) from None
        if not 0 < seconds <= MAX_MUTE_SECONDS:
            raise UsageError("a mute lasts from 1 second to 30 days.", inv.spec.usage())
        # Refuses apps of other rooms; reading env files is blocking work.
        app = await asyncio.to_thread(self._scope.get, inv.args["app"], inv.room)
        itself, others = self._targets.silenced_from(inv.room_id)
        if not itself and not others:
            raise UserError("This room gets no notifications and silences no other room "
                            "(config `rooms.<room>.mute_rooms`): there is nothing to mute here.")
        mute = await self._notices.mute(inv.room_id, app.name, seconds, inv.sender)
        where = ", ".join((["this room"] if itself else []) + others)
        return Reply.of(f"`{mute.app}` is muted until {_until(mute)} in {where}: no "
                        f"notifications about it there until then, or until "
                        f"`!unmute {mute.app}`.")

    async def unmute(self, inv: Invocation) -> Reply:
        app = inv.args["app"]
        if await self._notices.unmute(inv.room_id, app):
            return Reply.of(f"`{app}` is unmuted: notifications about it resume.")
        return Reply.of(f"`{app}` was not muted from this room.")
