"""Compose-style `${VAR}` interpolation, including its error forms."""

from __future__ import annotations

import pytest

from coopbot.errors import UserError
from coopbot.recipes.compose import interpolate
from coopbot.recipes.interpolation import InterpolationSyntaxError, RequiredVariableError

ENV = {"A": "alpha", "EMPTY": "", "STACK_NAME": "blog_example_com"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no references", "no references"),
        ("${A}", "alpha"),
        ("$A", "alpha"),
        ("x$A-y", "xalpha-y"),
        ("${A}_${STACK_NAME}", "alpha_blog_example_com"),
        ("${UNSET}", ""),
        ("$UNSET.", "."),
        ("${UNSET:-default}", "default"),
        ("${EMPTY:-default}", "default"),
        ("${EMPTY-default}", ""),
        ("${UNSET-default}", "default"),
        ("${A:-default}", "alpha"),
        ("${A:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("${UNSET:-${A}}", "alpha"),
        ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
        ("${UNSET:-a:b-c}", "a:b-c"),
        ("$$A", "$A"),
        ("$${A}", "${A}"),
        ("$$$A", "$alpha"),
        ("price: 5$", "price: 5$"),
        ("$1 and $-", "$1 and $-"),
        ("${A?never raised}", "alpha"),
        ("${EMPTY?empty is set}", ""),
        ("${A:-${UNSET?not evaluated}}", "alpha"),
    ],
)
def test_substitution(text: str, expected: str) -> None:
    assert interpolate(text, ENV) == expected


@pytest.mark.parametrize(
    ("text", "variable", "message"),
    [
        ("${UNSET:?set UNSET in the app env}", "UNSET", "set UNSET in the app env"),
        ("${UNSET?needed}", "UNSET", "needed"),
        ("${EMPTY:?must not be empty}", "EMPTY", "must not be empty"),
        ("${UNSET?}", "UNSET", ""),
        ("${UNSET:?${A} is needed}", "UNSET", "alpha is needed"),
    ],
)
def test_required_variables(text: str, variable: str, message: str) -> None:
    with pytest.raises(RequiredVariableError) as caught:
        interpolate(text, ENV)
    assert caught.value.variable == variable
    assert caught.value.message == message
    assert isinstance(caught.value, UserError)
    assert variable in str(caught.value)
    assert (message or "required but not set") in str(caught.value)


@pytest.mark.parametrize("text", ["${", "${A", "${A:-x", "${}", "${1A}", "${A!x}", "x ${A:x}"])
def test_syntax_errors(text: str) -> None:
    with pytest.raises(InterpolationSyntaxError, match="character"):
        interpolate(text, ENV)


def test_unset_names_are_collected() -> None:
    unset: set[str] = set()
    interpolate("$A ${B} ${C:-x} ${D-y} $E", ENV, unset=unset)
    assert unset == {"B", "E"}
