"""4. Burst: 5 members send 500 commands within 10 s. Every command must be answered exactly once,
nothing lost, no rate-limit failure; how long until the last answer. The echo bot takes the same
burst in its own room, for reference."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

from bench.bots import BotProcess
from bench.environment import Environment
from bench.member import Member
from bench.results import Section
from bench.rooms import make_room, ready, wait_joined
from bench.stats import percentile, ratios

DRAIN_TIMEOUT = 180.0
STALL = 20.0
_TROUBLE = re.compile(r"LIMIT_EXCEEDED|429|Too Many|rate.?limit|could not send|ERROR",
                      re.IGNORECASE)

METHOD = """\
{members} members in one room send {commands} `!ping` in total on a fixed schedule (one every
{interval:.0f} ms per member, the members offset from each other; each command leaves on time
without waiting for the previous send to complete) so that all are sent within {window:g} s.
Afterwards the room's history is read from the server (`/messages`) and the bot's answers
counted per command: exactly once is the goal; *lost* had none, *duplicates* more than one.
Times are the server's own (origin_server_ts, milliseconds): *drain* is from the first command
to the last answer reaching the homeserver, *tail* from the last command to the last answer,
*latency* from a command to its answer. Rate-limit failures count 429 answers to the members' sends
and trouble lines in the bot's log. The same burst is sent to the echo bot in its own room
(same members), order alternating between repeats."""


@dataclass
class BurstResult:
    sent: int = 0
    send_errors: list[str] = field(default_factory=list)
    answered_once: int = 0
    lost: int = 0
    duplicates: int = 0
    drain: float = 0.0
    tail: float = 0.0
    window: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    log_trouble: list[str] = field(default_factory=list)


async def burst(env: Environment, room: str, bot: BotProcess, members: list[Member]) -> BurstResult:
    s = env.settings
    per_member = s.burst_commands // len(members)
    interval = s.burst_window / per_member
    log_size = len(bot.log_text())
    for m in members:
        m.send_errors.clear()
    start = time.perf_counter() + 0.3

    async def send_at(member: Member, at: float) -> tuple[str | None, float]:
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        return await member.send(room, "!ping")

    # Each command leaves at its scheduled time, whether or not the previous one was
    # acknowledged yet, so the burst really fits in the window.
    sends = await asyncio.gather(*(
        send_at(member, start + (k + index / len(members)) * interval)
        for k in range(per_member) for index, member in enumerate(members)))
    ids = [event_id for event_id, _ in sends if event_id is not None]
    result = BurstResult(sent=len(ids))
    result.send_errors = [e for m in members for e in m.send_errors]
    result.window = max(t for _, t in sends) - min(t for _, t in sends)
    # The server's record decides: a client's sync can skip events when hundreds arrive at
    # once. Poll the room's history until every command has an answer (bounded).
    reader = members[0]
    deadline = time.monotonic() + DRAIN_TIMEOUT
    seen, changed = -1, time.monotonic()
    while True:
        commands, answers = await _record(reader, room, bot.user_id, set(ids))
        now_answered = sum(1 for e in ids if answers.get(e))
        if now_answered != seen:
            seen, changed = now_answered, time.monotonic()
        # Done, out of time, or nothing new for STALL seconds (the rest were lost).
        if now_answered == len(ids) or time.monotonic() > deadline \
                or time.monotonic() - changed > STALL:
            break
        await asyncio.sleep(2.0)
    await asyncio.sleep(2.0)  # let any late duplicate reach the server before counting
    commands, answers = await _record(reader, room, bot.user_id, set(ids))
    result.answered_once = sum(1 for e in ids if len(answers.get(e, ())) == 1)
    result.lost = sum(1 for e in ids if not answers.get(e))
    result.duplicates = sum(len(answers[e]) - 1 for e in ids if len(answers.get(e, ())) > 1)
    answered = [e for e in ids if answers.get(e) and e in commands]
    if answered:
        last_answer = max(min(answers[e]) for e in answered)
        result.drain = (last_answer - min(commands[e] for e in ids if e in commands)) / 1000
        result.tail = (last_answer - max(commands[e] for e in ids if e in commands)) / 1000
        result.latencies_ms = [float(min(answers[e]) - commands[e]) for e in answered]
    result.log_trouble = [line for line in bot.log_text()[log_size:].splitlines()
                          if _TROUBLE.search(line)]
    return result


async def _record(reader: Member, room: str, bot: str, ids: set[str]) -> tuple[
        dict[str, int], dict[str, list[int]]]:
    """From the server's history: each command's origin_server_ts, and the timestamps of the
    bot's answers to each (by m.in_reply_to)."""
    commands: dict[str, int] = {}
    answers: dict[str, list[int]] = {}
    for event in await reader.room_history(room, until=ids):
        event_id = str(event.get("event_id"))
        if event_id in ids:
            commands[event_id] = int(event.get("origin_server_ts", 0))
        if event.get("sender") != bot or event.get("type") != "m.room.message":
            continue
        relates = (event.get("content") or {}).get("m.relates_to") or {}
        reply_to = (relates.get("m.in_reply_to") or {}).get("event_id")
        if reply_to:
            answers.setdefault(str(reply_to), []).append(int(event.get("origin_server_ts", 0)))
    return commands, answers


async def run(env: Environment) -> Section:
    s = env.settings
    per_member = s.burst_commands // s.burst_members
    section = Section("burst", f"4. Burst: {s.burst_members} members, {s.burst_commands} "
                      f"commands in {s.burst_window:g} s",
                      METHOD.format(members=s.burst_members, commands=s.burst_commands,
                                    interval=s.burst_window / per_member * 1000,
                                    window=s.burst_window))
    owner = await env.member("burst-owner")
    members = [await env.member(f"burst-m{i}") for i in range(s.burst_members)]
    coop = env.coopbot("burst-coopbot")
    echo = env.echobot("burst-echo")
    room_c = await make_room(owner, "burst coopbot", [coop], members)
    room_e = await make_room(owner, "burst echo", [echo], members)
    await owner.stop_syncing()
    coop.config["rooms"] = {room_c: {}}
    coop.write_config()
    results: dict[str, list[BurstResult]] = {"coopbot": [], "echo": []}
    try:
        coop.start()
        echo.start()
        await wait_joined(members[0], [room_c], [coop])
        await wait_joined(members[0], [room_e], [echo])
        await ready(members[0], room_c, coop)
        await ready(members[0], room_e, echo)
        for member in members:  # they only send now; the server's history is read instead
            await member.stop_syncing()
        for repeat in range(s.burst_repeats):
            order = [("coopbot", room_c, coop), ("echo", room_e, echo)]
            if repeat % 2:
                order.reverse()
            for key, room, bot in order:
                env.say(f"burst: {key}, repeat {repeat + 1}/{s.burst_repeats}")
                results[key].append(await burst(env, room, bot, members))
                await asyncio.sleep(2)
        section.raw["rss_after_kib"] = {"coopbot": coop.rss(), "echo": echo.rss()}
    finally:
        coop.stop()
        echo.stop()

    for key, label in (("coopbot", "coopbot"), ("echo", "echo bot")):
        rs = results[key]
        section.add(f"{label}: answered exactly once", "of " + str(s.burst_commands),
                    [r.answered_once for r in rs], 0)
        section.add(f"{label}: lost / duplicated answers", "count",
                    [r.lost + r.duplicates for r in rs], 0)
        section.add(f"{label}: rate-limit failures and trouble log lines", "count",
                    [len(r.send_errors) + len(r.log_trouble) for r in rs], 0)
        section.add(f"{label}: drain (first command to last answer)", "s", [r.drain for r in rs], 2)
        section.add(f"{label}: tail (last command to last answer)", "s", [r.tail for r in rs], 2)
        section.add(f"{label}: per-command latency p50", "ms",
                    [percentile(r.latencies_ms, 50) for r in rs], 0)
        section.add(f"{label}: per-command latency p95", "ms",
                    [percentile(r.latencies_ms, 95) for r in rs], 0)
    section.add("send window (first to last send)", "s",
                [r.window for r in results["coopbot"]], 2)
    section.add("ratio coopbot/echo drain", "×", ratios([r.drain for r in results["coopbot"]],
                                                         [r.drain for r in results["echo"]]), 2)
    for key in ("coopbot", "echo"):
        for r in results[key]:
            for line in (r.send_errors + r.log_trouble)[:5]:
                section.findings.append(f"{key}: {line[:300]}")
    c_tail = sorted(r.tail for r in results["coopbot"])
    e_tail = sorted(r.tail for r in results["echo"])
    if c_tail and e_tail and c_tail[len(c_tail) // 2] > e_tail[len(e_tail) // 2] + 0.5:
        section.findings.append(
            f"**Worse:** after the last command coopbot needs {c_tail[len(c_tail) // 2]:.1f} s "
            f"to answer everything, the echo bot {e_tail[len(e_tail) // 2]:.1f} s.")
    if any(r.lost or r.duplicates for r in results["coopbot"]):
        section.findings.append("**Worse:** coopbot lost or duplicated answers in the burst.")
    section.raw["results"] = {k: [r.__dict__ for r in v] for k, v in results.items()}
    return section
