"""Member organisations: which organisation a person votes for (a listed MXID wins over a
homeserver name), and the people of each the bot can name."""

from __future__ import annotations

from coopbot.config import OrganisationConfig
from coopbot.ids import server_of


class Organisations:
    def __init__(self, organisations: dict[str, OrganisationConfig]) -> None:
        self._listed = {user: name for name, o in organisations.items() for user in o.users}
        self._servers = {server: name for name, o in organisations.items() for server in o.servers}
        self._config = organisations

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._config)

    def of(self, user_id: str) -> str | None:
        return self._listed.get(user_id) or self._servers.get(server_of(user_id))

    def listed(self, name: str) -> tuple[str, ...]:
        return tuple(self._config[name].users)

    def by_server(self, name: str) -> bool:
        """Whether the organisation has people the bot cannot list (all users of a server)."""
        return bool(self._config[name].servers)
