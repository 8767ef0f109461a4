"""The composition root: the one place that builds every collaborator and wires them together."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from coopbot.approvals.electorate import Voters
from coopbot.approvals.policy import PolicyResolver
from coopbot.approvals.service import Approvals
from coopbot.backups import BackupService
from coopbot.backups.schedule import BackupScheduler
from coopbot.commands.approvals import ApprovalCommands
from coopbot.commands.apps import AppCommands
from coopbot.commands.backups import BackupCommands
from coopbot.commands.core import CoreCommands
from coopbot.commands.nodes import NodeCommands
from coopbot.commands.notify import NotifyCommands
from coopbot.commands.runtime import RuntimeCommands
from coopbot.commands.secrets import SecretCommands
from coopbot.commands.swarm import SwarmCommands
from coopbot.config import Config, SSHServer, parse_duration
from coopbot.errors import MatrixError
from coopbot.execution import CommandAudit, Executor
from coopbot.health import HealthServer, build_health
from coopbot.ids import RoomID, UserID
from coopbot.logging_setup import redact, redact_config_secrets
from coopbot.matrix.gateway import MatrixGateway
from coopbot.messages import IncomingMessage, IncomingReaction, IncomingRedaction
from coopbot.notify.alerts import AlertRouter
from coopbot.notify.auto import AutoUpgrader
from coopbot.notify.notifier import Notifier
from coopbot.notify.targets import NotificationTargets
from coopbot.notify.updates import UpdateChecker
from coopbot.observe import Observers
from coopbot.operations.app_files import AppFiles
from coopbot.operations.app_runtime import AppRuntime, LatestBackup
from coopbot.operations.data_safety import DataSafety
from coopbot.operations.deployer import Deployer
from coopbot.operations.preflight import Preflight
from coopbot.operations.prune import NodeMaintenance
from coopbot.operations.recovery import Recovery
from coopbot.operations.scope import AppScope
from coopbot.operations.secret_ops import SecretService
from coopbot.operations.status import StatusViews
from coopbot.parser import CommandParser
from coopbot.pipeline import Pipeline, PipelineSettings
from coopbot.recipes.apps import App, AppCatalog
from coopbot.recipes.apps_history import AppsHistory
from coopbot.recipes.repo import RecipeStore
from coopbot.registry import CommandRegistry, CommandSpec
from coopbot.roles import RoleResolver
from coopbot.rooms import RoomDirectory, RoomUpgrades
from coopbot.servers.node_usage import UsageBoard
from coopbot.servers.pool import ServerPool, remove_abandoned_helpers
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
from coopbot.watch.node_health import NodeHealth, Thresholds
from coopbot.watch.watcher import SwarmWatcher

log = logging.getLogger(__name__)

# A helper that finished this long ago (seconds) belongs to no live operation: a running bot
# reads a helper's output and removes it the moment it ends.
HELPER_ABANDONED_AFTER = 600.0

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
    node_health: NodeHealth | None = None
    background: list[asyncio.Task[Any]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    health: HealthServer | None = None  # health and metrics: off unless configured

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
        if self.pool.names:
            self.tasks.spawn(remove_abandoned_helpers(self.pool, HELPER_ABANDONED_AFTER),
                             name="remove abandoned helpers")
        if self.scheduler is not None:
            # Runs until cancelled at shutdown (it sleeps until the next due backup).
            self.background.append(self.tasks.supervise(self.scheduler.run,
                                                        name="scheduled backups", stop=stop))
        if self.watcher is not None:
            watcher = self.watcher
            self.tasks.supervise(lambda: watcher.run(stop), name="swarm watcher", stop=stop)
        if self.node_health is not None:
            node_health = self.node_health
            self.tasks.supervise(lambda: node_health.run(stop), name="node health", stop=stop)
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
    """The bot, assembled layer by layer: each builder below makes one layer from the config
    and the layers under it, and nothing is wired in later."""
    core = _core(config)
    gateway = _gateway(config, core)
    swarm = _swarm(config, core)
    stages = _stages(core, gateway)
    approvals = _approvals(config, core, gateway, stages)
    news = _notifications(config, core, gateway, swarm)
    _register_commands(config, core, gateway, swarm, approvals, news)
    return Bot(
        config=config, database=core.database, gateway=gateway,
        pipeline=_pipeline(config, core, gateway, stages, approvals),
        rooms=core.rooms, registry=core.registry, tasks=stages.tasks, handled=core.handled,
        operations=core.operations, pool=swarm.pool, approvals=approvals,
        observers=core.observers,
        updates=_updates(config, core, gateway, swarm, stages, approvals, news),
        health=(build_health(config, observers=core.observers, database=core.database,
                             clock=gateway, pool=swarm.pool, registry=core.registry,
                             tasks=stages.tasks)
                if config.health.enabled else None),
        roles=core.roles, kv=core.kv, scheduler=_scheduler(config, swarm, news),
        watcher=news.watcher, node_health=news.node_health, backups=swarm.backups,
        upgrades=RoomUpgrades(core.rooms, core.kv, core.roles, power=gateway.power_info,
                              join=gateway.join),
        statuses=core.statuses,
        recovery=Recovery(core.operations, core.audit, core.statuses, swarm.scope, swarm.pool,
                          gateway, env_written=swarm.files.env_written),
    )


@dataclass(frozen=True)
class _Core:
    """State and the room model: what every other layer reads or records into."""

    observers: Observers
    database: Database
    kv: KeyValueStore
    handled: HandledEvents
    audit: AuditLog
    statuses: StatusMessages
    operations: OperationStore
    rooms: RoomDirectory
    roles: RoleResolver
    policies: PolicyResolver
    registry: CommandRegistry

    @property
    def lowest_role(self) -> str:
        return self.roles.order[0]

    @property
    def highest_role(self) -> str:
        """The last role (admin by default): deploying an untagged recipe tree and `!cmd`
        need it unless command_roles says otherwise."""
        return self.roles.order[-1]

    @property
    def change_role(self) -> str:
        """Changing a swarm needs the second role (operator by default) when there is one."""
        order = self.roles.order
        return order[1] if len(order) > 1 else order[0]


def _core(config: Config) -> _Core:
    observers = Observers()
    database = Database(config.database)
    return _Core(
        observers=observers, database=database, kv=KeyValueStore(database),
        handled=HandledEvents(database), audit=AuditLog(database),
        statuses=StatusMessages(database),
        operations=OperationStore(database, observers=observers),
        rooms=RoomDirectory(config.rooms), roles=RoleResolver(config),
        policies=PolicyResolver(config), registry=CommandRegistry(),
    )


def _gateway(config: Config, core: _Core) -> MatrixGateway:
    return MatrixGateway(
        config.matrix, core.kv, config.invites, admins=frozenset(config.admins),
        configured_rooms=core.rooms.room_ids, observers=core.observers,
    )


@dataclass(frozen=True)
class _Swarm:
    """Servers, recipes, apps, and the services that change them."""

    pool: ServerPool
    recipes: RecipeStore
    scope: AppScope
    deployer: Deployer
    status: StatusViews
    backups: BackupService | None
    files: AppFiles
    secrets: SecretService
    runtime: AppRuntime
    usage: UsageBoard  # each node's last disk/memory reading


def _swarm(config: Config, core: _Core) -> _Swarm:
    pool = ServerPool(server_specs(config))
    recipes = RecipeStore(config.recipes.cache, config.recipes.url_template,
                          config.recipes.overrides)
    scope = AppScope(AppCatalog(config.apps_dir))
    needs_backup = core.policies.needs_backup
    # Backups only when configured; the deployer then backs up first where policy says so.
    backups = (BackupService(pool, scope, core.operations, config.backups,
                             needs_backup=needs_backup)
               if config.backups else None)
    # The one writer of app env files: each change goes into the apps dir's git history.
    files = AppFiles(scope, recipes, pool, core.operations, AppsHistory(config.apps_dir),
                     public_keys=tuple(config.public_env_keys))

    deployer = Deployer(
        scope, recipes, pool, core.operations,
        Preflight({name: s.check_images for name, s in config.servers.items()}),
        pre_backup=backups.before_operation if backups is not None else None,
        needs_backup=needs_backup, env_written=files.env_written,
        data_safety=(DataSafety(backups, core.policies.restore_on_failure)
                     if backups is not None else None),
    )
    secrets = SecretService(files, pool, core.operations, deployer.run)
    runtime = AppRuntime(files, secrets, deployer, pool, core.operations,
                         cmd_timeout=config.cmd_timeout_seconds,
                         latest_backup=_latest_backup(backups))
    usage = UsageBoard()
    return _Swarm(pool, recipes, scope, deployer, StatusViews(scope, recipes, pool, usage),
                  backups, files, secrets, runtime, usage)


def _latest_backup(backups: BackupService | None) -> LatestBackup | None:
    """When an app's newest verified snapshot was taken (for `!remove --volumes`)."""
    if backups is None:
        return None
    service = backups

    async def latest(app: App) -> datetime | None:
        if not service.configured(app.server):
            return None
        verified = [s for s in await service.snapshots(app.name, None) if s.verified]
        return verified[0].time if verified else None

    return latest


@dataclass(frozen=True)
class _Stages:
    """The operation and report stages, shared by the pipeline, approvals and the bot's own
    runs (built before all three, so none needs another late)."""

    tasks: TaskGroup
    audit: CommandAudit
    executor: Executor
    statuses: CommandStatuses


def _stages(core: _Core, gateway: MatrixGateway) -> _Stages:
    audit = CommandAudit(core.audit, core.observers)
    return _Stages(TaskGroup(), audit, Executor(responder=gateway, audit=audit),
                   CommandStatuses(gateway, core.statuses))


def _approvals(config: Config, core: _Core, gateway: MatrixGateway,
               stages: _Stages) -> Approvals:
    return Approvals(
        store=ApprovalStore(core.database), policies=core.policies, roles=core.roles,
        power=gateway, rooms=core.rooms, registry=core.registry, operations=core.operations,
        audit=core.audit, poster=gateway, execute=stages.executor.execute,
        statuses=stages.statuses, tasks=stages.tasks, prefix=config.matrix.command_prefix,
        bot_user_id=config.matrix.user_id, devices=gateway.device_trust,
        voters=Voters.of(config),
    )


@dataclass(frozen=True)
class _Notifications:
    targets: NotificationTargets
    notices: NoticeStore
    notifier: Notifier
    watcher: SwarmWatcher | None
    node_health: NodeHealth | None


def _notifications(config: Config, core: _Core, gateway: MatrixGateway,
                   swarm: _Swarm) -> _Notifications:
    targets = NotificationTargets(core.rooms)
    notices = NoticeStore(core.database)
    notifier = Notifier(targets, gateway, notices)
    core.observers.subscribe(notifier.on_event)
    router = AlertRouter(swarm.scope, core.operations, notifier)
    watcher = (SwarmWatcher(swarm.pool, list(config.servers),
                            is_coopbot_operation=router.is_coopbot_operation, emit=router.emit)
               if config.watch_swarms and config.servers else None)
    health = config.node_health
    every = parse_duration(health.every)
    node_health = (NodeHealth(swarm.pool, list(config.servers), router.emit, swarm.usage,
                              interval=every,
                              thresholds=Thresholds(health.disk_percent, health.inode_percent,
                                                    health.memory_percent))
                   if config.watch_swarms and config.servers and every > 0 else None)
    return _Notifications(targets, notices, notifier, watcher, node_health)


def _register_commands(config: Config, core: _Core, gateway: MatrixGateway, swarm: _Swarm,
                       approvals: Approvals, news: _Notifications) -> None:
    read, change = core.lowest_role, core.change_role
    watcher = news.watcher
    # In this order in `!help` and the member guide.
    families: list[CommandFamily] = [
        CoreCommands(core.registry, config.matrix.command_prefix, lowest_role=read),
        SwarmCommands(swarm.deployer, swarm.status, read_role=read, change_role=change,
                      chaos_role=core.highest_role),
        AppCommands(swarm.files, swarm.secrets, swarm.runtime, read_role=read,
                    change_role=change),
        SecretCommands(swarm.secrets, gateway, read_role=read, change_role=change),
        RuntimeCommands(swarm.runtime, change_role=change, cmd_role=core.highest_role),
        *([BackupCommands(swarm.backups, read_role=read, change_role=change)]
          if swarm.backups is not None else []),
        *([NodeCommands(NodeMaintenance(swarm.pool, swarm.scope, core.operations),
                        admin_role=core.roles.order[-1])] if config.servers else []),
        ApprovalCommands(approvals, core.audit, member_role=read, audit_role=change),
        NotifyCommands(
            news.targets, news.notices, swarm.scope, read_role=read, change_role=change,
            swarm_state=(lambda: watcher.snapshot().lines()) if watcher is not None else None),
    ]
    for family in families:
        for spec in family.specs():
            core.registry.register(spec)
    for command, role in config.command_roles.items():
        core.registry.override_role(command, role)


def _pipeline(config: Config, core: _Core, gateway: MatrixGateway, stages: _Stages,
              approvals: Approvals) -> Pipeline:
    prefix = config.matrix.command_prefix
    return Pipeline(
        settings=PipelineSettings(bot_user_id=UserID(config.matrix.user_id), prefix=prefix),
        parser=CommandParser(prefix, config.matrix.user_id), registry=core.registry,
        rooms=core.rooms, roles=core.roles, power=gateway, handled=core.handled,
        audit=stages.audit, executor=stages.executor, statuses=stages.statuses,
        approval=approvals.gate,
    )


def _updates(config: Config, core: _Core, gateway: MatrixGateway, swarm: _Swarm,
             stages: _Stages, approvals: Approvals, news: _Notifications) -> UpdateChecker:
    auto_upgrader = AutoUpgrader(
        bot_user_id=config.matrix.user_id, registry=core.registry, rooms=core.rooms,
        targets=news.targets, role_order=core.roles.order, poster=gateway,
        gate=approvals.gate, execute=stages.executor.execute,
    )
    return UpdateChecker(swarm.scope, swarm.recipes, swarm.pool, news.notices,
                         core.operations, news.notifier.announce_keyed, config.updates.auto_update,
                         auto_upgrader, config.matrix.command_prefix)


def _scheduler(config: Config, swarm: _Swarm, news: _Notifications) -> BackupScheduler | None:
    schedules = {name: b.schedule for name, b in config.backups.items() if b.schedule}
    if swarm.backups is None or not schedules:
        return None
    return BackupScheduler(swarm.backups, schedules, news.notifier.scheduled_backup)


def server_specs(config: Config) -> list[ServerSpec]:
    specs = []
    for name, server in config.servers.items():
        if isinstance(server, SSHServer):
            specs.append(ServerSpec(
                name=name, kind="ssh", host=server.host, port=server.port, user=server.user,
                key_file=server.key_file, known_hosts_file=server.known_hosts_file,
                connect_timeout=server.connect_timeout, command_timeout=server.command_timeout,
                node_helper_image=server.node_helper_image,
            ))
        else:
            specs.append(ServerSpec(name=name, kind="local", socket=server.socket,
                                    command_timeout=server.command_timeout,
                                    node_helper_image=server.node_helper_image))
    return specs


async def run_bot(config: Config) -> None:
    redact_config_secrets(config)
    bot = build(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, bot.stop)
    await bot.run()
