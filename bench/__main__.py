"""`python -m bench [--quick] [--only NAMES]`: set everything up, run the benchmarks, write
bench/RESULTS.md and bench/results.json. See bench/README.md."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import backup, burst, deploy, fleet, latency, memory, worker
from bench.environment import Environment, machine, versions
from bench.procs import Processes
from bench.profiles import write_summary
from bench.report import keep_earlier, write
from bench.results import Section
from bench.settings import Settings

BENCH_DIR = Path(__file__).resolve().parent
Benchmark = Callable[[Environment], Awaitable[Section]]
BENCHMARKS: dict[str, tuple[str, Benchmark]] = {
    "latency": ("1. Command latency (`!ping`)", latency.run),
    "fleet": ("2. Status across a fleet (`!apps`)", fleet.run),
    "deploy": ("3. Deploy to converged (`!deploy`)", deploy.run),
    "burst": ("4. Burst: 5 members, 500 commands in 10 s", burst.run),
    "memory": ("5. Memory and restart", memory.run),
    "backup": ("6. Backup and restore throughput", backup.run),
    "worker": ("7. Backup and restore on a worker node", worker.run),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="a short smoke run: few repeats, small loads (~3 min)")
    parser.add_argument("--only", default="",
                        help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--output", type=Path, default=BENCH_DIR,
                        help="folder for RESULTS.md and results.json (default: bench/)")
    parser.add_argument("--profile", nargs="?", const="cpu", choices=("cpu", "wall"),
                        help="sample every coopbot process with py-spy into bench/profiles/ "
                             "once it answered: CPU time (default) or wall time including "
                             "waits (`--profile wall`); the figures then include the sampling "
                             "overhead")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work folder (logs, configs) instead of deleting it")
    args = parser.parse_args(argv)
    wanted = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in wanted if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    settings = Settings.quick_run() if args.quick else Settings.full()
    command = "bench/run" + (" --quick" if args.quick else "") + \
        (f" --only {args.only}" if args.only else "")
    if args.profile:
        command += f" --profile {args.profile}"
    return asyncio.run(_main(settings, wanted, args.output, args.keep, args.profile, command))


async def _main(settings: Settings, wanted: list[str], output: Path, keep: bool,
                profile: str | None, command: str) -> int:
    started = time.perf_counter()
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

    def say(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="coopbot-bench-"))
    procs = Processes()
    env = Environment(workdir, settings, procs, say)
    if profile:
        env.profile_dir = output / "profiles"
        env.profile_idle = profile == "wall"
        shutil.rmtree(env.profile_dir, ignore_errors=True)
    meta_machine = machine()
    sections: list[Section] = []
    failed = 0
    try:
        say(f"work folder {workdir}")
        fleet_size = settings.fleet_size if "fleet" in wanted else 0
        await asyncio.to_thread(env.setup, fleet_size)
        for name, (title, benchmark) in BENCHMARKS.items():
            if name not in wanted:
                sections.append(Section(name, title, "", status="skipped"))
                continue
            say(f"--- {title}")
            section_start = time.perf_counter()
            try:
                section = await benchmark(env)
            except Exception as error:  # one broken benchmark must not lose the others
                failed += 1
                say(f"{name} failed: {error!r}")
                section = Section(name, title, "", status="failed")
                section.findings.append(
                    f"Error: {type(error).__name__}: {str(error)[:1500]}")
                section.raw["traceback"] = traceback.format_exc()
            finally:
                await env.close_members()
            section.seconds = time.perf_counter() - section_start
            sections.append(section)
            say(f"{name} done in {section.seconds:.0f} s")
    finally:
        await env.cleanup()
        procs.stop_all()
        env.synapse.stop()
        if keep:
            say(f"kept the work folder {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    total = time.perf_counter() - started
    meta_machine["load average at end"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    meta = {
        "command": command, "date": date, "mode": "quick" if settings.quick else "full",
        "duration": f"{total / 60:.1f} min", "machine": meta_machine,
        "versions": await asyncio.to_thread(versions), "notes": env.notes,
        "settings": settings.__dict__,
    }
    path = write(output, meta, keep_earlier(output, sections))
    if env.profile_dir is not None and (summary := write_summary(env.profile_dir)):
        say(f"profiles summarised in {summary}")
    say(f"wrote {path} in {total / 60:.1f} min")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
