"""5. Memory: the bot's RSS idle in 20 rooms and after 2,000 commands (growth = leak check), and
start-up to first answer after a restart with 20 rooms. The echo bot shares the rooms."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from bench.bots import REPO, BotProcess, Coopbot, EchoBot, bot_env
from bench.environment import Environment, execute
from bench.member import Member
from bench.results import Section
from bench.rooms import make_room, ready, wait_joined
from bench.stats import Summary, ratios

SETTLE = 5.0
COMMANDS = ("!ping", "!whoami", "!ping", "!help")

METHOD = """\
coopbot and the echo bot, each its own process, are both in the same {rooms} rooms, with one
member (the rooms' creator) who sends the commands. RSS is VmRSS from /proc/<pid>/status,
{settle:g} s after the bot answered its first command. *Idle* is sampled after the first start
and after every restart. Then {commands} commands (cycling `!ping`, `!whoami`, `!ping`, `!help`
over the {rooms} rooms, {concurrency} in flight at a time, each waiting for coopbot's answer
and, for pings, also the echo bot's) run, with RSS sampled every {checkpoint} commands; *growth
per 1000 commands* is the slope from the first checkpoint to the end (after warm-up): the leak
check. *Start-up after a restart* is from spawning the process again (`coopbot run -c CONFIG`,
or the echo bot) to the first answer to a `!ping` that the member sends every 0.2 s meanwhile;
coopbot keeps its device, crypto store and sync token, the echo bot logs in afresh as the
minimal bot does. *First start* is the same on the very first run, when the bot still has to
log in and join the {rooms} rooms it was invited to. *Shutdown* is SIGTERM to exit. The import
table shows what the memory is made of: RSS of a fresh interpreter after importing each of
coopbot's dependencies in turn (`python -m bench.importcost`)."""


def _mib(kib: float) -> float:
    return kib / 1024


async def _settled_rss(bot: BotProcess) -> dict[str, int]:
    await asyncio.sleep(SETTLE)
    return bot.rss()


async def run(env: Environment) -> Section:
    s = env.settings
    section = Section("memory", "5. Memory and restart", METHOD.format(
        rooms=s.memory_rooms, settle=SETTLE, commands=s.memory_commands,
        concurrency=s.memory_concurrency, checkpoint=s.memory_checkpoint))
    member = await env.member("mem-owner")
    coop = env.coopbot("mem-coopbot")
    echo = env.echobot("mem-echo")
    env.say(f"memory: creating {s.memory_rooms} rooms")
    rooms = [await make_room(member, f"memory {n}", [coop, echo], [])
             for n in range(s.memory_rooms)]
    coop.config["rooms"] = {room: {} for room in rooms}
    coop.write_config()

    keys = ("coopbot", "echo")
    idle: dict[str, list[float]] = {k: [] for k in keys}
    first: dict[str, float] = {}
    startup: dict[str, list[float]] = {k: [] for k in keys}
    shutdown: dict[str, list[float]] = {k: [] for k in keys}
    restored: list[float] = []  # coopbot: spawn to "restored Matrix session" in its log
    curve: list[tuple[int, float, float]] = []
    after: dict[str, dict[str, int]] = {}
    try:
        coop.start()
        echo.start()
        await wait_joined(member, rooms, [coop, echo], timeout=120)
        first["coopbot"] = await ready(member, rooms[0], coop)
        first["echo"] = await ready(member, rooms[0], echo)
        idle["coopbot"].append(_mib((await _settled_rss(coop))["VmRSS"]))
        idle["echo"].append(_mib(echo.rss()["VmRSS"]))
        curve.append((0, idle["coopbot"][0], idle["echo"][0]))

        done = 0
        while done < s.memory_commands:
            batch = range(done, min(done + s.memory_checkpoint, s.memory_commands))
            await _commands(list(batch), rooms, member, s.memory_concurrency, coop, echo)
            done = batch.stop
            c, e = coop.rss(), echo.rss()
            curve.append((done, _mib(c["VmRSS"]), _mib(e["VmRSS"])))
            env.say(f"memory: {done}/{s.memory_commands} commands, coopbot RSS "
                    f"{_mib(c['VmRSS']):.1f} MiB, echo {_mib(e['VmRSS']):.1f} MiB")
        await asyncio.sleep(SETTLE)
        after = {"coopbot": coop.rss(), "echo": echo.rss()}

        for restart in range(s.memory_restarts):
            env.say(f"memory: restart {restart + 1}/{s.memory_restarts}")
            for key, bot in (("coopbot", coop), ("echo", echo)):
                shutdown[key].append(bot.stop())
                await asyncio.sleep(1.0)
                bot.start()
                startup[key].append(await ready(member, rooms[0], bot))
                if key == "coopbot" and (took := coop.logged_after_spawn(
                        "restored Matrix session")) is not None:
                    restored.append(took)
                idle[key].append(_mib((await _settled_rss(bot))["VmRSS"]))
    finally:
        coop.stop()
        echo.stop()

    warm = curve[1] if len(curve) > 2 else curve[0]
    last = curve[-1]
    span = (last[0] - warm[0]) / 1000 or 1.0
    for key, label, column in (("coopbot", "coopbot", 1), ("echo", "echo bot", 2)):
        section.add(f"{label}: RSS idle in {s.memory_rooms} rooms", "MiB", idle[key])
        section.add(f"{label}: RSS after {s.memory_commands} commands", "MiB", [last[column]])
        section.add(f"{label}: growth over the {s.memory_commands} commands", "MiB",
                    [last[column] - curve[0][column]])
        section.add(f"{label}: growth per 1000 commands after warm-up", "MiB",
                    [(last[column] - warm[column]) / span], 2)
        section.add(f"{label}: peak RSS (VmHWM)", "MiB", [_mib(after[key]["VmHWM"])])
        section.add(f"{label}: threads", "count", [float(after[key]["Threads"])], 0)
        section.add(f"{label}: first start (login, join {s.memory_rooms} rooms) to first "
                    "answer", "s", [first[key]], 2)
        section.add(f"{label}: start-up after a restart to first answer", "s", startup[key], 2)
        if key == "coopbot":
            section.add("coopbot: of which spawn to 'restored Matrix session' logged", "s",
                        restored, 2, note="imports, config, database, whoami")
        section.add(f"{label}: shutdown (SIGTERM to exit)", "s", shutdown[key], 2)
    section.add("ratio coopbot/echo idle RSS", "×", ratios(idle["coopbot"], idle["echo"]), 2)
    section.add("ratio coopbot/echo start-up after a restart", "×",
                ratios(startup["coopbot"], startup["echo"]), 2)
    section.findings.append("RSS curve (commands: coopbot MiB / echo MiB): " + ", ".join(
        f"{n}: {c:.1f}/{e:.1f}" for n, c, e in curve) + ".")
    imports = await _import_costs(coop.folder.parent / "pycache")
    if imports:
        previous = 0
        parts = []
        for step in imports:
            rss = int(step["rss_kib"])
            delta = rss - previous if previous else rss
            parts.append(f"{step['what']} +{delta / 1024:.1f} MiB ({float(step['seconds']):.2f} s)"
                         if previous else f"{step['what']} {rss / 1024:.1f} MiB")
            previous = rss
        section.findings.append("Import cost, fresh interpreter, in order: " + "; ".join(parts)
                                + f"; total {previous / 1024:.1f} MiB.")
        section.raw["imports"] = imports
    coop_idle, echo_idle = Summary.of(idle["coopbot"]).median, Summary.of(idle["echo"]).median
    if coop_idle > echo_idle * 1.2:
        section.findings.append(
            f"**Worse:** coopbot idles at {coop_idle:.0f} MiB, the nio echo bot at "
            f"{echo_idle:.0f} MiB; the import cost in this section shows what the difference "
            "is made of.")
    coop_start = Summary.of(startup["coopbot"]).median
    echo_start = Summary.of(startup["echo"]).median
    if coop_start > echo_start * 1.2:
        section.findings.append(
            f"**Worse:** after a restart coopbot answers {coop_start:.2f} s after being started, "
            f"the echo bot {echo_start:.2f} s.")
    section.raw.update({"curve": curve, "idle": idle, "first": first, "startup": startup,
                        "shutdown": shutdown})
    return section


async def _import_costs(pycache: Path) -> list[dict[str, Any]]:
    env = bot_env(pycache)  # the bots' bytecode cache, as their restarts use it
    for _ in range(2):  # the first run compiles what the bots have not: measure the second
        done = await execute([sys.executable, "-m", "bench.importcost"], cwd=REPO, env=env)
    if done.returncode != 0:
        return []
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


async def _commands(numbers: list[int], rooms: list[str], member: Member, concurrency: int,
                    coop: Coopbot, echo: EchoBot) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in numbers:
        queue.put_nowait(number)

    async def worker() -> None:
        while not queue.empty():
            number = queue.get_nowait()
            room = rooms[number % len(rooms)]
            body = COMMANDS[number % len(COMMANDS)]
            event_id, _ = await member.send(room, body)
            if event_id is None:
                raise RuntimeError(f"send failed: {member.send_errors[-1]}")
            await member.wait_answer(event_id, coop.user_id, 60)
            if body == "!ping":
                await member.wait_answer(event_id, echo.user_id, 60)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
