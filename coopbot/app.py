"""The composition root: the one place that builds every collaborator and wires them together."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from typing import Any, Protocol

from coopbot.approvals.policy import PolicyResolver
from coopbot.approvals.service import Approvals
from coopbot.backups import BackupService
from coopbot.backups.results import ScheduledBackup
from coopbot.backups.schedule import BackupScheduler
from coopbot.commands.approvals import ApprovalCommands
from coopbot.commands.backups import BackupCommands
from coopbot.commands.core import CoreCommands
from coopbot.commands.notify import NotifyCommands
from coopbot.commands.swarm import SwarmCommands
from coopbot.config import Config, SSHServer, parse_duration
from coopbot.errors import MatrixError
from coopbot.execution import CommandAudit, Executor
from coopbot.health import HealthServer, build_health
from coopbot.ids import EventID, RoomID, UserID
from coopbot.logging_setup import redact, redact_config_secrets
from coopbot.matrix.gateway import MatrixGateway
from coopbot.messages import IncomingMessage, IncomingReaction, IncomingRedaction
from coopbot.notify.alerts import AlertRouter
from coopbot.notify.auto import AutoUpgrader
from coopbot.notify.notifier import Notifier
from coopbot.notify.targets import NotificationTargets
from coopbot.notify.updates import UpdateChecker
from coopbot.observe import Observers
from coopbot.operations.deployer import Deployer
from coopbot.operations.preflight import Preflight
from coopbot.operations.recovery import Recovery
from coopbot.operations.scope import AppScope
from coopbot.operations.status import StatusViews
from coopbot.parser import CommandParser
from coopbot.pipeline import Pipeline, PipelineSettings
from coopbot.recipes.apps import AppCatalog
from coopbot.recipes.repo import RecipeStore
from coopbot.registry import CommandRegistry, CommandSpec
from coopbot.replies import Reply
from coopbot.roles import RoleResolver
from coopbot.rooms import RoomDirectory, RoomUpgrades
from coopbot.servers.pool import ServerPool
from coopbot.servers.spec import ServerSpec
from coopbot.status_message import CommandStatuses
from coopbot.store.approvals import ApprovalStore
from coopbot.store.audit import AuditLog
from coopbot.store.database import Database
from coopbot.store.handled import HandledEvents
from coopbot.store.kv import KeyValueStore
from coopbot.store.notices import NoticeStore
from coopbot.store.operations import OperationStore
from coopbot.store.status_messages import StatusMessages
from coopbot.tasks import TaskGroup
from coopbot.watch.watcher import SwarmWatcher

log = logging.getLogger(__name__)

HANDLED_EVENTS_KEPT_SECONDS = 30 * 24 * 3600


class CommandFamily(Protocol):
    def specs(self) -> list[CommandSpec]: ...


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
    operations: OperationStore
    pool: ServerPool
    approvals: Approvals
    observers: Observers
    updates: UpdateChecker
    roles: RoleResolver
    kv: KeyValueStore
    upgrades: RoomUpgrades
    statuses: StatusMessages
    recovery: Recovery | None = None
    scheduler: BackupScheduler | None = None
    backups: BackupService | None = None
    watcher: SwarmWatcher | None = None
    background: list[asyncio.Task[Any]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    health: HealthServer | None = None  # health and metrics (issue 8): off unless configured

    async def start(self) -> None:
        await self.database.open()
        await self.handled.forget_older_than(HANDLED_EVENTS_KEPT_SECONDS)
        await self.statuses.forget_older_than(HANDLED_EVENTS_KEPT_SECONDS)
        # Locks an earlier run left behind stay held until recovery (after the first sync,
        # when the rooms can be told) has found out what came of their operations.
        await self.gateway.login()
        redact(self.gateway.client.access_token)  # logs never show the session's token
        await self.upgrades.restore()
        for alias in self.rooms.aliases():
            try:
                self.rooms.bind_alias(alias, await self.gateway.resolve_alias(alias))
            except MatrixError as error:
                log.error("%s; commands from it will be ignored", error)

    async def run(self) -> None:
        """Run until stopped (SIGINT/SIGTERM, or `stop()`)."""
        await self.start()
        self.tasks.spawn(self._after_first_sync(), name="after the first sync")
        try:
            if self.health is not None:
                await self.health.start()
            await self.gateway.run(self)
        finally:
            await self.shutdown()

    async def _after_first_sync(self) -> None:
        await self.gateway.synced_once.wait()
        if self.recovery is not None:
            self.tasks.spawn(self.recovery.run(), name="operations left open by a crash")
        stop = self.stopping
        # The long-lived loops are supervised: one that dies is restarted and reported.
        self.tasks.supervise(lambda: self.approvals.run_expiry(stop), name="approval expiry",
                             stop=stop)
        if self.backups is not None:
            self.tasks.spawn(self.backups.remove_abandoned_helpers(),
                             name="remove abandoned restic helpers")
        if self.scheduler is not None:
            # Runs until cancelled at shutdown (it sleeps until the next due backup).
            self.background.append(self.tasks.supervise(self.scheduler.run,
                                                        name="scheduled backups", stop=stop))
        if self.watcher is not None:
            watcher = self.watcher
            self.tasks.supervise(lambda: watcher.run(stop), name="swarm watcher", stop=stop)
        every = parse_duration(self.config.updates.check_every)
        if every > 0:
            self.tasks.supervise(lambda: self.updates.run(every, stop), name="update checks",
                                 stop=stop)
        await self.approvals.resolve_interrupted()
        await self.approvals.catch_up()

    # The sync listener: each event is handled in its own task, so a long deploy never holds
    # up the sync loop.
    async def message(self, message: IncomingMessage) -> None:
        self.tasks.spawn(self.pipeline.handle(message), name=f"message {message.event_id}")

    async def reaction(self, reaction: IncomingReaction) -> None:
        self.tasks.spawn(self.approvals.reaction(reaction), name=f"reaction {reaction.event_id}")

    async def redaction(self, redaction: IncomingRedaction) -> None:
        self.tasks.spawn(self.approvals.redaction(redaction),
                         name=f"redaction {redaction.event_id}")

    async def tombstone(self, room_id: RoomID, sender: UserID, replacement: RoomID) -> None:
        await self.upgrades.follow(room_id, sender, replacement)

    def stop(self) -> None:
        self.stopping.set()
        self.gateway.stop()

    async def shutdown(self) -> None:
        self.stopping.set()
        for task in self.background:
            task.cancel()
        if self.health is not None:
            await self.health.stop()
        await self.tasks.drain(timeout=10)
        await self.gateway.close()
        await self.pool.close()
        await self.database.close()


def build(config: Config) -> Bot:
    observers = Observers()
    database = Database(config.database)
    kv = KeyValueStore(database)
    handled = HandledEvents(database)
    audit = AuditLog(database)
    statuses = StatusMessages(database)
    rooms = RoomDirectory(config.rooms)
    roles = RoleResolver(config)
    gateway = MatrixGateway(
        config.matrix, kv, config.invites,
        admins=frozenset(config.admins),
        configured_rooms=rooms.room_ids,
        observers=observers,
    )
    operations = OperationStore(database, observers=observers)
    pool = ServerPool(server_specs(config))
    recipes = RecipeStore(config.recipes.cache, config.recipes.url_template,
                          config.recipes.overrides)
    scope = AppScope(AppCatalog(config.apps_dir))
    preflight = Preflight({name: s.check_images for name, s in config.servers.items()})
    # backups (issue 5): a BackupService only when `backups` is configured; the deployer backs
    # up first before the operations whose global policy says `backup_first`.
    policies = PolicyResolver(config)
    backups = (BackupService(pool, scope, operations, config.backups,
                             needs_backup=policies.needs_backup)
               if config.backups else None)
    deployer = Deployer(
        scope, recipes, pool, operations, preflight,
        pre_backup=backups.before_operation if backups is not None else None,
        needs_backup=policies.needs_backup,
    )
    status = StatusViews(scope, recipes, pool)

    prefix = config.matrix.command_prefix
    registry = CommandRegistry()
    lowest = roles.order[0]
    # Changing a swarm needs the second role (operator by default) when there is one.
    change_role = roles.order[1] if len(roles.order) > 1 else lowest
    families: list[CommandFamily] = [
        CoreCommands(registry, prefix, lowest_role=lowest),
        SwarmCommands(deployer, status, read_role=lowest, change_role=change_role),
    ]
    if backups is not None:
        families.append(BackupCommands(backups, read_role=lowest, change_role=change_role))
    tasks = TaskGroup()
    command_audit = CommandAudit(audit, observers)
    # The operation and report stages, shared by the pipeline and approvals (built first, so
    # neither needs the other late).
    executor = Executor(responder=gateway, audit=command_audit)
    status_messages = CommandStatuses(gateway, statuses)
    approvals = Approvals(
        store=ApprovalStore(database), policies=policies, roles=roles,
        power=gateway, rooms=rooms, registry=registry, operations=operations, audit=audit,
        poster=gateway, execute=executor.execute, statuses=status_messages, tasks=tasks,
        prefix=prefix, bot_user_id=config.matrix.user_id, devices=gateway.device_trust,
    )
    families.append(ApprovalCommands(approvals, audit, member_role=lowest,
                                     audit_role=change_role))
    notices = NoticeStore(database)
    targets = NotificationTargets(rooms)
    notifier = Notifier(targets, gateway, notices)
    observers.subscribe(notifier.on_event)
    router = AlertRouter(scope, operations, notifier)
    watcher = (SwarmWatcher(pool, list(config.servers),
                            is_coopbot_operation=router.is_coopbot_operation, emit=router.emit)
               if config.watch_swarms and config.servers else None)
    families.append(NotifyCommands(
        targets, notices, scope, read_role=lowest, change_role=change_role,
        swarm_state=(lambda: watcher.snapshot().lines()) if watcher is not None else None))
    for family in families:
        for spec in family.specs():
            registry.register(spec)
    for command, role in config.command_roles.items():
        registry.override_role(command, role)
    pipeline = Pipeline(
        settings=PipelineSettings(bot_user_id=UserID(config.matrix.user_id), prefix=prefix),
        parser=CommandParser(prefix, config.matrix.user_id),
        registry=registry,
        rooms=rooms,
        roles=roles,
        power=gateway,
        handled=handled,
        audit=command_audit,
        executor=executor,
        statuses=status_messages,
        approval=approvals.gate,
    )

    async def post(room_id: RoomID, reply: Reply, key: str) -> EventID:
        return await gateway.post(room_id, reply, key=key)

    auto_upgrader = AutoUpgrader(
        bot_user_id=config.matrix.user_id, registry=registry, rooms=rooms, targets=targets,
        role_order=roles.order, post=post, gate=approvals.gate, execute=executor.execute,
    )
    updates = UpdateChecker(scope, recipes, pool, notices, notifier.announce_keyed,
                            config.updates.auto_update, auto_upgrader, prefix)
    # health and metrics (issue 8): the HTTP listener and its metrics, only when enabled.
    health = (build_health(config, observers=observers, database=database, clock=gateway,
                           pool=pool, registry=registry, tasks=tasks)
              if config.health.enabled else None)
    scheduler = None
    schedules = {name: b.schedule for name, b in config.backups.items() if b.schedule}
    if backups is not None and schedules:
        async def report(outcome: ScheduledBackup) -> None:
            # Scheduled backups speak up only when they fail (or prune fails to keep up).
            if not outcome.ok:
                await notifier.announce(outcome.server, outcome.app,
                                        Reply.of(f"❌ scheduled backup: {outcome.message}"),
                                        key=Notifier.unique_key(f"backup/{outcome.app}"))

        scheduler = BackupScheduler(backups, schedules, report)
    return Bot(
        config=config, database=database, gateway=gateway, pipeline=pipeline, rooms=rooms,
        registry=registry, tasks=tasks, handled=handled, operations=operations,
        pool=pool, approvals=approvals, observers=observers, updates=updates, health=health,
        roles=roles, kv=kv, scheduler=scheduler, watcher=watcher, backups=backups,
        upgrades=RoomUpgrades(rooms, kv, roles, power=gateway.power_info, join=gateway.join),
        statuses=statuses,
        recovery=Recovery(operations, audit, statuses, scope, pool, gateway),
    )


def server_specs(config: Config) -> list[ServerSpec]:
    specs = []
    for name, server in config.servers.items():
        if isinstance(server, SSHServer):
            specs.append(ServerSpec(
                name=name, kind="ssh", host=server.host, port=server.port, user=server.user,
                key_file=server.key_file, known_hosts_file=server.known_hosts_file,
                connect_timeout=server.connect_timeout, command_timeout=server.command_timeout,
            ))
        else:
            specs.append(ServerSpec(name=name, kind="local", socket=server.socket,
                                    command_timeout=server.command_timeout))
    return specs


async def run_bot(config: Config) -> None:
    redact_config_secrets(config)
    bot = build(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, bot.stop)
    await bot.run()
