"""Untrusted event JSON in, the bot's own typed values out: the one place that reads events.

Homeservers validate almost nothing inside an event: any field of `content` (and of
`m.relates_to` at any depth) can be a string, a list, a number, null or missing, and clients
send what they like. Every reader here checks each value's type before using it; an event that
does not fit is dropped (None) with one log line naming the field, never an exception. The
gateway hands only these values on, so nothing past this module sees raw event JSON.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coopbot.ids import EventID, RoomID, UserID
from coopbot.messages import IncomingMessage, IncomingReaction, IncomingRedaction

log = logging.getLogger(__name__)

# The spec caps identifiers at 255 bytes; a whole event at 65,536 bytes.
MAX_ID_BYTES = 255
MAX_BODY_CHARS = 65_536
# Reaction keys are short (an emoji, a word); a long one is not a vote and is never shown.
MAX_REACTION_KEY_CHARS = 64
COMMAND_MSGTYPES = ("m.text", "m.emote", "m.notice")
# Relations a command may carry: a thread, an edit (never run), or none. A reply is not a
# rel_type (it is `m.in_reply_to`); anything else is not a command.
MESSAGE_RELATIONS = (None, "m.thread", "m.replace")


class Unfit(Exception):
    """A field is missing or of the wrong type or shape; the event is dropped."""


@dataclass(frozen=True)
class Tombstone:
    """A room upgrade (m.room.tombstone): the bot may follow it to the replacement room."""

    room_id: RoomID
    sender: UserID
    replacement: RoomID


def message(room_id: RoomID, source: object, *, during_downtime: bool) -> IncomingMessage | None:
    """An m.room.message as the pipeline sees it, or None if it does not fit."""
    try:
        event = _object(source, "event")
        content = _object(event.get("content"), "content")
        msgtype = _text(content.get("msgtype"), "msgtype", 255)
        if msgtype not in COMMAND_MSGTYPES:
            log.debug("event %s: msgtype %s is not a command", event.get("event_id"), msgtype)
            return None
        body = _text(content.get("body"), "body", MAX_BODY_CHARS)
        _optional_text(content, "format")
        _optional_text(content, "formatted_body")
        rel_type, thread_root = _message_relation(content)
        return IncomingMessage(
            room_id=room_id,
            event_id=event_id_of(event),
            sender=sender_of(event),
            body=body,
            msgtype=msgtype,
            timestamp_ms=_timestamp(event),
            received_at=time.time(),
            thread_root=thread_root,
            is_edit=rel_type == "m.replace" or "m.new_content" in content,
            during_downtime=during_downtime,
        )
    except Unfit as unfit:
        _dropped(source, unfit)
        return None


def reaction(room_id: RoomID, source: object) -> IncomingReaction | None:
    """An m.annotation (emoji reaction), or None."""
    try:
        event = _object(source, "event")
        relates = _object(_object(event.get("content"), "content").get("m.relates_to"),
                          "m.relates_to")
        if relates.get("rel_type") != "m.annotation":
            raise Unfit("m.relates_to.rel_type is not m.annotation")
        return IncomingReaction(
            room_id=room_id,
            event_id=event_id_of(event),
            sender=sender_of(event),
            relates_to=_event_id(relates.get("event_id"), "m.relates_to.event_id"),
            key=_text(relates.get("key"), "m.relates_to.key", MAX_REACTION_KEY_CHARS),
        )
    except Unfit as unfit:
        _dropped(source, unfit)
        return None


def redaction(room_id: RoomID, source: object) -> IncomingRedaction | None:
    """An m.room.redaction, or None. Room v11 moved `redacts` into the content; older
    versions have it at the top level."""
    try:
        event = _object(source, "event")
        content = event.get("content")
        redacts = content.get("redacts") if isinstance(content, Mapping) else None
        if redacts is None:
            redacts = event.get("redacts")
        return IncomingRedaction(
            room_id=room_id,
            event_id=event_id_of(event),
            sender=sender_of(event),
            redacts=_event_id(redacts, "redacts"),
        )
    except Unfit as unfit:
        _dropped(source, unfit)
        return None


def tombstone(room_id: RoomID, source: object) -> Tombstone | None:
    try:
        event = _object(source, "event")
        content = _object(event.get("content"), "content")
        return Tombstone(room_id=room_id, sender=sender_of(event),
                         replacement=_room_id(content.get("replacement_room"),
                                              "replacement_room"))
    except Unfit as unfit:
        _dropped(source, unfit)
        return None


def state_content(source: object) -> Mapping[str, Any] | None:
    """The content of a state event when it is an object (power levels, create), else None."""
    if not isinstance(source, Mapping):
        return None
    content = source.get("content")
    return content if isinstance(content, Mapping) else None


def event_type(source: object) -> str | None:
    if not isinstance(source, Mapping):
        return None
    kind = source.get("type")
    return kind if isinstance(kind, str) else None


def is_state(source: object) -> bool:
    return isinstance(source, Mapping) and isinstance(source.get("state_key"), str)


def user_id(value: object) -> UserID | None:
    """An MXID (`@local:server`) when `value` is one, else None."""
    try:
        return _user_id(value, "user id")
    except Unfit:
        return None


# ---- fields -----------------------------------------------------------------------------------


def event_id_of(event: Mapping[str, Any]) -> EventID:
    return _event_id(event.get("event_id"), "event_id")


def sender_of(event: Mapping[str, Any]) -> UserID:
    return _user_id(event.get("sender"), "sender")


def _message_relation(content: Mapping[str, Any]) -> tuple[str | None, EventID | None]:
    """(rel_type, thread root) of a message; Unfit for relations a command never has."""
    if "m.relates_to" not in content:
        return None, None
    relates = _object(content["m.relates_to"], "m.relates_to")
    rel_type = relates.get("rel_type")
    if rel_type is not None and not isinstance(rel_type, str):
        raise Unfit(f"m.relates_to.rel_type is {_kind(rel_type)}")
    if rel_type not in MESSAGE_RELATIONS:
        raise Unfit(f"relation {rel_type[:40]!r} is not one a command has")
    if "m.in_reply_to" in relates:
        reply = _object(relates["m.in_reply_to"], "m.in_reply_to")
        _event_id(reply.get("event_id"), "m.in_reply_to.event_id")
    if rel_type is None:
        return None, None
    target = _event_id(relates.get("event_id"), "m.relates_to.event_id")
    return rel_type, target if rel_type == "m.thread" else None


def _timestamp(event: Mapping[str, Any]) -> int:
    value = event.get("origin_server_ts")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Unfit(f"origin_server_ts is {_kind(value)}")
    return value


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise Unfit(f"{what} is {_kind(value)}, not an object")
    return value


def _text(value: object, what: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise Unfit(f"{what} is {_kind(value)}, not a string")
    if len(value) > max_chars:
        raise Unfit(f"{what} is longer than {max_chars} characters")
    try:
        # JSON can carry lone surrogates (`\ud800`), which no UTF-8 store or log accepts.
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Unfit(f"{what} is not valid Unicode") from None
    return value


def _optional_text(content: Mapping[str, Any], key: str) -> None:
    if key in content:
        _text(content[key], key, MAX_BODY_CHARS)


def _identifier(value: object, what: str, sigil: str) -> str:
    text = _text(value, what, MAX_ID_BYTES)
    if (not text.startswith(sigil) or len(text) < 2 or len(text.encode()) > MAX_ID_BYTES
            or not text.isprintable() or any(c.isspace() for c in text)):
        raise Unfit(f"{what} is not a {sigil}-identifier")
    return text


def _event_id(value: object, what: str) -> EventID:
    return EventID(_identifier(value, what, "$"))


def _room_id(value: object, what: str) -> RoomID:
    return RoomID(_identifier(value, what, "!"))


def _user_id(value: object, what: str) -> UserID:
    text = _identifier(value, what, "@")
    if ":" not in text:
        raise Unfit(f"{what} has no server part")
    return UserID(text)


def _kind(value: object) -> str:
    return "missing" if value is None else type(value).__name__


def _dropped(source: object, unfit: Unfit) -> None:
    event_id = source.get("event_id") if isinstance(source, Mapping) else None
    shown = event_id if isinstance(event_id, str) and len(event_id) <= MAX_ID_BYTES else "?"
    log.info("dropped event %s: %s", shown, unfit)
