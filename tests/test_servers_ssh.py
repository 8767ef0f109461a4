"""The SSH tunnel on a REAL sshd: pinned host keys only, clear errors, reconnects, no ~/.ssh."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from coopbot.errors import HostKeyError, ServerUnreachable
from coopbot.servers import DockerEngine, ServerSpec
from coopbot.servers.ssh_connect import translate_ssh_error
from tests.harness.swarm import Sshd, free_port


def fingerprint(public_key: str) -> str:
    kind, blob = public_key.split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(blob)).fingerprint


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections (kernel backlog) but never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


async def test_unknown_host_key_is_refused_with_its_fingerprint(
    ssh_spec: ServerSpec, sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ~/.ssh trusts the server and holds the right key: it must not matter.
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "known_hosts").write_text(
        f"[{sshd.host}]:{sshd.port} {sshd.host_public_key}\n"
    )
    (home / ".ssh" / "id_ed25519").write_bytes(sshd.key_file.read_bytes())
    monkeypatch.setenv("HOME", str(home))
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    engine = DockerEngine(dataclasses.replace(ssh_spec, known_hosts_file=empty))
    try:
        with pytest.raises(HostKeyError) as caught:
            await engine.info()
    finally:
        await engine.close()
    assert str(caught.value) == (
        f"host key for viassh ({sshd.host}:{sshd.port}) is not in {empty}; add it after checking "
        f"its fingerprint ssh-ed25519 {fingerprint(sshd.host_public_key)} with the server's "
        "admin (ssh-keyscan gives the line to add)"
    )
    assert empty.read_text() == ""  # never auto-added


async def test_changed_host_key_is_refused(ssh_spec: ServerSpec, sshd: Sshd) -> None:
    pinned = sshd.wrong_known_hosts_file.read_text()
    engine = DockerEngine(
        dataclasses.replace(ssh_spec, known_hosts_file=sshd.wrong_known_hosts_file)
    )
    try:
        with pytest.raises(HostKeyError) as caught:
            await engine.info()
    finally:
        await engine.close()
    message = str(caught.value)
    assert message.startswith(f"host key for viassh ({sshd.host}:{sshd.port}) has CHANGED")
    assert fingerprint(sshd.host_public_key) in message
    assert fingerprint(pinned.split(" ", 1)[1]) in message
    assert sshd.wrong_known_hosts_file.read_text() == pinned


async def test_unauthorized_key_fails_authentication(ssh_spec: ServerSpec, sshd: Sshd) -> None:
    engine = DockerEngine(dataclasses.replace(ssh_spec, key_file=sshd.other_key_file))
    try:
        with pytest.raises(ServerUnreachable) as caught:
            await engine.info()
    finally:
        await engine.close()
    assert str(caught.value) == "server viassh unreachable: SSH authentication failed"


async def test_closed_port_is_refused_at_once(ssh_spec: ServerSpec) -> None:
    spec = dataclasses.replace(ssh_spec, host="127.0.0.2", port=free_port("127.0.0.2"))
    engine = DockerEngine(spec)
    started = time.monotonic()
    try:
        with pytest.raises(ServerUnreachable) as caught:
            await engine.info()
    finally:
        await engine.close()
    assert str(caught.value) == "server viassh unreachable: connection refused"
    assert time.monotonic() - started < 1.0


async def test_silent_server_times_out_within_the_connect_timeout(
    ssh_spec: ServerSpec, silent_port: int
) -> None:
    engine = DockerEngine(dataclasses.replace(ssh_spec, port=silent_port, connect_timeout=1.5))
    started = time.monotonic()
    try:
        with pytest.raises(ServerUnreachable) as caught:
            await engine.info()
    finally:
        await engine.close()
    elapsed = time.monotonic() - started
    assert caught.value.reason in (
        "connection timed out",
        "no SSH answer (timed out waiting for the server)",
    )
    assert 1.4 < elapsed < 2.5


async def test_missing_key_file_is_a_clear_error(ssh_spec: ServerSpec, tmp_path: Path) -> None:
    engine = DockerEngine(dataclasses.replace(ssh_spec, key_file=tmp_path / "nope"))
    try:
        with pytest.raises(ServerUnreachable) as caught:
            await engine.info()
    finally:
        await engine.close()
    assert str(caught.value) == "server viassh unreachable: its SSH key file cannot be read"


async def test_tunnel_socket_is_private_and_removed_on_close(ssh_spec: ServerSpec) -> None:
    engine = DockerEngine(ssh_spec)
    host = await engine.docker_host()
    assert engine.tunnel is not None
    path = engine.tunnel.socket_path
    assert host == f"unix://{path}"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    await engine.close()
    assert not path.parent.exists()


async def test_reconnects_after_the_transport_drops(ssh_spec: ServerSpec) -> None:
    engine = DockerEngine(ssh_spec)
    try:
        before = await engine.info()
        assert engine.tunnel is not None
        engine.tunnel.drop_transport()
        assert not engine.tunnel.connected
        after = await engine.info()  # API path: ensure() reconnects
        assert after == before
        engine.tunnel.drop_transport()
        await asyncio.sleep(0.1)
        # CLI path: the tunnel reconnects when the CLI's connection arrives.
        await engine.stack_remove("coopbot_no_such_stack")
        assert engine.tunnel.connected
    finally:
        await engine.close()


async def test_many_calls_share_few_ssh_channels(ssh_spec: ServerSpec) -> None:
    """sshd allows 10 sessions per connection; docker-py would keep one per URL path."""
    engine = DockerEngine(ssh_spec)
    try:
        for _ in range(3):
            await asyncio.gather(
                engine.info(),
                engine.stacks(),
                engine.secret_names(),
                engine.network_names(),
                engine.image_tags(),
                engine.stack_volumes("x"),
                *(engine.services(f"stack{i}") for i in range(12)),
            )
            assert engine.tunnel is not None
            assert 1 <= engine.tunnel.open_channels <= 4  # the engine's thread count
    finally:
        await engine.close()


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (socket.gaierror(-2, "Name or service not known"), "host name not found"),
        (TimeoutError("timed out"), "connection timed out"),
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        (OSError(113, "No route to host"), "host unreachable"),
        (paramiko.AuthenticationException("no"), "SSH authentication failed"),
        (
            paramiko.SSHException("Error reading SSH protocol banner"),
            "no SSH answer (timed out waiting for the server)",
        ),
        (paramiko.SSHException("kex failed for 10.1.2.3"), "SSH connection failed"),
    ],
)
def test_ssh_failures_become_short_sentences(
    ssh_spec: ServerSpec, error: Exception, reason: str
) -> None:
    translated = translate_ssh_error(ssh_spec, error)
    assert isinstance(translated, ServerUnreachable)
    assert str(translated) == f"server viassh unreachable: {reason}"
    assert translated.detail == repr(error)
