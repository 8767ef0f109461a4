from pathlib import Path

from coopbot.config import Config, RoleRule, RoomConfig
from coopbot.roles import PowerInfo, RoleResolver


def make_config(**overrides: object) -> Config:
    base: dict[str, object] = {
        "matrix": {"homeserver": "http://x", "user_id": "@bot:example.org", "password": "p"},
        "database": Path("db"),
    }
    base.update(overrides)
    return Config.model_validate(base)


ROOM = RoomConfig()
POWER = PowerInfo(users={"@op:example.org": 50, "@boss:example.org": 100}, users_default=0)


def test_power_thresholds_and_hierarchy() -> None:
    resolver = RoleResolver(make_config())
    assert resolver.resolve("@op:example.org", ROOM, POWER).roles == ("member", "operator")
    boss = resolver.resolve("@boss:example.org", ROOM, POWER)
    assert boss.roles == ("member", "operator", "admin")
    assert boss.reasons["admin"] == "power level 100 >= 100"
    assert boss.reasons["operator"] == "power level 100 >= 50"
    assert resolver.resolve("@nobody:example.org", ROOM, POWER).roles == ("member",)


def test_listed_user_gets_role_and_lower_ones_by_implication() -> None:
    config = make_config(roles={
        "member": {"power_level": 0},
        "operator": {"users": ["@carol:example.org"]},
        "admin": {"power_level": 100},
    })
    grant = RoleResolver(config).resolve("@carol:example.org", ROOM, POWER)
    assert grant.roles == ("member", "operator")
    assert grant.reasons["operator"] == "listed for operator in config"


def test_room_override_replaces_the_global_rule() -> None:
    room = RoomConfig(roles={"operator": RoleRule(power_level=90)})
    grant = RoleResolver(make_config()).resolve("@op:example.org", room, POWER)
    assert grant.roles == ("member",)


def test_no_role_without_room_config_unless_bot_admin() -> None:
    resolver = RoleResolver(make_config(admins=["@root:example.org"]))
    assert resolver.resolve("@boss:example.org", None, POWER).roles == ()
    admin = resolver.resolve("@root:example.org", None, POWER)
    assert admin.roles == ("member", "operator", "admin")


def test_role_homeservers_restrict_remote_users() -> None:
    resolver = RoleResolver(make_config(role_homeservers=["example.org"]))
    remote = PowerInfo(users={"@evil:elsewhere.net": 100})
    assert resolver.resolve("@evil:elsewhere.net", ROOM, remote).roles == ()


def test_room_v12_creators_have_unlimited_power() -> None:
    info = PowerInfo.from_state(
        {"users": {"@op:example.org": 50}},
        {"room_version": "12", "additional_creators": ["@co:example.org"]},
        "@founder:example.org",
    )
    resolver = RoleResolver(make_config())
    for creator in ("@founder:example.org", "@co:example.org"):
        grant = resolver.resolve(creator, ROOM, info)
        assert grant.roles == ("member", "operator", "admin"), creator
        assert grant.reasons["admin"] == "room creator >= 100"


def test_room_v11_creator_has_only_listed_power() -> None:
    info = PowerInfo.from_state(
        {"users": {"@founder:example.org": 100}, "users_default": 0},
        {"room_version": "11", "creator": "@founder:example.org"},
        "@founder:example.org",
    )
    assert info.level_of("@founder:example.org") == 100
    assert info.creators == frozenset()


def test_string_power_levels_are_tolerated() -> None:
    info = PowerInfo.from_state({"users": {"@a:x": "50"}, "users_default": "10"}, None, None)
    assert info.level_of("@a:x") == 50
    assert info.level_of("@b:x") == 10
