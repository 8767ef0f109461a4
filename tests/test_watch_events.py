"""DockerEngine.events() on the REAL engine: events arrive (also through the SSH tunnel), a
dropped connection ends the stream with ServerUnreachable, closing it ends its thread."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path

import pytest

from coopbot.errors import ServerUnreachable
from coopbot.servers import DockerEngine, ServerSpec
from coopbot.servers.events import Event, EventStream
from tests.harness.swarm import AppImages, docker


async def next_service_event(stream: EventStream, name: str, timeout: float = 15) -> Event:
    async def find() -> Event:
        async for event in stream:
            if event.get("Type") == "service" and event["Actor"]["Attributes"].get("name") == name:
                return event
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(find(), timeout)


def reader_threads(server: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"docker-events-{server}"]


async def test_events_arrive_through_the_tunnel_and_a_drop_ends_the_stream(
    ssh_spec: ServerSpec, stack_name: str, test_images: AppImages
) -> None:
    engine = DockerEngine(ssh_spec)
    service = f"{stack_name}_probe"
    try:
        async with engine.events() as stream:
            docker("service", "create", "--detach", "--name", service, "--label",
                   f"com.docker.stack.namespace={stack_name}", test_images.v1)
            event = await next_service_event(stream, service)
            assert event["Action"] == "create"

            assert engine.tunnel is not None
            engine.tunnel.drop_transport()
            with pytest.raises(ServerUnreachable) as caught:
                await asyncio.wait_for(next_service_event(stream, "never"), 15)
            assert str(caught.value) == (
                "server viassh unreachable: the connection to Docker dropped"
            )
            with pytest.raises(ServerUnreachable):  # and stays ended
                await stream.__anext__()

        async with engine.events() as again:  # reconnects the tunnel
            docker("service", "update", "--detach", "--label-add", "x=1", service)
            assert (await next_service_event(again, service))["Action"] == "update"
    finally:
        await engine.close()


async def test_closing_the_stream_ends_it_and_its_thread(local_spec: ServerSpec) -> None:
    engine = DockerEngine(local_spec)
    try:
        stream = engine.events()
        await stream.open()
        assert len(reader_threads("local")) >= 1
        stream.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(stream.__anext__(), 5)
        for _ in range(50):
            if not any(t for t in reader_threads("local") if t.is_alive()):
                break
            await asyncio.sleep(0.1)
        assert not reader_threads("local")
    finally:
        await engine.close()


async def test_missing_socket_is_unreachable(local_spec: ServerSpec, tmp_path: Path) -> None:
    spec = dataclasses.replace(local_spec, name="nosocket", socket=str(tmp_path / "none.sock"))
    engine = DockerEngine(spec)
    try:
        with pytest.raises(ServerUnreachable) as caught:
            async with engine.events():
                pass
    finally:
        await engine.close()
    assert str(caught.value) == "server nosocket unreachable: its Docker socket does not exist"
