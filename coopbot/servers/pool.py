"""All configured servers: one lazily created engine each, and status from all in parallel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from coopbot.errors import ConfigError, CoopbotError, NotFound, ServerUnreachable
from coopbot.servers.engine import DockerEngine
from coopbot.servers.spec import ServerSpec
from coopbot.servers.states import ServerInfo


class ServerPool:
    def __init__(
        self,
        specs: Iterable[ServerSpec],
        *,
        engine_factory: Callable[[ServerSpec], DockerEngine] = DockerEngine,
    ) -> None:
        self._specs: dict[str, ServerSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ConfigError([f"servers.{spec.name} is defined twice"])
            self._specs[spec.name] = spec
        self._factory = engine_factory
        self._engines: dict[str, DockerEngine] = {}

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
