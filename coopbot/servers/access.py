"""The bounded way into one engine: its thread pool, its API clients and its timeouts.

DockerEngine and the node-level helpers (node_containers.py, node_helpers.py) all reach the
Docker API through this, so one place bounds every call to a server and translates its errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from coopbot.errors import CoopbotError, ServerUnreachable
from coopbot.servers.docker_client import open_api_client
from coopbot.servers.docker_errors import TRANSPORT_ERRORS, translate_docker_error
from coopbot.servers.spec import ServerSpec

T = TypeVar("T")

# Socket timeout of the second client that reads long calls (a hook's output may take a while);
# each such call is bounded by its own, shorter, asyncio timeout.
_SLOW_SOCKET_TIMEOUT = 24 * 3600.0
_SLOW_CONNECTIONS = 2


class EngineAccess:
    def __init__(self, spec: ServerSpec, executor: ThreadPoolExecutor, threads: int,
                 docker_host: Callable[[], Awaitable[str]]) -> None:
        self.spec = spec
        self._executor = executor
        self._threads = threads
        self._docker_host = docker_host  # for SSH: (re)connects the tunnel first
        self._api: Any = None  # docker.APIClient, created on first use
        self._slow_api: Any = None  # a second client for calls that may take hours
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return self.spec.name

    async def call(self, action: str, fn: Callable[[Any], T]) -> T:
        """Run `fn(api_client)` in this server's threads, bounded by command_timeout."""
        api = await self.client()
        return await self.run(action, lambda: fn(api), self.spec.command_timeout)

    async def client(self) -> Any:
        socket_path = (await self._docker_host()).removeprefix("unix://")
        async with self._lock:
            if self._api is None:
                self._api = await self.run(
                    "connect to Docker",
                    lambda: open_api_client(socket_path, timeout=self.spec.command_timeout,
                                            max_connections=self._threads),
                    self.spec.connect_timeout,
                )
        return self._api

    async def slow_client(self) -> Any:
        """A client whose reads wait long: exec output arrives only when the command ends."""
        socket_path = (await self._docker_host()).removeprefix("unix://")
        async with self._lock:
            if self._slow_api is None:
                self._slow_api = await self.run(
                    "connect to Docker",
                    lambda: open_api_client(socket_path, timeout=_SLOW_SOCKET_TIMEOUT,
                                            max_connections=_SLOW_CONNECTIONS),
                    self.spec.connect_timeout,
                )
        return self._slow_api

    async def run(self, action: str, fn: Callable[[], T], timeout: float, *,
                  on_timeout: CoopbotError | None = None) -> T:
        """Run blocking `fn` in this server's threads within `timeout` seconds."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._executor, fn), timeout)
        except TimeoutError:
            if on_timeout is not None:
                raise on_timeout from None
            raise ServerUnreachable(self.name, "Docker did not answer in time") from None
        except TRANSPORT_ERRORS as exc:
            raise translate_docker_error(self.name, action, exc) from exc

    def close(self) -> None:
        for api in (self._api, self._slow_api):
            if api is not None:
                api.close()
        self._api = self._slow_api = None
