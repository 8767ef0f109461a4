"""Byte-preserving edits of abra env files: set a key's value, remove a key, add one.

Only the value span of the key's effective assignment changes on a set (its quoting style and
a trailing `# length=48` modifier stay); an unset removes the key's assignment lines and
nothing else; a new key goes at the end. Every other byte (comments, order, blank lines,
the final newline, bytes that are not UTF-8) is kept, so an operator's `git diff` of the
apps dir shows exactly the change that was asked for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from coopbot.recipes.envfile import (
    EnvFile,
    atomic_write,
    parse_env_text,
    read_text,
)

KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
# Written unquoted when the value is only made of these (no `$`, `#`, quotes, spaces, `\`).
_PLAIN = re.compile(r"[A-Za-z0-9._/:@%+,=-]+", re.ASCII)


def quoted(value: str, prefer: str = "") -> str:
    """`value` as env-file text that parses back to exactly `value` (no expansion)."""
    if prefer == "'" and "'" not in value:
        return f"'{value}'"
    if not prefer and _PLAIN.fullmatch(value):
        return value
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
               .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def set_values(text: str, values: Mapping[str, str], path: Path) -> str:
    """`text` with each key set to its value: in place when assigned, else appended."""
    for key in values:
        if not KEY.fullmatch(key):
            raise ValueError(f"{key!r} is not an env key")
    new_text = text
    for key, value in values.items():
        env = parse_env_text(new_text, path)
        spans = [a for a in env.assignments if a.key == key]
        if spans:
            span = spans[-1]
            new_text = (new_text[: span.value_start] + quoted(value, span.quote)
                        + new_text[span.value_end :])
        else:
            lead = "" if not new_text or new_text.endswith("\n") else "\n"
            new_text = f"{new_text}{lead}{key}={quoted(value)}\n"
    return new_text


def unset_keys(text: str, keys: Iterable[str], path: Path) -> str:
    """`text` without any assignment of `keys` (each removed with its whole line)."""
    wanted = set(keys)
    env = parse_env_text(text, path)
    spans = [a for a in env.assignments if a.key in wanted]
    new_text = text
    for span in reversed(spans):
        start = new_text.rfind("\n", 0, span.value_start) + 1
        end = new_text.find("\n", span.value_end)
        end = len(new_text) if end < 0 else end + 1
        new_text = new_text[:start] + new_text[end:]
    return new_text


def edit_env_file(path: Path, *, set_: Mapping[str, str] | None = None,
                  unset: Iterable[str] = ()) -> tuple[EnvFile, bool]:
    """Apply the edits to the file (its symlink's target), atomically; (new file, changed)."""
    target = Path(os.path.realpath(path))
    text = read_text(target)
    new_text = unset_keys(text, unset, target)
    if set_:
        new_text = set_values(new_text, set_, target)
    parsed = parse_env_text(new_text, target)
    if new_text != text:
        atomic_write(target, new_text.encode("utf-8", "surrogateescape"))
    return parsed, new_text != text
