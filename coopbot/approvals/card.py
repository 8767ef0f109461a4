"""The request card: what is asked, under which policy, and the votes so far. It is edited in
place as votes arrive, so the room has one message per request, not one per vote."""

from __future__ import annotations

import time

from coopbot.approvals.policy import Policy
from coopbot.approvals.tally import Tally
from coopbot.echo import shown
from coopbot.replies import Reply
from coopbot.store.approvals import ApprovalRequest

YES_KEYS = ("👍", "👍️", "👍🏻", "👍🏼", "👍🏽", "👍🏾", "👍🏿", "+1", "✅")
# A vote's reason is a member's free text: shown short and with its invisible characters spelled.
REASON_SHOWN = 120
NO_KEYS = ("👎", "👎️", "👎🏻", "👎🏼", "👎🏽", "👎🏾", "👎🏿", "-1", "❌")


def when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


def render(request: ApprovalRequest, policy: Policy, result: Tally | None,
           status: str, prefix: str = "!") -> Reply:
    lines = [f"**Request #{request.id}:** {request.plan_text.splitlines()[0]}"]
    lines += request.plan_text.splitlines()[1:]
    lines.append(f"Requested by {request.requester}. Needs {policy.describe()}.")
    if request.state == "open":
        lines.append(
            f"Vote: react 👍 or 👎 to this message, or `{prefix}approve {request.id}` / "
            f"`{prefix}deny {request.id} [reason]`. Expires {when(request.expires_at)}."
        )
    if result is not None:
        votes = [f"👍 {v.voter}" for v in result.yes] + [
            f"👎 {v.voter}" + (f" ({shown(v.reason, REASON_SHOWN)})" if v.reason else "")
            for v in result.no
        ]
        lines.append(f"**Votes: {result.progress}**" + (": " + ", ".join(votes) if votes else ""))
        for vote, why in result.ignored:
            lines.append(f"Not counted: {vote.voter} ({why}).")
    lines.append(f"**Status:** {status}")
    return Reply.of("\n".join(lines))
