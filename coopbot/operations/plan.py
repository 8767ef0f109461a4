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

from coopbot.recipes.apps import App
from coopbot.recipes.compose import images as compose_images
from coopbot.recipes.versions import Version

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


def digest(value: Any) -> str:
    data = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def image_summary(compose: dict[str, Any]) -> dict[str, str]:
    return compose_images(compose)


def newer_than(versions: list[Version], current: Version | None) -> list[Version]:
    return [v for v in versions if current is None or v > current]
