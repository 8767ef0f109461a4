"""Log output: human-readable lines by default, JSON lines on request, and never a secret.

One handler on the root logger, (re)installed by `configure()`. A `Redactor` filter on that
handler rewrites every record before it is formatted: the configured Matrix password and access
token, the access token of the running session, restic repository passwords and anything shaped
like a bearer token or an `access_token=` query parameter become `[redacted]`, in the message, its
arguments and any traceback. The format is chosen by `--log-format`, then `COOPBOT_LOG_FORMAT`,
then the config's `logging.format`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TextIO

from coopbot.redact import Redactor

if TYPE_CHECKING:
    from coopbot.config import Config

LogFormat = Literal["human", "json"]
FORMATS: tuple[LogFormat, ...] = ("human", "json")
FORMAT_ENV = "COOPBOT_LOG_FORMAT"
HUMAN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that narrate every request at INFO: keep the bot's own story readable.
QUIET = ("nio", "peewee", "aiohttp.access")
_HANDLER_NAME = "coopbot"


class LogRedactor(logging.Filter):
    """Replaces known secret values and credential shapes in every record it sees."""

    def __init__(self) -> None:
        super().__init__()
        self._redactor = Redactor(credential_shapes=True)
        self._lock = threading.Lock()

    def add(self, *values: str | None) -> None:
        with self._lock:
            self._redactor = self._redactor.adding(v for v in values if v)

    def clean(self, text: str) -> str:
        return self._redactor(text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.clean(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.clean(record.exc_text)
        if record.stack_info:
            record.stack_info = self.clean(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message[, exception]."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False)


# The process has one root logger, so it has one redactor: secrets learnt at any point (config
# loaded, session restored) protect every handler installed before or after.
REDACTOR = LogRedactor()


def choose_format(flag: str | None, config_format: str | None = None) -> LogFormat:
    """The CLI flag wins over the environment, which wins over the config file."""
    for candidate in (flag, os.environ.get(FORMAT_ENV), config_format):
        if candidate:
            value = candidate.strip().lower()
            if value not in FORMATS:
                raise ValueError(f"log format must be human or json, not {candidate!r}")
            return "json" if value == "json" else "human"
    return "human"


def configure(
    log_format: LogFormat = "human", level: int | str = logging.INFO,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Install (or replace) coopbot's handler on the root logger; returns it."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if log_format == "json" else
                         logging.Formatter(HUMAN_FORMAT))
    handler.addFilter(REDACTOR)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Python warnings and a crash's traceback go through the same handler: same format (one
    # JSON object per line), same redaction.
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    return handler


def _log_uncaught(kind: type[BaseException], error: BaseException,
                  tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, tb)
        return
    logging.getLogger("coopbot").critical("coopbot stopped on an unexpected error",
                                          exc_info=(kind, error, tb))


def redact(*values: str | None) -> None:
    """Never log these values (e.g. an access token learnt at login)."""
    REDACTOR.add(*values)


def redact_config_secrets(config: Config) -> None:
    """The secrets a loaded config holds or points at: Matrix credentials, restic passwords."""
    redact(config.matrix.password, config.matrix.access_token, config.matrix.recovery_key)
    redact(*_backup_passwords(config))


def _backup_passwords(config: Config) -> Iterable[str]:
    for backup in config.backups.values():
        if backup.password_env:
            yield os.environ.get(backup.password_env, "")
        if backup.password_file:
            yield _read(backup.password_file)
        if backup.environment_file:
            # KEY=value lines (AWS keys and the like): every value is a secret.
            for line in _read(backup.environment_file).splitlines():
                key, sep, value = line.partition("=")
                if sep and not key.strip().startswith("#"):
                    yield value.strip().strip("'\"")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""
