"""Open one strict SSH connection: only the server's own key and known_hosts, errors translated.

Unknown and changed host keys are refused, never added: trusting a new key is a human
decision made after checking its fingerprint out of band.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import NoReturn

import paramiko

from coopbot.errors import CoopbotError, HostKeyError, ServerUnreachable
from coopbot.servers.spec import ServerSpec

# TCP-level liveness: a silently dead peer (no RST) is dropped after about a minute instead of
# the kernel default of ~15 min, so a reconnect can happen. Paramiko's own keepalive only sends.
_TCP_KEEPIDLE = 15
_TCP_KEEPINTVL = 15
_TCP_KEEPCNT = 3
_TCP_USER_TIMEOUT_MS = 60_000


class _RefuseUnknownHost(paramiko.RejectPolicy):
    """RejectPolicy that says which key was refused, so an admin can check and pin it."""

    def __init__(self, spec: ServerSpec) -> None:
        self._spec = spec

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> NoReturn:
        spec = self._spec
        raise HostKeyError(
            f"host key for {spec.name} ({spec.host}:{spec.port}) is not in "
            f"{spec.known_hosts_file}; "
            f"add it after checking its fingerprint {key.get_name()} {key.fingerprint} "
            "with the server's admin (ssh-keyscan gives the line to add)",
            detail=f"refused unknown host key for {hostname}: {key.get_name()} {key.get_base64()}",
        )


def open_ssh_client(spec: ServerSpec) -> paramiko.SSHClient:
    """Connect and authenticate (blocking). Raises HostKeyError or ServerUnreachable only."""
    pkey = _load_key(spec)
    client = paramiko.SSHClient()
    # No load_system_host_keys(): only this server's pinned file counts.
    try:
        client.load_host_keys(str(spec.known_hosts_file))
    except OSError as exc:
        raise HostKeyError(
            f"the known_hosts file {spec.known_hosts_file} for {spec.name} cannot be read",
            detail=repr(exc),
        ) from exc
    client.set_missing_host_key_policy(_RefuseUnknownHost(spec))
    sock: socket.socket | None = None
    try:
        sock = _tcp_connect(spec)
        client.connect(
            hostname=str(spec.host),
            port=spec.port,
            username=spec.user,
            pkey=pkey,
            sock=sock,
            look_for_keys=False,
            allow_agent=False,
            timeout=spec.connect_timeout,
            banner_timeout=spec.connect_timeout,
            auth_timeout=spec.connect_timeout,
            channel_timeout=spec.connect_timeout,
        )
    except Exception as exc:
        client.close()
        if sock is not None:
            sock.close()
        raise translate_ssh_error(spec, exc) from exc
    return client


def _load_key(spec: ServerSpec) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(Path(str(spec.key_file)))
    except paramiko.PasswordRequiredException as exc:
        raise ServerUnreachable(
            spec.name, "its SSH key file is passphrase-protected", detail=repr(exc)
        ) from exc
    except (OSError, paramiko.SSHException, ValueError) as exc:
        raise ServerUnreachable(
            spec.name, "its SSH key file cannot be read", detail=repr(exc)
        ) from exc


def _tcp_connect(spec: ServerSpec) -> socket.socket:
    sock = socket.create_connection((str(spec.host), spec.port), timeout=spec.connect_timeout)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; elsewhere the kernel defaults apply
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, _TCP_KEEPIDLE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, _TCP_KEEPINTVL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, _TCP_KEEPCNT)
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, _TCP_USER_TIMEOUT_MS)
    return sock


def translate_ssh_error(spec: ServerSpec, exc: Exception) -> CoopbotError:
    """Map socket/paramiko failures to a room-safe sentence; the raw text goes in `detail`."""
    if isinstance(exc, CoopbotError):
        return exc
    detail = repr(exc)
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyError(
            f"host key for {spec.name} ({spec.host}:{spec.port}) has CHANGED: the server offered "
            f"{exc.key.get_name()} {exc.key.fingerprint} but {spec.known_hosts_file} pins "
            f"{exc.expected_key.get_name()} {exc.expected_key.fingerprint}. Refusing to connect: "
            "this may be an attack, or a reinstalled server; check with its admin before "
            "replacing the entry",
            detail=detail,
        )
    reason = _unreachable_reason(exc)
    return ServerUnreachable(spec.name, reason, detail=detail)


def _unreachable_reason(exc: Exception) -> str:
    if isinstance(exc, paramiko.AuthenticationException):
        return "SSH authentication failed"
    if isinstance(exc, TimeoutError):
        return "connection timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, paramiko.SSHException):
        if "banner" in str(exc).lower():
            return "no SSH answer (timed out waiting for the server)"
        return "SSH connection failed"
    if isinstance(exc, OSError):
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "host unreachable"
        if exc.errno == errno.ECONNRESET:
            return "connection reset"
        return "network error"
    return "SSH connection failed"
