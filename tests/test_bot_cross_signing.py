"""Encrypted rooms with a member whose client is not nio: matrix-js-sdk's Rust crypto (Element's
stack) in "exclude insecure devices" mode. Its room keys reach only devices their owner has
cross-signed, so these tests pass only if the bot's device is cross-signed."""

from __future__ import annotations

import pytest

from tests.harness.bot import StartBot
from tests.harness.jsmember import MakeJsMember

pytestmark = pytest.mark.real


async def test_member_excluding_insecure_devices_gets_answers_before_and_after_restart(
    make_js_member: MakeJsMember, start_bot: StartBot
) -> None:
    dora = await make_js_member("dora")
    room = await dora.create_room(invite=[], encrypted=True)
    bot = await start_bot(rooms={room: {}})
    await dora.invite(room, bot.user_id)
    await dora.wait_joined(room, bot.user_id)
    assert bot.bot is not None
    device = str(bot.bot.gateway.client.device_id)

    status = await dora.device_status(bot.user_id, device)
    assert status["signed_by_owner"], status

    answer = await dora.ask(room, bot.user_id, "!ping")
    assert answer.startswith("pong: your message reached me")

    await bot.restart()
    assert str(bot.bot.gateway.client.device_id) == device
    answer = await dora.ask(room, bot.user_id, "!ping")
    assert answer.startswith("pong: your message reached me")
    assert (await dora.device_status(bot.user_id, device))["signed_by_owner"]
