"""The effective policy of an operation: app override > room override > global, key by key."""

from __future__ import annotations

from dataclasses import dataclass

from coopbot.config import Config, PolicyConfig, RestoreRule, RoomConfig, parse_duration

DEFAULT_EXPIRY = "24h"


@dataclass(frozen=True)
class Policy:
    operation: str
    approvals: int
    approver_role: str
    expires_seconds: int
    self_vote: bool
    veto: bool
    backup_first: bool
    auto_approve_autoupdates: bool
    # Stored with each request; requests stored before these keys existed read the defaults.
    verified_devices_only: bool = False
    participation: int = 0
    count: str = "people"  # or "organisations"
    organisation_rule: str = "latest"  # or "unanimous"
    lazy_seconds: int = 0  # lazy consensus: decided when this runs out (0: off)
    remind_seconds: int = 0  # the reminder, this long before the deadline (0: none)
    restore_on_failure: str = "ask"  # or "always", "never"

    @property
    def needs_votes(self) -> bool:
        return self.approvals > 0 or self.participation > 0 or self.lazy_seconds > 0

    @property
    def deadline_seconds(self) -> int:
        return self.lazy_seconds or self.expires_seconds

    def describe(self) -> str:
        unit = "organisation " if self.count == "organisations" else ""
        if self.count == "organisations":
            rule = ("its members' common vote, or stand aside when they differ"
                    if self.organisation_rule == "unanimous" else "its latest member's vote")
            parts = [f"one vote per organisation ({rule}); consent from {self.approvals} "
                     f"organisation(s), members holding {self.approver_role}"]
        else:
            parts = [f"{self.approvals} approval(s) from {self.approver_role}"]
        if self.participation:
            parts.append(f"{self.participation} {unit}vote(s) of any kind (🤷 counts) "
                         "before a decision")
        if self.lazy_seconds:
            parts.append(f"lazy consensus: decided after {_duration(self.lazy_seconds)} "
                         "(sooner once everyone has voted), passing if nobody blocks")
        parts.append("the requester's own vote counts" if self.self_vote
                     else "the requester's own vote does not count")
        if self.veto:
            parts.append(f"one 👎 from an {self.approver_role} blocks it")
        if self.verified_devices_only:
            parts.append("only votes sent as commands from cross-signed devices count")
        return "; ".join(parts)


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class PolicyResolver:
    def __init__(self, config: Config) -> None:
        self._global = config.policies
        self._apps = config.app_policies
        order = config.role_order()
        # Approvers default to the second role (operator) when the config names none.
        self._default_role = order[1] if len(order) > 1 else order[0]

    def resolve(self, operation: str, room: RoomConfig | None, app: str | None) -> Policy | None:
        """None when no level defines a policy for this operation: it runs at once."""
        layers = [self._global.get(operation)]
        if room is not None:
            layers.append(room.policies.get(operation))
        if app is not None:
            layers.append(self._apps.get(app, {}).get(operation))
        present = [layer for layer in layers if layer is not None]
        if not present:
            return None
        merged: dict[str, object] = {}
        for layer in present:
            merged.update(layer.model_dump(exclude_none=True))
        final = PolicyConfig(**merged)  # type: ignore[arg-type]
        return Policy(
            operation=operation,
            approvals=final.approvals or 0,
            approver_role=final.approver_role or self._default_role,
            expires_seconds=parse_duration(final.expires or DEFAULT_EXPIRY),
            self_vote=bool(final.self_vote),
            veto=True if final.veto is None else final.veto,
            backup_first=bool(final.backup_first),
            auto_approve_autoupdates=bool(final.auto_approve_autoupdates),
            verified_devices_only=bool(final.verified_devices_only),
            participation=final.participation or 0,
            count=final.count or "people",
            organisation_rule=final.organisation_rule or "latest",
            lazy_seconds=parse_duration(final.lazy) if final.lazy else 0,
            remind_seconds=parse_duration(final.remind) if final.remind else 0,
            restore_on_failure=final.restore_on_failure or "ask",
        )

    def needs_backup(self, operation: str, room: RoomConfig | None, app: str | None) -> bool:
        policy = self.resolve(operation, room, app)
        return policy is not None and policy.backup_first

    def restore_on_failure(self, operation: str, room: RoomConfig | None,
                           app: str | None) -> RestoreRule:
        policy = self.resolve(operation, room, app)
        rule = policy.restore_on_failure if policy is not None else "ask"
        return rule if rule in ("always", "never") else "ask"  # type: ignore[return-value]
