"""Who could vote on a request now: the people the bot knows of who hold the approver role
(listed in the room's power levels, its creators, or by name in the config), and with
`count: organisations` each organisation with such a person. Used to close a request once
everyone has voted, and to name who has not."""

from __future__ import annotations

from coopbot.approvals.organisations import Organisations
from coopbot.approvals.policy import Policy
from coopbot.approvals.tally import Electorate
from coopbot.config import Config, RoomConfig
from coopbot.roles import PowerInfo, RoleResolver

# A user no list names: if even they hold the role, anyone in the room may vote.
_UNLISTED = "@\u2063unlisted"


class Voters:
    def __init__(self, *, organisations: Organisations, listed: frozenset[str],
                 mentions: frozenset[str], bot_user_id: str = "") -> None:
        self.organisations = organisations
        self._listed = listed
        self.mentions = mentions
        self._bot = bot_user_id

    @staticmethod
    def of(config: Config) -> Voters:
        listed = {user for rule in config.roles.values() for user in rule.users}
        listed |= {user for room in config.rooms.values() for rule in room.roles.values()
                   for user in rule.users}
        listed |= set(config.admins)
        listed |= {user for o in config.organisations.values() for user in o.users}
        return Voters(organisations=Organisations(config.organisations),
                      listed=frozenset(listed), mentions=frozenset(config.reminder_mentions),
                      bot_user_id=config.matrix.user_id)

    @staticmethod
    def none() -> Voters:
        return Voters(organisations=Organisations({}), listed=frozenset(),
                      mentions=frozenset())

    def electorate(self, policy: Policy, requester: str, room: RoomConfig | None,
                   power: PowerInfo, roles: RoleResolver) -> Electorate:
        candidates = (set(power.users) | set(power.creators) | self._listed) - {self._bot}
        if not policy.self_vote:
            candidates.discard(requester)
        people = sorted(p for p in candidates
                        if roles.resolve(p, room, power).has(policy.approver_role))
        if policy.count != "organisations":
            return Electorate(people=tuple(people),
                              open_ended=self._anyone_holds(policy, room, power, roles))
        groups: dict[str, tuple[str, ...]] = {}
        open_members = set()
        for name in self.organisations.names:
            members = tuple(p for p in people if self.organisations.of(p) == name)
            if self.organisations.by_server(name):
                open_members.add(name)
            if members or name in open_members:
                groups[name] = members
        return Electorate(people=tuple(people), open_ended=True, organisations=groups,
                          open_members=frozenset(open_members))

    @staticmethod
    def _anyone_holds(policy: Policy, room: RoomConfig | None, power: PowerInfo,
                      roles: RoleResolver) -> bool:
        allowed = roles.homeservers
        server = next(iter(sorted(allowed))) if allowed else "localhost"
        nobody = PowerInfo(users={}, users_default=power.users_default)
        return roles.resolve(f"{_UNLISTED}:{server}", room, nobody).has(policy.approver_role)
