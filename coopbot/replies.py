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


def _markup(text: str) -> tuple[dict[int, re.Match[str]], set[int], set[int]]:
    """Where the code spans start, and where bold opens and closes. A `code` span is literal:
    ** inside it (a member's value, say) is no bold marker, though bold may enclose a span."""
    codes = {match.start(): match for match in _CODE.finditer(text)}
    masked = _CODE.sub(lambda match: "`" + "x" * len(match.group(1)) + "`", text)
    bold = list(_BOLD.finditer(masked))
    return codes, {m.start() for m in bold}, {m.end() - 2 for m in bold}


def _render(text: str, code: str, strong: tuple[str, str], escape: bool) -> str:
    codes, opens, closes = _markup(text)
    out: list[str] = []
    index = 0
    while index < len(text):
        if index in codes:
            content = codes[index].group(1)
            out.append(code.format(html.escape(content, quote=False) if escape else content))
            index = codes[index].end()
        elif index in opens or index in closes:
            out.append(strong[0] if index in opens else strong[1])
            index += 2
        else:
            out.append(html.escape(text[index], quote=False) if escape else text[index])
            index += 1
    return "".join(out)


def _plain(text: str) -> str:
    return _render(text, "`{}`", ("", ""), escape=False)


def _inline(line: str) -> str:
    return _render(line, "<code>{}</code>", ("<strong>", "</strong>"), escape=True)


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
