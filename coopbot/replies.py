"""What a command answers: a plain body and an HTML body, built together so they never disagree."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
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
    # Who the message mentions (pings), sent as `m.mentions`; None sends no such key, and an
    # empty tuple tells clients it pings nobody, even where a name appears in the text.
    mentions: tuple[str, ...] | None = None

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

    @staticmethod
    def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Reply:
        """A table: aligned columns in the plain body, a real <table> in the HTML (which
        phones wrap instead of scrolling a wide <pre> sideways)."""
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in rows)
        return Reply(
            text=f"{_plain(title)}\n{aligned(header, rows)}",
            html=f"{_to_html(title)}<table><thead><tr>{head}</tr></thead>"
                 f"<tbody>{body}</tbody></table>",
        )

    def with_attachment(self, attachment: Attachment) -> Reply:
        return Reply(self.text, self.html, attachment, self.mentions)

    def mentioning(self, users: tuple[str, ...]) -> Reply:
        return Reply(self.text, self.html, self.attachment, users)


def aligned(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, one line per row."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width
                                in zip(row, widths, strict=True)).rstrip()
                      for row in (header, *rows))


def _plain(text: str) -> str:
    return _render(text, prose=lambda part: _BOLD.sub(r"\1", part), code=lambda part: f"`{part}`")


def _inline(line: str) -> str:
    return _render(
        line,
        prose=lambda part: _BOLD.sub(r"<strong>\1</strong>", html.escape(part, quote=False)),
        code=lambda part: f"<code>{html.escape(part, quote=False)}</code>",
    )


def _render(text: str, *, prose: Callable[[str], str], code: Callable[[str], str]) -> str:
    """A `code` span is literal (** inside it, a member's value say, is not markup), while
    bold may span code (**`app` deployed**): code spans stand in as placeholders while the
    prose is rendered, then are put back."""
    parts = _CODE.split(text)
    mark = _unused_char(text)
    joined = "".join(part if index % 2 == 0 else f"{mark}{index}{mark}"
                     for index, part in enumerate(parts))
    rendered = prose(joined)
    for index in range(1, len(parts), 2):
        rendered = rendered.replace(f"{mark}{index}{mark}", code(parts[index]))
    return rendered


def _unused_char(text: str) -> str:
    """A private-use character the text does not contain (placeholders must not collide)."""
    point = 0xE000
    while chr(point) in text:
        point += 1
    return chr(point)


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


# Sentences name commands in the default form, `!deploy`; a co-op may choose another prefix.
DEFAULT_PREFIX = "!"
_COMMAND_IN_TEXT = re.compile(r"`!(?=[a-z])")
_COMMAND_IN_HTML = re.compile(r"<code>!(?=[a-z])")


def with_prefix(reply: Reply, prefix: str) -> Reply:
    """The reply with every command it names (`!deploy ...`) written with `prefix`: the one
    place a configured prefix reaches the bot's sentences, wherever they were written."""
    if prefix == DEFAULT_PREFIX:
        return reply
    return Reply(
        text=_COMMAND_IN_TEXT.sub(lambda _: f"`{prefix}", reply.text),
        html=_COMMAND_IN_HTML.sub(lambda _: f"<code>{html.escape(prefix)}", reply.html),
        attachment=reply.attachment, mentions=reply.mentions,
    )
