"""Keep env values out of rooms: log lines and error text pass through here first."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# Short values ("1", "true", "app") are everywhere in logs; hiding them would hide the log.
MIN_SECRET_LENGTH = 4
HARMLESS = {"true", "false", "none", "null", "yes", "no"}
REDACTED = "[redacted]"


class Redactor:
    def __init__(self, values: Iterable[str]) -> None:
        secrets = sorted(
            {v for v in values if len(v) >= MIN_SECRET_LENGTH and v.lower() not in HARMLESS},
            key=len, reverse=True,
        )
        self._pattern = re.compile("|".join(re.escape(v) for v in secrets)) if secrets else None

    @staticmethod
    def for_env(env: Mapping[str, str], *, keep: Iterable[str] = ()) -> Redactor:
        """Redact every env value except those of `keep` keys (e.g. DOMAIN, which users know)."""
        kept = set(keep)
        return Redactor(value for key, value in env.items() if key not in kept)

    def __call__(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text) if self._pattern else text
