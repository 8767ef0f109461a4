"""Approvals: the pipeline's approval stage, voting, and running an approved plan exactly once.

Flow: `gate()` parks an operation under a policy as a request with a card bound to its plan.
Votes arrive as reactions on the card or `!approve` / `!deny`; each vote is stored, and the
tally is recomputed from the stored votes and every voter's role *now*. When the quorum is
reached the request moves to `running` in one conditional UPDATE (exactly once) and is handed
to the Executor with the binding it was approved with; the operation, under its lock, runs only
an identical plan. If the plan changed, the request is void and a fresh card asks again.

Every path out of `running` ends in a closed state with its audit row, whatever raises on the
way; requests an earlier run left `running` are closed as `interrupted` at start-up. A request
past its expiry time is expired by whichever comes first: the timer or a vote arriving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Protocol

from coopbot.approvals.card import NO_KEYS, YES_KEYS, render, when
from coopbot.approvals.policy import Policy, PolicyResolver
from coopbot.approvals.tally import Outcome, Tally, latest_per_voter, tally
from coopbot.echo import shown
from coopbot.errors import Busy, CoopbotError, NotFound, PermissionDenied, UserError
from coopbot.execution import Executed
from coopbot.ids import EventID, RoomID, UserID, server_of
from coopbot.invocation import Invocation
from coopbot.messages import IncomingReaction, IncomingRedaction, ReplyTarget
from coopbot.operations.plan import Binding, PlannedChange
from coopbot.ports import CardPoster, PowerSource
from coopbot.registry import CommandRegistry
from coopbot.replies import Reply
from coopbot.roles import RoleGrant, RoleResolver
from coopbot.rooms import RoomDirectory
from coopbot.status_message import CommandStatuses
from coopbot.store.approvals import (
    OPEN,
    RUNNING,
    ApprovalRequest,
    ApprovalStore,
    RequestState,
    Vote,
)
from coopbot.store.audit import AuditLog, Decision
from coopbot.store.operations import OperationStore
from coopbot.tasks import TaskGroup

log = logging.getLogger(__name__)

EXPIRY_CHECK_SECONDS = 2.0
EXPIRED_STATUS = "expired without enough votes; ask again if still wanted"


def past_expiry(request: ApprovalRequest, now: float | None = None) -> bool:
    """Votes reaching the bot at or after `expires_at` come too late (the bot's clock decides,
    never a sender's timestamp)."""
    return (time.time() if now is None else now) >= request.expires_at


Execute = Callable[[Invocation], Awaitable[Executed]]


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



class DeviceCheck(Protocol):
    """Whether an event came from a device its owner cross-signed (the Matrix adapter's
    DeviceTrust): None if it did, else a short reason for the room."""

    async def unsigned(self, room_id: str, event_id: str, sender: str) -> str | None: ...


class Approvals:
    def __init__(
        self, *, store: ApprovalStore, policies: PolicyResolver, roles: RoleResolver,
        power: PowerSource, rooms: RoomDirectory, registry: CommandRegistry,
        operations: OperationStore, audit: AuditLog, poster: CardPoster, execute: Execute,
        statuses: CommandStatuses, tasks: TaskGroup, prefix: str = "!", bot_user_id: str = "",
        devices: DeviceCheck | None = None,
    ) -> None:
        self._devices = devices
        self._store = store
        self._policies = policies
        self._roles = roles
        self._power = power
        self._rooms = rooms
        self._registry = registry
        self._operations = operations
        self._audit = audit
        self._poster = poster
        self._execute = execute
        self._statuses = statuses
        self._tasks = tasks
        self._prefix = prefix
        self._bot_user_id = bot_user_id
        # Votes on one request are evaluated one at a time (card edits stay in order).
        self._locks: dict[int, asyncio.Lock] = {}
        # Requests this process is running: the start-up clean-up leaves them alone.
        self._running_here: set[int] = set()
        self._expiry_failures: set[int] = set()  # requests whose expiry failed (logged once)

    # ---- the pipeline's approval stage ---------------------------------------------------

    def policy_for(self, inv: Invocation) -> Policy | None:
        assert inv.spec.operation is not None
        return self._policies.resolve(inv.spec.operation.kind, inv.room, inv.args.get("app"))

    async def gate(self, inv: Invocation) -> bool:
        """True: run now. False: parked as a request waiting for votes (card posted)."""
        policy = self.policy_for(inv)
        if policy is not None and policy.verified_devices_only:
            await self._require_signed_device(inv)
        if policy is None or not policy.needs_votes:
            return True
        if inv.automatic and policy.auto_approve_autoupdates:
            return True
        assert inv.spec.operation is not None
        kind = inv.spec.operation.kind
        app = inv.args.get("app", "")
        busy = await self._operations.lock_holder(app)
        if busy is not None:
            raise Busy(f"busy: {busy.kind} of `{app}` by {busy.holder}; ask again when it is done")
        for other in await self._store.open_requests(inv.room_id):
            if other.app == app and other.operation == kind:
                raise UserError(f"Request #{other.id} already asks to {other.operation} `{app}`; "
                                f"vote on it or `{self._prefix}cancel {other.id}` it first.")
        planned = await inv.spec.operation.planner(inv)
        await self._open(inv, policy, planned)
        return False

    async def _require_signed_device(self, inv: Invocation) -> None:
        why = ("the bot cannot check devices" if self._devices is None else
               await self._devices.unsigned(inv.room_id, inv.event_id, inv.sender))
        if why is not None:
            raise UserError(f"`{inv.spec.name}` here must come from a device its owner has "
                            f"cross-signed; this one was {why}. Verify your session (see "
                            "docs/security.md).")

    async def _open(self, inv: Invocation, policy: Policy,
                    planned: PlannedChange, *, replaces: int | None = None) -> ApprovalRequest:
        request = await self._store.create(
            room_id=inv.room_id, command_event_id=inv.event_id,
            thread_root=inv.reply_to.reply_thread_root, requester=inv.sender,
            command=inv.spec.name, args=inv.args, operation=policy.operation, app=planned.app,
            binding=planned.binding.text, plan_text="\n".join(planned.lines),
            policy=asdict(policy), expires_in=policy.expires_seconds,
        )
        status = "open" if replaces is None else f"open (replaces request #{replaces})"
        card = render(request, policy, None, status, self._prefix)
        card_id = await self._poster.reply(inv.reply_to, card,
                                           key=f"approval/{request.id}/card")
        await self._store.set_card(request.id, card_id)
        await self._audit.append(
            command=f"request #{request.id}", args=f"{policy.operation} {planned.app}",
            decision=Decision.RAN, event_id=card_id, room_id=inv.room_id, sender=inv.sender,
            result=f"opened: {planned.lines[0]}",
        )
        return request

    # ---- votes ----------------------------------------------------------------------------

    async def reaction(self, reaction: IncomingReaction) -> None:
        if reaction.key in YES_KEYS:
            approve = True
        elif reaction.key in NO_KEYS:
            approve = False
        else:
            return
        request = await self._store.by_card(reaction.relates_to)
        if request is None or request.state != OPEN:
            return
        if past_expiry(request):
            await self.evaluate(request)  # expires it; the vote is not recorded
            return
        await self._vote(request, reaction.sender, approve, reaction.event_id, "", "reaction")

    async def redaction(self, redaction: IncomingRedaction) -> None:
        request_id = await self._store.retract(redaction.redacts)
        if request_id is None:
            return
        request = await self._store.get(request_id)
        if request is not None and request.state == OPEN:
            await self._audit.append(
                command=f"vote on #{request_id}", args=f"{request.app}: retracted",
                decision=Decision.RESULT,
                event_id=redaction.event_id, room_id=redaction.room_id, sender=redaction.sender,
                result=f"retracted (reaction {redaction.redacts} redacted)",
            )
            await self.evaluate(request)

    async def vote_command(self, inv: Invocation, approve: bool) -> Reply:
        request = await self._request_in_room(inv)
        if request.state == OPEN and past_expiry(request):
            await self.evaluate(request)  # expires it: the card says so
            request = await self._store.get(request.id) or request
        if request.state == RequestState.EXPIRED:
            raise UserError(f"Request #{request.id} expired at {when(request.expires_at)}: votes "
                            "are closed; ask again if it is still wanted.")
        if request.state != OPEN:
            raise UserError(f"Request #{request.id} is {request.state}: votes are closed.")
        counted = await self._vote(request, inv.sender, approve, inv.event_id,
                                   inv.args.get("reason", ""), "command")
        if not counted:
            return Reply.of(f"That vote on request #{request.id} was already counted.")
        return Reply.of(f"Your {'👍' if approve else '👎'} on request #{request.id} is recorded; "
                        "the card shows the count.")

    async def _vote(self, request: ApprovalRequest, voter: str, approve: bool, event_id: str,
                    reason: str, via: str) -> bool:
        seq = await self._store.next_seq(event_id)
        if seq is None:
            return False  # the same vote event delivered twice
        await self._store.record_vote(
            request.id, Vote(voter, approve, event_id, seq, reason, via)
        )
        choice = "yes" if approve else f"no {reason}".strip()
        await self._audit.append(
            command=f"vote on #{request.id}", args=f"{request.app}: {choice}",
            decision=Decision.RESULT, event_id=event_id, room_id=request.room_id, sender=voter,
            result=f"{'approve' if approve else 'deny'} via {via}",
        )
        await self.evaluate(request)
        return True

    # ---- tally and execution ----------------------------------------------------------------

    def _lock(self, request_id: int) -> asyncio.Lock:
        return self._locks.setdefault(request_id, asyncio.Lock())

    async def evaluate(self, request: ApprovalRequest) -> None:
        async with self._lock(request.id):
            current = await self._store.get(request.id)
            if current is None or current.state != OPEN:
                return
            if past_expiry(current):
                await self._expire(current)
                return
            policy = Policy(**current.policy)
            result = await self._tally(current, policy)
            if result.outcome == Outcome.PENDING:
                await self._edit_card(current, policy, result, "open")
                return
            if result.outcome == Outcome.DENIED:
                names = ", ".join(v.voter for v in result.no)
                if await self._store.transition(current.id, OPEN, RequestState.DENIED,
                                                f"denied by {names}"):
                    closed = await self._store.get(current.id)
                    assert closed is not None
                    await self._edit_card(closed, policy, result, f"denied by {names}")
                    await self._close_audit(closed, "denied", names)
                return
            if await self._store.transition(current.id, OPEN, RUNNING):
                running = await self._store.get(current.id)
                assert running is not None
                approvers = tuple(v.voter for v in result.yes)
                self._running_here.add(running.id)
                await self._edit_card(running, policy, result,
                                      f"approved by {', '.join(approvers) or 'policy'}: running")
                self._tasks.spawn(self._run(running, policy, result, approvers),
                                  name=f"approved request {running.id}")

    async def _tally(self, request: ApprovalRequest, policy: Policy) -> Tally:
        votes = await self._store.votes(request.id)
        room = self._rooms.get(RoomID(request.room_id))
        power = await self._power.power_info(RoomID(request.room_id))
        ineligible: dict[str, str] = {}
        for vote in votes:
            grant = self._roles.resolve(vote.voter, room.config if room else None, power)
            if not grant.has(policy.approver_role):
                homeservers = self._roles.homeservers
                if homeservers is not None and server_of(vote.voter) not in homeservers:
                    ineligible[vote.voter] = f"users of {server_of(vote.voter)} may not vote here"
                else:
                    ineligible[vote.voter] = f"lacks the {policy.approver_role} role"
        if policy.verified_devices_only:
            for vote in latest_per_voter(votes):
                if vote.voter in ineligible:
                    continue
                why = ("the bot cannot check devices" if self._devices is None else
                       await self._devices.unsigned(request.room_id, vote.event_id, vote.voter))
                if why is not None:
                    # Element and js-sdk never encrypt reactions, so they name no device.
                    hint = (f"; reactions are not encrypted, vote with `{self._prefix}approve "
                            f"{request.id}`" if vote.via == "reaction" else "")
                    ineligible[vote.voter] = f"vote {why}{hint}"
        return tally(policy, request.requester, votes, ineligible)

    async def _run(self, request: ApprovalRequest, policy: Policy, result: Tally,
                   approvers: tuple[str, ...]) -> None:
        """Plan again, compare, execute; whatever raises, the request is closed and audited."""
        progress = RunProgress(Closing(
            RequestState.FAILED, "internal error before it ran",
            "could not run: internal error (the details are in the bot's log)"))
        try:
            await self._execute_approved(request, approvers, progress)
        except asyncio.CancelledError:
            progress.closing = Closing(RequestState.INTERRUPTED, "coopbot stopped while it ran",
                                       self._interrupted_status(request))
            raise
        except Exception:
            log.exception("approved request %s: %s", request.id, progress.closing.detail)
        finally:
            await self._close(request, policy, result, progress.closing)
            self._running_here.discard(request.id)
        if progress.replacement is not None:
            inv, planned = progress.replacement
            try:
                fresh = await self._open(inv, policy, planned, replaces=request.id)
            except Exception:
                log.exception("request %s is void; opening its replacement failed", request.id)
                return
            log.info("request %s void (plan changed); request %s replaces it",
                     request.id, fresh.id)

    async def _execute_approved(self, request: ApprovalRequest, approvers: tuple[str, ...],
                                progress: RunProgress) -> None:
        """Hand the request to the Executor with the binding it was approved with; the
        operation checks it under its lock (approvals never plan a second time)."""
        by = ", ".join(approvers) or "policy"
        try:
            inv = await self._invocation(request, approvers)
        except CoopbotError as error:
            progress.closing = Closing(RequestState.FAILED, str(error), f"could not run: {error}")
            return
        # From here the operation may have run: an error means its outcome is unknown.
        progress.closing = Closing(RequestState.INTERRUPTED, "its outcome could not be reported",
                                   self._interrupted_status(request))
        executed = await self._execute(inv)
        if executed.plan_changed is not None:
            why = str(executed.plan_changed)
            progress.closing = Closing(RequestState.VOID, why, f"void: {why}")
            progress.replacement = (inv, executed.plan_changed.fresh)
            return
        ok = executed.ok
        progress.closing = Closing(
            RequestState.DONE if ok else RequestState.FAILED, by,
            f"approved by {by}: {'done' if ok else 'ran and failed'} (see the thread)")

    def _interrupted_status(self, request: ApprovalRequest) -> str:
        return (f"interrupted: coopbot stopped before it recorded the outcome; the thread and "
                f"`{self._prefix}ps {request.app}` show where it stands")

    async def _close(self, request: ApprovalRequest, policy: Policy, result: Tally | None,
                     closing: Closing) -> None:
        """Leave `running`: the state and the audit row first, then the card (which may fail)."""
        try:
            if not await self._store.transition(request.id, RUNNING, closing.state,
                                                closing.detail):
                return
            await self._close_audit(request, closing.state, closing.detail)
        except Exception:
            log.exception("could not record that request %s is %s", request.id, closing.state)
        await self._edit_card(request, policy, result, closing.status)

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
        if not grant.has(spec.role):
            # Power is re-checked at execution too: a requester who lost the role loses the run.
            raise PermissionDenied(spec.name, spec.role)
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

    async def _edit_card(self, request: ApprovalRequest, policy: Policy, result: Tally | None,
                         status: str) -> None:
        if request.card_event_id is None:
            return
        try:
            await self._poster.edit(RoomID(request.room_id), EventID(request.card_event_id),
                                    render(request, policy, result, status, self._prefix))
        except CoopbotError as error:
            log.warning("could not update the card of request %s: %s", request.id, error)
        except Exception:  # the card is a view of the stored state: never worth a crash
            log.exception("could not update the card of request %s", request.id)

    async def _close_audit(self, request: ApprovalRequest, state: str, detail: str) -> None:
        await self._audit.append(
            command=f"request #{request.id}", args=f"{request.operation} {request.app}",
            decision=Decision.RESULT, event_id=request.card_event_id, room_id=request.room_id,
            sender=request.requester, result=f"{state}: {detail}"[:2000],
        )

    # ---- cancel, pending, expiry, restart ----------------------------------------------------

    async def cancel(self, inv: Invocation) -> Reply:
        request = await self._request_in_room(inv)
        top_role = self._roles.order[-1]
        if inv.sender != request.requester and not inv.grant.has(top_role):
            raise UserError(f"Only {request.requester} or an {top_role} can cancel "
                            f"request #{request.id}.")
        if not await self._store.transition(request.id, OPEN, RequestState.CANCELLED,
                                            f"cancelled by {inv.sender}"):
            raise UserError(f"Request #{request.id} is {request.state}; it cannot be cancelled.")
        policy = Policy(**request.policy)
        closed = await self._store.get(request.id)
        assert closed is not None
        await self._edit_card(closed, policy, await self._tally(closed, policy),
                              f"cancelled by {inv.sender}")
        await self._close_audit(closed, "cancelled", inv.sender)
        return Reply.of(f"Request #{request.id} is cancelled.")

    async def pending(self, inv: Invocation) -> Reply:
        requests = await self._store.open_requests(inv.room_id)
        if not requests:
            return Reply.of("No open requests in this room.")
        lines = ["**Open requests:**"]
        for request in requests:
            policy = Policy(**request.policy)
            result = await self._tally(request, policy)
            expires = time.strftime("%H:%M UTC", time.gmtime(request.expires_at))
            lines.append(f"- #{request.id} {request.plan_text.splitlines()[0]} (by "
                         f"{request.requester}; votes {result.progress}; expires {expires})")
        return Reply.of("\n".join(lines))

    async def expire_due(self) -> int:
        expired = 0
        for request in await self._store.open_requests():
            if not past_expiry(request):
                continue
            try:
                async with self._lock(request.id):
                    expired += await self._expire(request)
            except Exception:
                # One broken request must not keep the others from expiring.
                if request.id not in self._expiry_failures:
                    self._expiry_failures.add(request.id)
                    log.exception("could not expire request %s", request.id)
        return expired

    async def _expire(self, request: ApprovalRequest) -> bool:
        """open -> expired (the caller holds the request's lock); False if already closed."""
        if not await self._store.transition(request.id, OPEN, RequestState.EXPIRED, "expired"):
            return False
        closed = await self._store.get(request.id)
        assert closed is not None
        await self._close_audit(closed, RequestState.EXPIRED, "")
        policy = Policy(**closed.policy)
        await self._edit_card(closed, policy, await self._tally_or_none(closed, policy),
                              EXPIRED_STATUS)
        return True

    async def _tally_or_none(self, request: ApprovalRequest, policy: Policy) -> Tally | None:
        """The votes for a closing card; without them if the room's power cannot be read."""
        try:
            return await self._tally(request, policy)
        except CoopbotError as error:
            log.warning("could not count the votes of request %s: %s", request.id, error)
            return None

    async def resolve_interrupted(self) -> int:
        """At start-up: close the requests an earlier run left `running` (it stopped, or could
        not finish reporting) as interrupted, with their card and audit row."""
        resolved = 0
        for request in await self._store.in_state(RUNNING):
            if request.id in self._running_here:
                continue
            try:
                policy = Policy(**request.policy)
                await self._close(request, policy, await self._tally_or_none(request, policy),
                                  Closing(RequestState.INTERRUPTED,
                                          "coopbot stopped before it recorded the outcome",
                                          self._interrupted_status(request)))
            except Exception:
                log.exception("could not close interrupted request %s", request.id)
                continue
            resolved += 1
            log.warning("request %s (%s %s) was left running by an earlier run: interrupted",
                        request.id, request.operation, request.app)
        return resolved

    async def run_expiry(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.expire_due()
            except CoopbotError as error:
                log.warning("expiry check failed: %s", error)
            try:
                await asyncio.wait_for(stop.wait(), EXPIRY_CHECK_SECONDS)
            except TimeoutError:
                pass

    async def catch_up(self) -> None:
        """After a restart: count reactions cast while the bot was down (from the card's
        relations), drop reaction votes whose reaction was redacted meanwhile, re-tally."""
        for request in await self._store.open_requests():
            if request.card_event_id is None:
                continue
            try:
                await self._catch_up(request)
            except CoopbotError as error:
                log.warning("could not catch up votes of request %s: %s", request.id, error)
            except Exception:  # the next request still gets its votes
                log.exception("could not catch up votes of request %s", request.id)

    async def _catch_up(self, request: ApprovalRequest) -> None:
        assert request.card_event_id is not None
        reactions = await self._poster.reactions_to(
            RoomID(request.room_id), EventID(request.card_event_id))
        present = {r.event_id for r in reactions}
        stale = {v.event_id for v in await self._store.votes(request.id)
                 if v.via == "reaction" and v.event_id not in present}
        await self._store.drop_votes_by_event(request.id, stale)
        for reaction in reactions:
            await self.reaction(reaction)
        await self.evaluate(request)

    async def _request_in_room(self, inv: Invocation) -> ApprovalRequest:
        text = inv.args.get("id", "").lstrip("#")
        # ASCII digits within range only ("²".isdigit() is true); bind has checked this already.
        if not (text.isascii() and text.isdigit()) or len(text) > 9:
            raise UserError(
                f"`{shown(text)}` is not a request number; `{self._prefix}pending` lists them.")
        request = await self._store.get(int(text))
        if request is None or request.room_id != inv.room_id:
            raise NotFound(f"There is no request #{text} in this room.")
        return request
