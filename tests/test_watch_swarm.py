"""The swarm watcher on the REAL swarm, through the local socket and through the SSH tunnel.

The swarm is shared with other tests running at the same time: every assertion looks only at
alerts about this test's own stack (or this test's own server entry).
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from coopbot.servers import DockerEngine, ServerInfo, ServerPool, ServerSpec
from coopbot.watch import VersionChange, WatchTimings
from tests.harness.swarm import AppImages, docker
from tests.harness.watch import AlertLog, OwnSshd, deploy_watch_stack, watching

# Readings every minute only: an alert within seconds proves the events got through.
EVENTS_ONLY = WatchTimings(group_window=1.0, debounce=0.2, poll_interval=60.0)


@pytest.fixture(params=["local", "ssh"])
def watch_spec(request: pytest.FixtureRequest, local_spec: ServerSpec,
               ssh_spec: ServerSpec) -> ServerSpec:
    return local_spec if request.param == "local" else ssh_spec


def set_label(service: str, label: str) -> None:
    docker("service", "update", "--detach", "--label-add", label, service)


async def test_version_change_made_with_the_docker_cli_is_announced_once(
    watch_spec: ServerSpec, stack_name: str, test_images: AppImages
) -> None:
    deploy_watch_stack(stack_name, test_images.v1, "1.2.0+v1")
    log = AlertLog()
    async with watching([watch_spec], log, timings=EVENTS_ONLY) as watcher:
        [server] = watcher.snapshot().servers
        assert server.reachable is True and server.apps[stack_name] == "1.2.0+v1"

        set_label(f"{stack_name}_app", f"coop-cloud.{stack_name}.version=1.3.0+v2")
        await log.wait_for(lambda: bool(log.about(stack_name)), timeout=15)
        # More events about the same service, more readings: the alert is not repeated.
        set_label(f"{stack_name}_app", "coopbot.test.unrelated=1")
        await asyncio.sleep(EVENTS_ONLY.group_window + 2)
        assert watcher.snapshot().servers[0].apps[stack_name] == "1.3.0+v2"

    [alert] = log.about(stack_name)
    assert (alert.kind, alert.server, alert.app, alert.severity) == (
        "version", watch_spec.name, stack_name, "warning"
    )
    assert alert.message == (
        f"App {stack_name} on server {watch_spec.name} changed from 1.2.0+v1 to 1.3.0+v2 "
        "outside coopbot."
    )
    assert (alert.state, alert.recovered, alert.initial, alert.parts) == (
        "1.3.0+v2", False, False, ()
    )


async def test_version_change_during_a_coopbot_operation_is_not_announced(
    local_spec: ServerSpec, stack_name: str, test_images: AppImages
) -> None:
    deploy_watch_stack(stack_name, test_images.v1, "1.2.0+v1")
    asked: list[VersionChange] = []

    async def coopbot_is_deploying(change: VersionChange) -> bool:
        asked.append(change)
        return change.app == stack_name

    log = AlertLog()
    async with watching([local_spec], log, timings=EVENTS_ONLY,
                        is_coopbot_operation=coopbot_is_deploying) as watcher:
        set_label(f"{stack_name}_app", f"coop-cloud.{stack_name}.version=1.3.0+v2")
        await log.wait_for(lambda: any(c.app == stack_name for c in asked), timeout=15)
        await asyncio.sleep(EVENTS_ONLY.group_window + 1)
        assert watcher.snapshot().servers[0].apps[stack_name] == "1.3.0+v2"

    assert log.about(stack_name) == []
    [change] = [c for c in asked if c.app == stack_name]
    assert (change.server, change.old, change.new) == ("local", "1.2.0+v1", "1.3.0+v2")
    assert change.last_seen <= change.at


async def test_failed_update_is_announced_grouped_and_not_repeated(
    local_spec: ServerSpec, stack_name: str, test_images: AppImages
) -> None:
    deploy_watch_stack(stack_name, test_images.v1, "1.0.0+v1")
    # One failed task is enough here, so both the failure and the rollback are announced;
    # the window is long enough to hold both.
    timings = WatchTimings(group_window=8.0, debounce=0.2, poll_interval=2.0,
                           failure_threshold=1)
    log = AlertLog()
    async with watching([local_spec], log, timings=timings) as watcher:
        docker("service", "update", "--detach", "--image", test_images.v3, f"{stack_name}_app")
        await log.wait_for(lambda: bool(log.about(stack_name)), timeout=90)
        await asyncio.sleep(5)  # two more readings at least: nothing new to say
        problems = [p for p in watcher.snapshot().problems if p.app == stack_name]

    [alert] = log.about(stack_name)
    service = f"service app of {stack_name} on server local"
    assert (alert.kind, alert.app, alert.severity, alert.recovered) == (
        "grouped", stack_name, "warning", False
    )
    assert {part.kind for part in alert.parts} == {"update", "failing"}
    assert set(alert.message.splitlines()) == {
        f"The update of {service} failed and was rolled back.",
        f"Tasks of {service} failed once in the last 5 min; the latest failed its "
        "healthcheck.",
    }
    assert {p.kind for p in problems} == {"update", "failing"}
    # The daemon's own text stays out of the room: it is only in the engine's result.
    async_engine = DockerEngine(local_spec)
    try:
        failures = await async_engine.task_failures(alert.at - 300)
    finally:
        await async_engine.close()
    assert "unhealthy" in (failures[f"{stack_name}_app"].latest_error or "")
    assert "unhealthy" not in alert.message


async def test_server_going_away_and_coming_back_is_announced_once_each(
    own_sshd: OwnSshd,
) -> None:
    timings = WatchTimings(group_window=0.2, debounce=0.1, poll_interval=2.0,
                           backoff_initial=0.2, backoff_max=1.0)
    log = AlertLog()

    def server_alerts() -> list[tuple[str, bool, str]]:
        return [(a.kind, a.recovered, a.message) for a in log.about(server="flaky")
                if a.app is None and a.node is None]

    async with watching([own_sshd.spec("flaky")], log, timings=timings) as watcher:
        own_sshd.stop()
        await log.wait_for(lambda: bool(server_alerts()), timeout=20)
        await asyncio.sleep(3)  # several failed reconnects meanwhile: still one alert
        [server] = watcher.snapshot().servers
        assert server.reachable is False
        assert [p.kind for p in server.problems][:1] == ["reachability"]

        own_sshd.start()
        await log.wait_for(lambda: len(server_alerts()) == 2, timeout=20)
        await asyncio.sleep(1)
        assert watcher.snapshot().servers[0].reachable is True

    [(kind, recovered, message), back] = server_alerts()
    assert (kind, recovered) == ("reachability", False)
    # The first failed attempt may still meet the dying SSH transport ("Docker is not
    # answering") or already find sshd gone ("connection refused"): one alert either way.
    assert message in (
        "Server flaky is unreachable: connection refused.",
        "Server flaky is unreachable: Docker is not answering.",
    )
    assert back == ("reachability", True, "Server flaky is reachable again.")


async def test_a_connection_that_drops_and_reconnects_at_once_is_not_announced(
    ssh_spec: ServerSpec, stack_name: str, test_images: AppImages
) -> None:
    deploy_watch_stack(stack_name, test_images.v1, "1.0.0+v1")
    spec = dataclasses.replace(ssh_spec, name="blinky")
    pool = ServerPool([spec])
    log = AlertLog()
    async with watching([spec], log, timings=EVENTS_ONLY, pool=pool):
        tunnel = pool.get("blinky").tunnel
        assert tunnel is not None
        tunnel.drop_transport()  # as a network blip would: sshd and Docker are fine
        await asyncio.sleep(1)
        # The watch goes on through a new event stream (readings are a minute apart).
        set_label(f"{stack_name}_app", f"coop-cloud.{stack_name}.version=1.0.1+v1")
        await log.wait_for(lambda: bool(log.about(stack_name)), timeout=15)

    assert [a.kind for a in log.about(server="blinky") if a.app in (None, stack_name)
            and a.node is None] == ["version"]


async def test_background_readings_of_many_servers_take_turns(
    local_spec: ServerSpec, ssh_spec: ServerSpec
) -> None:
    """At start-up the watcher reads every server; it must not read them all at once (each
    reading opens SSH channels and dial-stdio processes that members' commands then queue
    behind), yet every server gets read."""
    in_flight = 0
    most = 0

    class CountingEngine(DockerEngine):
        async def info(self) -> ServerInfo:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            try:
                await asyncio.sleep(0.2)  # hold the slot long enough for the others to pile up
                return await super().info()
            finally:
                in_flight -= 1

    specs = [dataclasses.replace(local_spec if n % 2 else ssh_spec, name=f"turns{n}")
             for n in range(8)]
    pool = ServerPool(specs, engine_factory=CountingEngine, background_slots=3)
    async with watching(specs, AlertLog(), timings=EVENTS_ONLY, pool=pool) as watcher:
        assert all(server.reachable for server in watcher.snapshot().servers)
    assert most == 3, f"{most} servers were read at once (3 slots)"
