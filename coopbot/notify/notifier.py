"""Posts what happened into notification rooms: one message per outcome, nothing per step.

Everything here is room-safe text built from records (names, versions, counts, durations); the
operation's details stay in its own thread, which the notification links to.
"""

from __future__ import annotations

import logging
import uuid

from coopbot.backups.results import ScheduledBackup
from coopbot.errors import CoopbotError
from coopbot.notify.targets import NotificationTargets
from coopbot.observe import Event, OperationFinished
from coopbot.ports import RoomPoster
from coopbot.replies import Reply
from coopbot.store.notices import NoticeStore
from coopbot.store.operations import REFUSED

log = logging.getLogger(__name__)

ICONS = {"ok": "✅", "failed": "❌", "interrupted": "⚠️"}



def link(room_id: str, event_id: str) -> str:
    return f"https://matrix.to/#/{room_id}/{event_id}"


def describe_operation(event: OperationFinished) -> Reply:
    icon = ICONS.get(event.result, "ℹ️")
    if event.kind == "undeploy":
        change = f"{event.from_version or '?'} -> removed"
    elif event.kind in ("backup", "restore"):
        change = event.to_version or event.from_version or ""
    else:
        change = f"{event.from_version or 'not deployed'} -> {event.to_version or '?'}"
    took = f" in {event.duration:.0f} s" if event.duration is not None else ""
    lines = [f"{icon} **{event.kind} `{event.app}`** on {event.server}: {change}: "
             f"**{event.result}**{took}."]
    people = f"Asked by {event.requester}"
    if event.approvers:
        people += f", approved by {', '.join(event.approvers)}"
    lines.append(people + ".")
    if event.result != "ok" and event.summary:
        lines.append(event.summary.splitlines()[0][:300])
    if event.room_id and event.event_id:
        lines.append(f"Details: {link(event.room_id, event.event_id)}")
    return Reply.of("\n".join(lines))


class Notifier:
    def __init__(self, targets: NotificationTargets, poster: RoomPoster,
                 notices: NoticeStore) -> None:
        self._targets = targets
        self._poster = poster
        self._notices = notices

    async def on_event(self, event: Event) -> None:
        # A refused operation changed nothing: its requester was told, the rooms need not be.
        if isinstance(event, OperationFinished) and event.result != REFUSED:
            await self.announce(event.server, event.app, describe_operation(event),
                                key=f"operation/{event.operation_id}")

    async def announce(self, server: str, app: str | None, reply: Reply, *, key: str) -> int:
        """Post to every notification room of this app that has not muted it (itself, or from a
        room answering for it); returns how many rooms got it."""
        sent = 0
        for room_id in self._targets.for_app(server, app):
            mute = (await self._notices.muted(app, self._targets.silenced_by(room_id))
                    if app is not None else None)
            if mute is not None:
                log.info("notification to %s about %s muted (in %s by %s): %s", room_id, app,
                         mute.room_id, mute.muted_by, reply.text.splitlines()[0])
                continue
            try:
                await self._poster.post(room_id, reply, key=f"notify/{room_id}/{key}")
                sent += 1
            except CoopbotError as error:
                log.warning("could not notify %s: %s", room_id, error)
        return sent

    async def announce_keyed(self, server: str, app: str, reply: Reply, key: str) -> int:
        return await self.announce(server, app, reply, key=key)

    async def scheduled_backup(self, outcome: ScheduledBackup) -> None:
        """Scheduled backups speak up only when they fail (or prune fails to keep up)."""
        if not outcome.ok:
            await self.announce(outcome.server, outcome.app,
                                Reply.of(f"❌ scheduled backup: {outcome.message}"),
                                key=Notifier.unique_key(f"backup/{outcome.app}"))

    @staticmethod
    def unique_key(prefix: str) -> str:
        return f"{prefix}/{uuid.uuid4().hex}"
