"""Node health on the REAL multi-node swarm: every node's disk, inodes and memory read by a
helper on that node, one debounced alert when a threshold is crossed and one recovery note;
plus the parsing, pure."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from coopbot.servers import ServerPool
from coopbot.servers.node_usage import UsageBoard, parse_reclaimed, parse_usage
from coopbot.watch.alerts import Alert
from coopbot.watch.node_health import NodeHealth, Thresholds
from tests.harness.multinode import MultiNodeSwarm

OUTPUT = """data-root /var/lib/docker
disk-root /dev/sda1 1000000 910000 90000 91% /host/var/lib/docker
inode-root /dev/sda1 5000 1000 4000 20% /host/var/lib/docker
disk-host /dev/sda1 1000000 910000 90000 91% /host
inode-host /dev/sda1 5000 1000 4000 20% /host
MemTotal:        2000000 kB
MemAvailable:     500000 kB
"""


def test_usage_and_reclaimed_space_are_parsed() -> None:
    usage = parse_usage(OUTPUT)
    assert (usage.disk_root, usage.inodes_root, usage.memory) == (91.0, 20.0, 75.0)
    assert usage.free_root_bytes == 90000 * 1024
    assert usage.over(90, 90, 95) == {"disk of the Docker data root": 91.0, "disk of /": 91.0}
    with pytest.raises(ValueError):
        parse_usage("MemTotal: 1 kB\n")
    assert parse_reclaimed("Deleted Containers:\nabc\n\nTotal reclaimed space: 0B\n"
                           "Deleted Images:\nx\nTotal reclaimed space: 2.5MB\n") == 2_500_000


@pytest.fixture
async def multi_pool(multinode_swarm: MultiNodeSwarm, docker_cli_image: str
                     ) -> AsyncIterator[ServerPool]:
    spec = multinode_swarm.spec()
    pool = ServerPool([type(spec)(**{**spec.__dict__, "node_helper_image": docker_cli_image})])
    try:
        yield pool
    finally:
        await pool.close()


async def test_a_crossed_threshold_is_announced_once_and_its_recovery_too(
    multi_pool: ServerPool, multinode_swarm: MultiNodeSwarm
) -> None:
    alerts: list[Alert] = []

    async def emit(alert: Alert) -> None:
        alerts.append(alert)

    board = UsageBoard()
    # Any real disk is above 0.1% used: the threshold is crossed on every node.
    health = NodeHealth(multi_pool, ["multi"], emit, board, interval=3600,
                        thresholds=Thresholds(disk=0.1, inodes=100, memory=100))
    await health.read("multi")
    assert alerts == []  # one reading over is not enough: it may be a spike
    usage = board.get("multi")
    assert sorted(usage) == sorted(n.name for n in multinode_swarm.nodes)
    assert all(0 < u.disk_root <= 100 and 0 < u.memory < 100 for u in usage.values())
    await health.read("multi")
    await health.read("multi")
    assert sorted(a.node or "" for a in alerts) == sorted(n.name for n in multinode_swarm.nodes)
    worker = multinode_swarm.workers[0].name
    alert = next(a for a in alerts if a.node == worker)
    assert alert.kind == "resources" and not alert.recovered
    assert alert.message.startswith(f"Node {worker} of server multi is running out: disk of "
                                    "the Docker data root ")
    assert "`!prune multi`" in alert.message
    alerts.clear()
    health.thresholds = Thresholds()  # the defaults: this machine is below them
    await health.read("multi")
    recovered = next(a for a in alerts if a.node == worker)
    assert recovered.recovered and "is below its thresholds again: disk " in recovered.message
