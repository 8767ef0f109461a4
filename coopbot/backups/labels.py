"""What to back up, from backup-bot-two's labels on the services' specs. Pure.

    backupbot.backup=true                          on ONE service: the whole stack is backed up
    backupbot.backup.path=/a/b[,/c]                v1: only these paths of this service's volumes
    backupbot.backup.volumes.<vol>.path=x[,y]      v2: only these paths of <vol> (inside it)
    backupbot.backup.volumes.<vol>=false           v2: not this volume
    backupbot.backup.pre-hook / .post-hook         run in the service's container around it
    backupbot.restore.pre-hook / .post-hook        run in it around a restore

As backup-bot-two's spec has it, `backupbot.backup` enables the stack, not the service: every
service's volumes are backed up unless excluded, and setting it on several services is an
error (it was meant once). Volume labels (v2) name their volume, so any service may carry them.

Each volume lands in the snapshot at /backup/<vol>/ (<vol> as the recipe names it), so a
snapshot restores into the same app under another stack name too.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from coopbot.errors import UserError
from coopbot.servers.containers import ServiceMounts, VolumeMount

ROOT = "/backup"
ENABLE = "backupbot.backup"
V1_PATH = "backupbot.backup.path"
VOLUMES = "backupbot.backup.volumes."
PRE_BACKUP = "backupbot.backup.pre-hook"
POST_BACKUP = "backupbot.backup.post-hook"
PRE_RESTORE = "backupbot.restore.pre-hook"
POST_RESTORE = "backupbot.restore.post-hook"
TRUE = frozenset({"true", "yes", "1", "on"})
# Absolute paths in a hook's command: the files a dump hook writes are among them.
_HOOK_PATH = re.compile(r"(?<![\w.])(/[\w.@%+\-/]+)")


class LabelError(UserError):
    """A backupbot label that cannot be honoured: the sentence names the service and label."""


@dataclass(frozen=True)
class Hooks:
    pre_backup: str | None = None
    post_backup: str | None = None
    pre_restore: str | None = None
    post_restore: str | None = None


@dataclass(frozen=True)
class VolumeTarget:
    volume: str  # the Docker volume, e.g. blog_example_com_db
    name: str  # as the recipe names it, e.g. db: its folder under /backup
    mount: str  # where the service mounts it, e.g. /var/lib/mysql
    paths: tuple[str, ...] = ()  # relative to the volume; () = the whole volume

    @property
    def root(self) -> str:
        return f"{ROOT}/{self.name}"

    @property
    def backup_paths(self) -> tuple[str, ...]:
        return tuple(f"{self.root}/{p}" for p in self.paths) or (self.root,)

    def snapshot_path(self, container_path: str) -> str | None:
        """Where `container_path` (as the service sees it) is in the snapshot, if backed up."""
        inside = _relative_to(container_path, self.mount)
        if inside is None:
            return None
        if self.paths and not any(inside == p or inside.startswith(f"{p}/") for p in self.paths):
            return None
        return f"{self.root}/{inside}" if inside else self.root


@dataclass(frozen=True)
class ServiceTarget:
    service: str  # full swarm name
    short_name: str
    volumes: tuple[VolumeTarget, ...]
    hooks: Hooks
    named_files: tuple[str, ...]  # snapshot paths the labels and pre-hook name explicitly


@dataclass(frozen=True)
class BackupPlan:
    stack: str
    services: tuple[ServiceTarget, ...]

    @property
    def volumes(self) -> tuple[VolumeTarget, ...]:
        """Each volume once (services may share one); the first service's view of it wins."""
        seen: dict[str, VolumeTarget] = {}
        for service in self.services:
            for volume in service.volumes:
                seen.setdefault(volume.volume, volume)
        return tuple(seen.values())

    @property
    def backup_paths(self) -> tuple[str, ...]:
        return tuple(p for v in self.volumes for p in v.backup_paths)

    @property
    def named_files(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f for s in self.services for f in s.named_files))


def volume_name(source: str, stack: str) -> str:
    """`blog_example_com_db` -> `db`, as the recipe names it (external volumes keep theirs)."""
    prefix = f"{stack}_"
    return source[len(prefix):] if source.startswith(prefix) else source


def plan_backup(stack: str, services: Iterable[ServiceMounts]) -> BackupPlan:
    """What to back up of the stack, if one service is labelled `backupbot.backup=true`: every
    service that has volumes or hooks, each with what to back up of its volumes."""
    services = list(services)
    enabled = [s for s in services if _truthy(s.labels.get(ENABLE, ""))]
    if not enabled:
        return BackupPlan(stack, ())
    if len(enabled) > 1:
        names = ", ".join(f"`{s.short_name}`" for s in enabled)
        raise LabelError(
            f"the label {ENABLE} is set on services {names}; it enables backups of the whole "
            "stack and must be set on one service only (backup-bot-two's spec), so nothing "
            "is backed up until the recipe keeps it on one"
        )
    volume_labels = _volume_labels(services)
    targets = []
    for service in services:
        labels = service.labels
        volumes = _volumes(stack, service, volume_labels)
        hooks = Hooks(
            pre_backup=_hook(labels, PRE_BACKUP), post_backup=_hook(labels, POST_BACKUP),
            pre_restore=_hook(labels, PRE_RESTORE), post_restore=_hook(labels, POST_RESTORE),
        )
        if not volumes and hooks == Hooks():
            continue
        targets.append(ServiceTarget(
            service=service.name, short_name=service.short_name, volumes=volumes, hooks=hooks,
            named_files=_named_files(volumes, hooks.pre_backup),
        ))
    return BackupPlan(stack, tuple(targets))


def _truthy(value: str) -> bool:
    return value.strip().strip("\"'").lower() in TRUE


def _volume_labels(services: list[ServiceMounts]) -> dict[str, str]:
    """The stack's `backupbot.backup.volumes.*` labels, from whichever service carries them;
    two services giving one key different values is refused rather than guessed."""
    found: dict[str, tuple[str, str]] = {}  # key -> (value, service)
    for service in services:
        for key, value in service.labels.items():
            if not key.startswith(VOLUMES):
                continue
            earlier = found.setdefault(key, (value, service.short_name))
            if earlier[0].strip() != value.strip():
                raise LabelError(
                    f"services `{earlier[1]}` and `{service.short_name}` give the label {key} "
                    "different values, so it is unclear what to back up"
                )
    return {key: value for key, (value, _) in found.items()}


def _volumes(stack: str, service: ServiceMounts,
             volume_labels: Mapping[str, str]) -> tuple[VolumeTarget, ...]:
    labels = service.labels
    v1 = [_clean_v1(service, p) for p in _split(labels.get(V1_PATH, ""))]
    claimed: dict[str, list[str]] = {}  # volume source -> v1 paths inside it
    for path in v1:
        mount = _mount_of(service.mounts, path)
        if mount is None:
            raise LabelError(
                f"service `{service.short_name}`: its label {V1_PATH} names {path}, which is "
                "on none of its volumes, so it cannot be backed up"
            )
        claimed.setdefault(mount.source, []).append(_relative_to(path, mount.target) or "")
    targets = []
    for mount in service.mounts:
        name = volume_name(mount.source, stack)
        key = f"{VOLUMES}{name}"
        if volume_labels.get(key, "").strip().lower() == "false":
            continue
        v2 = [_clean_v2(service, key, p)
              for p in _split(volume_labels.get(f"{key}.path", ""))]
        if v1 and mount.source not in claimed and not v2:
            continue  # v1 paths narrow the service to the volumes they name
        paths = [*claimed.get(mount.source, []), *v2]
        whole = not paths or "" in paths
        targets.append(VolumeTarget(
            volume=mount.source, name=name, mount=mount.target,
            paths=() if whole else tuple(dict.fromkeys(paths)),
        ))
    return tuple(targets)


def _named_files(volumes: tuple[VolumeTarget, ...], pre_hook: str | None) -> tuple[str, ...]:
    named = [p for v in volumes if v.paths for p in v.backup_paths]
    for token in _HOOK_PATH.findall(pre_hook or ""):
        for volume in volumes:
            where = volume.snapshot_path(token)
            if where is not None and where != volume.root:
                named.append(where)
    return tuple(dict.fromkeys(named))


def _mount_of(mounts: Iterable[VolumeMount], path: str) -> VolumeMount | None:
    inside = [m for m in mounts if _relative_to(path, m.target) is not None]
    return max(inside, key=lambda m: len(m.target), default=None)


def _relative_to(path: str, base: str) -> str | None:
    """`path` relative to `base` ("" if equal), or None if it is not inside it."""
    path, base = posixpath.normpath(path), posixpath.normpath(base)
    if path == base:
        return ""
    prefix = base.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else None


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _clean_v1(service: ServiceMounts, path: str) -> str:
    if not path.startswith("/") or ".." in path.split("/"):
        raise LabelError(
            f"service `{service.short_name}`: its label {V1_PATH} must list absolute paths "
            f"without `..`, not {path}"
        )
    return posixpath.normpath(path)


def _clean_v2(service: ServiceMounts, key: str, path: str) -> str:
    relative = posixpath.normpath(path.lstrip("/"))
    if relative.startswith("..") or ".." in relative.split("/"):
        raise LabelError(
            f"service `{service.short_name}`: its label {key}.path must stay inside the "
            f"volume, not {path}"
        )
    return "" if relative == "." else relative


def _hook(labels: Mapping[str, str], key: str) -> str | None:
    value = labels.get(key, "").strip()
    return value or None
