"""The multi-node harness itself: three real nodes in one swarm, the manager over SSH."""

from __future__ import annotations

from coopbot.servers import DockerEngine
from tests.harness.multinode import MultiNodeSwarm
from tests.harness.swarm import AppImages


async def test_three_nodes_one_swarm_manager_over_ssh(multinode_swarm: MultiNodeSwarm,
                                                      test_images: AppImages) -> None:
    swarm = multinode_swarm
    engine = DockerEngine(swarm.spec())
    try:
        info = await engine.info()
    finally:
        await engine.close()
    assert info.swarm_role == "manager"
    assert sorted(n.hostname for n in info.nodes) == sorted(n.name for n in swarm.nodes)
    assert all(n.state == "ready" for n in info.nodes)
    for worker in swarm.workers:
        # Each worker has its own engine, with the images loaded and no view of the others.
        assert swarm.docker(worker, "info", "--format", "{{.Name}}").strip() == worker.name
        assert test_images.v1 in swarm.docker(worker, "images", "--format",
                                              "{{.Repository}}:{{.Tag}}").split()
