"""7. Backup and restore of a 200 MB volume on a WORKER of a real three-node swarm (the harness
of tests/harness/multinode.py): plain restic run on that node, restic in a helper container on
that node's engine, and coopbot's `!backup` / `!restore` through the manager over SSH."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import recipe
from bench.backup import checked, fill, tree_bytes
from bench.environment import Environment, execute
from bench.results import WORSE, Section
from bench.rooms import is_final, make_room, ready, wait_joined
from bench.stats import Summary
from coopbot.dev.local_images import build_docker_cli_image
from coopbot.servers.containers import HELPER_LABEL
from tests.harness.multinode import MultiNodeSwarm, SwarmNode, running_swarm

TIMEOUT = 900.0
DOCKER_CLI_IMAGE = "coopbot-bench/docker-cli:local"
TARGET = 1.5  # the target, reported against, never asserted

METHOD = """\
A real swarm on this machine: a manager and two workers, each its own dockerd in its own
network namespace (tests/harness/multinode.py), the bot reaching the manager over SSH with a
pinned host key. The data: a volume on *worker1* holding {mb} MB of random bytes (5 MB files
plus 10 KB files, as in section 6). *Plain restic on the node* ({restic}) runs inside worker1's
network and mount namespaces (`nsenter` into its dockerd's namespaces) against the volume's
folder there: the timed `restic backup`, then the timed `restic restore latest` into an empty
folder (sizes checked). *restic in a helper container* is `docker run` against worker1's own
engine, the volume mounted read-only (restore: into a fresh volume on worker1). *coopbot* is
`!backup` / `!restore` of an app of the `benchnode` recipe whose only service (busybox httpd,
1 s healthcheck, stop_grace_period 1 s) is pinned to worker1; its volume holds the same data;
the repository is a path on the disk every node shares (`shared_repository`); coopbot runs
restic in one-shot swarm services pinned to worker1 (the restore policy: no vote, no safety
backup, so the restore itself is measured). *Swarm stop/start* is what any restore of a live
app must wait for: the service scaled to 0 through the manager until its container on worker1
is gone, then to 1 until that container is healthy (polled every 0.25 s). No cache
(`--no-cache`) for the restic runs; a fresh repository per repeat for the restic runs, one
repository for coopbot (its first backup initialises it: `restic init` is in that figure).
Target (issue): backup within {target}x of restic in a helper; restore within {target}x of it
plus the swarm's stop/start."""


def _node_env(node: SwarmNode, password: str | None = None) -> dict[str, str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
           "DOCKER_HOST": f"unix://{node.socket}"}
    if password is not None:
        env["RESTIC_PASSWORD"] = password
    return env


async def _node_docker(node: SwarmNode, *args: str, timeout: float = 120) -> str:
    done = await execute(["docker", *args], env=_node_env(node), timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} on {node.name}: {done.stderr[-800:]}")
    return done.stdout


async def _mountpoint(node: SwarmNode, volume: str) -> Path:
    return Path((await _node_docker(node, "volume", "inspect", "--format",
                                    "{{.Mountpoint}}", volume)).strip())


def _on_node(node: SwarmNode, *argv: str) -> list[str]:
    """`argv` run in the node's network, mount and UTS namespaces (as a shell on it would)."""
    return ["nsenter", "-t", str(node.pid), "-n", "-m", "-u", "--", *argv]


async def _until(what: str, probe: Callable[[], Awaitable[bool]],
                 timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.25)


async def _events(node: SwarmNode, since: float, until: float) -> list[dict[str, Any]]:
    out = await _node_docker(node, "events", "--since", f"{since:.3f}", "--until",
                             f"{until:.3f}", "--format", "{{json .}}")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _spans(events: list[dict[str, Any]], key: str, begin: str, end: str,
           select: Callable[[dict[str, str]], bool]) -> dict[str, tuple[float, float]]:
    """(first `begin`, last `end`) time per actor, by `key` (an attribute), for the events of
    the actors `select` accepts."""
    seen: dict[str, dict[str, float]] = {}
    for event in events:
        attributes = event.get("Actor", {}).get("Attributes", {})
        action = event.get("Action")
        if action not in (begin, end) or not select(attributes):
            continue
        times = seen.setdefault(attributes.get(key, ""), {})
        at = event["timeNano"] / 1e9
        if action == begin:
            times.setdefault(begin, at)
        else:
            times[end] = at
    return {k: (v[begin], v[end]) for k, v in seen.items() if begin in v and end in v}


async def _phases(swarm: MultiNodeSwarm, node: SwarmNode, app_service: str, since: float,
                  until: float) -> dict[str, float]:
    """Where one `!backup` / `!restore` spent its time, from the engines' own event timestamps:
    helpers on the worker (one-shot swarm services: the manager's service create/remove, the
    worker's container start/die) and helpers on the manager (containers: create/destroy,
    start/die), and the app's container on the worker (die to the new task's start)."""
    manager, worker = await asyncio.gather(_events(swarm.manager, since, until),
                                           _events(node, since, until))
    services = [e for e in manager if e.get("Type") == "service"]
    manager_containers = [e for e in manager if e.get("Type") == "container"]
    worker_containers = [e for e in worker if e.get("Type") == "container"]

    def worker_helper(attributes: dict[str, str]) -> bool:
        return attributes.get("com.docker.swarm.service.name", "").startswith(
            "coopbot-helper-")

    def manager_helper(attributes: dict[str, str]) -> bool:
        return HELPER_LABEL in attributes

    service_life = _spans(services, "name", "create", "remove",
                          lambda a: a.get("name", "").startswith("coopbot-helper-"))
    worker_run = _spans(worker_containers, "com.docker.swarm.service.name", "start", "die",
                        worker_helper)
    manager_life = _spans(manager_containers, "name", "create", "destroy", manager_helper)
    manager_run = _spans(manager_containers, "name", "start", "die", manager_helper)
    lifetime = sum(b - a for a, b in (*service_life.values(), *manager_life.values()))
    inside = sum(b - a for a, b in (*worker_run.values(), *manager_run.values()))
    phases = {
        "helpers on the worker (one-shot swarm services)": float(len(service_life)),
        "helpers on the manager (containers)": float(len(manager_life)),
        "restic running (helper containers' start to exit)": inside,
        "helpers' own cost (create to start, exit to removal)": lifetime - inside,
        "outside the helpers (Matrix, SSH, reading the swarm, waits)":
            (until - since) - lifetime,
    }
    app = [e for e in worker_containers
           if e.get("Actor", {}).get("Attributes", {}).get(
               "com.docker.swarm.service.name") == app_service]
    died = [e["timeNano"] / 1e9 for e in app if e.get("Action") == "die"]
    started = [e["timeNano"] / 1e9 for e in app if e.get("Action") == "start"]
    if died and started and max(started) > min(died):
        phases["app's container down (die to the new task's start)"] = max(started) - min(died)
    return phases


async def _swarm_stop_start(swarm: MultiNodeSwarm, node: SwarmNode, service: str) -> float:
    """The orchestrator's own part of a restore: scale to 0 until the node's container is gone,
    scale to 1 until it is healthy."""
    label = f"label=com.docker.swarm.service.name={service}"

    async def gone() -> bool:
        return not (await _node_docker(node, "ps", "-q", "--filter", label)).split()

    async def healthy() -> bool:
        return bool((await _node_docker(node, "ps", "-q", "--filter", label, "--filter",
                                        "health=healthy")).split())

    started = time.perf_counter()
    await _node_docker(swarm.manager, "service", "scale", "--detach", f"{service}=0")
    await _until(f"{service} to stop", gone)
    await _node_docker(swarm.manager, "service", "scale", "--detach", f"{service}=1")
    await _until(f"{service} to be healthy", healthy)
    return time.perf_counter() - started


async def run(env: Environment) -> Section:
    s = env.settings
    restic_version = (await execute(["restic", "version"])).stdout.split(" compiled")[0]
    section = Section("worker", "7. Backup and restore on a worker node", METHOD.format(
        mb=s.worker_mb, restic=restic_version, target=TARGET))
    env.say("worker: building the docker CLI image and starting the three-node swarm")
    cli_image = await asyncio.to_thread(build_docker_cli_image, DOCKER_CLI_IMAGE)
    images = [f"{recipe.IMAGE}:v1", recipe.RESTIC_IMAGE, cli_image]
    started = time.perf_counter()
    swarm_cm = running_swarm(images)
    swarm = await asyncio.to_thread(swarm_cm.__enter__)
    section.findings.append(f"The swarm took {time.perf_counter() - started:.0f} s to start "
                            "(not in any figure).")
    try:
        await _measure(env, section, swarm, cli_image)
    finally:
        await asyncio.to_thread(swarm_cm.__exit__, None, None, None)
    return section


async def _measure(env: Environment, section: Section, swarm: MultiNodeSwarm,
                   cli_image: str) -> None:
    s = env.settings
    node = swarm.workers[0]
    # The nodes share this machine's disk: a folder here is the same path on every node.
    root = env.workdir / "worker"
    root.mkdir()
    password = secrets.token_urlsafe(16)
    password_file = root / "password"
    password_file.write_text(password)
    restic_env = _node_env(node, password)
    volume = f"bw{env.tag}_data"
    await _node_docker(node, "volume", "create", volume)
    source = await _mountpoint(node, volume)
    env.say(f"worker: writing {s.worker_mb} MB of test data on {node.name}")
    total = await asyncio.to_thread(fill, source, s.worker_mb)
    mb = total / 1024 / 1024

    times: dict[str, list[float]] = {k: [] for k in (
        "plain backup", "plain restore", "helper backup", "helper restore")}
    for repeat in range(s.worker_repeats):
        env.say(f"worker: plain restic on {node.name}, repeat {repeat + 1}/{s.worker_repeats}")
        repo = root / f"plain-{repeat}"
        restic = _on_node(node, "restic", "-r", str(repo), "--no-cache")
        await checked([*restic, "init"], restic_env, "restic init")
        times["plain backup"].append(await checked(
            [*restic, "backup", "--quiet", str(source)], restic_env, "restic backup"))
        target = root / f"plain-restore-{repeat}"
        times["plain restore"].append(await checked(
            [*restic, "restore", "latest", "--target", str(target)], restic_env,
            "restic restore"))
        restored = await asyncio.to_thread(tree_bytes, target)
        if restored != total:
            section.findings.append(f"plain restore gave {restored} bytes, expected {total}")
        await asyncio.to_thread(shutil.rmtree, target, True)
        await asyncio.to_thread(shutil.rmtree, repo, True)

        env.say(f"worker: restic in a helper on {node.name}, repeat {repeat + 1}")
        repo = root / f"helper-{repeat}"
        await checked([*_on_node(node, "restic", "-r", str(repo), "--no-cache"), "init"],
                      restic_env, "restic init")
        helper = ["docker", "run", "--rm", "--network", "none", "-e", "RESTIC_PASSWORD",
                  "-v", f"{repo}:/repo"]
        times["helper backup"].append(await checked(
            [*helper, "-v", f"{volume}:/data:ro", recipe.RESTIC_IMAGE, "-r", "/repo",
             "--no-cache", "backup", "--quiet", "/data"], restic_env, "helper backup"))
        restore_volume = f"bw{env.tag}_restore{repeat}"
        times["helper restore"].append(await checked(
            [*helper, "-v", f"{restore_volume}:/restore", recipe.RESTIC_IMAGE, "-r", "/repo",
             "--no-cache", "restore", "latest", "--target", "/restore"], restic_env,
            "helper restore"))
        restored = await asyncio.to_thread(tree_bytes, await _mountpoint(node, restore_volume))
        if restored != total:
            section.findings.append(f"helper restore gave {restored} bytes, expected {total}")
        await _node_docker(node, "volume", "rm", "-f", restore_volume)
        await asyncio.to_thread(shutil.rmtree, repo, True)

    for key, label in (("plain", "plain restic on the worker"),
                       ("helper", "restic in a helper on the worker")):
        for step in ("backup", "restore"):
            values = times[f"{key} {step}"]
            section.add(f"{label}: {step}", "s", values, 2)
            section.add(f"{label}: {step} throughput", "MB/s", [mb / v for v in values], 0)
    try:
        await _coopbot(env, section, swarm, node, cli_image, source, password_file, mb, times)
    except Exception as error:  # keep the restic figures when the bot part breaks
        section.status = "failed"
        section.findings.append(f"coopbot's part failed: {type(error).__name__}: "
                                f"{str(error)[:800]}")


async def _coopbot(env: Environment, section: Section, swarm: MultiNodeSwarm, node: SwarmNode,
                   cli_image: str, data: Path, password: Path, mb: float,
                   times: dict[str, list[float]]) -> None:
    """`!backup` and `!restore` of an app pinned to the worker whose volume holds the data."""
    s = env.settings
    repo = env.workdir / "recipes" / f"{recipe.NODE_RECIPE}.git"
    await asyncio.to_thread(recipe.create_node_repo, repo)
    apps_dir = env.workdir / "worker-abra"
    owner = await env.member("worker-owner")
    coop = env.coopbot(
        "worker-coopbot",
        servers={"multi": swarm.server_config(connect_timeout=5, node_helper_image=cli_image)},
        apps_dir=str(apps_dir),
        recipes={"overrides": {recipe.NODE_RECIPE: str(repo)}, "cache": "state/recipes"},
        backups={"multi": {"repository": str(env.workdir / "worker" / "coopbot-repo"),
                           "password_file": str(password), "helper_image": recipe.RESTIC_IMAGE,
                           "shared_repository": True}},
        # The restore itself is measured: no vote, no safety backup first.
        policies={"restore": {"approvals": 0, "backup_first": False}})
    room = await make_room(owner, "worker", [coop], [])
    coop.config["rooms"] = {room: {"servers": ["multi"]}}
    coop.write_config()
    name = f"w{env.tag}.bench"
    env_file = apps_dir / "servers" / "multi" / f"{name}.env"
    env_file.parent.mkdir(parents=True)
    env_file.write_text(f"TYPE={recipe.NODE_RECIPE}\n\nDOMAIN={name}\n\nDATA_NODE={node.name}\n")
    stack = recipe.stack_of(name)
    bot_times: dict[str, list[float]] = {"backup": [], "restore": []}
    swarm_times: list[float] = []
    phase_times: dict[str, list[float]] = {}
    try:
        coop.start()
        await wait_joined(owner, [room], [coop])
        await ready(owner, room, coop)
        _, answer = await owner.ask(room, f"!deploy {name} {recipe.NODE_VERSION}", coop.user_id,
                                    300, is_final)
        if "converged" not in answer.body:
            raise RuntimeError(f"deploy on the swarm failed: {answer.body[:300]}")
        app_volume = await _mountpoint(node, f"{stack}_data")
        await asyncio.to_thread(shutil.copytree, data, app_volume, dirs_exist_ok=True)
        for repeat in range(s.worker_repeats):
            for step in ("backup", "restore"):
                env.say(f"worker: coopbot !{step}, repeat {repeat + 1}/{s.worker_repeats}")
                since = time.time()
                seconds, answer = await owner.ask(room, f"!{step} {name}", coop.user_id,
                                                  TIMEOUT, is_final)
                section.findings.append(f"coopbot `!{step}` answered: {answer.body[:300]!r}")
                bot_times[step].append(seconds)
                phases = await _phases(swarm, node, f"{stack}_app", since, time.time())
                for phase, value in phases.items():
                    phase_times.setdefault(f"`!{step}`: {phase}", []).append(value)
            env.say(f"worker: the swarm's own stop/start, repeat {repeat + 1}")
            swarm_times.append(await _swarm_stop_start(swarm, node, f"{stack}_app"))
        restored = await asyncio.to_thread(tree_bytes, app_volume)
        if restored != round(mb * 1024 * 1024):
            section.findings.append(f"after `!restore` the app's volume holds {restored} bytes, "
                                    f"expected {round(mb * 1024 * 1024)}")
    finally:
        coop.stop()
        await execute(["docker", "stack", "rm", stack], env=_node_env(swarm.manager))
    _report(section, mb, times, bot_times, swarm_times)
    for phase, values in phase_times.items():
        if "helpers on the" in phase:
            section.add(phase, "n", values, 0)
        else:
            section.add(phase, "s", values, 2, note="engine events")


def _report(section: Section, mb: float, times: dict[str, list[float]],
            bot: dict[str, list[float]], swarm: list[float]) -> None:
    for step in ("backup", "restore"):
        section.add(f"coopbot `!{step}` (send to final answer)", "s", bot[step], 2)
        section.add(f"coopbot `!{step}` throughput", "MB/s", [mb / v for v in bot[step]], 0)
    section.add("swarm stop/start of the app (scale 0, then 1 to healthy)", "s", swarm, 2)
    pairs = list(zip(bot["restore"], swarm, strict=True))
    section.add("coopbot `!restore` minus the swarm stop/start", "s",
                [r - w for r, w in pairs], 2)
    for step in ("backup", "restore"):
        for key, label in (("plain", "plain restic on the node"),
                           ("helper", "restic in a helper")):
            section.add(f"ratio coopbot/{label} {step}", "×",
                        [v / t for v, t in zip(bot[step], times[f"{key} {step}"],
                                               strict=False)], 2)
    helper_restore = times["helper restore"]
    section.add("ratio (coopbot `!restore` minus swarm stop/start)/restic in a helper", "×",
                [(r - w) / h for (r, w), h in zip(pairs, helper_restore, strict=False)], 2)
    backup = Summary.of([v / t for v, t in zip(bot["backup"], times["helper backup"],
                                                strict=False)]).median
    restore = Summary.of([(r - w) / h for (r, w), h in zip(pairs, helper_restore,
                                                             strict=False)]).median
    for what, ratio in (("`!backup` against restic in a helper", backup),
                        ("`!restore` minus the swarm's stop/start against restic in a helper",
                         restore)):
        verdict = "within" if ratio <= TARGET else "outside"
        line = f"{what}: {ratio:.2f}× (median), {verdict} the {TARGET}× target."
        section.findings.append(f"{WORSE} {line}" if ratio > TARGET else line)
