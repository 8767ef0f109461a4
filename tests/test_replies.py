"""The light markup of answers: bold may span code, code is literal, plain and HTML agree."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from coopbot.replies import Reply


def test_bold_spans_code_and_code_stays_literal() -> None:
    reply = Reply.of("**`blog` deployed**: `a**b**` by **alice**")
    assert reply.text == "`blog` deployed: `a**b**` by alice"
    assert reply.html == ("<strong><code>blog</code> deployed</strong>: <code>a**b**</code> by "
                          "<strong>alice</strong>")


@given(st.text(max_size=60))
def test_no_placeholder_or_unescaped_markup_leaks(text: str) -> None:
    reply = Reply.of(f"**`{text}`** said `{text}`")
    assert "<" not in reply.html.replace("<strong>", "").replace("</strong>", "").replace(
        "<code>", "").replace("</code>", "").replace("<br/>", "").replace("<ul>", "").replace(
        "</ul>", "").replace("<li>", "").replace("</li>", "")
    assert not any("\ue000" <= c <= "\uf8ff" for c in reply.text if c not in text)


def test_commands_named_in_sentences_take_the_configured_prefix() -> None:
    from coopbot.replies import with_prefix

    reply = Reply.of("`blog` is not deployed; use `!deploy blog` first (`!help` lists all). "
                     "A `!` alone, `x!y` and `!!` stay.")
    shown = with_prefix(reply, "?")
    assert shown.text == ("`blog` is not deployed; use `?deploy blog` first (`?help` lists "
                          "all). A `!` alone, `x!y` and `!!` stay.")
    assert "<code>?deploy blog</code>" in shown.html and "<code>!</code>" in shown.html
    assert with_prefix(reply, "!") is reply
    assert "<code>&lt;deploy" in with_prefix(reply, "<").html
