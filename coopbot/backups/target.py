"""One app as backups see it: its engine and repository, its labelled services and volumes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from coopbot.backups.labels import BackupPlan, plan_backup
from coopbot.backups.placement import DataNode, locate_data
from coopbot.backups.restic import Restic
from coopbot.errors import NotFound, OperationFailed
from coopbot.recipes.apps import App
from coopbot.recipes.labels import deployed_version
from coopbot.redact import PUBLIC_ENV_KEYS, Redactor
from coopbot.servers.containers import RunningTask, ServiceMounts
from coopbot.servers.engine import DockerEngine


@dataclass(frozen=True)
class AppTarget:
    app: App
    engine: DockerEngine
    restic: Restic
    services: tuple[ServiceMounts, ...]
    plan: BackupPlan
    version: str | None
    redact: Redactor  # app env values, the restic password and environment
    hook_timeout: float
    node: DataNode  # the node whose copy of the volumes is the app's data

    async def task_for_hook(self, short_name: str, service: str, label: str) -> RunningTask:
        """The running container a hook must run in; no running task is an error, never a
        silent skip (the hook exists because the data is not consistent without it)."""
        task = await self.engine.containers.running_task(service)
        if task is None:
            raise OperationFailed(
                f"service `{short_name}` of `{self.app.name}` has a {label} but no running "
                f"task, so the hook cannot run; start the service (or `!deploy "
                f"{self.app.name}`) and try again"
            )
        return task

    async def check_volumes(self, volumes: list[str]) -> None:
        """The volumes must exist on the data's node (a helper would create an empty one)."""
        present = await self.engine.helpers.volume_names(self.node.node_id)
        missing = [v for v in volumes if v not in present]
        if missing:
            raise OperationFailed(
                f"volume(s) {', '.join(f'`{v}`' for v in missing)} of `{self.app.name}` are not "
                f"on node {self.node.hostname} of server {self.app.server}, where its data is"
            )


async def load_target(app: App, engine: DockerEngine, restic: Restic, *,
                      hook_timeout: float, volume_nodes: Mapping[str, str],
                      chosen_node: str | None = None) -> AppTarget:
    """Read the deployed services' labels and mounts (the recipe's labels as they run)."""
    mounts = tuple(await engine.containers.service_mounts(app.stack_name))
    if not mounts:
        raise NotFound(f"`{app.name}` is not deployed on {app.server}, so there is no "
                       "backup configuration to read from its services.")
    version = deployed_version(await engine.services(app.stack_name), app.stack_name)
    env_values = [v for k, v in app.env.items() if k not in PUBLIC_ENV_KEYS]
    plan = plan_backup(app.stack_name, mounts)
    node = await locate_data(engine, app.name, app.server, [v.volume for v in plan.volumes],
                             mounts, volume_nodes, chosen_node)
    return AppTarget(
        app=app, engine=engine, restic=restic, services=mounts, plan=plan, version=version,
        redact=Redactor([*env_values, *restic.secret_values()]), hook_timeout=hook_timeout,
        node=node,
    )

