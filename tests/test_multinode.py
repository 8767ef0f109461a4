"""Multi-node swarm end to end: real room -> real bot -> the manager over SSH -> a real
three-node swarm (tests/harness/multinode.py) -> restic in helpers on the worker.

The `nodetest` recipe pins its data service to a worker; a stale volume of the same name,
with other content, sits on the manager (as a task that once ran there leaves one). The
backup, the hooks and the restore must all act on the worker's copy and never touch the stale
one.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nio import RoomMessage

from coopbot.servers.containers import HELPER_LABEL
from tests.harness.backups import ResticRepository
from tests.harness.bot import RunningBot, StartBot, answer_to, coop_room
from tests.harness.multinode import MultiNodeSwarm, SwarmNode
from tests.harness.recipes import AbraDir, MakeRecipeRepo, RecipeRelease
from tests.harness.swarm import AppImages
from tests.harness.synapse import MakeMember, Member

pytestmark = pytest.mark.real

TIMEOUT = 150.0
STACK_LABEL = "com.docker.stack.namespace"

_COMPOSE = """\
version: "3.8"
services:
  app:
    image: coopbot-test/app:v1
    command: ["sh", "-c", "[ -e /data/value.txt ] || echo $${{INITIAL}} > /data/value.txt; exec httpd -f -p 80 -h /www"]
    environment:
      - INITIAL=${{INITIAL}}
    volumes:
      - data:/data
    stop_grace_period: 1s
    deploy:
      endpoint_mode: dnsrr
      placement:
        constraints:
          - "node.hostname == ${{DATA_NODE}}"
      labels:
        - "coop-cloud.${{STACK_NAME}}.version={version}"
        - "coop-cloud.${{STACK_NAME}}.timeout=120"
        - "backupbot.backup=true"
        - "backupbot.backup.pre-hook=cat /data/value.txt > /data/dump.txt"
        - "backupbot.restore.post-hook=echo restored > /data/post-restore.txt"
volumes:
  data:
"""


@pytest.fixture(scope="session")
def nodetest_recipe(make_recipe_repo: MakeRecipeRepo, test_images: AppImages) -> Path:
    version = "1.0.0+v1"
    tree = {"README.md": "# nodetest\n", "compose.yml": _COMPOSE.format(version=version),
            ".env.sample": "TYPE=nodetest\nDOMAIN=nodetest.example.com\n"}
    return make_recipe_repo("nodetest", [RecipeRelease(version, tree)])


@dataclass
class NodeRoom:
    bot: RunningBot
    room: str
    alice: Member
    bob: Member
    swarm: MultiNodeSwarm
    abra: AbraDir
    repository: ResticRepository

    async def ask(self, member: Member, body: str, timeout: float = TIMEOUT) -> str:
        event = await member.send(self.room, body)
        return await answer_to(member, self.room, self.bot.user_id, event, timeout=timeout)

    async def alert(self, *texts: str, timeout: float = 60.0) -> tuple[str, float]:
        """The bot's first message holding every one of `texts`, and when it came."""

        def matches(event: RoomMessage) -> bool:
            body = str(event.source.get("content", {}).get("body", ""))
            return all(text in body for text in texts)

        found = await self.alice.wait_for_message(self.room, sender=self.bot.user_id,
                                                  predicate=matches, timeout=timeout)
        return str(found.source["content"]["body"]), time.monotonic()


@pytest.fixture
async def node_room(make_member: MakeMember, start_bot: StartBot, abra_dir: AbraDir,
                    tmp_path: Path, multinode_swarm: MultiNodeSwarm, nodetest_recipe: Path,
                    restic_image: str, docker_cli_image: str,
                    restic_repository: ResticRepository) -> NodeRoom:
    alice, bob, _carol, room = await coop_room(make_member)
    servers: dict[str, Any] = {"multi": multinode_swarm.server_config(
        connect_timeout=5, node_helper_image=docker_cli_image)}
    # The harness's nodes share this machine's disk: the path is shared storage for them.
    backups = {"multi": {"repository": str(restic_repository.path),
                         "password_file": str(restic_repository.password_file),
                         "helper_image": restic_image, "shared_repository": True}}
    bot = await start_bot(
        rooms={room: {"servers": ["multi"], "notifications": True}}, servers=servers,
        backups=backups, apps_dir=str(abra_dir.path),
        policies={"restore": {"approvals": 0}, "undeploy": {"approvals": 0}},
        recipes={"overrides": {"nodetest": str(nodetest_recipe)},
                 "cache": str(tmp_path / "recipe-cache")},
    )
    await alice.invite(room, bot.user_id)
    await alice.wait_joined(room, bot.user_id)
    return NodeRoom(bot, room, alice, bob, multinode_swarm, abra_dir, restic_repository)


@pytest.fixture
def node_stacks(multinode_swarm: MultiNodeSwarm) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        multinode_swarm.docker(multinode_swarm.manager, "stack", "rm", name, check=False)


def write_volume(swarm: MultiNodeSwarm, node: SwarmNode, volume: str, stack: str,
                 files: dict[str, str]) -> None:
    swarm.docker(node, "volume", "create", "--label", f"{STACK_LABEL}={stack}", volume)
    script = "; ".join(f"echo {text} > /v/{name}" for name, text in files.items())
    swarm.docker(node, "run", "--rm", "--network", "none", "-v", f"{volume}:/v",
                 "--entrypoint", "sh", "coopbot-test/app:v1", "-c", script)


def worker_container(swarm: MultiNodeSwarm, node: SwarmNode, stack: str) -> str:
    ids = swarm.docker(node, "ps", "-q", "--filter",
                       f"label=com.docker.swarm.service.name={stack}_app").split()
    assert len(ids) == 1, ids
    return ids[0]


def restic(repository: ResticRepository, *args: str) -> str:
    env = {"RESTIC_REPOSITORY": str(repository.path),
           "RESTIC_PASSWORD_FILE": str(repository.password_file), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["restic", *args], env=env, capture_output=True, text=True,
                          check=True, timeout=120).stdout


def helpers_left(swarm: MultiNodeSwarm) -> list[str]:
    manager = swarm.manager
    return (swarm.docker(manager, "service", "ls", "-q", "--filter", f"label={HELPER_LABEL}")
            .split() + swarm.docker(manager, "secret", "ls", "-q", "--filter",
                                    f"label={HELPER_LABEL}").split())


async def test_backup_hooks_and_restore_act_on_the_workers_copy_never_the_stale_one(
    node_room: NodeRoom, node_stacks: list[str]
) -> None:
    r, swarm = node_room, node_room.swarm
    worker, manager = swarm.workers[0], swarm.manager
    domain = f"n{uuid.uuid4().hex[:8]}.example.org"
    stack = domain.replace(".", "_")
    volume = f"{stack}_data"
    r.abra.write_app("multi", domain, recipe="nodetest",
                     extra={"INITIAL": "worker-data", "DATA_NODE": worker.name})
    # A stale copy on the manager, as a task that once ran there leaves behind.
    write_volume(swarm, manager, volume, stack, {"value.txt": "STALE"})
    node_stacks.append(stack)

    answer = await r.ask(r.bob, f"!deploy {domain}")
    assert "converged and healthy" in answer, answer
    assert swarm.volume_file(worker, volume, "value.txt") == "worker-data\n"

    answer = await r.ask(r.bob, f"!backup {domain}")
    assert "verified" in answer, answer
    found = re.search(r"snapshot `([0-9a-f]{8})`", answer)
    assert found is not None, answer
    # The snapshot holds the worker's data, dumped by the pre-hook in the worker's task, and
    # says it was taken on the worker (swarm told the helper its node).
    assert restic(r.repository, "dump", "latest", "/backup/data/value.txt") == "worker-data\n"
    assert restic(r.repository, "dump", "latest", "/backup/data/dump.txt") == "worker-data\n"
    snapshots = restic(r.repository, "snapshots", "--json")
    assert f"node={worker.node_id}" in snapshots

    # The worker's data changes; the restore brings it back there.
    container = worker_container(swarm, worker, stack)
    swarm.docker(worker, "exec", container, "sh", "-c", "echo changed > /data/value.txt")
    answer = await r.ask(r.bob, f"!restore {domain}")
    assert "restored" in answer, answer
    assert swarm.volume_file(worker, volume, "value.txt") == "worker-data\n"
    assert swarm.volume_file(worker, volume, "post-restore.txt") == "restored\n"

    # The stale copy on the manager was never touched: no dump, no restore, same content.
    assert swarm.volume_file(manager, volume, "value.txt") == "STALE\n"
    assert swarm.volume_file(manager, volume, "dump.txt") is None
    assert swarm.volume_file(manager, volume, "post-restore.txt") is None
    assert helpers_left(swarm) == []

    # Stopped, the app has no task to say where its data is, and two nodes have the volume:
    # the backup refuses and names both rather than guess.
    swarm.docker(manager, "service", "scale", "--detach", f"{stack}_app=0")
    answer = await r.ask(r.bob, f"!backup {domain}")
    assert "volumes exist on several nodes" in answer, answer
    assert f"`{manager.name}`" in answer and f"`{worker.name}`" in answer
    assert f"backups.multi.volume_nodes.{domain}" in answer
    assert "`--node <node>`" in answer
    # The command may say which: a node of another swarm is refused, the worker's copy is
    # taken (its pre-hook then needs the task, which the stopped app does not have).
    answer = await r.ask(r.bob, f"!backup {domain} --node nosuch")
    assert "`nosuch` is not a node of server multi" in answer, answer
    answer = await r.ask(r.bob, f"!backup {domain} --node {worker.name}")
    assert "has a backup hook but no running task" in answer, answer
    assert swarm.volume_file(manager, volume, "dump.txt") is None
    assert helpers_left(swarm) == []


async def test_status_shows_nodes_and_a_drained_workers_pinned_app_is_announced(
    node_room: NodeRoom, node_stacks: list[str]
) -> None:
    r, swarm = node_room, node_room.swarm
    worker = swarm.workers[1]
    domain = f"s{uuid.uuid4().hex[:8]}.example.org"
    stack = domain.replace(".", "_")
    r.abra.write_app("multi", domain, recipe="nodetest",
                     extra={"INITIAL": "x", "DATA_NODE": worker.name})
    node_stacks.append(stack)
    # Deployed from outside (as with abra): alerts about an app the bot just deployed are
    # left to the operation's own report for a minute.
    compose = (_COMPOSE.format(version="1.0.0+v1").replace("$${INITIAL}", "x")
               .replace("${INITIAL}", "x").replace("${DATA_NODE}", worker.name)
               .replace("${STACK_NAME}", stack))
    swarm.docker(swarm.manager, "stack", "deploy", "-c", "-", stack, input=compose.encode())
    deadline = time.monotonic() + 60
    while not swarm.docker(worker, "ps", "-q", "--filter",
                           f"label=com.docker.swarm.service.name={stack}_app").strip():
        assert time.monotonic() < deadline, "the app never ran on the worker"
        await asyncio.sleep(0.3)

    ps = await r.ask(r.alice, f"!ps {domain}")
    header, row = ps.splitlines()[1:3]
    assert header.split()[:4] == ["service", "health", "replicas", "node"], ps
    assert row.split()[:4] == ["app", "none", "1/1", worker.name], ps

    servers = await r.ask(r.alice, "!servers")
    for node in swarm.nodes:
        line = next(x for x in servers.splitlines() if f" {node.name}:" in x)
        role = "manager (leader)" if node is swarm.manager else "worker"
        assert f"ready, active, {role}, Docker 20.10" in line, servers

    # Drained from outside the bot: the pinned task has nowhere to go.
    drained = time.monotonic()
    swarm.docker(swarm.manager, "node", "update", "--availability", "drain", worker.name)
    try:
        message, at = await r.alert(f"Node {worker.name} of server multi is drained",
                                    f"{stack} (service app: did NOT move")
        assert at - drained < 30, f"the drain was announced after {at - drained:.0f} s"
        message, at = await r.alert(f"Service app of {domain} on server multi has no running "
                                    f"task: its node {worker.name} is drained")
        assert at - drained < 30, message
        ps = await r.ask(r.alice, f"!ps {domain}")
        row = ps.splitlines()[2]
        assert re.match(r"app +no running task +0/1 +- +1\.0\.0\+v1 +- +no suitable node", row), ps
    finally:
        swarm.docker(swarm.manager, "node", "update", "--availability", "active", worker.name)
    await r.alert(f"Service app of {domain} on server multi runs again")

    answer = await r.ask(r.bob, f"!undeploy {domain}")
    assert f"`{stack}_data` on {worker.name}" in answer, answer

    # Nothing uses the app's image on the worker any more: a prune frees it there.
    assert "admin" in await r.ask(r.bob, "!prune multi")  # operators may not
    deadline = time.monotonic() + 60
    while swarm.docker(worker, "ps", "-aq", "--filter", f"label={STACK_LABEL}={stack}").strip():
        assert time.monotonic() < deadline, "the worker kept the app's container"
        await asyncio.sleep(0.3)
    try:
        answer = await r.ask(r.alice, "!prune multi")
        assert answer.startswith("Pruned multi: ") and "freed on 3 node(s)" in answer, answer
        freed = re.search(rf"- {worker.name}: ([\d.]+) (kB|MB|GB)", answer)
        assert freed is not None, answer
        assert "coopbot-test/app:v1" not in swarm.docker(
            worker, "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    finally:
        swarm.load_images()  # the other tests need them (no registry here)
