"""The swarm secrets an app's compose needs, named and versioned as abra names them, and
abra's rules for generating their values.

A recipe declares `secrets: {db_password: {external: true, name:
${STACK_NAME}_db_password_${SECRET_DB_PASSWORD_VERSION}}}`. The swarm name comes from the
interpolated compose; the version variable is the last `${VAR}` of the raw `name:` (not always
`SECRET_`-prefixed). The `# length=N` modifier on that variable's line sets a generated
password's length.
"""

from __future__ import annotations

import re
import secrets as random
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from coopbot.errors import UserError
from coopbot.recipes.interpolation import substitute

# Docker's limit on secret and config names, and their characters.
SECRET_NAME_LIMIT = 64
_SECRET_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", re.ASCII)
_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_VERSION = re.compile(r"v([0-9]{1,6})", re.ASCII)
# What a generated value is made of (abra's default password alphabet: letters and digits).
ALPHABET = string.ascii_letters + string.digits
# Without a `# length=N` modifier abra makes a passphrase of random words; coopbot makes a
# password of this many letters and digits instead (about 190 bits, no word list to ship).
DEFAULT_LENGTH = 32
MAX_LENGTH = 1024


@dataclass(frozen=True)
class SecretSpec:
    name: str  # the compose key, e.g. db_password (abra's secret name)
    swarm_name: str  # e.g. blog_example_org_db_password_v1
    version_key: str | None  # e.g. SECRET_DB_PASSWORD_VERSION
    version: str | None  # e.g. v1
    length: int | None  # from `# length=N`, None without one

    def swarm_name_at(self, stack: str, version: str) -> str:
        return f"{stack}_{self.name}_{version}"


def raw_secrets(checkout: Path, compose_files: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The top-level `secrets:` entries of the app's compose files, not interpolated (later
    files win per key): naming secrets needs only their own `name:`, so a required variable
    elsewhere (`${GREETING:?}` not set yet) does not stop `!secret generate`."""
    entries: dict[str, dict[str, Any]] = {}
    for file in compose_files:
        try:
            data = yaml.safe_load((checkout / file).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue  # a deploy's preflight reports what is wrong with the file
        section = data.get("secrets") if isinstance(data, dict) else None
        for key, entry in (section if isinstance(section, dict) else {}).items():
            if isinstance(entry, dict):
                entries[str(key)] = {**entries.get(str(key), {}), **entry}
    return entries


def secret_specs(raw: Mapping[str, Mapping[str, Any]], env: Mapping[str, str],
                 modifiers: Mapping[str, Mapping[str, str]]) -> list[SecretSpec]:
    """The external secrets the compose declares, in file order, named as the deploy will."""
    found: list[SecretSpec] = []
    for key, entry in raw.items():
        external = entry.get("external")
        if not external:
            continue
        legacy = external.get("name") if isinstance(external, dict) else None
        template = str(entry.get("name") or legacy or key)
        swarm_name = substitute(template, env.get)
        variables = [v for v in _VARIABLE.findall(template) if v != "STACK_NAME"]
        version_key = variables[-1] if variables else None
        length = None
        if version_key is not None:
            text = (modifiers.get(version_key) or {}).get("length")
            length = int(text) if text and text.isascii() and text.isdigit() else None
        found.append(SecretSpec(key, swarm_name, version_key,
                                env.get(version_key) if version_key else None, length))
    return found


def check_name(name: str) -> None:
    if len(name) > SECRET_NAME_LIMIT:
        raise UserError(f"The secret name `{name}` is {len(name)} characters long; Docker "
                        f"allows {SECRET_NAME_LIMIT}. A shorter app name (STACK_NAME) fixes it.")
    if not _SECRET_NAME.fullmatch(name):
        raise UserError(f"`{name}` is not a valid Docker secret name.")


def generate(length: int | None) -> str:
    """A random value by abra's rule: `length` letters and digits (DEFAULT_LENGTH without)."""
    size = DEFAULT_LENGTH if length is None else length
    if not 1 <= size <= MAX_LENGTH:
        raise UserError(f"A secret length must be from 1 to {MAX_LENGTH}; the recipe asks "
                        f"for {size}.")
    return "".join(random.choice(ALPHABET) for _ in range(size))


def next_version(version: str | None) -> str:
    """`v1` -> `v2`: abra's version scheme; anything else cannot be counted up."""
    match = _VERSION.fullmatch(version or "")
    if match is None:
        raise UserError(f"The secret version `{version}` is not like v1, v2, ...; set the next "
                        "one with `!config` and `!secret ... insert`.")
    return f"v{int(match[1]) + 1}"


def versions_on_swarm(spec: SecretSpec, stack: str, names: set[str]) -> list[str]:
    """Versions of this secret that exist on the swarm, oldest first."""
    prefix = f"{stack}_{spec.name}_"
    found = [n[len(prefix):] for n in names if n.startswith(prefix)]
    return sorted(found, key=lambda v: (len(v), v))
