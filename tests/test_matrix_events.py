"""Reading untrusted events: every shape gives a typed value or None, never an exception.

Property-based (hypothesis) over arbitrary JSON at every depth, plus examples of the shapes
real clients send. The gateway's dispatch is fuzzed too, through nio's own event parser.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import nio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coopbot.config import InviteConfig, MatrixConfig
from coopbot.ids import RoomID, UserID
from coopbot.matrix import events
from coopbot.matrix.gateway import MatrixGateway
from coopbot.messages import IncomingMessage, IncomingReaction, IncomingRedaction
from coopbot.roles import PowerInfo

ROOM = RoomID("!room:localhost")

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
                | st.text(max_size=40))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=20,
)
# Values that look almost right are the interesting ones: ids with the right sigil, known keys.
near_ids = st.sampled_from(["$abc", "$", "$ x", "@a:b", "!r:b", "", "$\u200bzw", "$" + "x" * 300])
relation_types = st.sampled_from(["m.thread", "m.replace", "m.annotation", "m.reference", ""])
relates = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={
        "rel_type": relation_types | json_values,
        "event_id": near_ids | json_values,
        "key": st.text(max_size=80) | json_values,
        "m.in_reply_to": st.fixed_dictionaries({}, optional={"event_id": near_ids | json_values})
        | json_values,
        "is_falling_back": json_values,
    }),
)
contents = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={
        "msgtype": st.sampled_from(["m.text", "m.notice", "m.emote", "m.image"]) | json_values,
        "body": st.text(max_size=80) | json_values,
        "format": json_values,
        "formatted_body": json_values,
        "m.relates_to": relates,
        "m.new_content": json_values,
        "redacts": near_ids | json_values,
        "replacement_room": near_ids | json_values,
        "users": json_values,
        "users_default": json_values,
        "room_version": json_values,
        "additional_creators": json_values,
    }),
)
sources = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"content": contents},
        optional={
            "type": st.sampled_from(["m.room.message", "m.reaction", "m.room.redaction",
                                     "m.room.tombstone", "m.room.power_levels",
                                     "m.room.create"]) | json_values,
            "event_id": near_ids | json_values,
            "sender": near_ids | json_values,
            "origin_server_ts": st.integers() | json_values,
            "state_key": st.just("") | json_values,
            "redacts": near_ids | json_values,
        },
    ),
)


@settings(max_examples=600, deadline=None)
@given(source=sources)
def test_no_shape_of_event_raises(source: Any) -> None:
    message = events.message(ROOM, source, during_downtime=False)
    assert message is None or isinstance(message, IncomingMessage)
    if message is not None:
        assert isinstance(message.body, str) and message.event_id.startswith("$")
        message.body.encode("utf-8")  # never a lone surrogate
        assert message.sender.startswith("@") and isinstance(message.timestamp_ms, int)
    reaction = events.reaction(ROOM, source)
    assert reaction is None or isinstance(reaction, IncomingReaction)
    if reaction is not None:
        assert isinstance(reaction.key, str) and reaction.relates_to.startswith("$")
    redaction = events.redaction(ROOM, source)
    assert redaction is None or isinstance(redaction, IncomingRedaction)
    tombstone = events.tombstone(ROOM, source)
    assert tombstone is None or tombstone.replacement.startswith("!")
    content = events.state_content(source)
    power = PowerInfo.from_state(content, content, events.user_id(
        source.get("sender") if isinstance(source, dict) else None))
    assert isinstance(power.level_of("@someone:localhost"), float)
    assert all(isinstance(level, int) for level in power.users.values())


def message_event(content: Any, **fields: Any) -> dict[str, Any]:
    return {"type": "m.room.message", "event_id": "$e1", "sender": "@carol:localhost",
            "origin_server_ts": 1_700_000_000_000, "content": content, **fields}


def test_a_plain_command_a_thread_reply_and_an_edit() -> None:
    plain = events.message(ROOM, message_event({"msgtype": "m.text", "body": "!ping"}),
                           during_downtime=False)
    assert plain is not None and plain.body == "!ping" and plain.thread_root is None
    threaded = events.message(ROOM, message_event({
        "msgtype": "m.text", "body": "!ps",
        "m.relates_to": {"rel_type": "m.thread", "event_id": "$root",
                         "m.in_reply_to": {"event_id": "$root"}, "is_falling_back": True},
    }), during_downtime=False)
    assert threaded is not None and threaded.thread_root == "$root"
    reply = events.message(ROOM, message_event({
        "msgtype": "m.text", "body": "> <@a:b> hi\n\n!ping",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$other"}},
    }), during_downtime=False)
    assert reply is not None and reply.thread_root is None and not reply.is_edit
    edit = events.message(ROOM, message_event({
        "msgtype": "m.text", "body": "* !deploy x", "m.new_content": {"body": "!deploy x"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$e0"},
    }), during_downtime=False)
    assert edit is not None and edit.is_edit


@pytest.mark.parametrize("relation", [
    "m.thread", ["m.thread"], 5, {"rel_type": 5}, {"rel_type": "m.thread", "event_id": 5},
    {"rel_type": "m.thread", "event_id": {"id": "$x"}}, {"rel_type": "m.thread"},
    {"m.in_reply_to": "$x"}, {"m.in_reply_to": {"event_id": ["$x"]}},
    {"rel_type": "m.reference", "event_id": "$x"}, {"rel_type": "m.annotation",
                                                    "event_id": "$x", "key": "👍"},
])
def test_messages_with_relations_of_the_wrong_shape_are_dropped(
    relation: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="coopbot.matrix.events")
    source = message_event({"msgtype": "m.text", "body": "!ping", "m.relates_to": relation})
    assert events.message(ROOM, source, during_downtime=False) is None
    assert [r.getMessage() for r in caplog.records if r.name == "coopbot.matrix.events"], \
        "a dropped event leaves one log line"
    assert not any(r.exc_info for r in caplog.records)


@pytest.mark.parametrize("content", [
    {"msgtype": "m.text", "body": 5}, {"msgtype": "m.text"}, {"msgtype": 1, "body": "!ping"},
    {"msgtype": "m.text", "body": "!ping", "formatted_body": ["<b>"]}, "!ping", ["!ping"], None,
    {"msgtype": "m.text", "body": "!approve \ud800"},
])
def test_messages_with_fields_of_the_wrong_type_are_dropped(content: Any) -> None:
    assert events.message(ROOM, message_event(content), during_downtime=False) is None


@pytest.mark.parametrize("fields", [
    {"sender": 5}, {"sender": "carol"}, {"event_id": ["$e1"]}, {"event_id": "e1"},
    {"origin_server_ts": "yesterday"}, {"origin_server_ts": True}, {"sender": "@a b:c"},
])
def test_envelopes_of_the_wrong_shape_are_dropped(fields: dict[str, Any]) -> None:
    source = message_event({"msgtype": "m.text", "body": "!ping"}, **fields)
    assert events.message(ROOM, source, during_downtime=False) is None


@pytest.mark.parametrize("relation", [
    "x", [1], 7, {"rel_type": "m.annotation", "event_id": 5, "key": "👍"},
    {"rel_type": "m.annotation", "event_id": "$card", "key": ["👍"]},
    {"rel_type": "m.annotation", "event_id": "$card"}, {"event_id": "$card", "key": "👍"},
    {"rel_type": "m.annotation", "event_id": "$card", "key": "👍" * 100},
])
def test_reactions_of_the_wrong_shape_are_dropped(relation: Any) -> None:
    source = {"type": "m.reaction", "event_id": "$r", "sender": "@bob:localhost",
              "content": {"m.relates_to": relation}}
    assert events.reaction(ROOM, source) is None


def test_a_vote_and_a_redaction_in_both_room_version_forms() -> None:
    vote = events.reaction(ROOM, {
        "type": "m.reaction", "event_id": "$r", "sender": "@bob:localhost",
        "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$card",
                                     "key": "👍"}}})
    assert vote is not None and (vote.relates_to, vote.key) == ("$card", "👍")
    for source in ({"redacts": "$r"}, {"content": {"redacts": "$r"}}):
        redaction = events.redaction(ROOM, {"event_id": "$x", "sender": "@bob:localhost",
                                            **source})
        assert redaction is not None and redaction.redacts == "$r"
    assert events.redaction(ROOM, {"event_id": "$x", "sender": "@bob:localhost",
                                   "content": {"redacts": 5}}) is None


@pytest.mark.parametrize("value", [10**30, -(10**30), "10" * 30, "٣", "²", 1.5, True, [50],
                                   "50"])
def test_power_levels_of_odd_types_never_raise(value: Any) -> None:
    power = PowerInfo.from_state({"users": {"@a:b": value}, "users_default": value}, None, None)
    assert power.level_of("@a:b") in (0.0, 50.0)


class Listener:
    def __init__(self) -> None:
        self.handed: list[object] = []

    async def message(self, message: IncomingMessage) -> None:
        self.handed.append(message)

    async def reaction(self, reaction: IncomingReaction) -> None:
        self.handed.append(reaction)

    async def redaction(self, redaction: IncomingRedaction) -> None:
        self.handed.append(redaction)

    async def tombstone(self, room_id: RoomID, sender: UserID, replacement: RoomID) -> None:
        self.handed.append(replacement)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> MatrixGateway:
    store: Path = tmp_path_factory.mktemp("gateway")
    config = MatrixConfig(homeserver="http://127.0.0.1:9", user_id="@bot:localhost",
                          password="unused", store=str(store / "matrix"))
    return MatrixGateway(config, kv=None, invites=InviteConfig(),  # type: ignore[arg-type]
                         admins=frozenset(), configured_rooms=list)


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=st.fixed_dictionaries(
    {"content": contents, "event_id": near_ids, "sender": near_ids,
     "origin_server_ts": st.integers(min_value=0, max_value=2**53)},
    optional={"type": st.sampled_from(["m.room.message", "m.reaction", "m.room.redaction",
                                       "m.room.tombstone", "m.room.power_levels"]),
              "state_key": st.just(""), "redacts": near_ids | json_values},
))
def test_the_gateway_hands_over_or_drops_whatever_nio_parses(
    gateway: MatrixGateway, source: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # origin_server_ts is set by the homeserver, never by a client: always an integer here.
    listener = Listener()
    event = nio.Event.parse_event(source)
    asyncio.run(gateway.sync._hand_over(ROOM, event, listener, history_only=False,
                                   catching_up=True))
    # The per-event guard would swallow an exception: none may reach it.
    assert not [r for r in caplog.records if r.exc_info], "an event raised in the gateway"
    for handed in listener.handed:
        assert isinstance(handed, IncomingMessage | IncomingReaction | IncomingRedaction | str)
