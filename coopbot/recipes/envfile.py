"""abra app env files: parse like a dotenv/shell file, and rewrite the TYPE line byte-exactly.

Own code rather than python-dotenv: abra files need per-key `# length=48` modifiers, the exact
source span of each assignment (to rewrite one value and keep every other byte), and errors
that name the line. python-dotenv offers none of these, and its expansion falls back to the
process environment, which must never leak into an app's config.

Rules (those of abra's godotenv fork, written down):
- `KEY=value` or `export KEY=value`; blank lines and `# ...` lines are ignored, so a
  commented-out key is not a key.
- `'single'` quotes: literal, may span lines, no expansion.
- `"double"` quotes: may span lines; `\\n`, `\\r`, `\\t`, `\\"`, `\\\\`, `\\$` escapes; expansion.
- unquoted: up to an inline ` # comment`, trimmed; `\\$` escape; expansion.
- expansion: `$VAR`, `${VAR}`, `${VAR:-default}`... of keys defined EARLIER in the file only;
  an unknown key expands to "" (never to the bot's own environment). `$$` is a literal `$`.
- a trailing comment's `name=value` words are that key's modifiers (`# length=48`).
- a key assigned twice keeps the last value (and that line's modifiers).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from coopbot.errors import UserError
from coopbot.recipes.interpolation import (
    InterpolationSyntaxError,
    RequiredVariableError,
    substitute,
)

_ASSIGNMENT = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=")
_INLINE_COMMENT = re.compile(r"[ \t]#")
_MODIFIER = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)=(\S*)")
_DOUBLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "$": "$$"}
# What TYPE may hold after a rewrite: it is written unquoted-safe, so nothing needing escapes.
_TYPE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
TYPE_KEYS = ("TYPE", "RECIPE")


class EnvFileError(UserError):
    """An env file we cannot read; names the file (server/app) and line, never its content."""

    def __init__(self, path: Path, line: int | None, reason: str) -> None:
        where = f", line {line}" if line is not None else ""
        super().__init__(f"App env file {shown_name(path)}{where}: {reason}.", detail=str(path))
        self.path = path
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class Assignment:
    """Where one `KEY=value` sits in the text, so it can be rewritten in place."""

    key: str
    line: int  # 1-based line of the key
    value_start: int  # offset of the value's first character (a quote, if quoted)
    value_end: int  # offset just past the value (past the closing quote, if quoted)
    quote: str  # "", "'" or '"'


@dataclass(frozen=True)
class EnvFile:
    path: Path
    values: dict[str, str]
    modifiers: dict[str, dict[str, str]]
    lines: dict[str, int]  # key -> line of its effective (last) assignment
    assignments: tuple[Assignment, ...] = field(repr=False)


def shown_name(path: Path) -> str:
    """`<server>/<app>.env`: enough to find the file, without the operator's home path."""
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def read_text(path: Path) -> str:
    """File text; surrogateescape keeps any non-UTF-8 byte so a rewrite gives it back unchanged."""
    try:
        return path.read_bytes().decode("utf-8", "surrogateescape")
    except OSError as error:
        raise EnvFileError(path, None, "it cannot be read") from error


def parse_env_file(path: Path) -> EnvFile:
    return parse_env_text(read_text(path), path)


def parse_env_text(text: str, path: Path) -> EnvFile:
    """Parse env-file text; `path` is only used in error messages and the result."""
    values: dict[str, str] = {}
    modifiers: dict[str, dict[str, str]] = {}
    lines: dict[str, int] = {}
    assignments: list[Assignment] = []
    pos, line = 0, 1
    while pos < len(text):
        line_end = _line_end(text, pos)
        body = text[pos:line_end].strip()
        if not body or body.startswith("#"):
            pos, line = line_end + 1, line + 1
            continue
        match = _ASSIGNMENT.match(text, pos)
        if match is None or match.end() > line_end:
            raise EnvFileError(path, line, _why_not_assignment(body))
        key = match[1]
        value, comment, assignment, end = _read_value(text, match.end(), line_end, key, line, path)
        try:
            values[key] = substitute(value, values.get) if assignment.quote != "'" else value
        except (RequiredVariableError, InterpolationSyntaxError) as error:
            raise EnvFileError(path, line, str(error).rstrip(".")) from error
        modifiers[key] = dict(_MODIFIER.findall(comment))
        lines[key] = line
        assignments.append(assignment)
        line += text.count("\n", pos, end)
        pos = _line_end(text, end) + 1
        line += 1
    return EnvFile(path, values, modifiers, lines, tuple(assignments))


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _why_not_assignment(body: str) -> str:
    if "=" not in body:
        return "expected KEY=value"
    return "the key is not a valid name (letters, digits and _ only)"


def _read_value(
    text: str, start: int, line_end: int, key: str, line: int, path: Path
) -> tuple[str, str, Assignment, int]:
    """Read the value after `=`: (template or literal, trailing comment, span, end offset)."""
    first = start
    while first < line_end and text[first] in " \t":
        first += 1
    quote = text[first] if first < line_end and text[first] in "'\"" else ""
    if not quote:
        rest = text[start:line_end]
        found = _INLINE_COMMENT.search(rest)
        raw = rest[: found.start()] if found else rest
        comment = rest[found.end() :] if found else ""
        raw_stripped = raw.strip()
        value_start = start + (len(raw) - len(raw.lstrip()))
        span = Assignment(key, line, value_start, value_start + len(raw_stripped), "")
        return _unquoted_template(raw_stripped), comment, span, line_end
    close = _closing_quote(text, first, quote)
    if close < 0:
        raise EnvFileError(path, line, f"the {_quote_name(quote)} quote is never closed")
    rest = text[close + 1 : _line_end(text, close)].strip()
    if rest and not rest.startswith("#"):
        raise EnvFileError(path, line, "unexpected text after the closing quote")
    inner = text[first + 1 : close]
    value = inner if quote == "'" else _double_template(inner)
    span = Assignment(key, line, first, close + 1, quote)
    return value, rest[1:], span, close + 1


def _quote_name(quote: str) -> str:
    return "single" if quote == "'" else "double"


def _closing_quote(text: str, first: int, quote: str) -> int:
    if quote == "'":
        return text.find("'", first + 1)
    pos = first + 1
    while pos < len(text):
        if text[pos] == "\\":
            pos += 2
        elif text[pos] == '"':
            return pos
        else:
            pos += 1
    return -1


def _double_template(inner: str) -> str:
    """Resolve backslash escapes; an escaped `$` becomes `$$` for the substitution step."""
    out: list[str] = []
    pos = 0
    while pos < len(inner):
        char = inner[pos]
        if char == "\\" and pos + 1 < len(inner):
            nxt = inner[pos + 1]
            out.append(_DOUBLE_ESCAPES.get(nxt, nxt))
            pos += 2
        else:
            out.append(char)
            pos += 1
    return "".join(out)


def _unquoted_template(raw: str) -> str:
    return raw.replace("\\$", "$$")


def write_type_version(path: Path, recipe: str, version: object) -> bool:
    """Set `TYPE=<recipe>:<version>` as abra does after a deploy; return False if already set.

    Like abra, every uncommented TYPE (or older RECIPE) assignment is rewritten and keeps its
    key; unlike abra, its quoting and trailing comment are kept too, and every other byte of
    the file (comments, order, final newline) is preserved. The write is atomic and goes to the
    symlink's target (server folders are often symlinks into an operator's git checkout).
    """
    version_text = str(version)
    for part, label in ((recipe, "recipe name"), (version_text, "version")):
        if not _TYPE_PART.fullmatch(part):
            raise UserError(f"`{part}` is not a valid {label} for an app env file.")
    target = Path(os.path.realpath(path))
    text = read_text(target)
    env = parse_env_text(text, target)
    spans = [a for a in env.assignments if a.key in TYPE_KEYS]
    if not spans:
        raise EnvFileError(target, None, "it has no TYPE line")
    new_text = text
    for span in reversed(spans):
        value = f"{span.quote}{recipe}:{version_text}{span.quote}"
        new_text = new_text[: span.value_start] + value + new_text[span.value_end :]
    if new_text == text:
        return False
    atomic_write(target, new_text.encode("utf-8", "surrogateescape"))
    return True


def atomic_write(target: Path, data: bytes) -> None:
    """Write via a temp file in the same directory + rename, keeping mode (and owner if we can)."""
    stat = target.stat()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, stat.st_mode & 0o7777)
        try:
            os.chown(tmp_name, stat.st_uid, stat.st_gid)
        except PermissionError:
            pass  # not root: the file stays ours, which it already was for us to write it
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    # Make the rename itself durable.
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
