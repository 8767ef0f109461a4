"""Progress: one status message per command, edited in place, closed after the answer; the
throttle keeps the latest line instead of dropping it."""

from __future__ import annotations

import asyncio

from coopbot.ids import EventID, RoomID
from coopbot.messages import ReplyTarget
from coopbot.replies import Reply
from coopbot.status_message import StatusMessage, Throttle

TARGET = ReplyTarget(RoomID("!ops:x"), EventID("$cmd"))


class Room:
    def __init__(self) -> None:
        self.posted: list[str] = []
        self.edits: list[str] = []

    async def reply(self, to: ReplyTarget, reply: Reply, *, key: str) -> EventID:
        self.posted.append(reply.text)
        return EventID("$status")

    async def edit(self, room_id: RoomID, event_id: EventID, reply: Reply) -> None:
        self.edits.append(reply.text)


async def test_posted_once_edited_then_closed_and_deaf_after_closing() -> None:
    room = Room()
    status = StatusMessage(room, TARGET, "k")
    await status(Reply.of("⏳ one"))
    await status(Reply.of("⏳ two"))
    await status.close(ok=True)
    await status(Reply.of("⏳ late"))
    assert room.posted == ["⏳ one"]
    assert room.edits[0] == "⏳ two" and room.edits[1].startswith("✅ done after ")
    assert len(room.edits) == 2, "a late update reopened the closed status"


async def test_a_status_never_posted_needs_no_closing() -> None:
    room = Room()
    await StatusMessage(room, TARGET, "k").close(ok=False)
    assert room.posted == [] and room.edits == []


async def test_the_throttle_shows_the_latest_line_when_its_interval_is_over() -> None:
    shown: list[str] = []

    async def sink(update: Reply) -> None:
        shown.append(update.text)

    throttle = Throttle(sink, interval=0.2)
    await throttle.say("reading")
    await throttle.say("deploying")  # too soon: kept, replaced by the next
    await throttle.say("converging 0/1")
    assert shown == ["⏳ reading"]
    await asyncio.sleep(0.35)
    assert shown == ["⏳ reading", "⏳ converging 0/1"]


async def test_the_throttle_ticks_the_elapsed_time_while_nothing_changes() -> None:
    shown: list[str] = []

    async def sink(update: Reply) -> None:
        shown.append(update.text)

    async with Throttle(sink, interval=0.05, tick=0.4) as throttle:
        await throttle.say("converging")
        await asyncio.sleep(1.5)
    ticks = shown[1:]
    assert shown[0] == "⏳ converging"
    assert len(ticks) >= 2, shown
    assert all(t.startswith("⏳ converging · ") and t.endswith(" s") for t in ticks), ticks
    # Once the operation is over, nothing ticks any more and a waiting line is dropped.
    before = list(shown)
    await throttle.say("late")
    await asyncio.sleep(0.6)
    assert shown == before


async def test_leaving_the_throttle_cancels_the_line_waiting_for_its_interval() -> None:
    shown: list[str] = []

    async def sink(update: Reply) -> None:
        shown.append(update.text)

    async with Throttle(sink, interval=0.3, tick=10) as throttle:
        await throttle.say("one")
        await throttle.say("two")  # waits for the interval ...
    await asyncio.sleep(0.5)  # ... which ends after the operation did
    assert shown == ["⏳ one"]
    assert all(task.done() for task in asyncio.all_tasks() if task is not asyncio.current_task()
               and "_show_after" in repr(task.get_coro()))


async def test_work_inside_an_operation_relays_its_lines_through_the_operations_throttle() -> None:
    shown: list[str] = []

    async def sink(update: Reply) -> None:
        shown.append(update.text)

    async with Throttle(sink, interval=0.05, tick=0.3) as throttle:
        await throttle.say("upgrade: reading the recipe")
        await asyncio.sleep(0.1)
        await throttle.relay(Reply.of("⏳ backing up `data`"))  # a backup's own throttled line
        await asyncio.sleep(0.5)
    assert shown[1] == "⏳ backing up `data`"
    assert all("backing up" in line for line in shown[1:]), "the ticker shows the newest line"
