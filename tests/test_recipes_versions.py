"""Recipe versions: parsing tags and semver ordering with a deterministic tie-break."""

from __future__ import annotations

import random

import pytest

from coopbot.recipes.versions import Version, newest, sorted_desc, try_parse


def v(text: str) -> Version:
    return Version.parse(text)


def test_parse_fields_and_text() -> None:
    version = v("2.0.1+1.0.6-social-amd64")
    assert (version.major, version.minor, version.patch) == (2, 0, 1)
    assert version.prerelease is None
    assert version.build == "1.0.6-social-amd64"
    assert str(version) == "2.0.1+1.0.6-social-amd64"
    assert version.core == "2.0.1"


@pytest.mark.parametrize(
    ("text", "core", "pre", "build"),
    [
        ("v1.2.3", "1.2.3", None, None),
        ("1.2.3", "1.2.3", None, None),
        ("v1.2.3+4.5", "1.2.3", None, "4.5"),
        ("1.0.0-rc.1+2.0", "1.0.0-rc.1", "rc.1", "2.0"),
        ("1.14.1-rootless_1", "1.14.1-rootless_1", "rootless_1", None),
        (" 0.3.0+1.1 ", "0.3.0", None, "1.1"),
    ],
)
def test_tolerated_forms(text: str, core: str, pre: str | None, build: str | None) -> None:
    version = v(text)
    assert (version.core, version.prerelease, version.build) == (core, pre, build)
    assert str(version) == text.strip()


@pytest.mark.parametrize("text", ["latest", "1.2", "1.2.3.4", "01.2.3", "1.2.x", "", "main"])
def test_non_versions(text: str) -> None:
    assert try_parse(text) is None
    with pytest.raises(ValueError, match="not a recipe version"):
        Version.parse(text)


def test_semver_order_not_string_order() -> None:
    ordered = [
        "0.9.0+1",
        "1.2.0+1",
        "1.9.9+1",
        "1.10.0-alpha+1",
        "1.10.0-alpha.1+1",
        "1.10.0-alpha.beta+1",
        "1.10.0-beta.2+1",
        "1.10.0-beta.11+1",
        "1.10.0-rc.1+1",
        "1.10.0+1",
        "1.10.1+1",
        "2.0.0+0.1",
        "10.0.0+1",
    ]
    shuffled = ordered[:]
    random.Random(7).shuffle(shuffled)
    assert [str(x) for x in sorted(v(t) for t in shuffled)] == ordered
    assert [str(x) for x in sorted_desc(v(t) for t in shuffled)] == ordered[::-1]


def test_build_part_breaks_ties_numerically() -> None:
    # Same semver: the full string decides, with digit runs compared as numbers.
    texts = ["1.0.0+v10", "1.0.0+v9", "1.0.0+1.0.10", "1.0.0+1.0.6", "1.0.0"]
    assert [str(x) for x in sorted_desc(v(t) for t in texts)] == [
        "1.0.0+v10",
        "1.0.0+v9",
        "1.0.0+1.0.10",
        "1.0.0+1.0.6",
        "1.0.0",
    ]


def test_equality_is_by_text_and_order_is_total() -> None:
    assert v("1.0.0+1") == v("1.0.0+1")
    assert len({v("1.0.0+1"), v("1.0.0+1")}) == 1
    assert v("v1.0.0") != v("1.0.0")
    assert (v("v1.0.0") < v("1.0.0")) != (v("1.0.0") < v("v1.0.0"))
    assert v("1.0.0") != "1.0.0"


def test_newest() -> None:
    assert newest([v("1.2.0+1"), v("1.10.0+1"), v("1.9.0+1")]) == v("1.10.0+1")
    assert newest([]) is None


@pytest.mark.parametrize(
    ("candidate", "current", "expected"),
    [
        ("1.1.0+2", "1.0.0+1", True),
        ("1.0.1+1", "1.0.0+1", True),
        ("1.10.0+1", "1.9.0+1", True),
        ("2.0.0+1", "1.9.0+1", False),  # a major upgrade needs a human
        ("1.0.0+1", "1.1.0+1", False),  # a downgrade
        ("1.0.0+1", "1.0.0+1", False),  # the same version
        ("1.1.0-rc.1+1", "1.0.0+1", False),  # prereleases are never automatic
        ("0.2.0+1", "0.1.0+1", True),
    ],
)
def test_minor_or_patch_upgrade(candidate: str, current: str, expected: bool) -> None:
    assert v(candidate).is_minor_or_patch_upgrade_of(v(current)) is expected
