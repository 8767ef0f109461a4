"""Which rooms a mute silences, on a real SQLite store: the room that set it and the rooms its
`mute_rooms` names, never any other (the Matrix side is a recording fake; the whole-bot tests in
test_bot_notify.py do the same on a real homeserver)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from coopbot.config import RoomConfig
from coopbot.ids import EventID, RoomID
from coopbot.notify.notifier import Notifier
from coopbot.notify.targets import NotificationTargets
from coopbot.replies import Reply
from coopbot.rooms import RoomDirectory
from coopbot.store.database import Database
from coopbot.store.notices import NoticeStore

OPS, NEWS, TEAM = RoomID("!ops:x"), RoomID("!news:x"), RoomID("!team:x")
APP = "blog.example.org"


@dataclass
class Posted:
    rooms: list[RoomID] = field(default_factory=list)

    async def post(self, room_id: RoomID, reply: Reply, *, key: str,
                   thread_root: EventID | None = None) -> EventID:
        self.rooms.append(room_id)
        return EventID(f"$n{len(self.rooms)}")


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Notifier, NoticeStore, Posted,
                                                       NotificationTargets]]:
    rooms = RoomDirectory({
        OPS: RoomConfig(servers=["prod"], mute_rooms=[NEWS]),  # a command room
        NEWS: RoomConfig(servers=["prod"], notifications=True),
        TEAM: RoomConfig(servers=["prod"], notifications=True),  # another team's room
    })
    async with Database(tmp_path / "bot.db") as db:
        notices, posted, targets = NoticeStore(db), Posted(), NotificationTargets(rooms)
        yield Notifier(targets, posted, notices), notices, posted, targets


async def test_a_mute_reaches_its_room_and_the_rooms_it_answers_for_only(
    setup: tuple[Notifier, NoticeStore, Posted, NotificationTargets],
) -> None:
    notifier, notices, posted, targets = setup
    assert targets.silenced_from(OPS) == (False, [NEWS])
    assert targets.silenced_from(NEWS) == (True, [])
    assert targets.silenced_by(NEWS) == [NEWS, OPS]
    assert targets.silenced_by(TEAM) == [TEAM]

    assert await notifier.announce("prod", APP, Reply.of("upgraded"), key="k1") == 2
    assert posted.rooms == [NEWS, TEAM]

    await notices.mute(OPS, APP, 3600, "@alice:x")  # from the command room: news is silenced
    posted.rooms.clear()
    assert await notifier.announce("prod", APP, Reply.of("upgraded"), key="k2") == 1
    assert posted.rooms == [TEAM]

    await notices.unmute(OPS, APP)
    await notices.mute(TEAM, APP, 3600, "@tom:x")  # the other team mutes it for itself only
    posted.rooms.clear()
    assert await notifier.announce("prod", APP, Reply.of("upgraded"), key="k3") == 1
    assert posted.rooms == [NEWS]
    # Other apps and server-wide alerts are not affected.
    posted.rooms.clear()
    assert await notifier.announce("prod", "wiki.example.org", Reply.of("x"), key="k4") == 2
    assert await notifier.announce("prod", None, Reply.of("node down"), key="k5") == 2
