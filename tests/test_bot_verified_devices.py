"""The `verified_devices_only` policy: a changing command and the votes on it count only from
devices their owner has cross-signed, re-checked at tally. Real Synapse, real swarm; members on
matrix-js-sdk's Rust crypto (cross-signed devices) and one on nio (which cannot cross-sign)."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import pytest

from tests.harness.apps import app_env, create_secret, unique_domain
from tests.harness.bot import StartBot, ask_bot
from tests.harness.jsmember import MakeJsMember
from tests.harness.recipes import AbraDir
from tests.harness.swarm import AppImages, Dockerd
from tests.harness.synapse import MakeMember, Member

pytestmark = pytest.mark.real


async def card_says(member: Member, room: str, card_id: str, text: str,
                    timeout: float = 30.0) -> str:
    """Wait until the card (as last edited, seen by `member`) contains `text`."""
    def latest() -> str:
        body = ""
        for event in member.timeline(room):
            content = event.source.get("content", {})
            if event.event_id == card_id:
                body = str(content.get("body", ""))
            relates = content.get("m.relates_to", {})
            if relates.get("rel_type") == "m.replace" and relates.get("event_id") == card_id:
                body = str(content.get("m.new_content", {}).get("body", ""))
        return body

    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if text in (body := latest()):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"card never said {text!r}; it says:\n{latest()}")


async def test_votes_and_commands_count_only_from_cross_signed_devices(
    make_js_member: MakeJsMember, make_member: MakeMember, start_bot: StartBot,
    abra_dir: AbraDir, tmp_path: Path, dockerd: Dockerd, test_images: AppImages,
    testapp_recipe: Path,
) -> None:
    dora = await make_js_member("dora")  # creator
    erin = await make_js_member("erin")  # operator, requester
    frank = await make_js_member("frank")  # operator
    nick = await make_member(f"nick-{uuid.uuid4().hex[:6]}")  # operator on nio: unsigned
    room = await dora.create_room(invite=[erin.user_id, frank.user_id, nick.user_id],
                                  encrypted=True,
                                  power_levels={m.user_id: 50 for m in (erin, frank, nick)})
    await erin.join(room)
    await frank.join(room)
    await nick.join(room)
    policy = {"approvals": 2, "approver_role": "operator", "expires": "1h",
              "verified_devices_only": True}
    bot = await start_bot(
        rooms={room: {"servers": ["local"]}},
        servers={"local": {"kind": "local", "socket": dockerd.socket}},
        apps_dir=str(abra_dir.path),
        recipes={"overrides": {"testapp": str(testapp_recipe)},
                 "cache": str(tmp_path / "recipe-cache")},
        policies={"deploy": policy},
    )
    await dora.invite(room, bot.user_id)
    for member in (dora, erin, frank):
        await member.wait_joined(room, bot.user_id)
    await nick.wait_joined(room, bot.user_id)
    domain = unique_domain()
    create_secret(domain)
    app_env(abra_dir, "local", domain)

    # A changing command from an unsigned device is refused with a sentence.
    refused = await ask_bot(nick, room, bot.user_id, f"!deploy {domain} 1.0.0+v1")
    assert "must come from a device its owner has cross-signed" in refused

    command = await erin.send(room, f"!deploy {domain} 1.0.0+v1")
    card = await erin.reply_to(room, bot.user_id, command, timeout=60)
    match = re.match(r"Request #(\d+):", card["content"]["body"])
    assert match is not None, card["content"]["body"]
    request_id, card_id = int(match.group(1)), card["event_id"]
    assert "only votes sent as commands from cross-signed devices count" in card["content"]["body"]

    # nick's vote (an encrypted !approve from a device nobody signed) is recorded, not counted.
    answer = await ask_bot(nick, room, bot.user_id, f"!approve {request_id}")
    assert answer.startswith(f"Your 👍 on request #{request_id} is recorded")
    text = await card_says(nick, room, card_id, f"Not counted: {nick.user_id} (vote not sent "
                                                "from a device its owner has cross-signed")
    assert "Votes: 0 of 2" in text
    # frank's reaction names no device (js-sdk, like Element, never encrypts reactions)...
    await frank.react(room, card_id, "👍")
    await card_says(nick, room, card_id, f"Not counted: {frank.user_id} (vote not sent from a "
                                         "device its owner has cross-signed (it was not "
                                         f"encrypted); reactions are not encrypted, vote with "
                                         f"`!approve {request_id}`)")
    # ...his !approve from his cross-signed device counts.
    await frank.send(room, f"!approve {request_id}")
    text = await card_says(nick, room, card_id, "Votes: 1 of 2")
    assert f"👍 {frank.user_id}" in text and f"Not counted: {nick.user_id}" in text
    assert "Status: open" in text

    # Re-checked at tally: frank's account gets a new identity from another session, which
    # signs only that session. His vote stops counting at the next count.
    await make_js_member("frank", again=frank)
    await nick.send(room, f"!deny {request_id}")
    text = await card_says(nick, room, card_id, f"Not counted: {frank.user_id} (vote not sent "
                                                "from a device its owner has cross-signed)")
    assert "Votes: 0 of 2" in text and "Status: open" in text
