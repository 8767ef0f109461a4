"""What a command answers: a plain body and an HTML body, built together so they never disagree."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


@dataclass(frozen=True)
class Attachment:
    """Long output (logs) goes to the room as a file instead of a wall of text."""

    filename: str
    data: bytes
    mimetype: str = "text/plain"


@dataclass(frozen=True)
class Reply:
    text: str
    html: str
    attachment: Attachment | None = None

    @staticmethod
    def of(text: str) -> Reply:
        """A reply from light markup: `code`, **bold**, lines starting with "- " as a list."""
        return Reply(text=_plain(text), html=_to_html(text))

    @staticmethod
    def preformatted(title: str, block: str) -> Reply:
        return Reply(
            text=f"{_plain(title)}\n{block}",
            html=f"{_to_html(title)}<pre><code>{html.escape(block)}</code></pre>",
        )

    def with_attachment(self, attachment: Attachment) -> Reply:
        return Reply(self.text, self.html, attachment)


def _plain(text: str) -> str:
    # A `code` span is literal: ** inside it (a member's value, say) is not bold markup.
    parts = _CODE.split(text)
    return "".join(f"`{part}`" if index % 2 else _BOLD.sub(r"\1", part)
                   for index, part in enumerate(parts))


def _inline(line: str) -> str:
    out = []
    for index, part in enumerate(_CODE.split(line)):
        escaped = html.escape(part, quote=False)
        if index % 2:
            out.append(f"<code>{escaped}</code>")
        else:
            out.append(_BOLD.sub(r"<strong>\1</strong>", escaped))
    return "".join(out)


def _to_html(text: str) -> str:
    out: list[str] = []
    in_list = False
    for line in text.split("\n"):
        if line.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{_inline(line[2:])}</li>")
            continue
        if in_list:
            out.append("</ul>")
            in_list = False
        out.append(_inline(line) + "<br/>")
    if in_list:
        out.append("</ul>")
    result = "".join(out)
    return result.removesuffix("<br/>")
