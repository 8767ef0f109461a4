"""Docker's `/events` stream of one server, from the SDK's blocking iterator to asyncio.

The stream gets its own client and its own thread for as long as it is open: it would otherwise
hold one of the engine's few pooled threads and connections for hours. Through the SSH tunnel it
is one long-lived channel. Docker never ends the stream by itself, so an end we did not ask for
means the connection dropped: iteration then raises ServerUnreachable and the caller reconnects
(and re-reads whatever state it may have missed while away).

Event payloads are only hints that something changed: watchers re-read the state they need.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from coopbot.errors import CoopbotError, ServerUnreachable
from coopbot.servers.docker_client import open_api_client
from coopbot.servers.docker_errors import translate_docker_error

log = logging.getLogger(__name__)

Event = dict[str, Any]

EVENT_TYPES: tuple[str, ...] = ("service", "node", "container")
# Health checks alone emit exec_create/exec_start/exec_die every interval: ask only for the
# actions that can change what a watcher derives (service/node create-update-remove, task
# containers dying or changing health).
EVENT_ACTIONS: tuple[str, ...] = ("create", "update", "remove", "die", "oom", "health_status")


class _End:
    """Queued by the reader thread when the stream is over; `error` is None if we closed it."""

    def __init__(self, error: CoopbotError | None) -> None:
        self.error = error


class EventStream:
    """`async with engine.events() as stream: async for event in stream: ...`

    Entering returns once the daemon has accepted the subscription, so state read afterwards
    cannot miss a change. Iterating raises ServerUnreachable when the connection drops.
    """

    def __init__(
        self,
        server: str,
        socket_path: Callable[[], Awaitable[str]],
        *,
        types: Sequence[str] = EVENT_TYPES,
        actions: Sequence[str] = EVENT_ACTIONS,
        connect_timeout: float = 10.0,
    ) -> None:
        self.server = server
        self._socket_path = socket_path
        self._filters: Mapping[str, list[str]] = {"type": list(types), "event": list(actions)}
        self._connect_timeout = connect_timeout
        self._queue: asyncio.Queue[Event | _End] = asyncio.Queue()
        self._lock = threading.Lock()  # guards _stream/_closing between the thread and close()
        self._stream: Any = None  # docker.types.CancellableStream
        self._closing = False
        self._thread: threading.Thread | None = None

    async def __aenter__(self) -> EventStream:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # every later call ends the same way
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item

    async def open(self) -> None:
        """Subscribe; raises ServerUnreachable (or DockerError) if the daemon cannot be reached."""
        if self._thread is not None:
            raise RuntimeError("an event stream is opened once; make a new one to reconnect")
        path = await self._socket_path()  # for SSH this (re)connects the tunnel first
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(path, loop, opened), name=f"docker-events-{self.server}",
            daemon=True,
        )
        self._thread.start()
        try:
            # On timeout wait_for cancels `opened`, so a late answer from the thread is dropped.
            await asyncio.wait_for(opened, self._connect_timeout)
        except TimeoutError:
            self.close()
            raise ServerUnreachable(self.server, "Docker did not answer in time") from None
        except BaseException:
            self.close()
            raise

    def discard_pending(self) -> int:
        """Drop the events already queued (a reading made now covers them); keeps the end."""
        dropped = 0
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _End):
                self._queue.put_nowait(item)
                break
            dropped += 1
        return dropped

    def close(self) -> None:
        """End the stream (from the event loop; never blocks: it only shuts the socket down)."""
        with self._lock:
            self._closing = True
            stream, self._stream = self._stream, None
        if stream is not None:
            _close_quietly(stream)

    # --- the reader thread ----------------------------------------------------------------------

    def _run(
        self, path: str, loop: asyncio.AbstractEventLoop, opened: asyncio.Future[None]
    ) -> None:
        api: Any = None
        try:
            api = open_api_client(path, timeout=self._connect_timeout, max_connections=1)
            stream = api.events(decode=True, filters=dict(self._filters))
        except Exception as exc:  # the SDK raises requests, urllib3, OSError and its own
            if api is not None:
                api.close()
            failure = translate_docker_error(self.server, "watch the events", exc)
            _call_soon(loop, _settle, opened, failure)
            return
        with self._lock:
            closing = self._closing
            if not closing:
                self._stream = stream
        if closing:  # close() ran while we were connecting
            _close_quietly(stream)
            api.close()
            return
        _call_soon(loop, _settle, opened, None)
        error: CoopbotError | None = None
        try:
            # Blocks until the next event. A dropped connection simply ends the iteration (the
            # SDK turns socket errors into StopIteration); an HTTP error or a bad line raises.
            for event in stream:
                if isinstance(event, dict):
                    _call_soon(loop, self._queue.put_nowait, event)
        except Exception as exc:
            error = translate_docker_error(self.server, "watch the events", exc)
        finally:
            api.close()
        with self._lock:
            if self._closing:
                error = None  # we ended it: a clean end whatever the socket said
            elif error is None:
                error = ServerUnreachable(self.server, "the connection to Docker dropped")
        _call_soon(loop, self._queue.put_nowait, _End(error))


def _settle(future: asyncio.Future[None], error: CoopbotError | None) -> None:
    if future.done():  # open() gave up waiting
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass  # the loop is closed: nobody listens any more


def _close_quietly(stream: Any) -> None:
    try:
        stream.close()
    except Exception as exc:  # already closed by the peer: nothing left to do
        log.debug("closing an event stream: %r", exc)
