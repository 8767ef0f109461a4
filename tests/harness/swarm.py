"""Real Docker swarm + real sshd fixtures (no fakes): the engine tests run against these.

- `dockerd` (session): a reachable engine with an active swarm. Reuses a running dockerd, else
  starts one (setsid, log under the session tmp dir) and `docker swarm init`s it. FAILS (never
  skips) if that is impossible. The daemon is left running: other sessions may share it.
- `test_images` (session): `coopbot-test/app:v1` and `:v2` (busybox httpd serving `/` naming the
  version, and `/health`), `:v3` deliberately unhealthy (serves nothing, so any wget probe
  fails). Built locally FROM scratch: no registry is reachable.
- `sshd` (session): an OpenSSH server on a free 127.0.0.1 port with its own host key, client
  key, authorized_keys and known_hosts (plus `wrong_known_hosts_file`: another key, same host).
  `write_sshd(root)` + `start_sshd(setup)` set up and run one; `watch.own_sshd` uses them too.
- `local_spec` / `ssh_spec` (session): ServerSpecs for the same engine, via socket or SSH.
- `docker_engine` (function, params local/ssh): a DockerEngine for the contract tests, closed after.
- `stack_name` (function): a unique stack name; its stack, containers, volumes and secrets are
  removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coopbot.dev.local_images import build_busybox_image
from coopbot.servers import DockerEngine, ServerSpec

DOCKER_SOCKET = "/var/run/docker.sock"
IMAGE = "coopbot-test/app"
STACK_LABEL = "com.docker.stack.namespace"
_DOCKERD_READY_TIMEOUT = 60.0
_STARTED: list[subprocess.Popen[bytes]] = []  # referenced so Popen does not warn on collection


def docker(*args: str, input: bytes | None = None, check: bool = True) -> str:
    """Run the docker CLI against the local engine (harness side only)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_HOST"] = f"unix://{DOCKER_SOCKET}"
    done = subprocess.run(["docker", *args], input=input, capture_output=True, env=env, timeout=120)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode(errors="replace")


def _swarm_state() -> str | None:
    try:
        return docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()
    except (RuntimeError, OSError, subprocess.TimeoutExpired):
        return None


@dataclass(frozen=True)
class Dockerd:
    socket: str
    started_here: bool


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Dockerd:
    state = _swarm_state()
    started = False
    if state is None:
        if shutil.which("dockerd") is None:
            pytest.fail("dockerd is not installed (apt-get install docker.io)")
        log_path = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
        with log_path.open("wb") as log:
            # Its own session: it outlives this test run, like a system service would.
            _STARTED.append(
                subprocess.Popen(
                    ["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
        deadline = time.monotonic() + _DOCKERD_READY_TIMEOUT
        while (state := _swarm_state()) is None and time.monotonic() < deadline:
            time.sleep(0.3)
        if state is None:
            tail = log_path.read_text(errors="replace")[-3000:]
            pytest.fail(f"dockerd did not become ready in {_DOCKERD_READY_TIMEOUT:g} s:\n{tail}")
        started = True
    if state != "active":
        try:
            docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        except RuntimeError as exc:
            pytest.fail(f"cannot initialise the swarm: {exc}")
    return Dockerd(socket=DOCKER_SOCKET, started_here=started)


@dataclass(frozen=True)
class AppImages:
    v1: str
    v2: str
    v3: str


@pytest.fixture(scope="session")
def test_images(dockerd: Dockerd) -> AppImages:
    """v1 and v2 serve a page and /health; v3 serves nothing, so every healthcheck probe fails
    and swarm kills it ("unhealthy container")."""
    try:
        for version in ("v1", "v2"):
            build_busybox_image(
                f"{IMAGE}:{version}",
                cmd=["sh", "-c", f"echo coopbot-test {version} starting; "
                     "exec httpd -f -p 80 -h /www"],
                www={"index.html": f"<h1>coopbot-test {version}</h1>\n", "health": "ok\n"},
            )
        build_busybox_image(f"{IMAGE}:v3", cmd=[
            "sh", "-c", "echo coopbot-test v3 broken on purpose, serving nothing; "
            "exec sleep 1000000"])
    except RuntimeError as error:
        pytest.fail(str(error))
    return AppImages(v1=f"{IMAGE}:v1", v2=f"{IMAGE}:v2", v3=f"{IMAGE}:v3")


@dataclass(frozen=True)
class Sshd:
    host: str
    port: int
    user: str
    key_file: Path
    known_hosts_file: Path
    wrong_known_hosts_file: Path  # another ed25519 key for the same [host]:port
    host_public_key: str  # "ssh-ed25519 AAAA..."
    other_key_file: Path  # a client key that is NOT authorized


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def keygen(path: Path, comment: str = "coopbot-test") -> str:
    """A fresh passphrase-less ed25519 key at `path`; returns its public half "kind base64"."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    kind, key = path.with_suffix(".pub").read_text().split()[:2]
    return f"{kind} {key}"


@dataclass(frozen=True)
class SshdSetup:
    """Where one test sshd listens and the files `write_sshd(root)` wrote for it."""

    host: str
    port: int
    host_public_key: str  # "ssh-ed25519 AAAA..."
    key_file: Path  # the authorized client key
    known_hosts_file: Path  # the real host key for [host]:port
    config: Path
    log: Path


def write_sshd(root: Path, *, key_comment: str = "coopbot-test") -> SshdSetup:
    """Host key, client key, authorized_keys, known_hosts and sshd_config for an sshd on a free
    127.0.0.1 port, accepting only that client key, for root."""
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)  # privilege separation
    host_key = keygen(root / "host_ed25519", key_comment)
    client_key = keygen(root / "client_ed25519", key_comment)
    (root / "authorized_keys").write_text(client_key + "\n")
    host, port = "127.0.0.1", free_port()
    (root / "known_hosts").write_text(f"[{host}]:{port} {host_key}\n")
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\n"
        f"ListenAddress {host}\n"
        f"HostKey {root / 'host_ed25519'}\n"
        f"PidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "StrictModes no\n"
        "LogLevel VERBOSE\n"
    )
    return SshdSetup(
        host=host,
        port=port,
        host_public_key=host_key,
        key_file=root / "client_ed25519",
        known_hosts_file=root / "known_hosts",
        config=config,
        log=root / "sshd.log",
    )


def start_sshd(setup: SshdSetup) -> subprocess.Popen[bytes]:
    """Run sshd in the foreground on `setup` (its log appended to) and wait for its banner.
    FAILS the test (never skips) if sshd is missing, exits or does not answer within 10 s."""
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(binary).exists():
        pytest.fail("sshd is not installed (apt-get install openssh-server)")
    with setup.log.open("ab") as log_file:
        process = subprocess.Popen(
            [binary, "-D", "-e", "-f", str(setup.config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"sshd exited:\n{setup.log.read_text(errors='replace')}")
        try:
            with socket.create_connection((setup.host, setup.port), timeout=1) as conn:
                if conn.recv(64).startswith(b"SSH-"):
                    return process
        except OSError:
            time.sleep(0.1)
    process.terminate()
    process.wait(timeout=10)
    pytest.fail(
        f"sshd did not answer on {setup.host}:{setup.port}:\n"
        f"{setup.log.read_text(errors='replace')}"
    )


@pytest.fixture(scope="session")
def sshd(dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    root = tmp_path_factory.mktemp("sshd")
    setup = write_sshd(root)
    other_host_key = keygen(root / "other_host_ed25519")
    keygen(root / "unauthorized_ed25519")
    (root / "wrong_known_hosts").write_text(f"[{setup.host}]:{setup.port} {other_host_key}\n")
    process = start_sshd(setup)
    try:
        yield Sshd(
            host=setup.host,
            port=setup.port,
            user="root",
            key_file=setup.key_file,
            known_hosts_file=setup.known_hosts_file,
            wrong_known_hosts_file=root / "wrong_known_hosts",
            host_public_key=setup.host_public_key,
            other_key_file=root / "unauthorized_ed25519",
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def local_spec(dockerd: Dockerd) -> ServerSpec:
    return ServerSpec(name="local", kind="local", socket=dockerd.socket, connect_timeout=5)


@pytest.fixture(scope="session")
def ssh_spec(sshd: Sshd) -> ServerSpec:
    return ServerSpec(
        name="viassh",
        kind="ssh",
        host=sshd.host,
        port=sshd.port,
        user=sshd.user,
        key_file=sshd.key_file,
        known_hosts_file=sshd.known_hosts_file,
        connect_timeout=5,
    )


@pytest.fixture(params=["local", "ssh"])
async def docker_engine(
    request: pytest.FixtureRequest, local_spec: ServerSpec, ssh_spec: ServerSpec
) -> AsyncIterator[DockerEngine]:
    spec = local_spec if request.param == "local" else ssh_spec
    engine = DockerEngine(spec)
    try:
        yield engine
    finally:
        await engine.close()


@pytest.fixture
def stack_name(dockerd: Dockerd, test_images: AppImages) -> Iterator[str]:
    name = f"ct{uuid.uuid4().hex[:10]}"
    yield name
    remove_stack(name)


def remove_stack(name: str, timeout: float = 60.0) -> None:
    """Remove everything a test stack may have left: services, containers, volumes, secrets."""
    label = f"label={STACK_LABEL}={name}"
    docker("stack", "rm", name, check=False)
    deadline = time.monotonic() + timeout
    # Force: waiting out each container's stop grace period would only slow the suite down.
    while containers := docker("ps", "-aq", "--filter", label, check=False).split():
        docker("rm", "-f", *containers, check=False)
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    volumes = docker("volume", "ls", "-q", "--filter", label, check=False).split()
    if volumes:
        docker("volume", "rm", "-f", *volumes, check=False)
    secrets = [
        s
        for s in docker("secret", "ls", "--format", "{{.Name}}", check=False).split()
        if s.startswith(f"{name}_")
    ]
    if secrets:
        docker("secret", "rm", *secrets, check=False)


def ssh_server(sshd: Sshd, **extra: Any) -> dict[str, Any]:
    """A `servers:` entry reaching the harness's sshd with its key and pinned host key."""
    return {"kind": "ssh", "host": sshd.host, "port": sshd.port, "user": sshd.user,
            "key_file": str(sshd.key_file), "known_hosts_file": str(sshd.known_hosts_file),
            **extra}
