"""The repository password and extra restic environment, read when needed (files may rotate).

Neither ever goes into a sentence, a log line or a command line: they travel only in the
helper container's environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from coopbot.config import RepositoryConfig
from coopbot.errors import ResticError

PasswordReader = Callable[[RepositoryConfig], str]


def read_password(config: RepositoryConfig) -> str:
    if config.password_file is not None:
        try:
            value = config.password_file.read_text(encoding="utf-8").strip()
        except OSError:
            raise ResticError("the restic password file cannot be read") from None
    else:
        value = os.environ.get(config.password_env or "", "")
    if not value:
        raise ResticError("the restic password is empty")
    return value


def read_environment(config: RepositoryConfig) -> dict[str, str]:
    """`KEY=value` lines of the environment file (blank lines and `#` comments skipped)."""
    if config.environment_file is None:
        return {}
    try:
        text = config.environment_file.read_text(encoding="utf-8")
    except OSError:
        raise ResticError("the restic environment file cannot be read") from None
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        values[key.strip()] = value.strip().strip("\"'")
    return values
