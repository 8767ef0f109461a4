"""What an operation will do, computed before anything on the server changes.

A plan names the app, server, versions and the recipe commit, plus a digest of the final compose
and of the app env. Votes bind to that `Binding`; the operation, under its lock, prepares the
same plan again and runs only if the binding is identical, so a moved tag or an edited env file
can never ride on old votes (it raises PlanChanged, carrying the fresh plan for a new vote).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from coopbot.errors import UserError
from coopbot.ids import EventID, RoomID, UserID
from coopbot.recipes.apps import App

# What each part of a binding is called when a card says what changed.
_LABELS = {"kind": "operation", "app": "app", "server": "server",
           "from_version": "deployed version", "to_version": "target version",
           "commit": "recipe commit", "compose_digest": "compose file",
           "env_digest": "app env file", "node": "node"}


@dataclass(frozen=True)
class Binding:
    """Everything that matters to a change: if any of it differs, the votes do not carry over.
    A restore has its snapshot in `to_version`'s place; a backup binds to its app only (and to
    the node a member named, for either)."""

    kind: str
    app: str
    server: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    commit: str | None = None
    compose_digest: str | None = None
    env_digest: str | None = None
    node: str | None = None  # the node whose copy of the data a backup or restore acts on

    @property
    def text(self) -> str:
        """The stored form (JSON with sorted keys: equal bindings give equal text)."""
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def parse(text: str) -> Binding | None:
        """A stored binding; None for anything else (e.g. a request of an older release,
        which then simply never matches a fresh plan)."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        names = {f.name for f in fields(Binding)}
        if not isinstance(data, dict) or set(data) - names or "kind" not in data or \
                "app" not in data or not all(v is None or isinstance(v, str)
                                             for v in data.values()):
            return None
        return Binding(**data)

    def changed_from(self, other: Binding | None) -> list[str]:
        """The names of what differs between two bindings, for a sentence."""
        if other is None:
            return ["plan"]
        return [_LABELS[f.name] for f in fields(self)
                if getattr(self, f.name) != getattr(other, f.name)] or ["plan"]


@dataclass(frozen=True)
class PlannedChange:
    """A plan as a vote sees it: the binding, the card's lines, and the app it is about."""

    binding: Binding
    lines: list[str]
    app: str


@dataclass(frozen=True)
class OperationRequest:
    kind: str
    app_name: str
    version: str | None
    requester: UserID
    room_id: RoomID | None = None
    event_id: EventID | None = None
    approvers: tuple[str, ...] = ()
    # The plan's binding the approvers voted on: execution refuses any other plan.
    expected_binding: Binding | None = None
    # A chaos deploy (abra's `--chaos`): the commit or branch to deploy untagged, "" for the
    # default branch's head; None for a release.
    chaos: str | None = None


@dataclass(frozen=True)
class Plan:
    kind: str
    app: App
    from_version: str | None  # what the swarm runs now (its version label), None if not deployed
    to_version: str | None  # None for undeploy
    commit: str | None
    compose_digest: str | None
    env_digest: str
    images: dict[str, str] = field(default_factory=dict)
    release_notes: tuple[tuple[str, str], ...] = ()  # (version, notes) between from and to
    # How long convergence may take, from the recipe (not part of the binding: it follows from
    # the compose digest).
    timeout: float = 300.0
    # Preflight's warnings (room-safe): what may not work although nothing is missing.
    warnings: tuple[str, ...] = ()

    @property
    def binding(self) -> Binding:
        return Binding(kind=self.kind, app=self.app.name, server=self.app.server,
                       from_version=self.from_version, to_version=self.to_version,
                       commit=self.commit, compose_digest=self.compose_digest,
                       env_digest=self.env_digest)

    def planned(self) -> PlannedChange:
        return PlannedChange(binding=self.binding, lines=self.card_lines(), app=self.app.name)

    def describe(self) -> str:
        versions = f"{self.from_version or 'not deployed'} -> {self.to_version}"
        if self.kind == "undeploy":
            versions = f"{self.from_version or 'not deployed'} -> removed"
        return f"{self.kind} `{self.app.name}` on {self.app.server}: {versions}"

    def card_lines(self) -> list[str]:
        """What a request card shows of the plan."""
        lines = [self.describe()]
        if self.commit:
            lines.append(f"recipe commit `{self.commit[:10]}`, compose digest "
                         f"`{self.compose_digest}`, env digest `{self.env_digest}`")
        if self.images:
            lines.append("images: " + ", ".join(
                f"{service}: `{image}`" for service, image in sorted(self.images.items())))
        for version, notes in self.release_notes:
            excerpt = " ".join(notes.split())[:300]
            lines.append(f"release notes {version}: {excerpt}")
        lines += [f"⚠️ {warning}" for warning in self.warnings]
        return lines


class PlanChanged(UserError):
    """The plan differs from the one that was approved: the votes do not carry over. Carries
    the fresh plan, so approvals can ask again with it."""

    def __init__(self, approved: Binding | None, fresh: PlannedChange) -> None:
        self.changed = fresh.binding.changed_from(approved)
        self.fresh = fresh
        super().__init__("The plan changed since it was approved ("
                         + ", ".join(self.changed) + " changed); the votes no longer apply.")

    @staticmethod
    def check(expected: Binding | None, fresh: PlannedChange) -> None:
        """Raise unless `fresh` is the plan that was approved (no expectation: nothing to
        check, the operation was not voted on)."""
        if expected is not None and fresh.binding != expected:
            raise PlanChanged(expected, fresh)


def digest(value: Any) -> str:
    data = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(data).hexdigest()[:16]

