"""A throwaway local Synapse homeserver, for `coopbot dev` and for the test suite.

Synapse runs as a subprocess of the current interpreter (`sys.executable -m
synapse.app.homeserver`), so it only needs the `matrix-synapse` package in the same
environment (the `homeserver` extra). Everything lives in one work directory: config,
signing key, sqlite database, media and logs. Re-running on the same directory reuses
all of it (port, secrets, users), so a dev loop keeps its accounts and rooms.

This is a dev/test tool: failures raise `RuntimeError` with a sentence and, where it
helps, the tail of Synapse's log. Only the standard library (plus PyYAML, already a
dependency) is used, so it works from sync code and via `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, cast

import yaml

SERVER_NAME = "localhost"
HOST = "127.0.0.1"

# Every rate limiter Synapse 1.163 reads (synapse/config/ratelimiting.py), raised so that
# tests and a busy dev loop never hit 429. Dotted keys are nested sections.
_RATE_LIMITERS = (
    "rc_message",
    "rc_registration",
    "rc_registration_token_validity",
    "rc_login.address",
    "rc_login.account",
    "rc_login.failed_attempts",
    "rc_admin_redaction",
    "rc_joins.local",
    "rc_joins.remote",
    "rc_joins_per_room",
    "rc_key_requests",
    "rc_3pid_validation",
    "rc_invites.per_room",
    "rc_invites.per_user",
    "rc_invites.per_issuer",
    "rc_third_party_invite",
    "rc_media_create",
    "rc_presence.per_user",
    "rc_delayed_event_mgmt",
    "rc_room_creation",
    "rc_reports",
    "rc_user_directory",
    "rc_profile",
)
_FAST = {"per_second": 10000, "burst_count": 10000}


def _rate_limits() -> dict[str, Any]:
    limits: dict[str, Any] = {}
    for key in _RATE_LIMITERS:
        section, _, sub = key.partition(".")
        if sub:
            limits.setdefault(section, {})[sub] = dict(_FAST)
        else:
            limits[section] = dict(_FAST)
    return limits


def _free_port() -> int:
    # Bind to port 0 and let the kernel choose; the port is free again once closed.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


class LocalSynapse:
    """One Synapse homeserver on 127.0.0.1, configured and kept in `workdir`.

    `port=None` picks a free port on the first config write; later runs read it back
    from the config. An explicit port overrides (and rewrites) the stored one.
    """

    START_TIMEOUT = 60.0

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self._port = port
        self._secret: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    # -- paths and addresses -------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.workdir / "homeserver.yaml"

    @property
    def log_path(self) -> Path:
        """Synapse's own log (WARNING and above)."""
        return self.workdir / "homeserver.log"

    @property
    def output_path(self) -> Path:
        """The subprocess's stdout/stderr: startup errors and tracebacks land here."""
        return self.workdir / "synapse.out.log"

    @property
    def signing_key_path(self) -> Path:
        return self.workdir / f"{SERVER_NAME}.signing.key"

    @property
    def server_name(self) -> str:
        return SERVER_NAME

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("The Synapse port is not known yet: call ensure_config() first.")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    # -- configuration -------------------------------------------------------------

    def ensure_config(self) -> None:
        """Write the config and signing key once; later calls reuse them."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.config_path.exists():
            config = self._load_config()
            stored_port = int(config["listeners"][0]["port"])
            self._secret = str(config["registration_shared_secret"])
            if self._port is None:
                self._port = stored_port
            elif self._port != stored_port:
                config["listeners"][0]["port"] = self._port
                config["public_baseurl"] = f"{self.base_url}/"
                self._write_yaml(self.config_path, config)
        else:
            if self._port is None:
                self._port = _free_port()
            self._secret = secrets.token_urlsafe(32)
            self._write_yaml(self.config_path, self._new_config(self._secret))
        log_config = self.workdir / "log.config.yaml"
        if not log_config.exists():
            self._write_yaml(log_config, self._log_config())
        if not self.signing_key_path.exists():
            self._generate_keys()

    def _load_config(self) -> dict[str, Any]:
        try:
            loaded = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
            if not isinstance(loaded, dict):
                raise TypeError("not a mapping")
            loaded["listeners"][0]["port"]
            loaded["registration_shared_secret"]
        except (OSError, yaml.YAMLError, TypeError, KeyError, IndexError) as exc:
            raise RuntimeError(
                f"{self.config_path} exists but is not a config this tool wrote ({exc}); "
                "delete the work directory to start afresh."
            ) from exc
        return cast(dict[str, Any], loaded)

    def _new_config(self, secret: str) -> dict[str, Any]:
        work = self.workdir
        config: dict[str, Any] = {
            "server_name": SERVER_NAME,
            "public_baseurl": f"{self.base_url}/",
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": [HOST],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    # Client API only (the admin API rides on it): no federation listener.
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(work / "homeserver.db")}},
            "log_config": str(work / "log.config.yaml"),
            "media_store_path": str(work / "media_store"),
            "signing_key_path": str(self.signing_key_path),
            "registration_shared_secret": secret,
            "macaroon_secret_key": secrets.token_urlsafe(32),
            "form_secret": secrets.token_urlsafe(32),
            "enable_registration": False,
            # Loopback only: never talk to matrix.org or any other server.
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "url_preview_enabled": False,
            "presence": {"enabled": False},
            "report_stats": False,
            # bcrypt at 4 rounds makes a login ~10 ms instead of ~250 ms.
            "bcrypt_rounds": 4,
        }
        config.update(_rate_limits())
        return config

    def _log_config(self) -> dict[str, Any]:
        return {
            "version": 1,
            "formatters": {
                "plain": {"format": "%(asctime)s - %(name)s - %(levelname)s - %(message)s"}
            },
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "formatter": "plain",
                    "filename": str(self.log_path),
                    "encoding": "utf8",
                }
            },
            "root": {"level": "WARNING", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }

    @staticmethod
    def _write_yaml(path: Path, data: dict[str, Any]) -> None:
        # Write-then-rename so an interrupted run never leaves half a config; 0600
        # because the config holds the registration secret.
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yaml.safe_dump(data, handle, sort_keys=False)
        tmp.replace(path)

    def _generate_keys(self) -> None:
        result = subprocess.run(
            [*self._command(), "--generate-keys"],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0 or not self.signing_key_path.exists():
            raise RuntimeError(
                "Synapse could not generate its signing key "
                f"(exit {result.returncode}). Is matrix-synapse installed in this "
                f"environment?\n{(result.stdout + result.stderr)[-3000:]}"
            )

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)]

    # -- process -------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start Synapse and block until its client API answers."""
        if self.running:
            return
        # A leftover Synapse on our port would answer the readiness probe for us. Check
        # a known port before the (slow, ~2 s) first config write, and again after it.
        if self._port is not None:
            self._refuse_busy_port(self._port)
        self.ensure_config()
        self._refuse_busy_port(self.port)
        self._out = self.output_path.open("ab")
        self._proc = subprocess.Popen(
            self._command(),
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        # Synapse writes no pid file unless it daemonizes; ours names a leftover process
        # (say, after the bot was killed) in the "port in use" error of the next run.
        self._pid_path.write_text(f"{self._proc.pid}\n", encoding="utf-8")
        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                self._pid_path.unlink(missing_ok=True)
                self._close_output()
                raise RuntimeError(
                    f"Synapse exited with code {code} during startup.\n{self.log_tail()}"
                )
            if self._ready():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"Synapse did not answer on {self.base_url} within {timeout:.0f} s.\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.1)

    @property
    def _pid_path(self) -> Path:
        return self.workdir / "synapse.pid"

    def _refuse_busy_port(self, port: int) -> None:
        if not _port_in_use(port):
            return
        hint = ""
        with contextlib.suppress(OSError, ValueError):
            pid = int(self._pid_path.read_text(encoding="utf-8"))
            os.kill(pid, 0)  # raises if no such process
            hint = f" (Synapse pid {pid}, started from {self.workdir}, may still be running)"
        raise RuntimeError(
            f"Port {port} on {HOST} is already in use{hint}; stop whatever holds it "
            "or choose another port."
        )

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"{self.base_url}/_matrix/client/versions", timeout=2
            ) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`. Safe to call more than once."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None:
            self._pid_path.unlink(missing_ok=True)
        self._close_output()

    def _close_output(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of Synapse's output and log, for error messages."""
        parts = []
        for path in (self.output_path, self.log_path):
            if path.exists():
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()
                parts.append(f"--- {path.name} (last {lines} lines) ---")
                parts.extend(text[-lines:])
        return "\n".join(parts) if parts else "(Synapse wrote no log)"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- users ---------------------------------------------------------------------

    def register(self, localpart: str, password: str, admin: bool = False) -> str:
        """Create a user with the shared-secret admin API and return its user id.

        Idempotent: if the user exists (a re-run), the password is checked by logging
        in, and a mismatch is an error rather than a silently unusable account.
        """
        if self._secret is None:
            self.ensure_config()
        assert self._secret is not None
        user_id = self.user_id(localpart)
        status, body = self._request("GET", "/_synapse/admin/v1/register")
        if status != 200 or "nonce" not in body:
            raise RuntimeError(f"Synapse refused a registration nonce (HTTP {status}): {body}")
        nonce = str(body["nonce"])
        role = "admin" if admin else "notadmin"
        mac = hmac.new(
            self._secret.encode(),
            b"\x00".join(s.encode() for s in (nonce, localpart, password, role)),
            hashlib.sha1,
        ).hexdigest()
        status, body = self._request(
            "POST",
            "/_synapse/admin/v1/register",
            {
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac,
            },
        )
        if status == 200:
            # Registration logs a device in; drop it so the account's device list only
            # holds the devices its real clients create.
            self._logout(str(body["access_token"]))
            return str(body.get("user_id", user_id))
        if body.get("errcode") == "M_USER_IN_USE":
            self._check_password(localpart, password)
            return user_id
        raise RuntimeError(f"Synapse refused to register {user_id} (HTTP {status}): {body}")

    def _check_password(self, localpart: str, password: str) -> None:
        status, body = self._request(
            "POST",
            "/_matrix/client/v3/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": localpart},
                "password": password,
                "initial_device_display_name": "coopbot register check",
            },
        )
        if status != 200:
            raise RuntimeError(
                f"{self.user_id(localpart)} already exists and the given password does not "
                f"log in (HTTP {status}, {body.get('errcode')})."
            )
        self._logout(str(body["access_token"]))

    def _logout(self, token: str) -> None:
        # Best effort: a leftover device is harmless, so a failure here is ignored.
        with contextlib.suppress(RuntimeError):
            self._request("POST", "/_matrix/client/v3/logout", {}, token=token)

    def _request(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        *,
        token: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One JSON request; returns (status, body) for HTTP errors too."""
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise RuntimeError(f"Synapse at {self.base_url} is unreachable: {exc}") from exc
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"raw": raw[:500].decode(errors="replace")}
        return status, body if isinstance(body, dict) else {"body": body}
