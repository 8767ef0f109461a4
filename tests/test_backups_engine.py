"""The engine's container capabilities backups need, on the REAL swarm, through the local
socket and through the SSH tunnel: helpers run to completion, execs, mounts, scaling."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from coopbot.backups.password import read_password
from coopbot.backups.restic import Restic, RestoreFailed
from coopbot.config import BackupConfig
from coopbot.errors import DockerError
from coopbot.servers import DockerEngine
from coopbot.servers.containers import HELPER_LABEL, Bind
from tests.harness.backups import ResticRepository
from tests.harness.swarm import AppImages, docker

pytestmark = pytest.mark.real

COMPOSE = """\
version: "3.8"
services:
  app:
    image: {image}
    command: ["sh", "-c", "echo hello > /data/greeting; exec httpd -f -p 80 -h /www"]
    environment:
      - COLOUR=teal
    volumes:
      - data:/data
      - logs:/var/log/app:ro
    stop_grace_period: 1s
volumes:
  data:
  logs:
"""


def leftover_helpers(label: str) -> list[str]:
    return docker("ps", "-aq", "--filter", f"label={HELPER_LABEL}={label}").split()


async def test_helper_runs_to_completion_with_separate_streams(
    docker_engine: DockerEngine, restic_image: str, tmp_path: Path
) -> None:
    label = f"test {uuid.uuid4().hex[:8]}"
    repo = tmp_path / "repo"
    run = await docker_engine.containers.run_helper(
        restic_image, entrypoint=["restic"], args=["version"], env={}, binds=[],
        timeout=60, label=label)
    assert run.exit_code == 0 and run.stdout.startswith("restic 0.14") and run.stderr == ""
    run = await docker_engine.containers.run_helper(
        restic_image, entrypoint=["restic"], args=["cat", "config"],
        env={"RESTIC_REPOSITORY": "/repo", "RESTIC_PASSWORD": "pw"},
        binds=[Bind(str(repo), "/repo", read_only=False)], timeout=60, label=label)
    assert run.exit_code == 1
    assert "Is there a repository at the following location?" in run.stderr
    assert run.stdout == ""
    assert leftover_helpers(label) == []


async def test_helper_past_its_timeout_is_removed(
    docker_engine: DockerEngine, restic_image: str
) -> None:
    label = f"test {uuid.uuid4().hex[:8]}"
    with pytest.raises(DockerError, match="did not finish within 1 s"):
        await docker_engine.containers.run_helper(restic_image, entrypoint=["sleep"], args=["30"], env={},
                                       binds=[], timeout=1, label=label)
    assert leftover_helpers(label) == []


async def test_mounts_exec_and_scaling(
    docker_engine: DockerEngine, stack_name: str, test_images: AppImages, tmp_path: Path
) -> None:
    compose = tmp_path / "compose.yml"
    compose.write_text(COMPOSE.format(image=test_images.v1))
    await docker_engine.stack_deploy(stack_name, [compose], {}, tmp_path)
    assert (await docker_engine.wait_converged(stack_name, 60)).ok

    [service] = await docker_engine.containers.service_mounts(stack_name)
    assert service.short_name == "app" and service.replicated and service.replicas == 1
    assert {(m.source, m.target, m.read_only) for m in service.mounts} == {
        (f"{stack_name}_data", "/data", False), (f"{stack_name}_logs", "/var/log/app", True)}

    task = await docker_engine.containers.running_task(service.name)
    assert task is not None
    result = await docker_engine.containers.exec_in(
        task.container_id, ["sh", "-c", 'cat /data/greeting; echo "$COLOUR $EXTRA" >&2; exit 3'],
        env={"EXTRA": "given"}, timeout=30)
    assert result.exit_code == 3
    assert "hello" in result.output and "teal given" in result.output

    assert await docker_engine.scale_service(service.name, 0) == 1
    await docker_engine.containers.wait_volumes_unused([f"{stack_name}_data"], timeout=30)
    assert await docker_engine.containers.running_task(service.name) is None
    assert f"{stack_name}_data" in await docker_engine.containers.volume_names()
    assert await docker_engine.scale_service(service.name, 1) == 0
    assert (await docker_engine.wait_converged(stack_name, 60)).ok
    assert await docker_engine.containers.running_task(service.name) is not None


async def test_a_failed_restore_says_whether_the_volume_was_emptied(
    docker_engine: DockerEngine, restic_image: str, restic_repository: ResticRepository
) -> None:
    """Emptying and restoring share one helper container: a restore that fails after the
    emptying must still be reported as an emptied volume (restore.py tells the member)."""
    config = BackupConfig(repository=str(restic_repository.path),
                          password_file=restic_repository.password_file,
                          helper_image=restic_image)
    restic = Restic(docker_engine.name, docker_engine, config, read_password)
    volume = f"coopbot-test-{uuid.uuid4().hex[:8]}"
    docker("volume", "create", volume)
    bind = Bind(volume, "/backup/v", read_only=False)

    async def in_volume(script: str) -> str:
        run = await docker_engine.containers.run_helper(restic_image, entrypoint=["sh"],
                                             args=["-c", script], env={}, binds=[bind],
                                             timeout=60)
        assert run.exit_code == 0, run.stderr
        return run.stdout

    try:
        await in_volume("echo data > /backup/v/file")
        await restic.ensure_repository()
        with pytest.raises(RestoreFailed) as failed:
            await restic.replace("0123abcd", bind, ["/backup/v/"], "/backup/v")
        assert failed.value.emptied
        assert str(failed.value).startswith("could not restore on server")
        assert restic_repository.password not in f"{failed.value} {failed.value.detail}"
        assert await in_volume("ls -A /backup/v") == ""
    finally:
        docker("volume", "rm", "-f", volume)


async def test_helpers_left_by_a_crashed_run_are_removed_but_running_ones_kept(
    docker_engine: DockerEngine, restic_image: str
) -> None:
    value = f"test {uuid.uuid4().hex[:8]}"
    label = f"{HELPER_LABEL}={value}"
    created = docker("create", "--label", label, restic_image, "version").strip()[:12]
    docker("run", "--label", label, restic_image, "version")
    [exited] = docker("ps", "-aq", "--filter", f"label={label}", "--filter",
                      "status=exited").split()
    running = docker("run", "-d", "--label", label, "--entrypoint", "sleep", restic_image,
                     "60").strip()[:12]
    try:
        # Finished only just now: a live bot may still be reading them.
        assert await docker_engine.containers.remove_abandoned_helpers(older_than=3600) == 0
        assert sorted(leftover_helpers(value)) == sorted([created, exited, running])
        assert await docker_engine.containers.remove_abandoned_helpers(older_than=0) >= 2
        assert leftover_helpers(value) == [running]
    finally:
        docker("rm", "-f", running, created, exited, check=False)
