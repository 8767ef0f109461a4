"""Encrypted rooms with a member whose client is not nio: matrix-js-sdk's Rust crypto (Element's
stack) in "exclude insecure devices" mode. Its room keys reach only devices their owner has
cross-signed, so these tests pass only if the bot's device is cross-signed."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import stat
import sys
import uuid

import pytest
import yaml

from coopbot.matrix.cross_signing import NioKeysApi
from tests.harness.bot import RunningBot, StartBot
from tests.harness.jsmember import MakeJsMember
from tests.harness.synapse import MakeMember, Member

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
    assert f"You are `{dora.user_id}`" in await dora.ask(room, bot.user_id, "!whoami")
    assert "!deploy" in await dora.ask(room, bot.user_id, "!help deploy")

    await bot.restart()
    assert str(bot.bot.gateway.client.device_id) == device
    answer = await dora.ask(room, bot.user_id, "!ping")
    assert answer.startswith("pong: your message reached me")
    assert (await dora.device_status(bot.user_id, device))["signed_by_owner"]


async def _published_master(member: Member, user_id: str) -> str:
    """The account's master key as the homeserver hands it to anyone who asks."""
    answer = await member.api("POST", "/_matrix/client/v3/keys/query",
                              {"device_keys": {user_id: []}})
    keys = answer["master_keys"][user_id]["keys"]
    assert len(keys) == 1
    return str(next(iter(keys.values())))


async def _coopbot(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "coopbot.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, output.decode()


def _device(bot: RunningBot) -> str:
    assert bot.bot is not None
    return str(bot.bot.gateway.client.device_id)


async def test_identity_is_kept_by_new_devices_and_replaced_only_by_the_reset_command(
    make_js_member: MakeJsMember, make_member: MakeMember, start_bot: StartBot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dora = await make_js_member("dora")
    eve = await make_member(f"eve-{uuid.uuid4().hex[:6]}")
    room = await dora.create_room(invite=[], encrypted=True)
    bot = await start_bot(rooms={room: {}})
    await dora.invite(room, bot.user_id)
    await dora.wait_joined(room, bot.user_id)
    store = bot.config_path.parent / "state" / "matrix"
    keys_file = store / "cross_signing.json"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    master = await _published_master(eve, bot.user_id)
    first = _device(bot)

    # The login is lost but the keys are kept: the new device signs itself, same identity.
    await bot.stop()
    (store / "session.json").unlink()
    await bot.start()
    second = _device(bot)
    assert second != first
    assert await _published_master(eve, bot.user_id) == master
    assert (await dora.device_status(bot.user_id, second))["signed_by_owner"]
    assert (await dora.ask(room, bot.user_id, "!ping")).startswith("pong")

    # The keys are lost too: the account's identity is never silently replaced; the device
    # stays unsigned and the log says what to do.
    await bot.stop()
    keys_file.unlink()
    (store / "session.json").unlink()
    with caplog.at_level(logging.ERROR, logger="coopbot.matrix.cross_signing"):
        await bot.start()
    third = _device(bot)
    assert await _published_master(eve, bot.user_id) == master
    assert not keys_file.exists()
    assert not (await dora.device_status(bot.user_id, third))["signed_by_owner"]
    assert "coopbot cross-signing reset" in caplog.text

    code, output = await _coopbot("cross-signing", "status", "-c", str(bot.config_path))
    assert code == 0, output
    assert "does NOT hold its private keys" in output and "NOT signed" in output

    # An explicit reset replaces it (password auth: the account already has an identity).
    code, output = await _coopbot("cross-signing", "reset", "-c", str(bot.config_path))
    assert code == 0, output
    assert "this store holds its private keys; this device is signed" in output
    assert await _published_master(eve, bot.user_id) != master
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert sorted(p.name for p in store.glob("cross_signing*")) == ["cross_signing.json"]
    assert (await dora.device_status(bot.user_id, third))["signed_by_owner"]
    for secret in ("master", "self_signing", "user_signing"):
        assert json.loads(keys_file.read_text())[secret] not in output + caplog.text
    await bot.restart()
    assert (await dora.ask(room, bot.user_id, "!ping")).startswith("pong")


@pytest.mark.parametrize("in_room", [False, True], ids=["to-device", "in-room"])
async def test_member_verifies_the_bot_with_emoji_confirmed_by_a_bot_admin(
    make_js_member: MakeJsMember, start_bot: StartBot, in_room: bool
) -> None:
    dora = await make_js_member("dora")
    room = await dora.create_room(invite=[], encrypted=True)
    bot = await start_bot(rooms={room: {}})
    await dora.invite(room, bot.user_id)
    await dora.wait_joined(room, bot.user_id)
    device = _device(bot)
    before = await dora.device_status(bot.user_id, device)
    assert before["signed_by_owner"] and not before["cross_signing_verified"]

    emoji = await dora.verify_start(bot.user_id, device, room if in_room else None)
    assert len(emoji) == 7
    # The bot admin sees the same emoji at the shell, then confirms.
    code, listed = await _coopbot("verify", "-c", str(bot.config_path))
    assert code == 0, listed
    assert f"{dora.user_id} {dora.device_id}: " in listed
    assert "  ".join(f"{e} {name}" for e, name in emoji) in listed
    code, output = await _coopbot("verify", dora.user_id, dora.device_id,
                                  "-c", str(bot.config_path))
    assert code == 0, output
    outcome = await dora.verify_confirm()
    assert outcome["ok"], outcome

    # The member's client now trusts the bot's identity (it MACed its master key) and, through
    # the bot's self-signing key, its device. (Marked as the client processes the done.)
    for _ in range(50):
        after = await dora.device_status(bot.user_id, device)
        if after["cross_signing_verified"]:
            break
        await asyncio.sleep(0.2)
    assert after["cross_signing_verified"] and after["user_cross_signing_verified"], after
    assert bot.bot is not None
    assert (dora.user_id, dora.device_id) in bot.bot.gateway.verifications.verified
    assert (await dora.ask(room, bot.user_id, "!ping")).startswith("pong")
    code, listed = await _coopbot("verify", "-c", str(bot.config_path))
    assert code == 0 and "no verification is waiting" in listed


async def test_auto_confirmed_verification_needs_no_admin(
    make_js_member: MakeJsMember, start_bot: StartBot
) -> None:
    dora = await make_js_member("dora")
    room = await dora.create_room(invite=[], encrypted=True)
    bot = await start_bot(rooms={room: {}})
    bot.rewrite_config(matrix={**_matrix_config(bot), "auto_confirm_verification": True})
    await bot.restart()
    await dora.invite(room, bot.user_id)
    await dora.wait_joined(room, bot.user_id)
    assert len(await dora.verify_start(bot.user_id, _device(bot))) == 7
    outcome = await dora.verify_confirm()
    assert outcome["ok"], outcome
    code, listed = await _coopbot("verify", "-c", str(bot.config_path))
    assert code == 0 and "no verification is waiting" in listed


async def test_emoji_that_do_not_match_end_the_verification(
    make_js_member: MakeJsMember, start_bot: StartBot
) -> None:
    dora = await make_js_member("dora")
    room = await dora.create_room(invite=[], encrypted=True)
    bot = await start_bot(rooms={room: {}})
    await dora.invite(room, bot.user_id)
    await dora.wait_joined(room, bot.user_id)
    await dora.verify_start(bot.user_id, _device(bot))
    code, listed = await _coopbot("verify", "-c", str(bot.config_path))
    assert dora.user_id in listed
    outcome = await dora.verify_mismatch()
    assert not outcome["ok"]
    for _ in range(50):
        code, listed = await _coopbot("verify", "-c", str(bot.config_path))
        if "no verification is waiting" in listed:
            break
    assert "no verification is waiting" in listed
    code, output = await _coopbot("verify", dora.user_id, dora.device_id,
                                  "-c", str(bot.config_path))
    assert code == 1 and "no verification with" in output
    status = await dora.device_status(bot.user_id, _device(bot))
    assert status["signed_by_owner"] and not status["cross_signing_verified"]


def _matrix_config(bot: RunningBot) -> dict[str, object]:
    matrix: dict[str, object] = yaml.safe_load(bot.config_path.read_text())["matrix"]
    return matrix


async def test_a_new_store_with_the_recovery_key_signs_itself_with_the_same_identity(
    make_js_member: MakeJsMember, make_member: MakeMember, start_bot: StartBot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dora = await make_js_member("dora")
    eve = await make_member(f"eve-{uuid.uuid4().hex[:6]}")
    room = await dora.create_room(invite=[], encrypted=True)
    bot = await start_bot(rooms={room: {}})
    # The admin gives the bot a recovery key (from `coopbot cross-signing recovery-key`).
    code, recovery_key = await _coopbot("cross-signing", "recovery-key", "-c",
                                        str(bot.config_path))
    assert code == 0, recovery_key
    (bot.config_path.parent / "recovery-key").write_text(recovery_key)
    bot.rewrite_config(matrix={**_matrix_config(bot), "recovery_key_file": "recovery-key"})
    await bot.restart()
    await dora.invite(room, bot.user_id)
    await dora.wait_joined(room, bot.user_id)
    master = await _published_master(eve, bot.user_id)
    # What the homeserver holds is encrypted: no private key in the clear.
    store = bot.config_path.parent / "state" / "matrix"
    seeds = json.loads((store / "cross_signing.json").read_text())
    assert bot.bot is not None
    status, held = await NioKeysApi(bot.bot.gateway.client).request(
        "GET", f"/_matrix/client/v3/user/{bot.user_id}/account_data/m.cross_signing.master", {})
    assert status == 200 and list(held) == ["encrypted"]
    assert seeds["master"] not in json.dumps(held)

    # The whole store is lost: a new device restores the keys from secret storage.
    await bot.stop()
    shutil.rmtree(store)
    await bot.start()
    device = _device(bot)
    assert await _published_master(eve, bot.user_id) == master
    assert json.loads((store / "cross_signing.json").read_text()) == seeds
    assert stat.S_IMODE((store / "cross_signing.json").stat().st_mode) == 0o600
    assert (await dora.device_status(bot.user_id, device))["signed_by_owner"]
    assert (await dora.ask(room, bot.user_id, "!ping")).startswith("pong")
    private = [seeds[role] for role in ("master", "self_signing", "user_signing")]
    for secret in (recovery_key.strip(), *private):
        assert secret not in caplog.text
