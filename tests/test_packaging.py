"""Every subpackage ships: a non-editable install (the container image) must not miss one."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {"coopbot", "coopbot.commands"} | {
        "coopbot." + init.parent.name for init in (ROOT / "coopbot").glob("*/__init__.py")
    }
    assert found <= listed, f"missing from pyproject packages: {sorted(found - listed)}"
