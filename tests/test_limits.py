"""Every answer fits one Matrix event: fit_to_event is the only thing between a handler's reply
and the homeserver's 64 KiB limit."""

from __future__ import annotations

import html
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coopbot.matrix.content import edit_of, notice
from coopbot.matrix.limits import (
    ATTACHMENT_NAME,
    CONTENT_BUDGET,
    EDIT_BUDGET,
    EVENT_LIMIT,
    content_size,
    fit_to_event,
)
from coopbot.replies import Attachment, Reply


def _html_text(markup: str) -> str:
    """The text an HTML body shows."""
    shown = re.sub(r"<br/>|</li>", "\n", markup)
    return html.unescape(re.sub(r"<[^>]+>", "", shown))


def test_a_short_reply_is_untouched() -> None:
    reply = Reply.of("`blog.example.org` deployed.")
    assert fit_to_event(reply) is reply


def test_a_long_reply_is_cut_at_a_line_with_a_note_and_attached_whole() -> None:
    text = "\n".join(f"line {n} <&> " + "é" * 50 for n in range(2_000))
    reply = Reply.preformatted("**Audit log**:", text)
    fitted = fit_to_event(reply)
    assert content_size(fitted) <= CONTENT_BUDGET
    assert fitted.text.endswith("\n… (cut: too long for one message; the whole answer is attached)")
    kept = fitted.text.rsplit("\n", 1)[0]
    assert reply.text.startswith(kept + "\n")  # whole lines only
    assert fitted.html.startswith("<pre><code>")
    assert fitted.attachment == Attachment(ATTACHMENT_NAME, reply.text.encode())


def test_a_reply_with_its_own_file_keeps_it() -> None:
    logs = Attachment("blog.log", b"...")
    fitted = fit_to_event(Reply.of("x" * 100_000).with_attachment(logs))
    assert fitted.attachment is logs
    assert fitted.text.endswith("… (cut: too long for one message)")


def test_the_whole_event_stays_under_the_limit_even_as_an_edit() -> None:
    reply = Reply.of("\\\"<>\x01" * 40_000)  # escapes make JSON much longer than the text
    for content in (notice(fit_to_event(reply)),
                    edit_of("$e", fit_to_event(reply, EDIT_BUDGET, attach=False))):
        size = len(json.dumps(content, ensure_ascii=False).encode())
        assert size * 4 / 3 < EVENT_LIMIT - 2_000  # room for encryption and the envelope


def test_a_tiny_budget_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        fit_to_event(Reply.of("x"), 10)


markup = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from("`*-\n<>&\"\\"),
                 max_size=3_000)


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(markup, max_size=40), budget=st.integers(1_000, 40_000),
       preformatted=st.booleans(), attach=st.booleans())
def test_any_reply_fits_and_plain_and_html_still_agree(
        lines: list[str], budget: int, preformatted: bool, attach: bool) -> None:
    text = "\n".join(lines)
    reply = Reply.preformatted("title", text) if preformatted else Reply.of(text)
    fitted = fit_to_event(reply, budget, attach=attach)
    assert content_size(fitted) <= budget
    if fitted is reply:
        return
    assert _html_text(fitted.html) == fitted.text
    assert reply.text.startswith(fitted.text.rsplit("\n", 1)[0])
    assert (fitted.attachment is not None) == attach
