"""Shell/compose-style `$VAR` substitution, shared by env files and compose files.

Supports `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?msg}`, `${VAR?msg}`,
`${VAR:+alt}`, `${VAR+alt}` (nested references allowed in the word) and `$$` for a literal `$`,
the set docker compose and `docker stack deploy` understand.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from coopbot.errors import UserError

Lookup = Callable[[str], str | None]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class RequiredVariableError(UserError):
    """`${VAR?msg}` / `${VAR:?msg}` met an unset (or empty) variable."""

    def __init__(self, variable: str, message: str) -> None:
        reason = message or "it is required but not set"
        super().__init__(f"Variable {variable} is required: {reason}.")
        self.variable = variable
        self.message = message


class InterpolationSyntaxError(UserError):
    """A malformed `${...}`; the message gives the position, never the surrounding text."""


def substitute(text: str, lookup: Lookup, *, unset: set[str] | None = None) -> str:
    """Replace every reference in `text`. Unset variables without a default become ""
    and are added to `unset` when given (so a preflight can warn about them)."""
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        following = text[i + 1 : i + 2]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "{":
            value, i = _braced(text, i, lookup, unset)
            out.append(value)
        elif (name := _NAME.match(text, i + 1)) is not None:
            out.append(_plain(name[0], lookup, unset))
            i = name.end()
        else:
            # A lone `$` (end of text, `$1`, `$-`) is kept literally, as compose does.
            out.append("$")
            i += 1
    return "".join(out)


def _plain(name: str, lookup: Lookup, unset: set[str] | None) -> str:
    value = lookup(name)
    if value is None:
        if unset is not None:
            unset.add(name)
        return ""
    return value


def _braced(text: str, start: int, lookup: Lookup, unset: set[str] | None) -> tuple[str, int]:
    """Evaluate the `${...}` starting at `start` (the `$`); return its value and the next index."""
    name = _NAME.match(text, start + 2)
    if name is None:
        raise InterpolationSyntaxError(f"Invalid variable reference at character {start + 1}.")
    pos = name.end()
    if pos >= len(text):
        raise InterpolationSyntaxError(f"Unclosed `${{` at character {start + 1}.")
    if text.startswith("}", pos):
        return _plain(name[0], lookup, unset), pos + 1
    operator = next((op for op in _OPERATORS if text.startswith(op, pos)), None)
    if operator is None:
        raise InterpolationSyntaxError(f"Invalid variable reference at character {start + 1}.")
    word_start = pos + len(operator)
    end = _closing_brace(text, word_start, start)
    word = text[word_start:end]
    value = lookup(name[0])
    empty = value is None or (value == "" and operator.startswith(":"))

    def expand_word() -> str:
        # The word is expanded only when used, so `${A:-${B?b needed}}` only fails if A is empty.
        return substitute(word, lookup, unset=unset)

    if operator in (":-", "-"):
        result = expand_word() if empty else (value or "")
    elif operator in (":?", "?"):
        if empty:
            raise RequiredVariableError(name[0], expand_word())
        result = value or ""
    else:  # ":+" / "+": the alternative when set
        result = "" if empty else expand_word()
    return result, end + 1


def _closing_brace(text: str, pos: int, start: int) -> int:
    depth = 1
    while pos < len(text):
        if text.startswith("$$", pos):
            pos += 2
            continue
        if text.startswith("${", pos):
            depth += 1
            pos += 2
            continue
        if text[pos] == "}":
            depth -= 1
            if depth == 0:
                return pos
        pos += 1
    raise InterpolationSyntaxError(f"Unclosed `${{` at character {start + 1}.")
