"""Event content the bot sends, and translation of received events into IncomingMessage."""

from __future__ import annotations

import time
from typing import Any

from coopbot.ids import EventID, RoomID, UserID
from coopbot.messages import IncomingMessage, IncomingReaction, IncomingRedaction
from coopbot.replies import Reply


def notice(reply: Reply) -> dict[str, Any]:
    return {
        "msgtype": "m.notice",
        "body": reply.text,
        "format": "org.matrix.custom.html",
        "formatted_body": reply.html,
    }


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


def incoming(room_id: str, source: dict[str, Any], *, during_downtime: bool) -> IncomingMessage:
    content = source.get("content") or {}
    relates = content.get("m.relates_to") or {}
    rel_type = relates.get("rel_type")
    thread_root = relates.get("event_id") if rel_type == "m.thread" else None
    return IncomingMessage(
        room_id=RoomID(room_id),
        event_id=EventID(str(source.get("event_id", ""))),
        sender=UserID(str(source.get("sender", ""))),
        body=str(content.get("body", "")),
        msgtype=str(content.get("msgtype", "")),
        timestamp_ms=int(source.get("origin_server_ts", 0)),
        received_at=time.time(),
        thread_root=EventID(thread_root) if thread_root else None,
        is_edit=rel_type == "m.replace" or "m.new_content" in content,
        during_downtime=during_downtime,
    )


def incoming_reaction(room_id: str, source: dict[str, Any]) -> IncomingReaction | None:
    relates = (source.get("content") or {}).get("m.relates_to") or {}
    if relates.get("rel_type") != "m.annotation" or not relates.get("event_id"):
        return None
    return IncomingReaction(
        room_id=RoomID(room_id),
        event_id=EventID(str(source.get("event_id", ""))),
        sender=UserID(str(source.get("sender", ""))),
        relates_to=EventID(str(relates["event_id"])),
        key=str(relates.get("key", "")),
    )


def incoming_redaction(room_id: str, source: dict[str, Any]) -> IncomingRedaction | None:
    # Room v11 moved `redacts` into the content; older versions have it at the top level.
    redacts = (source.get("content") or {}).get("redacts") or source.get("redacts")
    if not redacts:
        return None
    return IncomingRedaction(
        room_id=RoomID(room_id),
        event_id=EventID(str(source.get("event_id", ""))),
        sender=UserID(str(source.get("sender", ""))),
        redacts=EventID(str(redacts)),
    )
