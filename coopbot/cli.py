"""The `coopbot` command: run, check-config, dev, health, cross-signing, verify. Config
problems exit 2 without a traceback. The config file may also be named by COOPBOT_CONFIG (what
the container image does)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from coopbot import logging_setup
from coopbot.config import load_config, summary
from coopbot.errors import ConfigError, CoopbotError

EXIT_CONFIG = 2
CONFIG_ENV = "COOPBOT_CONFIG"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="coopbot", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-format", choices=logging_setup.FORMATS, default=None,
                        help="human (default) or json lines; also COOPBOT_LOG_FORMAT or the "
                             "config's logging.format")
    config_from_env = os.environ.get(CONFIG_ENV)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the bot")
    run.add_argument("-c", "--config", type=Path, required=config_from_env is None,
                     default=config_from_env, help=f"config file (default: ${CONFIG_ENV})")

    check = sub.add_parser("check-config", help="validate a config file and summarise it")
    check.add_argument("config", type=Path)

    dev = sub.add_parser("dev", help="run the bot on a throwaway local homeserver")
    dev.add_argument("--workdir", type=Path, default=Path(".coopbot-dev"))
    dev.add_argument("--port", type=int, default=None, help="homeserver port (default: free one)")
    dev.add_argument("--swarm", action="store_true",
                     help="make the local Docker engine a single-node swarm without asking")

    probe = sub.add_parser("health", help="ask the running bot's /healthz (exit 0 if healthy)")
    probe.add_argument("-c", "--config", type=Path, required=config_from_env is None,
                        default=config_from_env, help=f"config file (default: ${CONFIG_ENV})")

    keys = sub.add_parser("cross-signing",
                          help="the bot account's cross-signing identity (see docs/security.md)")
    keys.add_argument("action", choices=("status", "reset", "recovery-key"),
                      help="status: show it; reset: replace it with a new one (members who "
                           "verified the bot must verify it again); recovery-key: print a new "
                           "recovery key for matrix.recovery_key_file")
    keys.add_argument("-c", "--config", type=Path, required=config_from_env is None,
                      default=config_from_env, help=f"config file (default: ${CONFIG_ENV})")

    verify = sub.add_parser("verify", help="show the emoji of a member's verification of the "
                                           "bot, or confirm it (see docs/security.md)")
    verify.add_argument("user", nargs="?", help="the member's user id")
    verify.add_argument("device", nargs="?", help="the member's device id")
    verify.add_argument("-c", "--config", type=Path, required=config_from_env is None,
                        default=config_from_env, help=f"config file (default: ${CONFIG_ENV})")

    args = parser.parse_args(argv)
    try:
        log_format = logging_setup.choose_format(args.log_format)
    except ValueError as error:
        print(f"coopbot: {error}", file=sys.stderr)
        return EXIT_CONFIG
    logging_setup.configure(log_format, logging.DEBUG if args.verbose else logging.INFO)
    try:
        if args.command == "check-config":
            config = load_config(args.config)
            print(f"{args.config}: valid")
            for line in summary(config):
                print(f"  {line}")
            return 0
        if args.command == "run":
            from coopbot.app import run_bot

            config = load_config(args.config)
            # logging: the flag and COOPBOT_LOG_FORMAT win over the config file.
            logging_setup.configure(
                logging_setup.choose_format(args.log_format, config.logging.format),
                logging.DEBUG if args.verbose else config.logging.level.upper())
            asyncio.run(run_bot(config))
            return 0
        if args.command == "health":
            from coopbot.health import check as check_health

            try:
                health_config = load_config(args.config).health
            except ConfigError as error:
                # A container healthcheck knows 0 and 1 only (2 is reserved).
                print(f"unhealthy: config error: {error}")
                return 1
            healthy, message = check_health(health_config)
            print(message)
            return 0 if healthy else 1
        if args.command == "cross-signing":
            from coopbot.matrix.admin import cross_signing
            from coopbot.matrix.secret_storage import new_recovery_key

            if args.action == "recovery-key":
                # A secret for the operator's terminal only: store it in a 0600 file.
                print(new_recovery_key())
                return 0
            print(asyncio.run(cross_signing(load_config(args.config).matrix, args.action)))
            return 0
        if args.command == "verify":
            from coopbot.matrix.admin import verify as verify_device

            if (args.user is None) != (args.device is None):
                print("coopbot verify: give both <user> and <device>, or neither",
                      file=sys.stderr)
                return EXIT_CONFIG
            code, text = verify_device(load_config(args.config).matrix, args.user, args.device)
            print(text)
            return code
        if args.command == "dev":
            from coopbot.dev.embedded import run_dev

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


if __name__ == "__main__":
    sys.exit(main())
