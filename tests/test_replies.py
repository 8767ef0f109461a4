"""Reply.of's light markup: `code` spans are literal (a member's ** or < inside stays text), and
bold may enclose them, as in the bot's own "**`app` deployed**"."""

from __future__ import annotations

import html
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from coopbot.replies import Reply

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _before(text: str) -> Reply:
    """The markup as it was before code spans became literal (the reference for text whose code
    spans hold no `*`)."""
    def inline(line: str) -> str:
        escaped = _CODE.sub(r"<code>\1</code>", html.escape(line, quote=False))
        return _BOLD.sub(r"<strong>\1</strong>", escaped)

    out: list[str] = []
    in_list = False
    for line in text.split("\n"):
        if line.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{inline(line[2:])}</li>")
            continue
        if in_list:
            out.append("</ul>")
            in_list = False
        out.append(inline(line) + "<br/>")
    if in_list:
        out.append("</ul>")
    return Reply(_BOLD.sub(r"\1", text), "".join(out).removesuffix("<br/>"))


def test_bold_encloses_code() -> None:
    reply = Reply.of("**`blog.example.org` deployed**: 1.2.0 on prod")
    assert reply.text == "`blog.example.org` deployed: 1.2.0 on prod"
    assert reply.html == "<strong><code>blog.example.org</code> deployed</strong>: 1.2.0 on prod"


def test_stars_and_tags_inside_code_are_text() -> None:
    reply = Reply.of("Unknown app `a**b**<i>`. **Try** `!apps`.")
    assert reply.text == "Unknown app `a**b**<i>`. Try `!apps`."
    assert reply.html == ("Unknown app <code>a**b**&lt;i&gt;</code>. <strong>Try</strong> "
                          "<code>!apps</code>.")


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab *`\n-<&", max_size=60))
def test_the_bots_own_markup_renders_as_before(text: str) -> None:
    if any("*" in match.group(1) for match in _CODE.finditer(text)):
        return  # the one case that changed on purpose
    assert Reply.of(text) == _before(text)


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
