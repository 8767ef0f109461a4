"""A node's disk, inode and memory use, and what a prune freed, as a per-node helper reports
them. The helper runs the docker CLI image with the node's docker.sock and `/` mounted
read-only at /host; the parsing here is pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HOST_MOUNT = "/host"
# The Docker data root as that node's engine says, then `df` of it and of the host's `/`
# (blocks and inodes, POSIX format), then the memory lines of /proc/meminfo (the host's:
# /proc/meminfo is not namespaced).
USAGE_SCRIPT = f"""set -e
root=$(docker info --format '{{{{.DockerRootDir}}}}')
echo "data-root $root"
df -Pk "{HOST_MOUNT}$root" | tail -n 1 | sed 's/^/disk-root /'
df -Pi "{HOST_MOUNT}$root" | tail -n 1 | sed 's/^/inode-root /'
df -Pk {HOST_MOUNT} | tail -n 1 | sed 's/^/disk-host /'
df -Pi {HOST_MOUNT} | tail -n 1 | sed 's/^/inode-host /'
grep -E '^(MemTotal|MemAvailable):' /proc/meminfo
"""
# Stopped containers, then images no container uses: each prints "Total reclaimed space: X".
PRUNE_SCRIPT = """set -e
docker container prune -f
docker image prune -a -f
"""
_UNITS = {"B": 1, "kB": 1000, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}
_RECLAIMED = re.compile(r"Total reclaimed space:\s*([\d.]+)\s*([kKMGT]?B)")


@dataclass(frozen=True)
class NodeUsage:
    data_root: str
    disk_root: float  # percent used of the filesystem holding Docker's data root
    inodes_root: float
    disk_host: float  # percent used of the host's `/`
    inodes_host: float
    memory: float  # percent of memory not available
    free_root_bytes: int

    def over(self, disk: float, inodes: float, memory: float) -> dict[str, float]:
        """What is at or above its threshold (percent), by name."""
        found = {"disk of the Docker data root": (self.disk_root, disk),
                 "inodes of the Docker data root": (self.inodes_root, inodes),
                 "disk of /": (self.disk_host, disk), "inodes of /": (self.inodes_host, inodes),
                 "memory": (self.memory, memory)}
        return {name: used for name, (used, limit) in found.items() if used >= limit}

    def line(self) -> str:
        return (f"disk {self.disk_root:.0f}% (data root), {self.disk_host:.0f}% (/), inodes "
                f"{max(self.inodes_root, self.inodes_host):.0f}%, memory {self.memory:.0f}%")


class UsageBoard:
    """The last usage reading of each node, per server (written by the node health watch,
    read by `!servers`)."""

    def __init__(self) -> None:
        self._by_server: dict[str, dict[str, NodeUsage]] = {}

    def put(self, server: str, readings: dict[str, NodeUsage]) -> None:
        self._by_server[server] = dict(readings)

    def get(self, server: str) -> dict[str, NodeUsage]:
        return dict(self._by_server.get(server, {}))


def parse_usage(stdout: str) -> NodeUsage:
    """ValueError when the helper's output is not what the script prints."""
    rows: dict[str, list[str]] = {}
    memory: dict[str, int] = {}
    for line in stdout.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0].endswith(":") and len(parts) >= 2:
            memory[parts[0].rstrip(":")] = int(parts[1])
        else:
            rows[parts[0]] = parts[1:]
    total, available = memory.get("MemTotal"), memory.get("MemAvailable")
    if not total or available is None:
        raise ValueError("no memory figures in the node helper's output")
    return NodeUsage(
        data_root=" ".join(rows.get("data-root", ["?"])),
        disk_root=_percent(rows, "disk-root"), inodes_root=_percent(rows, "inode-root"),
        disk_host=_percent(rows, "disk-host"), inodes_host=_percent(rows, "inode-host"),
        memory=100.0 * (total - available) / total,
        free_root_bytes=int(_columns(rows, "disk-root")[3]) * 1024,
    )


def parse_reclaimed(stdout: str) -> int:
    """Bytes the prune commands say they freed (docker prints decimal units)."""
    return sum(int(float(amount) * _UNITS.get(unit, 1))
               for amount, unit in _RECLAIMED.findall(stdout))


def _columns(rows: dict[str, list[str]], key: str) -> list[str]:
    # Filesystem, total, used, available, capacity%, mount point
    columns = rows.get(key)
    if columns is None or len(columns) < 5:
        raise ValueError(f"no `{key}` line in the node helper's output")
    return columns


def _percent(rows: dict[str, list[str]], key: str) -> float:
    total, used = _columns(rows, key)[1:3]
    if not total.isdigit() or not used.isdigit():
        raise ValueError(f"unreadable `{key}` line in the node helper's output")
    # Filesystems without inode accounting report 0 of 0.
    return 100.0 * int(used) / int(total) if int(total) else 0.0
