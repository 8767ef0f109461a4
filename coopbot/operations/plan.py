"""What an operation will do, computed before anything on the server changes.

A plan names the app, server, versions and the recipe commit, plus a digest of the final compose
and of the app env: the approval issue binds votes to exactly this, and execution re-plans and
compares, so a moved tag or an edited env file can never ride on old votes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from coopbot.errors import UserError
from coopbot.recipes.apps import App

KINDS = ("deploy", "upgrade", "rollback", "undeploy")


@dataclass(frozen=True)
class OperationRequest:
    kind: str
    app_name: str
    version: str | None
    requester: str
    room_id: str | None = None
    event_id: str | None = None
    approvers: tuple[str, ...] = ()
    # The plan's binding the approvers voted on: execution refuses any other plan.
    expected_binding: str | None = None


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

    @property
    def binding(self) -> str:
        """One string that changes whenever anything that matters to the change does."""
        return "|".join(str(x) for x in (
            self.kind, self.app.name, self.app.server, self.from_version, self.to_version,
            self.commit, self.compose_digest, self.env_digest,
        ))

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
        return lines


BINDING_PARTS = ("operation", "app", "server", "deployed version", "target version",
                 "recipe commit", "compose file", "app env file")


class PlanChanged(UserError):
    """The plan differs from the one that was approved: the votes do not carry over."""

    def __init__(self, approved: str, now: str) -> None:
        old, new = approved.split("|"), now.split("|")
        changed = [name for name, a, b in zip(BINDING_PARTS, old, new, strict=False) if a != b]
        self.changed = changed or ["plan"]
        super().__init__("The plan changed since it was approved ("
                         + ", ".join(self.changed) + " changed); the votes no longer apply.")


def digest(value: Any) -> str:
    data = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(data).hexdigest()[:16]

