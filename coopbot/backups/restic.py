"""restic, run in a helper container on the server's node, against that server's repository.

Why a helper container: the volumes and (for a local repository) the repository itself live on
the server, which may be reached over SSH only; the helper mounts them where they are. The
password reaches restic through the container's environment, never a command line or a log.

restic calls of one repository are serialised in this process: `tag`, `forget` and `prune`
need restic's exclusive lock and would fail against a concurrent backup. A lock held by some
other process is waited out for a while.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from coopbot.backups.output import (
    NODE,
    BackupSummary,
    ForgetResult,
    Snapshot,
    parse_backup,
    parse_forget,
    parse_ls,
    parse_ls_tags,
    parse_snapshots,
)
from coopbot.backups.password import PasswordReader, read_environment
from coopbot.backups.verify import Node
from coopbot.config import BackupConfig, RepositoryConfig, RetentionConfig
from coopbot.errors import ResticError
from coopbot.redact import Redactor
from coopbot.servers.containers import Bind, HelperRun
from coopbot.servers.engine import DockerEngine

log = logging.getLogger(__name__)

REPOSITORY_MOUNT = "/repo"
CACHE_VOLUME = "coopbot-restic-cache"
CACHE_MOUNT = "/cache"
REMOTE_SCHEMES = ("sftp:", "s3:", "rest:", "b2:", "azure:", "gs:", "swift:", "rclone:")
LOCKED = "repository is already locked"
PLAIN_ENV = ("RESTIC_CACHE_DIR",)  # a remote repository's URL may hold a password
LOCK_RETRIES = 12
LOCK_RETRY_DELAY = 5.0
# A restore in one helper: empty what the snapshot replaces (`dir/` means the folder's contents,
# anything else the path), say so on stdout, then restore. The marker tells a failure to empty
# (the volume may be partly emptied) from a failed restore into an emptied volume.
EMPTIED = "coopbot: emptied"
REPLACE_SCRIPT = f"""set -e
snapshot="$1"; include="$2"; shift 2
for p in "$@"; do
  case "$p" in
    */) find "$p" -mindepth 1 -maxdepth 1 -exec rm -rf {{}} + ;;
    *) rm -rf "$p" ;;
  esac
done
echo "{EMPTIED}"
restic restore "$snapshot" --target / --include "$include"
"""
# Each helper container costs most of a second to create, start and remove, so the steps of a
# backup that always go together share one: the snapshot and its listing (for verification),
# then the verified tags and the re-read of the snapshot's new id. Tags never hold a comma
# (output.tag), so one comma-joined list selects the snapshot by all of them.
# COOPBOT_NODE is the node the helper runs on (filled in by swarm on another node).
BACKUP_AND_LIST_SCRIPT = """set -e
host="$1"; tags="$2"; shift 2
restic backup --json --host "$host" --tag "$tags,node=$COOPBOT_NODE" -- "$@"
restic ls --json latest --host "$host" --tag "$tags"
"""
# A copy in another repository (`copies`): created on first use with the same chunker
# parameters (so the copies deduplicate as the source does), the snapshot copied, then the
# copy's listing read back for verification. restic keeps the tags, so they select it there.
COPY_AND_LIST_SCRIPT = """set -e
snapshot="$1"; tags="$2"
if ! opened=$(restic cat config 2>&1 >/dev/null); then
  case "$opened" in
    *"Is there a repository at the following location?"*) restic init --copy-chunker-params >&2 ;;
    *) echo "$opened" >&2; exit 1 ;;
  esac
fi
restic copy "$snapshot" >&2
restic ls --json latest --tag "$tags"
"""
COPY_MOUNT = "/copy"
# An export in backup-bot-two's download layout: the snapshot's volumes restored into a work
# folder next to the file, moved to var/lib/docker/volumes/<volume>/_data, packed, and only
# then renamed into place (a half-written export is never mistaken for one). Arguments after
# the snapshot and the file: pairs of (where the snapshot keeps a volume, the volume's name),
# of a charset checked before (no spaces, no shell metacharacters).
EXPORT_MOUNT = "/export"
EXPORTED = "coopbot: exported"
EXPORT_SCRIPT = f"""set -e
snapshot="$1"; out="$2"; shift 2
work="${{out%/*}}/.coopbot-export-$$"
pairs="$*"
rm -rf "$work"; mkdir -p "$work/restored" "$work/tree/var/lib/docker/volumes"
trap 'rm -rf "$work"' EXIT
includes=""
set -- $pairs
while [ $# -gt 0 ]; do includes="$includes --include $1"; shift 2; done
restic restore "$snapshot" --target "$work/restored" $includes >&2
set -- $pairs
while [ $# -gt 0 ]; do
  mkdir -p "$work/tree/var/lib/docker/volumes/$2"
  if [ -e "$work/restored$1" ]; then
    mv "$work/restored$1" "$work/tree/var/lib/docker/volumes/$2/_data"
  else
    mkdir -p "$work/tree/var/lib/docker/volumes/$2/_data"
  fi
  shift 2
done
tar -czf "$out.partial" -C "$work/tree" var
mv "$out.partial" "$out"
echo "{EXPORTED} $(wc -c < "$out") $(tar -tzf "$out" | wc -l)"
"""
TAG_AND_LIST_SCRIPT = """set -e
snapshot="$1"; tags="$2"; shift 2
restic tag "$@" "$snapshot" >&2
restic snapshots --json --tag "$tags"
"""


class RestoreFailed(ResticError):
    """A restore into a volume failed; `emptied` says whether the volume had been emptied."""

    def __init__(self, error: ResticError, *, emptied: bool) -> None:
        super().__init__(str(error), detail=error.detail)
        self.emptied = emptied


@dataclass(frozen=True)
class NewSnapshot:
    summary: BackupSummary
    nodes: list[Node]
    tags: tuple[str, ...] = ()

    @property
    def node(self) -> str | None:
        """The swarm node the snapshot was taken on, as its helper was told by swarm."""
        prefix = f"{NODE}="
        return next((t[len(prefix):] for t in self.tags if t.startswith(prefix)), None)


@dataclass(frozen=True)
class Timeouts:
    quick: float = 600.0  # listing, tagging, init
    long: float = 6 * 3600.0  # backup, restore, prune: proportional to the data


class Restic:
    def __init__(self, server: str, engine: DockerEngine, config: BackupConfig,
                 password: PasswordReader, *, timeouts: Timeouts = Timeouts()) -> None:
        self._server = server
        self._engine = engine
        self._config = config
        self._password = password
        self._timeouts = timeouts
        self._lock = asyncio.Lock()
        self._ready = False

    @property
    def server(self) -> str:
        return self._server

    @property
    def copies(self) -> tuple[str, ...]:
        """The names of the repositories that receive a copy of each verified snapshot."""
        return tuple(self._config.copies)

    def secret_values(self) -> list[str]:
        """The passwords and the extra environments' values (the copies' too): to redact
        from anything logged."""
        return [value for repository in (self._config, *self._config.copies.values())
                for value in (self._password(repository), *read_environment(repository).values())]

    # --- commands ----------------------------------------------------------------------------

    async def ensure_repository(self) -> None:
        """Initialise the repository on first use (once per process once it is known)."""
        if self._ready:
            return
        run = await self._run(["cat", "config"], action="open the repository", check=False)
        if run.exit_code != 0:
            if not _missing_repository(run):
                raise self._failure("open the repository", run)
            log.info("initialising the restic repository of server %s", self._server)
            await self._run(["init"], action="initialise the repository")
        self._ready = True

    async def backup_and_list(self, binds: Sequence[Bind], paths: Sequence[str],
                              tags: Sequence[str], *, node: str | None = None) -> NewSnapshot:
        """`backup` and then `ls` of the new snapshot, in one helper on `node` (default: the
        engine's own node)."""
        run = await self._run(
            ["-c", BACKUP_AND_LIST_SCRIPT, "backup", self._server, ",".join(tags), *paths],
            action="back up", binds=binds, entrypoint=("sh",), long=True, check=False,
            node=node,
        )
        if run.exit_code != 0:
            try:
                parse_backup(run.stdout)
            except ResticError:
                raise self._failure("back up", run) from None
            raise self._failure("list the new snapshot", run)
        return NewSnapshot(parse_backup(run.stdout), parse_ls(run.stdout),
                           parse_ls_tags(run.stdout))

    async def copy_and_list(self, copy: str, snapshot_id: str, tags: Sequence[str]
                            ) -> list[Node]:
        """Copy a snapshot into the copy repository `copy` and list the copy there."""
        config = self._config.copies[copy]
        source_env, source_mounts, source_network = self._environment(self._config)
        env, mounts, network = self._environment(config, mount=COPY_MOUNT)
        env.update({f"RESTIC_FROM_{key.removeprefix('RESTIC_')}": value
                    for key, value in source_env.items()
                    if key in ("RESTIC_REPOSITORY", "RESTIC_PASSWORD")})
        env = {**{k: v for k, v in source_env.items() if not k.startswith("RESTIC_")}, **env}
        run = await self._run_helper(
            ["-c", COPY_AND_LIST_SCRIPT, "copy", snapshot_id, ",".join(tags)],
            action=f"copy the snapshot to {copy}", env=env,
            binds=[*source_mounts, *(m for m in mounts if m not in source_mounts)],
            network="none" if {source_network, network} == {"none"} else "bridge",
            entrypoint=("sh",), long=True,
        )
        return parse_ls(run.stdout)

    async def export(self, snapshot_id: str, volumes: Sequence[tuple[str, str]],
                     file_name: str) -> tuple[int, int]:
        """Write `file_name` into the exports folder: the snapshot's (root, volume) pairs in
        backup-bot-two's layout. Its size in bytes and the number of entries in it."""
        run = await self._run(
            ["-c", EXPORT_SCRIPT, "export", snapshot_id, f"{EXPORT_MOUNT}/{file_name}",
             *(part for pair in volumes for part in pair)],
            action="export the snapshot", entrypoint=("sh",), long=True,
            binds=[Bind(self._config.exports_dir, EXPORT_MOUNT, read_only=False)],
        )
        for line in run.stdout.splitlines():
            if line.startswith(EXPORTED):
                size, entries = line.removeprefix(EXPORTED).split()
                if size.isascii() and size.isdigit() and entries.isascii() and entries.isdigit():
                    return int(size), int(entries)
        raise self._failure("export the snapshot", run)

    async def tag_and_list(self, snapshot_id: str, add: Sequence[str],
                           select: Sequence[str]) -> list[Snapshot]:
        """Add tags to a snapshot, then list the snapshots carrying all of `select` (newest
        first), in one helper container. restic gives the re-tagged snapshot a new id."""
        args = [arg for tag in add for arg in ("--add", tag)]
        run = await self._run(
            ["-c", TAG_AND_LIST_SCRIPT, "tag", snapshot_id, ",".join(select), *args],
            action="tag the snapshot", entrypoint=("sh",),
        )
        return parse_snapshots(run.stdout)

    async def snapshots(self, tags: Sequence[str]) -> list[Snapshot]:
        """Snapshots carrying all `tags`, newest first (none before the first backup)."""
        args = ["snapshots", "--json"]
        if tags:
            args += ["--tag", ",".join(tags)]
        run = await self._run(args, action="list the snapshots", check=False)
        if run.exit_code != 0:
            if _missing_repository(run):
                return []  # the first backup creates the repository
            raise self._failure("list the snapshots", run)
        return parse_snapshots(run.stdout)

    async def forget(self, snapshot_ids: Sequence[str]) -> None:
        await self._run(["forget", *snapshot_ids], action="discard the snapshot")

    async def forget_by_policy(self, tags: Sequence[str], retention: RetentionConfig
                               ) -> ForgetResult:
        args = ["forget", "--json", "--prune", "--tag", ",".join(tags), "--group-by", "host",
                *retention_args(retention)]
        run = await self._run(args, action="apply the retention policy", long=True)
        return parse_forget(run.stdout)

    async def replace(self, snapshot_id: str, volume: Bind, clear: Sequence[str],
                      include: str, *, node: str | None = None) -> None:
        """Empty `clear` in the volume, then restore `include` from the snapshot into it (the
        helper image needs `sh`, as restic's image has). Raises RestoreFailed."""
        run = await self._run(
            ["-c", REPLACE_SCRIPT, "replace", snapshot_id, include, *clear],
            action="restore", binds=[volume], entrypoint=("sh",), long=True, check=False,
            node=node,
        )
        if run.exit_code != 0:
            emptied = EMPTIED in run.stdout
            action = "restore" if emptied else "empty the volume"
            raise RestoreFailed(self._failure(action, run), emptied=emptied)

    # --- plumbing ----------------------------------------------------------------------------

    async def _run(self, args: list[str], *, action: str, binds: Sequence[Bind] = (),
                   entrypoint: Sequence[str] = ("restic",), long: bool = False,
                   check: bool = True, repository: bool = True,
                   node: str | None = None) -> HelperRun:
        env, mounts, network = (self._environment(self._config) if repository
                                else ({}, [], "none"))
        return await self._run_helper(args, action=action, env=env, binds=[*mounts, *binds],
                                      network=network, entrypoint=entrypoint, long=long,
                                      check=check, node=node, repository=repository)

    async def _run_helper(self, args: list[str], *, action: str, env: dict[str, str],
                          binds: Sequence[Bind], network: str, entrypoint: Sequence[str],
                          long: bool, check: bool = True, node: str | None = None,
                          repository: bool = True) -> HelperRun:
        """One helper run on `node` (default: the node the engine reaches), retried while
        another process holds the repository's lock."""
        timeout = self._timeouts.long if long else self._timeouts.quick
        own = await self._engine.helpers.own_node()
        node = node or own
        if node != own and repository:
            self._check_reachable(node)
        # The password and the extra environment: a swarm secret on another node.
        secret = {k: v for k, v in env.items() if k not in PLAIN_ENV}
        plain = {k: v for k, v in env.items() if k in PLAIN_ENV}
        for attempt in range(LOCK_RETRIES):
            async with self._lock:
                run = await self._engine.helpers.run(
                    node, self._config.helper_image, entrypoint=entrypoint, args=args,
                    env=plain, secret_env=secret, binds=binds, network=network,
                    timeout=timeout, label=action,
                )
            if run.exit_code == 0 or LOCKED not in run.stderr or attempt == LOCK_RETRIES - 1:
                break
            log.info("restic repository of %s is locked by another process; retrying",
                     self._server)
            await asyncio.sleep(LOCK_RETRY_DELAY)
        if check and run.exit_code != 0:
            raise self._failure(action, run)
        return run

    def _check_reachable(self, node: str) -> None:
        """A repository that is a path lives on one node's disk, unless it is shared storage."""
        if self._config.repository.startswith("/") and not self._config.shared_repository:
            raise ResticError(
                f"the restic repository of server {self._server} is a path on the manager's "
                f"disk, but the data is on node {node}: give backups.{self._server} a "
                "repository every node reaches (sftp:, s3:, rest:), or set "
                f"backups.{self._server}.shared_repository: true when that path is shared "
                "storage mounted on every node")

    def _environment(self, config: RepositoryConfig, *, mount: str = REPOSITORY_MOUNT
                     ) -> tuple[dict[str, str], list[Bind], str]:
        repository = config.repository
        env = {**read_environment(config), "RESTIC_CACHE_DIR": CACHE_MOUNT}
        mounts = [Bind(CACHE_VOLUME, CACHE_MOUNT, read_only=False)]
        if repository.startswith("/"):
            mounts.append(Bind(repository, mount, read_only=False))
            env["RESTIC_REPOSITORY"] = mount
            network = "none"  # a local repository needs no network: the helper gets none
        elif repository.startswith(REMOTE_SCHEMES):
            env["RESTIC_REPOSITORY"] = repository
            network = "bridge"
        else:
            raise ResticError(
                f"the restic repository of server {self._server} must be an absolute path on "
                "that server, or an sftp:/s3: location"
            )
        env["RESTIC_PASSWORD"] = self._password(config)
        return env, mounts, network

    def _failure(self, action: str, run: HelperRun) -> ResticError:
        stderr = Redactor(self.secret_values())(run.stderr)
        detail = f"exit {run.exit_code}: {stderr[-3000:]}"
        where = f"on server {self._server}"
        if "wrong password" in stderr:
            return ResticError(f"could not {action} {where}: the restic password does not open "
                               "the repository", detail=detail)
        if _missing_repository(run):
            return ResticError(f"could not {action} {where}: there is no restic repository at "
                               "the configured location", detail=detail)
        if LOCKED in stderr:
            return ResticError(f"could not {action} {where}: the restic repository stays locked "
                               "by another process", detail=detail)
        if "no matching ID found" in stderr or "no snapshot found" in stderr:
            return ResticError(f"could not {action} {where}: restic does not know that "
                               "snapshot", detail=detail)
        return ResticError(f"could not {action} {where}: restic failed (exit {run.exit_code})",
                           detail=detail)


def retention_args(retention: RetentionConfig) -> list[str]:
    args = []
    for key in ("keep_last", "keep_daily", "keep_weekly", "keep_monthly"):
        value = getattr(retention, key)
        if value is not None:
            args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def _missing_repository(run: HelperRun) -> bool:
    # restic 0.14 says so in words; 0.17+ also exits 10.
    return run.exit_code == 10 or "Is there a repository at the following location?" in run.stderr
