"""Who holds which role in a room, and why.

Roles are listed in the config from least to most privileged; holding one grants every role listed
before it. A role is held through the room's power levels (a threshold) or an explicit MXID list,
optionally overridden per room. Only the sender's MXID counts, never a display name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from coopbot.config import Config, RoleRule, RoomConfig
from coopbot.ids import server_of

CREATOR_POWER = math.inf


@dataclass(frozen=True)
class PowerInfo:
    """The parts of a room's state that decide power: m.room.power_levels and m.room.create."""

    users: Mapping[str, int] = field(default_factory=dict)
    users_default: int = 0
    # Room versions 12+ give the creators unlimited power without listing them in power_levels.
    creators: frozenset[str] = frozenset()

    def level_of(self, user_id: str) -> float:
        if user_id in self.creators:
            return CREATOR_POWER
        return float(self.users.get(user_id, self.users_default))

    @staticmethod
    def from_state(
        power_levels: Mapping[str, object] | None, create: Mapping[str, object] | None,
        create_sender: str | None,
    ) -> PowerInfo:
        content = power_levels or {}
        raw_users = content.get("users", {})
        users: dict[str, int] = {}
        if isinstance(raw_users, Mapping):
            users = {k: _as_int(v) for k, v in raw_users.items() if isinstance(k, str)}
        users_default = _as_int(content.get("users_default", 0))
        creators: set[str] = set()
        version = create.get("room_version", "1") if create is not None else None
        if create is not None and isinstance(version, str) and _creators_have_power(version):
            if create_sender:
                creators.add(create_sender)
            extra = create.get("additional_creators", [])
            if isinstance(extra, list):
                creators.update(u for u in extra if isinstance(u, str) and u.startswith("@"))
        elif power_levels is None and create_sender:
            # Spec: with no power_levels event at all, the creator has power 100.
            users = {create_sender: 100}
        return PowerInfo(users=users, users_default=users_default, creators=frozenset(creators))


# Canonical JSON integers: a level outside this range (or of another type) counts as 0.
_LEVEL_LIMIT = 2**53 - 1
_LEVEL_TEXT = re.compile(r"[+-]?[0-9]{1,16}")


def _as_int(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value if abs(value) <= _LEVEL_LIMIT else 0
    # Older room versions allow power levels as strings of ASCII digits.
    if isinstance(value, str) and _LEVEL_TEXT.fullmatch(value.strip()):
        number = int(value.strip())
        return number if abs(number) <= _LEVEL_LIMIT else 0
    return 0


def _creators_have_power(room_version: str) -> bool:
    if room_version.startswith("org.matrix.hydra"):
        return True
    try:
        return int(room_version) >= 12
    except ValueError:
        return False


@dataclass(frozen=True)
class RoleGrant:
    """The roles a user holds in a room (least to most privileged) and one reason per role."""

    user_id: str
    power: float
    roles: tuple[str, ...]
    reasons: Mapping[str, str]

    def has(self, role: str) -> bool:
        return role in self.roles

    @staticmethod
    def automatic(bot_user_id: str, order: tuple[str, ...]) -> RoleGrant:
        """The bot acting on its own authority (an auto-update): every role; policies, votes
        and backups still apply in full."""
        return RoleGrant(bot_user_id, float("inf"), order,
                         {role: "automatic update" for role in order})


class RoleResolver:
    def __init__(self, config: Config) -> None:
        self._order = config.role_order()
        self._rules = dict(config.roles)
        self._admins = frozenset(config.admins)
        self._homeservers = (
            frozenset(config.role_homeservers) if config.role_homeservers is not None else None
        )

    @property
    def order(self) -> list[str]:
        return list(self._order)

    @property
    def homeservers(self) -> frozenset[str] | None:
        return self._homeservers

    def is_bot_admin(self, user_id: str) -> bool:
        return user_id in self._admins

    def rank(self, role: str) -> int:
        return self._order.index(role)

    def resolve(self, user_id: str, room: RoomConfig | None, power: PowerInfo) -> RoleGrant:
        level = power.level_of(user_id)
        if user_id in self._admins:
            reasons = {role: "bot admin (config `admins`)" for role in self._order}
            return RoleGrant(user_id, level, tuple(self._order), reasons)
        if self._homeservers is not None and server_of(user_id) not in self._homeservers:
            return RoleGrant(user_id, level, (), {})
        if room is None:
            return RoleGrant(user_id, level, (), {})

        direct: dict[str, str] = {}
        for role in self._order:
            rule = room.roles.get(role, self._rules[role])
            reason = self._direct_reason(user_id, level, role, rule, role in room.roles)
            if reason:
                direct[role] = reason
        if not direct:
            return RoleGrant(user_id, level, (), {})
        top = max(self.rank(role) for role in direct)
        held = tuple(self._order[: top + 1])
        reasons = {
            role: direct.get(role, f"implied by {self._order[top]}") for role in held
        }
        return RoleGrant(user_id, level, held, reasons)

    @staticmethod
    def _direct_reason(
        user_id: str, level: float, role: str, rule: RoleRule, room_override: bool
    ) -> str | None:
        where = "this room's config" if room_override else "config"
        if user_id in rule.users:
            return f"listed for {role} in {where}"
        if rule.power_level is not None and level >= rule.power_level:
            shown = "room creator" if level == CREATOR_POWER else f"power level {int(level)}"
            return f"{shown} >= {rule.power_level}"
        return None
