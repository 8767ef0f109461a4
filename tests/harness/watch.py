"""Watcher fixtures: a small app stack, an alert recorder, a running watcher, a killable sshd.

- `deploy_watch_stack(stack, image, version)`: `docker stack deploy` of a one-service Co-op
  Cloud style app (version and timeout labels on `app`, healthcheck, update_config with
  failure_action rollback), waiting until its task runs.
- `AlertLog`: the `emit` callable for a watcher; records alerts and waits for them.
- `watching(...)`: runs a SwarmWatcher in a task until the block ends, after its first
  reading of every server; the pool is closed afterwards.
- `own_sshd` (function): a SECOND sshd, only for the test that uses it (its own port, host
  key, client key and known_hosts), reaching the same engine; `stop()` kills it together with
  its sessions and their `docker system dial-stdio` (a server going away), `start()` brings it
  back on the same port with the same host key. Other tests' sshd is never touched.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from coopbot.servers import ServerPool, ServerSpec
from coopbot.watch import Alert, OperationCheck, SwarmWatcher, VersionChange, WatchTimings
from tests.harness.swarm import Dockerd, SshdSetup, docker, start_sshd, write_sshd

WATCH_COMPOSE = """\
version: "3.8"
services:
  app:
    image: {image}
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]
      interval: 1s
      timeout: 1s
      retries: 2
      start_period: 3s
    stop_grace_period: 1s
    deploy:
      labels:
        - "coop-cloud.{stack}.version={version}"
        - "coop-cloud.{stack}.timeout=120"
      update_config:
        failure_action: rollback
        order: start-first
        monitor: 5s
      rollback_config:
        order: start-first
        monitor: 1s
"""


def deploy_watch_stack(stack: str, image: str, version: str, timeout: float = 60.0) -> None:
    compose = WATCH_COMPOSE.format(image=image, stack=stack, version=version)
    docker("stack", "deploy", "--resolve-image", "never", "-c", "-", stack, input=compose.encode())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replicas = docker("service", "ls", "--filter", f"name={stack}_app", "--format",
                          "{{.Replicas}}").strip()
        if replicas.startswith("1/1"):
            return
        time.sleep(0.3)
    raise AssertionError(f"stack {stack} did not start within {timeout:g} s")


class AlertLog:
    """Records what a watcher emits; `wait_for` polls until a predicate holds."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self._changed = asyncio.Event()

    async def __call__(self, alert: Alert) -> None:
        self.alerts.append(alert)
        self._changed.set()

    def about(self, app: str | None = None, server: str | None = None) -> list[Alert]:
        """Alerts about one app (other tests' stacks share the swarm), or one server's own."""
        return [
            a for a in self.alerts
            if (app is None or a.app == app) and (server is None or a.server == server)
        ]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout:g} s; alerts: {self.alerts}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            except TimeoutError:
                pass


async def never_ours(change: VersionChange) -> bool:
    return False


@asynccontextmanager
async def watching(
    specs: list[ServerSpec],
    emit: Callable[[Alert], Awaitable[None]],
    *,
    timings: WatchTimings,
    is_coopbot_operation: OperationCheck = never_ours,
    ready_timeout: float = 30.0,
    pool: ServerPool | None = None,
) -> AsyncIterator[SwarmWatcher]:
    """`pool`: pass one to reach its engines from the test (it is closed afterwards too)."""
    pool = pool or ServerPool(specs)
    watcher = SwarmWatcher(
        pool, is_coopbot_operation=is_coopbot_operation, emit=emit, timings=timings
    )
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:
        deadline = asyncio.get_running_loop().time() + ready_timeout
        while not all(s.last_read is not None for s in watcher.snapshot().servers):
            if task.done():
                task.result()
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the watcher did not read: {watcher.snapshot()}")
            await asyncio.sleep(0.1)
        yield watcher
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await pool.close()


@dataclass
class OwnSshd:
    setup: SshdSetup
    process: subprocess.Popen[bytes] | None = None

    def spec(self, name: str) -> ServerSpec:
        return ServerSpec(
            name=name, kind="ssh", host=self.setup.host, port=self.setup.port, user="root",
            key_file=self.setup.key_file, known_hosts_file=self.setup.known_hosts_file,
            connect_timeout=5, command_timeout=10,
        )

    def start(self) -> None:
        self.process = start_sshd(self.setup)

    def stop(self) -> None:
        """Kill the listener, its sessions and everything they run: the server is gone."""
        if self.process is None:
            return
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it ended on its own meanwhile
        self.process.wait(timeout=10)
        self.process = None


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (sshd's sessions setsid(), so a process group would not do)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it exited while we looked
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.fixture
def own_sshd(dockerd: Dockerd, tmp_path: Path) -> Iterator[OwnSshd]:
    root = tmp_path / "own-sshd"
    root.mkdir()
    sshd = OwnSshd(write_sshd(root, key_comment="coopbot-watch"))
    sshd.start()
    try:
        yield sshd
    finally:
        sshd.stop()
