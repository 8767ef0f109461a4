"""The watcher's pure parts: conditions, suppression, start-up baseline, versions, grouping."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from coopbot.errors import DockerError, ServerUnreachable
from coopbot.servers.states import NodeState, ServerInfo, ServiceState
from coopbot.servers.task_failures import TaskFailures, parse_timestamp, recent_failures
from coopbot.watch import Alert, Severity, WatchSnapshot, WatchTimings
from coopbot.watch.backoff import backoff_delay
from coopbot.watch.conditions import Condition, duration
from coopbot.watch.grouping import Grouper, merge
from coopbot.watch.reasons import failure_reason
from coopbot.watch.tracker import ServerTracker
from coopbot.watch.transitions import transitions
from coopbot.watch.view import SwarmView

TIMINGS = WatchTimings()
READY = NodeState("n1", "manager", "ready", "active", leader=True)


def service(
    stack: str = "blog",
    short: str = "app",
    *,
    version: str | None = "1.0.0",
    timeout: str | None = None,
    desired: int = 1,
    updated: int = 1,
    update_state: str | None = None,
) -> ServiceState:
    labels = {"com.docker.stack.namespace": stack}
    if version is not None:
        labels[f"coop-cloud.{stack}.version"] = version
    if timeout is not None:
        labels[f"coop-cloud.{stack}.timeout"] = timeout
    return ServiceState(
        name=f"{stack}_{short}", short_name=short, stack=stack, image="img:v1",
        mode="replicated", replicas_desired=desired, replicas_running=updated,
        replicas_updated=updated, update_state=update_state, update_message="",
        last_error=None, health="none", labels=labels,
    )


def view(
    at: float,
    *services: ServiceState,
    nodes: tuple[NodeState, ...] = (READY,),
    failures: Mapping[str, TaskFailures] | None = None,
) -> SwarmView:
    stacks: dict[str, tuple[ServiceState, ...]] = {}
    for s in services:
        stacks[s.stack] = (*stacks.get(s.stack, ()), s)
    info = ServerInfo("srv", "20.10", "1.41", "manager", nodes, len(stacks))
    return SwarmView(at=at, info=info, stacks=stacks, failures=failures or {})


def condition(key: str, state: str, recovery: str | None = "fixed") -> Condition:
    return Condition("node", key, state, "critical", f"{key} is {state}.", recovery)


def alert(app: str | None, message: str, severity: Severity = "warning", at: float = 0.0) -> Alert:
    return Alert(kind="update", server="srv", app=app, node=None, severity=severity,
                 message=message, key=f"srv/{app}/{message}", state="x", at=at)


# --- suppression: only state changes make alerts ---------------------------------------------


def test_transitions_announce_new_changed_and_cleared_conditions_only() -> None:
    before = {"a": condition("a", "down"), "b": condition("b", "down"),
              "c": condition("c", "down"), "d": condition("d", "x", recovery=None)}
    after = {"a": condition("a", "down"), "b": condition("b", "unknown"),
             "e": condition("e", "down")}
    made = transitions("srv", before, after, at=5.0)
    assert [(a.key, a.state, a.recovered, a.message) for a in made] == [
        ("b", "unknown", False, "b is unknown."),
        ("e", "down", False, "e is down."),
        ("c", "ok", True, "fixed"),  # "d" clears silently: it has no recovery sentence
    ]
    assert transitions("srv", after, after, at=6.0) == []


def test_first_reading_is_the_baseline_only_broken_things_are_said_once() -> None:
    tracker = ServerTracker("srv", TIMINGS)
    first = view(
        100.0,
        service("blog", update_state="paused"),
        service("wiki", update_state="rollback_completed"),
        nodes=(READY, NodeState("n2", "worker", "down", "active"),
               NodeState("n3", "worker", "ready", "drain")),
    )
    alerts, news = tracker.observe(first)
    assert news == []
    assert sorted((a.key, a.initial) for a in alerts) == [
        ("srv/app/blog/service/blog_app/update", True),
        ("srv/node/n2/state", True),
    ]
    assert "Node n2 of server srv is down (already so when watching began)." in [
        a.message for a in alerts
    ]
    assert tracker.observe(first) == ([], [])  # known: not repeated
    kinds = sorted(p.key for p in tracker.snapshot().problems)
    assert kinds == ["srv/app/blog/service/blog_app/update",
                     "srv/app/wiki/service/wiki_app/update",
                     "srv/node/n2/state", "srv/node/n3/availability"]


def test_update_rolled_back_is_announced_and_clears_silently() -> None:
    tracker = ServerTracker("srv", TIMINGS)
    tracker.observe(view(1.0, service()))
    failed = {"blog_app": TaskFailures("blog_app", 1, "task: non-zero exit (137): unhealthy", 2.0)}
    [rolled] = tracker.observe(view(3.0, service(update_state="rollback_completed"),
                                    failures=failed))[0]
    assert rolled.message == (
        "The update of service app of blog on server srv failed and was rolled back."
    )
    assert tracker.observe(view(4.0, service(update_state="completed"))) == ([], [])
    [again] = tracker.observe(view(5.0, service(update_state="rollback_completed")))[0]
    assert again.message == (
        "The update of service app of blog on server srv was rolled back to its previous version."
    )


def test_repeated_task_failures_need_the_threshold_and_recover_once() -> None:
    tracker = ServerTracker("srv", TIMINGS)
    tracker.observe(view(1.0, service()))

    def failing(count: int, at: float) -> tuple[list[Alert], object]:
        failures = {"blog_app": TaskFailures("blog_app", count, "task: non-zero exit (1)", at)}
        return tracker.observe(view(at, service(updated=0), failures=failures))

    assert failing(2, 2.0)[0] == []
    [alert] = failing(3, 3.0)[0]
    assert (alert.kind, alert.severity) == ("failing", "critical")
    assert alert.message == (
        "Tasks of service app of blog on server srv failed 3 times in the last 5 min; "
        "the latest exited with code 1."
    )
    assert failing(5, 4.0)[0] == []  # more failures, same state: not repeated
    [recovered] = tracker.observe(view(400.0, service()))[0]
    assert (recovered.recovered, recovered.message) == (
        True, "Tasks of service app of blog on server srv stopped failing."
    )


def test_service_not_converged_is_overdue_after_its_app_timeout() -> None:
    tracker = ServerTracker("srv", TIMINGS)
    pending = service(timeout="60", updated=0)
    assert tracker.observe(view(100.0, pending)) == ([], [])
    assert tracker.next_deadline() == 160.0
    assert tracker.observe(view(150.0, pending)) == ([], [])
    [overdue] = tracker.observe(view(161.0, pending))[0]
    assert overdue.message == (
        "Service app of blog on server srv has not converged within 60 s: "
        "0 of 1 tasks run its current version."
    )
    assert tracker.next_deadline() is None
    [back] = tracker.observe(view(170.0, service(timeout="60")))[0]
    assert back.message == "Service app of blog on server srv has converged again."
    # Without a label the default applies (300 s), counted from when it was first seen.
    tracker.observe(view(200.0, service(updated=0)))
    assert tracker.next_deadline() == 500.0


def test_version_changes_appearances_and_removals_are_news() -> None:
    tracker = ServerTracker("srv", TIMINGS)
    tracker.observe(view(10.0, service("blog", version="1.2.0"), service("old", version="0.9")))
    _, news = tracker.observe(view(20.0, service("blog", version="1.3.0"),
                                   service("new", version="2.0")))
    assert [(c.app, c.old, c.new, c.last_seen, c.at) for c, _ in news] == [
        ("blog", "1.2.0", "1.3.0", 10.0, 20.0),
        ("new", None, "2.0", 20.0, 20.0),
        ("old", "0.9", None, 10.0, 20.0),
    ]
    assert [a.message for _, a in news] == [
        "App blog on server srv changed from 1.2.0 to 1.3.0 outside coopbot.",
        "App new was deployed on server srv at 2.0 outside coopbot.",
        "App old (0.9) was removed from server srv outside coopbot.",
    ]
    _, news = tracker.observe(view(30.0, service("blog", version=None),
                                   service("new", version="2.0")))
    assert [a.message for _, a in news] == [
        "App blog on server srv lost its version label (1.3.0) outside coopbot."
    ]
    assert tracker.snapshot().apps == {"new": "2.0"}


def test_unreachable_is_said_once_per_state_and_recovery_once() -> None:
    tracker = ServerTracker("srv", TIMINGS)
    [first] = tracker.lost(ServerUnreachable("srv", "connection refused"), 1.0)
    assert (first.message, first.initial) == (
        "Server srv is unreachable: connection refused (already so when watching began).", True
    )
    assert tracker.lost(ServerUnreachable("srv", "connection timed out"), 2.0) == []
    [refused] = tracker.lost(DockerError("could not read it: Docker refused (HTTP 503)"), 3.0)
    assert refused.message == (
        "Server srv cannot be watched: could not read it: Docker refused (HTTP 503)."
    )
    assert tracker.snapshot().reachable is False
    [back] = tracker.observe(view(4.0, service()))[0]
    assert (back.kind, back.recovered, back.message) == (
        "reachability", True, "Server srv is reachable again."
    )
    [again] = tracker.lost(ServerUnreachable("srv", "connection refused"), 5.0)
    assert not again.initial  # it was read before: a change, not a start-up state


# --- grouping ----------------------------------------------------------------------------------


def test_alerts_of_one_app_within_the_window_become_one_message() -> None:
    grouper = Grouper(window=10.0)
    grouper.add(alert("blog", "Tasks fail.", "warning", at=1.0), now=100.0)
    grouper.add(alert("wiki", "Other app.", "info"), now=101.0)
    grouper.add(alert("blog", "Rolled back.", "critical", at=2.0), now=105.0)
    assert grouper.due(now=109.9) == []
    assert len(grouper) == 3 and grouper.next_due() == 110.0
    [blog] = grouper.due(now=110.0)
    assert (blog.kind, blog.app, blog.severity, blog.at) == ("grouped", "blog", "critical", 2.0)
    assert blog.message == "Tasks fail.\nRolled back."
    assert [p.message for p in blog.parts] == ["Tasks fail.", "Rolled back."]
    # A later alert about blog opens a new window.
    grouper.add(alert("blog", "Again.", "info"), now=111.0)
    assert [a.message for a in grouper.drain()] == ["Other app.", "Again."]
    assert len(grouper) == 0


def test_merge_of_one_alert_is_the_alert_itself() -> None:
    single = alert("blog", "Alone.")
    assert merge([single]) is single
    with pytest.raises(ValueError):
        merge([])


# --- sentences and small helpers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("task: non-zero exit (137): dockerexec: unhealthy container", "failed its healthcheck"),
        ("task: non-zero exit (2)", "exited with code 2"),
        ("No such image: registry.example/secret-path:1", "found no image on its node"),
        ("invalid mount config for type \"bind\": bind source path does not exist: /srv/x",
         "could not mount its volumes"),
        ("something /etc/private happened", "failed (its logs tell why)"),
        (None, "failed (its logs tell why)"),
    ],
)
def test_task_errors_become_room_safe_reasons(error: str | None, reason: str) -> None:
    assert failure_reason(error) == reason


def test_small_helpers() -> None:
    assert (duration(300), duration(90), duration(7.5)) == ("5 min", "90 s", "7.5 s")
    assert [backoff_delay(n, 1.0, 60.0) for n in range(9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert parse_timestamp("2024-05-01T12:00:00.123456789Z") == 1714564800.123456
    assert parse_timestamp("2024-05-01T14:00:00+02:00") == 1714564800.0
    assert parse_timestamp("garbage") is None
    with pytest.raises(ValueError):
        WatchTimings(failure_threshold=0)


def test_recent_failures_counts_failed_and_rejected_tasks_in_the_window() -> None:
    services = [{"ID": "s1", "Spec": {"Name": "blog_app"}}]

    def task(state: str, stamp: str, err: str | None = None, service: str = "s1") -> dict[str, object]:
        return {"ServiceID": service, "Status": {"State": state, "Timestamp": stamp, "Err": err}}

    tasks = [
        task("failed", "2024-05-01T12:00:00Z", "old"),  # before the window
        task("failed", "2024-05-01T12:10:00Z", "first"),
        task("rejected", "2024-05-01T12:11:00.5Z", "newest"),
        task("shutdown", "2024-05-01T12:12:00Z"),  # a normal end
        task("failed", "2024-05-01T12:12:00Z", "other", service="gone"),
    ]
    since = parse_timestamp("2024-05-01T12:05:00Z")
    assert since is not None
    assert recent_failures(services, tasks, since) == {
        "blog_app": TaskFailures("blog_app", 2, "newest", 1714565460.5)
    }


def test_snapshot_lines_name_servers_and_problems() -> None:
    tracker = ServerTracker("srv", TIMINGS)
    tracker.observe(view(1.0, service(update_state="paused")))
    lines = WatchSnapshot(servers=(tracker.snapshot(),), pending_alerts=0).lines()
    assert lines == [
        "srv: reachable, 1 apps, 1 nodes, 1 problems",
        "  critical: The update of service app of blog on server srv is paused after a "
        "failure: it needs a fix or a rollback.",
    ]
    assert WatchSnapshot(servers=(), pending_alerts=0).lines() == ["No server is being watched."]
