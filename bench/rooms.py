"""Small helpers shared by the benchmarks: rooms with bots in them, answer predicates."""

from __future__ import annotations

import asyncio
import re

from bench.bots import BotProcess
from bench.member import Answer, Member

JOIN_TIMEOUT = 90.0
_HANDLING = re.compile(r"answering took ([0-9.]+) ms")


async def make_room(owner: Member, name: str, bots: list[BotProcess],
                    members: list[Member]) -> str:
    """A private room created by `owner` (its v12 creator), the bots and members invited; the
    members join at once, the bots when they run."""
    room = await owner.create_room([b.user_id for b in bots] + [m.user_id for m in members], name)
    await asyncio.gather(*(m.join(room) for m in members))
    return room


async def wait_joined(member: Member, rooms: list[str], bots: list[BotProcess],
                      timeout: float = JOIN_TIMEOUT) -> None:
    await asyncio.gather(*(member.wait_joined(room, bot.user_id, timeout)
                           for room in rooms for bot in bots))


async def ready(member: Member, room: str, bot: BotProcess, timeout: float = 60.0) -> float:
    """Send `!ping` until the bot answers one (it may still be starting): seconds from the
    bot's spawn to the first answer. With `--profile`, py-spy starts sampling it then."""
    sent: list[str] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if not bot.alive():
            raise RuntimeError(f"{bot.kind} exited while starting:\n{bot.log_tail()}")
        event_id, _ = await member.send(room, "!ping")
        if event_id is not None:
            sent.append(event_id)
        try:
            answer = await member.wait_until(
                lambda: next((a for e in sent if (a := member.answer(e, bot.user_id))), None),
                0.2, "answer")
        except TimeoutError:
            continue
        bot.attach_profiler()
        return answer.arrived - bot.spawned_at
    raise TimeoutError(f"{bot.kind} {bot.user_id} answered no !ping within {timeout:g} s:\n"
                       f"{bot.log_tail()}")


def is_final(answer: Answer) -> bool:
    """coopbot's final answer, not its ⏳ status message."""
    return not answer.body.startswith("⏳")


def handling_ms(answer: Answer) -> float | None:
    """coopbot's own report of its handling time in a pong."""
    match = _HANDLING.search(answer.body)
    return float(match.group(1)) if match else None
