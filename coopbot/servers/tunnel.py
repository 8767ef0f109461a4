"""A private local Docker socket for one SSH server, bridged like `docker -H ssh://...` does.

The docker SDK's ssh:// mode only reads ~/.ssh, so per-server keys and pinned host keys are
impossible with it. Instead every connection accepted on a local UNIX socket (in a 0700 temp
dir) becomes a new SSH channel running `docker system dial-stdio` on the server, exactly what
the docker CLI does. The SDK (`unix://` base URL) and the CLI (`DOCKER_HOST=unix://...`) both
go through it, over one SSH transport per server.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import tempfile
import threading
from concurrent.futures import Executor
from pathlib import Path

import paramiko

from coopbot.errors import CoopbotError, ServerUnreachable
from coopbot.servers.relay import Relay
from coopbot.servers.spec import ServerSpec
from coopbot.servers.ssh_connect import open_ssh_client

log = logging.getLogger(__name__)

DIAL_COMMAND = "docker system dial-stdio"


class SSHTunnel:
    """Serves `docker_host` (a `unix://` URL) for one SSH server.

    The SSH transport is opened by `start()`, kept alive, and reopened on demand when it has
    dropped: `ensure()` does it with errors translated for the caller, and a connection arriving
    on the socket does it too (so a docker CLI subprocess also survives a drop).
    """

    def __init__(
        self, spec: ServerSpec, *, executor: Executor | None = None, keepalive: float = 15.0
    ) -> None:
        if spec.kind != "ssh":
            raise ValueError(f"server {spec.name} is not an ssh server")
        self.spec = spec
        self._executor = executor
        self._keepalive = keepalive
        self._connect_lock = threading.Lock()  # one (re)connect at a time, from any thread
        self._client: paramiko.SSHClient | None = None
        self._dir: Path | None = None
        self._listener: socket.socket | None = None
        self._relays: set[Relay] = set()
        self._relays_lock = threading.Lock()
        self._closed = False

    @property
    def socket_path(self) -> Path:
        if self._dir is None:
            raise RuntimeError("the tunnel is not started")
        return self._dir / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def connected(self) -> bool:
        client = self._client
        transport = client.get_transport() if client is not None else None
        return transport is not None and transport.is_active()

    @property
    def open_channels(self) -> int:
        """Bridged connections now open (each is an SSH channel; sshd allows 10 by default)."""
        with self._relays_lock:
            return len(self._relays)

    async def start(self) -> None:
        """Connect and serve the local socket. Idempotent."""
        await self.ensure()
        if self._listener is None:
            self._listen()

    async def ensure(self) -> None:
        """Make sure the SSH transport is up, reconnecting if it dropped, within connect_timeout."""
        if self._closed:
            raise ServerUnreachable(self.spec.name, "its connection was closed")
        if self.connected:
            return
        loop = asyncio.get_running_loop()
        attempt = loop.run_in_executor(self._executor, self._transport)
        # A late connect is kept for the next call; its failure must not go unretrieved.
        attempt.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            await asyncio.wait_for(asyncio.shield(attempt), self.spec.connect_timeout)
        except TimeoutError:
            raise ServerUnreachable(self.spec.name, "connection timed out") from None

    async def close(self) -> None:
        """Stop serving, end every bridged connection and the SSH transport, remove the socket."""
        self._closed = True
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept thread
            except OSError:
                pass  # not listening any more: nothing to wake
            listener.close()
        with self._relays_lock:
            relays = list(self._relays)
        for relay in relays:
            relay.stop()
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)  # joins paramiko's transport thread
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def drop_transport(self) -> None:
        """Close the SSH transport as a network failure would (for tests and operators)."""
        client = self._client
        transport = client.get_transport() if client is not None else None
        if transport is not None:
            transport.close()

    def _transport(self) -> paramiko.Transport:
        """The live transport, connecting first if needed (blocking; any thread)."""
        with self._connect_lock:
            client = self._client
            transport = client.get_transport() if client is not None else None
            if transport is not None and transport.is_active():
                return transport
            if client is not None:
                client.close()
                self._client = None
            client = open_ssh_client(self.spec)
            if self._closed:  # close() ran while we were connecting
                client.close()
                raise ServerUnreachable(self.spec.name, "its connection was closed")
            transport = client.get_transport()
            assert transport is not None  # connect() succeeded
            transport.set_keepalive(int(self._keepalive))
            self._client = client
            log.info("server %s: SSH connected to %s", self.spec.name, self.spec.address)
            return transport

    def _listen(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="coopbot-ssh-"))  # mode 0700: private to us
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        listener.listen(32)
        self._listener = listener
        threading.Thread(
            target=self._accept_loop,
            args=(listener,),
            name=f"ssh-tunnel-{self.spec.name}",
            daemon=True,
        ).start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # the listener was shut down by close()
            threading.Thread(
                target=self._serve,
                args=(conn,),
                name=f"ssh-relay-{self.spec.name}",
                daemon=True,
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            channel = self._transport().open_session(timeout=self.spec.connect_timeout)
            channel.exec_command(DIAL_COMMAND)
        except (CoopbotError, paramiko.SSHException, OSError) as exc:
            # The caller sees a closed connection; ensure() reports the reason with its own call.
            log.warning("server %s: cannot open a Docker channel: %s", self.spec.name, exc)
            conn.close()
            return
        relay = Relay(conn, channel)
        with self._relays_lock:
            if self._closed:
                relay.stop()
            self._relays.add(relay)
        try:
            relay.run()
        finally:
            with self._relays_lock:
                self._relays.discard(relay)
