"""All configured servers: one lazily created engine each, and status from all in parallel."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from coopbot.errors import ConfigError, CoopbotError, NotFound, ServerUnreachable
from coopbot.servers.engine import DockerEngine
from coopbot.servers.spec import ServerSpec
from coopbot.servers.states import ServerInfo

log = logging.getLogger(__name__)

# Background readings (the swarm watcher, update checks) across all servers at once. Each new
# SSH channel costs the server an sshd session and a `docker system dial-stdio` process, and the
# bot a share of its CPU: at start-up, twenty servers read all at once kept a member's first
# `!apps` waiting 15 s. Members' commands never wait for this limit.
BACKGROUND_SLOTS = 3


class ServerPool:
    def __init__(
        self,
        specs: Iterable[ServerSpec],
        *,
        engine_factory: Callable[[ServerSpec], DockerEngine] = DockerEngine,
        background_slots: int = BACKGROUND_SLOTS,
    ) -> None:
        self._specs: dict[str, ServerSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ConfigError([f"servers.{spec.name} is defined twice"])
            self._specs[spec.name] = spec
        self._factory = engine_factory
        self._engines: dict[str, DockerEngine] = {}
        self._background = asyncio.Semaphore(background_slots)

    @property
    def names(self) -> list[str]:
        return list(self._specs)

    def spec(self, name: str) -> ServerSpec:
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(sorted(self._specs)) or "none"
            raise NotFound(f"unknown server {name} (known: {known})") from None

    def get(self, name: str) -> DockerEngine:
        """The server's engine, created on first use (it connects on its first call)."""
        engine = self._engines.get(name)
        if engine is None:
            engine = self._engines[name] = self._factory(self.spec(name))
        return engine

    def background(self) -> asyncio.Semaphore:
        """`async with pool.background():` around work nobody is waiting for in a room."""
        return self._background

    async def close(self) -> None:
        engines, self._engines = list(self._engines.values()), {}
        await asyncio.gather(*(engine.close() for engine in engines))

    async def info_all(self, timeout: float = 10.0) -> dict[str, ServerInfo | CoopbotError]:
        """Every server's info, fetched in parallel; a failing server yields its error instead,
        after at most `timeout` seconds, without delaying the others."""

        async def one(name: str) -> ServerInfo | CoopbotError:
            try:
                return await asyncio.wait_for(self.get(name).info(), timeout)
            except TimeoutError:
                return ServerUnreachable(name, f"no answer within {timeout:g} s")
            except CoopbotError as exc:
                return exc

        results = await asyncio.gather(*(one(name) for name in self._specs))
        return dict(zip(self._specs, results, strict=True))


async def remove_abandoned_helpers(pool: ServerPool, older_than: float) -> None:
    """At start-up: remove the helpers (containers on the engine's node, services and their
    secrets on others) an earlier run left behind when it crashed; a restic helper holds the
    repository password. Background work: each server takes its turn, failures only log."""
    for name in pool.names:
        try:
            async with pool.background():
                engine = pool.get(name)
                removed = await engine.containers.remove_abandoned_helpers(older_than)
                removed += await engine.helpers.remove_abandoned(older_than)
        except CoopbotError as error:
            log.info("server %s: could not look for abandoned helpers: %s", name, error)
            continue
        if removed:
            log.warning("server %s: removed %d helper(s) an earlier run left behind", name,
                        removed)
