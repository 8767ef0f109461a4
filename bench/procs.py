"""Every process the bench starts is registered here and ended by its own pid, nothing else."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO


class Processes:
    def __init__(self) -> None:
        self._started: list[tuple[str, subprocess.Popen[bytes], IO[bytes] | None]] = []

    def spawn(self, name: str, argv: list[str], *, log: Path | None = None,
              cwd: Path | None = None, env: dict[str, str] | None = None,
              new_session: bool = False) -> subprocess.Popen[bytes]:
        out = log.open("ab") if log is not None else None
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=out if out is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT, start_new_session=new_session,
        )
        self._started.append((name, proc, out))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> float:
        """SIGTERM, then SIGKILL after `timeout`; returns the seconds it took to exit."""
        started = time.perf_counter()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        took = time.perf_counter() - started
        for index, (_, known, out) in enumerate(self._started):
            if known is proc:
                if out is not None:
                    out.close()
                del self._started[index]
                break
        return took

    def stop_all(self) -> None:
        for _, proc, _ in reversed(list(self._started)):
            self.stop(proc, timeout=10)


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS) and Threads of a live process, from /proc/<pid>/status."""
    wanted = {"VmRSS", "VmHWM", "Threads"}
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in wanted:
                found[key] = int(value.split()[0])
    return found
