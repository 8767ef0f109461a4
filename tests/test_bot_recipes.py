"""Recipes as they are, end to end: a real room on Synapse -> the real bot -> the real swarm,
with the recipe shapes of tests/harness/recipes.py (bare git repos written by the harness).

What abra writes on the `app` service at deploy time is read back from the live swarm after
each kind of deploy: `coop-cloud.<stack>.recipe`, `.chaos`, `.chaos-version` (chaos only),
`.version` (the version actually deployed) and `.autoupdate`."""

from __future__ import annotations

import itertools
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from git.repo import Repo

from tests.harness.apps import docker, stack_of, unique_domain
from tests.harness.bot import RunningBot, StartBot, answer_to, ask_bot, coop_room
from tests.harness.recipes import AbraDir
from tests.harness.swarm import AppImages, Dockerd, remove_stack
from tests.harness.synapse import MakeMember, Member

pytestmark = pytest.mark.real

DEPLOY_TIMEOUT = 150.0


class RecipesRoom:
    def __init__(self, bot: RunningBot, room: str, alice: Member, bob: Member,
                 abra: AbraDir) -> None:
        self.bot, self.room, self.alice, self.bob, self.abra = bot, room, alice, bob, abra
        self.stacks: list[str] = []

    def app(self, recipe: str, server: str = "local", **extra: str) -> str:
        domain = unique_domain()
        self.abra.write_app(server, domain, recipe=recipe, extra=extra)
        self.stacks.append(stack_of(domain))
        return domain

    async def ask(self, member: Member, body: str) -> str:
        return await ask_bot(member, self.room, self.bot.user_id, body, timeout=DEPLOY_TIMEOUT)


def abra_labels(domain: str) -> dict[str, str]:
    """The live `coop-cloud.<stack>.*` labels of the app service, without the prefix (the
    recipe's own timeout label left out)."""
    stack = stack_of(domain)
    raw = docker("service", "inspect", f"{stack}_app", "--format", "{{json .Spec.Labels}}")
    prefix = f"coop-cloud.{stack}."
    return {key.removeprefix(prefix): value for key, value in json.loads(raw).items()
            if key.startswith(prefix) and key != f"{prefix}timeout"}


@pytest.fixture
async def recipes_room(make_member: MakeMember, start_bot: StartBot, abra_dir: AbraDir,
                       tmp_path: Path, dockerd: Dockerd, test_images: AppImages,
                       recipe_shapes: dict[str, Path]) -> Any:
    alice, bob, _, room = await coop_room(make_member)
    servers: dict[str, Any] = {
        "local": {"kind": "local", "socket": dockerd.socket, "check_images": True},
        # No image check: the swarm itself finds the missing image (and digests are resolved).
        "plain": {"kind": "local", "socket": dockerd.socket},
    }
    bot = await start_bot(
        rooms={room: {"servers": list(servers)}}, servers=servers, apps_dir=str(abra_dir.path),
        recipes={"overrides": {name: str(path) for name, path in recipe_shapes.items()},
                 "cache": str(tmp_path / "recipe-cache")},
    )
    await alice.invite(room, bot.user_id)
    await alice.wait_joined(room, bot.user_id)
    shared = RecipesRoom(bot, room, alice, bob, abra_dir)
    yield shared
    for stack in shared.stacks:
        remove_stack(stack)


async def test_v_tags_deploy_redeploy_upgrade_fails_and_returns_with_abras_labels(
    recipes_room: RecipesRoom,
) -> None:
    """Tags `v1.0.N`, compose labels `1.0.N+1.0.N`; v1.0.3 is unhealthy."""
    r = recipes_room
    domain = r.app("vtags", ENABLE_AUTO_UPDATE="true")
    answer = await r.ask(r.bob, f"!deploy {domain} v1.0.1")
    assert f"`{domain}` deployed: v1.0.1 on local, converged and healthy" in answer
    assert abra_labels(domain) == {"recipe": "vtags", "chaos": "false", "version": "v1.0.1",
                                   "autoupdate": "true"}
    answer = await r.ask(r.bob, f"!deploy {domain}")
    assert f"`{domain}` deployed: v1.0.1 on local" in answer, "a redeploy of what runs"

    answer = await r.ask(r.bob, f"!upgrade {domain} v1.0.2")
    assert "upgraded: v1.0.1 -> v1.0.2" in answer
    assert abra_labels(domain)["version"] == "v1.0.2"

    answer = await r.ask(r.bob, f"!upgrade {domain}")
    assert "v1.0.2 -> v1.0.3 failed" in answer
    assert "Returned to v1.0.2: running now is v1.0.2, converged and healthy." in answer
    assert "coopbot-test v2" not in answer, "the log lines are the failing task's"
    apps = await r.ask(r.bob, "!apps local")
    line = next(x for x in apps.splitlines() if x.startswith(domain))
    assert line.split()[1:3] == ["running", "v1.0.2"], line  # the state next to the name

    answer = await r.ask(r.bob, f"!rollback {domain}")
    assert "rolled back: v1.0.2 -> v1.0.1" in answer
    assert abra_labels(domain) == {"recipe": "vtags", "chaos": "false", "version": "v1.0.1",
                                   "autoupdate": "true"}


async def test_an_untagged_recipe_is_deployed_chaos_by_an_admin_with_abras_labels(
    recipes_room: RecipesRoom, recipe_shapes: dict[str, Path],
) -> None:
    r = recipes_room
    domain = r.app("untagged")
    answer = await r.ask(r.bob, f"!deploy {domain}")
    assert f"no releases yet: `!deploy {domain} --chaos` deploys its newest commit" in answer
    answer = await r.ask(r.bob, f"!deploy {domain} --chaos")
    assert answer == "`deploy --chaos` needs the admin role in this room."

    answer = await r.ask(r.alice, f"!deploy {domain} --chaos")
    head = _head(recipe_shapes["untagged"])
    assert f"`{domain}` deployed: chaos {head[:8]} on local, converged and healthy" in answer
    assert abra_labels(domain) == {"recipe": "untagged", "chaos": "true",
                                   "chaos-version": head[:8], "autoupdate": "false",
                                   "version": "0.1.0+dev"}  # no release: the recipe's label
    env = (r.abra.path / "servers" / "local" / f"{domain}.env").read_text()
    assert f"TYPE=untagged:{head[:8]}\n" in env  # what abra writes for a chaos deploy
    ps = await r.ask(r.bob, f"!ps {domain}")
    assert f"chaos {head[:8]}" in ps and "coopbot-test/app:v2" in ps
    apps = await r.ask(r.bob, "!apps local")
    assert f"chaos {head[:8]}" in next(x for x in apps.splitlines() if x.startswith(domain))


def _head(bare: Path) -> str:
    with Repo(bare) as repo:
        return repo.commit("main").hexsha


async def test_a_first_deploy_of_a_missing_image_fails_in_seconds_and_the_status_ticks(
    recipes_room: RecipesRoom,
) -> None:
    r = recipes_room
    domain = r.app("missingimage", server="plain")
    started = time.monotonic()
    command = await r.bob.send(r.room, f"!deploy {domain}")
    answer = await answer_to(r.bob, r.room, r.bot.user_id, command, timeout=DEPLOY_TIMEOUT)
    took = time.monotonic() - started
    assert took < 60, f"{took:.0f} s: as long as a timeout, not as long as swarm took"
    assert "1.0.0+missing failed after" in answer
    assert re.search(r"Service `app`: swarm rejected \d+ of its tasks\. Last task error: "
                     r".*No such image: coopbot-test/never-built:v9", answer), answer

    status = next(m for m in r.bob.timeline(r.room)
                  if m.source.get("content", {}).get("m.relates_to", {})
                  .get("m.in_reply_to", {}).get("event_id") == command
                  and str(m.source["content"].get("body", "")).startswith("⏳"))

    def edits() -> list[str]:
        return [str(m.source["content"]["m.new_content"]["body"]) for m in r.bob.timeline(r.room)
                if m.source.get("content", {}).get("m.relates_to", {}).get("rel_type")
                == "m.replace"
                and m.source["content"]["m.relates_to"]["event_id"] == status.event_id]

    await r.bob.wait_until(lambda: any(e.startswith("❌ failed after") for e in edits()),
                           what="the status message closed")
    seconds = [int(m[1]) for e in edits() if (m := re.search(r" · (\d+) s$", e))]
    assert seconds, f"no edit showed the elapsed time: {edits()}"
    # Nothing went 10 s without an edit while the bot waited.
    marks = [0, *seconds, int(took)]
    assert max(b - a for a, b in itertools.pairwise(marks)) <= 10, edits()

    answer = await r.ask(r.bob, f"!undeploy {domain}")
    assert "(1.0.0+missing was deployed but never ran)" in answer
