"""Pure parts of backups: backupbot labels (v1 and v2), verification, restic's JSON output,
retention arguments, schedules, restore paths, hook unwrapping; which node's copy of the
volumes is the data (with a swarm of three nodes in memory)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coopbot.backups.hooks import unwrap
from coopbot.backups.labels import LabelError, plan_backup
from coopbot.backups.layout import SnapshotVolume, maker, volumes_in
from coopbot.backups.output import Snapshot, parse_backup, parse_forget, parse_ls, parse_snapshots
from coopbot.backups.placement import DataNode, locate_data
from coopbot.backups.restic import retention_args
from coopbot.backups.schedule import next_run
from coopbot.backups.verify import Node, verify
from coopbot.config import RetentionConfig
from coopbot.errors import OperationFailed, UserError
from coopbot.operations.checkpoints import RestoreProgress, VolumeRestore
from coopbot.servers.containers import RunningTask, ServiceMounts, VolumeMount
from coopbot.servers.node_helpers import SwarmNodeRef

STACK = "blog_example_org"


def service(labels: dict[str, str], mounts: dict[str, str], name: str = "app") -> ServiceMounts:
    return ServiceMounts(
        name=f"{STACK}_{name}", short_name=name, labels=labels,
        mounts=tuple(VolumeMount(f"{STACK}_{vol}", target) for vol, target in mounts.items()),
        replicated=True, replicas=1,
    )


MARIADB = {"mariadb": "/var/lib/mysql", "config": "/etc/mysql/conf.d", "tmp": "/tmp/x"}


def test_unlabelled_services_are_not_backed_up() -> None:
    plan = plan_backup(STACK, [service({}, MARIADB),
                               service({"backupbot.backup": "false"}, MARIADB, "db")])
    assert plan.services == () and plan.backup_paths == ()


def test_v2_labels_narrow_exclude_and_keep_whole_volumes() -> None:
    labels = {
        "backupbot.backup": "true",
        "backupbot.backup.volumes.mariadb.path": "dump.sql.gz, extra/",
        "backupbot.backup.volumes.tmp": "false",
        "backupbot.backup.pre-hook": "sh -c 'mysqldump -p\"$$(cat /run/secrets/pw)\" | gzip > "
                                     "/var/lib/mysql/dump.sql.gz'",
        "backupbot.restore.post-hook": "zcat /var/lib/mysql/dump.sql.gz | mysql",
    }
    [target] = plan_backup(STACK, [service(labels, MARIADB, "db")]).services
    assert [(v.name, v.volume, v.paths) for v in target.volumes] == [
        ("mariadb", f"{STACK}_mariadb", ("dump.sql.gz", "extra")),
        ("config", f"{STACK}_config", ()),
    ]
    assert target.hooks.pre_backup is not None and target.hooks.post_backup is None
    assert target.hooks.post_restore == "zcat /var/lib/mysql/dump.sql.gz | mysql"
    # Label paths and the file the hook writes (inside a backed-up path) are "named".
    assert target.named_files == ("/backup/mariadb/dump.sql.gz", "/backup/mariadb/extra")


def test_v1_path_label_maps_container_paths_to_volumes() -> None:
    labels = {"backupbot.backup": "true",
              "backupbot.backup.path": "/var/lib/mysql/backup.sql,/etc/mysql/conf.d"}
    plan = plan_backup(STACK, [service(labels, MARIADB)])
    assert plan.backup_paths == ("/backup/mariadb/backup.sql", "/backup/config")
    # v1 narrows the service to the volumes its paths are on: tmp is not backed up.
    assert [v.name for v in plan.volumes] == ["mariadb", "config"]


def test_v1_path_outside_every_volume_is_refused() -> None:
    labels = {"backupbot.backup": "true", "backupbot.backup.path": "/srv/not-a-volume"}
    with pytest.raises(LabelError, match="names /srv/not-a-volume, which is on none of its"):
        plan_backup(STACK, [service(labels, MARIADB)])


def test_paths_may_not_leave_the_volume() -> None:
    labels = {"backupbot.backup": "true", "backupbot.backup.volumes.mariadb.path": "../etc"}
    with pytest.raises(LabelError, match="must stay inside the volume"):
        plan_backup(STACK, [service(labels, MARIADB)])


def test_shared_volume_is_backed_up_once() -> None:
    on = {"backupbot.backup": "true"}
    plan = plan_backup(STACK, [service(on, {"data": "/data"}, "app"),
                               service({}, {"data": "/srv/data"}, "worker")])
    assert plan.backup_paths == ("/backup/data",)


def test_the_label_on_one_service_backs_up_the_whole_stack() -> None:
    # backup-bot-two's spec: the label enables the stack; volume labels may sit on any service.
    plan = plan_backup(STACK, [
        service({"backupbot.backup": "true", "backupbot.backup.volumes.cache": "false"},
                {"files": "/srv/files"}, "app"),
        service({"backupbot.backup.pre-hook": "mysqldump > /var/lib/mysql/dump.sql"},
                {"mariadb": "/var/lib/mysql", "cache": "/cache"}, "db"),
        service({}, {}, "web"),  # no volumes, no hooks: not part of the plan
    ])
    assert [s.short_name for s in plan.services] == ["app", "db"]
    assert [v.name for v in plan.volumes] == ["files", "mariadb"]
    assert plan.services[1].hooks.pre_backup == "mysqldump > /var/lib/mysql/dump.sql"


def test_the_label_on_several_services_is_refused_naming_them() -> None:
    on = {"backupbot.backup": "true"}
    with pytest.raises(LabelError, match=r"set on services `app`, `db`; .* one service only"):
        plan_backup(STACK, [service(on, {"files": "/srv"}, "app"),
                            service({"backupbot.backup": "false"}, {"x": "/x"}, "cron"),
                            service(on, {"mariadb": "/var/lib/mysql"}, "db")])


def test_conflicting_volume_labels_are_refused() -> None:
    with pytest.raises(LabelError, match=r"`app` and `db` give the label .*mariadb\.path"):
        plan_backup(STACK, [
            service({"backupbot.backup": "true",
                     "backupbot.backup.volumes.mariadb.path": "a.sql"}, {}, "app"),
            service({"backupbot.backup.volumes.mariadb.path": "b.sql"},
                    {"mariadb": "/var/lib/mysql"}, "db"),
        ])


NODES = [
    Node("/backup", "dir"), Node("/backup/db", "dir"), Node("/backup/db/dump.sql", "file", 42),
    Node("/backup/files", "dir"), Node("/backup/files/a.bin", "file", 1000),
    Node("/backup/files/empty-but-fine", "file", 0),
]
EXPECTED = ("/backup/db/dump.sql", "/backup/files")


def test_verification_counts_files_and_bytes_per_volume() -> None:
    checked = verify(NODES, EXPECTED, ["/backup/db/dump.sql"])
    assert checked.ok and checked.files == 3 and checked.bytes == 1042
    assert [(v.name, v.files, v.bytes) for v in checked.volumes] == [
        ("db", 1, 42), ("files", 2, 1000)]


def test_verification_flags_an_empty_dump_and_a_vanished_path() -> None:
    nodes = [Node("/backup/db/dump.sql", "file", 0), *NODES[3:]]
    checked = verify(nodes, [*EXPECTED, "/backup/media"], ["/backup/db/dump.sql"])
    assert not checked.ok
    assert checked.problems == (
        "`/backup/media` is missing from the snapshot",
        "`/backup/db/dump.sql` is empty (0 bytes): the dump did not write anything",
    )


def test_verification_flags_an_empty_snapshot() -> None:
    assert verify([Node("/backup/files", "dir")], ["/backup/files"], []).problems == (
        "the snapshot holds no files",)
    nodes = [Node("/backup/f", "dir"), Node("/backup/f/x", "file", 0)]
    assert verify(nodes, ["/backup/f"], []).problems == (
        "the snapshot's 1 file(s) are all empty",)


# Captured from restic 0.14 (`backup --json`, `snapshots --json`, `ls --json`, `forget --json`).
BACKUP_OUT = """\
{"message_type":"status","percent_done":0,"total_files":1,"total_bytes":3}
{"message_type":"summary","files_new":2,"files_changed":0,"total_files_processed":2,"total_bytes_processed":3,"total_duration":0.2,"snapshot_id":"14369f45"}
"""
SNAPSHOT = ('{"time":"%s","tree":"52e2","paths":["/backup/db/dump.sql","/backup/files"],'
            '"hostname":"local","username":"root","tags":%s,"id":"%s","short_id":"%s"%s}')
SNAPSHOTS_OUT = "[" + ",".join([
    SNAPSHOT % ("2026-11-25T21:09:20.920007186Z", '["app=x","version=1.0.0+v1"]', "aa11" * 16,
                "aa11aa11", ""),
    SNAPSHOT % ("2026-11-25T23:09:21.5+02:00", '["app=x","verified","size=42"]', "bb22" * 16,
                "bb22bb22", ',"original":"' + "cc33" * 16 + '"'),
]) + "]\n"


def test_parse_backup_and_snapshots() -> None:
    summary = parse_backup(BACKUP_OUT)
    assert (summary.snapshot_id, summary.files, summary.bytes) == ("14369f45", 2, 3)
    newest, oldest = parse_snapshots(SNAPSHOTS_OUT)
    assert newest.short_id == "bb22bb22" and newest.verified and newest.size == 42
    assert newest.time == datetime(2026, 11, 25, 21, 9, 21, 500000, tzinfo=UTC)
    assert newest.original == "cc33" * 16
    assert oldest.tag("version") == "1.0.0+v1" and oldest.size is None and not oldest.verified


def test_parse_ls_and_forget_ignore_text_lines() -> None:
    listing = ('{"time":"2026-11-25T21:09:21Z","paths":["/backup"],"id":"x","struct_type":"snapshot"}\n'
               '{"name":"a","type":"file","path":"/backup/f/a","size":5,"struct_type":"node"}\n'
               '{"name":"f","type":"dir","path":"/backup/f","struct_type":"node"}\n')
    assert parse_ls(listing) == [Node("/backup/f/a", "file", 5), Node("/backup/f", "dir", 0)]
    forget = ('[{"tags":null,"host":"h","keep":[' + SNAPSHOT % (
        "2026-11-25T21:09:21Z", "[]", "dd44" * 16, "dd44dd44", "") + '],"remove":[' + SNAPSHOT % (
        "2026-11-24T21:09:21Z", "[]", "ee55" * 16, "ee55ee55", "") + ']}]\n'
        "loading indexes...\nremoving 4 old packs\ndone\n")
    result = parse_forget(forget)
    assert [s.short_id for s in result.kept] == ["dd44dd44"]
    assert [s.short_id for s in result.removed] == ["ee55ee55"]


def test_one_helper_output_holds_the_backup_and_its_listing() -> None:
    """backup and ls run in one helper container (restic.BACKUP_AND_LIST_SCRIPT): each parser
    must pick its own lines out of the shared output."""
    listing = ('{"time":"2026-11-25T21:09:21Z","paths":["/backup"],"id":"x","struct_type":"snapshot"}\n'
               '{"name":"a","type":"file","path":"/backup/f/a","size":5,"struct_type":"node"}\n')
    both = BACKUP_OUT + listing
    assert parse_backup(both).snapshot_id == "14369f45"
    assert parse_ls(both) == [Node("/backup/f/a", "file", 5)]


def test_retention_arguments() -> None:
    assert retention_args(RetentionConfig()) == [
        "--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "6"]
    assert retention_args(RetentionConfig(keep_last=2, keep_daily=None, keep_weekly=None,
                                          keep_monthly=None)) == ["--keep-last", "2"]


@pytest.mark.parametrize(("schedule", "now", "expected"), [
    ("hourly", "2026-03-01T10:15:00+00:00", "2026-03-01T11:00:00+00:00"),
    ("hourly", "2026-03-01T23:00:00+00:00", "2026-03-02T00:00:00+00:00"),
    ("daily", "2026-03-01T10:15:00+00:00", "2026-03-02T00:00:00+00:00"),
    ("daily 03:30", "2026-03-01T02:00:00+00:00", "2026-03-01T03:30:00+00:00"),
    ("daily 03:30", "2026-03-01T03:30:00+00:00", "2026-03-02T03:30:00+00:00"),
    # Local times are taken as the same instant in UTC.
    ("daily 03:30", "2026-03-01T04:00:00+02:00", "2026-03-01T03:30:00+00:00"),
])
def test_next_run(schedule: str, now: str, expected: str) -> None:
    assert next_run(schedule, datetime.fromisoformat(now)) == datetime.fromisoformat(expected)


def test_restore_replaces_whole_volumes_and_narrowed_paths() -> None:
    [snapshot, _] = parse_snapshots(SNAPSHOTS_OUT)
    assert volumes_in(snapshot, STACK) == [
        SnapshotVolume("db", "/backup/db", ("/backup/db/dump.sql",)),
        SnapshotVolume("files", "/backup/files", ("/backup/files/",)),
    ]
    foreign = parse_snapshots(SNAPSHOTS_OUT.replace("/backup/files", "/home/x"))[0]
    with pytest.raises(OperationFailed, match="holds none of this app's volumes"):
        volumes_in(foreign, STACK)


def bb2_snapshot(*paths: str) -> Snapshot:
    return Snapshot("ab12cd34ef", "ab12cd34", datetime(2026, 11, 30, tzinfo=UTC), paths,
                    ("backupbot", STACK))


def test_backup_bot_two_snapshots_restore_only_this_apps_volumes() -> None:
    volumes = "/var/lib/docker/volumes"
    snapshot = bb2_snapshot(
        f"{volumes}/{STACK}_mariadb/_data/dump.sql.gz",
        f"{volumes}/{STACK}_files/_data",
        f"{volumes}/other_example_org_files/_data",  # another app in the same snapshot
        f"{volumes}/{STACK}_odd/not-data",  # not a volume's data folder
    )
    assert maker(snapshot, STACK) == "backup-bot-two"
    assert maker(snapshot, "nothing_here") is None
    assert volumes_in(snapshot, STACK) == [
        SnapshotVolume("mariadb", f"{volumes}/{STACK}_mariadb/_data",
                       (f"{volumes}/{STACK}_mariadb/_data/dump.sql.gz",), f"{STACK}_mariadb"),
        SnapshotVolume("files", f"{volumes}/{STACK}_files/_data",
                       (f"{volumes}/{STACK}_files/_data/",), f"{STACK}_files"),
    ]
    with pytest.raises(OperationFailed, match="holds none of this app's volumes"):
        volumes_in(snapshot, "blog_example_com")


@given(st.lists(st.text(alphabet="/_abcdefg.", max_size=40), max_size=6))
def test_any_snapshot_paths_give_volumes_inside_their_roots_or_a_refusal(paths: list[str]
                                                                         ) -> None:
    try:
        found = volumes_in(bb2_snapshot(*paths), STACK)
    except OperationFailed:
        return
    for volume in found:
        assert volume.clear and all(c == f"{volume.root}/" or c.startswith(f"{volume.root}/")
                                    for c in volume.clear)


def test_hooks_are_unwrapped_like_backup_bot_two() -> None:
    assert unwrap("sh -c 'pg_dump -U x > /tmp/d.sql'") == "pg_dump -U x > /tmp/d.sql"
    assert unwrap('bash -c "a | b"') == "a | b"
    assert unwrap("  mysqldump db > /d.sql ") == "mysqldump db > /d.sql"


async def test_scheduler_runs_a_server_when_due_and_reports_every_result() -> None:
    from coopbot.backups import BackupScheduler, ScheduledBackup

    class Backups:  # stands in for BackupService: only the scheduling is under test here
        def __init__(self) -> None:
            self.rounds: list[str] = []

        async def scheduled(self, server: str, progress: object) -> list[ScheduledBackup]:
            self.rounds.append(server)
            return [ScheduledBackup("a.example.org", server, True, "ok"),
                    ScheduledBackup("b.example.org", server, False, "failed")]

    moments = [datetime(2026, 3, 1, 10, 59, 59, tzinfo=UTC), datetime(2026, 3, 1, 11, 0, 0, 1,
                                                                       tzinfo=UTC)]
    reported: list[ScheduledBackup] = []
    both = asyncio.Event()

    async def report(result: ScheduledBackup) -> None:
        reported.append(result)
        if len(reported) == 2:
            both.set()

    backups = Backups()
    scheduler = BackupScheduler(backups, {"local": "hourly"}, report,  # type: ignore[arg-type]
                                clock=lambda: moments.pop(0) if len(moments) > 1 else moments[0])
    task = asyncio.create_task(scheduler.run())
    await asyncio.wait_for(both.wait(), 5)
    await asyncio.sleep(0.05)  # it is now asleep until 12:00: nothing more runs
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert backups.rounds == ["local"]
    assert [(r.app, r.ok) for r in reported] == [("a.example.org", True), ("b.example.org", False)]


def test_restore_progress_round_trips_and_rejects_damage() -> None:
    progress = RestoreProgress("abcd1234", (
        VolumeRestore("db", "restored"),
        VolumeRestore("files", "incomplete", "the bot stopped while restoring it"),
        VolumeRestore("media", "unchanged")), (("blog_app", 2),))
    assert RestoreProgress.decode(progress.encode()) == progress
    for damaged in ("", "{", '{"snapshot": "x"}', '{"snapshot": "x", "volumes": 3}'):
        assert RestoreProgress.decode(damaged) is None


@dataclass
class Swarm:
    """The parts of a DockerEngine placement reads: nodes, their volumes, running tasks."""

    volumes: dict[str, set[str]]  # node id -> volume names
    tasks: dict[str, str] = field(default_factory=dict)  # service -> node id

    @property
    def helpers(self) -> Swarm:
        return self

    @property
    def containers(self) -> Swarm:
        return self

    async def nodes(self) -> list[SwarmNodeRef]:
        return [SwarmNodeRef(n, f"host-{n}", "worker", "ready", "active") for n in self.volumes]

    async def own_node(self) -> str:
        return next(iter(self.volumes))

    async def volume_names(self, node_id: str) -> set[str]:
        return self.volumes[node_id]

    async def running_task(self, service: str) -> RunningTask | None:
        node = self.tasks.get(service)
        return RunningTask(service, "t1", "c1", node) if node else None


DATA = f"{STACK}_data"
APP_NAME = "blog.example.org"


async def place(swarm: Swarm, node: str | None = None,
                config: dict[str, str] | None = None) -> DataNode:
    return await locate_data(swarm, APP_NAME, "multi", [DATA],  # type: ignore[arg-type]
                             [service({}, {"data": "/data"})], config or {}, node)


async def test_a_stopped_apps_copies_on_several_nodes_need_the_command_or_the_config() -> None:
    swarm = Swarm({"n1": {DATA}, "n2": {DATA}, "n3": set()})
    with pytest.raises(OperationFailed, match=r"several nodes: `host-n1`, `host-n2`.*"
                                              r"`--node <node>`"):
        await place(swarm)
    # `--node` by hostname or id chooses one, and comes before the config's choice.
    assert await place(swarm, "host-n2") == DataNode("n2", "host-n2")
    assert await place(swarm, "n1", {APP_NAME: "host-n2"}) == DataNode("n1", "host-n1")
    assert await place(swarm, None, {APP_NAME: "host-n2"}) == DataNode("n2", "host-n2")
    # A node without the volumes, or no node of this swarm at all, is refused.
    with pytest.raises(OperationFailed, match=r"`--node` names node `host-n3`.*none of its"):
        await place(swarm, "host-n3")
    with pytest.raises(UserError, match=r"`elsewhere` is not a node of server multi; its "
                                        r"nodes are `host-n1`, `host-n2`, `host-n3`"):
        await place(swarm, "elsewhere")


async def test_a_running_apps_data_is_where_its_task_runs_whatever_the_command_says() -> None:
    swarm = Swarm({"n1": {DATA}, "n2": {DATA}}, tasks={f"{STACK}_app": "n2"})
    assert await place(swarm) == DataNode("n2", "host-n2")
    assert await place(swarm, "n2") == DataNode("n2", "host-n2")
    with pytest.raises(OperationFailed, match=r"runs on node host-n2, so its data is the copy "
                                              r"there, not the one on `host-n1`"):
        await place(swarm, "host-n1")


def test_a_restores_vote_binds_to_the_node_it_names() -> None:
    from pathlib import Path

    from coopbot.backups.results import RestorePlan
    from coopbot.operations.plan import PlanChanged
    from coopbot.recipes.apps import App

    app = App(APP_NAME, "multi", APP_NAME, STACK, "blog", "1.0.0", {}, Path("/x.env"), 60,
              ("compose.yml",), {})
    snapshot = bb2_snapshot(f"/var/lib/docker/volumes/{DATA}/_data/a.txt")
    voted = RestorePlan.of(app, snapshot, "1.0.0", "host-n1")
    assert "volumes replaced (the copy on node host-n1): `data`" in voted.planned().lines
    PlanChanged.check(voted.binding, RestorePlan.of(app, snapshot, "1.0.0", "host-n1").planned())
    with pytest.raises(PlanChanged, match="node"):
        PlanChanged.check(voted.binding,
                          RestorePlan.of(app, snapshot, "1.0.0", "host-n2").planned())
