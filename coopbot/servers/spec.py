"""How to reach one server's Docker engine: its local socket, or SSH with a pinned host key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from coopbot.errors import ConfigError

ServerKind = Literal["local", "ssh"]


@dataclass(frozen=True)
class ServerSpec:
    """One server, as the config describes it.

    For `kind="ssh"`, `key_file` and `known_hosts_file` are the ONLY key and host keys used:
    ~/.ssh, the SSH agent and the system known_hosts are never consulted, so each server
    has its own identity and pinned host key.
    """

    name: str
    kind: ServerKind = "local"
    socket: str = "/var/run/docker.sock"
    host: str | None = None
    port: int = 22
    user: str | None = None
    key_file: Path | None = None
    known_hosts_file: Path | None = None
    connect_timeout: float = 10.0
    command_timeout: float = 60.0
    # The image a per-node helper runs to reach a node's own engine (its docker.sock), for what
    # the manager's API cannot do on another node: exec into a task, list its volumes.
    node_helper_image: str = "docker:24-cli"

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError(problems)

    def problems(self) -> list[str]:
        """One line per missing or invalid field, each naming its key."""
        prefix = f"servers.{self.name}"
        problems: list[str] = []
        if self.kind not in ("local", "ssh"):
            problems.append(f"{prefix}.kind must be 'local' or 'ssh'")
        if self.kind == "ssh":
            for key in ("host", "user", "key_file", "known_hosts_file"):
                if not getattr(self, key):
                    problems.append(f"{prefix}.{key} is required for an ssh server")
        if not 0 < self.port < 65536:
            problems.append(f"{prefix}.port must be between 1 and 65535")
        if self.connect_timeout <= 0 or self.command_timeout <= 0:
            problems.append(f"{prefix}: timeouts must be positive")
        return problems

    @property
    def address(self) -> str:
        """`host:port` for messages; the socket path for a local server."""
        return f"{self.host}:{self.port}" if self.kind == "ssh" else self.socket
