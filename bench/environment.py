"""Everything the benchmarks need, set up by the bench itself: a throwaway Synapse
(coopbot.dev.homeserver.LocalSynapse), the local Docker engine with a swarm (started if none runs),
the bench images and recipe, a fleet of sshd endpoints, and members to talk to the bots."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from bench import recipe
from bench.bots import Coopbot, EchoBot
from bench.member import Member
from bench.procs import Processes
from bench.settings import Settings
from bench.sshfleet import SshEndpoint, SshFleet
from coopbot.dev.homeserver import LocalSynapse

STACK_LABEL = "com.docker.stack.namespace"
DOCKER_SOCKET = "/var/run/docker.sock"
REPO = Path(__file__).resolve().parent.parent


def local_docker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_HOST"] = f"unix://{DOCKER_SOCKET}"
    return env


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    """The docker CLI against the local engine (setup and cleanup only: blocking)."""
    done = subprocess.run(["docker", *args], capture_output=True, env=local_docker_env(),
                          timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode(errors="replace")


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


async def execute(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 120) -> Run:
    """A subprocess awaited without blocking the event loop (members keep syncing meanwhile)."""
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return Run(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"),
               time.perf_counter() - started)


def _swarm_state() -> str | None:
    try:
        return docker("info", "--format", "{{.Swarm.LocalNodeState}}", timeout=20).strip()
    except (RuntimeError, OSError, subprocess.TimeoutExpired):
        return None


class Environment:
    def __init__(self, workdir: Path, settings: Settings, procs: Processes,
                 say: Callable[[str], None]) -> None:
        self.workdir = workdir
        self.settings = settings
        self.procs = procs
        self.say = say
        self.tag = uuid.uuid4().hex[:6]
        self.synapse = LocalSynapse(workdir / "synapse")
        self.fleet = SshFleet(workdir / "ssh", procs)
        self.recipe_repo = workdir / "recipes" / f"{recipe.RECIPE}.git"
        self.notes: list[str] = []
        self.profile_dir: Path | None = None  # `--profile`: py-spy samples every coopbot
        self.profile_idle = False  # `--profile wall`: waits count too
        self._members: list[Member] = []
        self._stacks: set[str] = set()

    # -- setup ------------------------------------------------------------------------------

    def setup(self, fleet_size: int) -> None:
        self.say("starting Synapse")
        self.synapse.start()
        self.say("checking the Docker engine and swarm")
        self.ensure_swarm()
        self.say("building the bench images")
        recipe.build_images()
        recipe.create_repo(self.recipe_repo)
        if fleet_size:
            self.say(f"starting {fleet_size} sshd endpoints")
            self.fleet.start(fleet_size)

    def ensure_swarm(self) -> None:
        state = _swarm_state()
        if state is None:
            if shutil.which("dockerd") is None:
                raise RuntimeError("dockerd is not installed (scripts/system-packages)")
            log = self.workdir / "dockerd.log"
            # Its own session: like a system service it outlives the bench (as the tests do).
            with log.open("wb") as out:
                subprocess.Popen(["dockerd"], stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + 60
            while (state := _swarm_state()) is None and time.monotonic() < deadline:
                time.sleep(0.3)
            if state is None:
                raise RuntimeError(f"dockerd did not start; see {log}")
            self.notes.append("dockerd was started by the bench and left running.")
        if state != "active":
            docker("swarm", "init", "--advertise-addr", "127.0.0.1")
            self.notes.append("The local engine was made a single-node swarm by the bench.")

    # -- members ----------------------------------------------------------------------------

    async def member(self, name: str) -> Member:
        localpart = f"{name}-{self.tag}"
        password = f"{localpart}-bench-password"
        user_id = await asyncio.to_thread(self.synapse.register, localpart, password)
        member = Member(self.synapse.base_url, user_id, password)
        await member.start()
        self._members.append(member)
        return member

    async def close_members(self) -> None:
        members, self._members = self._members, []
        await asyncio.gather(*(m.close() for m in members), return_exceptions=True)

    def coopbot(self, name: str, **config: object) -> Coopbot:
        """A coopbot process with its own account, state folder and config (not started)."""
        bot = Coopbot(self.workdir / "bots" / name, self.synapse, f"{name}-{self.tag}",
                      self.procs, **config)
        bot.profile_dir = self.profile_dir
        bot.profile_idle = self.profile_idle
        return bot

    def echobot(self, name: str) -> EchoBot:
        return EchoBot(self.workdir / "bots" / name, self.synapse, f"{name}-{self.tag}",
                       self.procs)

    # -- stacks -----------------------------------------------------------------------------

    def track_stack(self, stack: str) -> None:
        self._stacks.add(stack)

    async def remove_stack(self, stack: str, timeout: float = 90) -> None:
        """Remove a stack and wait until its containers, networks and volumes are gone."""
        env = local_docker_env()
        await execute(["docker", "stack", "rm", stack], env=env)
        label = f"label={STACK_LABEL}={stack}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ps = await execute(["docker", "ps", "-aq", "--filter", label], env=env)
            containers = ps.stdout.split()
            if containers:
                await execute(["docker", "rm", "-f", *containers], env=env)
            nets = await execute(["docker", "network", "ls", "-q", "--filter", label], env=env)
            if not containers and not nets.stdout.split():
                break
            await asyncio.sleep(0.3)
        volumes = await execute(["docker", "volume", "ls", "-q", "--filter", label], env=env)
        if volumes.stdout.split():
            await execute(["docker", "volume", "rm", "-f", *volumes.stdout.split()], env=env)
        self._stacks.discard(stack)

    async def cleanup(self) -> None:
        await self.close_members()
        stacks = sorted(self._stacks)
        results = await asyncio.gather(*(self.remove_stack(stack) for stack in stacks),
                                       return_exceptions=True)
        for error in results:
            if isinstance(error, BaseException):
                self.say(f"could not remove a stack: {error!r}")
        self.fleet.close_mux()

    # -- description --------------------------------------------------------------------------

    def ssh_endpoints(self, count: int) -> list[SshEndpoint]:
        return self.fleet.endpoints[:count]


def machine() -> dict[str, str]:
    cpu = "?"
    memory = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {"nproc": str(os.cpu_count() or "?"), "cpu": cpu, "memory": memory,
            "kernel": platform.release(), "os": _os_name(), "load average at start": load}


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) \
        else "?"


def versions() -> dict[str, str]:
    def dist(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    commit = _output(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"])
    dirty = _output(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    changes = ", with uncommitted changes" if dirty not in ("", "?") else ""
    return {
        "python": sys.version.split()[0],
        "coopbot": f"{dist('coopbot')} (git {commit}{changes})",
        "matrix-synapse": dist("matrix-synapse"),
        "matrix-nio": dist("matrix-nio"),
        "docker engine": docker("version", "--format", "{{.Server.Version}}").strip(),
        "docker CLI": docker("version", "--format", "{{.Client.Version}}").strip(),
        "restic": _output(["restic", "version"]),
        "OpenSSH": _output(["ssh", "-V"]),
        "paramiko": dist("paramiko"),
    }
