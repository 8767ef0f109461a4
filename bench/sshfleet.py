"""Several OpenSSH servers on 127.0.0.1, each with its own host key and known_hosts file, all
reaching the same Docker engine: a fleet of SSH endpoints on one machine.

The docker CLI reaches them as `DOCKER_HOST=ssh://sNN` through an ssh wrapper that adds `-F` with
this fleet's own client config (the equivalent of a person's ~/.ssh/config, which is never read
or written here). A second config adds connection reuse (ControlMaster), a power user's setup.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Processes

HOST = "127.0.0.1"


@dataclass(frozen=True)
class SshEndpoint:
    name: str
    host: str
    port: int
    user: str
    key_file: Path
    known_hosts_file: Path

    def server_config(self) -> dict[str, object]:
        """This endpoint as a coopbot `servers:` entry."""
        return {"kind": "ssh", "host": self.host, "port": self.port, "user": self.user,
                "key_file": str(self.key_file), "known_hosts_file": str(self.known_hosts_file),
                "connect_timeout": 10, "command_timeout": 60}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "coopbot-bench",
                    "-f", str(path)], check=True, timeout=30)
    kind, key = path.with_suffix(".pub").read_text().split()[:2]
    return f"{kind} {key}"


class SshFleet:
    def __init__(self, root: Path, procs: Processes) -> None:
        self.root = root
        self._procs = procs
        self.endpoints: list[SshEndpoint] = []
        self._mux_dir = root / "mux"

    def start(self, count: int) -> list[SshEndpoint]:
        binary = shutil.which("sshd") or "/usr/sbin/sshd"
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        client_key = self.root / "client_ed25519"
        authorized = _keygen(client_key)
        (self.root / "authorized_keys").write_text(authorized + "\n")
        started = []
        for number in range(1, count + 1):
            name = f"s{number:02d}"
            folder = self.root / name
            folder.mkdir()
            host_key = _keygen(folder / "host_ed25519")
            port = _free_port()
            known_hosts = folder / "known_hosts"
            known_hosts.write_text(f"[{HOST}]:{port} {host_key}\n")
            config = folder / "sshd_config"
            config.write_text(
                f"Port {port}\nListenAddress {HOST}\n"
                f"HostKey {folder / 'host_ed25519'}\nPidFile {folder / 'sshd.pid'}\n"
                f"AuthorizedKeysFile {self.root / 'authorized_keys'}\n"
                "PermitRootLogin prohibit-password\nPubkeyAuthentication yes\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                "StrictModes no\nUseDNS no\nPrintMotd no\nPrintLastLog no\nLogLevel ERROR\n"
            )
            proc = self._procs.spawn(f"sshd {name}", [binary, "-D", "-e", "-f", str(config)],
                                     log=folder / "sshd.log")
            started.append((proc, port, folder))
            self.endpoints.append(SshEndpoint(name, HOST, port, "root", client_key, known_hosts))
        for proc, port, folder in started:
            _wait_for_banner(port, proc, folder / "sshd.log")
        self._write_client_configs(client_key)
        return self.endpoints

    def _write_client_configs(self, client_key: Path) -> None:
        self._mux_dir.mkdir(mode=0o700, exist_ok=True)
        for variant, extra in (("plain", ""),
                               ("mux", f"  ControlMaster auto\n  ControlPath {self._mux_dir}/%C\n"
                                       "  ControlPersist 300\n")):
            lines = []
            for e in self.endpoints:
                lines.append(
                    f"Host {e.name}\n  HostName {e.host}\n  Port {e.port}\n  User {e.user}\n"
                    f"  IdentityFile {client_key}\n  IdentitiesOnly yes\n"
                    f"  UserKnownHostsFile {e.known_hosts_file}\n  StrictHostKeyChecking yes\n"
                    f"  BatchMode yes\n  LogLevel ERROR\n{extra}"
                )
            config = self.root / f"ssh_config.{variant}"
            config.write_text("".join(lines))
            wrapper_dir = self.root / f"bin-{variant}"
            wrapper_dir.mkdir()
            wrapper = wrapper_dir / "ssh"
            wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {config} "$@"\n')
            wrapper.chmod(0o755)

    def cli_env(self, endpoint: SshEndpoint, *, mux: bool = False) -> dict[str, str]:
        """Environment for `docker` reaching `endpoint` as ssh://<name> (a person's setup)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        wrapper_dir = self.root / ("bin-mux" if mux else "bin-plain")
        env["PATH"] = f"{wrapper_dir}:{env.get('PATH', '/usr/bin:/bin')}"
        env["DOCKER_HOST"] = f"ssh://{endpoint.name}"
        return env

    def close_mux(self) -> None:
        """Ask each ControlMaster (started by our ssh config) to exit."""
        config = self.root / "ssh_config.mux"
        if not config.exists():
            return
        for e in self.endpoints:
            subprocess.run(["/usr/bin/ssh", "-F", str(config), "-O", "exit", e.name],
                           capture_output=True, timeout=10, check=False)


def _wait_for_banner(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection((HOST, port), timeout=1) as conn:
                if conn.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"sshd did not answer on {HOST}:{port}:\n{log.read_text(errors='replace')}")
