"""A real multi-node swarm on this machine: a manager and two workers, one dockerd per node.

- `multinode_swarm` (session, started only when a test asks for it): three network namespaces
  (plus one holding a bridge) on a private /24 chosen per run; in each node's namespace its own
  hostname (UTS namespace), a private /run (so its socket is that namespace's
  /var/run/docker.sock and nothing of the default engine's /run is touched), private
  /etc/docker, /etc/hosts and /etc/resolv.conf, the cgroup hierarchies mounted again (`ip
  netns exec` remounts /sys), and a dockerd with its own data root and cgroup parent. The
  manager `swarm init`s, the workers join. The test images are built once on the default engine
  and `docker save | docker load`ed into every node (no registry here). An sshd in the
  manager's namespaces, with its own host key and a pinned known_hosts, is reached from the
  root namespace over a veth: the bot's SSH path to the manager.
- Torn down at the end of the run: sshd and dockerds stopped by pid, whatever else runs in the
  namespaces killed by pid, namespaces deleted, cgroup folders removed. The default engine's
  iptables and socket are never touched: every iptables rule a node's dockerd writes lives in
  that node's own network namespace.
- `running_swarm(images)` is the same start-up and tear-down as a context manager (the
  fixture uses it, and so does bench/worker.py).
- FAILS (never skips) when it cannot start. Recipes for it use `endpoint_mode: dnsrr` and
  host-mode ports: this kernel has no IPVS for VIPs or the ingress mesh.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coopbot.servers import ServerSpec
from tests.harness.swarm import AppImages, Dockerd, keygen

_READY_TIMEOUT = 60.0
_STOP_TIMEOUT = 20.0
SSH_PORT = 2222
# Printed at the end of the run (start/stop cost of the fixture).
TIMINGS: dict[str, float] = {}


@dataclass(frozen=True)
class SwarmNode:
    name: str  # its hostname, as swarm shows it
    netns: str
    address: str
    socket: Path  # reachable from the root namespace
    pid: int  # dockerd
    node_id: str


@dataclass(frozen=True)
class MultiNodeSwarm:
    manager: SwarmNode
    workers: tuple[SwarmNode, ...]
    ssh_host: str
    ssh_port: int
    key_file: Path
    known_hosts_file: Path
    start_seconds: float
    images: tuple[str, ...] = ()

    def load_images(self) -> None:
        """Load the test images into every node again (after a test pruned them)."""
        _load_images(self.known_hosts_file.parent.parent, list(self.images),
                     [n.socket for n in self.nodes])

    @property
    def nodes(self) -> tuple[SwarmNode, ...]:
        return (self.manager, *self.workers)

    def docker(self, node: SwarmNode, *args: str, input: bytes | None = None,
               check: bool = True, timeout: float = 120) -> str:
        """The docker CLI against one node's engine."""
        return node_docker(node.socket, *args, input=input, check=check, timeout=timeout)

    def spec(self, name: str = "multi") -> ServerSpec:
        """The manager over SSH, with the pinned host key."""
        return ServerSpec(name=name, kind="ssh", host=self.ssh_host, port=self.ssh_port,
                          user="root", key_file=self.key_file,
                          known_hosts_file=self.known_hosts_file, connect_timeout=5)

    def server_config(self, **extra: Any) -> dict[str, Any]:
        """A `servers:` entry reaching the manager over SSH."""
        return {"kind": "ssh", "host": self.ssh_host, "port": self.ssh_port, "user": "root",
                "key_file": str(self.key_file), "known_hosts_file": str(self.known_hosts_file),
                **extra}

    def volume_file(self, node: SwarmNode, volume: str, path: str) -> str | None:
        """A file's text inside a volume on one node, read by a throwaway container there
        (None if the volume or the file is missing). Never creates the volume."""
        names = self.docker(node, "volume", "ls", "-q").split()
        if volume not in names:
            return None
        done = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", "-v", f"{volume}:/v:ro",
             "--entrypoint", "cat", "coopbot-test/app:v1", f"/v/{path}"],
            capture_output=True, env=_env(node.socket), timeout=60, check=False)
        return done.stdout.decode(errors="replace") if done.returncode == 0 else None


def node_docker(sock: Path, *args: str, input: bytes | None = None, check: bool = True,
                timeout: float = 120) -> str:
    done = subprocess.run(["docker", *args], input=input, capture_output=True, env=_env(sock),
                          timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} on {sock}: "
                           f"{done.stderr.decode(errors='replace')[-2000:]}")
    return done.stdout.decode(errors="replace")


def _env(sock: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_HOST"] = f"unix://{sock}"
    return env


def _ip(*args: str, check: bool = True) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.254.x.0/24 no route of this machine covers (each run picks its own)."""
    routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True,
                            check=False).stdout
    taken = [ipaddress.ip_network(word, strict=False) for line in routes.splitlines()
             for word in line.split()[:1] if "/" in word]
    for octet in random.sample(range(1, 250), 249):
        net = ipaddress.IPv4Network(f"10.254.{octet}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return net
    raise RuntimeError("no free 10.254.x.0/24 for the multi-node swarm")


def _cgroup_mounts() -> list[tuple[str, str, str]]:
    """(fstype, options, mount point) of every cgroup hierarchy, as /proc/mounts lists them."""
    found = []
    for line in Path("/proc/mounts").read_text().splitlines():
        _, point, fstype, options = line.split()[:4]
        if fstype in ("cgroup", "cgroup2") and point.startswith("/sys/fs/cgroup"):
            kept = [o for o in options.split(",") if o not in ("rw", "relatime", "nosuid",
                                                                 "nodev", "noexec")]
            found.append((fstype, ",".join(kept) or "defaults", point))
    return found


def _node_script(name: str, root: Path, cgroups: list[tuple[str, str, str]]) -> str:
    lines = ["set -e", f"hostname {name}",
             # A private /run: this namespace's /var/run/docker.sock is its own engine's.
             "mount -t tmpfs -o mode=755 tmpfs /run", "mkdir -p /run/sshd",
             "mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup"]
    for fstype, options, point in cgroups:
        lines += [f"mkdir -p {point}", f"mount -t {fstype} -o {options} {fstype} {point}"]
    lines += [
        f"mount --bind {root}/etc-docker /etc/docker",
        f"mount --bind {root}/hosts /etc/hosts",
        f"mount --bind {root}/resolv.conf /etc/resolv.conf",
        f"exec dockerd --data-root {root}/data --exec-root /run/docker "
        f"--pidfile /run/docker.pid --config-file {root}/daemon.json "
        f"--cgroup-parent /{name} -H unix:///var/run/docker.sock -H unix://{root}/docker.sock",
    ]
    return "\n".join(lines)


class _Builder:
    """Start-up and tear-down of one multi-node swarm (every step recorded for tear-down)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tag = uuid.uuid4().hex[:6]
        self.namespaces: list[str] = []
        self.host_veth: str | None = None
        self.processes: list[subprocess.Popen[bytes]] = []
        self.cgroup_parents: list[str] = []

    def start(self, images: list[str]) -> MultiNodeSwarm:
        started = time.monotonic()
        net = _free_subnet()
        hosts = list(net.hosts())
        bridge_ns = f"cb{self.tag}br"
        self._netns(bridge_ns)
        _ip("-n", bridge_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", bridge_ns, "link", "set", "br0", "up")
        names = [f"cb{self.tag}-{role}" for role in ("manager", "worker1", "worker2")]
        addresses = [str(hosts[10 + i]) for i in range(len(names))]
        cgroups = _cgroup_mounts()
        pending = []
        for index, (name, address) in enumerate(zip(names, addresses, strict=True)):
            netns = f"cb{self.tag}n{index}"
            self._netns(netns)
            outer, inner = f"cb{self.tag}n{index}b", f"cb{self.tag}n{index}i"
            _ip("link", "add", inner, "type", "veth", "peer", "name", outer)
            _ip("link", "set", inner, "netns", netns)
            _ip("link", "set", outer, "netns", bridge_ns)
            _ip("-n", bridge_ns, "link", "set", outer, "master", "br0", "up")
            _ip("-n", netns, "link", "set", inner, "name", "eth0")
            _ip("-n", netns, "addr", "add", f"{address}/{net.prefixlen}", "dev", "eth0")
            _ip("-n", netns, "link", "set", "eth0", "up")
            folder = self.root / name
            (folder / "etc-docker").mkdir(parents=True)
            (folder / "daemon.json").write_text("{}\n")
            (folder / "hosts").write_text(
                "127.0.0.1 localhost\n"
                + "".join(f"{a} {n}\n" for a, n in zip(addresses, names, strict=True)))
            (folder / "resolv.conf").write_text("nameserver 127.0.0.1\n")
            log = (folder / "dockerd.log").open("wb")
            self.cgroup_parents.append(name)
            process = subprocess.Popen(
                ["ip", "netns", "exec", netns, "unshare", "--uts", "--",
                 "sh", "-c", _node_script(name, folder, cgroups)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            self.processes.append(process)
            pending.append((name, netns, address, folder / "docker.sock", process))
        # The root namespace reaches the manager (its sshd) through the bridge.
        self.host_veth = f"cb{self.tag}h"
        _ip("link", "add", self.host_veth, "type", "veth", "peer", "name", f"cb{self.tag}hb")
        _ip("link", "set", f"cb{self.tag}hb", "netns", bridge_ns)
        _ip("-n", bridge_ns, "link", "set", f"cb{self.tag}hb", "master", "br0", "up")
        _ip("addr", "add", f"{hosts[-1]}/{net.prefixlen}", "dev", self.host_veth)
        _ip("link", "set", self.host_veth, "up")
        for _, _, _, sock, process in pending:
            self._wait_ready(sock, process)
        TIMINGS["dockerds ready"] = time.monotonic() - started

        manager_sock = pending[0][3]
        node_docker(manager_sock, "swarm", "init", "--advertise-addr", addresses[0],
                    "--listen-addr", f"{addresses[0]}:2377")
        token = node_docker(manager_sock, "swarm", "join-token", "-q", "worker").strip()
        for _, _, address, sock, _ in pending[1:]:
            node_docker(sock, "swarm", "join", "--token", token, "--advertise-addr", address,
                        "--listen-addr", f"{address}:2377", f"{addresses[0]}:2377")
        TIMINGS["swarm formed"] = time.monotonic() - started
        self._load_images(images, [p[3] for p in pending])
        TIMINGS["images loaded"] = time.monotonic() - started
        ids = self._node_ids(manager_sock, names)
        nodes = [SwarmNode(name, netns, address, sock, process.pid, ids[name])
                 for name, netns, address, sock, process in pending]
        key_file, known_hosts = self._sshd(nodes[0])
        TIMINGS["start"] = time.monotonic() - started
        return MultiNodeSwarm(manager=nodes[0], workers=tuple(nodes[1:]),
                              ssh_host=nodes[0].address, ssh_port=SSH_PORT, key_file=key_file,
                              known_hosts_file=known_hosts,
                              start_seconds=TIMINGS["start"], images=tuple(images))

    def stop(self) -> None:
        started = time.monotonic()
        # The sshd first, then the dockerds (each stops its containers and its containerd).
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        # Whatever still runs in a node's namespace (container shims) was started by its dockerd.
        for netns in self.namespaces:
            pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True,
                                  text=True, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for netns in self.namespaces:
            _ip("netns", "del", netns, check=False)
        if self.host_veth:
            _ip("link", "del", self.host_veth, check=False)
        for parent in self.cgroup_parents:
            for hierarchy in Path("/sys/fs/cgroup").iterdir():
                _remove_cgroup(hierarchy / parent)
        shutil.rmtree(self.root, ignore_errors=True)
        TIMINGS["stop"] = time.monotonic() - started

    # --- steps ---------------------------------------------------------------------------------

    def _netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _wait_ready(self, sock: Path, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                node_docker(sock, "info", "--format", "{{.ID}}", timeout=10)
                return
            time.sleep(0.3)
        log = (sock.parent / "dockerd.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the node dockerd at {sock} did not become ready:\n{log}")

    def _load_images(self, images: list[str], sockets: list[Path]) -> None:
        _load_images(self.root, images, sockets)

    def _node_ids(self, manager_sock: Path, names: list[str]) -> dict[str, str]:
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            listing = node_docker(manager_sock, "node", "ls", "--format",
                                  "{{.Hostname}} {{.ID}} {{.Status}}")
            rows = [line.split() for line in listing.splitlines() if line.strip()]
            ids = {row[0]: row[1] for row in rows if row[2] == "Ready"}
            if all(n in ids for n in names):
                return ids
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes did not all become ready: {listing}")
            time.sleep(0.3)

    def _sshd(self, manager: SwarmNode) -> tuple[Path, Path]:
        """An sshd in the manager's network, mount and UTS namespaces: its login's docker CLI
        reaches the manager's own engine at /var/run/docker.sock."""
        folder = self.root / "sshd"
        folder.mkdir()
        host_key = keygen(folder / "host_ed25519", "coopbot-multinode")
        client_key = keygen(folder / "client_ed25519", "coopbot-multinode")
        (folder / "authorized_keys").write_text(client_key + "\n")
        known_hosts = folder / "known_hosts"
        known_hosts.write_text(f"[{manager.address}]:{SSH_PORT} {host_key}\n")
        config = folder / "sshd_config"
        config.write_text(
            f"Port {SSH_PORT}\nListenAddress {manager.address}\n"
            f"HostKey {folder / 'host_ed25519'}\nPidFile {folder / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {folder / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\nPubkeyAuthentication yes\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "StrictModes no\nLogLevel VERBOSE\n"
            # The docker CLI lives in /usr/local/bin on some machines.
            "SetEnv PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin\n")
        binary = shutil.which("sshd") or "/usr/sbin/sshd"
        log = (folder / "sshd.log").open("wb")
        process = subprocess.Popen(
            ["nsenter", "-t", str(manager.pid), "-n", "-m", "-u", binary, "-D", "-e", "-f",
             str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                with socket.create_connection((manager.address, SSH_PORT), timeout=1) as conn:
                    if conn.recv(64).startswith(b"SSH-"):
                        return folder / "client_ed25519", known_hosts
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the manager's sshd did not answer:\n"
                           + (folder / "sshd.log").read_text(errors="replace"))


def _load_images(root: Path, images: list[str], sockets: list[Path]) -> None:
    """`docker save` from the default engine once, `docker load` into every node."""
    archive = root / "images.tar"
    done = subprocess.run(["docker", "save", "-o", str(archive), *images],
                          capture_output=True, env=_env(Path("/var/run/docker.sock")),
                          timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"docker save: {done.stderr.decode(errors='replace')}")
    with ThreadPoolExecutor(len(sockets)) as pool:
        list(pool.map(lambda s: node_docker(s, "load", "-q", "-i", str(archive),
                                            timeout=300), sockets))
    archive.unlink()


def _remove_cgroup(path: Path) -> None:
    if not path.is_dir():
        return
    for child in path.iterdir():
        if child.is_dir():
            _remove_cgroup(child)
    with contextlib.suppress(OSError):
        path.rmdir()


def multinode_images(test_images: AppImages, restic_image: str, extra: list[str]) -> list[str]:
    return [test_images.v1, test_images.v2, test_images.v3, restic_image, *extra]


class SwarmStartError(RuntimeError):
    """The multi-node swarm could not be started (what is missing or what failed)."""


@contextlib.contextmanager
def running_swarm(images: list[str]) -> Iterator[MultiNodeSwarm]:
    """A started manager + two workers with `images` loaded, torn down on exit (also used by
    bench/worker.py). Raises SwarmStartError when it cannot start."""
    for tool in ("ip", "unshare", "nsenter", "dockerd"):
        if shutil.which(tool) is None:
            raise SwarmStartError(f"{tool} is not installed (scripts/system-packages installs it)")
    # Short root: unix socket paths must stay under 108 bytes.
    root = Path(f"/tmp/cbnodes-{uuid.uuid4().hex[:8]}")
    root.mkdir()
    builder = _Builder(root)
    try:
        swarm = builder.start(images)
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        builder.stop()
        raise SwarmStartError(f"the multi-node swarm did not start: {error}") from error
    try:
        yield swarm
    finally:
        builder.stop()


@pytest.fixture(scope="session")
def multinode_swarm(dockerd: Dockerd, test_images: AppImages, restic_image: str,
                    docker_cli_image: str) -> Iterator[MultiNodeSwarm]:
    try:
        with running_swarm(multinode_images(test_images, restic_image,
                                            [docker_cli_image])) as swarm:
            yield swarm
    except SwarmStartError as error:
        pytest.fail(str(error))


DOCKER_CLI_IMAGE = "coopbot-test/docker-cli:1"


@pytest.fixture(scope="session")
def docker_cli_image(dockerd: Dockerd) -> str:
    """The docker CLI (this machine's binary and its libraries) on busybox: what a per-node
    helper runs to exec into a task's container on its node."""
    from coopbot.dev.local_images import build_docker_cli_image

    try:
        return build_docker_cli_image(DOCKER_CLI_IMAGE)
    except RuntimeError as error:
        pytest.fail(str(error))



def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fixture's cost, when a test used it."""
    if TIMINGS:
        terminalreporter.write_line(
            "multi-node swarm: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))
