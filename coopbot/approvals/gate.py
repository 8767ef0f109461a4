"""The pipeline's approval stage: an operation under a policy that needs votes is parked as a
request bound to its plan (and its card posted); anything else runs at once."""

from __future__ import annotations

from coopbot.approvals.policy import Policy, PolicyResolver
from coopbot.approvals.record import RequestRecord
from coopbot.errors import Busy, UserError
from coopbot.invocation import Invocation
from coopbot.ports import DeviceCheck
from coopbot.store.approvals import ApprovalStore
from coopbot.store.operations import OperationStore


class Gate:
    def __init__(self, *, store: ApprovalStore, policies: PolicyResolver,
                 operations: OperationStore, record: RequestRecord, prefix: str,
                 devices: DeviceCheck | None) -> None:
        self._store = store
        self._policies = policies
        self._operations = operations
        self._record = record
        self._prefix = prefix
        self._devices = devices

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
        await self._record.open(inv, policy, planned)
        return False

    async def _require_signed_device(self, inv: Invocation) -> None:
        why = ("the bot cannot check devices" if self._devices is None else
               await self._devices.unsigned(inv.room_id, inv.event_id, inv.sender))
        if why is not None:
            raise UserError(f"`{inv.spec.name}` here must come from a device its owner has "
                            f"cross-signed; this one was {why}. Verify your session (see "
                            "docs/security.md).")
