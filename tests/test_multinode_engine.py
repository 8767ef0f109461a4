"""Per-node helpers on the REAL multi-node swarm, through the manager over SSH: an exec into a
task on a worker, its secret never in a spec, helpers past their time and helpers a crashed
bot left behind removed."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from coopbot.errors import DockerError
from coopbot.servers import DockerEngine
from coopbot.servers.containers import HELPER_LABEL
from coopbot.servers.node_helpers import DEADLINE_LABEL
from tests.harness.multinode import MultiNodeSwarm

pytestmark = pytest.mark.real

SECRET = f"s3cret-{uuid.uuid4().hex}"


@pytest.fixture
async def engine(multinode_swarm: MultiNodeSwarm, docker_cli_image: str
                 ) -> AsyncIterator[DockerEngine]:
    spec = multinode_swarm.spec()
    engine = DockerEngine(type(spec)(**{**spec.__dict__, "node_helper_image": docker_cli_image}))
    try:
        yield engine
    finally:
        await engine.close()


def helper_specs(swarm: MultiNodeSwarm) -> list[str]:
    ids = swarm.docker(swarm.manager, "service", "ls", "-q", "--filter",
                       f"label={HELPER_LABEL}").split()
    return [swarm.docker(swarm.manager, "service", "inspect", i) for i in ids]


async def test_exec_in_a_workers_task_keeps_its_env_out_of_every_spec(
    engine: DockerEngine, multinode_swarm: MultiNodeSwarm
) -> None:
    swarm, worker = multinode_swarm, multinode_swarm.workers[1]
    name = f"x{uuid.uuid4().hex[:8]}"
    swarm.docker(swarm.manager, "service", "create", "--detach", "--name", name,
                 "--constraint", f"node.hostname=={worker.name}", "--endpoint-mode", "dnsrr",
                 "coopbot-test/app:v1", "sleep", "100000")
    try:
        deadline = time.monotonic() + 60
        while (task := await engine.containers.running_task(name)) is None:
            assert time.monotonic() < deadline, "the service never ran"
            await asyncio.sleep(0.3)
        assert task.node_id == worker.node_id
        running = asyncio.create_task(engine.helpers.exec_in_task(
            task, ["sh", "-c", 'sleep 2; echo "got $VALUE"; hostname; exit 7'],
            env={"VALUE": SECRET}, timeout=60))
        specs: list[str] = []
        while not running.done():
            specs += helper_specs(swarm)
            await asyncio.sleep(0.2)
        result = await running
        assert result.exit_code == 7
        container = swarm.docker(worker, "ps", "-q", "--filter",
                                 f"label=com.docker.swarm.service.name={name}").split()
        assert f"got {SECRET}" in result.output and container[0] in result.output
        assert specs, "the helper service was never seen: the check would prove nothing"
        assert all(SECRET not in spec for spec in specs)
        assert helper_specs(swarm) == []
        assert swarm.docker(swarm.manager, "secret", "ls", "-q", "--filter",
                            f"label={HELPER_LABEL}").split() == []
        found = await engine.helpers.exec_in_service(name, ["hostname"], env={}, timeout=60)
        assert found is not None and found[0].node_id == worker.node_id
        assert found[1].exit_code == 0 and container[0] in found[1].output
    finally:
        swarm.docker(swarm.manager, "service", "rm", name, check=False)


async def test_a_helper_past_its_time_and_one_left_by_a_crash_are_removed(
    engine: DockerEngine, multinode_swarm: MultiNodeSwarm
) -> None:
    swarm, worker = multinode_swarm, multinode_swarm.workers[0]
    with pytest.raises(DockerError, match="did not finish within 2 s"):
        await engine.helpers.run(worker.node_id, "coopbot-test/app:v1", entrypoint=["sleep"],
                                 args=["60"], env={}, secret_env={"X": "y"}, binds=[],
                                 timeout=2)
    assert helper_specs(swarm) == []

    # A crashed bot's helper: labelled, its deadline gone by, with a secret.
    secret = swarm.docker(swarm.manager, "secret", "create", "--label", f"{HELPER_LABEL}=x",
                          f"h{uuid.uuid4().hex[:8]}", "-", input=b"X=y\n").strip()
    swarm.docker(swarm.manager, "service", "create", "--detach", "--name",
                 f"h{uuid.uuid4().hex[:8]}", "--label", f"{HELPER_LABEL}=backup",
                 "--label", f"{DEADLINE_LABEL}={time.time() - 1:.0f}", "--restart-condition",
                 "none", "--constraint", f"node.id=={worker.node_id}",
                 "coopbot-test/app:v1", "sleep", "100000")
    assert len(helper_specs(swarm)) == 1
    # The secret is younger than a minute: it may belong to a helper being created right now.
    await engine.helpers.remove_abandoned(older_than=600)
    assert helper_specs(swarm) == []
    inspected = json.loads(swarm.docker(swarm.manager, "secret", "inspect", secret))
    assert inspected[0]["ID"] == secret
    swarm.docker(swarm.manager, "secret", "rm", secret)
