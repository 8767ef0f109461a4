"""2. Status across a fleet: `!apps` over N SSH servers with 10 apps each, against the same data
gathered with the docker CLI over SSH, one server after another."""

from __future__ import annotations

import asyncio
import re
import time

from bench import recipe
from bench.environment import STACK_LABEL, Environment, execute, local_docker_env
from bench.member import Answer
from bench.results import Section
from bench.rooms import make_room, ready, wait_joined
from bench.sshfleet import SshEndpoint
from bench.stats import Summary, ratios

METHOD = """\
Servers are SSH endpoints: {fleet} sshd instances on 127.0.0.1, each with its own host key and
known_hosts file, all reaching the one local engine. On it run {apps} stacks of the bench recipe
(3 services each, no healthchecks so they stay idle), and every server has {apps} abra env files
naming them, so every server reports {apps} deployed apps ({services} services), exactly the data
a real {apps}-app server returns. coopbot's figure is a member's `!apps` in a room that controls
1, {main} or {fleet} servers, from send to answer (through Synapse). *Warm*: the bot has answered
before, its SSH connections are open. *Cold*: the first `!apps` after the bot (re)started, so it
includes the SSH handshakes. The alternative is what a person would script: for each server in
turn, `docker service ls` (name, replicas, image) and `docker service inspect` (the version
labels) with `DOCKER_HOST=ssh://server`; *plain* opens a new SSH connection per command as
`docker -H ssh://` does, *multiplexed* reuses one per server (ssh ControlMaster, warmed up first):
a power user's setup. coopbot also reads each recipe's newest version (from its git cache), which
the CLI script does not."""

_APPS_TITLE = re.compile(r"(\d+) apps")


def _stack(env: Environment, number: int) -> str:
    return f"bf{env.tag}_a{number:02d}"


async def _deploy_fleet_stacks(env: Environment, count: int) -> list[str]:
    compose = env.workdir / "fleet-compose.yml"
    compose.write_text(recipe.compose("1.0.0+v1", healthchecks=False))
    stacks = [_stack(env, n) for n in range(count)]

    async def deploy(stack: str) -> None:
        env.track_stack(stack)
        deploy_env = {**local_docker_env(), "STACK_NAME": stack, "GREETING": "hello"}
        done = await execute(["docker", "stack", "deploy", "--detach=true", "--resolve-image",
                              "never", "-c", str(compose), stack], env=deploy_env)
        if done.returncode != 0:
            raise RuntimeError(f"deploying {stack}: {done.stderr}")

    await asyncio.gather(*(deploy(stack) for stack in stacks))
    wanted = count * len(recipe.SERVICES)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        listed = await execute(["docker", "service", "ls", "--filter", f"label={STACK_LABEL}",
                            "--format", "{{.Name}} {{.Replicas}}"], env=local_docker_env())
        up = [line for line in listed.stdout.splitlines()
              if line.startswith(f"bf{env.tag}_") and line.endswith(" 1/1")]
        if len(up) >= wanted:
            return stacks
        await asyncio.sleep(1)
    raise TimeoutError(f"the {count} fleet stacks did not converge within 180 s")


async def _cli_status(env: Environment, endpoints: list[SshEndpoint], mux: bool) -> tuple[
        float, int]:
    """The person's script: per server, service ls then service inspect. (seconds, services)."""
    started = time.perf_counter()
    seen = 0
    for endpoint in endpoints:
        cli_env = env.fleet.cli_env(endpoint, mux=mux)
        listed = await execute(["docker", "service", "ls", "--filter", f"label={STACK_LABEL}",
                            "--format", "{{.Name}}\t{{.Replicas}}\t{{.Image}}"], env=cli_env)
        if listed.returncode != 0:
            raise RuntimeError(f"docker service ls on {endpoint.name}: {listed.stderr}")
        # This co-op's own stacks (other stacks on a shared engine may come and go meanwhile).
        names = [line.split("\t")[0] for line in listed.stdout.splitlines()
                 if line.startswith(f"bf{env.tag}_")]
        inspected = await execute(["docker", "service", "inspect", "--format",
                               "{{.Spec.Name}}\t{{json .Spec.Labels}}", *names], env=cli_env)
        if inspected.returncode != 0:
            raise RuntimeError(f"docker service inspect on {endpoint.name}: {inspected.stderr}")
        seen += sum(1 for line in inspected.stdout.splitlines()
                    if line.startswith(f"bf{env.tag}_"))
    return time.perf_counter() - started, seen


def _check(answer: Answer, size: int, apps: int) -> str | None:
    """A problem with coopbot's answer, if any (wrong app count, apps not running)."""
    match = _APPS_TITLE.search(answer.body.splitlines()[0] if answer.body else "")
    if match is None or int(match.group(1)) != size * apps:
        return f"`!apps` over {size} servers answered: {answer.body[:300]!r}"
    rows = [line for line in answer.body.splitlines()[2:] if line.strip()]
    if sum("running" in line for line in rows) != size * apps:
        return f"`!apps` over {size} servers: not every app shows running: {answer.body[:600]!r}"
    return None


async def run_bench(env: Environment) -> Section:
    s = env.settings
    apps = s.apps_per_server
    section = Section("fleet", "2. Status across a fleet (`!apps`)", METHOD.format(
        fleet=s.fleet_size, apps=apps, services=apps * len(recipe.SERVICES),
        main=s.fleet_main_size))
    env.say(f"fleet: deploying {apps} stacks")
    stacks = await _deploy_fleet_stacks(env, apps)
    endpoints = env.ssh_endpoints(s.fleet_size)
    apps_dir = env.workdir / "fleet-abra"
    for endpoint in endpoints:
        for number, stack in enumerate(stacks):
            recipe.write_env(apps_dir, endpoint.name, f"a{number:02d}.{endpoint.name}.bench",
                             version="1.0.0+v1", stack=stack)

    owner = await env.member("fleet-owner")
    asker = await env.member("fleet-member")
    coop = env.coopbot("fleet-coopbot",
                       servers={e.name: e.server_config() for e in endpoints},
                   apps_dir=str(apps_dir),
                   recipes={"overrides": {recipe.RECIPE: str(env.recipe_repo)},
                            "cache": "state/recipes"})
    rooms: dict[int, str] = {}
    for size in s.fleet_sizes:
        rooms[size] = await make_room(owner, f"fleet {size}", [coop], [asker])
    await owner.stop_syncing()
    coop.config["rooms"] = {rooms[size]: {"servers": [e.name for e in endpoints[:size]]}
                            for size in s.fleet_sizes}
    coop.write_config()

    async def ask_apps(size: int) -> float:
        seconds, answer = await asker.ask(rooms[size], "!apps", coop.user_id, timeout=120)
        problem = _check(answer, size, apps)
        if problem and problem not in section.findings:
            section.findings.append(problem)
        return seconds

    cold: dict[int, list[float]] = {size: [] for size in s.fleet_sizes}
    warm: dict[int, list[float]] = {size: [] for size in s.fleet_sizes}
    try:
        for repeat in range(s.fleet_cold_repeats):
            for size in s.fleet_cold_sizes:
                env.say(f"fleet: cold !apps over {size} servers ({repeat + 1}/"
                        f"{s.fleet_cold_repeats})")
                coop.stop()
                coop.start()
                if coop.starts == 1:
                    await wait_joined(asker, list(rooms.values()), [coop])
                await ready(asker, rooms[size], coop)
                cold[size].append(await ask_apps(size))
        if not coop.alive():
            coop.start()
            await wait_joined(asker, list(rooms.values()), [coop])
        for size in s.fleet_sizes:  # every room warm before the timed rounds
            await ask_apps(size)
        for repeat in range(s.fleet_repeats):
            env.say(f"fleet: warm !apps, repeat {repeat + 1}/{s.fleet_repeats}")
            for size in s.fleet_sizes:
                warm[size].append(await ask_apps(size))
        section.raw["coopbot_rss_kib"] = coop.rss()
    finally:
        coop.stop()

    largest = max(s.fleet_sizes)
    cli: dict[tuple[int, bool], list[float]] = {}
    for mux in (False, True):
        if mux:  # open each server's master connection before timing
            reach = largest if s.fleet_cli_large_repeats else max(
                n for n in s.fleet_sizes if n != largest)
            await _cli_status(env, endpoints[:reach], mux=True)
        for repeat in range(s.fleet_cli_repeats):
            env.say(f"fleet: docker CLI over SSH ({'multiplexed' if mux else 'plain'}), "
                    f"repeat {repeat + 1}/{s.fleet_cli_repeats}")
            for size in s.fleet_sizes:
                if size == largest and repeat >= s.fleet_cli_large_repeats:
                    continue
                seconds, seen = await _cli_status(env, endpoints[:size], mux)
                if seen < size * apps * len(recipe.SERVICES):
                    section.findings.append(
                        f"docker CLI saw only {seen} bench services over {size} servers")
                cli.setdefault((size, mux), []).append(seconds)

    main = s.fleet_main_size
    for size in s.fleet_sizes:
        section.add(f"coopbot `!apps`, {size} server(s), warm", "s", warm[size], 3)
    for size in s.fleet_cold_sizes:
        section.add(f"coopbot `!apps`, {size} server(s), cold (first after start)", "s",
                    cold[size], 3)
    for mux in (False, True):
        for size in s.fleet_sizes:
            if (size, mux) in cli:
                section.add(f"docker CLI over SSH, {size} server(s), "
                            f"{'multiplexed' if mux else 'plain'}", "s", cli[(size, mux)], 3)
    plain_main = cli[(main, False)]
    mux_main = cli[(main, True)]
    pairs = min(len(warm[main]), len(plain_main))
    section.add(f"ratio coopbot warm / CLI plain, {main} servers", "×",
                ratios(warm[main][:pairs], plain_main[:pairs]), 3)
    pairs_mux = min(len(warm[main]), len(mux_main))
    section.add(f"ratio coopbot warm / CLI multiplexed, {main} servers", "×",
                ratios(warm[main][:pairs_mux], mux_main[:pairs_mux]), 3)
    if cold[main]:
        pairs_cold = min(len(cold[main]), len(plain_main))
        section.add(f"ratio coopbot cold / CLI plain, {main} servers", "×",
                    ratios(cold[main][:pairs_cold], plain_main[:pairs_cold]), 3)

    smallest = min(s.fleet_sizes)
    growth = " -> ".join(f"{Summary.of(warm[n]).median:.3f} s" for n in s.fleet_sizes)
    section.findings.append(
        f"coopbot warm, median by fleet size {'/'.join(map(str, s.fleet_sizes))}: {growth} "
        f"(x{Summary.of(warm[largest]).median / Summary.of(warm[smallest]).median:.1f} for "
        f"x{largest // smallest} servers); docker CLI plain: " + " -> ".join(
            f"{Summary.of(cli[(n, False)]).median:.2f} s" for n in s.fleet_sizes
            if (n, False) in cli) + ".")
    for label, theirs in (("plain", plain_main), ("multiplexed", mux_main)):
        ours = Summary.of(warm[main]).median
        if ours > Summary.of(theirs).median:
            section.findings.append(
                f"**Worse:** coopbot's warm `!apps` over {main} servers "
                f"({ours:.3f} s) is slower than the docker CLI {label} "
                f"({Summary.of(theirs).median:.3f} s).")
    if cold[main] and Summary.of(cold[main]).median > Summary.of(mux_main).median:
        section.findings.append(
            f"Cold (first `!apps` after a start, SSH handshakes included) coopbot takes "
            f"{Summary.of(cold[main]).median:.3f} s over {main} servers, more than the "
            f"multiplexed CLI once its connections are open "
            f"({Summary.of(mux_main).median:.3f} s); later calls reuse the connections.")
    section.raw["cold"] = cold
    section.raw["warm"] = warm
    section.raw["cli"] = {f"{size}/{'mux' if mux else 'plain'}": v for (size, mux), v in
                          cli.items()}
    return section


async def run(env: Environment) -> Section:
    try:
        return await run_bench(env)
    finally:
        await asyncio.gather(*(env.remove_stack(_stack(env, number))
                               for number in range(env.settings.apps_per_server)))


