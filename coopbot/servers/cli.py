"""Run the docker CLI against one engine, with only the environment it needs.

`docker stack deploy` (compose parsing, interpolation, networks, secrets, prune) exists only in
the CLI, so stacks go through it. The child never inherits the bot's environment, which may hold
tokens: it gets the app env plus PATH and HOME, and DOCKER_HOST pointing at the engine.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from coopbot.errors import DockerError
from coopbot.redact import Redactor

# Variables that would steer the CLI away from DOCKER_HOST or change its TLS: never from an app env.
_CLI_CONTROL = frozenset(
    {"DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_TLS"}
)
# Lines the CLI prints on success too; they never explain a failure.
_NOTICES = ("Since --detach=false", "In a future release", "Ignoring unsupported options")
_MAX_SENTENCE = 200


def child_env(env: Mapping[str, str], docker_host: str) -> dict[str, str]:
    child = {k: v for k, v in env.items() if k not in _CLI_CONTROL}
    child["PATH"] = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    child["HOME"] = os.environ.get("HOME", "/")
    child["DOCKER_HOST"] = docker_host
    return child


def scrub(text: str, env: Mapping[str, str], cwd: Path | None = None) -> str:
    """Replace every env value in `text` by `${KEY}` (longest first), and the work dir by `.`."""
    text = Redactor.naming(env)(text)
    if cwd is not None:
        text = text.replace(f"{cwd}/", "").replace(str(cwd), ".")
    return text


def summary_line(stderr: str) -> str:
    """The CLI prints its fatal error last; earlier lines are progress and notices."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(_NOTICES)]
    if not lines:
        return "no error message"
    line = lines[-1].removeprefix("Error response from daemon: ")
    return line if len(line) <= _MAX_SENTENCE else line[: _MAX_SENTENCE - 1] + "…"


async def run_docker(
    args: Sequence[str],
    *,
    server: str,
    docker_host: str,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> str:
    """Run `docker ARGS`; return stdout. DockerError (env values scrubbed) on failure or timeout."""
    env = env or {}
    docker = shutil.which("docker")
    if docker is None:
        raise DockerError("the docker command is not installed where coopbot runs")
    what = f"docker {args[0]} {args[1]}" if len(args) > 1 else f"docker {args[0]}"
    proc = await asyncio.create_subprocess_exec(
        docker,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env(env, docker_host),
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise DockerError(
            f"`{what}` on server {server} did not finish within {timeout:g} s"
        ) from None
    except asyncio.CancelledError:
        proc.kill()  # never leave a deploy running behind a cancelled operation
        raise
    stdout = out.decode(errors="replace")
    if proc.returncode != 0:
        # The tunnel socket path is noise in a room: name it like the variable that holds it.
        stderr = scrub(err.decode(errors="replace"), {**env, "DOCKER_HOST": docker_host}, cwd)
        raise DockerError(
            f"`{what}` failed on server {server}: {summary_line(stderr)}",
            detail=f"exit {proc.returncode}\n{stderr}",
        )
    return stdout
