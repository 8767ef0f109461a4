"""Event content the bot sends (received events are read in coopbot/matrix/events.py)."""

from __future__ import annotations

from typing import Any

from coopbot.ids import EventID
from coopbot.replies import Reply


def notice(reply: Reply) -> dict[str, Any]:
    content: dict[str, Any] = {
        "msgtype": "m.notice",
        "body": reply.text,
        "format": "org.matrix.custom.html",
        "formatted_body": reply.html,
    }
    if reply.mentions is not None:
        content["m.mentions"] = {"user_ids": list(reply.mentions)}
    return content


def in_thread(content: dict[str, Any], root: EventID, reply_to: EventID) -> dict[str, Any]:
    # is_falling_back lets clients without thread support show it as a plain reply.
    content["m.relates_to"] = {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": reply_to},
    }
    return content


def edit_of(original: EventID, reply: Reply) -> dict[str, Any]:
    new = notice(reply)
    return {
        **notice(Reply(text=f"* {reply.text}", html=f"* {reply.html}")),
        "m.new_content": new,
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    }
