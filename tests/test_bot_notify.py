"""Notifications and progress end to end: a command room and a notification room on a real
Synapse, a real swarm, a real recipe repo that gets new tags pushed."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coopbot.observe import OperationFinished
from tests.harness.apps import app_env, create_secret, stack_of, unique_domain
from tests.harness.bot import RunningBot, StartBot, answer_to, ask_bot
from tests.harness.recipes import (
    TESTAPP_RELEASES,
    AbraDir,
    MakeRecipeRepo,
    RecipeRelease,
    add_release,
    tree_of_testapp,
)
from tests.harness.swarm import AppImages, Dockerd, remove_stack
from tests.harness.synapse import MakeMember, Member

pytestmark = pytest.mark.real

TIMEOUT = 150.0


@dataclass
class Rooms:
    bot: RunningBot
    ops: str  # command room, no notifications
    news: str  # notification room
    alice: Member  # admin in both
    bob: Member  # operator in ops, reader of news
    abra: AbraDir
    recipe: Path

    async def ask(self, body: str, member: Member | None = None) -> tuple[str, str]:
        """Send a command in the ops room; return (command event id, final answer)."""
        who = member or self.bob
        event_id = await who.send(self.ops, body)
        return event_id, await answer_to(who, self.ops, self.bot.user_id, event_id,
                                         timeout=TIMEOUT)

    def news_from_bot(self) -> list[str]:
        return [str(m.source["content"].get("body", ""))
                for m in self.bob.messages_from(self.news, self.bot.user_id)]

    async def news_matching(self, text: str, timeout: float = 30.0) -> str:
        reply = await self.bob.wait_for_message(
            self.news, sender=self.bot.user_id, timeout=timeout,
            predicate=lambda e: text in str(e.source["content"].get("body", "")))
        return str(reply.source["content"]["body"])


@pytest.fixture
async def rooms(
    make_member: MakeMember, start_bot: StartBot, abra_dir: AbraDir, tmp_path: Path,
    dockerd: Dockerd, test_images: AppImages, make_recipe_repo: MakeRecipeRepo,
    request: pytest.FixtureRequest,
) -> Rooms:
    tag = uuid.uuid4().hex[:6]
    alice = await make_member(f"alice-{tag}")
    bob = await make_member(f"bob-{tag}")
    ops = await alice.create_room(invite=[bob.user_id], power_levels={bob.user_id: 50})
    news = await alice.create_room(invite=[bob.user_id])
    await bob.join(ops)
    await bob.join(news)
    # A private copy of the recipe: tests push new tags to it.
    recipe = make_recipe_repo(f"testapp-{tag}", TESTAPP_RELEASES[:2])
    marker = request.node.get_closest_marker("bot_config")
    extra: dict[str, Any] = dict(marker.kwargs) if marker else {}
    bot = await start_bot(
        rooms={ops: {"servers": ["local"], "mute_rooms": [news]},
               news: {"servers": ["local"], "notifications": True}},
        servers={"local": {"kind": "local", "socket": dockerd.socket}},
        apps_dir=str(abra_dir.path),
        recipes={"overrides": {"testapp": str(recipe)}, "cache": str(tmp_path / "cache")},
        updates={"check_every": "0s", **extra.pop("updates", {})},
        **extra,
    )
    for room in (ops, news):
        await alice.invite(room, bot.user_id)
        await alice.wait_joined(room, bot.user_id)
    return Rooms(bot, ops, news, alice, bob, abra_dir, recipe)


@pytest.fixture
def app(rooms: Rooms) -> Any:
    domain = unique_domain()
    create_secret(domain)
    app_env(rooms.abra, "local", domain)
    yield domain
    remove_stack(stack_of(domain))


async def test_progress_edits_final_summary_and_notification(rooms: Rooms, app: str) -> None:
    r = rooms
    watching = asyncio.create_task(_saw_typing(r.bob, r.ops, r.bot.user_id))
    command, answer = await r.ask(f"!deploy {app} 1.0.0+v1")
    assert f"`{app}` deployed: 1.0.0+v1 on local" in answer
    # one status message, edited in place, then one final answer (two messages in the thread)
    thread = [m for m in r.bob.timeline(r.ops)
              if m.source.get("content", {}).get("m.relates_to", {}).get("event_id") == command]
    status = [m for m in thread if str(m.source["content"].get("body", "")).startswith("⏳")]
    assert len(status) == 1
    edits = [m for m in r.bob.timeline(r.ops)
             if m.source.get("content", {}).get("m.relates_to", {}).get("rel_type") == "m.replace"
             and m.source["content"]["m.relates_to"]["event_id"] == status[0].event_id]
    assert edits, "the status message was never edited"
    assert any("converging" in str(e.source["content"]["m.new_content"]["body"]) or
               "deploying" in str(e.source["content"]["m.new_content"]["body"]) for e in edits)

    def closed(event: Any) -> bool:
        content = event.source.get("content", {})
        return (content.get("m.relates_to", {}).get("event_id") == status[0].event_id
                and str(content.get("m.new_content", {}).get("body", "")).startswith("✅ done"))

    # Once the answer is out the status no longer says ⏳: it says how the deploy ended.
    await r.bob.wait_for_event(r.ops, closed, what="the status message closed")
    assert await asyncio.wait_for(watching, 5), "no typing indicator while the deploy ran"

    news = await r.news_matching(f"deploy `{app}`")
    assert f"✅ deploy `{app}` on local: not deployed -> 1.0.0+v1: ok in" in news
    assert f"Asked by {r.bob.user_id}." in news
    assert f"https://matrix.to/#/{r.ops}/{command}" in news
    # nothing was posted in the command room beyond the thread
    assert not [m for m in r.bob.messages_from(r.news, r.bot.user_id) if "⏳" in
                str(m.source["content"].get("body", ""))]


async def _saw_typing(member: Member, room: str, user: str, limit: float = 60.0) -> bool:
    deadline = asyncio.get_running_loop().time() + limit
    while asyncio.get_running_loop().time() < deadline:
        matrix_room = member.client.rooms.get(room)
        if matrix_room is not None and user in matrix_room.typing_users:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_mute_silences_and_unmute_restores(rooms: Rooms, app: str) -> None:
    r = rooms
    _, answer = await r.ask(f"!mute {app} 1h")
    assert f"`{app}` is muted until" in answer
    assert f" in {r.news}: no notifications about it there" in answer  # via `mute_rooms`
    _, watch = await r.ask("!watch")
    assert f"`{app}` muted until" in watch
    await r.ask(f"!deploy {app} 1.0.0+v1")
    await asyncio.sleep(2)
    assert not [n for n in r.news_from_bot() if app in n], "a muted app was announced"
    news_watch = await ask_bot(r.bob, r.news, r.bot.user_id, "!watch")
    assert f"- `{app}` muted here from {r.ops} until" in news_watch
    _, answer = await r.ask(f"!unmute {app}")
    assert answer == f"`{app}` is unmuted: notifications about it resume."
    await r.ask(f"!undeploy {app}")
    news = await r.news_matching(f"undeploy `{app}`")
    assert "1.0.0+v1 -> removed: ok" in news


async def test_a_mute_silences_its_own_room_only_and_only_for_apps_it_controls(
    make_member: MakeMember, start_bot: StartBot, abra_dir: AbraDir, dockerd: Dockerd,
) -> None:
    tag = uuid.uuid4().hex[:6]
    alice = await make_member(f"alice-{tag}")
    bob = await make_member(f"bob-{tag}")
    shared, theirs = unique_domain(), unique_domain()
    for domain in (shared, theirs):
        app_env(abra_dir, "local", domain)
    # Two teams' rooms, both notified about `shared`; only room B controls `theirs`.
    room_a = await alice.create_room(invite=[bob.user_id], power_levels={bob.user_id: 50})
    room_b = await alice.create_room(invite=[bob.user_id], power_levels={bob.user_id: 50})
    for room in (room_a, room_b):
        await bob.join(room)
    bot = await start_bot(
        rooms={room_a: {"servers": ["local"], "apps": [shared], "notifications": True},
               room_b: {"servers": ["local"], "notifications": True}},
        servers={"local": {"kind": "local", "socket": dockerd.socket}},
        apps_dir=str(abra_dir.path), updates={"check_every": "0s"},
    )
    for room in (room_a, room_b):
        await alice.invite(room, bot.user_id)
        await alice.wait_joined(room, bot.user_id)

    async def ask(room: str, body: str) -> str:
        return await ask_bot(bob, room, bot.user_id, body)

    refused = await ask(room_a, f"!mute {theirs} 1h")
    assert refused == f"App `{theirs}` is not controlled from this room."
    answer = await ask(room_a, f"!mute {shared} 1h")
    assert answer.startswith(f"`{shared}` is muted until ")
    assert " in this room: no notifications about it there until then" in answer
    assert f"`{shared}` muted until" in await ask(room_a, "!watch")
    watch_b = await ask(room_b, "!watch")
    assert "Nothing is muted." in watch_b and shared not in watch_b

    # An operation on `shared` finishes: the deployer's event reaches the notifier as usual.
    assert bot.bot is not None
    await bot.bot.observers.emit(OperationFinished(
        operation_id=f"op-{tag}", kind="upgrade", app=shared, server="local",
        from_version="1.0.0+v1", to_version="1.1.0+v2", requester=bob.user_id, approvers=(),
        room_id=room_b, event_id=None, result="ok", summary="", duration=3.0))
    news = await bob.wait_for_message(
        room_b, sender=bot.user_id, timeout=30,
        predicate=lambda e: f"upgrade `{shared}`" in str(e.source["content"].get("body", "")))
    assert "1.0.0+v1 -> 1.1.0+v2: ok" in str(news.source["content"]["body"])
    # Room A comes first in the config: had it not been muted, its copy would be there by now.
    await asyncio.sleep(2)
    assert not [m for m in bob.messages_from(room_a, bot.user_id)
                if f"upgrade `{shared}`" in str(m.source["content"].get("body", ""))], \
        "room A muted the app but was notified"

    # Room B's unmute cannot end room A's mute; room A's can.
    assert await ask(room_b, f"!unmute {shared}") == f"`{shared}` was not muted from this room."
    assert await ask(room_a, f"!unmute {shared}") == (
        f"`{shared}` is unmuted: notifications about it resume.")


async def test_new_versions_are_announced_once(rooms: Rooms, app: str) -> None:
    r = rooms
    await r.ask(f"!deploy {app} 1.0.0+v1")
    assert r.bot.bot is not None
    found = await r.bot.bot.updates.check_once()
    assert [(a.app.name, str(a.newest)) for a in found] == [(app, "1.1.0+v2")]
    news = await r.news_matching("is available")
    assert f"`{app}` on local: 1.1.0+v2 is available (running 1.0.0+v1)." in news
    assert "1.1.0+v2: Serves the v2 page." in news
    assert f"To upgrade: `!upgrade {app} 1.1.0+v2`" in news
    assert await r.bot.bot.updates.check_once() == []  # announced once

    # the recipe's maintainers push a new release: announced once too
    files = dict(tree_of_testapp("1.1.0+v2"))
    files["compose.yml"] = files["compose.yml"].replace("=1.1.0+v2", "=1.3.0+v2")
    files["release/1.3.0+v2"] = "Same image, new packaging.\n"
    add_release(r.recipe, RecipeRelease("1.3.0+v2", files))
    found = await r.bot.bot.updates.check_once()
    assert [str(a.newest) for a in found] == ["1.3.0+v2"]
    await r.news_matching("1.3.0+v2 is available")
    assert await r.bot.bot.updates.check_once() == []
    announcements = [n for n in r.news_from_bot() if "is available" in n]
    assert len(announcements) == 2


@pytest.mark.bot_config(
    updates={"auto_update": ["t*.example.org"]},
    policies={"upgrade": {"approvals": 1, "approver_role": "operator", "backup_first": False}},
)
async def test_auto_update_goes_through_the_policy(rooms: Rooms, app: str) -> None:
    r = rooms
    await r.ask(f"!deploy {app} 1.0.0+v1")
    # bob is an operator in the ops room only; in the news room alice (creator) votes
    assert r.bot.bot is not None
    found = await r.bot.bot.updates.check_once()
    assert found and found[0].auto_update
    await r.news_matching("It is marked for auto-update")
    card = await r.news_matching("Request #")
    assert f"upgrade `{app}` on local: 1.0.0+v1 -> 1.1.0+v2" in card
    # Alice's own client may see the card a moment after the member who read it above.
    card_event = await r.alice.wait_for_message(
        r.news, sender=r.bot.user_id,
        predicate=lambda m: str(m.source["content"].get("body", "")).startswith("Request #"))
    await r.alice.react(r.news, card_event.event_id, "👍")
    news = await r.news_matching(f"✅ upgrade `{app}`", timeout=TIMEOUT)
    assert "1.0.0+v1 -> 1.1.0+v2: ok" in news
    assert f"approved by {r.alice.user_id}" in news


async def test_change_outside_coopbot_is_announced_once(
    rooms: Rooms, app: str, tmp_path: Path
) -> None:
    import os
    import subprocess

    r = rooms
    stack = stack_of(app)
    compose = tmp_path / "compose.yml"
    compose.write_text(tree_of_testapp("1.0.0+v1")["compose.yml"])
    env = {**os.environ, "STACK_NAME": stack, "SECRET_DB_PASSWORD_VERSION": "v1",
           "GREETING": "hi"}
    # someone deploys with the docker CLI (as abra would), then edits a label by hand
    await asyncio.to_thread(
        subprocess.run, ["docker", "stack", "deploy", "--resolve-image", "never", "-c",
                         str(compose), stack], env=env, check=True, capture_output=True)
    await asyncio.sleep(5)
    await asyncio.to_thread(
        subprocess.run, ["docker", "service", "update", "--detach", "--label-add",
                         f"coop-cloud.{stack}.version=9.9.9", f"{stack}_app"],
        check=True, capture_output=True)
    news = await r.news_matching("to 9.9.9 outside coopbot", timeout=60)
    assert f"`{app}`" in news or app in news
    assert "from 1.0.0+v1 to 9.9.9" in news
    await asyncio.sleep(5)
    assert len([n for n in r.news_from_bot() if "9.9.9 outside coopbot" in n]) == 1
