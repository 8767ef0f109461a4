"""The bot core end to end: real Synapse, real bot (in-process), real nio members talking to it."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from nio import RoomMessage

from coopbot.store.audit import Decision
from tests.harness.bot import StartBot, coop_room
from tests.harness.synapse import MakeMember, Member

pytestmark = pytest.mark.real


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


async def ask(member: Member, room: str, bot_id: str, body: str, *, timeout: float = 15.0) -> str:
    """Send a command and return the bot's answer to it (the notice replying to that event)."""
    event_id = await member.send(room, body)

    def answers(event: RoomMessage) -> bool:
        relates = event.source.get("content", {}).get("m.relates_to", {})
        return relates.get("m.in_reply_to", {}).get("event_id") == event_id

    reply = await member.wait_for_message(
        room, sender=bot_id, predicate=answers, timeout=timeout, after_event_id=event_id
    )
    assert reply.source["content"]["msgtype"] == "m.notice"
    return str(reply.source["content"]["body"])


async def invite_bot(alice: Member, room: str, bot_id: str) -> None:
    await alice.invite(room, bot_id)
    await alice.wait_joined(room, bot_id)


@pytest.mark.parametrize("room_version", ["11", "12"])
async def test_help_ping_whoami_and_roles(
    make_member: MakeMember, start_bot: StartBot, room_version: str
) -> None:
    alice, bob, carol, room = await coop_room(make_member, room_version=room_version)
    bot = await start_bot(rooms={room: {}})
    await invite_bot(alice, room, bot.user_id)

    answer = await ask(carol, room, bot.user_id, "!ping")
    assert answer.startswith("pong: your message reached me")

    help_text = await ask(carol, room, bot.user_id, "!help")
    assert "!ping" in help_text and "!whoami" in help_text

    carol_roles = await ask(carol, room, bot.user_id, "!whoami")
    assert "power level 0" in carol_roles
    assert "member: power level 0 >= 0" in carol_roles
    assert "operator" not in carol_roles

    bob_roles = await ask(bob, room, bot.user_id, "!whoami")
    assert "operator: power level 50 >= 50" in bob_roles
    assert "admin" not in bob_roles

    alice_roles = await ask(alice, room, bot.user_id, "!whoami")
    if room_version == "12":
        # v12 creators are not in m.room.power_levels but have unlimited power
        assert "room creator (unlimited power)" in alice_roles
        assert "admin: room creator >= 100" in alice_roles
    else:
        assert "admin: power level 100 >= 100" in alice_roles


async def test_role_is_checked_centrally_and_power_changes_apply(
    make_member: MakeMember, start_bot: StartBot
) -> None:
    alice, _bob, carol, room = await coop_room(make_member)
    # This room raises the member role to power 10, so carol (0) holds no role at all.
    bot = await start_bot(rooms={room: {"roles": {"member": {"power_level": 10}}}})
    await invite_bot(alice, room, bot.user_id)

    denied = await ask(carol, room, bot.user_id, "!ping")
    assert denied == "`ping` needs the member role in this room."

    await alice.set_power_level(room, carol.user_id, 10)
    # The bot sees the power-level change through its sync; the next command is allowed.
    allowed = await ask(carol, room, bot.user_id, "!whoami", timeout=20)
    assert "member: power level 10 >= 10" in allowed

    rows = await bot.audit()
    decisions = [(r.sender, r.command, r.decision) for r in rows]
    assert (carol.user_id, "ping", Decision.DENIED.value) in decisions
    assert (carol.user_id, "whoami", Decision.RAN.value) in decisions


async def test_display_name_spoofing_gives_no_power(
    make_member: MakeMember, start_bot: StartBot
) -> None:
    alice, _bob, carol, room = await coop_room(make_member)
    bot = await start_bot(rooms={room: {}})
    await invite_bot(alice, room, bot.user_id)
    await carol.set_displayname(alice.user_id)  # carol pretends to be alice
    answer = await ask(carol, room, bot.user_id, "!whoami")
    assert f"You are `{carol.user_id}`, power level 0" in answer
    assert "admin" not in answer


async def test_wrong_commands_get_usage_and_suggestions(
    make_member: MakeMember, start_bot: StartBot
) -> None:
    alice, _bob, carol, room = await coop_room(make_member)
    bot = await start_bot(rooms={room: {}})
    await invite_bot(alice, room, bot.user_id)
    assert await ask(carol, room, bot.user_id, "!pnig") == (
        "Unknown command `pnig`. Did you mean `ping`? Try `!help`."
    )
    assert await ask(carol, room, bot.user_id, "!ping now") == (
        "`ping` got unexpected words: `now`\nUsage: !ping"
    )
    mention = await ask(carol, room, bot.user_id, f"{bot.user_id.split(':')[0][1:]}: ping")
    assert mention.startswith("pong")


async def test_edits_notices_and_reply_fallbacks(
    make_member: MakeMember, start_bot: StartBot
) -> None:
    alice, _bob, carol, room = await coop_room(make_member)
    bot = await start_bot(rooms={room: {}})
    await invite_bot(alice, room, bot.user_id)

    first = await carol.send(room, "!ping")
    await carol.wait_for_message(room, sender=bot.user_id, after_event_id=first)
    edit = await carol.edit(room, first, "!whoami")
    await carol.send(room, "!whoami", msgtype="m.notice")
    await carol.assert_no_message(room, bot.user_id, within=3.0, after_event_id=edit)

    # A reply quoting a command only runs what was typed below the quote.
    answer_event = await carol.send(room, "!whoami", reply_to=first)
    reply = await carol.wait_for_message(room, sender=bot.user_id, after_event_id=answer_event)
    assert "You are" in reply.source["content"]["body"]


async def test_answers_are_threaded_html_notices(
    make_member: MakeMember, start_bot: StartBot
) -> None:
    alice, _bob, carol, room = await coop_room(make_member)
    bot = await start_bot(rooms={room: {}})
    await invite_bot(alice, room, bot.user_id)
    command = await carol.send(room, "!help")
    reply = await carol.wait_for_message(room, sender=bot.user_id, after_event_id=command)
    content = reply.source["content"]
    assert content["format"] == "org.matrix.custom.html"
    assert "<code>!ping</code>" in content["formatted_body"]
    assert content["m.relates_to"]["rel_type"] == "m.thread"
    assert content["m.relates_to"]["event_id"] == command

    # A command sent inside that thread is answered in the same thread.
    inner = await carol.send(room, "!ping", thread_root=command)
    inner_reply = await carol.wait_for_message(room, sender=bot.user_id, after_event_id=inner)
    assert inner_reply.source["content"]["m.relates_to"]["event_id"] == command


async def test_restart_does_not_replay_and_offline_commands_expire(
    make_member: MakeMember, start_bot: StartBot
) -> None:
    alice, _bob, carol, room = await coop_room(make_member)
    bot = await start_bot(rooms={room: {}})
    await invite_bot(alice, room, bot.user_id)
    assert (await ask(carol, room, bot.user_id, "!ping")).startswith("pong")
    assert bot.bot is not None
    device_before = bot.bot.gateway.client.device_id

    await bot.stop()
    offline = await carol.send(room, "!ping")
    await asyncio.sleep(1.5)  # longer than offline_grace_seconds
    await bot.start()
    assert bot.bot is not None
    assert bot.bot.gateway.client.device_id == device_before  # same device, no new login

    reply = await carol.wait_for_message(room, sender=bot.user_id, after_event_id=offline)
    body = reply.source["content"]["body"]
    assert "I was offline when you sent `ping`, so I did not run it" in body
    # Nothing else is replayed: exactly one answer after the offline command.
    await asyncio.sleep(2)
    later = [m for m in carol.messages_from(room, bot.user_id)
             if m.server_timestamp >= reply.server_timestamp]
    assert len(later) == 1
    rows = await bot.audit()
    assert any(r.event_id == offline and r.decision == Decision.EXPIRED.value for r in rows)


async def test_commands_beyond_one_sync_timeline_are_all_answered_once(
    make_member: MakeMember, start_bot: StartBot
) -> None:
    """More commands arrive while the bot is down than one sync timeline holds (50): the sync is
    "limited", and the bot must page back for the rest rather than skip them."""
    alice, _bob, carol, room = await coop_room(make_member)
    bot = await start_bot(rooms={room: {}})
    await invite_bot(alice, room, bot.user_id)
    assert (await ask(carol, room, bot.user_id, "!ping")).startswith("pong")

    await bot.stop()
    sent = [await carol.send(room, f"!ping burst {n}") for n in range(120)]
    await bot.start()

    def answered() -> dict[str, int]:
        counts: dict[str, int] = {}
        for message in carol.messages_from(room, bot.user_id):
            relates = message.source.get("content", {}).get("m.relates_to", {})
            target = relates.get("m.in_reply_to", {}).get("event_id")
            if target in sent:
                counts[target] = counts.get(target, 0) + 1
        return counts

    def missing() -> list[int]:
        counts = answered()
        return [n for n, event_id in enumerate(sent) if event_id not in counts]

    try:
        await carol.wait_until(lambda: not missing(), timeout=60, what="every burst answered")
    except AssertionError:
        raise AssertionError(f"commands never answered: {missing()}") from None
    await asyncio.sleep(1)  # time for any duplicate answer to show up
    counts = answered()
    assert set(counts.values()) == {1}, "some commands were answered more than once"


async def test_unconfigured_rooms_answer_only_bot_admins(
    make_member: MakeMember, start_bot: StartBot
) -> None:
    admin = await make_member(unique("root"))
    alice = await make_member(unique("alice"))
    room = await alice.create_room(invite=[admin.user_id])
    await admin.join(room)
    bot = await start_bot(admins=[admin.user_id], invites={"users": [alice.user_id]})
    await invite_bot(alice, room, bot.user_id)

    ignored = await alice.send(room, "!ping")
    await alice.assert_no_message(room, bot.user_id, within=3.0, after_event_id=ignored)
    assert (await ask(admin, room, bot.user_id, "!ping")).startswith("pong")


async def test_invites_from_strangers_are_declined(
    make_member: MakeMember, start_bot: StartBot
) -> None:
    stranger = await make_member(unique("stranger"))
    friend = await make_member(unique("friend"))
    bot = await start_bot(invites={"users": [friend.user_id]})

    refused = await stranger.create_room(invite=[bot.user_id])
    accepted = await friend.create_room(invite=[bot.user_id])
    await friend.wait_joined(accepted, bot.user_id)

    def bot_left(event: object) -> bool:
        source = getattr(event, "source", {})
        return (source.get("type") == "m.room.member" and source.get("state_key") == bot.user_id
                and source.get("content", {}).get("membership") == "leave")

    await stranger.wait_for_event(refused, bot_left, what="the bot declining the invite")


async def test_encrypted_room_round_trip(make_member: MakeMember, start_bot: StartBot) -> None:
    alice, _bob, carol, room = await coop_room(make_member, encrypted=True)
    bot = await start_bot(rooms={room: {}})
    await invite_bot(alice, room, bot.user_id)
    answer = await ask(carol, room, bot.user_id, "!ping", timeout=25)
    assert answer.startswith("pong")
    # And it still works after a restart (same device, crypto store kept).
    await bot.restart()
    answer = await ask(carol, room, bot.user_id, "!whoami", timeout=25)
    assert f"You are `{carol.user_id}`" in answer


async def test_room_upgrade_followed_only_for_admins(
    make_member: MakeMember, start_bot: StartBot
) -> None:
    from urllib.parse import quote

    alice, bob, carol, room = await coop_room(make_member)
    # bob (operator, 50) may send tombstones in this room, but he is not an admin
    levels = await alice.power_levels(room)
    levels.setdefault("events", {})["m.room.tombstone"] = 50
    await alice.api("PUT", f"/_matrix/client/v3/rooms/{quote(room)}/state/m.room.power_levels/",
                    levels)
    bot = await start_bot(rooms={room: {}})
    await invite_bot(alice, room, bot.user_id)

    decoy = await bob.create_room(invite=[bot.user_id])
    await bob.api("PUT", f"/_matrix/client/v3/rooms/{quote(room)}/state/m.room.tombstone/",
                  {"body": "moved", "replacement_room": decoy})
    await asyncio.sleep(3)
    assert bot.bot is not None
    assert bot.bot.rooms.get(decoy) is None  # not followed: bob is no admin

    upgraded = await alice.api("POST", f"/_matrix/client/v3/rooms/{quote(room)}/upgrade",
                               {"new_version": "11"})
    new_room = upgraded["replacement_room"]
    await alice.invite(new_room, bot.user_id)
    await alice.invite(new_room, carol.user_id)
    await carol.join(new_room)
    await alice.wait_joined(new_room, bot.user_id)
    answer = await ask(carol, new_room, bot.user_id, "!whoami")
    assert "member: power level 0 >= 0" in answer  # the old room's config carried over
    # and it survives a restart
    await bot.restart()
    assert bot.bot is not None
    assert bot.bot.rooms.get(new_room) is not None, "the upgrade was forgotten on restart"
    assert (await ask(carol, new_room, bot.user_id, "!ping")).startswith("pong")


async def test_a_configured_prefix_reaches_every_sentence(
    make_member: MakeMember, start_bot: StartBot
) -> None:
    """Sentences written deep down (errors, hints) name commands as `!cmd`; the room sees the
    co-op's own prefix."""
    alice, _bob, carol, room = await coop_room(make_member)
    bot = await start_bot(rooms={room: {}}, matrix_extra={"command_prefix": "?"})
    await invite_bot(alice, room, bot.user_id)
    answer = await ask(carol, room, bot.user_id, "?pnig")
    assert answer == "Unknown command `pnig`. Did you mean `ping`? Try `?help`."
    assert (await ask(carol, room, bot.user_id, "?ping")).startswith("pong")
