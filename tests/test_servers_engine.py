"""DockerEngine contract on the REAL swarm, through the local socket and through the SSH tunnel.

Each test deploys its own uniquely named stack (removed afterwards by the `stack_name` fixture).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from coopbot.errors import DockerError, NotFound
from coopbot.servers import ConvergenceProgress, DockerEngine
from tests.harness.swarm import STACK_LABEL, AppImages, docker

COMPOSE = """\
version: "3.8"
services:
  app:
    image: ${IMAGE}
    environment:
      - GREETING=${GREETING}
    volumes:
      - data:/data
    secrets:
      - db_password
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]
      interval: 1s
      timeout: 1s
      retries: 2
      start_period: 3s
    stop_grace_period: 2s
    deploy:
      labels:
        - "coop-cloud.${STACK_NAME}.version=${VERSION}"
        - "coopbot.test.env=${COOPBOT_TEST_BOT_ENV:-not-passed}"
      update_config:
        failure_action: rollback
        order: start-first
        monitor: 5s
      rollback_config:
        order: start-first
        monitor: 1s
volumes:
  data:
secrets:
  db_password:
    external: true
    name: ${STACK_NAME}_db_password_v1
"""


def create_secret(stack: str) -> str:
    name = f"{stack}_db_password_v1"
    docker("secret", "create", name, "-", input=b"correct horse battery staple")
    return name


async def deploy(engine: DockerEngine, stack: str, workdir: Path, image: str) -> None:
    (workdir / "compose.yml").write_text(COMPOSE)
    env = {
        "IMAGE": image,
        "STACK_NAME": stack,
        "VERSION": image.rsplit(":", 1)[1],
        "GREETING": "hello from the app env",
    }
    await engine.stack_deploy(stack, [Path("compose.yml")], env, workdir)


async def test_info_reports_the_swarm(docker_engine: DockerEngine) -> None:
    info = await docker_engine.info()
    assert info.server == docker_engine.name
    assert info.swarm_role == "manager"
    assert info.docker_version == docker("version", "--format", "{{.Server.Version}}").strip()
    assert info.api_version == "1.41"
    assert info.node_count >= 1
    assert info.node_states.get("ready", 0) >= 1
    assert any(node.leader and node.role == "manager" for node in info.nodes)
    assert info.stack_count == len(docker("stack", "ls", "--format", "{{.Name}}").split())


async def test_lifecycle_deploy_inspect_update_remove(
    docker_engine: DockerEngine,
    stack_name: str,
    test_images: AppImages,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The bot's own environment must never reach the CLI (it may hold tokens).
    monkeypatch.setenv("COOPBOT_TEST_BOT_ENV", "leaked-from-the-bot")
    secret = create_secret(stack_name)
    seen: list[ConvergenceProgress] = []

    async def progress(update: ConvergenceProgress) -> None:
        seen.append(update)

    await deploy(docker_engine, stack_name, tmp_path, test_images.v1)
    result = await docker_engine.wait_converged(stack_name, timeout=60, progress=progress, poll=0.3)

    assert result.ok, result.failures
    assert not result.timed_out and not result.failures
    [app] = result.services
    assert (app.name, app.short_name, app.stack) == (f"{stack_name}_app", "app", stack_name)
    assert app.image == test_images.v1
    assert (app.replicas_desired, app.replicas_running, app.replicas_updated) == (1, 1, 1)
    assert app.health == "healthy"
    assert app.update_state is None  # created, never updated
    assert app.labels[f"coop-cloud.{stack_name}.version"] == "v1"
    assert app.labels["coopbot.test.env"] == "not-passed"
    # On a loaded machine the task may already be healthy at the first poll; otherwise the
    # wait must have seen it pending while its healthcheck was still starting.
    assert seen and seen[-1].pending == ()
    assert all(update.pending in ((), ("app",)) for update in seen)
    if seen[0].pending:
        assert any(s.health == "starting" for update in seen for s in update.services)

    assert await docker_engine.services(stack_name) == list(result.services)
    assert (await docker_engine.stacks())[stack_name] == list(result.services)
    assert secret in await docker_engine.secret_names()
    assert {f"{stack_name}_default", "ingress"} <= await docker_engine.network_names()
    assert {test_images.v1, test_images.v2, test_images.v3} <= await docker_engine.image_tags()
    assert await docker_engine.stack_volumes(stack_name) == [f"{stack_name}_data"]
    logs = await docker_engine.service_logs(app.name, tail=50)
    assert "coopbot-test v1 starting" in logs
    assert len(await docker_engine.service_logs(app.name, tail=1)) == 1

    await deploy(docker_engine, stack_name, tmp_path, test_images.v2)
    upgraded = await docker_engine.wait_converged(stack_name, timeout=60, poll=0.3)
    assert upgraded.ok, upgraded.failures
    assert upgraded.services[0].image == test_images.v2
    assert upgraded.services[0].update_state == "completed"

    await docker_engine.stack_remove(stack_name)
    assert await docker_engine.services(stack_name) == []
    assert stack_name not in await docker_engine.stacks()
    assert f"{stack_name}_default" not in await docker_engine.network_names()
    assert not docker("ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack_name}")
    assert await docker_engine.stack_volumes(stack_name) == [
        f"{stack_name}_data"
    ]  # data stays, as with abra


async def test_unhealthy_update_is_rolled_back_and_reported(
    docker_engine: DockerEngine, stack_name: str, test_images: AppImages, tmp_path: Path
) -> None:
    create_secret(stack_name)
    await deploy(docker_engine, stack_name, tmp_path, test_images.v1)
    assert (await docker_engine.wait_converged(stack_name, timeout=60, poll=0.3)).ok

    await deploy(docker_engine, stack_name, tmp_path, test_images.v3)
    result = await docker_engine.wait_converged(stack_name, timeout=90, poll=0.3)

    assert not result.ok and not result.timed_out
    assert result.rolled_back
    [failure] = result.failures
    assert (failure.service, failure.short_name) == (f"{stack_name}_app", "app")
    assert failure.update_state == "rollback_completed"
    assert failure.reason == "its update failed and was rolled back"
    assert failure.task_error is not None and "unhealthy" in failure.task_error
    assert any("v3 broken on purpose" in line for line in failure.raw_log_tail)
    # The failing task's own lines: the old, healthy v1 task's say nothing about the failure.
    assert not any("coopbot-test v1" in line for line in failure.raw_log_tail)
    [app] = result.services
    assert app.image == test_images.v1  # swarm put the previous version back
    assert app.replicas_running == 1

    # A new deploy resets the update status: the old rollback must not read as this failure.
    await deploy(docker_engine, stack_name, tmp_path, test_images.v2)
    again = await docker_engine.wait_converged(stack_name, timeout=60, poll=0.3)
    assert again.ok, again.failures
    assert again.services[0].image == test_images.v2


async def test_first_deploy_of_a_broken_image_times_out_with_the_reason(
    docker_engine: DockerEngine, stack_name: str, test_images: AppImages, tmp_path: Path
) -> None:
    create_secret(stack_name)
    await deploy(docker_engine, stack_name, tmp_path, test_images.v3)  # nothing to roll back to
    result = await docker_engine.wait_converged(stack_name, timeout=6, poll=0.5)

    assert not result.ok and result.timed_out
    [failure] = result.failures
    assert failure.reason == "not converged after 6 s: 0 of 1 tasks running the new version"
    assert result.services[0].health in ("starting", "unhealthy")


async def test_a_new_service_whose_image_is_missing_fails_in_seconds(
    docker_engine: DockerEngine, stack_name: str, tmp_path: Path
) -> None:
    """A first deploy has no update status to fail; the rejected tasks say it instead."""
    create_secret(stack_name)
    await deploy(docker_engine, stack_name, tmp_path, "coopbot-test/never-built:v9")
    result = await docker_engine.wait_converged(stack_name, timeout=240, poll=0.5)

    assert not result.ok and not result.timed_out
    assert result.elapsed < 90, f"took {result.elapsed:.0f} s, as long as a timeout"
    [failure] = result.failures
    assert failure.reason.startswith("swarm rejected ") and failure.reason.endswith(" tasks")
    assert failure.task_error, "the swarm's own reason is kept for the answer"


UNPLACEABLE = """
version: "3.8"
services:
  app:
    image: ${IMAGE}
    deploy:
      placement:
        constraints:
          - node.labels.coopbot-test-no-such-label == yes
"""


async def test_a_service_no_node_can_take_fails_after_a_grace_period(
    docker_engine: DockerEngine, stack_name: str, tmp_path: Path, test_images: AppImages
) -> None:
    (tmp_path / "compose.yml").write_text(UNPLACEABLE)
    await docker_engine.stack_deploy(stack_name, [Path("compose.yml")],
                                     {"IMAGE": test_images.v1}, tmp_path)
    result = await docker_engine.wait_converged(stack_name, timeout=240, poll=0.5)

    assert not result.ok and not result.timed_out and result.elapsed < 60
    [failure] = result.failures
    assert failure.reason.startswith("no node could take its tasks for ")
    assert "no suitable node" in (failure.task_error or "")


async def test_failed_deploy_message_is_short_and_scrubbed(
    docker_engine: DockerEngine, stack_name: str, tmp_path: Path
) -> None:
    (tmp_path / "compose.yml").write_text(COMPOSE)
    env = {"IMAGE": "coopbot-test/app:v1", "STACK_NAME": "hunter2-s3cret-stack", "VERSION": "v1"}
    with pytest.raises(DockerError) as caught:
        await docker_engine.stack_deploy(
            stack_name, [Path("compose.yml")], {**env, "GREETING": "x"}, tmp_path
        )
    message = str(caught.value)
    assert message.startswith(f"`docker stack deploy` failed on server {docker_engine.name}: ")
    assert "secret not found: ${STACK_NAME}_db_password_v1" in message
    assert "hunter2" not in message and "hunter2" not in (caught.value.detail or "")
    assert str(tmp_path) not in message
    assert "\n" not in message


async def test_logs_of_an_unknown_service_is_not_found(docker_engine: DockerEngine) -> None:
    with pytest.raises(NotFound) as caught:
        await docker_engine.service_logs("coopbot_no_such_service")
    assert str(caught.value) == (
        "could not read the logs of service coopbot_no_such_service on server "
        f"{docker_engine.name}: it does not exist"
    )


SLOW_TO_STOP = """\
version: "3.8"
services:
  app:
    image: {image}
    # Ignores SIGTERM, so its task holds the stack's network until the grace period ends.
    command: ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]
    stop_grace_period: 6s
    networks: [internal]
networks:
  internal:
"""


async def test_remove_waits_until_a_task_slow_to_stop_is_gone(
    docker_engine: DockerEngine, stack_name: str, test_images: AppImages, tmp_path: Path
) -> None:
    compose = tmp_path / "compose.yml"
    compose.write_text(SLOW_TO_STOP.format(image=test_images.v1))
    await docker_engine.stack_deploy(stack_name, [compose], {}, tmp_path)
    assert (await docker_engine.wait_converged(stack_name, 60)).ok
    await docker_engine.stack_remove(stack_name)
    label = f"label={STACK_LABEL}={stack_name}"
    assert docker("ps", "-aq", "--filter", label).split() == []
    assert docker("network", "ls", "-q", "--filter", label).split() == []


async def test_remove_finishes_when_the_cli_stopped_at_a_network_still_in_use(
    docker_engine: DockerEngine, stack_name: str, test_images: AppImages, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Seen in a full run: `docker stack rm` removed the services, then failed on the network a
    # stopping task still used. Here the first `stack rm` removes only the services and fails
    # with the daemon's words; the real engine and CLI do the rest.
    compose = tmp_path / "compose.yml"
    compose.write_text(SLOW_TO_STOP.format(image=test_images.v1))
    await docker_engine.stack_deploy(stack_name, [compose], {}, tmp_path)
    assert (await docker_engine.wait_converged(stack_name, 60)).ok
    real_cli = docker_engine._cli
    calls: list[list[str]] = []

    async def cli(args: list[str], *rest: object, **options: object) -> object:
        calls.append(list(args))
        if args[:2] == ["stack", "rm"] and len(calls) == 1:
            docker("service", "rm", f"{stack_name}_app")
            raise DockerError(
                "`docker stack rm` failed on server local: Failed to remove network x: Error "
                "response from daemon: rpc error: code = FailedPrecondition desc = network x "
                "is in use by task y")
        return await real_cli(args, *rest, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(docker_engine, "_cli", cli)
    await docker_engine.stack_remove(stack_name)
    assert [c[:2] for c in calls] == [["stack", "rm"], ["stack", "rm"]]
    label = f"label={STACK_LABEL}={stack_name}"
    assert docker("network", "ls", "-q", "--filter", label).split() == []
