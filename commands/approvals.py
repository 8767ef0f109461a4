"""Approval commands: approve, abstain (stand aside), deny, cancel, pending; and audit, the
record of who did what."""

from __future__ import annotations

import time

from coopbot.approvals.service import Approvals
from coopbot.args import APP, REQUEST_ID, TEXT
from coopbot.echo import shown
from coopbot.invocation import Invocation
from coopbot.registry import Arg, CommandSpec
from coopbot.replies import Reply
from coopbot.store.audit import AuditLog

AUDIT_DEFAULT = 20
AUDIT_MAX = 200
# Audit rows hold what members typed: each row is cut so that a huge command stays one line.
AUDIT_FIELD_LIMIT = 200

AUDIT_APP = Arg("app", optional=True, kind=APP, help="only rows naming this app")
AUDIT_ROWS = Arg.number("n", 1, AUDIT_MAX, optional=True, help=f"rows, default {AUDIT_DEFAULT}")


class ApprovalCommands:
    def __init__(self, approvals: Approvals, audit: AuditLog, *, member_role: str,
                 audit_role: str) -> None:
        self._approvals = approvals
        self._audit = audit
        self._member = member_role
        self._audit_role = audit_role

    def specs(self) -> list[CommandSpec]:
        request_id = Arg("id", help="the request number shown on its card", kind=REQUEST_ID)
        reason = Arg("reason", optional=True, rest=True, kind=TEXT)
        return [
            CommandSpec("approve", "consent to a request (same as 👍 on its card)", self._member,
                        self.approve, args=(request_id, reason),
                        details="Your role is checked again when votes are counted.",
                        examples=("!approve 3",)),
            CommandSpec("abstain", "stand aside on a request (same as 🤷 on its card): you "
                        "take part without consenting or blocking", self._member,
                        self.abstain, args=(request_id, reason), aliases=("standaside",),
                        details="A stand aside counts towards the policy's participation, "
                        "never as consent or block.",
                        examples=("!abstain 3", "!standaside 3 fine by us, not our server")),
            CommandSpec("deny", "block a request (same as 👎 on its card)", self._member,
                        self.deny, args=(request_id, reason),
                        examples=("!deny 3 not during the AGM",)),
            CommandSpec("cancel", "cancel an open request (its requester or an admin)",
                        self._member, self.cancel, args=(request_id,)),
            CommandSpec("pending", "open requests in this room, their votes and who has not "
                        "voted yet", self._member,
                        self.pending),
            CommandSpec("audit", "who asked, approved and ran what, with results",
                        self._audit_role, self.audit,
                        args=(AUDIT_APP, AUDIT_ROWS),
                        examples=("!audit", "!audit blog.example.org 50")),
        ]

    async def approve(self, inv: Invocation) -> Reply:
        return await self._approvals.vote_command(inv, approve=True)

    async def abstain(self, inv: Invocation) -> Reply:
        return await self._approvals.vote_command(inv, approve=None)

    async def deny(self, inv: Invocation) -> Reply:
        return await self._approvals.vote_command(inv, approve=False)

    async def cancel(self, inv: Invocation) -> Reply:
        return await self._approvals.cancel(inv)

    async def pending(self, inv: Invocation) -> Reply:
        return await self._approvals.pending(inv)

    async def audit(self, inv: Invocation) -> Reply:
        app = inv.arg("app")
        count_text = inv.arg("n")
        if app is not None and app.isdigit() and count_text is None:
            # `!audit 50`: a lone number is the row count, checked as such.
            count_text = AUDIT_ROWS.check(app, inv.spec.name, inv.spec.usage())
            app = None
        count = int(count_text) if count_text else AUDIT_DEFAULT
        rows = await self._audit.recent(room_id=inv.room_id, limit=count, mentioning=app)
        if not rows:
            return Reply.of("Nothing in the audit log" + (f" for `{app}`." if app else "."))
        lines = []
        for row in reversed(rows):
            when = time.strftime("%m-%d %H:%M:%S", time.gmtime(row.at))
            what = shown(f"{row.command} {row.args}".strip(), AUDIT_FIELD_LIMIT, markup=False)
            outcome = shown(" ".join(row.result.split("\n")), AUDIT_FIELD_LIMIT, markup=False)
            result = f" -> {outcome}" if row.result else ""
            op = f" [op {row.operation_id}]" if row.operation_id else ""
            lines.append(f"{when} {row.sender} {what}: {row.decision}{result}{op} ({row.event_id})")
        naming = f" naming `{app}`" if app else ""
        title = f"**Audit log** ({len(rows)} newest rows{naming}):"
        return Reply.preformatted(title, "\n".join(lines))
