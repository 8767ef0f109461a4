"""Keeping secrets and env values out of rooms and logs: the one place that rewrites text.

A `Redactor` replaces known values (longest first, so a value containing another goes whole)
and, when asked, anything shaped like a credential whatever its value. Rooms see app env
values as `[redacted]`; the docker CLI's messages name them `${KEY}` instead, which tells an
operator which setting was involved without showing it. The log handler's filter
(logging_setup.py) holds one Redactor that grows as secrets are learnt.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

REDACTED = "[redacted]"
# Short values ("1", "true", "app") are everywhere in text; hiding them would hide the text.
MIN_SECRET_LENGTH = 4
HARMLESS = frozenset({"true", "false", "none", "null", "yes", "no"})
# Env keys members already see in rooms; every other env value is redacted from output.
PUBLIC_ENV_KEYS = ("TYPE", "RECIPE", "DOMAIN", "COMPOSE_FILE", "TIMEOUT", "LETS_ENCRYPT_ENV",
                   "ENABLE_BACKUPS", "STACK_NAME")
# Shapes of credentials whatever their value: HTTP bearer tokens, tokens in query strings,
# Synapse access tokens.
CREDENTIAL_SHAPES = (
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(access_token=)[^&\s\"']+"), r"\1" + REDACTED),
    (re.compile(r"\bsyt_[A-Za-z0-9_]+"), REDACTED),
)


def _worth_hiding(value: str) -> bool:
    return len(value) >= MIN_SECRET_LENGTH and value.lower() not in HARMLESS


class Redactor:
    """Replaces each known value by its replacement (by default `[redacted]`)."""

    def __init__(self, values: Iterable[str] | Mapping[str, str] = (), *,
                 credential_shapes: bool = False) -> None:
        pairs = (values.items() if isinstance(values, Mapping)
                 else ((value, REDACTED) for value in values))
        self._replacements = {v: r for v, r in pairs if v and _worth_hiding(v)}
        ordered = sorted(self._replacements, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self._shapes = credential_shapes

    @staticmethod
    def for_env(env: Mapping[str, str], *, keep: Iterable[str] = PUBLIC_ENV_KEYS) -> Redactor:
        """Every env value except those of `keep` keys (DOMAIN and the like, known anyway)."""
        kept = set(keep)
        return Redactor(value for key, value in env.items() if key not in kept)

    @staticmethod
    def naming(env: Mapping[str, str]) -> Redactor:
        """Every env value shown as `${KEY}` (for the docker CLI's messages)."""
        return Redactor({value: f"${{{key}}}" for key, value in env.items()})

    def adding(self, values: Iterable[str]) -> Redactor:
        """A redactor that also hides `values`."""
        return Redactor({**self._replacements, **{v: REDACTED for v in values}},
                        credential_shapes=self._shapes)

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(lambda match: self._replacements[match.group(0)], text)
        if self._shapes:
            for pattern, replacement in CREDENTIAL_SHAPES:
                text = pattern.sub(replacement, text)
        return text
