"""Counting a request's votes as things stand now (each voter's role in the room, their
homeserver, the device a vote came from when the policy asks for cross-signed ones), and
deciding on it: still open, denied, expired, or approved and handed to the run."""

from __future__ import annotations

import logging

from coopbot.approvals.electorate import Voters
from coopbot.approvals.expiry import Expiry
from coopbot.approvals.inflight import InFlight, past_expiry
from coopbot.approvals.policy import Policy
from coopbot.approvals.record import RequestRecord
from coopbot.approvals.run import ApprovedRun
from coopbot.approvals.tally import Outcome, Tally, latest_per_voter, tally
from coopbot.errors import CoopbotError
from coopbot.ids import RoomID, server_of
from coopbot.ports import DeviceCheck, PowerSource
from coopbot.roles import RoleResolver
from coopbot.rooms import RoomDirectory
from coopbot.store.approvals import OPEN, ApprovalRequest, ApprovalStore, RequestState

log = logging.getLogger(__name__)


class VoteCount:
    """The tally of a request's stored votes, with every voter's eligibility checked now."""

    def __init__(self, *, store: ApprovalStore, roles: RoleResolver, power: PowerSource,
                 rooms: RoomDirectory, prefix: str, devices: DeviceCheck | None,
                 voters: Voters) -> None:
        self._voters = voters
        self._store = store
        self._roles = roles
        self._power = power
        self._rooms = rooms
        self._prefix = prefix
        self._devices = devices

    async def count(self, request: ApprovalRequest, policy: Policy, *,
                    deadline_passed: bool = False) -> Tally:
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
        room_config = room.config if room else None
        electorate = self._voters.electorate(policy, request.requester, room_config, power,
                                             self._roles)
        organisations = self._voters.organisations
        organisation_of: dict[str, str] = {v.voter: o for v in votes
                           if (o := organisations.of(v.voter)) is not None}
        return tally(policy, request.requester, votes, ineligible, electorate=electorate,
                     organisation_of=organisation_of, deadline_passed=deadline_passed)

    async def count_or_none(self, request: ApprovalRequest, policy: Policy) -> Tally | None:
        """The votes for a closing card; without them if the room's power cannot be read."""
        try:
            return await self.count(request, policy)
        except CoopbotError as error:
            log.warning("could not count the votes of request %s: %s", request.id, error)
            return None


class Evaluation:
    """After every vote (and at catch-up): the request's fate, decided under its lock."""

    def __init__(self, *, store: ApprovalStore, inflight: InFlight, counts: VoteCount,
                 record: RequestRecord, expiry: Expiry, run: ApprovedRun) -> None:
        self._store = store
        self._inflight = inflight
        self._counts = counts
        self._record = record
        self._expiry = expiry
        self._run = run

    async def evaluate(self, request: ApprovalRequest) -> None:
        async with self._inflight.lock(request.id):
            current = await self._store.get(request.id)
            if current is None or current.state != OPEN:
                return
            if past_expiry(current):
                await self._expiry.expire(current)
                return
            policy = Policy(**current.policy)
            result = await self._counts.count(current, policy)
            await self._decide(current, policy, result)

    async def _decide(self, current: ApprovalRequest, policy: Policy, result: Tally) -> None:
        if result.outcome == Outcome.PENDING:
            await self._record.edit_card(current, policy, result, "open")
            return
        if result.outcome in (Outcome.DENIED, Outcome.REJECTED):
            if result.outcome == Outcome.DENIED:
                names = ", ".join(v.voter for v in result.no)
                status, audit = f"denied by {names}", names
            else:
                audit = f"everyone has voted: {result.progress}"
                status = f"not approved: {audit}"
            if await self._store.transition(current.id, OPEN, RequestState.DENIED, status):
                closed = await self._store.get(current.id)
                assert closed is not None
                await self._record.edit_card(closed, policy, result, status)
                await self._record.close_audit(closed, "denied", audit)
            return
        await self._run.begin(current, policy, result)
