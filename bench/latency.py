"""1. Command latency: `!ping` round trips from a member's client to the bot's answer, coopbot
against a minimal matrix-nio echo bot on the same homeserver, pings interleaved."""

from __future__ import annotations

from bench.environment import Environment
from bench.results import Section
from bench.rooms import handling_ms, make_room, ready, wait_joined
from bench.stats import percentile, ratios

METHOD = """\
One member sends `!ping` and waits for the answer before sending the next: the time from just
before the send request to the moment the member's own sync delivers the bot's answer. coopbot
(`coopbot run -c CONFIG`, its own process) and the echo bot (bench/echobot.py, plain matrix-nio,
its own process) each sit in their own room on the same Synapse; the pings alternate between
them, so both see the same homeserver at the same moment. Each repeat is {pings} round trips per
bot after {warmup} warm-up pings; p50 and p95 are taken within a repeat, then min/median/max over
{repeats} repeats. The ratio coopbot/echo is computed per repeat; 1.0 is the limit of this
homeserver and client."""


async def run(env: Environment) -> Section:
    s = env.settings
    section = Section("latency", "1. Command latency (`!ping`)",
                      METHOD.format(pings=s.pings, warmup=s.warmup_pings,
                                    repeats=s.latency_repeats))
    owner = await env.member("lat-owner")
    pinger = await env.member("lat-member")
    coop = env.coopbot("lat-coopbot")
    echo = env.echobot("lat-echo")
    room_c = await make_room(owner, "latency coopbot", [coop], [pinger])
    room_e = await make_room(owner, "latency echo", [echo], [pinger])
    await owner.stop_syncing()  # only the pinger's client takes part
    coop.config["rooms"] = {room_c: {}}
    coop.write_config()
    try:
        coop.start()
        echo.start()
        await wait_joined(pinger, [room_c], [coop])
        await wait_joined(pinger, [room_e], [echo])
        await ready(pinger, room_c, coop)
        await ready(pinger, room_e, echo)
        targets = [(room_c, coop.user_id), (room_e, echo.user_id)]
        for _ in range(s.warmup_pings):
            for room, bot in targets:
                await pinger.ask(room, "!ping", bot, timeout=30)

        p50 = {"coopbot": [], "echo": []}  # type: dict[str, list[float]]
        p95 = {"coopbot": [], "echo": []}  # type: dict[str, list[float]]
        own: list[float] = []
        raw: list[dict[str, list[float]]] = []
        for repeat in range(s.latency_repeats):
            env.say(f"latency: repeat {repeat + 1}/{s.latency_repeats}")
            times: dict[str, list[float]] = {"coopbot": [], "echo": []}
            handled: list[float] = []
            for i in range(s.pings):
                order = targets if i % 2 == 0 else list(reversed(targets))
                for room, bot in order:
                    seconds, answer = await pinger.ask(room, "!ping", bot, timeout=30)
                    key = "coopbot" if bot == coop.user_id else "echo"
                    times[key].append(seconds * 1000)
                    if key == "coopbot" and (ms := handling_ms(answer)) is not None:
                        handled.append(ms)
            for key, values in times.items():
                p50[key].append(percentile(values, 50))
                p95[key].append(percentile(values, 95))
            own.append(percentile(handled, 50))
            raw.append(times)

        section.add("coopbot p50", "ms", p50["coopbot"])
        section.add("echo bot p50", "ms", p50["echo"])
        section.add("ratio coopbot/echo p50", "×", ratios(p50["coopbot"], p50["echo"]), 2)
        section.add("coopbot p95", "ms", p95["coopbot"])
        section.add("echo bot p95", "ms", p95["echo"])
        section.add("ratio coopbot/echo p95", "×", ratios(p95["coopbot"], p95["echo"]), 2)
        section.add("coopbot's own handling time (p50, from its pong)", "ms", own, 2,
                    note="parse to reply; excludes sync delivery and the send request")
        section.raw["round_trips_ms"] = raw
        section.raw["rss_after_kib"] = {"coopbot": coop.rss(), "echo": echo.rss()}
    finally:
        coop.stop()
        echo.stop()
    return section
