"""Flags on a command (`!deploy <app> --chaos [ref]`): bound wherever they stand, checked by
kind, and needing their own role (config `command_roles: {"deploy --chaos": ...}`)."""

from __future__ import annotations

import pytest

from coopbot.args import APP, VERSION, Name
from coopbot.errors import ConfigError, UsageError
from coopbot.registry import Arg, CommandRegistry, CommandSpec, Flag
from coopbot.replies import Reply


async def _handler(inv: object) -> Reply:
    return Reply.of("ok")


DEPLOY = CommandSpec(
    "deploy", "deploy", "operator", _handler,
    args=(Arg("app", kind=APP), Arg("version", optional=True, kind=VERSION)),
    flags=(Flag("chaos", help="untagged", value=Arg("ref", kind=Name("a ref", extra="._+-/")),
                role="admin"),),
)


def test_a_flag_binds_with_or_without_its_value_anywhere_after_the_command() -> None:
    assert DEPLOY.bind(("blog", "--chaos")) == {"chaos": "", "app": "blog"}
    assert DEPLOY.bind(("blog", "--chaos", "feature/x")) == {"chaos": "feature/x", "app": "blog"}
    assert DEPLOY.bind(("--chaos", "abc123", "blog")) == {"chaos": "abc123", "app": "blog"}
    assert DEPLOY.bind(("blog", "1.0.0")) == {"app": "blog", "version": "1.0.0"}
    assert DEPLOY.usage() == "!deploy <app> [version] [--chaos [ref]]"


def test_unknown_repeated_or_malformed_flags_get_usage_help() -> None:
    for words, why in ((("blog", "--force"), "unknown option"),
                       (("blog", "--chaos", "--chaos"), "twice"),
                       (("blog", "--chaos", "-rf;x"), "ref must be")):
        with pytest.raises(UsageError, match=why) as caught:
            DEPLOY.bind(words)
        assert "!deploy <app> [version] [--chaos [ref]]" in str(caught.value.usage)


def test_a_flag_needs_its_own_role_which_the_config_may_change() -> None:
    assert DEPLOY.roles_for({"app": "blog"}) == [("deploy", "operator")]
    assert DEPLOY.roles_for({"app": "blog", "chaos": ""}) == [
        ("deploy", "operator"), ("deploy --chaos", "admin")]
    registry = CommandRegistry([DEPLOY])
    registry.override_role("deploy --chaos", "operator")
    assert registry.lookup("deploy").roles_for({"chaos": ""})[1] == ("deploy --chaos", "operator")
    assert registry.lookup("deploy").role == "operator"
    with pytest.raises(ConfigError, match="has no flag --force"):
        registry.override_role("deploy --force", "admin")


def test_backup_and_restore_take_a_node_which_the_flag_may_not_leave_out() -> None:
    from commands.backups import BackupCommands

    specs = {s.name: s for s in BackupCommands(
        None, read_role="member", change_role="operator").specs()}  # type: ignore[arg-type]
    backup, restore = specs["backup"], specs["restore"]
    assert backup.usage() == "!backup <app> [--node <node>]"
    assert backup.bind(("blog", "--node", "worker-2")) == {"app": "blog", "node": "worker-2"}
    assert restore.bind(("blog", "1a2b3c4d", "--node", "x3kq9")) == {
        "app": "blog", "snapshot": "1a2b3c4d", "node": "x3kq9"}
    for words, why in ((("blog", "--node"), "`--node` needs node"),
                       (("blog", "--node", "../etc"), "node must be"),
                       (("blog", "--node", "a;b"), "node must be")):
        with pytest.raises(UsageError, match=why) as caught:
            backup.bind(words)
        assert "!backup <app> [--node <node>]" in str(caught.value.usage)
