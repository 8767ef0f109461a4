"""Recipe versions: git tags like `2.0.1+1.0.6-social-amd64`, ordered semver-wise.

Hand-written rather than `semver`/`packaging`: `packaging` follows PEP 440 (where `+local`
parts DO compare and most upstream strings are invalid), and `semver` ignores the build part,
rejects a leading `v` and has no tie-break. Co-op Cloud needs semver precedence first and then a
deterministic tie-break on the full tag (two tags may differ only in their `+upstream` part).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import total_ordering

_TAG = re.compile(
    r"""^v?
    (?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)
    (?:-(?P<pre>[0-9A-Za-z_.-]+))?
    (?:\+(?P<build>[0-9A-Za-z_.+-]+))?$""",
    re.VERBOSE,
)
_DIGITS = re.compile(r"(\d+)")

# Prerelease key: a release sorts after every prerelease of the same core (semver rule 11).
_PreKey = tuple[int, tuple[tuple[int, int, str], ...]]


def _prerelease_key(pre: str | None) -> _PreKey:
    if pre is None:
        return (1, ())
    # Numeric identifiers sort numerically and before alphanumeric ones (semver 11.4).
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (0, parts)


def _natural_key(text: str) -> tuple[tuple[int, int, str], ...]:
    # Tie-break on the full string, but with digit runs compared as numbers so that
    # `+v10` sorts after `+v9` (plain string order would put it first).
    return tuple(
        (0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk)
        for chunk in _DIGITS.split(text)
        if chunk
    )


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    """One recipe version. `str()` gives the tag text unchanged (with its `v`, if any)."""

    text: str
    major: int
    minor: int
    patch: int
    prerelease: str | None
    build: str | None
    _key: tuple[object, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # The raw text ends the key so that ordering is total and agrees with equality.
        key = (
            self.major,
            self.minor,
            self.patch,
            _prerelease_key(self.prerelease),
            _natural_key(self.text.removeprefix("v")),
            self.text,
        )
        object.__setattr__(self, "_key", key)

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse a tag; raises ValueError when it is not `[v]X.Y.Z[-pre][+build]`."""
        found = try_parse(text)
        if found is None:
            raise ValueError(f"not a recipe version: {text!r}")
        return found

    @property
    def core(self) -> str:
        """`X.Y.Z[-pre]` without `v` or `+build`: what users often type."""
        pre = f"-{self.prerelease}" if self.prerelease else ""
        return f"{self.major}.{self.minor}.{self.patch}{pre}"

    @property
    def is_prerelease(self) -> bool:
        return self.prerelease is not None

    def is_minor_or_patch_upgrade_of(self, other: Version) -> bool:
        """True for a newer release within the same major version (what auto-updates may apply).

        A prerelease is never an automatic upgrade target.
        """
        return self.major == other.major and not self.is_prerelease and self > other

    def __str__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.text == other.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key < other._key


def try_parse(text: str) -> Version | None:
    """Parse a tag, or None when it is not a version (other tags in a recipe repo are ignored)."""
    text = text.strip()
    match = _TAG.match(text)
    if match is None:
        return None
    major, minor, patch = (int(match[name]) for name in ("major", "minor", "patch"))
    return Version(text, major, minor, patch, match["pre"], match["build"])


def sorted_desc(versions: Iterable[Version]) -> list[Version]:
    """Newest first."""
    return sorted(versions, reverse=True)


def newest(versions: Iterable[Version]) -> Version | None:
    """The newest version, or None for none."""
    return max(versions, default=None)
