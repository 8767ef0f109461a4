"""Where a snapshot keeps each volume. Pure.

One restic repository may hold snapshots in two layouts:

    coopbot          /backup/<vol>[/<path>]
    backup-bot-two   /var/lib/docker/volumes/<stack>_<vol>/_data[/<path>]

coopbot's names a volume as the recipe does, so its snapshots restore into the same recipe
under another stack name too. backup-bot-two backs up the volumes' own folders on the node, and
one of its snapshots may hold several apps; only the app's own volumes are read from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from coopbot.backups import output
from coopbot.backups.labels import ROOT, volume_name
from coopbot.backups.output import Snapshot
from coopbot.errors import OperationFailed

DOCKER_VOLUMES = "/var/lib/docker/volumes"
COOPBOT, BACKUP_BOT_TWO = "coopbot", "backup-bot-two"


@dataclass(frozen=True)
class SnapshotVolume:
    """One volume as a snapshot holds it, and what restoring it replaces."""

    name: str  # as the recipe names it
    root: str  # where the snapshot keeps the volume's top: a helper mounts the volume there
    clear: tuple[str, ...]  # what a restore empties first: `<root>/` is all of it
    volume: str | None = None  # the Docker volume, when the layout names it


def maker(snapshot: Snapshot, stack: str) -> str | None:
    """Who made the snapshot, if it is one of this app's (coopbot's own tags are checked by
    the caller; this tells the layouts apart)."""
    if output.MARK in snapshot.tags:
        return COOPBOT
    if _stack_paths(snapshot, stack):
        return BACKUP_BOT_TWO
    return None


def volumes_in(snapshot: Snapshot, stack: str) -> list[SnapshotVolume]:
    """The app's volumes in the snapshot, in its layout; a snapshot that holds none of them in
    either layout cannot be restored into the app."""
    if snapshot.paths and all(p.startswith(f"{ROOT}/") for p in snapshot.paths):
        return _grouped([(_coopbot_volume(p), p) for p in snapshot.paths], stack)
    paths = _stack_paths(snapshot, stack)
    if not paths:
        raise OperationFailed(
            f"snapshot `{snapshot.short_id}` holds none of this app's volumes, neither under "
            f"{ROOT}/ (coopbot) nor under {DOCKER_VOLUMES}/{stack}_*/_data (backup-bot-two), "
            "so it cannot be restored into it"
        )
    return _grouped(paths, stack)


def _coopbot_volume(path: str) -> str:
    return path[len(ROOT) + 1:].partition("/")[0]


def _stack_paths(snapshot: Snapshot, stack: str) -> list[tuple[str, str]]:
    """(Docker volume, path) of each path under one of the stack's volume folders."""
    found = []
    for path in snapshot.paths:
        inside = path.removeprefix(f"{DOCKER_VOLUMES}/")
        volume, _, rest = inside.partition("/")
        if inside == path or not volume.startswith(f"{stack}_") or rest.split("/")[0] != "_data":
            continue
        found.append((volume, path))
    return found


def _grouped(paths: list[tuple[str, str]], stack: str) -> list[SnapshotVolume]:
    """Paths grouped by volume; the volume's top among them means all of it is replaced."""
    by_volume: dict[str, list[str]] = {}
    for volume, path in paths:
        by_volume.setdefault(volume, []).append(path.rstrip("/"))
    found = []
    for volume, volume_paths in by_volume.items():
        coopbot = volume_paths[0].startswith(f"{ROOT}/")
        root = f"{ROOT}/{volume}" if coopbot else f"{DOCKER_VOLUMES}/{volume}/_data"
        clear = (f"{root}/",) if root in volume_paths else tuple(dict.fromkeys(volume_paths))
        found.append(SnapshotVolume(
            name=volume if coopbot else volume_name(volume, stack), root=root, clear=clear,
            volume=None if coopbot else volume,
        ))
    return found
