"""The `coopbot` command: run, check-config, dev. Config problems exit 2 without a traceback."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from coopbot.config import load_config, summary
from coopbot.errors import ConfigError, CoopbotError

EXIT_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="coopbot", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the bot")
    run.add_argument("-c", "--config", type=Path, required=True)

    check = sub.add_parser("check-config", help="validate a config file and summarise it")
    check.add_argument("config", type=Path)

    dev = sub.add_parser("dev", help="run the bot on a throwaway local homeserver")
    dev.add_argument("--workdir", type=Path, default=Path(".coopbot-dev"))
    dev.add_argument("--port", type=int, default=None, help="homeserver port (default: free one)")
    dev.add_argument("--swarm", action="store_true",
                     help="make the local Docker engine a single-node swarm without asking")

    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        if args.command == "check-config":
            config = load_config(args.config)
            print(f"{args.config}: valid")
            for line in summary(config):
                print(f"  {line}")
            return 0
        if args.command == "run":
            from coopbot.app import run_bot

            asyncio.run(run_bot(load_config(args.config)))
            return 0
        if args.command == "dev":
            from coopbot.dev import run_dev

            asyncio.run(run_dev(args.workdir.resolve(), port=args.port, init_swarm=args.swarm))
            return 0
    except ConfigError as error:
        for problem in error.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except CoopbotError as error:
        logging.getLogger("coopbot").debug("fatal error detail: %s", error.detail)
        print(f"coopbot: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # nio logs every request at INFO; keep the bot's own story readable.
    logging.getLogger("nio").setLevel(logging.WARNING)
    logging.getLogger("peewee").setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
