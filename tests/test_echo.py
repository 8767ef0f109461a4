"""What the bot echoes of a member's words is short, visible and cannot break the markup."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from coopbot.echo import ECHO_LIMIT, shown
from coopbot.errors import UnknownCommand
from coopbot.replies import Reply


def test_short_plain_values_are_unchanged() -> None:
    assert shown("blog.example.org") == "blog.example.org"
    assert shown("not now, please") == "not now, please"
    assert shown("ünïcødé 🙂") == "ünïcødé 🙂"


def test_long_values_are_cut_with_an_ellipsis() -> None:
    assert shown("x" * 1000) == "x" * (ECHO_LIMIT - 1) + "…"
    assert len(shown("x" * 1000, 10)) == 10


def test_invisible_and_direction_characters_are_spelled_out() -> None:
    assert shown("a\u200bb") == "a\\u200bb"
    assert shown("\u202eevil") == "\\u202eevil"
    assert shown("line\nbreak\x00") == "line\\u000abreak\\u0000"
    assert shown("\ud800") == "\\ud800"
    assert shown("\U000e0041") == "\\U000e0041"  # a tag character


def test_a_backtick_cannot_end_the_code_span() -> None:
    reply = Reply.of(str(UnknownCommand("a`**b**`<i>c", None)))
    assert reply.html.startswith("Unknown command <code>aˋ**b**ˋ&lt;i&gt;c</code>.")
    assert reply.html.count("<code>") == 2  # the name and `!help`, nothing split
    assert "<strong>" not in reply.html
    assert "&lt;i&gt;" in reply.html


@given(st.text())
def test_any_value_is_short_and_has_no_hidden_characters(value: str) -> None:
    out = shown(value)
    assert "`" not in out
    assert len(out) <= ECHO_LIMIT * 10  # a spelled-out character takes up to 10
    assert all(char.isprintable() for char in out)
    out.encode("utf-8")  # no lone surrogate is left to break the send
