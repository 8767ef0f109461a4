"""Pump bytes between one accepted local socket and one SSH channel until either side ends."""

from __future__ import annotations

import logging
import select
import socket

import paramiko

log = logging.getLogger(__name__)

_CHUNK = 65536
_STDERR_KEPT = 2048


class Relay:
    """One local connection bridged to one remote `docker system dial-stdio`.

    `run()` blocks (it runs in its own thread) and closes both ends when it returns; `stop()`
    may be called from any thread and makes `run()` return. The remote's stderr (last 2 KB)
    is kept for diagnostics only.
    """

    def __init__(self, sock: socket.socket, channel: paramiko.Channel) -> None:
        self.sock = sock
        self.channel = channel
        self.stderr_tail = b""

    def run(self) -> None:
        sock, chan = self.sock, self.channel
        local_open = True
        try:
            while True:
                watched: list[socket.socket | paramiko.Channel] = (
                    [chan, sock] if local_open else [chan]
                )
                readable, _, _ = select.select(watched, [], [])
                if chan in readable:
                    if chan.recv_stderr_ready():
                        tail = self.stderr_tail + chan.recv_stderr(_CHUNK)
                        self.stderr_tail = tail[-_STDERR_KEPT:]
                    if chan.recv_ready():
                        sock.sendall(chan.recv(_CHUNK))
                    elif chan.eof_received or chan.closed:
                        break
                if local_open and sock in readable:
                    data = sock.recv(_CHUNK)
                    if data:
                        chan.sendall(data)
                    else:
                        # The client is done sending: pass the EOF on and drain the answer.
                        chan.shutdown_write()
                        local_open = False
        except (OSError, EOFError, ValueError, paramiko.SSHException) as exc:
            log.debug("relay ended: %r", exc)
        finally:
            self.stop()
            # Only this thread closes the fd, so select() never watches a reused descriptor.
            sock.close()
        if self.stderr_tail:
            log.debug("remote dial-stdio stderr: %r", self.stderr_tail)

    def stop(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the peer already went away
        try:
            self.channel.close()
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the transport died first: the channel is gone with it
