"""3. Deploy: from `!deploy` to the bot's 'converged' answer for the 3-service bench recipe,
against `docker stack deploy` followed by polling `docker service ls` until converged."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime

from bench import recipe
from bench.environment import STACK_LABEL, Environment, execute, local_docker_env
from bench.results import Section
from bench.rooms import is_final, make_room, ready, wait_joined
from bench.stats import Summary, ratios

VERSION = "1.0.0+v1"
POLL = 0.25
DEPLOY_TIMEOUT = 180.0
_DONE = re.compile(r"operation (\w+): done in ([0-9.]+) s")

METHOD = """\
The same recipe (`benchapp` {version}: `app` and `api` are busybox httpd with a 1 s healthcheck,
`worker` sleeps; images built locally) on the same single-node swarm through the local socket.
coopbot: the room creator sends `!deploy <app> {version}` and the clock stops when the member's
client receives the final answer ("... converged and healthy"); this includes the recipe fetch
and checkout, preflight (env keys, secrets, networks, images), `docker stack deploy`, the
convergence wait and the env file update. The alternative: `docker stack deploy --detach=true
--resolve-image never -c compose.yml STACK` from a checkout made beforehand, then `docker service
ls` every {poll} s until all 3 services show 1/1 (a task counts as running only once healthy).
Each repeat deploys a fresh app both ways (order alternating), removing the stacks in between.
*Overhead* is coopbot minus the CLI in the same repeat: the bot's cost beyond the swarm's work.
The phases split each deploy with the swarm's own timestamps (service CreatedAt, and the
Status.Timestamp of each service's running task): before the swarm created the services, the
swarm's work until the last task ran (healthy), and from then to the answer (coopbot) or to
the poll that saw it (CLI)."""


async def _cli_deploy(stack: str, compose_file: str) -> float:
    deploy_env = {**local_docker_env(), "STACK_NAME": stack, "DOMAIN": stack,
                  "GREETING": "hello"}
    started = time.perf_counter()
    done = await execute(["docker", "stack", "deploy", "--detach=true", "--resolve-image",
                          "never", "--prune", "-c", compose_file, stack], env=deploy_env)
    if done.returncode != 0:
        raise RuntimeError(f"docker stack deploy {stack}: {done.stderr}")
    while time.perf_counter() - started < DEPLOY_TIMEOUT:
        listed = await execute(["docker", "service", "ls", "--filter",
                                f"label={STACK_LABEL}={stack}", "--format", "{{.Replicas}}"],
                               env=local_docker_env())
        replicas = listed.stdout.split()
        if len(replicas) == len(recipe.SERVICES) and all(r == "1/1" for r in replicas):
            return time.perf_counter() - started
        await asyncio.sleep(POLL)
    raise TimeoutError(f"{stack} did not converge within {DEPLOY_TIMEOUT:g} s")


_STAMP = re.compile(r"^(\S+?)(?:\.(\d+))?Z$")


def _epoch(stamp: str) -> float:
    """Docker's RFC 3339 timestamps (nanoseconds, Z) as seconds since the epoch."""
    match = _STAMP.match(stamp.strip().strip('"'))
    if match is None:
        raise ValueError(f"unexpected timestamp {stamp!r}")
    whole = datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC).timestamp()
    return whole + float(f"0.{match.group(2) or '0'}")


async def _swarm_times(stack: str) -> tuple[float, float]:
    """(when the stack's services were created, when its last task started running), from the
    swarm's own records: where a deploy's time went before, during and after the swarm's work."""
    env = local_docker_env()
    label = f"label={STACK_LABEL}={stack}"
    services = (await execute(["docker", "service", "ls", "-q", "--filter", label],
                              env=env)).stdout.split()
    created = (await execute(["docker", "service", "inspect", "--format", "{{json .CreatedAt}}",
                              *services], env=env)).stdout.split()
    tasks = (await execute(["docker", "service", "ps", "-q", "--filter", "desired-state=running",
                            *services], env=env)).stdout.split()
    states = (await execute(["docker", "inspect", "--format",
                             "{{.Status.State}} {{json .Status.Timestamp}}", *tasks],
                            env=env)).stdout.splitlines()
    running = [_epoch(line.split()[1]) for line in states if line.startswith("running ")]
    if not created or not running:
        raise RuntimeError(f"no swarm timestamps for {stack}")
    return min(_epoch(c) for c in created), max(running)


async def run(env: Environment) -> Section:
    s = env.settings
    section = Section("deploy", "3. Deploy to converged (`!deploy`)",
                      METHOD.format(version=VERSION, poll=POLL))
    apps_dir = env.workdir / "deploy-abra"
    (apps_dir / "servers" / "local").mkdir(parents=True)
    owner = await env.member("deploy-owner")
    coop = env.coopbot("deploy-coopbot",
                       servers={"local": {"kind": "local", "check_images": True}},
                   apps_dir=str(apps_dir),
                   recipes={"overrides": {recipe.RECIPE: str(env.recipe_repo)},
                            "cache": "state/recipes"})
    room = await make_room(owner, "deploy", [coop], [])
    coop.config["rooms"] = {room: {"servers": ["local"]}}
    coop.write_config()
    compose_file = env.workdir / "deploy-compose.yml"
    compose_file.write_text(recipe.compose(VERSION))

    bot: list[float] = []
    first_feedback: list[float] = []
    internal: list[float] = []
    cli: list[float] = []
    # Per way: seconds before the swarm created the services, the swarm's own work (created to
    # last task running), and from then to the answer / the poll noticing it.
    phases: dict[str, dict[str, list[float]]] = {
        way: {"before": [], "swarm": [], "after": []} for way in ("bot", "cli")}

    async def split(way: str, stack: str, wall_start: float, wall_end: float) -> None:
        created, converged = await _swarm_times(stack)
        phases[way]["before"].append(created - wall_start)
        phases[way]["swarm"].append(converged - created)
        phases[way]["after"].append(wall_end - converged)
    try:
        coop.start()
        await wait_joined(owner, [room], [coop])
        await ready(owner, room, coop)
        await owner.ask(room, f"!versions {recipe.RECIPE}", coop.user_id)  # clones the recipe
        for repeat in range(s.deploy_repeats):
            env.say(f"deploy: repeat {repeat + 1}/{s.deploy_repeats}")
            for way in (("bot", "cli") if repeat % 2 == 0 else ("cli", "bot")):
                if way == "cli":
                    stack = f"dc{env.tag}r{repeat}"
                    env.track_stack(stack)
                    wall_start = time.time()
                    cli.append(await _cli_deploy(stack, str(compose_file)))
                    await split("cli", stack, wall_start, time.time())
                    await env.remove_stack(stack)
                    continue
                name = f"d{env.tag}r{repeat}.bench"
                recipe.write_env(apps_dir, "local", name)
                stack = recipe.stack_of(name)
                env.track_stack(stack)
                log_size = len(coop.log_text())
                wall_start = time.time()
                event_id, started = await owner.send(room, f"!deploy {name} {VERSION}")
                if event_id is None:
                    raise RuntimeError(f"could not send !deploy: {owner.send_errors[-1]}")
                answer = await owner.wait_answer(event_id, coop.user_id, DEPLOY_TIMEOUT,
                                                 is_final)
                if "converged" not in answer.body:
                    raise RuntimeError(f"!deploy did not converge: {answer.body[:500]}")
                bot.append(answer.arrived - started)
                await split("bot", stack, wall_start,
                            wall_start + answer.arrived - started)
                status = owner.answer(event_id, coop.user_id, lambda a: not is_final(a))
                if status is not None:
                    first_feedback.append(status.arrived - started)
                done = _DONE.findall(coop.log_text()[log_size:])
                if done:
                    internal.append(float(done[-1][1]))
                await env.remove_stack(stack)
        section.raw["coopbot_rss_kib"] = coop.rss()
    finally:
        coop.stop()

    overhead = [b - c for b, c in zip(bot, cli, strict=True)]
    section.add("coopbot: `!deploy` to 'converged' answer", "s", bot, 2)
    section.add("docker stack deploy + poll until converged", "s", cli, 2)
    section.add("coopbot overhead (coopbot - CLI)", "s", overhead, 2)
    section.add("ratio coopbot/CLI", "×", ratios(bot, cli), 2)
    for way, label in (("bot", "coopbot"), ("cli", "CLI")):
        section.add(f"{label}: command to services created", "s", phases[way]["before"], 2)
        section.add(f"{label}: services created to last task running (swarm)", "s",
                    phases[way]["swarm"], 2)
        section.add(f"{label}: last task running to answer / poll noticing", "s",
                    phases[way]["after"], 2)
    section.add("coopbot: first ⏳ status message", "s", first_feedback, 2)
    section.add("coopbot: operation time in its own log", "s", internal, 1,
                note="logged with 0.1 s precision")
    if Summary.of(overhead).median > 0.5:
        section.findings.append(
            f"**Worse:** coopbot takes {Summary.of(overhead).median:.1f} s (median) more than "
            f"`docker stack deploy` + polling for the same deploy "
            f"({Summary.of(bot).median:.1f} s against {Summary.of(cli).median:.1f} s).")
    section.raw.update({"bot": bot, "cli": cli, "first_feedback": first_feedback,
                        "phases": phases})
    return section
