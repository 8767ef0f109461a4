"""Approvals: the pipeline's approval stage, voting, and running an approved plan exactly once.

Flow: the gate parks an operation under a policy as a request with a card bound to its plan.
Votes (consent 👍, stand aside 🤷, block 👎) arrive as reactions on the card or commands; each
vote is stored, and the tally is recomputed from the stored votes and every voter's role *now*,
per person or per member organisation. When the quorum is
reached the request moves to `running` in one conditional UPDATE (exactly once) and is handed
to the Executor with the binding it was approved with; the operation, under its lock, runs only
an identical plan. If the plan changed, the request is void and a fresh card asks again.

Every path out of `running` ends in a closed state with its audit row, whatever raises on the
way; requests an earlier run left `running` are closed as `interrupted` at start-up. A request
past its expiry time is expired by whichever comes first: the timer or a vote arriving.

This module only composes the parts, one idea each:

    gate.py      the pipeline's approval stage (opens a request)
    votes.py     votes from reactions, commands and redactions
    tallying.py  counting with role and device checks, and deciding on a request
    run.py       running an approved request and closing it on every path
    replies.py   the answers to `!approve` / `!abstain` / `!deny`, `!cancel`, `!pending`
    expiry.py    the deadline: lazy consensus passes, or the request expires
    reminders.py the one reminder of who has not voted
    electorate.py, organisations.py  who could vote (people, member organisations)
    restart.py   interrupted requests and the votes cast while the bot was down
    record.py    a request's card and audit rows; inflight.py: the locks the parts share
"""

from __future__ import annotations

import asyncio

from coopbot.approvals.electorate import Voters
from coopbot.approvals.expiry import Expiry, run_expiry
from coopbot.approvals.gate import Gate
from coopbot.approvals.inflight import InFlight
from coopbot.approvals.policy import Policy, PolicyResolver
from coopbot.approvals.record import RequestRecord
from coopbot.approvals.reminders import Reminders
from coopbot.approvals.replies import CommandReplies
from coopbot.approvals.restart import Restart
from coopbot.approvals.run import ApprovedRun, Execute
from coopbot.approvals.tallying import Evaluation, VoteCount
from coopbot.approvals.votes import Votes
from coopbot.invocation import Invocation
from coopbot.messages import IncomingReaction, IncomingRedaction
from coopbot.ports import CardPoster, DeviceCheck, PowerSource
from coopbot.registry import CommandRegistry
from coopbot.replies import Reply
from coopbot.roles import RoleResolver
from coopbot.rooms import RoomDirectory
from coopbot.status_message import CommandStatuses
from coopbot.store.approvals import ApprovalStore
from coopbot.store.audit import AuditLog
from coopbot.store.operations import OperationStore
from coopbot.tasks import TaskGroup


class Approvals:
    def __init__(
        self, *, store: ApprovalStore, policies: PolicyResolver, roles: RoleResolver,
        power: PowerSource, rooms: RoomDirectory, registry: CommandRegistry,
        operations: OperationStore, audit: AuditLog, poster: CardPoster, execute: Execute,
        statuses: CommandStatuses, tasks: TaskGroup, prefix: str = "!", bot_user_id: str = "",
        devices: DeviceCheck | None = None, voters: Voters | None = None,
    ) -> None:
        inflight = InFlight()
        voters = voters or Voters.none()
        counts = VoteCount(store=store, roles=roles, power=power, rooms=rooms, prefix=prefix,
                           devices=devices, voters=voters)
        record = RequestRecord(store=store, audit=audit, poster=poster, prefix=prefix,
                               count=counts.count_or_none)
        run = ApprovedRun(
            store=store, inflight=inflight, record=record, roles=roles, power=power,
            rooms=rooms, registry=registry, execute=execute, statuses=statuses, tasks=tasks,
            prefix=prefix, bot_user_id=bot_user_id)
        self._expiry = Expiry(store=store, inflight=inflight, record=record, counts=counts,
                              run=run)
        self._reminders = Reminders(store=store, poster=poster, counts=counts, voters=voters,
                                    prefix=prefix)
        evaluation = Evaluation(store=store, inflight=inflight, counts=counts, record=record,
                                expiry=self._expiry, run=run)
        self._gate = Gate(store=store, policies=policies, operations=operations, record=record,
                          prefix=prefix, devices=devices)
        self._votes = Votes(store=store, audit=audit, evaluation=evaluation)
        self._replies = CommandReplies(store=store, roles=roles, counts=counts, record=record,
                                       votes=self._votes, evaluation=evaluation, prefix=prefix)
        self._restart = Restart(store=store, inflight=inflight, poster=poster, counts=counts,
                                votes=self._votes, evaluation=evaluation, run=run)

    # The pipeline's approval stage.
    def policy_for(self, inv: Invocation) -> Policy | None:
        return self._gate.policy_for(inv)

    async def gate(self, inv: Invocation) -> bool:
        """True: run now. False: parked as a request waiting for votes (card posted)."""
        return await self._gate.gate(inv)

    # Votes from the room.
    async def reaction(self, reaction: IncomingReaction) -> None:
        await self._votes.reaction(reaction)

    async def redaction(self, redaction: IncomingRedaction) -> None:
        await self._votes.redaction(redaction)

    # The approval commands.
    async def vote_command(self, inv: Invocation, approve: bool | None) -> Reply:
        """approve: True consent, False block, None stand aside."""
        return await self._replies.vote_command(inv, approve)

    async def cancel(self, inv: Invocation) -> Reply:
        return await self._replies.cancel(inv)

    async def pending(self, inv: Invocation) -> Reply:
        return await self._replies.pending(inv)

    # Upkeep: expiry, and what a restart finds.
    async def expire_due(self) -> int:
        """The timer's work: reminders that are due, then requests past their deadline."""
        await self._reminders.remind_due()
        return await self._expiry.expire_due()

    async def run_expiry(self, stop: asyncio.Event) -> None:
        # Looked up at every check, not once: whatever `expire_due` is then is what runs.
        await run_expiry(lambda: self.expire_due(), stop)

    async def resolve_interrupted(self) -> int:
        return await self._restart.resolve_interrupted()

    async def catch_up(self) -> None:
        await self._restart.catch_up()
