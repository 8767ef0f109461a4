"""Wait until a stack has converged, or say precisely which service did not and why.

Converged means, for every service: all desired tasks run the CURRENT spec (a task with a
healthcheck stays "starting" until healthy, so start_period is waiting, not failure), and no
update is running. An update that ended rolled back or paused is a failure, even though the
old tasks run fine.

Stale status: right after `docker stack deploy`, old tasks still run and the updater may not
have started. Swarm resets UpdateStatus on every spec update (so an old "rollback_completed"
cannot be mistaken for this deploy's result) and tasks are only counted when the daemon says
they match the current spec, so a deploy is never reported converged before it started.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from coopbot.errors import CoopbotError, NotFound, ServerUnreachable
from coopbot.servers.states import (
    ConvergenceProgress,
    ConvergenceResult,
    ServiceFailure,
    ServiceState,
)

Snapshot = Callable[[], Awaitable[list[ServiceState]]]
# The log lines that explain a service's failure (its failing task's, when it has one).
LogTail = Callable[[ServiceState], Awaitable[list[str]]]
ProgressCallback = Callable[[ConvergenceProgress], Awaitable[None]]

# How often the swarm is asked while converging: the bench showed a 1 s poll adding ~1 s to
# every deploy's answer; two cheap API reads a second cost nothing by comparison.
CONVERGENCE_POLL_SECONDS = 0.5

# A service whose current tasks swarm rejected this often will not start by itself (each retry
# hits the same missing image or invalid mount): fail now rather than at the timeout.
REJECTIONS_TO_FAIL = 3
# A task no node can take waits "pending" with an error; nodes may still come or change.
UNPLACEABLE_GRACE_SECONDS = 10.0

_FAILED_REASONS = {
    "rollback_completed": "its update failed and was rolled back",
    "rollback_paused": "its update failed and the rollback paused",
    "paused": "its update failed and paused",
}


async def wait_converged(
    stack: str,
    snapshot: Snapshot,
    log_tail: LogTail,
    *,
    timeout: float,
    progress: ProgressCallback | None = None,
    poll: float = CONVERGENCE_POLL_SECONDS,
) -> ConvergenceResult:
    """Poll `snapshot()` until done or `timeout`; `progress` is called when something changed.

    A server that stops answering mid-wait is polled again until the deadline (a deploy keeps
    running server-side); its error is raised only if it never answered again.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    seen: tuple[object, ...] | None = None
    services: list[ServiceState] = []
    stuck = _Stuck()
    while True:
        elapsed = loop.time() - start
        try:
            services = await snapshot()
        except ServerUnreachable:
            if elapsed >= timeout:
                raise
            await asyncio.sleep(poll)
            continue
        if not services:
            raise NotFound(f"stack {stack} has no services to wait for")
        stuck.observe(services, elapsed)
        pending = tuple(
            s.short_name
            for s in services
            if not s.converged and not s.update_failed and not stuck.failed(s, elapsed)
        )
        if progress is not None and _signature(services) != seen:
            seen = _signature(services)
            await progress(ConvergenceProgress(stack, elapsed, tuple(services), pending))
        timed_out = elapsed >= timeout
        if not pending or timed_out:
            break
        await asyncio.sleep(min(poll, max(timeout - elapsed, 0.0)))
    failures = [
        await _failure(s, log_tail, timeout, stuck.reason(s, elapsed))
        for s in services
        if s.update_failed or stuck.failed(s, elapsed) or (timed_out and not s.converged)
    ]
    return ConvergenceResult(
        stack=stack,
        ok=not failures,
        timed_out=timed_out and bool(pending),
        elapsed=loop.time() - start,
        services=tuple(services),
        failures=tuple(failures),
    )


class _Stuck:
    """Services that will not converge however long one waits: tasks rejected again and
    again, or a task no node can take for longer than the grace period."""

    def __init__(self) -> None:
        self._unplaceable_since: dict[str, float] = {}

    def observe(self, services: Sequence[ServiceState], elapsed: float) -> None:
        for service in services:
            if service.unplaceable and not service.converged:
                self._unplaceable_since.setdefault(service.name, elapsed)
            else:
                self._unplaceable_since.pop(service.name, None)

    def reason(self, service: ServiceState, elapsed: float) -> str | None:
        if service.converged:
            return None
        if service.rejections >= REJECTIONS_TO_FAIL:
            return f"swarm rejected {service.rejections} of its tasks"
        since = self._unplaceable_since.get(service.name)
        if since is not None and elapsed - since >= UNPLACEABLE_GRACE_SECONDS:
            return f"no node could take its tasks for {elapsed - since:.0f} s"
        return None

    def failed(self, service: ServiceState, elapsed: float) -> bool:
        return self.reason(service, elapsed) is not None


def _signature(services: Sequence[ServiceState]) -> tuple[object, ...]:
    return tuple(
        (s.name, s.replicas_updated, s.replicas_desired, s.update_state, s.health, s.rejections)
        for s in services
    )


async def _failure(service: ServiceState, log_tail: LogTail, timeout: float,
                   stuck: str | None = None) -> ServiceFailure:
    if stuck is not None:
        reason = stuck
    elif service.update_state in _FAILED_REASONS:
        reason = _FAILED_REASONS[service.update_state]
    else:
        reason = (
            f"not converged after {timeout:g} s: {service.replicas_updated} of "
            f"{service.replicas_desired} tasks running the new version"
        )
        if service.updating:
            reason += f" (swarm state: {service.update_state})"
    try:
        tail = tuple(await log_tail(service))
    except CoopbotError:
        tail = ()  # the verdict matters more than the logs
    return ServiceFailure(
        service=service.name,
        short_name=service.short_name,
        reason=reason,
        update_state=service.update_state,
        # The failing spec's own error first: an older, healthy task's says nothing about it.
        task_error=service.current_error or service.last_error,
        raw_log_tail=tail,
    )
