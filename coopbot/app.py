"""The composition root: the one place that builds every collaborator and wires them together."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

from coopbot.commands.core import CoreCommands
from coopbot.config import Config
from coopbot.errors import MatrixError
from coopbot.ids import UserID
from coopbot.matrix.gateway import MatrixGateway
from coopbot.messages import IncomingMessage
from coopbot.parser import CommandParser
from coopbot.pipeline import Pipeline, PipelineSettings
from coopbot.registry import CommandRegistry
from coopbot.roles import RoleResolver
from coopbot.rooms import RoomDirectory
from coopbot.store.audit import AuditLog
from coopbot.store.database import Database
from coopbot.store.handled import HandledEvents
from coopbot.store.kv import KeyValueStore
from coopbot.tasks import TaskGroup

log = logging.getLogger(__name__)

HANDLED_EVENTS_KEPT_SECONDS = 30 * 24 * 3600


@dataclass
class Bot:
    config: Config
    database: Database
    gateway: MatrixGateway
    pipeline: Pipeline
    rooms: RoomDirectory
    registry: CommandRegistry
    tasks: TaskGroup
    handled: HandledEvents

    async def start(self) -> None:
        await self.database.open()
        await self.handled.forget_older_than(HANDLED_EVENTS_KEPT_SECONDS)
        await self.gateway.login()
        for alias in self.rooms.aliases():
            try:
                self.rooms.bind_alias(alias, await self.gateway.resolve_alias(alias))
            except MatrixError as error:
                log.error("%s; commands from it will be ignored", error)

    async def run(self) -> None:
        """Run until stopped (SIGINT/SIGTERM, or `stop()`)."""
        await self.start()
        try:
            await self.gateway.run(self._dispatch)
        finally:
            await self.shutdown()

    async def _dispatch(self, message: IncomingMessage) -> None:
        # Each message runs in its own task so a long deploy never holds up the sync loop.
        self.tasks.spawn(self.pipeline.handle(message), name=f"message {message.event_id}")

    def stop(self) -> None:
        self.gateway.stop()

    async def shutdown(self) -> None:
        await self.tasks.drain(timeout=10)
        await self.gateway.close()
        await self.database.close()


def build(config: Config) -> Bot:
    database = Database(config.database)
    kv = KeyValueStore(database)
    handled = HandledEvents(database)
    audit = AuditLog(database)
    rooms = RoomDirectory(config.rooms)
    roles = RoleResolver(config)
    gateway = MatrixGateway(
        config.matrix, kv, config.invites,
        admins=frozenset(config.admins),
        configured_rooms=rooms.room_ids,
    )
    prefix = config.matrix.command_prefix
    registry = CommandRegistry()
    families = [CoreCommands(registry, prefix, lowest_role=roles.order[0])]
    for family in families:
        for spec in family.specs():
            registry.register(spec)
    pipeline = Pipeline(
        settings=PipelineSettings(bot_user_id=UserID(config.matrix.user_id), prefix=prefix),
        parser=CommandParser(prefix, config.matrix.user_id),
        registry=registry,
        rooms=rooms,
        roles=roles,
        power=gateway,
        handled=handled,
        audit=audit,
        responder=gateway,
    )
    return Bot(
        config=config, database=database, gateway=gateway, pipeline=pipeline, rooms=rooms,
        registry=registry, tasks=TaskGroup(), handled=handled,
    )


async def run_bot(config: Config) -> None:
    bot = build(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, bot.stop)
    await bot.run()
