"""Running an approved request exactly once, with the binding it was approved with, and closing
it on every path: done, failed, void (the plan changed: a fresh request asks again) or
interrupted, whatever raises on the way."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from coopbot.approvals.inflight import InFlight
from coopbot.approvals.policy import Policy
from coopbot.approvals.record import RequestRecord
from coopbot.approvals.tally import Outcome, Tally
from coopbot.errors import CoopbotError, PermissionDenied
from coopbot.execution import Executed
from coopbot.ids import EventID, RoomID, UserID
from coopbot.invocation import Invocation
from coopbot.messages import ReplyTarget
from coopbot.operations.plan import Binding, PlannedChange
from coopbot.ports import PowerSource
from coopbot.registry import CommandRegistry
from coopbot.roles import RoleGrant, RoleResolver
from coopbot.rooms import RoomDirectory
from coopbot.status_message import CommandStatuses
from coopbot.store.approvals import OPEN, RUNNING, ApprovalRequest, ApprovalStore, RequestState
from coopbot.tasks import TaskGroup

log = logging.getLogger(__name__)

Execute = Callable[[Invocation], Awaitable[Executed]]


def passed_by(by: str) -> str:
    return "passed by" if by.startswith("lazy consensus") else "approved by"


@dataclass(frozen=True)
class Closing:
    """How a request leaves `running`: its state, the outcome stored and audited, the card's
    status line."""

    state: RequestState
    detail: str
    status: str


@dataclass
class RunProgress:
    """How far an approved request got: what to close it with if the next step raises."""

    closing: Closing
    replacement: tuple[Invocation, PlannedChange] | None = None


class ApprovedRun:
    def __init__(
        self, *, store: ApprovalStore, inflight: InFlight, record: RequestRecord,
        roles: RoleResolver, power: PowerSource, rooms: RoomDirectory, registry: CommandRegistry,
        execute: Execute, statuses: CommandStatuses, tasks: TaskGroup, prefix: str,
        bot_user_id: str,
    ) -> None:
        self._store = store
        self._inflight = inflight
        self._record = record
        self._roles = roles
        self._power = power
        self._rooms = rooms
        self._registry = registry
        self._execute = execute
        self._statuses = statuses
        self._tasks = tasks
        self._prefix = prefix
        self._bot_user_id = bot_user_id

    async def begin(self, request: ApprovalRequest, policy: Policy, result: Tally) -> bool:
        """open -> running (the caller holds the request's lock), the card saying why it
        passed before anything runs, then the run in the background. False: already moved."""
        if not await self._store.transition(request.id, OPEN, RUNNING):
            return False
        running = await self._store.get(request.id)
        assert running is not None
        approvers = result.approvers
        by = (f"lazy consensus ({result.progress}, nobody blocked)"
              if result.outcome == Outcome.LAZY else ", ".join(approvers) or "policy")
        self._inflight.started(running.id)
        await self._record.edit_card(running, policy, result, f"{passed_by(by)} {by}: running")
        self._tasks.spawn(self._run(running, policy, result, approvers, by),
                          name=f"approved request {request.id}")
        return True

    async def _run(self, request: ApprovalRequest, policy: Policy, result: Tally,
                   approvers: tuple[str, ...], by: str) -> None:
        """Plan again, compare, execute; whatever raises, the request is closed and audited."""
        progress = RunProgress(Closing(
            RequestState.FAILED, "internal error before it ran",
            "could not run: internal error (the details are in the bot's log)"))
        try:
            await self._execute_approved(request, approvers, by, progress)
        except asyncio.CancelledError:
            progress.closing = self.interrupted(request, "coopbot stopped while it ran")
            raise
        except Exception:
            log.exception("approved request %s: %s", request.id, progress.closing.detail)
        finally:
            await self.close(request, policy, result, progress.closing)
            self._inflight.finished(request.id)
        if progress.replacement is not None:
            inv, planned = progress.replacement
            try:
                fresh = await self._record.open(inv, policy, planned, replaces=request.id)
            except Exception:
                log.exception("request %s is void; opening its replacement failed", request.id)
                return
            log.info("request %s void (plan changed); request %s replaces it",
                     request.id, fresh.id)

    async def _execute_approved(self, request: ApprovalRequest, approvers: tuple[str, ...],
                                by: str, progress: RunProgress) -> None:
        """Hand the request to the Executor with the binding it was approved with; the
        operation checks it under its lock (approvals never plan a second time)."""
        try:
            inv = await self._invocation(request, approvers)
        except CoopbotError as error:
            progress.closing = Closing(RequestState.FAILED, str(error), f"could not run: {error}")
            return
        # From here the operation may have run: an error means its outcome is unknown.
        progress.closing = self.interrupted(request, "its outcome could not be reported")
        executed = await self._execute(inv)
        if executed.plan_changed is not None:
            why = str(executed.plan_changed)
            progress.closing = Closing(RequestState.VOID, why, f"void: {why}")
            progress.replacement = (inv, executed.plan_changed.fresh)
            return
        ok = executed.ok
        progress.closing = Closing(
            RequestState.DONE if ok else RequestState.FAILED, by,
            f"{passed_by(by)} {by}: {'done' if ok else 'ran and failed'} (see the thread)")

    def interrupted(self, request: ApprovalRequest, detail: str) -> Closing:
        """Closing a request whose outcome this run cannot tell (the thread can)."""
        return Closing(RequestState.INTERRUPTED, detail,
                       f"interrupted: coopbot stopped before it recorded the outcome; the "
                       f"thread and `{self._prefix}ps {request.app}` show where it stands")

    async def close(self, request: ApprovalRequest, policy: Policy, result: Tally | None,
                    closing: Closing) -> None:
        """Leave `running`: the state and the audit row first, then the card (which may fail)."""
        try:
            if not await self._store.transition(request.id, RUNNING, closing.state,
                                                closing.detail):
                return
            await self._record.close_audit(request, closing.state, closing.detail)
        except Exception:
            log.exception("could not record that request %s is %s", request.id, closing.state)
        await self._record.edit_card(request, policy, result, closing.status)

    async def _invocation(self, request: ApprovalRequest,
                          approvers: tuple[str, ...]) -> Invocation:
        spec = self._registry.lookup(request.command)
        room = self._rooms.get(RoomID(request.room_id))
        if request.requester == self._bot_user_id:
            # An auto-update: the bot asked on its own authority, the votes decided.
            grant = RoleGrant.automatic(request.requester, tuple(self._roles.order))
        else:
            power = await self._power.power_info(RoomID(request.room_id))
            grant = self._roles.resolve(request.requester, room.config if room else None, power)
        for what, role in spec.roles_for(dict(request.args)):
            if not grant.has(role):
                # Power is re-checked at execution too: a requester who lost the role loses
                # the run.
                raise PermissionDenied(what, role)
        target = self._target_of(request)
        return Invocation.of_request(
            target, UserID(request.requester), spec, dict(request.args), grant,
            room.config if room else None, asked_at=request.created_at,
            progress=self._statuses.for_command(
                target, key=f"{request.command_event_id}/approved-status"),
            approvers=approvers, binding=Binding.parse(request.binding), request_id=request.id,
        )

    @staticmethod
    def _target_of(request: ApprovalRequest) -> ReplyTarget:
        """The original command's thread, where the result is posted."""
        root = request.thread_root
        return ReplyTarget(RoomID(request.room_id), EventID(request.command_event_id),
                           EventID(root) if root != request.command_event_id else None)
