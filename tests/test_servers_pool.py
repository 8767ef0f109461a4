"""ServerPool on REAL servers: status from all in parallel, a dead server never delays the rest."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Iterator

import pytest

from coopbot.errors import ConfigError, NotFound, ServerUnreachable
from coopbot.servers import ServerInfo, ServerPool, ServerSpec


@pytest.fixture
def silent_ports() -> Iterator[list[int]]:
    """Eight ports that accept TCP connections and never answer SSH."""
    listeners = [socket.socket() for _ in range(8)]
    try:
        for listener in listeners:
            listener.bind(("127.0.0.1", 0))
            listener.listen(16)
        yield [int(listener.getsockname()[1]) for listener in listeners]
    finally:
        for listener in listeners:
            listener.close()


async def test_info_all_answers_for_good_servers_while_dead_ones_time_out(
    local_spec: ServerSpec, ssh_spec: ServerSpec, silent_ports: list[int]
) -> None:
    # More dead servers than the default thread pool has threads (2 cores: 6): each server has
    # its own threads, so the live ones are not queued behind blocked connects.
    dead = [
        dataclasses.replace(ssh_spec, name=f"dead{i}", port=port, connect_timeout=30)
        for i, port in enumerate(silent_ports)
    ]
    pool = ServerPool([local_spec, ssh_spec, *dead])
    lags: list[float] = []

    async def measure_loop_lag() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.05)
            lags.append(time.monotonic() - before - 0.05)

    async def timed_info(name: str) -> float:
        started = time.monotonic()
        await pool.get(name).info()
        return time.monotonic() - started

    ticker = asyncio.create_task(measure_loop_lag())
    try:
        started = time.monotonic()
        results, local_time, ssh_time = await asyncio.gather(
            pool.info_all(timeout=2.0), timed_info("local"), timed_info("viassh")
        )
        elapsed = time.monotonic() - started
    finally:
        ticker.cancel()
        await pool.close()

    assert list(results) == ["local", "viassh", *(spec.name for spec in dead)]
    assert isinstance(results["local"], ServerInfo) and isinstance(results["viassh"], ServerInfo)
    assert results["local"].swarm_role == results["viassh"].swarm_role == "manager"
    for spec in dead:
        error = results[spec.name]
        assert isinstance(error, ServerUnreachable)
        assert str(error) == f"server {spec.name} unreachable: no answer within 2 s"
    assert local_time < 1.0 and ssh_time < 1.5
    assert 1.9 < elapsed < 3.0
    assert max(lags) < 0.25  # nothing blocked the event loop


async def test_info_all_reports_each_failure_with_its_own_reason(
    local_spec: ServerSpec, ssh_spec: ServerSpec
) -> None:
    refused = dataclasses.replace(ssh_spec, name="refused", host="127.0.0.2", port=9)
    gone = dataclasses.replace(local_spec, name="nosocket", socket="/nonexistent/docker.sock")
    pool = ServerPool([refused, gone, local_spec])
    try:
        results = await pool.info_all(timeout=5)
    finally:
        await pool.close()
    assert str(results["refused"]) == "server refused unreachable: connection refused"
    assert (
        str(results["nosocket"]) == "server nosocket unreachable: its Docker socket does not exist"
    )
    assert isinstance(results["local"], ServerInfo)


async def test_get_is_lazy_and_unknown_names_are_refused(local_spec: ServerSpec) -> None:
    pool = ServerPool([local_spec])
    try:
        assert pool.names == ["local"]
        assert pool.get("local") is pool.get("local")
        with pytest.raises(NotFound) as caught:
            pool.get("elsewhere")
        assert str(caught.value) == "unknown server elsewhere (known: local)"
    finally:
        await pool.close()


def test_duplicate_server_names_are_a_config_error(local_spec: ServerSpec) -> None:
    with pytest.raises(ConfigError) as caught:
        ServerPool([local_spec, local_spec])
    assert caught.value.problems == ["servers.local is defined twice"]
