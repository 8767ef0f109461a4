"""The Synapse harness against a real Synapse: if these fail, every Matrix test is suspect."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from nio import MegolmEvent, ReactionEvent, RedactionEvent, RoomMessageText

from coopbot.dev.homeserver import LocalSynapse
from tests.harness.synapse import MakeMember, password_for

pytestmark = pytest.mark.real

_counter = itertools.count()


def unique(name: str) -> str:
    """Localparts unique per test run, so tests never share users or rooms by accident."""
    return f"h{next(_counter)}-{name}"


async def test_two_members_exchange_messages_in_a_plain_room(make_member: MakeMember) -> None:
    alice = await make_member(unique("alice"))
    bob = await make_member(unique("bob"))
    room = await alice.create_room(invite=[bob.user_id], name="plain")
    await bob.join(room)
    await alice.wait_joined(room, bob.user_id)

    hello = await alice.send(room, "hello bob")
    seen = await bob.wait_for_message(room, sender=alice.user_id)
    assert (seen.event_id, seen.body) == (hello, "hello bob")

    reply = await bob.send(room, "hi alice", reply_to=hello)
    answer = await alice.wait_for_message(room, sender=bob.user_id, after_event_id=hello)
    assert answer.event_id == reply
    assert answer.body == f"> <{alice.user_id}> hello bob\n\nhi alice"
    content = answer.source["content"]
    assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": hello}}
    assert content["formatted_body"].startswith("<mx-reply><blockquote>")
    assert content["formatted_body"].endswith("</mx-reply>hi alice")
    assert [m.event_id for m in alice.messages_from(room, bob.user_id)] == [reply]


async def test_encrypted_room_messages_are_decrypted_by_every_member(
    make_member: MakeMember,
) -> None:
    alice = await make_member(unique("alice"))
    bob = await make_member(unique("bob"))
    room = await alice.create_room(invite=[bob.user_id], encrypted=True)
    await bob.join(room)
    await alice.wait_joined(room, bob.user_id)

    secret = await alice.send(room, "the deploy key is in the vault")
    seen = await bob.wait_for_message(room, sender=alice.user_id)
    assert isinstance(seen, RoomMessageText)
    assert seen.decrypted, "bob should have received the message encrypted"
    assert (seen.event_id, seen.body) == (secret, "the deploy key is in the vault")

    # Both directions, and a reply inside an encrypted room.
    back = await bob.send(room, "thanks", reply_to=secret)
    answer = await alice.wait_for_message(room, sender=bob.user_id)
    assert answer.decrypted and answer.event_id == back
    assert answer.body.endswith("\n\nthanks")

    # A member who joins later gets the rotated room key for new messages.
    carol = await make_member(unique("carol"))
    await alice.invite(room, carol.user_id)
    await carol.join(room)
    await alice.wait_joined(room, carol.user_id)
    late = await alice.send(room, "welcome carol")
    for member in (bob, carol):
        event = await member.wait_for_event(room, lambda e: e.event_id == late)
        assert isinstance(event, RoomMessageText), f"{member.user_id} could not decrypt: {event}"
        assert event.decrypted and event.body == "welcome carol"

    # What the server stores is ciphertext: the raw timeline event is m.room.encrypted.
    raw = await alice.raw_event(room, late)
    assert raw["type"] == "m.room.encrypted"
    assert raw["content"]["algorithm"] == "m.megolm.v1.aes-sha2"
    assert "body" not in raw["content"]


async def test_a_client_without_e2ee_sees_only_ciphertext(make_member: MakeMember) -> None:
    alice = await make_member(unique("alice"))
    mallory = await make_member(unique("plain"), encrypted_store=False)
    room = await alice.create_room(invite=[mallory.user_id], encrypted=True)
    await mallory.join(room)
    await alice.wait_joined(room, mallory.user_id)
    sent = await alice.send(room, "not for plain clients")
    event = await mallory.wait_for_event(room, lambda e: e.event_id == sent)
    assert isinstance(event, MegolmEvent)
    assert mallory.messages_from(room, alice.user_id) == []


@pytest.mark.parametrize(
    ("version", "creator_listed"),
    [("11", True), ("12", False), (None, False)],
    ids=["v11", "v12", "server-default"],
)
async def test_room_versions_and_creator_power(
    make_member: MakeMember, version: str | None, creator_listed: bool
) -> None:
    alice = await make_member(unique("alice"))
    bob = await make_member(unique("bob"))
    room = await alice.create_room(
        invite=[bob.user_id], room_version=version, power_levels={bob.user_id: 50}
    )
    create = await alice.state_event(room, "m.room.create")
    assert create["room_version"] == (version or "12")

    levels = await alice.power_levels(room)
    expected = {bob.user_id: 50, **({alice.user_id: 100} if creator_listed else {})}
    assert levels["users"] == expected
    # The creator can still change power levels: in v12 by being a creator.
    await bob.join(room)
    await alice.set_power_level(room, bob.user_id, 75)
    assert (await alice.power_levels(room))["users"][bob.user_id] == 75
    # And nio 0.26 does not know about v12 creators: it reports the creator at 0.
    await alice.wait_for_event(
        room,
        lambda e: (
            e.source.get("type") == "m.room.power_levels"
            and e.source["content"]["users"].get(bob.user_id) == 75
        ),
        what="the power level change",
    )
    nio_level = alice.client.rooms[room].power_levels.get_user_level(alice.user_id)
    assert nio_level == (100 if creator_listed else 0)


async def test_edit_react_redact_and_threads_carry_their_relations(
    make_member: MakeMember,
) -> None:
    alice = await make_member(unique("alice"))
    bob = await make_member(unique("bob"))
    await bob.set_displayname("Bob the Builder")
    room = await alice.create_room(invite=[bob.user_id])
    await bob.join(room)
    await alice.wait_joined(room, bob.user_id)

    original = await bob.send(room, "!deploy web", formatted_body="<b>!deploy</b> web")
    await alice.wait_for_message(room, sender=bob.user_id)
    edit = await bob.edit(room, original, "!deploy db")
    reaction = await alice.react(room, original, "👍")
    redaction = await alice.redact(room, reaction, reason="changed my mind")
    threaded = await bob.send(room, "in the thread", thread_root=original)
    notice = await bob.send(room, "status", msgtype="m.notice")

    await alice.wait_for_event(room, lambda e: e.event_id == notice, what="the notice")
    by_id = {e.event_id: e for e in alice.timeline(room)}

    assert by_id[original].source["content"]["formatted_body"] == "<b>!deploy</b> web"
    edit_content = by_id[edit].source["content"]
    assert edit_content["body"] == "* !deploy db"
    assert edit_content["m.new_content"] == {"msgtype": "m.text", "body": "!deploy db"}
    assert edit_content["m.relates_to"] == {"rel_type": "m.replace", "event_id": original}

    reaction_event = by_id[reaction]
    assert isinstance(reaction_event, ReactionEvent)
    assert (reaction_event.reacts_to, reaction_event.key) == (original, "👍")
    redaction_event = by_id[redaction]
    assert isinstance(redaction_event, RedactionEvent)
    assert redaction_event.redacts == reaction
    assert redaction_event.reason == "changed my mind"

    thread_rel = by_id[threaded].source["content"]["m.relates_to"]
    assert thread_rel["rel_type"] == "m.thread" and thread_rel["event_id"] == original
    assert by_id[notice].source["content"]["msgtype"] == "m.notice"

    # Display names are profile data in the member event, not identity.
    member_state = await alice.state_event(room, "m.room.member", bob.user_id)
    assert member_state["displayname"] == "Bob the Builder"

    # Order is receive order, as the bot will count votes.
    order = [e.event_id for e in alice.timeline(room)]
    assert order.index(original) < order.index(edit) < order.index(reaction)
    assert order.index(reaction) < order.index(redaction) < order.index(threaded)


async def test_assert_no_message_passes_on_silence_and_fails_on_a_message(
    make_member: MakeMember,
) -> None:
    alice = await make_member(unique("alice"))
    bob = await make_member(unique("bob"))
    room = await alice.create_room(invite=[bob.user_id])
    await bob.join(room)
    marker = await alice.send(room, "anyone?")
    await alice.assert_no_message(room, bob.user_id, within=0.5, after_event_id=marker)

    reply = await bob.send(room, "me")
    with pytest.raises(AssertionError, match="expected no message") as failure:
        await alice.assert_no_message(room, bob.user_id, within=5.0, after_event_id=marker)
    assert reply in str(failure.value)

    with pytest.raises(AssertionError, match=r"timed out after 0\.3 s") as timeout:
        await alice.wait_for_message(
            room, sender=bob.user_id, predicate=lambda m: m.body == "never", timeout=0.3
        )
    assert "'me'" in str(timeout.value), "the timeout message should list what was seen"


def test_rerun_on_the_same_workdir_reuses_config_keys_and_users(tmp_path: Path) -> None:
    first = LocalSynapse(tmp_path)
    first.ensure_config()
    config = first.config_path.read_text()
    key = first.signing_key_path.read_bytes()
    with first:
        user = first.register("reuser", "pw-1")
        assert user == "@reuser:localhost"
    assert not first.running
    first.stop()  # idempotent

    again = LocalSynapse(tmp_path)
    again.ensure_config()
    assert again.config_path.read_text() == config
    assert again.signing_key_path.read_bytes() == key
    assert again.base_url == first.base_url
    with again:
        # Registering an existing user with its password is a no-op that still checks it.
        assert again.register("reuser", "pw-1") == user
        with pytest.raises(RuntimeError, match="already exists"):
            again.register("reuser", "wrong")
        assert again.register("admin", "pw-2", admin=True) == "@admin:localhost"
        # A second start on a workdir whose Synapse still runs names the process.
        with pytest.raises(RuntimeError, match=r"already in use \(Synapse pid \d+"):
            LocalSynapse(tmp_path).start()
    assert not (tmp_path / "synapse.pid").exists()


def test_start_fails_clearly(tmp_path: Path, synapse: LocalSynapse) -> None:
    # A port already taken (here by the session homeserver) is refused up front.
    taken = LocalSynapse(tmp_path / "taken", port=synapse.port)
    with pytest.raises(RuntimeError, match="already in use"):
        taken.start()

    # A Synapse that dies at startup is reported with its exit code and log tail.
    broken = LocalSynapse(tmp_path / "broken")
    broken.ensure_config()
    text = broken.config_path.read_text().replace("name: sqlite3", "name: nosuchdb")
    broken.config_path.write_text(text)
    with pytest.raises(RuntimeError, match="exited with code") as failure:
        broken.start()
    assert "nosuchdb" in str(failure.value)
    assert not broken.running


def test_session_synapse_is_loopback_only(synapse: LocalSynapse) -> None:
    assert synapse.base_url == f"http://127.0.0.1:{synapse.port}"
    assert synapse.server_name == "localhost"
    assert synapse.register("plainuser", password_for("plainuser")) == "@plainuser:localhost"
