"""The bots under test, each its own process: coopbot as users run it (`coopbot run -c CONFIG`)
and the nio echo bot (bench/echobot.py). RSS comes from /proc/<pid>/status."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from bench.procs import Processes, rss_kib
from coopbot.dev.homeserver import LocalSynapse

REPO = Path(__file__).resolve().parent.parent


def coopbot_command(config: Path) -> list[str]:
    script = Path(sys.executable).parent / "coopbot"
    if script.exists():
        return [str(script), "run", "-c", str(config)]
    return [sys.executable, "-m", "coopbot", "run", "-c", str(config)]


def bot_env(pycache: Path) -> dict[str, str]:
    """The bots run with compiled bytecode cached (in the work folder), as an installed package
    does: this machine's PYTHONDONTWRITEBYTECODE would make every start compile every module."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


class BotProcess:
    kind = "bot"

    def __init__(self, folder: Path, synapse: LocalSynapse, localpart: str,
                 procs: Processes) -> None:
        self.folder = folder
        self.procs = procs
        self.synapse = synapse
        folder.mkdir(parents=True, exist_ok=True)
        self.password = secrets.token_urlsafe(16)
        self.user_id = synapse.register(localpart, self.password)
        self.password_file = folder / "password"
        self.password_file.write_text(self.password)
        self.password_file.chmod(0o600)
        self.log_path = folder / f"{self.kind}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0
        self.spawned_wall = 0.0
        self.starts = 0
        # Set by `--profile`: py-spy samples the process into this folder once it answered.
        self.profile_dir: Path | None = None
        self.profile_idle = False
        self._profiler: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        """Spawn the process."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self.user_id} already runs")
        self.starts += 1
        self.spawned_at = time.perf_counter()
        self.spawned_wall = time.time()
        self.proc = self.procs.spawn(f"{self.kind} {self.user_id}", self.argv(),
                                     log=self.log_path, cwd=REPO,
                                     env=bot_env(self.folder.parent / "pycache"))

    def attach_profiler(self) -> None:
        """With `--profile`: py-spy samples the running process (steady state, after start-up)
        until it exits."""
        if self.profile_dir is None or self._profiler is not None or self.proc is None:
            return
        spy = Path(sys.executable).parent / "py-spy"
        if not spy.exists():
            raise RuntimeError("--profile needs py-spy in the venv (pip install py-spy)")
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        output = self.profile_dir / f"{self.folder.name}-{self.starts}.txt"
        self._profiler = self.procs.spawn(
            f"py-spy {self.user_id}",
            [str(spy), "record", "--pid", str(self.proc.pid), "--rate", "250", "--format",
             "raw", "--nonblocking", *(["--idle"] if self.profile_idle else []),
             "--output", str(output)],
            log=self.profile_dir / f"{self.folder.name}-{self.starts}.log")

    def stop(self) -> float:
        if self.proc is None:
            return 0.0
        took = self.procs.stop(self.proc, timeout=30)
        self.proc = None
        if self._profiler is not None:
            try:  # py-spy writes its file once the process it samples has exited
                self._profiler.wait(30)
            except subprocess.TimeoutExpired:
                pass
            self.procs.stop(self._profiler)
            self._profiler = None
        return took

    @property
    def pid(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.kind} {self.user_id} is not running; log:\n{self.log_tail()}")
        return self.proc.pid

    def rss(self) -> dict[str, int]:
        return rss_kib(self.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logged_after_spawn(self, needle: str) -> float | None:
        """Seconds from this start's spawn to the first log line containing `needle` (coopbot
        logs `%(asctime)s`, local time, millisecond precision)."""
        for line in self.log_text().splitlines():
            if needle not in line:
                continue
            try:
                stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            except ValueError:
                continue
            if stamp >= self.spawned_wall - 0.01:
                return stamp - self.spawned_wall
        return None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


class Coopbot(BotProcess):
    kind = "coopbot"

    def __init__(self, folder: Path, synapse: LocalSynapse, localpart: str, procs: Processes,
                 **config: Any) -> None:
        super().__init__(folder, synapse, localpart, procs)
        self.config_path = folder / "config.yaml"
        self.config: dict[str, Any] = {
            "matrix": {
                "homeserver": synapse.base_url,
                "user_id": self.user_id,
                "password_file": "password",
                "store": "state/matrix",
                "device_name": "coopbot bench",
                # Pings sent while a restarting bot comes up are answered, not refused.
                "offline_grace_seconds": 60,
            },
            "database": "state/coopbot.db",
            **config,
        }
        self.write_config()

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def argv(self) -> list[str]:
        return coopbot_command(self.config_path)


class EchoBot(BotProcess):
    kind = "echo"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "bench.echobot", "--homeserver", self.synapse.base_url,
                "--user", self.user_id, "--password-file", str(self.password_file)]
