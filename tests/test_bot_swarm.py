"""Swarm operations end to end: real room on Synapse -> real bot -> real swarm (local socket and
over a real sshd) -> real recipe repo with annotated tags -> abra-style env files."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.apps import app_env, create_secret, docker, stack_of, unique_domain
from tests.harness.bot import RunningBot, StartBot, ask_bot, coop_room
from tests.harness.recipes import AbraDir
from tests.harness.swarm import (
    AppImages,
    Dockerd,
    Sshd,
    free_port,
    remove_stack,
    ssh_server,
)
from tests.harness.synapse import MakeMember, Member

pytestmark = pytest.mark.real

DEPLOY_TIMEOUT = 150.0


@dataclass
class SwarmRoom:
    bot: RunningBot
    room: str
    alice: Member  # room creator, admin
    bob: Member  # operator (50)
    carol: Member  # member (0)
    abra: AbraDir

    async def ask(self, member: Member, body: str, *, timeout: float = DEPLOY_TIMEOUT) -> str:
        """Send a command; return the bot's final answer (not the ⏳ status message)."""
        return await ask_bot(member, self.room, self.bot.user_id, body, timeout=timeout)


@pytest.fixture
async def swarm_room(
    make_member: MakeMember, start_bot: StartBot, abra_dir: AbraDir, tmp_path: Path,
    dockerd: Dockerd, test_images: AppImages, sshd: Sshd, testapp_recipe: Path,
) -> SwarmRoom:
    alice, bob, carol, room = await coop_room(make_member)
    servers: dict[str, Any] = {
        "local": {"kind": "local", "socket": dockerd.socket, "check_images": True},
        "remote": ssh_server(sshd, check_images=True, connect_timeout=5),
        "changed": ssh_server(sshd, known_hosts_file=str(sshd.wrong_known_hosts_file),
                              connect_timeout=5),
        "down": {
            "kind": "ssh", "host": "127.0.0.1", "port": free_port(), "user": "root",
            "key_file": str(sshd.key_file), "known_hosts_file": str(sshd.known_hosts_file),
            "connect_timeout": 3,
        },
    }
    bot = await start_bot(
        rooms={room: {"servers": list(servers)}},
        servers=servers,
        apps_dir=str(abra_dir.path),
        recipes={"overrides": {"testapp": str(testapp_recipe)},
                 "cache": str(tmp_path / "recipe-cache")},
    )
    await alice.invite(room, bot.user_id)
    await alice.wait_joined(room, bot.user_id)
    return SwarmRoom(bot, room, alice, bob, carol, abra_dir)


@pytest.fixture
def cleanup_stacks() -> Any:
    stacks: list[str] = []
    yield stacks
    for stack in stacks:
        remove_stack(stack)


async def test_deploy_upgrade_failed_upgrade_rollback_undeploy_over_ssh(
    swarm_room: SwarmRoom, cleanup_stacks: list[str]
) -> None:
    s = swarm_room
    domain = unique_domain()
    cleanup_stacks.append(stack_of(domain))
    create_secret(domain)
    env_path = app_env(s.abra, "remote", domain)
    original_env = env_path.read_text()

    answer = await s.ask(s.bob, f"!deploy {domain} 1.0.0+v1")
    assert f"`{domain}` deployed" in answer and "1.0.0+v1 on remote, converged and healthy" in answer
    # abra's record of the deployed version, every other byte of the file unchanged
    assert env_path.read_text() == original_env.replace("TYPE=testapp\n", "TYPE=testapp:1.0.0+v1\n")

    answer = await s.ask(s.bob, f"!upgrade {domain} 1.1.0+v2")
    assert "upgraded" in answer and "1.0.0+v1 -> 1.1.0+v2" in answer
    assert "Release notes 1.1.0+v2:" in answer and "Serves the v2 page." in answer

    # The newest release (v3) is unhealthy: the upgrade fails and the bot returns to v2.
    answer = await s.ask(s.bob, f"!upgrade {domain}")
    assert "upgrade" in answer and "1.1.0+v2 -> 1.2.0+v3 failed" in answer
    assert "Service `app`:" in answer
    assert "Returned to 1.1.0+v2: running now is 1.1.0+v2, converged and healthy." in answer
    assert "TYPE=testapp:1.1.0+v2\n" in env_path.read_text()

    ps = await s.ask(s.carol, f"!ps {domain}")
    assert "1.1.0+v2" in ps and "coopbot-test/app:v2" in ps

    answer = await s.ask(s.bob, f"!rollback {domain}")
    assert "rolled back" in answer and "1.1.0+v2 -> 1.0.0+v1" in answer
    assert "TYPE=testapp:1.0.0+v1\n" in env_path.read_text()

    answer = await s.ask(s.bob, f"!undeploy {domain}")
    assert f"`{domain}` undeployed" in answer
    assert f"`{stack_of(domain)}_data`" in answer  # the volume is kept and named
    volumes = docker("volume", "ls", "-q")
    assert f"{stack_of(domain)}_data" in volumes.split()
    secrets = docker("secret", "ls", "--format", "{{.Name}}")
    assert f"{stack_of(domain)}_db_password_v1" in secrets.split()

    assert s.bot.bot is not None
    history = await s.bot.bot.operations.history(domain)
    assert [(op.kind, op.from_version, op.to_version, op.result) for op in reversed(history)] == [
        ("deploy", None, "1.0.0+v1", "ok"),
        ("upgrade", "1.0.0+v1", "1.1.0+v2", "ok"),
        ("upgrade", "1.1.0+v2", "1.2.0+v3", "failed"),
        ("rollback", "1.1.0+v2", "1.0.0+v1", "ok"),
        ("undeploy", "1.0.0+v1", None, "ok"),
    ]
    assert all(op.requester == s.bob.user_id for op in history)
    audit = [r for r in await s.bot.audit(200) if r.decision == "operation"]
    assert sorted(r.operation_id or "" for r in audit) == sorted(op.id for op in history)
    assert all(r.sender == s.bob.user_id for r in audit)


async def test_preflight_lists_missing_secret_env_key_and_image(
    swarm_room: SwarmRoom, cleanup_stacks: list[str]
) -> None:
    s = swarm_room
    domain = unique_domain()
    cleanup_stacks.append(stack_of(domain))
    # No secret created, and GREETING (set in .env.sample) missing from the env file.
    s.abra.write_app("local", domain, extra={"SECRET_DB_PASSWORD_VERSION": "v1"})
    answer = await s.ask(s.bob, f"!deploy {domain} 1.0.0+v1")
    assert answer.startswith("Preflight found problems, nothing was changed:")
    assert "lacks keys that the recipe's .env.sample sets: `GREETING`" in answer
    assert f"missing swarm secrets on local: `{stack_of(domain)}_db_password_v1`" in answer
    assert docker("stack", "ls", "--format", "{{.Name}}").split().count(stack_of(domain)) == 0


async def test_unknown_version_and_not_deployed(swarm_room: SwarmRoom) -> None:
    s = swarm_room
    domain = unique_domain()
    app_env(s.abra, "local", domain)
    answer = await s.ask(s.bob, f"!deploy {domain} 9.9.9")
    assert "Recipe `testapp` has no version `9.9.9`. Newest: 1.2.0+v3, 1.1.0+v2, 1.0.0+v1." in answer
    answer = await s.ask(s.bob, f"!upgrade {domain}")
    assert answer == f"`{domain}` is not deployed; use `!deploy` first."
    answer = await s.ask(s.bob, "!deploy nosuch.example.org")
    assert "nosuch.example.org" in answer


async def test_members_may_look_but_not_change(swarm_room: SwarmRoom) -> None:
    s = swarm_room
    domain = unique_domain()
    app_env(s.abra, "local", domain)
    assert await s.ask(s.carol, f"!deploy {domain}") == "`deploy` needs the operator role in this room."
    help_text = await s.ask(s.carol, "!help")
    assert "!ps <app>" in help_text and "!deploy" not in help_text
    versions = await s.ask(s.carol, "!versions testapp")
    assert versions.splitlines()[1:4] == ["- `1.2.0+v3`", "- `1.1.0+v2`", "- `1.0.0+v1`"]


async def test_servers_reports_each_server_and_fails_fast(swarm_room: SwarmRoom) -> None:
    s = swarm_room
    started = asyncio.get_running_loop().time()
    answer = await s.ask(s.carol, "!servers")
    took = asyncio.get_running_loop().time() - started
    lines = [line.removeprefix("- ") for line in answer.splitlines()]
    local = next(line for line in lines if " local:" in line)
    assert local.startswith("✅") and "swarm manager" in local and "1 node(s)" in local
    remote = next(line for line in lines if " remote:" in line)
    assert remote.startswith("✅") and "swarm manager" in remote
    changed = next(line for line in lines if "changed" in line)
    assert changed.startswith("❌") and "CHANGED" in changed
    down = next(line for line in lines if "server down unreachable" in line)
    assert down.startswith("❌") and "refused" in down
    # an unreachable server never holds up the answer for long (connect timeout is 3-5 s)
    assert took < 30, f"!servers took {took:.1f} s"


async def test_apps_lists_every_app_across_servers(
    swarm_room: SwarmRoom, cleanup_stacks: list[str]
) -> None:
    s = swarm_room
    deployed = unique_domain()
    idle = unique_domain()
    cleanup_stacks.append(stack_of(deployed))
    create_secret(deployed)
    app_env(s.abra, "local", deployed)
    app_env(s.abra, "remote", idle)
    assert "deployed" in await s.ask(s.bob, f"!deploy {deployed} 1.0.0+v1")
    answer = await s.ask(s.carol, "!apps")
    row = next(line for line in answer.splitlines() if line.startswith(deployed))
    assert "local" in row and "1.0.0+v1" in row and "1.2.0+v3 (upgrade available)" in row
    assert "running" in row
    idle_row = next(line for line in answer.splitlines() if line.startswith(idle))
    assert "remote" in idle_row and "not deployed" in idle_row
    logs = await s.ask(s.bob, f"!logs {deployed}")
    assert f"log lines of `{deployed}` service `app` (env values redacted)" in logs
    assert "hello-from-env" not in logs


async def test_a_second_operation_on_a_busy_app_is_refused(
    swarm_room: SwarmRoom, cleanup_stacks: list[str]
) -> None:
    s = swarm_room
    domain = unique_domain()
    cleanup_stacks.append(stack_of(domain))
    create_secret(domain)
    app_env(s.abra, "local", domain)
    first = asyncio.create_task(s.ask(s.bob, f"!deploy {domain} 1.0.0+v1"))
    await asyncio.sleep(1.0)
    second = await s.ask(s.alice, f"!undeploy {domain}", timeout=30)
    assert second.startswith(f"busy: deploy of `{domain}` by {s.bob.user_id} since ")
    assert "deployed" in await first
