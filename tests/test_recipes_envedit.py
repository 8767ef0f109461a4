"""Byte-preserving env-file edits: examples, and properties over generated files and values
(the edited key parses back to exactly the value given, every other key keeps its value and
every other byte of the file stays)."""

from __future__ import annotations

import string
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from coopbot.recipes.envedit import edit_env_file, quoted, set_values, unset_keys
from coopbot.recipes.envfile import parse_env_text

P = Path("srv/app.env")
SAMPLE = (
    "TYPE=testapp:1.0.0+v1\n"
    "\n"
    "## Domain aliases\n"
    "#EXTRA_DOMAINS=',`www.x`'\n"
    "DOMAIN=blog.example.org\n"
    "SECRET_DB_PASSWORD_VERSION=v1 # length=32\n"
    'GREETING="hello there" # shown on the page\n'
    "QUOTED='it is $literal'\n"
)


def test_set_keeps_modifier_quote_comments_and_order() -> None:
    text = set_values(SAMPLE, {"SECRET_DB_PASSWORD_VERSION": "v2", "GREETING": "bye"}, P)
    assert text == SAMPLE.replace("=v1 # length=32", "=v2 # length=32").replace(
        '"hello there"', '"bye"')
    env = parse_env_text(text, P)
    assert env.modifiers["SECRET_DB_PASSWORD_VERSION"] == {"length": "32"}


def test_set_new_key_appends_and_unset_removes_only_its_line() -> None:
    text = set_values(SAMPLE.rstrip("\n"), {"NEW_KEY": "a b $c"}, P)
    assert text == SAMPLE + 'NEW_KEY="a b \\$c"\n'
    assert parse_env_text(text, P).values["NEW_KEY"] == "a b $c"
    assert unset_keys(text, ["NEW_KEY"], P) == SAMPLE
    without = unset_keys(SAMPLE, ["GREETING"], P)
    assert without == SAMPLE.replace('GREETING="hello there" # shown on the page\n', "")


def test_single_quoted_value_stays_single_quoted_and_literal() -> None:
    text = set_values(SAMPLE, {"QUOTED": "now $x"}, P)
    assert "QUOTED='now $x'\n" in text
    assert parse_env_text(text, P).values["QUOTED"] == "now $x"


def test_edit_file_follows_symlink_keeps_crlf_and_bytes(tmp_path: Path) -> None:
    real = tmp_path / "real.env"
    raw = b"A=1\r\n# \xff not utf-8\r\nB=2 # length=8\r\n"
    real.write_bytes(raw)
    link = tmp_path / "link.env"
    link.symlink_to(real)
    env, changed = edit_env_file(link, set_={"B": "3"})
    assert changed and link.is_symlink()
    assert real.read_bytes() == raw.replace(b"B=2", b"B=3")
    assert env.values["B"] == "3" and env.modifiers["B"] == {"length": "8"}
    _, changed = edit_env_file(link, set_={"B": "3"})
    assert not changed


_KEYS = st.text(string.ascii_uppercase + "_", min_size=1, max_size=8).filter(
    lambda k: not k[0].isdigit())
# Any printable text, with the characters env files treat specially over-represented.
_VALUES = st.text(st.one_of(st.sampled_from(list("$#'\"\\ =\t{}:-")),
                            st.characters(blacklist_categories=("Cs", "Cc"))), max_size=20) | \
    st.text(st.sampled_from(list("ab\n\r$\\\"'")), max_size=6)
_LINES = st.one_of(
    st.builds(lambda k, v: f"{k}={quoted(v)}", _KEYS, _VALUES),
    st.builds(lambda k, v: f"{k}={quoted(v)} # length=12", _KEYS, _VALUES),
    st.builds(lambda k, v: f"export {k}='{v}'", _KEYS, st.text("abc $#", max_size=5)),
    st.sampled_from(["", "# a comment", "#COMMENTED=out", "   "]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINES, max_size=8), _KEYS, _VALUES)
def test_set_property(lines: list[str], key: str, value: str) -> None:
    text = "\n".join(lines) + "\n"
    before = parse_env_text(text, P)
    after_text = set_values(text, {key: value}, P)
    after = parse_env_text(after_text, P)
    assert after.values[key] == value
    # Keys never referring to others keep their values (every generated value is literal).
    assert {k: v for k, v in after.values.items() if k != key} == {
        k: v for k, v in before.values.items() if k != key}
    assert after.modifiers.get(key, {}) == before.modifiers.get(key, {})
    if key in before.values:
        span = [a for a in before.assignments if a.key == key][-1]
        new_span = [a for a in after.assignments if a.key == key][-1]
        assert after_text[: span.value_start] == text[: span.value_start]
        assert after_text[new_span.value_end:] == text[span.value_end:]
    else:
        assert after_text.startswith(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(_LINES, max_size=8), _KEYS)
def test_unset_property(lines: list[str], key: str) -> None:
    text = "\n".join(lines) + "\n"
    before = parse_env_text(text, P)
    after_text = unset_keys(text, [key], P)
    after = parse_env_text(after_text, P)
    assert key not in after.values
    assert after.values == {k: v for k, v in before.values.items() if k != key}
    kept = [line for line in text.splitlines(keepends=True)
            if not any(line.lstrip().startswith(p) for p in (f"{key}=", f"export {key}="))]
    # Only the key's lines go (a generated value spanning lines is never split here).
    if all("\n" not in v and "\r" not in v for v in before.values.values()):
        assert after_text == "".join(kept)
