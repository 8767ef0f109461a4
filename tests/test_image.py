"""The container image and coopbot's own recipe (issue 8), end to end and with no registry:

1. `scripts/build-image` makes the image from a debootstrapped Debian base and host-built wheels
   (the base is cached between runs on one machine: only the first run pays for debootstrap).
2. The image runs on the host network against the session Synapse, as a non-root user with the
   Docker socket's group, its config mounted read-only and its state in a named volume; in a real
   room it answers `!ping` and `!servers` (the local engine and an SSH server), its HEALTHCHECK
   turns healthy and its JSON log lines hold no secret.
3. That containerised bot `!deploy`s `recipe/` (a bare repo with an annotated release tag) onto
   the test swarm, pointed at the image just built, and the deployed bot answers in its room.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import time
import tomllib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from nio import RoomMessage

from coopbot.dev.homeserver import LocalSynapse
from tests.harness.apps import stack_of
from tests.harness.recipes import MakeRecipeRepo, RecipeRelease
from tests.harness.swarm import Dockerd, Sshd, docker, free_port, remove_stack
from tests.harness.synapse import MakeMember, Member

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "coopbot-test/coopbot:local"
BUILD_TIMEOUT = 1800  # a cold build (debootstrap) takes about 5 minutes here
START_TIMEOUT = 90.0  # container start, login and first sync
DEPLOY_TIMEOUT = 300.0
USER_ID = 10001  # the image's coopbot user
SOCKET = "/var/run/docker.sock"


def recipe_files() -> dict[str, str]:
    """Every file of recipe/ (the tree a recipe maintainer would push)."""
    folder = ROOT / "recipe"
    return {str(path.relative_to(folder)): path.read_text()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def recipe_version(files: dict[str, str]) -> str:
    labels = yaml.safe_load(files["compose.yml"])["services"]["app"]["deploy"]["labels"]
    version = next(label.split("=", 1)[1] for label in labels
                   if label.startswith("coop-cloud.${STACK_NAME}.version="))
    return str(version)


# Test-only overlay: the homeserver listens on 127.0.0.1 only, so the deployed bot joins the
# host's network (a stack service can, through the predefined `host` network).
HOSTNET_OVERLAY = """\
version: "3.8"

services:
  app:
    networks:
      - hostnet

networks:
  hostnet:
    external: true
    name: host
"""


def test_recipe_follows_co_op_cloud_conventions() -> None:
    files = recipe_files()
    compose = yaml.safe_load(files["compose.yml"])
    app = compose["services"]["app"]
    version = recipe_version(files)
    assert re.fullmatch(r"\d+\.\d+\.\d+\+[\w.-]+", version)
    package = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version.endswith(f"+{package}"), "the recipe ships the coopbot version it names"
    assert f"release/{version}" in files, "every release has release notes"
    assert app["image"].startswith("${COOPBOT_IMAGE:-"), "tests point the image elsewhere"
    assert app["deploy"]["update_config"]["failure_action"] == "rollback"
    assert app["deploy"]["update_config"]["order"] == "stop-first"  # never two bots at once
    labels = app["deploy"]["labels"]
    for key in ("version", "timeout", "recipe"):
        assert any(label.startswith(f"coop-cloud.${{STACK_NAME}}.{key}=") for label in labels)
    assert "backupbot.backup=${ENABLE_BACKUPS:-true}" in labels
    assert "state:/data" in app["volumes"]
    assert app["healthcheck"]["test"] == ["CMD", "coopbot", "health"]
    assert {s["source"] for s in app["secrets"]} == {"matrix_password", "ssh_key",
                                                      "ssh_known_hosts"}
    for name, secret in compose["secrets"].items():
        assert secret["external"] is True
        assert secret["name"] == f"${{STACK_NAME}}_{name}_${{SECRET_{name.upper()}_VERSION}}"
        assert f"SECRET_{name.upper()}_VERSION=v1" in files[".env.sample"]
    assert compose["configs"]["config"]["template_driver"] == "golang"
    assert "export CONFIG_YAML_VERSION=" in files["abra.sh"]


@pytest.fixture(scope="session")
def coopbot_image(dockerd: Dockerd) -> str:
    started = time.monotonic()
    try:
        done = subprocess.run([str(ROOT / "scripts/build-image"), "--tag", IMAGE], cwd=ROOT,
                              capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"scripts/build-image took more than {BUILD_TIMEOUT} s: {error.stderr!r}")
    if done.returncode != 0:
        pytest.fail(f"scripts/build-image failed ({done.returncode}):\n{done.stderr[-5000:]}")
    assert done.stdout.strip().splitlines()[-1] == IMAGE
    print(f"\nscripts/build-image: {time.monotonic() - started:.0f} s\n{done.stderr}")
    return IMAGE


def readable_dir(path: Path) -> Path:
    """A folder the container's user may read (pytest's tmp folders are private to root)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


def chown_tree(path: Path, uid: int) -> None:
    for item in [path, *path.rglob("*")]:
        os.lchown(item, uid, uid)


def container_logs(name: str, tail: str = "60") -> str:
    done = subprocess.run(["docker", "logs", "--tail", tail, name], capture_output=True,
                          text=True, timeout=30)
    return done.stdout + done.stderr


@dataclass
class Containerised:
    name: str
    user_id: str
    password: str
    alice: Member
    room: str
    recipe_repo: Path
    abra: Path

    async def ask(self, body: str, *, timeout: float = 60.0, room: str | None = None,
                  sender: str | None = None) -> str:
        """Send a command; the first answer that is not a ⏳ status message."""
        room = room or self.room
        sender = sender or self.user_id
        event_id = await self.alice.send(room, body)

        def answers(event: RoomMessage) -> bool:
            content = event.source.get("content", {})
            return (content.get("m.relates_to", {}).get("m.in_reply_to", {})
                    .get("event_id") == event_id
                    and not str(content.get("body", "")).startswith("⏳"))

        try:
            reply = await self.alice.wait_for_message(room, sender=sender, predicate=answers,
                                                      timeout=timeout, after_event_id=event_id)
        except AssertionError as error:
            raise AssertionError(
                f"{error}\n--- container log:\n{container_logs(self.name)}") from error
        return str(reply.source["content"]["body"])


@pytest.fixture(scope="module")
async def containerised(
    coopbot_image: str, synapse: LocalSynapse, make_member: MakeMember, sshd: Sshd,
    make_recipe_repo: MakeRecipeRepo, tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Containerised]:
    tag = uuid.uuid4().hex[:6]
    alice = await make_member(f"alice-img-{tag}")
    room = await alice.create_room(name="image test")
    password = secrets.token_urlsafe(12)
    user_id = await asyncio.to_thread(synapse.register, f"bot-img-{tag}", password)

    files = recipe_files()
    files["compose.hostnet.yml"] = HOSTNET_OVERLAY
    recipe_repo = make_recipe_repo("coopbot", [RecipeRelease(recipe_version(files), files)])
    chown_tree(recipe_repo, USER_ID)  # git refuses repos of another owner ("dubious ownership")
    work = tmp_path_factory.mktemp("image")
    work.chmod(0o755)
    abra = readable_dir(work / "abra")
    (abra / "servers" / "local").mkdir(parents=True)
    chown_tree(abra, USER_ID)  # deploys rewrite TYPE= in the app's env file
    etc = readable_dir(work / "etc")
    (etc / "password").write_text(password)
    (etc / "id_ed25519").write_bytes(sshd.key_file.read_bytes())
    (etc / "known_hosts").write_bytes(sshd.known_hosts_file.read_bytes())
    health_port = free_port()
    config: dict[str, Any] = {
        "matrix": {"homeserver": synapse.base_url, "user_id": user_id,
                   "password_file": "password", "store": "/data/matrix",
                   "device_name": "coopbot (container)"},
        "database": "/data/coopbot.db",
        "admins": [alice.user_id],
        "rooms": {room: {"servers": ["local", "remote"]}},
        "servers": {
            "local": {"kind": "local", "socket": SOCKET, "check_images": True},
            "remote": {"kind": "ssh", "host": sshd.host, "port": sshd.port, "user": sshd.user,
                       "key_file": "id_ed25519", "known_hosts_file": "known_hosts",
                       "connect_timeout": 5},
        },
        "apps_dir": "/abra",
        "recipes": {"cache": "/data/recipes", "overrides": {"coopbot": "/recipes/coopbot.git"}},
        "health": {"enabled": True, "bind": "127.0.0.1", "port": health_port},
        "logging": {"format": "json"},
    }
    (etc / "config.yaml").write_text(yaml.safe_dump(config))
    for item in etc.iterdir():
        item.chmod(0o644)

    name = f"coopbot-test-{tag}"
    volume = f"{name}-state"
    docker(
        "run", "--detach", "--name", name, "--network", "host",
        "--group-add", str(os.stat(SOCKET).st_gid),
        "--volume", f"{SOCKET}:{SOCKET}",
        "--volume", f"{etc}:/etc/coopbot:ro",
        "--volume", f"{volume}:/data",
        "--volume", f"{recipe_repo}:/recipes/coopbot.git:ro",
        "--volume", f"{abra}:/abra",
        "--env", "COOPBOT_CONFIG=/etc/coopbot/config.yaml",
        "--health-interval", "2s", "--health-start-period", "60s",
        coopbot_image,
    )
    try:
        await alice.invite(room, user_id)
        try:
            await alice.wait_joined(room, user_id, timeout=START_TIMEOUT)
        except AssertionError as error:
            raise AssertionError(
                f"{error}\n--- container log:\n{container_logs(name)}") from error
        yield Containerised(name, user_id, password, alice, room, recipe_repo, abra)
    finally:
        docker("rm", "--force", name, check=False)
        docker("volume", "rm", "--force", volume, check=False)


async def test_image_answers_ping_and_servers_in_a_room(containerised: Containerised) -> None:
    c = containerised
    assert (await c.ask("!ping")).startswith("pong: your message reached me")
    servers = await c.ask("!servers")
    lines = [line.removeprefix("- ") for line in servers.splitlines()]
    local = next(line for line in lines if " local:" in line)
    assert local.startswith("✅") and "swarm manager" in local, servers
    remote = next(line for line in lines if " remote:" in line)
    assert remote.startswith("✅") and "swarm manager" in remote, servers

    # Non-root; the image's HEALTHCHECK (`coopbot health` -> /healthz) turns healthy.
    assert docker("exec", c.name, "id", "-u").strip() == str(USER_ID)
    deadline = time.monotonic() + 60
    while (health := docker("inspect", "--format", "{{.State.Health.Status}}",
                            c.name).strip()) != "healthy":
        assert health == "starting" and time.monotonic() < deadline, (
            f"container health {health}:\n{docker('inspect', c.name)}")
        await asyncio.sleep(1)
    # JSON lines on request, and no secret in them.
    logs = container_logs(c.name, tail="all")
    entries = [json.loads(line) for line in logs.splitlines() if line.strip()]
    assert any(e["message"].startswith("logged in as") for e in entries), logs
    assert c.password not in logs


async def test_the_image_deploys_its_own_recipe_and_the_deployed_bot_answers(
    containerised: Containerised, synapse: LocalSynapse, sshd: Sshd, dockerd: Dockerd,
) -> None:
    c = containerised
    domain = f"bot{uuid.uuid4().hex[:6]}.example.org"
    stack = stack_of(domain)
    password = secrets.token_urlsafe(12)
    deployed_id = await asyncio.to_thread(synapse.register, f"bot-{stack}", password)
    room = await c.alice.create_room(name="deployed bot")
    env = {
        "TYPE": "coopbot",
        "DOMAIN": domain,
        "COMPOSE_FILE": '"compose.yml:compose.hostnet.yml"',
        "COOPBOT_IMAGE": IMAGE,
        "MATRIX_HOMESERVER": synapse.base_url,
        "MATRIX_USER_ID": deployed_id,
        "DOCKER_GID": str(os.stat(SOCKET).st_gid),
        "COOPBOT_ADMINS": f"'{json.dumps([c.alice.user_id])}'",
        "COOPBOT_ROOMS": f"'{json.dumps({room: {'servers': ['local']}})}'",
        "HEALTH_PORT": str(free_port()),
        "LOG_FORMAT": "json",
        "TIMEOUT": "240",
        "ENABLE_BACKUPS": "true",
        "SECRET_MATRIX_PASSWORD_VERSION": "v1",
        "SECRET_SSH_KEY_VERSION": "v1",
        "SECRET_SSH_KNOWN_HOSTS_VERSION": "v1",
    }
    env_file = c.abra / "servers" / "local" / f"{domain}.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    os.chown(env_file, USER_ID, USER_ID)
    secret_values = {
        "matrix_password": password.encode(),
        "ssh_key": sshd.key_file.read_bytes(),
        "ssh_known_hosts": sshd.known_hosts_file.read_bytes(),
    }
    try:
        for secret, value in secret_values.items():
            docker("secret", "create", f"{stack}_{secret}_v1", "-", input=value)
        answer = await c.ask(f"!deploy {domain}", timeout=DEPLOY_TIMEOUT)
        version = recipe_version(recipe_files())
        assert f"`{domain}` deployed" in answer, answer
        assert f"{version} on local, converged and healthy" in answer, answer
        assert f"TYPE=coopbot:{version}\n" in env_file.read_text()

        service = f"{stack}_app"
        spec = json.loads(docker("service", "inspect", service))[0]["Spec"]
        assert spec["TaskTemplate"]["ContainerSpec"]["Image"].startswith(IMAGE)
        assert spec["Labels"][f"coop-cloud.{stack}.version"] == version

        await c.alice.invite(room, deployed_id)
        await c.alice.wait_joined(room, deployed_id, timeout=START_TIMEOUT)
        answer = await c.ask("!ping", room=room, sender=deployed_id)
        assert answer.startswith("pong: your message reached me")
        listed = await c.ask(f"!ps {domain}")
        assert version in listed and IMAGE in listed, listed
    finally:
        remove_stack(stack)
