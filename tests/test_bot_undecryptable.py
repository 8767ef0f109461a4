"""A command the bot cannot decrypt is never met with silence: the sender is told once (per
sender and room, until the bot can read them again) and the bot asks its own devices for the
key, as Element does. Real Synapse, real bot; the undecryptable command is a well-formed
megolm event whose room key was never shared with the bot, or a command from a matrix-js-sdk
member whose client excludes the bot's unsigned device."""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from urllib.parse import quote

import nio
import pytest
import yaml

from coopbot.matrix.undecryptable import SENTENCE
from tests.harness.bot import RunningBot, StartBot, answer_to, ask_bot, coop_room
from tests.harness.jsmember import MakeJsMember
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


async def test_member_excluding_an_unsigned_bot_is_told_in_a_sentence_it_can_read(
    make_js_member: MakeJsMember, start_bot: StartBot
) -> None:
    """The issue's original silence: a client excluding insecure devices withholds its room key
    from a bot whose device is not signed (here: cross-signing turned off). The bot cannot
    read the command, and says so in a message the member's client does read."""
    dora = await make_js_member("dora")
    room = await dora.create_room(invite=[], encrypted=True)
    bot = await start_bot(rooms={room: {}})
    bot.rewrite_config(matrix={**_matrix_config(bot), "cross_signing": False})
    await bot.stop()
    (bot.config_path.parent / "state" / "matrix" / "session.json").unlink()
    await bot.start()  # a new device, never signed
    await dora.invite(room, bot.user_id)
    await dora.wait_joined(room, bot.user_id)
    assert bot.bot is not None
    device = str(bot.bot.gateway.client.device_id)
    assert not (await dora.device_status(bot.user_id, device))["signed_by_owner"]

    command = await dora.send(room, "!ping")
    reply = await dora.reply_to(room, bot.user_id, command)
    assert reply["content"]["body"] == SENTENCE
    assert not reply["decryption_failure"]
    second = await dora.send(room, "!ping")
    await asyncio.sleep(3)
    later = [e for e in await dora.call("events", room=room)
             if e["sender"] == bot.user_id and e["content"].get("m.relates_to", {})
             .get("m.in_reply_to", {}).get("event_id") == second]
    assert later == []


def _matrix_config(bot: RunningBot) -> dict[str, object]:
    matrix: dict[str, object] = yaml.safe_load(bot.config_path.read_text())["matrix"]
    return matrix
