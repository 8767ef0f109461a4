"""An app's whole life from the room, end to end: real Synapse, one real bot, the real swarm
over a real sshd, a real recipe repo, an apps dir that is a real git repository, real restic.

`!new` -> `!secret generate --all` -> `!config set` -> `!deploy` of a recipe that needs two
secrets and a required env key; `!secret rotate` approved by a vote and redeployed;
`!secret insert` refused in the group room and done (then redacted) in a direct encrypted
room; `!restart` of one service; `!cmd` of an abra.sh function and of one it lacks; `!remove`
refused while deployed, then with `--volumes` after a backup; the apps dir's git history.
Then every secret value is searched for in the rooms, the logs, the database and the history.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from nio import RoomMessage

from tests.harness.apps import docker, stack_of
from tests.harness.backups import ResticRepository
from tests.harness.bot import StartBot, answer_to, ask_bot
from tests.harness.recipes import MakeRecipeRepo, RecipeRelease
from tests.harness.swarm import AppImages, Dockerd, Sshd, remove_stack, ssh_server
from tests.harness.synapse import MakeMember, Member

pytestmark = pytest.mark.real

TIMEOUT = 150.0
INSERTED = f"inserted-{uuid.uuid4().hex}"
LEAKED = f"leaked-{uuid.uuid4().hex}"

_COMPOSE = """\
version: "3.8"

services:
  app:
    image: coopbot-test/app:v1
    command: ["sh", "-c", "echo kept > /data/kept.txt; exec httpd -f -p 80 -h /www"]
    environment:
      - GREETING=${GREETING:?set GREETING}
    volumes:
      - data:/data
    secrets:
      - db_password
      - api_token
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O- http://127.0.0.1:80/ || exit 1"]
      interval: 2s
      timeout: 2s
      retries: 3
      start_period: 5s
    stop_grace_period: 1s
    deploy:
      update_config:
        failure_action: rollback
        order: start-first
      labels:
        - "coop-cloud.${STACK_NAME}.version=1.0.0+v1"
        - "coop-cloud.${STACK_NAME}.timeout=${TIMEOUT:-120}"
        - "coop-cloud.${STACK_NAME}.recipe=lifeapp"
        - "backupbot.backup=true"
  worker:
    image: coopbot-test/app:v1
    command: ["sh", "-c", "exec sleep 100000"]
    stop_grace_period: 1s
    deploy:
      replicas: 2

volumes:
  data:

secrets:
  db_password:
    external: true
    name: ${STACK_NAME}_db_password_${SECRET_DB_PASSWORD_VERSION}
  api_token:
    external: true
    name: ${STACK_NAME}_api_token_${SECRET_API_TOKEN_VERSION}
"""

_ENV_SAMPLE = """\
TYPE=lifeapp

DOMAIN=lifeapp.example.com

## The page's greeting (required)
GREETING=

SECRET_DB_PASSWORD_VERSION=v1 # length=24
SECRET_API_TOKEN_VERSION=v1
"""

_ABRA_SH = """\
export APP_CONF_VERSION=v1

greet() {
  echo "greetings to $1 from abra.sh"
}
"""


@pytest.fixture(scope="session")
def lifeapp_recipe(make_recipe_repo: MakeRecipeRepo, test_images: AppImages) -> Path:
    files = {"compose.yml": _COMPOSE, ".env.sample": _ENV_SAMPLE, "abra.sh": _ABRA_SH,
             "README.md": "# lifeapp\n\nA recipe for coopbot's lifecycle test.\n"}
    return make_recipe_repo("lifeapp", [RecipeRelease("1.0.0+v1", files)])


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def secret_in(stack: str, name: str) -> str:
    """The value of a secret as the app's running container sees it."""
    container = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name="
                       f"{stack}_app").split()[0]
    return docker("exec", container, "cat", f"/run/secrets/{name}")


def running_tasks(service: str) -> set[str]:
    return set(docker("service", "ps", "-q", "--filter", "desired-state=running",
                      service).split())


async def approve(member: Member, room: str, bot: str, card: str) -> None:
    match = re.match(r"Request #(\d+):", card)
    assert match is not None, card
    answer = await ask_bot(member, room, bot, f"!approve {match.group(1)}")
    assert "is recorded" in answer, answer


async def result(member: Member, room: str, bot: str, command_id: str, text: str) -> str:
    def matches(event: RoomMessage) -> bool:
        content = event.source.get("content", {})
        return (content.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
                == command_id and text in str(content.get("body", "")))

    reply = await member.wait_for_message(room, sender=bot, predicate=matches, timeout=TIMEOUT,
                                          after_event_id=command_id)
    return str(reply.source["content"]["body"])


async def server_history(member: Member, room: str) -> str:
    """The room's events as the homeserver now serves them (redactions applied)."""
    answer = await member.api("GET", f"/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=500")
    return json.dumps(answer["chunk"])


async def test_an_app_from_nothing_to_running_to_removed(
    make_member: MakeMember, start_bot: StartBot, tmp_path: Path, dockerd: Dockerd,
    sshd: Sshd, lifeapp_recipe: Path, restic_image: str, restic_repository: ResticRepository,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    tag = uuid.uuid4().hex[:6]
    alice, bob = await make_member(f"alice-{tag}"), await make_member(f"bob-{tag}")
    room = await alice.create_room(invite=[bob.user_id], power_levels={bob.user_id: 50})
    await bob.join(room)
    abra = tmp_path / "abra"
    (abra / "servers").mkdir(parents=True)
    git(abra, "init", "-q")
    servers: dict[str, Any] = {"remote": ssh_server(sshd, connect_timeout=5)}
    bot = await start_bot(
        rooms={room: {"servers": ["remote"],
                      "policies": {"secret": {"approvals": 1}, "remove": {"approvals": 0}}}},
        servers=servers, apps_dir=str(abra), admins=[alice.user_id],
        invites={"users": [alice.user_id]},
        backups={"remote": {"repository": str(restic_repository.path / "remote"),
                            "password_file": str(restic_repository.password_file),
                            "helper_image": restic_image}},
        recipes={"overrides": {"lifeapp": str(lifeapp_recipe)},
                 "url_template": str(tmp_path / "no-repos" / "{recipe}.git"),
                 "cache": str(tmp_path / "recipe-cache")},
    )
    await alice.invite(room, bot.user_id)
    await alice.wait_joined(room, bot.user_id)
    levels = await alice.api("GET", f"/_matrix/client/v3/rooms/{room}/state/m.room.power_levels")
    levels.setdefault("users", {})[bot.user_id] = 50  # so the bot may redact a leaked value
    await alice.api("PUT", f"/_matrix/client/v3/rooms/{room}/state/m.room.power_levels", levels)
    domain = f"l{tag}.example.org"
    stack = stack_of(domain)
    env_path = abra / "servers" / "remote" / f"{domain}.env"

    async def ask(member: Member, body: str) -> str:
        return await ask_bot(member, room, bot.user_id, body, timeout=TIMEOUT)

    try:
        # -- new: the sample with TYPE and DOMAIN, then what is left to do ------------------
        answer = await ask(bob, f"!new lifeapp {domain}")
        assert f"`{domain}` created on remote from lifeapp 1.0.0+v1" in answer, answer
        assert "env keys without a value: `GREETING`" in answer
        assert "secrets missing: `db_password`, `api_token`" in answer
        assert env_path.read_text() == _ENV_SAMPLE.replace("TYPE=lifeapp\n",
                                                           "TYPE=lifeapp:1.0.0+v1\n").replace(
            "DOMAIN=lifeapp.example.com", f"DOMAIN={domain}")
        assert "exists already" in await ask(bob, f"!new lifeapp {domain}")
        assert "Unknown recipe" in await ask(bob, f"!new nosuchrecipe x{tag}.example.org")
        assert "Usage:" in await ask(bob, "!new lifeapp")

        # -- secrets (the room's `secret` policy asks for one approval) --------------------
        listing = await ask(bob, f"!secret {domain}")
        assert f"`{stack}_db_password_v1` **missing**".replace("**", "") in listing
        generate_id = await bob.send(room, f"!secret {domain} generate --all")
        card = await answer_to(bob, room, bot.user_id, generate_id, timeout=TIMEOUT)
        await approve(alice, room, bot.user_id, card)
        answer = await result(bob, room, bot.user_id, generate_id, "generated")
        assert f"`{stack}_db_password_v1`, `{stack}_api_token_v1`" in answer

        # -- config: the required key, then deploy ------------------------------------------
        assert "GREETING` = (hidden)" in await ask(bob, f"!config {domain}")
        answer = await ask(bob, f"!config {domain} set GREETING=hello from the room")
        assert "config changed**: set GREETING".replace("**", "") in answer.replace("**", "")
        assert 'GREETING="hello from the room"\n' in env_path.read_text()
        assert "looks like a secret" in await ask(bob, f"!config {domain} set DB_PASSWORD=x")
        answer = await ask(bob, f"!deploy {domain}")
        assert "converged and healthy" in answer, answer
        values = [secret_in(stack, "db_password"), secret_in(stack, "api_token")]
        assert len(values[0]) == 24 and len(values[1]) == 32  # the length rule, and without

        # -- rotate: one approved plan, redeployed ------------------------------------------
        rotate_id = await bob.send(room, f"!secret {domain} rotate db_password")
        card = await answer_to(bob, room, bot.user_id, rotate_id, timeout=TIMEOUT)
        assert "rotate" in card and f"{stack}_db_password_v2" in card
        await approve(alice, room, bot.user_id, card)
        answer = await result(bob, room, bot.user_id, rotate_id, "no longer used")
        assert "rotated** v1 -> v2".replace("**", "") in answer.replace("**", "")
        assert "converged and healthy" in answer
        assert f"`{stack}_db_password_v1` is no longer used" in answer
        assert "SECRET_DB_PASSWORD_VERSION=v2 # length=24\n" in env_path.read_text()
        values.append(secret_in(stack, "db_password"))
        assert values[2] != values[0] and len(values[2]) == 24

        # -- insert: refused (and redacted) here, done in a direct encrypted room ----------
        leak_id = await bob.send(room, f"!secret {domain} insert api_token v2 {LEAKED}")
        answer = await answer_to(bob, room, bot.user_id, leak_id, timeout=TIMEOUT)
        assert "only works in a direct, encrypted room" in answer
        dm = await alice.create_room(invite=[bot.user_id], encrypted=True,
                                     power_levels={bot.user_id: 50})
        await alice.wait_joined(dm, bot.user_id)
        insert_id = await alice.send(dm, f"!secret {domain} insert api_token v2 {INSERTED}")
        answer = await answer_to(alice, dm, bot.user_id, insert_id, timeout=TIMEOUT)
        assert f"`{stack}_api_token_v2` stored" in answer, answer
        for where, event_id in ((dm, insert_id), (room, leak_id)):
            event = await alice.api("GET", f"/_matrix/client/v3/rooms/{where}/event/{event_id}")
            assert event["content"] == {}, "the message with the value is redacted"

        # -- restart one service: new tasks, same replicas ----------------------------------
        before = running_tasks(f"{stack}_worker")
        app_before = running_tasks(f"{stack}_app")
        answer = await ask(bob, f"!restart {domain} worker")
        assert f"`{domain}` restarted**: worker on remote, converged and healthy".replace(
            "**", "") in answer.replace("**", ""), answer
        after = running_tasks(f"{stack}_worker")
        assert len(after) == 2 and not after & before
        assert running_tasks(f"{stack}_app") == app_before
        assert "Usage:" in await ask(bob, f"!restart {domain} no/such")

        # -- cmd: only what abra.sh defines, admin role ------------------------------------
        assert "needs the admin role" in await ask(bob, f"!cmd {domain} app greet x")
        answer = await ask(alice, f"!cmd {domain} app greet members")
        assert "greetings to members from abra.sh" in answer and ": ok in" in answer, answer
        answer = await ask(alice, f"!cmd {domain} app rm_everything")
        assert "defines no function `rm_everything` (it defines `greet`)" in answer

        history = await ask(bob, f"!config {domain} history")
        assert f"config {domain}: set GREETING ({bob.user_id})" in history, history
        assert f"new {domain} on remote: lifeapp 1.0.0+v1 ({bob.user_id})" in history

        # -- remove: refused while deployed; volumes only after a verified backup ----------
        assert "is deployed on remote; `!undeploy" in await ask(bob, f"!remove {domain}")
        assert "backed up" in await ask(bob, f"!backup {domain}")
        assert "undeployed" in await ask(bob, f"!undeploy {domain}")
        answer = await ask(bob, f"!remove {domain} --volumes --secrets")
        assert f"`{domain}` removed** from remote".replace("**", "") in answer.replace("**", "")
        assert f"volume `{stack}_data`" in answer and f"secret `{stack}_api_token_v2`" in answer
        assert not env_path.exists()
        assert f"{stack}_data" not in docker("volume", "ls", "-q").split()
        assert not [s for s in docker("secret", "ls", "--format", "{{.Name}}").split()
                    if s.startswith(f"{stack}_")]

        # -- the apps dir's history: every change, who asked --------------------------------
        log = git(abra, "log", "--format=%s|%(trailers:key=Requested-by,valueonly)").split("\n")
        subjects = [line.split("|")[0] for line in log if line]
        # (the deploys wrote no commit: TYPE already named the version `!new` copied)
        assert subjects == [
            f"remove {domain} from remote",
            f"secret {domain}: db_password v1 -> v2",
            f"config {domain}: set GREETING",
            f"new {domain} on remote: lifeapp 1.0.0+v1",
        ], subjects

        assert all(bob.user_id in line for line in log if line)

        # -- no secret value anywhere -------------------------------------------------------
        assert bot.bot is not None
        said = "\n".join(json.dumps(e.source) for r in (room, dm)
                         for e in alice.timeline(r) if e.sender == bot.user_id)
        history = await server_history(alice, room) + await server_history(alice, dm)
        logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
        # nio itself logs whole sync responses at debug level: a value a member posts in a
        # plain room is in those; what coopbot logs must never hold one.
        own = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records
                        if r.name.startswith("coopbot"))
        assert "operation" in own, "no bot log lines were captured: the check proves nothing"
        audit = "\n".join(json.dumps(row.__dict__) for row in await bot.audit(500))
        state = b"".join(p.read_bytes() for p in bot.config_path.parent.rglob("*")
                         if p.is_file() and "coopbot.db" in p.name)
        git_all = git(abra, "log", "-p", "--all")
        assert state, "the database files were not found"
        for value in (*values, INSERTED, LEAKED):
            for where, text in (("the rooms", said), ("the room history", history),
                                ("the log", logged if value != LEAKED else own),
                                ("the audit", audit), ("the git history", git_all)):
                assert value not in text, f"a secret value is in {where}"
            assert value.encode() not in state, "a secret value is in the database"
        assert "[value]" in audit  # the insert is audited, without its value
    finally:
        remove_stack(stack)
        for name in docker("secret", "ls", "--format", "{{.Name}}").split():
            if name.startswith(f"{stack}_"):
                docker("secret", "rm", name)
