"""A request's record in the room and the audit log: opening it (stored, its card posted, the
audit row), editing its card as the votes and the state change, and the row that closes it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict

from coopbot.approvals.card import render
from coopbot.approvals.policy import Policy
from coopbot.approvals.tally import Tally
from coopbot.errors import CoopbotError
from coopbot.ids import EventID, RoomID
from coopbot.invocation import Invocation
from coopbot.operations.plan import PlannedChange
from coopbot.ports import CardPoster
from coopbot.store.approvals import ApprovalRequest, ApprovalStore
from coopbot.store.audit import AuditLog, Decision

log = logging.getLogger(__name__)

CountOrNone = Callable[[ApprovalRequest, Policy], Awaitable[Tally | None]]


class RequestRecord:
    def __init__(self, *, store: ApprovalStore, audit: AuditLog, poster: CardPoster,
                 prefix: str, count: CountOrNone | None = None) -> None:
        self._count = count
        self._store = store
        self._audit = audit
        self._poster = poster
        self._prefix = prefix

    async def open(self, inv: Invocation, policy: Policy,
                   planned: PlannedChange, *, replaces: int | None = None) -> ApprovalRequest:
        request = await self._store.create(
            room_id=inv.room_id, command_event_id=inv.event_id,
            thread_root=inv.reply_to.reply_thread_root, requester=inv.sender,
            command=inv.spec.name, args=inv.args, operation=policy.operation, app=planned.app,
            binding=planned.binding.text, plan_text="\n".join(planned.lines),
            policy=asdict(policy), expires_in=policy.deadline_seconds,
        )
        status = "open" if replaces is None else f"open (replaces request #{replaces})"
        # The first view already names who may vote (the tally of no votes).
        first = await self._count(request, policy) if self._count is not None else None
        card = render(request, policy, first, status, self._prefix)
        card_id = await self._poster.reply(inv.reply_to, card,
                                           key=f"approval/{request.id}/card")
        await self._store.set_card(request.id, card_id)
        await self._audit.append(
            command=f"request #{request.id}", args=f"{policy.operation} {planned.app}",
            decision=Decision.RAN, event_id=card_id, room_id=inv.room_id, sender=inv.sender,
            result=f"opened: {planned.lines[0]}",
        )
        return request

    async def edit_card(self, request: ApprovalRequest, policy: Policy, result: Tally | None,
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

    async def close_audit(self, request: ApprovalRequest, state: str, detail: str) -> None:
        await self._audit.append(
            command=f"request #{request.id}", args=f"{request.operation} {request.app}",
            decision=Decision.RESULT, event_id=request.card_event_id, room_id=request.room_id,
            sender=request.requester, result=f"{state}: {detail}"[:2000],
        )
