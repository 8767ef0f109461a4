"""Showing a member's own words back to them: short, visible and unable to break the markup.

Every value a member typed that goes back into a room passes through `shown`. It is cut to a
short length (a 60 KB command must not come back as a 60 KB answer), invisible or
direction-changing characters are spelled out (`\\u202e`) so a name cannot look like another,
and a backtick becomes a look-alike so it cannot end the `code` span it is shown in.
"""

from __future__ import annotations

import unicodedata

ECHO_LIMIT = 60
ELLIPSIS = "…"
# U+02CB MODIFIER LETTER GRAVE ACCENT: looks like a backtick, is not markup.
BACKTICK_LOOKALIKE = "\u02cb"
# Control, format (zero-width, bidi), surrogate, private-use and unassigned characters: none of
# them shows as itself, so each is written as its code point instead.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def shown(value: str, limit: int = ECHO_LIMIT, *, markup: bool = True) -> str:
    """`value` as it may appear in an answer (inside `code` or plain text); with `markup=False`
    for a preformatted block, where a backtick is no markup and stays itself."""
    cut = len(value) > limit
    kept = value[: limit - 1] if cut else value
    out = "".join(_visible(char, markup) for char in kept)
    return out + ELLIPSIS if cut else out


def _visible(char: str, markup: bool) -> str:
    if char == "`" and markup:
        return BACKTICK_LOOKALIKE
    if char == " ":
        return char
    if unicodedata.category(char) in _HIDDEN_CATEGORIES or char.isspace():
        point = ord(char)
        return f"\\u{point:04x}" if point <= 0xFFFF else f"\\U{point:08x}"
    return char
