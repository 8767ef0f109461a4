"""A command the bot cannot decrypt is never met with silence: the sender is told once (per
sender and room, until the bot can read them again) and the bot asks its own devices for the
key, as Element does. Real Synapse, real bot; the undecryptable command is a well-formed
megolm event whose room key was never shared with the bot."""

from __future__ import annotations

import base64
import secrets
import uuid
from urllib.parse import quote

import nio
import pytest

from coopbot.matrix.undecryptable import SENTENCE
from tests.harness.bot import StartBot, answer_to, ask_bot, coop_room
from tests.harness.synapse import MakeMember, Member

pytestmark = pytest.mark.real


def _b64(size: int) -> str:
    return base64.b64encode(secrets.token_bytes(size)).decode().rstrip("=")


async def send_unreadable(member: Member, room: str, session_id: str) -> str:
    """An m.room.encrypted event in a megolm session the bot never got the key of."""
    content = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "sender_key": member.client.olm.account.identity_keys["curve25519"],
        "device_id": member.client.device_id,
        "session_id": session_id,
        "ciphertext": _b64(120),
    }
    path = (f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.encrypted/"
            f"{uuid.uuid4().hex}")
    answer = await member.api("PUT", path, content)
    return str(answer["event_id"])


async def test_undecryptable_command_is_answered_once_and_its_key_requested(
    make_member: MakeMember, start_bot: StartBot
) -> None:
    alice, _bob, carol, room = await coop_room(make_member, encrypted=True)
    bot = await start_bot(rooms={room: {}})
    await alice.invite(room, bot.user_id)
    await alice.wait_joined(room, bot.user_id)
    await carol.wait_joined(room, bot.user_id)

    # Another device of the bot's own account, to see the key requests the bot sends.
    bot_password = (bot.config_path.parent / "password").read_text()
    twin = await make_member(bot.user_id.split(":")[0][1:], password=bot_password)

    def requests() -> list[nio.RoomKeyRequest]:
        return [e for e in twin.to_device if isinstance(e, nio.RoomKeyRequest)]

    first = await send_unreadable(carol, room, "session-one")
    told = await answer_to(carol, room, bot.user_id, first)
    assert told == SENTENCE
    await twin.wait_until(lambda: any(r.session_id == "session-one" for r in requests()),
                          what="the bot's m.room_key_request for session-one")
    request = next(r for r in requests() if r.session_id == "session-one")
    assert request.room_id == room and request.requesting_device_id != twin.client.device_id

    # Once per sender and room: a second unreadable command gets no second sentence...
    second = await send_unreadable(carol, room, "session-two")
    await carol.assert_no_message(room, bot.user_id, within=3.0, after_event_id=second)
    # ...but another sender is told, and a readable command is answered as usual.
    other = await send_unreadable(alice, room, "session-three")
    assert await answer_to(alice, room, bot.user_id, other) == SENTENCE
    assert (await ask_bot(carol, room, bot.user_id, "!ping")).startswith("pong")

    # The bot read carol again, so her next unreadable command is told again (after a
    # restart too: what was told is stored).
    await bot.restart()
    third = await send_unreadable(carol, room, "session-four")
    assert await answer_to(carol, room, bot.user_id, third) == SENTENCE
    fourth = await send_unreadable(carol, room, "session-five")
    await carol.assert_no_message(room, bot.user_id, within=3.0, after_event_id=fourth)
