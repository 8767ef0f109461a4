"""What an app runs now, even when its labels are odd: the release, found in one order.

1. the `.version` label (either scheme), when it names a release (`v1.0.2` and a label
   `1.0.2+1.0.2` name the same one: recipes/repo.py `match_release`);
2. else the env file's `TYPE=<recipe>:<version>` (coopbot and abra write it after a deploy);
3. else the newest version the operation store says this app was brought to.

A label such as `latest` then still leads to the release that runs. A chaos deploy carries
the last release as its `.version` (abra's way) and its commit in `.chaos-version`.
"""

from __future__ import annotations

from dataclasses import dataclass

from coopbot.recipes.apps import App
from coopbot.recipes.labels import chaos_commit, chaos_text, version_label
from coopbot.recipes.repo import RecipeVersion, match_release
from coopbot.servers.states import ServiceState
from coopbot.store.operations import OperationStore


@dataclass(frozen=True)
class Deployed:
    label: str | None  # the version label as the swarm has it
    release: RecipeVersion | None  # the release that runs (a chaos deploy's last release)
    chaos: str | None  # the short commit of a chaos deploy
    source: str  # where the release was found: label, env file, operation store, or ""

    @property
    def text(self) -> str:
        """How it is named in plans and answers: `chaos <commit>`, the release's tag, else
        the label as it is."""
        if self.chaos is not None:
            return chaos_text(self.chaos)
        if self.release is not None:
            return self.release.tag
        return self.label or "an unknown version"


async def find_deployed(app: App, services: list[ServiceState], releases: list[RecipeVersion],
                        operations: OperationStore) -> Deployed | None:
    """None when nothing of the app runs."""
    if not services:
        return None
    label = version_label(services, app.stack_name)
    chaos = chaos_commit(services, app.stack_name)
    found = [(match_release(releases, label) if label else None, "label")]
    found.append((match_release(releases, app.version) if app.version else None, "env file"))
    for release, source in found:
        if release is not None:
            return Deployed(label, release, chaos, source)
    for version in await operations.deployed_versions(app.name):
        release = match_release(releases, version)
        if release is not None:
            return Deployed(label, release, chaos, "operation store")
    return Deployed(label, None, chaos, "")
