"""Notification commands: what this room is told about, and maintenance-window mutes."""

from __future__ import annotations

import time
from collections.abc import Callable

from coopbot.args import APP, Duration
from coopbot.config import parse_duration
from coopbot.errors import UsageError
from coopbot.invocation import Invocation
from coopbot.notify.targets import NotificationTargets
from coopbot.registry import Arg, CommandSpec
from coopbot.replies import Reply
from coopbot.store.notices import NoticeStore

MAX_MUTE_SECONDS = 30 * 86400


class NotifyCommands:
    def __init__(self, targets: NotificationTargets, notices: NoticeStore, *, read_role: str,
                 change_role: str, swarm_state: Callable[[], list[str]] | None = None) -> None:
        self._swarm_state = swarm_state
        self._targets = targets
        self._notices = notices
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
                        examples=("!mute blog.example.org 2h",)),
            CommandSpec("unmute", "end an app's mute now", self._change, self.unmute,
                        args=(Arg("app", kind=APP),)),
        ]

    async def watch(self, inv: Invocation) -> Reply:
        servers, apps = self._targets.rooms_watching(inv.room_id)
        if not servers:
            lines = ["This room gets no notifications (config `rooms.<room>.notifications`)."]
        else:
            lines = [f"This room is notified about apps {', '.join(f'`{a}`' for a in apps)} on "
                     f"{', '.join(servers)}: operation outcomes, changes made outside coopbot, "
                     "failing services, nodes and servers going down, new versions."]
        mutes = await self._notices.active_mutes()
        for mute in mutes:
            until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(mute.until))
            lines.append(f"- `{mute.app}` muted until {until} by {mute.muted_by}")
        if not mutes:
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
        mute = await self._notices.mute(inv.args["app"], seconds, inv.sender, inv.room_id)
        until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(mute.until))
        return Reply.of(f"`{mute.app}` is muted until {until}: no notifications about it "
                        f"until then, or until `!unmute {mute.app}`.")

    async def unmute(self, inv: Invocation) -> Reply:
        app = inv.args["app"]
        if await self._notices.unmute(app):
            return Reply.of(f"`{app}` is unmuted: notifications about it resume.")
        return Reply.of(f"`{app}` was not muted.")
