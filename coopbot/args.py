"""What each kind of command argument accepts, checked once when a command is bound.

A kind turns the word a member typed into its canonical text or raises InvalidArg with the rule
it broke; the registry turns that into the command's usage sentence. Handlers therefore only ever
see values that passed: numbers are plain ASCII digits within their range (`"²".isdigit()` and
`int("١")` both accept non-ASCII digits, and an unbounded number overflows SQLite), and names
are short and made of the characters Docker, git and file names accept.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Protocol

# The longest a member's free text (a vote reason, say) may be; it is stored and shown on cards.
TEXT_LIMIT = 500
NAME_LIMIT = 128


class InvalidArg(ValueError):
    """The word breaks its kind's rule; `str()` is that rule, e.g. "a number from 1 to 200"."""


class ArgKind(Protocol):
    @property
    def rule(self) -> str:
        """What the kind accepts, as the end of "<arg> must be ..."."""
        ...

    def parse(self, text: str) -> str:
        """The canonical form of `text`, or InvalidArg."""
        ...


_ASCII_DIGITS = re.compile(r"[0-9]+", re.ASCII)


@dataclass(frozen=True)
class Number:
    """A whole number in plain ASCII digits from `low` to `high`; `prefix` may lead it (`#3`)."""

    low: int
    high: int
    prefix: str = ""

    @property
    def rule(self) -> str:
        return f"a number from {self.low} to {self.high}"

    def parse(self, text: str) -> str:
        digits = text.removeprefix(self.prefix) if self.prefix else text
        # The length check comes first so that int() never sees thousands of digits.
        if (len(digits) > len(str(self.high)) + 2 or not _ASCII_DIGITS.fullmatch(digits)
                or not self.low <= int(digits) <= self.high):
            raise InvalidArg(self.rule)
        return str(int(digits))

    def value(self, text: str) -> int:
        return int(self.parse(text))


_DURATION = re.compile(r"([0-9]{1,9})([smhd])", re.ASCII)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Duration:
    """A number and a unit (`90s`, `30m`, `2h`, `1d`) between `low` and `high` seconds."""

    low: int
    high: int

    @property
    def rule(self) -> str:
        return f"a duration like 30m, 2h or 1d, from {_human(self.low)} to {_human(self.high)}"

    def parse(self, text: str) -> str:
        match = _DURATION.fullmatch(text)
        if not match:
            raise InvalidArg(self.rule)
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        if not self.low <= seconds <= self.high:
            raise InvalidArg(self.rule)
        return f"{int(match.group(1))}{match.group(2)}"

    def seconds(self, text: str) -> int:
        match = _DURATION.fullmatch(self.parse(text))
        assert match is not None
        return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _human(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


@dataclass(frozen=True)
class Name:
    """A name that reaches Docker, git or a file name: ASCII letters, digits and `extra`
    punctuation, starting with a letter or digit (so never `-x` or `..`), at most `limit` long."""

    what: str = "a name"
    extra: str = "._+-"
    limit: int = NAME_LIMIT

    @property
    def rule(self) -> str:
        marks = " ".join(self.extra)
        return (f"{self.what} of ASCII letters, digits and {marks}, starting with a letter or "
                f"digit, at most {self.limit} characters")

    def parse(self, text: str) -> str:
        allowed = re.compile(rf"[A-Za-z0-9][A-Za-z0-9{re.escape(self.extra)}]*", re.ASCII)
        if len(text) > self.limit or not allowed.fullmatch(text):
            raise InvalidArg(self.rule)
        return text


# Characters no member types on purpose into a reason: controls, lone surrogates (they cannot be
# stored as UTF-8), private-use and unassigned code points.
_TEXT_FORBIDDEN = frozenset({"Cc", "Cs", "Co", "Cn"})


@dataclass(frozen=True)
class Text:
    """Free text (a reason): any printable characters, at most `limit` of them."""

    limit: int = TEXT_LIMIT

    @property
    def rule(self) -> str:
        return f"text of at most {self.limit} characters, without control characters"

    def parse(self, text: str) -> str:
        if len(text) > self.limit or any(
                unicodedata.category(char) in _TEXT_FORBIDDEN for char in text):
            raise InvalidArg(self.rule)
        return text


WORD = Name("a word")
TEXT = Text()
APP = Name("an app name")
SERVER = Name("a server name")
RECIPE = Name("a recipe name", extra="._-", limit=100)
SERVICE = Name("a service name", extra="._-", limit=63)
VERSION = Name("a version", extra="._+-", limit=NAME_LIMIT)
SNAPSHOT = Name("a snapshot id", extra="", limit=64)
NODE = Name("a node's hostname or id", extra="._-", limit=253)  # a DNS name at most
# `!help !deploy` works too, so any short text; an unknown one is answered as such.
COMMAND = Text(limit=64)
REQUEST_ID = Number(1, 999_999_999, prefix="#")
