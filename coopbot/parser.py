"""Turn a message body into a command name and words, or decide it is not a command."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass


@dataclass(frozen=True)
class ParsedCommand:
    name: str
    words: tuple[str, ...]
    text: str  # the command text after the prefix, for the audit log


def strip_reply_fallback(body: str) -> str:
    """Remove the quoted "> <@user> ..." block clients prepend to replies (spec reply fallback)."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith(">"):
        return body
    index = 0
    while index < len(lines) and lines[index].startswith(">"):
        index += 1
    # The fallback is separated from the reply by one empty line.
    if index < len(lines) and lines[index] == "":
        index += 1
    return "\n".join(lines[index:])


class CommandParser:
    """Accepts `!cmd args` (configurable prefix) and `botname: cmd args` (localpart, MXID, name)."""

    def __init__(self, prefix: str, bot_user_id: str, display_name: str | None = None) -> None:
        self._prefix = prefix
        names = {bot_user_id.lstrip("@"), bot_user_id.split(":", 1)[0].lstrip("@")}
        if display_name:
            names.add(display_name)
        alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        self._mention = re.compile(rf"^\s*@?(?:{alternatives})\s*[:,]\s*", re.IGNORECASE)

    def parse(self, body: str) -> ParsedCommand | None:
        text = strip_reply_fallback(body).strip()
        if text.startswith(self._prefix):
            rest = text[len(self._prefix):]
        else:
            match = self._mention.match(text)
            if not match:
                return None
            rest = text[match.end():]
        if not rest or rest[0].isspace():
            return None
        rest = rest.strip()
        words = _split(rest)
        if not words:
            return None
        return ParsedCommand(name=words[0].lower(), words=tuple(words[1:]), text=rest)


def _split(text: str) -> list[str]:
    # Quotes let a member pass a reason with spaces; an unbalanced quote falls back to plain words.
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()
