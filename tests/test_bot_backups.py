"""Backups end to end: real room on Synapse -> real bot -> real swarm (local socket and over a
real sshd) -> restic 0.14 in a locally built helper image -> a real restic repository.

The `backuptest` recipe (tests/harness/backups.py) writes a "database" and uploads into two
volumes; its labels narrow one volume to the database dump, keep the other whole and exclude a
cache volume; its hooks dump the database before a backup and load the dump after a restore.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import subprocess
import tarfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nio import RoomMessage

from coopbot.backups import BackupScheduler, BackupService, ScheduledBackup
from coopbot.config import BackupConfig, RetentionConfig
from coopbot.ids import UserID
from coopbot.operations.scope import AppScope
from coopbot.recipes.apps import AppCatalog
from coopbot.replies import Reply
from coopbot.servers import ServerPool, ServerSpec
from coopbot.servers.containers import HELPER_LABEL
from coopbot.status_message import Progress
from coopbot.store.database import Database
from coopbot.store.operations import OperationStore
from tests.harness.backups import (
    CACHE_FILE,
    DB,
    DUMP,
    FAIL_FLAG,
    MIGRATED,
    MIGRATING,
    README,
    RESTORE_MARK,
    UPLOAD,
    ResticRepository,
    tree_of_backuptest,
)
from tests.harness.bot import RunningBot, StartBot, answer_to, coop_room
from tests.harness.recipes import AbraDir
from tests.harness.swarm import AppImages, Dockerd, Sshd, remove_stack, ssh_server
from tests.harness.synapse import MakeMember, Member

pytestmark = pytest.mark.real

TIMEOUT = 150.0
DB_SECRET = "hunter2-db-secret-value"
OFFSITE_PASSWORD = "offsite-restic-password-value"


def docker(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["docker", *args], input=stdin, capture_output=True,
                          check=True).stdout


def stack_of(domain: str) -> str:
    return domain.replace(".", "_")


def container_of(domain: str) -> str:
    ids = docker("ps", "-q", "--filter",
                 f"label=com.docker.swarm.service.name={stack_of(domain)}_app").split()
    assert len(ids) == 1, f"expected one running container of {domain}, found {ids}"
    return ids[0].decode()


def read(domain: str, path: str) -> bytes:
    return docker("exec", container_of(domain), "cat", path)


def chattr(flag: str, path: Path) -> None:
    """Make a file (un)removable even by root: how the tests make a restore fail midway."""
    subprocess.run(["chattr", flag, str(path)], check=True)


def run_in(domain: str, script: str) -> None:
    docker("exec", container_of(domain), "sh", "-c", script)


@dataclass
class BackupRoom:
    bot: RunningBot
    room: str
    alice: Member  # room creator, admin
    bob: Member  # operator (50)
    carol: Member  # member (0)
    abra: AbraDir
    repository: ResticRepository
    offsite_password_file: Path
    always_app: str  # policies: its failed upgrades restore the data (restore_on_failure)

    async def send(self, member: Member, body: str) -> str:
        return await member.send(self.room, body)

    async def answer(self, member: Member, event_id: str, *, text: str | None = None,
                     timeout: float = TIMEOUT) -> str:
        """The bot's final answer to `event_id` (not a ⏳ status), or its message with `text`."""
        if text is None:
            return await answer_to(member, self.room, self.bot.user_id, event_id,
                                   timeout=timeout)

        def matches(event: RoomMessage) -> bool:
            content = event.source.get("content", {})
            return (content.get("m.relates_to", {}).get("event_id") == event_id
                    and text in str(content.get("body", "")))

        reply = await member.wait_for_message(self.room, sender=self.bot.user_id,
                                              predicate=matches, timeout=timeout,
                                              after_event_id=event_id)
        return str(reply.source["content"]["body"])

    async def ask(self, member: Member, body: str) -> str:
        return await self.answer(member, await self.send(member, body))

    def everything_said(self) -> str:
        """Every event of the room as its members received it (edits included)."""
        return "\n".join(json.dumps(e.source) for e in self.alice.timeline(self.room))

    def new_app(self, server: str, recipe: str = "backuptest", domain: str | None = None) -> str:
        domain = domain or f"b{uuid.uuid4().hex[:8]}.example.org"
        self.abra.write_app(server, domain, recipe=recipe, extra={"DB_PASSWORD": DB_SECRET})
        return domain


@pytest.fixture
async def backup_room(
    make_member: MakeMember, start_bot: StartBot, abra_dir: AbraDir, tmp_path: Path,
    dockerd: Dockerd, test_images: AppImages, sshd: Sshd, backuptest_recipe: Path,
    migratetest_recipe: Path, restic_image: str, restic_repository: ResticRepository,
) -> BackupRoom:
    alice, bob, carol, room = await coop_room(make_member)
    always = f"always-{uuid.uuid4().hex[:8]}.example.org"
    servers: dict[str, Any] = {
        "local": {"kind": "local", "socket": dockerd.socket},
        "remote": ssh_server(sshd, connect_timeout=5),
    }
    backups = {
        name: {"repository": str(restic_repository.path / name),
               "password_file": str(restic_repository.password_file),
               "helper_image": restic_image}
        for name in servers
    }
    # The local server's verified snapshots are also copied to an "off-site" repository.
    offsite = tmp_path / "offsite-password"
    offsite.write_text(OFFSITE_PASSWORD + "\n")
    backups["local"]["copies"] = {"offsite": {
        "repository": str(restic_repository.path / "offsite"), "password_file": str(offsite)}}
    backups["local"]["exports_dir"] = str(tmp_path / "exports")
    # Default policies: restore needs one approval; upgrade and restore back up first.
    bot = await start_bot(
        rooms={room: {"servers": list(servers)}}, servers=servers, backups=backups,
        apps_dir=str(abra_dir.path),
        recipes={"overrides": {"backuptest": str(backuptest_recipe),
                               "migratetest": str(migratetest_recipe)},
                 "cache": str(tmp_path / "recipe-cache")},
        # One app whose failed upgrades restore their data by themselves.
        app_policies={always: {"upgrade": {"restore_on_failure": "always"}}},
    )
    await alice.invite(room, bot.user_id)
    await alice.wait_joined(room, bot.user_id)
    return BackupRoom(bot, room, alice, bob, carol, abra_dir, restic_repository, offsite, always)


@pytest.fixture
def stacks() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        remove_stack(name)


async def deploy(b: BackupRoom, domain: str, stacks: list[str], version: str = "1.0.0+v1") -> None:
    stacks.append(stack_of(domain))
    answer = await b.ask(b.bob, f"!deploy {domain} {version}")
    assert "converged and healthy" in answer, answer


async def assert_secrets_nowhere(b: BackupRoom, caplog: pytest.LogCaptureFixture) -> None:
    """The restic password and the app's env secret: never in a room, a log line or the audit."""
    said = b.everything_said()
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "restic" in logged, "no restic log lines were captured: the check would prove nothing"
    audit = "\n".join(json.dumps(row.__dict__) for row in await b.bot.audit(500))
    for secret in (b.repository.password, DB_SECRET, OFFSITE_PASSWORD):
        assert secret not in said
        assert secret not in logged
        assert secret not in audit


async def test_backup_change_restore_gives_back_the_same_bytes_over_ssh(
    backup_room: BackupRoom, stacks: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    b = backup_room
    domain = b.new_app("remote")
    await deploy(b, domain, stacks)
    original = {path: read(domain, path) for path in (DB, UPLOAD, README)}
    assert len(original[DB]) == 3000 and len(original[UPLOAD]) == 9000

    answer = await b.ask(b.bob, f"!backup {domain}")
    assert f"`{domain}` backed up** on remote".replace("**", "") in answer.replace("**", "")
    assert "(1.0.0+v1), verified: 3 file(s), " in answer
    assert "- volume `db`: 1 file(s), 2.9 KiB" in answer  # only the dump: narrowed by label
    assert "- volume `files`: 2 file(s), 8.8 KiB" in answer  # the whole volume
    assert "cache" not in answer  # excluded by label
    first = re.search(r"snapshot `([0-9a-f]{8})`", answer)
    assert first is not None
    assert read(domain, DUMP) == original[DB]  # the pre-hook dumped the database

    # The data changes: the database, an upload, a new file, and the (excluded) cache.
    run_in(domain, f"echo corrupted > {DB}; echo overwritten > {UPLOAD}; "
                   f"echo new > /srv/files/added-later.txt; echo changed > {CACHE_FILE}")

    listing = await b.ask(b.carol, f"!snapshots {domain}")
    assert listing.splitlines()[0] == f"Snapshots of `{domain}` (newest first):"
    assert re.search(rf"- `{first.group(1)}` \d{{4}}-\d\d-\d\d \d\d:\d\d UTC, 1.0.0\+v1, "
                     r"11\.\d KiB \(manual\)", listing), listing

    # Restore needs one approval by default: bob asks, alice approves.
    command = await b.send(b.bob, f"!restore {domain}")
    card = await b.answer(b.bob, command)
    request = re.match(r"Request #(\d+):", card)
    assert request is not None, card
    assert f"restore `{domain}` on remote from snapshot `{first.group(1)}`" in card
    assert "volumes replaced: `db`, `files`" in card
    approved = await b.ask(b.alice, f"!approve {request.group(1)}")
    assert approved == f"Your 👍 on request #{request.group(1)} is recorded; the card shows the count."
    result = await b.answer(b.bob, command, text="restored")
    assert f"`{domain}` restored** on remote from snapshot `{first.group(1)}`".replace(
        "**", "") in result.replace("**", "")
    assert "- volume `db`: restored" in result and "- volume `files`: restored" in result
    safety = re.search(r"The data as it was before is in snapshot `([0-9a-f]{8})`", result)
    assert safety is not None, result

    # Byte for byte: the post-hook loaded the restored dump; the upload is back; the file
    # added after the backup is gone; the excluded cache was not touched.
    assert read(domain, DB) == original[DB]
    assert read(domain, UPLOAD) == original[UPLOAD]
    assert read(domain, README) == original[README]
    listed = docker("exec", container_of(domain), "ls", "/srv/files").decode().split()
    assert sorted(listed) == ["docs", "upload.bin"]
    assert read(domain, CACHE_FILE) == b"warm\n"  # rewritten at start; the volume stayed
    assert read(domain, RESTORE_MARK)  # the restore pre-hook ran (its mark is in the cache)

    listing = await b.ask(b.carol, f"!snapshots {domain}")
    rows = [line for line in listing.splitlines() if line.startswith("- ")]
    assert [row.split("`")[1] for row in rows] == [safety.group(1), first.group(1)]
    assert "(pre-restore)" in rows[0] and "(manual)" in rows[1]

    assert b.bot.bot is not None
    history = await b.bot.bot.operations.history(domain)
    assert [(op.kind, op.result) for op in reversed(history)] == [
        ("deploy", "ok"), ("backup", "ok"), ("restore", "ok")]
    assert history[0].approvers == b.alice.user_id
    # This app's helpers only: other runs on the same engine may have helpers of their own.
    left = {c for volume in (f"{stack_of(domain)}_db", f"{stack_of(domain)}_files")
            for c in docker("ps", "-aq", "--filter", f"label={HELPER_LABEL}",
                            "--filter", f"volume={volume}").split()}
    assert left == set(), "a restic helper container was left behind"
    await assert_secrets_nowhere(b, caplog)


def restic_env(repository: Path, password_file: Path) -> dict[str, str]:
    """restic run by the test itself, on the host, against a repository the bot uses."""
    return {"RESTIC_REPOSITORY": str(repository), "RESTIC_PASSWORD_FILE": str(password_file),
            "PATH": "/usr/bin:/bin"}


def backup_bot_two_snapshot(repository: Path, password_file: Path, stack: str) -> str:
    """A snapshot as backup-bot-two makes it: restic run where the volumes live, on their
    folders under /var/lib/docker/volumes, tagged with the stack; its short id."""
    env = restic_env(repository, password_file)
    restic = ["restic", "--no-cache"]
    if subprocess.run([*restic, "cat", "config"], env=env, capture_output=True).returncode:
        subprocess.run([*restic, "init"], env=env, capture_output=True, check=True)
    paths = [f"/var/lib/docker/volumes/{stack}_db/_data", f"/var/lib/docker/volumes/{stack}_files/_data"]
    assert all(Path(p).is_dir() for p in paths), "the test dockerd keeps volumes elsewhere"
    done = subprocess.run([*restic, "backup", "--json", "--tag", "backupbot", "--tag", stack, *paths],
                          env=env, capture_output=True, check=True, text=True)
    summary = [json.loads(line) for line in done.stdout.splitlines() if '"summary"' in line]
    return str(summary[-1]["snapshot_id"])[:8]


async def test_a_backup_bot_two_snapshot_is_listed_and_restored(
    backup_room: BackupRoom, stacks: list[str]
) -> None:
    b = backup_room
    domain = b.new_app("local")
    await deploy(b, domain, stacks)
    run_in(domain, f"cat {DB} > {DUMP}")  # backup-bot-two runs the pre-hook first too
    original = {path: read(domain, path) for path in (DB, UPLOAD, README)}
    theirs = backup_bot_two_snapshot(b.repository.path / "local", b.repository.password_file,
                                     stack_of(domain))
    run_in(domain, f"echo corrupted > {DB}; echo overwritten > {UPLOAD}; "
                   "echo new > /srv/files/added-later.txt")

    listing = await b.ask(b.carol, f"!snapshots {domain}")
    assert re.search(rf"- `{theirs}` \d{{4}}-\d\d-\d\d \d\d:\d\d UTC, made by backup-bot-two, "
                     "not verified by coopbot", listing), listing
    latest = await b.ask(b.bob, f"!restore {domain}")
    assert "no verified snapshot to restore yet" in latest  # theirs is never picked implicitly

    command = await b.send(b.bob, f"!restore {domain} {theirs}")
    card = await b.answer(b.bob, command)
    request = re.match(r"Request #(\d+):", card)
    assert request is not None, card
    assert "volumes replaced: `db`, `files`" in card
    await b.ask(b.alice, f"!approve {request.group(1)}")
    result = await b.answer(b.bob, command, text="restored")
    assert "- volume `db`: restored" in result and "- volume `files`: restored" in result
    for path, content in original.items():
        assert read(domain, path) == content, path
    listed = docker("exec", container_of(domain), "ls", "/srv/files").decode().split()
    assert sorted(listed) == ["docs", "upload.bin"]


def restic_json(repository: Path, password_file: Path, *args: str) -> Any:
    done = subprocess.run(["restic", "--no-cache", *args, "--json"],
                          env=restic_env(repository, password_file),
                          capture_output=True, check=True, text=True)
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith(("{", "["))]


async def test_verified_snapshots_are_copied_to_the_offsite_repository_and_verified_there(
    backup_room: BackupRoom, stacks: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    b = backup_room
    domain = b.new_app("local")
    await deploy(b, domain, stacks)
    answer = await b.ask(b.bob, f"!backup {domain}")
    assert "- copy in `offsite`: verified" in answer, answer
    snapshot = re.search(r"snapshot `([0-9a-f]{8})`", answer)
    assert snapshot is not None

    # The copy is in the other repository, with coopbot's tags, and holds the same files.
    offsite = b.repository.path / "offsite"
    [listing] = restic_json(offsite, b.offsite_password_file, "snapshots")
    [copy] = [s for s in listing if f"app={domain}" in s["tags"]]
    assert "verified" in copy["tags"]
    nodes = restic_json(offsite, b.offsite_password_file, "ls", copy["id"])
    paths = {n["path"] for n in nodes if n.get("struct_type") == "node"}
    assert {"/backup/db/dump.sql", "/backup/files/upload.bin"} <= paths

    # The export: backup-bot-two's download layout, file by file, the bytes the app has.
    answer = await b.ask(b.bob, f"!export {domain}")
    where = re.search(r"is in `([^`]+\.tar\.gz)`", answer)
    assert where is not None and f"snapshot `{snapshot.group(1)}`" in answer, answer
    stack = stack_of(domain)
    with tarfile.open(where.group(1)) as archive:
        files = {m.name: archive.extractfile(m).read()  # type: ignore[union-attr]
                 for m in archive.getmembers() if m.isfile()}
    top = f"var/lib/docker/volumes/{stack}"
    assert files == {f"{top}_db/_data/dump.sql": read(domain, DUMP),
                     f"{top}_files/_data/upload.bin": read(domain, UPLOAD),
                     f"{top}_files/_data/docs/readme.txt": read(domain, README)}
    assert not list(Path(where.group(1)).parent.glob(".coopbot-export-*"))

    # A copy that fails (its password changed under the bot) is said; the snapshot stays.
    b.offsite_password_file.write_text("not-the-offsite-password\n")
    answer = await b.ask(b.bob, f"!backup {domain}")
    assert "verified: 3 file(s)" in answer, answer
    assert ("- copy in `offsite` FAILED: could not copy the snapshot to offsite on server "
            "local: the restic password does not open the repository") in answer, answer
    rows = [r for r in (await b.ask(b.carol, f"!snapshots {domain}")).splitlines()
            if r.startswith("- ")]
    assert len(rows) == 2 and not any("not verified" in r for r in rows), rows
    b.offsite_password_file.write_text(OFFSITE_PASSWORD + "\n")
    await assert_secrets_nowhere(b, caplog)


async def failed_upgrade_after_its_migration(b: BackupRoom, domain: str, stacks: list[str]
                                             ) -> tuple[bytes, str, str]:
    """Deploy 1.0.0+v1 of migratetest, then upgrade to the release that migrates the database
    and crashes: the data before, the pre-upgrade snapshot and the failure answer."""
    await deploy(b, domain, stacks)
    before = read(domain, DB)
    answer = await b.ask(b.bob, f"!upgrade {domain} {MIGRATING}")
    assert "failed after" in answer and "Returned to 1.0.0+v1" in answer, answer
    snapshots = await b.ask(b.carol, f"!snapshots {domain}")
    taken = re.search(r"- `([0-9a-f]{8})` .*\(pre-upgrade\)", snapshots)
    assert taken is not None, snapshots
    return before, taken.group(1), answer


async def test_a_failed_upgrade_offers_the_restore_of_its_data_and_one_command_runs_it(
    backup_room: BackupRoom, stacks: list[str]
) -> None:
    b = backup_room
    domain = b.new_app("local", recipe="migratetest")
    before, snapshot, answer = await failed_upgrade_after_its_migration(b, domain, stacks)
    # Old code now runs on migrated data: the answer says so and gives the one command.
    assert read(domain, DB) == MIGRATED
    assert (f"{MIGRATING} may already have migrated the data, which the previous version now "
            f"runs on: `!restore {domain} {snapshot}` puts back the data from before the "
            "upgrade") in answer, answer

    command = await b.send(b.bob, f"!restore {domain} {snapshot}")
    card = await b.answer(b.bob, command)
    request = re.match(r"Request #(\d+):", card)
    assert request is not None, card
    await b.ask(b.alice, f"!approve {request.group(1)}")
    result = await b.answer(b.bob, command, text="restored")
    assert "converged and healthy" in result, result
    assert read(domain, DB) == before

    # A rollback to the version the upgrade started from offers the same snapshot.
    await b.ask(b.bob, f"!upgrade {domain} 1.1.0+v2")
    answer = await b.ask(b.bob, f"!rollback {domain} 1.0.0+v1")
    assert "rolled back" in answer, answer
    assert "The upgrade from 1.0.0+v1 took snapshot `" in answer, answer


async def test_a_failed_upgrade_restores_its_data_by_policy(
    backup_room: BackupRoom, stacks: list[str]
) -> None:
    b = backup_room
    domain = b.new_app("local", recipe="migratetest", domain=b.always_app)
    before, snapshot, answer = await failed_upgrade_after_its_migration(b, domain, stacks)
    assert (f"The data from before the upgrade is back: `{domain}` restored on local from "
            f"snapshot `{snapshot}`") in answer, answer
    assert read(domain, DB) == before  # the old version runs on the old data
    assert service_state(domain)["version"] == "1.0.0+v1"
    assert b.bot.bot is not None
    [upgrade, *_] = await b.bot.bot.operations.history(domain)
    assert (upgrade.kind, upgrade.result) == ("upgrade", "failed")


def service_state(domain: str) -> dict[str, Any]:
    spec = json.loads(docker("service", "inspect", f"{stack_of(domain)}_app"))[0]["Spec"]
    return {"replicas": spec["Mode"]["Replicated"]["Replicas"],
            "version": spec["Labels"][f"coop-cloud.{stack_of(domain)}.version"]}


async def test_empty_dump_failing_hook_and_stopped_service_are_failed_backups(
    backup_room: BackupRoom, stacks: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    b = backup_room
    domain = b.new_app("local")
    await deploy(b, domain, stacks)
    assert await b.ask(b.carol, f"!backup {domain}") == (
        "`backup` needs the operator role in this room.")

    # The database is empty: the dump hook "succeeds" and writes a zero-byte dump.
    run_in(domain, f": > {DB}")
    answer = await b.ask(b.bob, f"!backup {domain}")
    assert answer.startswith(f"`backup` failed: the backup of `{domain}` FAILED verification: "
                             "`/backup/db/dump.sql` is empty (0 bytes): the dump did not write "
                             "anything. The snapshot `"), answer
    assert answer.endswith("` was discarded; earlier snapshots are kept.")
    assert await b.ask(b.carol, f"!snapshots {domain}") == (
        f"`{domain}` has no snapshots yet; `!backup {domain}` takes one.")

    # The dump hook fails (and prints an env value, which must not reach the room).
    run_in(domain, f"echo rows > {DB}; touch {FAIL_FLAG}")
    answer = await b.ask(b.bob, f"!backup {domain}")
    assert answer.startswith("`backup` failed: the backup pre-hook of service `app` failed "
                             "(exit status 3).\nLast output lines (env values redacted):"), answer
    assert "connecting with [redacted]" in answer and "dump failed: disk full" in answer

    # The service that has the hook is not running: an error, not a silent skip.
    docker("service", "scale", "--detach", f"{stack_of(domain)}_app=0")
    deadline = asyncio.get_running_loop().time() + 30
    while docker("ps", "-q", "--filter",
                 f"label=com.docker.swarm.service.name={stack_of(domain)}_app").strip():
        assert asyncio.get_running_loop().time() < deadline, "the service did not stop"
        await asyncio.sleep(0.3)
    answer = await b.ask(b.bob, f"!backup {domain}")
    assert answer == (
        f"`backup` failed: service `app` of `{domain}` has a backup hook but no running task, "
        f"so the hook cannot run; start the service (or `!deploy {domain}`) and try again")

    assert b.bot.bot is not None
    history = await b.bot.bot.operations.history(domain)
    assert [(op.kind, op.result) for op in reversed(history)] == [
        ("deploy", "ok"), ("backup", "failed"), ("backup", "failed"), ("backup", "failed")]
    await assert_secrets_nowhere(b, caplog)


async def test_upgrade_is_blocked_when_its_backup_fails(
    backup_room: BackupRoom, stacks: list[str]
) -> None:
    b = backup_room
    domain = b.new_app("local")
    await deploy(b, domain, stacks)
    run_in(domain, f"touch {FAIL_FLAG}")
    answer = await b.ask(b.bob, f"!upgrade {domain}")
    assert answer.startswith(
        f"`upgrade` failed: upgrade of `{domain}` did not run, nothing was changed: the backup "
        "before it failed: the backup pre-hook of service `app` failed (exit status 3)."), answer
    assert service_state(domain) == {"replicas": 1, "version": "1.0.0+v1"}

    run_in(domain, f"rm {FAIL_FLAG}")
    answer = await b.ask(b.bob, f"!upgrade {domain}")
    assert "upgraded" in answer and "1.0.0+v1 -> 1.1.0+v2" in answer, answer
    assert service_state(domain) == {"replicas": 1, "version": "1.1.0+v2"}
    listing = await b.ask(b.carol, f"!snapshots {domain}")
    rows = [line for line in listing.splitlines() if line.startswith("- ")]
    assert len(rows) == 1 and "1.0.0+v1" in rows[0] and "(pre-upgrade)" in rows[0], listing
    assert b.bot.bot is not None
    [upgrade, failed, _] = await b.bot.bot.operations.history(domain)
    assert (upgrade.kind, upgrade.result, failed.kind, failed.result) == (
        "upgrade", "ok", "upgrade", "failed")


async def test_a_restore_failing_midway_says_which_volume_is_in_which_state(
    backup_room: BackupRoom, stacks: list[str]
) -> None:
    b = backup_room
    domain = b.new_app("local")
    await deploy(b, domain, stacks)
    first = re.search(r"snapshot `([0-9a-f]{8})`", await b.ask(b.bob, f"!backup {domain}"))
    assert first is not None
    # A file the restore cannot remove: emptying the `files` volume fails halfway.
    volume = docker("volume", "inspect", "-f", "{{.Mountpoint}}",
                    f"{stack_of(domain)}_files").decode().strip()
    stuck = Path(volume) / "stuck.txt"
    stuck.write_text("cannot be removed\n")
    chattr("+i", stuck)
    try:
        command = await b.send(b.bob, f"!restore {domain} {first.group(1)}")
        request = re.match(r"Request #(\d+):", await b.answer(b.bob, command))
        assert request is not None
        await b.ask(b.alice, f"!approve {request.group(1)}")
        answer = await b.answer(b.bob, command, text="failed at volume")
    finally:
        chattr("-i", stuck)
    lines = answer.splitlines()
    assert lines[0].startswith(f"`restore` failed: restore of `{domain}` from snapshot "
                               f"`{first.group(1)}` failed at volume `files`: could not empty "
                               "the volume on server local: restic failed (exit 1)"), answer
    assert lines[1:3] == ["- volume `db`: restored",
                          "- volume `files`: INCOMPLETE: emptying it failed midway"]
    safety = re.search(r"`!restore \S+ ([0-9a-f]{8})` brings back the data from before", answer)
    assert safety is not None and safety.group(1) != first.group(1), answer
    assert "Services `app` are left stopped, so nothing runs on incomplete data." in answer
    assert service_state(domain)["replicas"] == 0
    assert b.bot.bot is not None
    assert (await b.bot.bot.operations.history(domain))[0].result == "failed"


async def test_scheduled_backups_apply_retention_and_report_each_app(
    local_spec: ServerSpec, abra_dir: AbraDir, tmp_path: Path, restic_image: str,
    restic_repository: ResticRepository, test_images: AppImages, stacks: list[str],
) -> None:
    domain = f"b{uuid.uuid4().hex[:8]}.example.org"
    abra_dir.write_app("local", domain, recipe="backuptest", extra={"DB_PASSWORD": DB_SECRET})
    abra_dir.write_app("local", f"idle-{domain}", recipe="backuptest")  # never deployed
    stacks.append(stack_of(domain))
    compose = tmp_path / "compose.yml"
    compose.write_text(tree_of_backuptest("1.0.0+v1")["compose.yml"])
    pool = ServerPool([local_spec])
    database = Database(tmp_path / "coopbot.db")
    await database.open()
    try:
        engine = pool.get("local")
        await engine.stack_deploy(stack_of(domain), [compose],
                                  {"STACK_NAME": stack_of(domain), "DB_PASSWORD": DB_SECRET},
                                  tmp_path)
        assert (await engine.wait_converged(stack_of(domain), 60)).ok
        config = BackupConfig(
            repository=str(restic_repository.path), password_file=restic_repository.password_file,
            helper_image=restic_image, schedule="daily 03:00",
            exports_dir=str(tmp_path / "exports"),
            retention=RetentionConfig(keep_last=2, keep_daily=None, keep_weekly=None,
                                      keep_monthly=None),
        )
        backups = BackupService(pool, AppScope(AppCatalog(abra_dir.path)),
                                OperationStore(database), {"local": config},
                                progress_tick=TICK)
        reported: list[ScheduledBackup] = []

        async def report(result: ScheduledBackup) -> None:
            reported.append(result)

        scheduler = BackupScheduler(backups, {"local": "daily 03:00"}, report)
        rounds = [await scheduler.run_server("local") for _ in range(3)]
        assert [[(r.app, r.ok, r.pruned) for r in found] for found in rounds] == [
            [(domain, True, 0)], [(domain, True, 0)], [(domain, True, 1)]]
        assert reported == [r for found in rounds for r in found]
        kept = await backups.snapshots(domain, None)
        made = [found[0].result.snapshot_id for found in rounds if found[0].result]
        assert [s.short_id for s in kept] == [made[2], made[1]]
        assert all(s.tag("reason") == "schedule" and s.verified for s in kept)

        # What a member starts and waits for in a room ticks like a deploy, until it is done.
        await ticks_until_done(lambda say: backups.backup(domain, None, ALICE, say))
        await ticks_until_done(lambda say: backups.restore(domain, None, ALICE, say, made[2],
                                                           backup_first=False))
        await ticks_until_done(lambda say: backups.export(domain, None, ALICE, say, made[2]))
        before = [s.short_id for s in await backups.snapshots(domain, None)]

        run_in(domain, f"touch {FAIL_FLAG}")
        [failed] = await scheduler.run_server("local")
        assert not failed.ok and failed.message.startswith(
            f"scheduled backup of `{domain}` failed: the backup pre-hook of service `app` failed")
        assert [s.short_id for s in await backups.snapshots(domain, None)] == before
    finally:
        await pool.close()
        await database.close()


TICK = 0.3
ALICE = UserID("@alice:example.org")


async def ticks_until_done(work: Callable[[Progress], Awaitable[object]]) -> None:
    """`work`'s status shows the same line again with the time so far while nothing new
    happens, and nothing more once it is done."""
    shown: list[str] = []

    async def say(update: Reply) -> None:
        shown.append(update.text)

    await work(say)
    done = len(shown)
    await asyncio.sleep(TICK * 4)
    assert len(shown) == done, f"still ticking after the answer: {shown[done:]}"
    lines = [re.sub(r" · \d+ s$", "", line) for line in shown]
    assert any(a == b for a, b in itertools.pairwise(lines)), shown
    assert all(re.search(r" · \d+ s$", line) for line in shown[1:]), shown
