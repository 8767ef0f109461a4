"""Which release a deploy, upgrade or rollback goes to, the way abra means them, and the
release notes in between. `!deploy` never changes the version that runs (upgrade and rollback
do); upgrades only go forward, rollbacks only back, to what ran before when it is known."""

from __future__ import annotations

from coopbot.errors import UserError
from coopbot.operations.deployed import Deployed
from coopbot.operations.plan import OperationRequest
from coopbot.recipes.apps import App
from coopbot.recipes.repo import NoReleases, RecipeStore, RecipeVersion, match_release
from coopbot.recipes.versions import Version
from coopbot.store.operations import OperationStore


class Targets:
    def __init__(self, recipes: RecipeStore, operations: OperationStore) -> None:
        self._recipes = recipes
        self._operations = operations

    async def target(self, request: OperationRequest, app: App, deployed: Deployed | None,
                      releases: list[RecipeVersion]) -> RecipeVersion:
        if request.kind == "deploy":
            return await self._deploy(request, app, deployed, releases)
        if deployed is None:
            raise UserError(f"`{app.name}` is not deployed; use `!deploy` first.")
        current = deployed.text
        # The release that runs; a chaos deploy moves on from its last release, as abra does.
        current_version = deployed.release.version if deployed.release is not None else None
        if request.kind == "upgrade":
            newest = (await self._recipes.resolve(app.recipe, request.version) if request.version
                      else releases[0] if releases else None)
            if newest is None or (current_version is not None
                                  and not newest.version > current_version):
                if request.version and newest is not None:
                    raise UserError(
                        f"{newest.version} is not newer than {current}; upgrades never go "
                        "back (use `!rollback`)."
                    )
                raise UserError(f"`{app.name}` already runs the newest version, {current}.")
            return newest
        # rollback
        if request.version:
            target = await self._recipes.resolve(app.recipe, request.version)
            if current_version is not None and not target.version < current_version:
                raise UserError(
                    f"{target.version} is not older than {current}; use `!upgrade` to go forward."
                )
            return target
        previous = await self._previous(app, current_version, releases)
        if previous is None:
            raise UserError(f"There is no older version of `{app.name}` to roll back to.")
        return previous

    async def _deploy(self, request: OperationRequest, app: App,
                             deployed: Deployed | None,
                             releases: list[RecipeVersion]) -> RecipeVersion:
        """`!deploy`: what runs again (after an env change, say), else the version asked for,
        else the env file's, else the newest; changing version is upgrade's and rollback's."""
        chaos_hint = f"`!deploy {app.name} --chaos` deploys its newest commit untagged"
        if deployed is not None and request.version is None:
            if deployed.chaos is not None:
                raise UserError(
                    f"`{app.name}` runs {deployed.text} (a chaos deploy): {chaos_hint}; "
                    f"`!deploy {app.name} <version>` deploys a release instead."
                )
            if deployed.release is not None:
                return deployed.release
            raise UserError(
                f"`{app.name}` runs {deployed.text}, which names no release of recipe "
                f"`{app.recipe}`: `!deploy {app.name} <version>` says which one to deploy."
            )
        wanted = request.version or app.version
        if not releases:
            raise UserError(f"Recipe `{app.recipe}` has no releases yet: {chaos_hint}.")
        if request.version is None and app.version and match_release(releases,
                                                                      app.version) is None:
            # abra writes a chaos deploy's commit into TYPE; redeploying it is a chaos deploy.
            raise UserError(
                f"The env file of `{app.name}` names `{app.version}`, which is no release of "
                f"recipe `{app.recipe}` (a chaos deploy's commit?): "
                f"`!deploy {app.name} --chaos {app.version}` deploys that commit, "
                f"`!deploy {app.name} <version>` a release."
            )
        try:
            target = await self._recipes.resolve(app.recipe, wanted)
        except NoReleases:
            raise UserError(f"Recipe `{app.recipe}` has no releases yet: {chaos_hint}.") from None
        if deployed is not None and deployed.chaos is None and deployed.release is not None \
                and target != deployed.release:
            raise UserError(
                f"`{app.name}` already runs {deployed.text}. Use `!upgrade` or `!rollback` to "
                f"change its version, or `!undeploy` it first."
            )
        return target

    async def _previous(
        self, app: App, current: Version | None, releases: list[RecipeVersion]
    ) -> RecipeVersion | None:
        """The version this app ran before (from the store), else the next older release."""
        for version in await self._operations.deployed_versions(app.name):
            found = match_release(releases, version)
            if found is not None and current is not None and found.version < current:
                return found
        older = [r for r in releases if current is not None and r.version < current]
        return older[0] if older else None

    async def notes_between(self, app: App, deployed: Deployed | None,
                             target: RecipeVersion,
                             releases: list[RecipeVersion]) -> tuple[tuple[str, str], ...]:
        current = deployed.release.version if deployed and deployed.release else None
        between = [r for r in releases
                   if r.version <= target.version and (current is None or r.version > current)]
        notes: list[tuple[str, str]] = []
        for release in reversed(between):
            text = await self._recipes.release_notes(app.recipe, release.version)
            if text:
                notes.append((str(release.version), text.strip()))
        return tuple(notes)
