"""One contract for the room side, run against the in-memory FakeRoom (tests/fakes.py) and
against the real RoomSender on a nio client logged in to the session Synapse: the same test
body checks what a member of the room reads. Unit tests that use the fake (the pipeline's)
thus rely only on what the real adapter does too."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pytest

from coopbot.ids import EventID, RoomID
from coopbot.matrix.sender import RoomSender
from coopbot.messages import ReplyTarget
from coopbot.ports import Responder, RoomPoster
from coopbot.replies import Attachment, Reply
from tests.fakes import FakeRoom, Sent
from tests.harness.synapse import MakeMember, Member


class RoomSide(Responder, RoomPoster, Protocol):
    pass


class Side(Protocol):
    sender: RoomSide
    room_id: RoomID

    async def command(self, body: str) -> EventID:
        """A member's command in the room: what the bot answers."""
        ...

    async def read(self, until: Callable[[list[Sent]], bool], what: str) -> list[Sent]:
        """The bot's messages as a member reads them (edits applied), once `until` holds."""
        ...


FAKE_ROOM = RoomID("!contract:example.org")


@dataclass
class FakeSide:
    sender: FakeRoom
    room_id: RoomID = FAKE_ROOM
    commands: int = 0

    async def command(self, body: str) -> EventID:
        self.commands += 1
        return EventID(f"$command{self.commands}")

    async def read(self, until: Callable[[list[Sent]], bool], what: str) -> list[Sent]:
        seen = list(self.sender.sent)
        assert until(seen), f"{what}: the fake sent {seen}"
        return seen


@dataclass
class MatrixSide:
    sender: RoomSender
    room_id: RoomID
    bot: Member
    reader: Member

    async def command(self, body: str) -> EventID:
        return EventID(await self.reader.send(self.room_id, body))

    async def read(self, until: Callable[[list[Sent]], bool], what: str) -> list[Sent]:
        def ready() -> list[Sent] | None:
            sent = self._sent()
            return sent if until(sent) else None

        seen: list[Sent] = await self.reader.wait_until(ready, what=what)
        return seen

    def _sent(self) -> list[Sent]:
        """The bot's m.room.message events in timeline order, read the way a client shows
        them: threads and replies from m.relates_to, m.replace edits applied."""
        sent: dict[str, Sent] = {}
        for event in self.reader.timeline(self.room_id):
            source: dict[str, Any] = getattr(event, "source", {})
            if source.get("type") != "m.room.message" or source.get("sender") != self.bot.user_id:
                continue
            content = source.get("content", {})
            relates = content.get("m.relates_to", {})
            if relates.get("rel_type") == "m.replace":
                original = sent.get(relates.get("event_id", ""))
                if original is not None:
                    original.text = content["m.new_content"]["body"]
                    original.edits.append(original.text)
                continue
            sent[source["event_id"]] = Sent(
                event_id=EventID(source["event_id"]), room_id=self.room_id,
                text=content.get("body", ""),
                thread_root=(relates.get("event_id") if relates.get("rel_type") == "m.thread"
                             else None),
                reply_to=relates.get("m.in_reply_to", {}).get("event_id"),
                filename=content.get("filename") if content.get("msgtype") == "m.file" else None,
            )
        return list(sent.values())


@pytest.fixture(params=["fake", "synapse"])
def make_member_if_real(request: pytest.FixtureRequest) -> MakeMember | None:
    """The session's member factory for the real run (only that run starts Synapse)."""
    if request.param == "fake":
        return None
    factory: MakeMember = request.getfixturevalue("make_member")
    return factory


@pytest.fixture
async def side(make_member_if_real: MakeMember | None) -> AsyncIterator[Side]:
    if make_member_if_real is None:
        yield FakeSide(FakeRoom())
        return
    tag = uuid.uuid4().hex[:6]
    bot = await make_member_if_real(f"contract-bot-{tag}")
    reader = await make_member_if_real(f"contract-reader-{tag}")
    room = await bot.create_room(invite=[reader.user_id])
    await reader.join(room)
    await bot.wait_joined(room, reader.user_id)
    yield MatrixSide(RoomSender(bot.client), RoomID(room), bot, reader)


def answers_to(command: EventID) -> Callable[[Sent], bool]:
    return lambda m: m.reply_to == command and m.filename is None


async def test_a_reply_lands_in_the_commands_thread_replying_to_it(side: Side) -> None:
    command = await side.command("!ping")
    event_id = await side.sender.reply(ReplyTarget(side.room_id, command), Reply.of("pong"),
                                       key=f"{command}/answer")
    (answer,) = [m for m in await side.read(lambda s: any(map(answers_to(command), s)),
                                            "the answer") if answers_to(command)(m)]
    assert (answer.event_id, answer.text) == (event_id, "pong")
    assert answer.thread_root == command and answer.reply_to == command
    # A command already in a thread is answered in that thread.
    root = await side.command("!ping")
    follow_up = await side.command("!ping again")
    await side.sender.reply(ReplyTarget(side.room_id, follow_up, root), Reply.of("pong 2"),
                            key=f"{follow_up}/answer")
    (second,) = [m for m in await side.read(lambda s: any(map(answers_to(follow_up), s)),
                                            "the second answer") if answers_to(follow_up)(m)]
    assert (second.text, second.thread_root, second.reply_to) == ("pong 2", root, follow_up)
    await side.sender.typing(side.room_id, True)  # accepted (typing is not in the timeline)
    await side.sender.typing(side.room_id, False)


async def test_an_edit_replaces_the_body(side: Side) -> None:
    command = await side.command("!deploy blog")
    status = await side.sender.reply(ReplyTarget(side.room_id, command),
                                     Reply.of("⏳ deploying..."), key=f"{command}/status")
    await side.sender.edit(side.room_id, status, Reply.of("⏳ converging, 1/2 services"))
    await side.sender.edit(side.room_id, status, Reply.of("✅ done after 3 s"))
    seen = await side.read(
        lambda s: any(m.event_id == status and m.text == "✅ done after 3 s" for m in s),
        "the status message's last edit")
    (message,) = [m for m in seen if m.event_id == status]
    assert message.edits == ["⏳ converging, 1/2 services", "✅ done after 3 s"]
    assert message.thread_root == command, "an edit keeps the message where it was"
    assert len(seen) == 1, "edits are not new messages"


async def test_the_same_key_sent_twice_posts_once(side: Side) -> None:
    command = await side.command("!ping")
    target = ReplyTarget(side.room_id, command)
    first = await side.sender.reply(target, Reply.of("pong"), key=f"{command}/answer")
    again = await side.sender.reply(target, Reply.of("pong"), key=f"{command}/answer")
    assert again == first
    posted = await side.sender.post(side.room_id, Reply.of("new version"), key="announce/1")
    assert await side.sender.post(side.room_id, Reply.of("new version"),
                                  key="announce/1") == posted
    marker = await side.sender.post(side.room_id, Reply.of("marker"), key=f"marker/{command}",
                                    thread_root=command)
    seen = await side.read(lambda s: any(m.event_id == marker for m in s), "the marker")
    assert [m.text for m in seen] == ["pong", "new version", "marker"]
    (marked,) = [m for m in seen if m.event_id == marker]
    assert (marked.thread_root, marked.reply_to) == (command, command)
    (announcement,) = [m for m in seen if m.event_id == posted]
    assert (announcement.thread_root, announcement.reply_to) == (None, None)


async def test_a_reply_with_an_attachment_posts_the_file_in_the_thread_after_it(
    side: Side,
) -> None:
    command = await side.command("!logs blog")
    logs = Attachment("blog-app.log", b"line 1\nline 2\n")
    answer = await side.sender.reply(
        ReplyTarget(side.room_id, command),
        Reply.of("The last 2 lines of `blog_app` are attached.").with_attachment(logs),
        key=f"{command}/answer")
    seen = await side.read(lambda s: any(m.filename for m in s), "the attached file")
    (text, file) = seen
    assert text.event_id == answer, "the answer comes first"
    assert text.text == "The last 2 lines of `blog_app` are attached."
    assert (text.thread_root, text.reply_to, text.filename) == (command, command, None)
    assert (file.filename, file.thread_root, file.reply_to) == ("blog-app.log", command, answer)
