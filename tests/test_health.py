"""health and metrics, logging (issue 8): the HTTP listener of a real bot in a real room on the
session Synapse, with real servers behind it; the log redaction and JSON lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from coopbot import logging_setup
from coopbot.cli import main as cli_main
from coopbot.config import HealthConfig, load_config
from coopbot.health import HealthChecks, HealthServer, Metrics, check, probe_url
from coopbot.observe import OperationFinished
from coopbot.tasks import TaskGroup
from tests.harness.apps import app_env, create_secret, stack_of, unique_domain
from tests.harness.bot import StartBot, ask_bot
from tests.harness.recipes import AbraDir
from tests.harness.swarm import Dockerd, Sshd, free_port, remove_stack
from tests.harness.synapse import MakeMember

pytestmark = pytest.mark.real


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None if absent."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)$"
    for line in metrics.splitlines():
        match = re.match(pattern, line)
        if match:
            return float(match.group(1))
    return None


@pytest.fixture
def domain(abra_dir: AbraDir, dockerd: Dockerd) -> Iterator[str]:
    """An app of the testapp recipe on server `local`, with its secret (removed after)."""
    name = unique_domain()
    app_env(abra_dir, "local", name)
    create_secret(name)
    yield name
    remove_stack(stack_of(name))


async def test_healthz_and_metrics_of_a_running_bot(
    make_member: MakeMember, start_bot: StartBot, abra_dir: AbraDir, tmp_path: Path,
    dockerd: Dockerd, sshd: Sshd, testapp_recipe: Path, domain: str, restore_logging: None,
) -> None:
    alice = await make_member(f"alice-{uuid.uuid4().hex[:6]}")
    room = await alice.create_room()
    port = free_port()
    bot = await start_bot(
        rooms={room: {"servers": ["local", "down"]}},
        servers={
            "local": {"kind": "local", "socket": dockerd.socket},
            "down": {"kind": "ssh", "host": "127.0.0.1", "port": free_port(), "user": "root",
                     "key_file": str(sshd.key_file),
                     "known_hosts_file": str(sshd.known_hosts_file), "connect_timeout": 2},
        },
        apps_dir=str(abra_dir.path),
        recipes={"overrides": {"testapp": str(testapp_recipe)},
                 "cache": str(tmp_path / "recipe-cache")},
        policies={"deploy": {"approvals": 1}},
        health={"enabled": True, "bind": "127.0.0.1", "port": port,
                "probe_interval_seconds": 1},
    )
    await alice.invite(room, bot.user_id)
    await alice.wait_joined(room, bot.user_id)
    base = f"http://127.0.0.1:{port}"

    async def ask(body: str) -> str:  # the bot's first reply, a ⏳ status included
        return await ask_bot(alice, room, bot.user_id, body, final=False)

    assert (await ask("!ping")).startswith("pong")
    assert "Your roles here" in await ask("!whoami")
    assert "Unknown command `nosuchthing`" in await ask("!nosuchthing")
    assert (await ask("!deploy")).startswith("`deploy` needs")
    # Needs one approval: the request stays open, so one approval is pending.
    assert "Request #" in await ask(f"!deploy {domain} 1.0.0+v1")

    status, kind, body = await get(f"{base}/healthz")
    assert status == 200, body
    assert kind.startswith("application/json")
    health = json.loads(body)
    assert health["status"] == "ok"
    assert health["checks"]["sync"]["ok"] and health["checks"]["store"]["ok"]

    # The reachability probe runs every second: wait for both servers' first results.
    deadline = time.monotonic() + 30
    while True:
        status, kind, metrics = await get(f"{base}/metrics")
        if (sample(metrics, "coopbot_server_reachable", server="down") is not None
                and sample(metrics, "coopbot_server_reachable", server="local") is not None):
            break
        assert time.monotonic() < deadline, metrics
        await asyncio.sleep(0.5)
    assert status == 200 and kind.startswith("text/plain")
    assert sample(metrics, "coopbot_server_reachable", server="local") == 1
    assert sample(metrics, "coopbot_server_reachable", server="down") == 0
    assert sample(metrics, "coopbot_commands_total", command="ping", decision="ran") == 1
    assert sample(metrics, "coopbot_commands_total", command="ping", decision="result") == 1
    assert sample(metrics, "coopbot_commands_total", command="whoami", decision="ran") == 1
    assert sample(metrics, "coopbot_commands_total", command="deploy", decision="invalid") == 1
    # Whatever people mistype is counted under one label, never as a label of its own.
    assert sample(metrics, "coopbot_commands_total", command="unknown", decision="invalid") == 1
    assert "nosuchthing" not in metrics
    assert sample(metrics, "coopbot_pending_approvals") == 1
    syncs = sample(metrics, "coopbot_syncs_total")
    assert syncs is not None and syncs >= 1
    lag = sample(metrics, "coopbot_sync_lag_seconds")
    age = sample(metrics, "coopbot_sync_age_seconds")
    assert lag is not None and lag >= 0 and age is not None and 0 <= age < 60
    assert sample(metrics, "process_resident_memory_bytes") is not None

    # Operations are counted by kind and result, with their durations.
    assert bot.bot is not None
    await bot.bot.observers.emit(OperationFinished(
        operation_id="op1", kind="upgrade", app=domain, server="local", from_version="1",
        to_version="2", requester=alice.user_id, approvers=(), room_id=room, event_id=None,
        result="failed", summary="did not converge", duration=42.0,
    ))
    _, _, metrics = await get(f"{base}/metrics")
    assert sample(metrics, "coopbot_operations_total", kind="upgrade", result="failed") == 1
    assert sample(metrics, "coopbot_operation_duration_seconds_count",
                  kind="upgrade", result="failed") == 1
    assert sample(metrics, "coopbot_operation_duration_seconds_sum",
                  kind="upgrade", result="failed") == 42

    # `coopbot health` (the image's HEALTHCHECK) asks the same endpoint.
    config = load_config(bot.config_path)
    healthy, message = await asyncio.to_thread(check, config.health)
    assert healthy, message
    assert message.startswith("healthy: sync: last sync finished")
    assert await asyncio.to_thread(cli_main, ["health", "-c", str(bot.config_path)]) == 0

    await bot.stop()
    healthy, message = await asyncio.to_thread(check, config.health)
    assert not healthy and "no answer from" in message
    assert await asyncio.to_thread(cli_main, ["health", "-c", str(bot.config_path)]) == 1


async def test_a_dying_background_loop_is_restarted_reported_once_and_shown(
    start_bot: StartBot, caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    bot = await start_bot(health={"enabled": True, "bind": "127.0.0.1", "port": port})
    assert bot.bot is not None
    approvals = bot.bot.approvals
    real_expire_due = approvals.expire_due
    calls = 0

    async def expire_due_failing_twice() -> int:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError("a bug in the expiry check")
        return await real_expire_due()

    caplog.set_level(logging.WARNING, logger="coopbot.tasks")
    # The running expiry loop calls it every 2 s: it dies twice, then runs again.
    approvals.expire_due = expire_due_failing_twice  # type: ignore[method-assign]
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while calls < 4:  # restarted after 1 s, then 2 s; the fourth call is the loop working
        assert time.monotonic() < deadline, f"the expiry loop was not restarted ({calls} calls)"
        await asyncio.sleep(0.2)

    status, _, body = await get(f"{base}/healthz")
    health = json.loads(body)
    assert status == 200 and health["status"] == "degraded", body
    assert health["checks"]["tasks"]["detail"] == (
        "failed recently: approval expiry (2 failure(s) in a row, last RuntimeError; "
        "running again)")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "background task approval expiry failed; restarting it in 1 s"]
    assert errors[0].exc_info is not None  # the traceback is in the log
    repeats = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert repeats == ["background task approval expiry failed again (2 times in a row: "
                       "RuntimeError); restarting it in 2 s"]
    (state,) = [t for t in bot.bot.tasks.supervised() if t.name == "approval expiry"]
    assert state.started_at is not None, "it is running again"


class StaleClock:
    def __init__(self, synced: bool, age: float) -> None:
        self.synced_once = asyncio.Event()
        if synced:
            self.synced_once.set()
        self.last_sync = time.monotonic() - age


class BrokenStore:
    async def set(self, key: str, value: str) -> None:
        raise OSError("disk I/O error: /secret/path")


class NoServers:
    def __init__(self) -> None:
        self.names: list[str] = []

    async def info_all(self, timeout: float = 10.0) -> dict[str, Any]:
        return {}


async def serve(clock: StaleClock, kv: Any, dirs: list[Path],
                tasks: TaskGroup | None = None) -> tuple[HealthServer, str]:
    config = HealthConfig(enabled=True, port=0, max_sync_age_seconds=60)
    checks = HealthChecks(clock, kv, dirs, config.max_sync_age_seconds, tasks)

    async def no_approvals() -> int:
        return 0

    server = HealthServer(config, Metrics(lambda name: name), checks, clock, NoServers(),
                          no_approvals)
    await server.start()
    return server, f"http://127.0.0.1:{server.port}/healthz"


class MemoryStore:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def set(self, key: str, value: str) -> None:
        self.values[key] = value


async def test_healthz_fails_on_a_stale_sync_an_unwritable_store_and_before_the_first_sync(
    tmp_path: Path,
) -> None:
    cases = [
        (StaleClock(synced=True, age=1), MemoryStore(), [tmp_path], 200, "ok"),
        (StaleClock(synced=True, age=300), MemoryStore(), [tmp_path], 503,
         "last sync finished 300 s ago (limit 60 s)"),
        (StaleClock(synced=False, age=0), MemoryStore(), [tmp_path], 503,
         "no sync has finished yet"),
        (StaleClock(synced=True, age=1), BrokenStore(), [tmp_path], 503,
         "the database is not writable"),
        (StaleClock(synced=True, age=1), MemoryStore(), [tmp_path, tmp_path / "file" / "sub"],
         503, "state folder #2 is not writable"),
    ]
    (tmp_path / "file").write_text("a file where a folder should be")
    for clock, kv, dirs, expected_status, expected_text in cases:
        server, url = await serve(clock, kv, dirs)
        try:
            status, _, body = await get(url)
        finally:
            await server.stop()
        assert status == expected_status, body
        assert expected_text in body
        assert "/secret/path" not in body  # error details go to the log only


async def test_healthz_is_degraded_while_a_background_loop_is_being_restarted(
    tmp_path: Path,
) -> None:
    tasks = TaskGroup(first_delay=0.01, max_delay=0.02, healthy_after=30)
    stop = asyncio.Event()

    async def steady() -> None:
        await stop.wait()

    async def dying() -> None:
        raise OSError("cannot open /secret/path")

    tasks.supervise(steady, name="update checks", stop=stop)
    server, url = await serve(StaleClock(synced=True, age=1), MemoryStore(), [tmp_path], tasks)
    try:
        status, _, body = await get(url)
        assert status == 200 and json.loads(body)["status"] == "ok"
        assert json.loads(body)["checks"]["tasks"] == {"ok": True,
                                                       "detail": "background tasks running"}
        tasks.supervise(dying, name="approval expiry", stop=stop)
        await asyncio.sleep(0.1)
        status, _, body = await get(url)
    finally:
        await server.stop()
        stop.set()
        await tasks.drain(timeout=1)
    health = json.loads(body)
    # Degraded, not failing: a new container would not fix a bug in a loop.
    assert status == 200 and health["status"] == "degraded", body
    detail = health["checks"]["tasks"]["detail"]
    assert not health["checks"]["tasks"]["ok"]
    assert detail.startswith("failed recently: approval expiry (")
    assert "failure(s) in a row, last OSError; " in detail and "update checks" not in detail
    assert "/secret/path" not in body


def test_probe_url_of_wildcard_binds() -> None:
    assert probe_url(HealthConfig(bind="0.0.0.0", port=9180)) == "http://127.0.0.1:9180/healthz"
    assert probe_url(HealthConfig(bind="::", port=1)) == "http://[::1]:1/healthz"
    assert probe_url(HealthConfig(bind="10.0.0.5", port=2)) == "http://10.0.0.5:2/healthz"
    healthy, message = check(HealthConfig(enabled=False))
    assert healthy and "disabled" in message


# -- logging -------------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure() changes process-wide logging: put the test runner's back afterwards."""
    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, sys.excepthook
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    sys.excepthook = hook
    logging.captureWarnings(False)


@pytest.fixture
def log_stream(restore_logging: None) -> io.StringIO:
    return io.StringIO()


def test_json_lines_never_carry_secrets(log_stream: io.StringIO, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_RESTIC_PASSWORD", "restic-from-env-0123")
    (tmp_path / "restic-password").write_text("restic-from-file-4567\n")
    (tmp_path / "restic.env").write_text("AWS_SECRET_ACCESS_KEY='aws-secret-89ab'\n")
    (tmp_path / "config.yaml").write_text(json.dumps({
        "matrix": {"homeserver": "http://127.0.0.1:1", "user_id": "@bot:localhost",
                   "password": "matrix-password-cdef"},
        "servers": {"a": {"kind": "local"}, "b": {"kind": "local"}},
        "backups": {
            "a": {"repository": "/srv/restic", "password_env": "TEST_RESTIC_PASSWORD"},
            "b": {"repository": "/srv/restic", "password_file": "restic-password",
                  "environment_file": "restic.env"},
        },
        "logging": {"format": "json"},
    }))
    config = load_config(tmp_path / "config.yaml")
    logging_setup.configure(
        logging_setup.choose_format(None, config.logging.format), "info", stream=log_stream)
    logging_setup.redact_config_secrets(config)
    logging_setup.redact("syt_Ym90_session_token_from_login")
    log = logging.getLogger("coopbot.test")
    log.info("login with %s", "matrix-password-cdef")
    log.warning("restic said: wrong password %s / %s", "restic-from-env-0123",
                "restic-from-file-4567")
    log.info("env AWS_SECRET_ACCESS_KEY=aws-secret-89ab")
    log.info("GET /sync?access_token=opaque-token-value&since=s1 Authorization: Bearer abc.def")
    try:
        raise RuntimeError("token syt_Ym90_session_token_from_login refused")
    except RuntimeError:
        log.exception("request failed")
    lines = log_stream.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert [e["level"] for e in entries] == ["info", "warning", "info", "info", "error"]
    assert {e["logger"] for e in entries} == {"coopbot.test"}
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", e["time"])
               for e in entries)
    text = log_stream.getvalue()
    for secret in ("matrix-password-cdef", "restic-from-env-0123", "restic-from-file-4567",
                   "aws-secret-89ab", "opaque-token-value", "abc.def",
                   "syt_Ym90_session_token_from_login"):
        assert secret not in text
    assert entries[0]["message"] == "login with [redacted]"
    assert entries[3]["message"] == ("GET /sync?access_token=[redacted]&since=s1 "
                                     "Authorization: Bearer [redacted]")
    assert "RuntimeError: token [redacted] refused" in entries[4]["exception"]

    # A crash and a Python warning become JSON lines too, redacted like the rest.
    try:
        raise ValueError("bad password matrix-password-cdef")
    except ValueError as error:
        sys.excepthook(ValueError, error, error.__traceback__)
    warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    crash, warning = (json.loads(line) for line in log_stream.getvalue().splitlines()[5:])
    assert crash["level"] == "critical" and "ValueError: bad password [redacted]" in crash["exception"]
    assert warning["logger"] == "py.warnings" and "deprecated thing" in warning["message"]


def test_human_lines_by_default_and_the_flag_wins(log_stream: io.StringIO,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(logging_setup.FORMAT_ENV, raising=False)
    assert logging_setup.choose_format(None) == "human"
    assert logging_setup.choose_format(None, "json") == "json"
    monkeypatch.setenv(logging_setup.FORMAT_ENV, "json")
    assert logging_setup.choose_format(None, "human") == "json"
    assert logging_setup.choose_format("human", "json") == "human"
    monkeypatch.setenv(logging_setup.FORMAT_ENV, "xml")
    with pytest.raises(ValueError, match="human or json"):
        logging_setup.choose_format(None)
    logging_setup.configure("human", "info", stream=log_stream)
    logging.getLogger("coopbot.test").info("hello %s", "there")
    logging.getLogger("nio.test").info("chatty library line")
    line = log_stream.getvalue().strip()
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO coopbot.test: hello there$", line)
