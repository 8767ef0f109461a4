"""health and metrics: an optional HTTP listener for orchestrators and Prometheus.

    GET /healthz   200 when the last sync finished recently and the state is writable, else 503;
                   a small JSON body says which check failed (no paths, no secrets). A
                   background loop that died recently and is restarted (approval expiry, the
                   swarm watcher, update checks, scheduled backups) makes the status
                   "degraded", still with 200: restarting the container would not fix it and
                   would interrupt running operations; the log has the traceback.
    GET /metrics   Prometheus text format (the maintained `prometheus_client` library).

Metrics come from the Observers bus (commands, operations, syncs), from a periodic probe of
every configured server (reachability) and, at scrape time, from the store (open approvals).
Each bot has its own CollectorRegistry, so several bots can live in one process (tests).
Off by default: `health.enabled` in the config.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from coopbot.config import Config, HealthConfig
from coopbot.errors import CoopbotError, UnknownCommand
from coopbot.observe import CommandHandled, Event, Observers, OperationFinished, SyncCompleted
from coopbot.registry import CommandRegistry
from coopbot.store.approvals import ApprovalStore
from coopbot.store.database import Database
from coopbot.store.kv import KeyValueStore
from coopbot.tasks import Supervised

log = logging.getLogger(__name__)

PROBE_KEY = "health.probe"
# Deploys wait for convergence for minutes: buckets up to the longest recipe timeouts.
OPERATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
UNKNOWN_COMMAND = "unknown"


class SyncClock(Protocol):
    """What the Matrix gateway tells about its sync loop."""

    @property
    def last_sync(self) -> float: ...  # time.monotonic() when the last sync finished

    @property
    def synced_once(self) -> asyncio.Event: ...


class Probe(Protocol):
    """The server pool: every server's info, or its error, within a timeout."""

    async def info_all(self, timeout: float = 10.0) -> dict[str, Any]: ...


class KeyValue(Protocol):
    async def set(self, key: str, value: str) -> None: ...


class SupervisedTasks(Protocol):
    """The task group: the state of every supervised background loop."""

    def supervised(self) -> list[Supervised]: ...


class Metrics:
    """Every metric coopbot exports, and the observer that keeps them current."""

    def __init__(self, canonical: Callable[[str], str | None],
                 registry: CollectorRegistry | None = None) -> None:
        self._canonical = canonical
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.commands = Counter(
            "coopbot_commands", "Commands handled, by command and pipeline decision",
            ["command", "decision"], registry=r)
        self.operations = Counter(
            "coopbot_operations", "Swarm operations finished, by kind and result",
            ["kind", "result"], registry=r)
        self.operation_seconds = Histogram(
            "coopbot_operation_duration_seconds", "How long finished operations took",
            ["kind", "result"], buckets=OPERATION_BUCKETS, registry=r)
        self.pending_approvals = Gauge(
            "coopbot_pending_approvals", "Approval requests waiting for votes", registry=r)
        self.server_reachable = Gauge(
            "coopbot_server_reachable", "1 if the server answered the last probe, else 0",
            ["server"], registry=r)
        self.syncs = Counter("coopbot_syncs", "Completed Matrix syncs", registry=r)
        self.sync_lag = Gauge(
            "coopbot_sync_lag_seconds", "Time between the last two completed syncs", registry=r)
        self.sync_age = Gauge(
            "coopbot_sync_age_seconds", "Time since the last completed sync", registry=r)
        ProcessCollector(registry=r)

    async def observe(self, event: Event) -> None:
        if isinstance(event, CommandHandled):
            # Only registered names: what people mistype must not grow the label set.
            name = self._canonical(event.command) or UNKNOWN_COMMAND
            self.commands.labels(name, event.decision).inc()
        elif isinstance(event, OperationFinished):
            self.operations.labels(event.kind, event.result).inc()
            if event.duration is not None:
                self.operation_seconds.labels(event.kind, event.result).observe(event.duration)
        elif isinstance(event, SyncCompleted):
            self.syncs.inc()
            self.sync_lag.set(event.lag_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str


class HealthChecks:
    """What /healthz answers: is the sync loop alive, can the bot write its state?"""

    def __init__(self, clock: SyncClock, kv: KeyValue, state_dirs: Iterable[Path],
                 max_sync_age: float, tasks: SupervisedTasks | None = None) -> None:
        self._clock = clock
        self._kv = kv
        self._dirs = tuple(state_dirs)
        self._max_age = max_sync_age
        self._tasks = tasks

    def background(self) -> CheckResult:
        """Not part of ok/failing: a failing loop only degrades the status."""
        supervised = self._tasks.supervised() if self._tasks is not None else []
        failing = [t for t in supervised if t.failing]
        if not failing:
            return CheckResult(True, "background tasks running")
        return CheckResult(False, "failed recently: " + ", ".join(
            f"{t.name} ({t.failures} failure(s) in a row, last {t.last_error}; "
            f"{'running again' if t.started_at is not None else 'waiting to restart'})"
            for t in failing))

    def sync(self) -> CheckResult:
        if not self._clock.synced_once.is_set():
            return CheckResult(False, "no sync has finished yet")
        age = time.monotonic() - self._clock.last_sync
        if age > self._max_age:
            return CheckResult(False, f"last sync finished {age:.0f} s ago "
                                      f"(limit {self._max_age:g} s)")
        return CheckResult(True, f"last sync finished {age:.1f} s ago")

    async def store(self) -> CheckResult:
        try:
            await self._kv.set(PROBE_KEY, f"{time.time():.3f}")
        except Exception as error:
            log.warning("health: the database is not writable: %r", error)
            return CheckResult(False, "the database is not writable")
        for index, folder in enumerate(self._dirs):
            if not await asyncio.to_thread(_writable, folder):
                log.warning("health: state folder %s is not writable", folder)
                return CheckResult(False, f"state folder #{index + 1} is not writable")
        return CheckResult(True, "database and state folders writable")


def _writable(folder: Path) -> bool:
    """Create and delete a file in `folder` (or its nearest existing parent, if not made yet)."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".coopbot-health-"):
            pass
    except OSError:
        return False
    return True


class HealthServer:
    """The aiohttp listener plus the server reachability probe loop."""

    def __init__(self, config: HealthConfig, metrics: Metrics, checks: HealthChecks,
                 clock: SyncClock, pool: Probe,
                 pending_approvals: Callable[[], Awaitable[int]]) -> None:
        self._config = config
        self.metrics = metrics
        self._checks = checks
        self._clock = clock
        self._pool = pool
        self._pending = pending_approvals
        self._runner: web.AppRunner | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self.port: int | None = None
        metrics.sync_age.set_function(self._sync_age)

    def _sync_age(self) -> float:
        return time.monotonic() - self._clock.last_sync

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._config.bind, self._config.port)
        try:
            await site.start()
        except OSError as error:
            await runner.cleanup()
            raise CoopbotError(
                f"cannot listen on {self._config.bind}:{self._config.port} for health and "
                f"metrics ({error.strerror or error})") from None
        self._runner = runner
        addresses = runner.addresses  # the bound (host, port, ...): port 0 becomes a real one
        self.port = int(addresses[0][1]) if addresses else self._config.port
        self._probe_task = asyncio.create_task(self._probe_forever(), name="server probes")
        log.info("health and metrics on http://%s:%d (/healthz, /metrics)",
                 self._config.bind, self.port)

    async def stop(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe_task
            self._probe_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def probe_servers(self) -> None:
        timeout = min(30.0, self._config.probe_interval_seconds)
        results = await self._pool.info_all(timeout=timeout)
        for name, result in results.items():
            self.metrics.server_reachable.labels(name).set(
                0 if isinstance(result, Exception) else 1)

    async def _probe_forever(self) -> None:
        while True:
            try:
                await self.probe_servers()
            except Exception:
                log.exception("health: probing the servers failed")
            await asyncio.sleep(self._config.probe_interval_seconds)

    async def _healthz(self, request: web.Request) -> web.Response:
        sync = self._checks.sync()
        store = await self._checks.store()
        tasks = self._checks.background()
        ok = sync.ok and store.ok
        body = {
            "status": ("ok" if tasks.ok else "degraded") if ok else "failing",
            "checks": {
                "sync": {"ok": sync.ok, "detail": sync.detail},
                "store": {"ok": store.ok, "detail": store.detail},
                "tasks": {"ok": tasks.ok, "detail": tasks.detail},
            },
        }
        return web.json_response(body, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        try:
            self.metrics.pending_approvals.set(await self._pending())
        except Exception:
            log.exception("metrics: counting pending approvals failed")
        return web.Response(body=self.metrics.render(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_health(
    config: Config, *, observers: Observers, database: Database, clock: SyncClock, pool: Probe,
    registry: CommandRegistry, tasks: SupervisedTasks | None = None,
) -> HealthServer:
    """The composition root's one call: metrics subscribed to `observers`, listener not started."""
    approvals = ApprovalStore(database)

    async def pending_approvals() -> int:
        return len(await approvals.open_requests())

    def canonical(name: str) -> str | None:
        try:
            return registry.lookup(name).name
        except UnknownCommand:
            return None

    metrics = Metrics(canonical)
    observers.subscribe(metrics.observe)
    state_dirs = (config.database.parent, config.matrix.store, config.recipes.cache)
    checks = HealthChecks(clock, KeyValueStore(database), state_dirs,
                          config.health.max_sync_age_seconds, tasks)
    return HealthServer(config.health, metrics, checks, clock, pool, pending_approvals)


def probe_url(config: HealthConfig) -> str:
    """Where `coopbot health` asks: the listener's own address (a wildcard bind -> loopback)."""
    host = config.bind
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1" if host != "::" else "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.port}/healthz"


def check(config: HealthConfig, timeout: float = 5.0) -> tuple[bool, str]:
    """`coopbot health` (the image's HEALTHCHECK): ask the running bot's /healthz."""
    if not config.enabled:
        return True, "the health listener is disabled in the config (health.enabled): not checked"
    if config.port == 0:
        return False, "health.port is 0 (any free port): give a fixed port to check it"
    url = probe_url(config)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read() or b"{}")
            degraded = isinstance(body, dict) and body.get("status") == "degraded"
            return True, f"{'degraded' if degraded else 'healthy'}: {_summary(body)}"
    except urllib.error.HTTPError as error:
        try:
            body = json.loads(error.read() or b"{}")
        except ValueError:
            body = {}
        return False, f"unhealthy ({error.code}): {_summary(body)}"
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        return False, f"no answer from {url}: {reason}"


def _summary(body: Any) -> str:
    checks = body.get("checks", {}) if isinstance(body, dict) else {}
    parts = [f"{name}: {item.get('detail', '?')}" for name, item in checks.items()
             if isinstance(item, dict)]
    return "; ".join(parts) or "no details"

