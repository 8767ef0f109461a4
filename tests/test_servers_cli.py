"""The docker CLI runner's environment and error sentences (pure parts, plus one real run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coopbot.errors import DockerError
from coopbot.servers.cli import child_env, run_docker, scrub, summary_line


def test_child_env_is_the_app_env_plus_path_home_and_docker_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MATRIX_ACCESS_TOKEN", "syt_secret")
    env = child_env(
        {"DOMAIN": "blog.example.com", "DOCKER_HOST": "tcp://evil:2375", "DOCKER_CONTEXT": "x"},
        "unix:///tmp/t/docker.sock",
    )
    assert set(env) == {"DOMAIN", "PATH", "HOME", "DOCKER_HOST"}
    assert env["DOCKER_HOST"] == "unix:///tmp/t/docker.sock"


def test_scrub_replaces_env_values_longest_first_and_the_work_dir() -> None:
    env = {"DB_PASSWORD": "hunter2hunter2", "PREFIX": "hunter2", "REPLICAS": "1"}
    text = "secret hunter2hunter2 and hunter2 in /srv/recipes/blog/compose.yml, replicas 1"
    assert scrub(text, env, Path("/srv/recipes/blog")) == (
        "secret ${DB_PASSWORD} and ${PREFIX} in compose.yml, replicas 1"
    )


def test_summary_line_skips_notices_and_keeps_the_final_error() -> None:
    stderr = (
        "Since --detach=false was not specified, tasks will be created in the background.\n"
        "In a future release, --detach=false will become the default.\n"
        "Error response from daemon: rpc error: code = InvalidArgument desc = bad spec\n"
    )
    assert summary_line(stderr) == "rpc error: code = InvalidArgument desc = bad spec"
    assert summary_line("") == "no error message"
    assert len(summary_line("x" * 500)) == 200


async def test_run_docker_failure_is_a_scrubbed_docker_error(dockerd: object) -> None:
    with pytest.raises(DockerError) as caught:
        await run_docker(
            ["secret", "inspect", "coopbot-no-such-secret-s3cr3t"],
            server="local",
            docker_host="unix:///var/run/docker.sock",
            timeout=30,
            env={"NAME": "coopbot-no-such-secret-s3cr3t"},
        )
    assert str(caught.value) == (
        "`docker secret inspect` failed on server local: secret ${NAME} not found"
    )
    assert "s3cr3t" not in (caught.value.detail or "")


async def test_run_docker_times_out(dockerd: object) -> None:
    with pytest.raises(DockerError) as caught:
        # `docker events` streams until killed: the runner must cut it off and say so.
        await run_docker(
            ["events"], server="local", docker_host="unix:///var/run/docker.sock", timeout=0.5
        )
    assert str(caught.value) == "`docker events` on server local did not finish within 0.5 s"
