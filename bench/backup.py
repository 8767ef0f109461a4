"""6. Backup and restore throughput for a 200 MB volume: plain restic on the same data (on the
host, and in a helper container as a bot would run it), and coopbot's `!backup` / `!restore`
once coopbot.backups exists (until then the coopbot part is reported as pending)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import shutil
from pathlib import Path

from bench import recipe
from bench.environment import Environment, execute, local_docker_env
from bench.results import Section
from bench.rooms import is_final, make_room, ready, wait_joined
from bench.stats import Summary

TIMEOUT = 900.0
SMALL_FILES = 2000
SMALL_SIZE = 10 * 1024

METHOD = """\
The data: a Docker volume holding {mb} MB of random (incompressible) bytes, {big} MB in 5 MB
files and {small} MB in {count} small files of 10 KB. *Plain restic* ({restic}) runs on the host
against the volume's mount point: `restic init`, then the timed `restic backup`, then the timed
`restic restore latest` into an empty folder (sizes checked). *restic in a helper container* does
the same through `docker run` of a scratch image holding the same restic binary, with the volume
mounted read-only, as a bot that backs up volumes on a swarm node does. Each repeat uses a fresh
repository; no cache (`--no-cache`) everywhere. Throughput is {mb} MB divided by the time."""


def fill(folder: Path, megabytes: int) -> int:
    small_total = min(SMALL_FILES * SMALL_SIZE, megabytes * 1024 * 1024 // 10)
    big_total = megabytes * 1024 * 1024 - small_total
    written = 0
    chunk = 5 * 1024 * 1024
    number = 0
    while written < big_total:
        size = min(chunk, big_total - written)
        (folder / f"big-{number:03d}.bin").write_bytes(os.urandom(size))
        written += size
        number += 1
    small = folder / "small"
    small.mkdir(exist_ok=True)
    for index in range(small_total // SMALL_SIZE):
        (small / f"f{index:05d}.dat").write_bytes(os.urandom(SMALL_SIZE))
        written += SMALL_SIZE
    return written


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


async def _mountpoint(volume: str) -> Path:
    done = await execute(["docker", "volume", "inspect", "--format", "{{.Mountpoint}}", volume],
                     env=local_docker_env())
    return Path(done.stdout.strip())


async def checked(argv: list[str], env: dict[str, str], what: str) -> float:
    done = await execute(argv, env=env, timeout=TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed: {done.stderr[-800:]}")
    return done.seconds


async def run_bench(env: Environment, volumes: list[str]) -> Section:
    s = env.settings
    small_mb = min(SMALL_FILES * SMALL_SIZE, s.backup_mb * 1024 * 1024 // 10) / 1024 / 1024
    restic_version = (await execute(["restic", "version"])).stdout.split(" compiled")[0]
    section = Section("backup", "6. Backup and restore throughput", METHOD.format(
        mb=s.backup_mb, big=round(s.backup_mb - small_mb), small=round(small_mb),
        count=int(small_mb * 1024 * 1024 // SMALL_SIZE), restic=restic_version))
    root = env.workdir / "backup"
    root.mkdir()
    password = root / "password"
    password.write_text(secrets.token_urlsafe(16))
    restic_env = {**local_docker_env(), "RESTIC_PASSWORD": password.read_text()}
    volume = f"bb{env.tag}_data"
    volumes.append(volume)
    await execute(["docker", "volume", "create", volume], env=local_docker_env())
    source = await _mountpoint(volume)
    env.say(f"backup: writing {s.backup_mb} MB of test data")
    total = await asyncio.to_thread(fill, source, s.backup_mb)
    mb = total / 1024 / 1024

    times: dict[str, list[float]] = {k: [] for k in
                                     ("plain backup", "plain restore", "helper backup",
                                      "helper restore", "init")}
    for repeat in range(s.backup_repeats):
        env.say(f"backup: plain restic, repeat {repeat + 1}/{s.backup_repeats}")
        repo = root / f"plain-{repeat}"
        times["init"].append(await checked(
            ["restic", "-r", str(repo), "--no-cache", "init"], restic_env, "restic init"))
        times["plain backup"].append(await checked(
            ["restic", "-r", str(repo), "--no-cache", "backup", "--quiet", str(source)],
            restic_env, "restic backup"))
        target = root / f"plain-restore-{repeat}"
        times["plain restore"].append(await checked(
            ["restic", "-r", str(repo), "--no-cache", "restore", "latest", "--target",
             str(target)], restic_env, "restic restore"))
        restored = await asyncio.to_thread(tree_bytes, target)
        if restored != total:
            section.findings.append(f"plain restore gave {restored} bytes, expected {total}")
        await asyncio.to_thread(shutil.rmtree, target, True)
        await asyncio.to_thread(shutil.rmtree, repo, True)

        env.say(f"backup: restic in a helper container, repeat {repeat + 1}/{s.backup_repeats}")
        repo = root / f"helper-{repeat}"
        await checked(["restic", "-r", str(repo), "--no-cache", "init"], restic_env,
                       "restic init")
        helper = ["docker", "run", "--rm", "-e", "RESTIC_PASSWORD", "-v", f"{repo}:/repo"]
        times["helper backup"].append(await checked(
            [*helper, "-v", f"{volume}:/data:ro", recipe.RESTIC_IMAGE, "-r", "/repo",
             "--no-cache", "backup", "--quiet", "/data"], restic_env, "helper backup"))
        restore_volume = f"bb{env.tag}_restore{repeat}"
        volumes.append(restore_volume)
        times["helper restore"].append(await checked(
            [*helper, "-v", f"{restore_volume}:/restore", recipe.RESTIC_IMAGE, "-r", "/repo",
             "--no-cache", "restore", "latest", "--target", "/restore"], restic_env,
            "helper restore"))
        restored = await asyncio.to_thread(tree_bytes, await _mountpoint(restore_volume))
        if restored != total:
            section.findings.append(f"helper restore gave {restored} bytes, expected {total}")
        await execute(["docker", "volume", "rm", "-f", restore_volume], env=local_docker_env())
        await asyncio.to_thread(shutil.rmtree, repo, True)

    for key, label in (("plain", "plain restic"), ("helper", "restic in a helper container")):
        for step in ("backup", "restore"):
            values = times[f"{key} {step}"]
            section.add(f"{label}: {step}", "s", values, 2)
            section.add(f"{label}: {step} throughput", "MB/s", [mb / v for v in values], 0)
    section.add("restic init (not in the figures above)", "s", times["init"], 2)

    if importlib.util.find_spec("coopbot.backups") is None:
        section.status = "pending"
        section.findings.append(
            "coopbot's `!backup` / `!restore` are not in this tree yet (no `coopbot.backups`): "
            "the coopbot figures are pending; the restic figures above are what they will be "
            "compared with. bench/backup.py measures them as soon as the feature lands.")
    else:
        try:
            await _coopbot_backup(env, section, source, password, mb, times)
        except Exception as error:  # keep the restic figures when the bot part breaks
            section.status = "failed"
            section.findings.append(f"coopbot's part failed: {type(error).__name__}: "
                                    f"{str(error)[:800]}")
    return section


async def _coopbot_backup(env: Environment, section: Section, data: Path, password: Path,
                          mb: float, times: dict[str, list[float]]) -> None:
    """`!backup` and `!restore` of an app whose volume holds the same data."""
    s = env.settings
    apps_dir = env.workdir / "backup-abra"
    repository = env.workdir / "backup" / "coopbot-repo"
    owner = await env.member("backup-owner")
    coop = env.coopbot("backup-coopbot",
                       servers={"local": {"kind": "local", "check_images": True}},
                   apps_dir=str(apps_dir),
                   recipes={"overrides": {recipe.RECIPE: str(env.recipe_repo)},
                            "cache": "state/recipes"},
                   backups={"local": {"repository": str(repository),
                                      "password_file": str(password),
                                      "helper_image": recipe.RESTIC_IMAGE}},
                   # The restore itself is measured: no vote, no safety backup first.
                   policies={"restore": {"approvals": 0, "backup_first": False}})
    room = await make_room(owner, "backup", [coop], [])
    coop.config["rooms"] = {room: {"servers": ["local"]}}
    coop.write_config()
    name = f"b{env.tag}.bench"
    recipe.write_env(apps_dir, "local", name)
    stack = recipe.stack_of(name)
    env.track_stack(stack)
    bot_times: dict[str, list[float]] = {"backup": [], "restore": []}
    try:
        coop.start()
        await wait_joined(owner, [room], [coop])
        await ready(owner, room, coop)
        _, answer = await owner.ask(room, f"!deploy {name} 1.0.0+v1", coop.user_id, 300,
                                    is_final)
        if "converged" not in answer.body:
            raise RuntimeError(f"deploy for the backup benchmark failed: {answer.body[:300]}")
        app_volume = await _mountpoint(f"{stack}_data")
        await asyncio.to_thread(shutil.copytree, data, app_volume, dirs_exist_ok=True)
        for repeat in range(s.backup_repeats):
            for step in ("backup", "restore"):
                env.say(f"backup: coopbot !{step}, repeat {repeat + 1}/{s.backup_repeats}")
                seconds, answer = await owner.ask(room, f"!{step} {name}", coop.user_id,
                                                  TIMEOUT, is_final)
                section.findings.append(f"coopbot `!{step}` answered: {answer.body[:300]!r}")
                bot_times[step].append(seconds)
    finally:
        coop.stop()
        await env.remove_stack(stack)
    for step in ("backup", "restore"):
        section.add(f"coopbot `!{step}` (send to final answer)", "s", bot_times[step], 2)
        section.add(f"coopbot `!{step}` throughput", "MB/s", [mb / v for v in bot_times[step]],
                    0)
        plain = Summary.of(times[f"plain {step}"]).median
        ours = Summary.of(bot_times[step]).median
        section.add(f"ratio coopbot/plain restic {step}", "×",
                    [v / plain for v in bot_times[step]], 2)
        if ours > plain * 1.2:
            section.findings.append(f"**Worse:** coopbot's `!{step}` takes {ours:.1f} s, plain "
                                    f"restic {plain:.1f} s.")


async def run(env: Environment) -> Section:
    volumes: list[str] = []
    try:
        return await run_bench(env, volumes)
    finally:
        if volumes:
            await execute(["docker", "volume", "rm", "-f", *volumes], env=local_docker_env())
