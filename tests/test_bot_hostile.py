"""Hostile arguments end to end: a real room on the real homeserver, the real bot with a real
swarm server, recipe and app. Whatever a member types (a command just under the event limit,
digits that are not ASCII, numbers past SQLite's, invisible and right-to-left characters), the
bot answers with a sentence, never an internal error, and logs no traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from coopbot.ids import EventID, RoomID
from coopbot.matrix.limits import EVENT_LIMIT
from coopbot.messages import ReplyTarget
from coopbot.operation_kinds import OperationKind
from coopbot.parser import CommandParser
from coopbot.replies import Reply
from tests.harness.apps import app_env, unique_domain
from tests.harness.backups import ResticRepository
from tests.harness.bot import STATUS_MARK, RunningBot, StartBot, ask_bot, coop_room
from tests.harness.recipes import AbraDir
from tests.harness.swarm import Dockerd
from tests.harness.synapse import MakeMember, Member

pytestmark = pytest.mark.real

FUZZ_COMMANDS = 1_000
FUZZ_BATCH = 25  # commands sent at once before the next batch
ANSWER_TIMEOUT = 120.0
# Every operation needs more votes than the room has operators: a fuzzed `!deploy` opens a request
# card (planned against the real swarm and recipe) but never runs.
UNREACHABLE_POLICY = {"approvals": 3, "approver_role": "operator", "expires": "1h"}
OPERATIONS = tuple(kind.value for kind in OperationKind)


@dataclass
class HostileRoom:
    bot: RunningBot
    room: str
    bob: Member  # operator: may run every command but the admin ones
    carol: Member  # member (power 0): refused the operator commands
    app: str  # a real app (env file of the testapp recipe) on the local swarm server

    async def ask(self, body: str) -> str:
        return await ask_bot(self.bob, self.room, self.bot.user_id, body, timeout=30.0)


@pytest.fixture
async def hostile_room(
    make_member: MakeMember, start_bot: StartBot, abra_dir: AbraDir, tmp_path: Path,
    dockerd: Dockerd, testapp_recipe: Path, restic_image: str,
    restic_repository: ResticRepository,
) -> HostileRoom:
    alice, bob, carol, room = await coop_room(make_member)
    app = unique_domain()
    app_env(abra_dir, "local", app)
    bot = await start_bot(
        rooms={room: {"servers": ["local"]}},
        servers={"local": {"kind": "local", "socket": dockerd.socket}},
        backups={"local": {"repository": str(restic_repository.path),
                           "password_file": str(restic_repository.password_file),
                           "helper_image": restic_image}},
        apps_dir=str(abra_dir.path),
        recipes={"overrides": {"testapp": str(testapp_recipe)},
                 "cache": str(tmp_path / "recipe-cache")},
        policies={operation: UNREACHABLE_POLICY for operation in OPERATIONS},
    )
    await alice.invite(room, bot.user_id)
    await alice.wait_joined(room, bot.user_id)
    return HostileRoom(bot, room, bob, carol, app)


@pytest.fixture
def bot_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger="coopbot")
    yield caplog


def assert_no_crash_logged(caplog: pytest.LogCaptureFixture) -> None:
    crashes = [r for r in caplog.records if r.name.startswith(("coopbot", "asyncio")) and (
        r.exc_info is not None or "crashed (reference" in r.getMessage())]
    assert not crashes, "\n".join(f"{r.name}: {r.getMessage()}" for r in crashes)


def assert_clear_sentence(command: str, answer: str, *expected: str) -> None:
    shown = command[:80]
    assert "internal error" not in answer, (shown, answer)
    assert len(answer.encode()) < 2_000, (shown, len(answer))
    assert any(part in answer for part in expected), (shown, answer)


ID_RULE = "id must be a number from 1 to 999999999"
HUGE = "99999999999999999999999"


async def test_hostile_arguments_get_a_sentence_and_no_traceback(
    hostile_room: HostileRoom, bot_log: pytest.LogCaptureFixture,
) -> None:
    app = hostile_room.app
    cases: list[tuple[str, tuple[str, ...]]] = [
        # just under the homeserver's 64 KiB event limit, once as a command and once as an arg
        ("!" + "y" * 60_000, ("Unknown command `yyy",)),
        (f"!deploy {'x' * 60_000}", ("app must be an app name of ASCII letters",)),
        (f"!deny 1 {'because ' * 7_000}", ("reason must be text of at most 500",)),
        ("!approve ²", (ID_RULE,)),
        ("!approve ٣", (ID_RULE,)),
        ("!approve １", (ID_RULE,)),
        ("!approve #³", (ID_RULE,)),
        (f"!approve {HUGE}", (ID_RULE,)),
        (f"!deny {HUGE} no", (ID_RULE,)),
        (f"!cancel {HUGE}", (ID_RULE,)),
        ("!cancel ⁵", (ID_RULE,)),
        (f"!audit {HUGE}", ("n must be a number from 1 to 200",)),
        (f"!audit {app} {HUGE}", ("n must be a number from 1 to 200",)),
        ("!audit ²", ("app must be an app name",)),
        (f"!logs {app} app {10**30}", ("lines must be a number from 1 to 2000",)),
        (f"!logs {app} app ٥٠", ("lines must be a number from 1 to 2000",)),
        (f"!mute {app} ３０m", ("duration must be a duration like 30m",)),
        (f"!mute {app} {HUGE}d", ("duration must be a duration like 30m",)),
        (f"!ps {app[:3]}\u200b{app[3:]}", ("app must be an app name",)),
        (f"!ps \u202e{app}", ("app must be an app name",)),
        (f"!ps '{app}\nrm -rf /'", ("app must be an app name",)),
        ("!ps a`b**c**", ("app must be an app name",)),
        (f"!logs {app} \u2067db\u2069", ("service must be a service name",)),
        (f"!deploy {app} 1.0\u200b", ("version must be a version",)),
        ("!versions ../../etc", ("recipe must be a recipe name",)),
        ("!apps \u200blocal", ("server must be a server name",)),
        (f"!restore {app} \u202e1a2b3c4d", ("snapshot must be a snapshot id",)),
        ("!help \u202e" + "z" * 5_000, ("command must be text of at most 64 characters",)),
        ("!help \u202edeploy", ("Unknown command `\\u202edeploy`",)),
        ("!\u200bping", ("Unknown command `\\u200bping`",)),
        ("!approve", ("`approve` needs <id>",)),
        ("!approve 424242", ("There is no request #424242 in this room.",)),
        (f"!ps {app}", ("no service", "not deployed")),
    ]
    for command, expected in cases:
        answer = await hostile_room.ask(command)
        assert_clear_sentence(command, answer, *expected)
        assert "\u202e" not in answer and "\u200b" not in answer and "\u2067" not in answer
    # The backtick in a member's value did not end the code span it is shown in.
    backtick = await hostile_room.ask("!ps a`b")
    assert "`aˋb`" in backtick
    assert_no_crash_logged(bot_log)


# -- answers of any size -------------------------------------------------------------------------


def _relates_to(event: object) -> str | None:
    content = getattr(event, "source", {}).get("content", {})
    return content.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_answers_far_over_the_event_limit_still_reach_the_room(
    make_member: MakeMember, start_bot: StartBot, encrypted: bool,
) -> None:
    """The send path itself (reply, post, edit) fits what it sends: a 250 KB answer arrives cut,
    with the whole of it as a file; an edit and a notification of that size arrive cut."""
    alice, bob, _carol, room = await coop_room(make_member, encrypted=encrypted)
    running = await start_bot(rooms={room: {}})
    await alice.invite(room, running.user_id)
    await alice.wait_joined(room, running.user_id)
    assert running.bot is not None
    gateway = running.bot.gateway
    # Escapes and non-ASCII make the JSON (and an encrypted room's plaintext) far longer.
    block = "\n".join(f"row {n}: <&> \"é\" \\ жук 🙂 " * 4 for n in range(3_000))
    huge = Reply.preformatted("**Everything**", block)
    assert len(huge.text.encode()) > 3 * EVENT_LIMIT

    command_id = await bob.send(room, "!ping")
    answer_id = await gateway.reply(ReplyTarget(RoomID(room), EventID(command_id)), huge,
                                    key=f"test/{uuid.uuid4()}")
    posted_id = await gateway.post(RoomID(room), Reply.of(block), key=f"test/{uuid.uuid4()}")
    await gateway.edit(RoomID(room), posted_id, Reply.of("edited " + block))

    answer = await bob.wait_for_event(room, lambda e: e.event_id == answer_id, timeout=30)
    body = answer.source["content"]["body"]
    assert body.startswith("Everything\nrow 0: ")
    assert body.endswith("\n… (cut: too long for one message; the whole answer is attached)")
    attached = await bob.wait_for_event(
        room, lambda e: _relates_to(e) == answer_id
        and e.source.get("content", {}).get("msgtype") == "m.file", timeout=30)
    assert attached.source["content"]["info"]["size"] == len(huge.text.encode())
    posted = await bob.wait_for_event(room, lambda e: e.event_id == posted_id, timeout=30)
    assert "(cut: too long for one message" in posted.source["content"]["body"]
    edit = await bob.wait_for_event(
        room, lambda e: e.source.get("content", {}).get("m.relates_to", {}).get("event_id")
        == posted_id, timeout=30)
    assert edit.source["content"]["m.new_content"]["body"].startswith("edited row 0: ")
    for event_id in (answer_id, posted_id, edit.event_id):
        raw = await bob.raw_event(room, event_id)
        pdu = {key: value for key, value in raw.items() if key != "unsigned"}
        assert len(json.dumps(pdu, ensure_ascii=False, separators=(",", ":")).encode()) < EVENT_LIMIT


# -- the fuzz run ---------------------------------------------------------------------------------

NAMES = ["help", "ping", "whoami", "servers", "apps", "versions", "ps", "logs", "deploy",
         "upgrade", "rollback", "undeploy", "approve", "deny", "cancel", "pending", "audit",
         "watch", "mute", "unmute", "backup", "snapshots", "restore"]
# Commands safe to give the real app: read-only, or change commands the policy holds for votes.
REAL_APP_OK = {"ps", "logs", "versions", "deploy", "upgrade", "rollback", "undeploy", "audit",
               "mute", "unmute", "snapshots", "backup", "restore"}
ODD = ["²", "٣", "１", "⁵", "Ⅻ", "\u200b", "\u202e", "\u2066", "\u200d", "\ufeff", "\x00", "\x1b[31m",
       "`", "**", "<b>", "&amp;", "'", '"', "\\", "#", "#1", "-1", "0", "1e9", "0x1f", "NaN", "∞",
       "🙂", "👍🏽", "é", "\u0301", "ﷺ", "Z̸̢͉", "\t", "\n", " ", "", "..", "/", "-rf", "$(id)", "%s",
       "{0}", "latest", "local", "testapp", "1.0.0+1", "30m", "2h", "99999d", "1d"]


def fuzz_word(rng: random.Random, app: str) -> str:
    pick = rng.random()
    if pick < 0.15:
        return rng.choice(ODD)
    if pick < 0.30:
        return str(rng.choice([0, 1, 7, 200, 201, 2000, 2001, 10**9, 10**23, 2**63, -5]))
    if pick < 0.40:
        return "".join(rng.choice(ODD) for _ in range(rng.randint(1, 5)))
    if pick < 0.55:
        return "".join(chr(rng.randint(0x21, 0x2FFF)) for _ in range(rng.randint(1, 12)))
    if pick < 0.65:
        return app if rng.random() < 0.5 else app + rng.choice(ODD)
    if pick < 0.70:
        return rng.choice("xyz") * rng.randint(100, 3_000)
    if pick < 0.80:
        word = "".join(rng.choice("ab c'\"`") for _ in range(rng.randint(0, 10)))
        return f'"{word}"'
    return "".join(rng.choice("abcdefghij0123456789.-_+") for _ in range(rng.randint(1, 20)))


def plausible_word(rng: random.Random, app: str) -> str:
    return rng.choice([app, app, "app", "local", "testapp", "1", "3", "50", "200", "30m", "2h",
                       "1.0.0+1", "1a2b3c4d", "latest", "#1", "not now"])


def fuzz_command(rng: random.Random, app: str) -> str:
    if rng.random() < 0.3:  # nearly right: real names and values, sometimes one odd word
        words = [plausible_word(rng, app) for _ in range(rng.randint(0, 3))]
        if words and rng.random() < 0.3:
            words[rng.randrange(len(words))] = fuzz_word(rng, app)
        name = rng.choice(sorted(REAL_APP_OK | {"pending", "watch", "apps", "servers"}))
        return " ".join([f"!{name}", *words])
    name = rng.choice(NAMES) if rng.random() < 0.85 else fuzz_word(rng, app)
    if rng.random() < 0.05:
        name = name.upper()
    words = [fuzz_word(rng, app) for _ in range(rng.randint(0, 4))]
    if name not in REAL_APP_OK:
        words = [w for w in words if app not in w]
    return " ".join([f"!{name}", *words])


def answers_by_command(member: Member, room: str, bot_id: str) -> dict[str, list[str]]:
    """The bot's replies in `room` as `member` has synced them, by the command they answer."""
    found: dict[str, list[str]] = {}
    for event in member.timeline(room):
        source = getattr(event, "source", {})
        content = source.get("content", {})
        if source.get("sender") != bot_id or "body" not in content:
            continue
        target = content.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
        if target:
            found.setdefault(target, []).append(str(content["body"]))
    return found


def classify(answer: str) -> str:
    if "Usage:" in answer:
        return "usage"
    if "needs the" in answer and "role in this room" in answer:
        return "denied"
    if answer.startswith("Unknown command"):
        return "unknown"
    return "result"


async def test_fuzz_one_thousand_commands_through_the_real_bot(
    hostile_room: HostileRoom, bot_log: pytest.LogCaptureFixture,
) -> None:
    room, bob, bot_id = hostile_room.room, hostile_room.bob, hostile_room.bot.user_id
    rng = random.Random(20261201)
    parser = CommandParser("!", bot_id)
    started = time.monotonic()
    sent: dict[str, str] = {}  # event id -> body, for commands the bot must answer
    for _batch in range(0, FUZZ_COMMANDS, FUZZ_BATCH):
        bodies = [fuzz_command(rng, hostile_room.app) for _ in range(FUZZ_BATCH)]
        senders = [hostile_room.carol if rng.random() < 0.2 else bob for _ in bodies]
        ids = await asyncio.gather(*(sender.send(room, body)
                                     for sender, body in zip(senders, bodies, strict=True)))
        sent.update((event_id, body) for event_id, body in zip(ids, bodies, strict=True)
                    if parser.parse(body) is not None)
        await asyncio.sleep(0)
    assert len(sent) > 0.95 * FUZZ_COMMANDS

    deadline = time.monotonic() + ANSWER_TIMEOUT
    finals: dict[str, str] = {}
    while time.monotonic() < deadline:
        replies = answers_by_command(bob, room, bot_id)
        finals = {event_id: next(b for b in replies[event_id] if not b.startswith(STATUS_MARK))
                  for event_id in sent if any(not b.startswith(STATUS_MARK)
                                              for b in replies.get(event_id, []))}
        if len(finals) == len(sent):
            break
        await asyncio.sleep(0.5)
    missing = [sent[e][:80] for e in sent if e not in finals]
    assert not missing, f"{len(missing)} commands got no answer, e.g. {missing[:5]}"

    kinds: dict[str, int] = {}
    for event_id, answer in finals.items():
        assert "internal error" not in answer, (sent[event_id][:200], answer)
        # A sentence, not a library's message: no traceback, no exception class names.
        assert not re.search(r"Traceback|\b[A-Z]\w*(Error|Exception)\b", answer), answer
        assert len(answer.encode()) < EVENT_LIMIT // 2, sent[event_id][:80]
        kinds[classify(answer)] = kinds.get(classify(answer), 0) + 1
    logging.getLogger(__name__).info("fuzz: %d commands answered in %.1f s: %s",
                                     len(finals), time.monotonic() - started, kinds)
    assert kinds.get("usage", 0) > 100 and kinds.get("result", 0) > 100, kinds
    assert kinds.get("denied", 0) > 5, kinds

    # The audit of all that is longer than one event: it is cut and comes whole as a file.
    audit_id = await bob.send(room, "!audit 200")
    audit = await bob.wait_for_message(
        room, sender=bot_id, after_event_id=audit_id,
        predicate=lambda e: e.source.get("content", {}).get("m.relates_to", {})
        .get("m.in_reply_to", {}).get("event_id") == audit_id)
    body = str(audit.source["content"]["body"])
    assert body.startswith("Audit log (200 newest rows)")
    if "(cut: too long for one message" in body:
        await bob.wait_for_event(
            room, lambda e: e.source.get("sender") == bot_id
            and e.source.get("content", {}).get("msgtype") == "m.file",
            after_event_id=audit_id, what="the whole audit as a file")
    assert_no_crash_logged(bot_log)
    # The log check above is only honest if the bot logged at all.
    assert any(r.name.startswith("coopbot") for r in bot_log.records)
