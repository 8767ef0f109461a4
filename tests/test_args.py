"""Argument kinds and CommandSpec.bind: only what a command documents gets through, and any
other word, however hostile, gets the command's usage sentence (never another exception)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coopbot.args import APP, REQUEST_ID, SNAPSHOT, TEXT, VERSION, Duration, InvalidArg, Number
from coopbot.errors import UsageError
from coopbot.registry import Arg, CommandSpec
from coopbot.replies import Reply
from tests.test_docs import all_commands

HOSTILE_NUMBERS = ["²", "٣", "１", "¹²", "3²", "-1", "+1", "0", "1.0", "1e3", " 1", "1_000", "0x10",
                   "99999999999999999999999", "1" * 5000, "", "#", "##1", "٣٣", "۳", "৩", "Ⅳ"]


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> list[CommandSpec]:
    return all_commands(tmp_path_factory.mktemp("registry"))


async def _noop(_: object) -> Reply:
    return Reply.of("ok")


LOGS_LIKE = CommandSpec("logs", "x", "member", _noop, args=(
    Arg("app", kind=APP), Arg("service", optional=True),
    Arg.number("lines", 1, 2000, optional=True)))


@pytest.mark.parametrize("text", HOSTILE_NUMBERS)
def test_numbers_are_plain_ascii_digits_within_range(text: str) -> None:
    with pytest.raises(InvalidArg, match="a number from 1 to 999999999"):
        REQUEST_ID.parse(text)


def test_numbers_are_canonical() -> None:
    assert REQUEST_ID.parse("#007") == "7"
    assert REQUEST_ID.parse("999999999") == "999999999"
    assert Number(1, 200).value("200") == 200
    with pytest.raises(InvalidArg):
        Number(1, 200).parse("201")
    with pytest.raises(InvalidArg):
        Number(1, 200).parse("#3")  # only a kind with a prefix takes one


def test_durations() -> None:
    mute = Duration(1, 30 * 86400)
    assert mute.seconds("90s") == 90
    assert mute.seconds("2h") == 7200
    assert mute.parse("030d") == "30d"
    for bad in ("31d", "0s", "٣h", "３m", "1w", "h", "10", "1h30m", "9" * 40 + "d", "-1h"):
        with pytest.raises(InvalidArg, match="from 1 second to 30 days"):
            mute.parse(bad)


@pytest.mark.parametrize("name", ["blog\x00.example.org", "blog\n.example.org",
                                  "blog\u200b.example.org", "\u202eblog.example.org",
                                  "b" * 10_000, "../etc", "-rf", ".hidden", "a/b", "a b", "é.org",
                                  "blog.example.org\ud800", ""])
def test_names_refuse_what_docker_git_and_files_would_choke_on(name: str) -> None:
    with pytest.raises(InvalidArg, match="an app name of ASCII letters"):
        APP.parse(name)


def test_names_accept_what_coop_cloud_uses() -> None:
    for name in ("blog.example.org", "my_app.coop", "git-1.example.org"):
        assert APP.parse(name) == name
    assert VERSION.parse("1.2.0+1.21.0-rc1") == "1.2.0+1.21.0-rc1"
    assert SNAPSHOT.parse("1a2b3c4d") == "1a2b3c4d"


def test_text_is_bounded_and_printable() -> None:
    assert TEXT.parse("not during the AGM 🙅\u200d♀️") == "not during the AGM 🙅\u200d♀️"
    for bad in ("x" * 501, "a\x00b", "line\nbreak", "\ud800"):
        with pytest.raises(InvalidArg):
            TEXT.parse(bad)


def test_bind_answers_a_bad_value_with_the_rule_and_the_usage() -> None:
    with pytest.raises(UsageError) as caught:
        LOGS_LIKE.bind(("blog.example.org", "app", "10" + "0" * 30))
    message = str(caught.value)
    assert message.startswith("`logs`: lines must be a number from 1 to 2000; `1000")
    assert message.endswith("\nUsage: !logs <app> [service] [lines]")
    assert LOGS_LIKE.bind(("blog.example.org", "db", "0200")) == {
        "app": "blog.example.org", "service": "db", "lines": "200"}


def test_bind_cuts_and_neutralises_what_it_echoes() -> None:
    with pytest.raises(UsageError) as caught:
        LOGS_LIKE.bind(("\u202e`x`" + "y" * 60_000,))
    message = str(caught.value)
    assert len(message) < 400
    assert "\\u202e" in message and "\u202e" not in message
    assert "`x`" not in message  # a member's backtick cannot close the code span
    with pytest.raises(UsageError, match="unexpected words: `b c`"):
        LOGS_LIKE.bind(("a.org", "db", "5", "b", "c"))


words = st.lists(st.one_of(
    st.text(max_size=30),
    st.sampled_from(HOSTILE_NUMBERS),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.text(alphabet="0123456789#.+-_abc", max_size=12),
), max_size=5).map(tuple)


@settings(max_examples=300, deadline=None)
@given(words=words, index=st.integers(min_value=0))
def test_bind_returns_checked_values_or_a_usage_error(
        specs: list[CommandSpec], words: tuple[str, ...], index: int) -> None:
    spec = specs[index % len(specs)]
    try:
        values = spec.bind(words)
    except UsageError as error:
        assert str(error).endswith(f"Usage: {spec.usage()}")
        assert len(str(error)) < 1_000
        return
    kinds = {arg.name: arg.kind for arg in spec.args}
    for name, value in values.items():
        assert kinds[name].parse(value) == value  # canonical: checking again changes nothing
        assert not any(unicodedata.category(char) in ("Cc", "Cs") for char in value)
        if isinstance(kinds[name], Number):
            assert value.isascii() and value.isdigit()
