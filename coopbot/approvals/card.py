"""The request card: what is asked, under which policy, and the votes so far. It is edited in
place as votes arrive, so the room has one message per request, not one per vote."""

from __future__ import annotations

import time

from coopbot.approvals.policy import Policy
from coopbot.approvals.tally import SYMBOL, Tally
from coopbot.echo import shown
from coopbot.replies import Reply
from coopbot.store.approvals import ApprovalRequest, Vote

YES_KEYS = ("👍", "👍️", "👍🏻", "👍🏼", "👍🏽", "👍🏾", "👍🏿", "+1", "✅")
# A vote's reason is a member's free text: shown short and with its invisible characters spelled.
REASON_SHOWN = 120
NO_KEYS = ("👎", "👎️", "👎🏻", "👎🏼", "👎🏽", "👎🏾", "👎🏿", "-1", "❌")
# The shrug in every skin tone and gender Element's picker offers.
ASIDE_KEYS = ("🤷️", *(
    f"🤷{tone}{gender}" for tone in ("", "🏻", "🏼", "🏽", "🏾", "🏿")
    for gender in ("", "\u200d♀️", "\u200d♂️", "\u200d♀", "\u200d♂")))


def when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


def render(request: ApprovalRequest, policy: Policy, result: Tally | None,
           status: str, prefix: str = "!") -> Reply:
    lines = [f"**Request #{request.id}:** {request.plan_text.splitlines()[0]}"]
    lines += request.plan_text.splitlines()[1:]
    lines.append(f"Requested by {request.requester}. Needs {policy.describe()}.")
    if request.state == "open":
        deadline = ("Decided by lazy consensus" if policy.lazy_seconds else "Expires")
        lines.append(
            f"Vote: react 👍 (consent), 🤷 (stand aside) or 👎 (block) to this message, or "
            f"`{prefix}approve {request.id}` / `{prefix}abstain {request.id}` / "
            f"`{prefix}deny {request.id}`, each with an optional reason. "
            f"{deadline} {when(request.expires_at)}."
        )
    if result is not None:
        lines.append(f"**Votes: {result.progress}**" + _votes(result))
        if request.state == "open" and result.not_voted:
            lines.append(f"Not voted yet: {', '.join(result.waiting_for())}.")
        for vote, why in result.ignored:
            lines.append(f"Not counted: {vote.voter} ({why}).")
    lines.append(f"**Status:** {status}")
    return Reply.of("\n".join(lines))


def _vote(vote: Vote) -> str:
    reason = f" ({shown(vote.reason, REASON_SHOWN)})" if vote.reason else ""
    return f"{SYMBOL[vote.choice]} {vote.voter}{reason}"


def _votes(result: Tally) -> str:
    if result.by_organisation:
        shown_units = [f"{SYMBOL[u.choice]} {u.name} ({', '.join(_vote(v) for v in u.votes)})"
                       for u in result.units]
    else:
        shown_units = [_vote(u.votes[0]) for u in result.units]
    return ": " + ", ".join(shown_units) if shown_units else ""
