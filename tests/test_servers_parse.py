"""Engine API dicts -> ServiceState / ServerSpec validation: the pure parts, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from coopbot.errors import ConfigError
from coopbot.servers import ServerSpec
from coopbot.servers.swarm_parse import _newest_failed, service_state, timestamp_key


def task(state: str, desired: str = "running", err: str | None = None, at: str = "") -> Any:
    status: dict[str, Any] = {"State": state, "Timestamp": at}
    if err:
        status["Err"] = err
    return {"DesiredState": desired, "Status": status}


def service(healthcheck: bool = True, update: str | None = None) -> Any:
    container: dict[str, Any] = {"Image": "coopbot-test/app:v1@sha256:abc"}
    if healthcheck:
        container["Healthcheck"] = {"Test": ["CMD", "true"]}
    svc: dict[str, Any] = {
        "ID": "s1",
        "Spec": {
            "Name": "blog_app",
            "Labels": {"com.docker.stack.namespace": "blog"},
            "TaskTemplate": {"ContainerSpec": container},
            "Mode": {"Replicated": {"Replicas": 2}},
        },
    }
    if update:
        svc["UpdateStatus"] = {"State": update, "Message": "m"}
    return svc


@pytest.mark.parametrize(
    ("tasks", "healthcheck", "health"),
    [
        ([task("running"), task("running")], True, "healthy"),
        ([task("running"), task("starting")], True, "starting"),
        (
            [task("running"), task("failed", "shutdown", "dockerexec: unhealthy container")],
            True,
            "unhealthy",
        ),
        ([task("running"), task("running")], False, "none"),
    ],
)
def test_health_follows_task_states(tasks: list[Any], healthcheck: bool, health: str) -> None:
    assert service_state(service(healthcheck), tasks, tasks[:1]).health == health


def test_service_state_fields() -> None:
    state = service_state(
        service(update="rollback_completed"),
        [
            task("running"),
            task("failed", "shutdown", "old error", at="2026-01-01T10:00:00.9Z"),
            task("failed", "shutdown", "new error", at="2026-01-01T10:00:00.10000001Z"),
            task("failed", "shutdown", "newest error", at="2026-01-01T10:00:01Z"),
        ],
        [task("running")],
    )
    assert (state.name, state.short_name, state.stack) == ("blog_app", "app", "blog")
    assert state.image == "coopbot-test/app:v1"
    assert (state.replicas_desired, state.replicas_running, state.replicas_updated) == (2, 1, 1)
    assert state.last_error == "newest error"
    assert state.update_failed and not state.converged


def test_rejected_and_unplaceable_tasks_count_only_for_the_current_spec() -> None:
    old = task("rejected", "shutdown", "No such image: app:v0", at="2026-01-01T10:00:00Z")
    new = [task("rejected", "shutdown", "No such image: app:v9", at=f"2026-01-01T10:00:0{n}Z")
           for n in (1, 2)]
    state = service_state(service(), [old, *new], new)
    assert (state.rejections, state.current_error, state.unplaceable) == (
        2, "No such image: app:v9", False)
    waiting = task("pending", err="no suitable node (scheduling constraints not satisfied)")
    state = service_state(service(), [old, waiting], [waiting])
    assert state.unplaceable and state.rejections == 0
    assert not service_state(service(), [waiting], []).unplaceable  # an old spec's task


def test_timestamps_with_trimmed_nanoseconds_sort_by_time() -> None:
    stamps = ["2026-01-01T10:00:00.9Z", "2026-01-01T10:00:00.10000001Z", "2026-01-01T10:00:00Z"]
    assert sorted(stamps, key=timestamp_key) == [stamps[2], stamps[1], stamps[0]]


def test_ssh_spec_needs_host_user_key_and_known_hosts() -> None:
    with pytest.raises(ConfigError) as caught:
        ServerSpec(name="s1", kind="ssh", port=0)
    assert caught.value.problems == [
        "servers.s1.host is required for an ssh server",
        "servers.s1.user is required for an ssh server",
        "servers.s1.key_file is required for an ssh server",
        "servers.s1.known_hosts_file is required for an ssh server",
        "servers.s1.port must be between 1 and 65535",
    ]
    assert ServerSpec(name="here").address == "/var/run/docker.sock"


def test_the_failed_task_is_the_newest_failed_or_rejected_one_of_any_spec() -> None:
    def task(task_id: str, state: str, stamp: str) -> dict[str, Any]:
        return {"ID": task_id, "DesiredState": "shutdown",
                "Status": {"State": state, "Timestamp": stamp}}

    tasks = [task("old", "failed", "2024-05-01T12:00:00.5Z"),
             task("new", "rejected", "2024-05-01T12:00:01.25Z"),
             task("done", "shutdown", "2024-05-01T12:00:09Z")]
    assert _newest_failed(tasks) == "new"
    assert _newest_failed([task("done", "complete", "2024-05-01T12:00:09Z")]) is None
