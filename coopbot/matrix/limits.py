"""Keeping every answer under the homeserver's event size limit.

A Matrix event may be at most 65,536 bytes of JSON, and an answer carries its text twice (the
plain body and the HTML body), twice again in an edit (the fallback and `m.new_content`), and a
third more once encrypted (base64). An answer over the limit is refused by the homeserver and
the member hears nothing, so the send path fits every answer first: one that is too long is cut
at a line end with a note, and its whole text goes along as a file where the send can carry one.
"""

from __future__ import annotations

import html
import json

from coopbot.replies import Attachment, Reply

EVENT_LIMIT = 65_536
# Body + formatted body, as ASCII JSON strings: half the limit leaves room for the rest of the
# event and for encryption's base64 (x 4/3).
CONTENT_BUDGET = 32_000
# An edit holds its text twice.
EDIT_BUDGET = CONTENT_BUDGET // 2
MIN_BUDGET = 1_000
ATTACHMENT_NAME = "answer.txt"
# How far back a cut may move to end on a whole line.
_LINE_SLACK = 2_000


def json_size(text: str) -> int:
    """Bytes `text` takes as a JSON string, quotes and escapes included, with every non-ASCII
    character escaped (`\\u00e9`): that is how an encrypted room's plaintext is written before
    encryption, and it is never less than the UTF-8 the homeserver counts in a plain room."""
    return len(json.dumps(text, ensure_ascii=True))


def content_size(reply: Reply) -> int:
    return json_size(reply.text) + json_size(reply.html)


def fit_to_event(reply: Reply, budget: int = CONTENT_BUDGET, *, attach: bool = True) -> Reply:
    """`reply` itself when it fits `budget`; else its beginning with a note, and (with `attach`
    and no attachment of its own yet) its whole text as a file."""
    if budget < MIN_BUDGET:
        raise ValueError(f"a content budget of {budget} bytes is too small to say anything")
    if content_size(reply) <= budget:
        return reply
    attachment = reply.attachment
    if attach and attachment is None:
        attachment = Attachment(ATTACHMENT_NAME, reply.text.encode("utf-8", "replace"))
        note = "… (cut: too long for one message; the whole answer is attached)"
    else:
        note = "… (cut: too long for one message)"
    preformatted = "<pre>" in reply.html
    low, high = 0, len(reply.text)  # the longest prefix that fits lies in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        if content_size(_cut(reply.text[:middle], note, preformatted)) <= budget:
            low = middle
        else:
            high = middle - 1
    kept = reply.text[:low]
    line_end = kept.rfind("\n")
    if line_end >= 0 and len(kept) - line_end <= _LINE_SLACK:
        kept = kept[:line_end]
    fitted = _cut(kept, note, preformatted)
    return Reply(fitted.text, fitted.html, attachment if attach else None, reply.mentions)


def _cut(kept: str, note: str, preformatted: bool) -> Reply:
    """A plain-text beginning and the note, the HTML body showing exactly the same text."""
    escaped = html.escape(kept, quote=False)
    body = f"<pre><code>{escaped}</code></pre>" if preformatted else escaped.replace("\n", "<br/>")
    return Reply(text=f"{kept}\n{note}", html=f"{body}<br/>{html.escape(note)}")
