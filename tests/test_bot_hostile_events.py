"""Malformed events through a real homeserver: the bot drops them, keeps answering, and comes
back after a restart with those events still in its sync history.

Homeservers store whatever content a client sends; these events are sent raw over the
client-server API (no client library in between) by a member of a configured room and by a
member of a room the bot joined but has no config for.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from typing import Any
from urllib.parse import quote

import pytest

from coopbot.matrix.gateway import SYNC_TOKEN_KEY
from tests.harness.bot import StartBot, ask_bot, coop_room
from tests.harness.synapse import MakeMember, Member

pytestmark = pytest.mark.real

# Synapse refuses some relations to events it does not know: such ids become a real event's.
TARGET = "$target"

RELATIONS: list[Any] = [
    "m.thread", ["m.thread", TARGET], 42, None, True, {"rel_type": 5},
    {"rel_type": "m.thread", "event_id": 5}, {"rel_type": "m.thread", "event_id": [TARGET]},
    {"rel_type": "m.thread"}, {"m.in_reply_to": TARGET}, {"m.in_reply_to": {"event_id": {}}},
    {"rel_type": "m.reference", "event_id": TARGET}, {"rel_type": "com.example.unknown"},
    {"rel_type": "m.replace", "event_id": {"id": 1}},
]
MESSAGE_CONTENTS: list[dict[str, Any]] = [
    *({"msgtype": "m.text", "body": "!ping", "m.relates_to": r} for r in RELATIONS),
    {"msgtype": "m.text", "body": 5}, {"msgtype": "m.text", "body": ["!ping"]},
    {"msgtype": "m.text"}, {"msgtype": 7, "body": "!ping"}, {"body": "!ping"},
    {"msgtype": "m.text", "body": "!ping", "formatted_body": {"html": "<b>"}},
    {"msgtype": "m.text", "body": "!ping", "m.new_content": "!deploy everything"},
    {"msgtype": "m.text", "body": "!ping\u202e\u200b", "format": 3},
]
REACTION_CONTENTS: list[dict[str, Any]] = [
    {"m.relates_to": "👍"}, {"m.relates_to": ["👍"]}, {"m.relates_to": 1},
    {"m.relates_to": {"rel_type": "m.annotation", "event_id": 5, "key": "👍"}},
    {"m.relates_to": {"rel_type": "m.annotation", "event_id": TARGET, "key": ["👍"]}},
    {"m.relates_to": {"rel_type": "m.annotation", "key": "👍"}}, {},
]


def aimed(value: Any, target: str) -> Any:
    if value == TARGET:
        return target
    if isinstance(value, dict):
        return {key: aimed(item, target) for key, item in value.items()}
    if isinstance(value, list):
        return [aimed(item, target) for item in value]
    return value


async def send_raw(member: Member, room: str, event_type: str, content: Any) -> str | None:
    """Send any content; None when the homeserver refuses it (Synapse checks a few fields,
    e.g. that `body` is a string): only what a homeserver accepts can reach the bot."""
    path = (f"/_matrix/client/v3/rooms/{quote(room)}/send/{quote(event_type)}/"
            f"{uuid.uuid4().hex}")
    response = await member.client.send(
        "PUT", path, json.dumps(content),
        headers={"Authorization": f"Bearer {member.client.access_token}"})
    answer = await response.json()
    if response.status == 400:
        return None
    assert response.status == 200, answer
    return str(answer["event_id"])


async def send_state(member: Member, room: str, event_type: str, content: Any) -> None:
    path = f"/_matrix/client/v3/rooms/{quote(room)}/state/{quote(event_type)}/"
    await member.api("PUT", path, content)


async def send_every_malformed_event(member: Member, room: str) -> int:
    target = await member.send(room, "hello")
    sent = 0
    for content in MESSAGE_CONTENTS:
        sent += await send_raw(member, room, "m.room.message", aimed(content, target)) is not None
    for content in REACTION_CONTENTS:
        sent += await send_raw(member, room, "m.reaction", aimed(content, target)) is not None
    # A well-formed reaction on a message (not a card) and its redaction.
    reaction = await send_raw(member, room, "m.reaction", {"m.relates_to": {
        "rel_type": "m.annotation", "event_id": target, "key": "👍"}})
    assert reaction is not None
    await member.redact(room, reaction)
    return sent


async def test_malformed_events_from_anyone_cannot_stop_the_bot(
    make_member: MakeMember, start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    alice, _bob, carol, room = await coop_room(make_member)
    # A second room the bot joins (invited by a bot admin) but has no config for.
    dave = await make_member(f"dave-{uuid.uuid4().hex[:6]}")
    other = await alice.create_room(invite=[dave.user_id])
    await dave.join(other)
    bot = await start_bot(rooms={room: {}}, admins=[alice.user_id])
    for where in (room, other):
        await alice.invite(where, bot.user_id)
        await alice.wait_joined(where, bot.user_id)
    first = await ask_bot(carol, room, bot.user_id, "!ping")
    assert first.startswith("pong")

    accepted = await send_every_malformed_event(carol, room)
    assert accepted >= 20, f"the homeserver took only {accepted} malformed events"
    await send_every_malformed_event(dave, other)
    # Tombstones with a replacement of the wrong type, from the room's creator.
    await send_state(alice, room, "m.room.tombstone", {"body": "moved", "replacement_room": 5})
    await send_state(alice, other, "m.room.tombstone", {"replacement_room": ["!x:localhost"]})

    # Alive, answering, and none of the malformed events ran a command.
    after = await ask_bot(carol, room, bot.user_id, "!ping")
    assert after.startswith("pong")
    assert any("dropped event" in r.getMessage() for r in caplog.records)

    # Restarted on the same state: the malformed events are in the history it syncs from.
    await bot.restart()
    assert bot.bot is not None and bot.bot.rooms.get(room) is not None
    again = await ask_bot(carol, room, bot.user_id, "!ping")
    assert again.startswith("pong")
    again_admin = await ask_bot(alice, other, bot.user_id, "!ping")
    assert again_admin.startswith("pong")

    crashed = [r for r in caplog.records if r.exc_info and r.name.startswith("coopbot")]
    assert not crashed, [r.getMessage() for r in crashed]
    answers = [m.source["content"]["body"] for m in carol.messages_from(room, bot.user_id)]
    assert not any("internal error" in str(body) for body in answers)
    # Only the three well-formed !ping commands (and no malformed one) were answered.
    assert sum(str(body).startswith("pong") for body in answers) == 3, answers


async def test_a_stored_sync_token_the_homeserver_refuses_does_not_deafen_the_bot(
    make_member: MakeMember, start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    alice, _bob, carol, room = await coop_room(make_member)
    bot = await start_bot(rooms={room: {}})
    await alice.invite(room, bot.user_id)
    await alice.wait_joined(room, bot.user_id)
    assert (await ask_bot(carol, room, bot.user_id, "!ping")).startswith("pong")
    await bot.stop()
    database = bot.config_path.parent / "state" / "coopbot.db"
    with sqlite3.connect(database) as db:
        db.execute("UPDATE kv SET value = ? WHERE key = ?", ("s9_not-a-token", SYNC_TOKEN_KEY))
    await bot.start()
    assert (await ask_bot(carol, room, bot.user_id, "!ping")).startswith("pong")


async def test_malformed_content_inside_encrypted_events_is_dropped_too(
    make_member: MakeMember, start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    """In an encrypted room the homeserver sees only ciphertext: the decrypted content is
    whatever the sender's client put in, checked by nobody but the bot."""
    caplog.set_level(logging.INFO)
    alice, _bob, carol, room = await coop_room(make_member, encrypted=True)
    bot = await start_bot(rooms={room: {}})
    await alice.invite(room, bot.user_id)
    await alice.wait_joined(room, bot.user_id)
    assert (await ask_bot(carol, room, bot.user_id, "!ping")).startswith("pong")
    target = await carol.send(room, "hello")
    for content in MESSAGE_CONTENTS:
        await carol.send_event(room, "m.room.message", aimed(content, target))
    assert (await ask_bot(carol, room, bot.user_id, "!ping")).startswith("pong")
    await bot.restart()
    assert (await ask_bot(carol, room, bot.user_id, "!ping")).startswith("pong")
    crashed = [r for r in caplog.records if r.exc_info and r.name.startswith("coopbot")]
    assert not crashed, [r.getMessage() for r in crashed]
    assert any("dropped event" in r.getMessage() for r in caplog.records)
    answers = [m.source["content"]["body"] for m in carol.messages_from(room, bot.user_id)]
    assert sum(str(body).startswith("pong") for body in answers) == 3, answers
