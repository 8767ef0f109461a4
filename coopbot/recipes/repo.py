"""Recipe git repos: a mirror clone per recipe in a cache, versions from its tags, release notes,
and a private worktree per operation.

Blocking git work runs in `asyncio.to_thread`. A per-recipe asyncio.Lock serialises what
writes to a mirror (fetch, worktree add/remove); the work done *in* a checkout is not locked:
each operation has its own detached worktree, so concurrent ones never see each other's files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from git.repo import Repo

from coopbot.errors import ConfigError, GitError, NotFound, UserError
from coopbot.recipes.gitcmd import GitRunError, run_git
from coopbot.recipes.versions import Version, try_parse

log = logging.getLogger(__name__)

_RECIPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_TAB = "%09"
_TAG_FORMAT = _TAB.join(
    ["%(refname:lstrip=2)", "%(objecttype)", "%(objectname)", "%(*objecttype)", "%(*objectname)"]
)
_SHOWN_VERSIONS = 5


@dataclass(frozen=True)
class RecipeVersion:
    version: Version
    tag: str
    commit: str
    annotated: bool  # abra releases are annotated tags; lightweight ones are not releases


@dataclass(frozen=True)
class Checkout:
    recipe: str
    path: Path
    commit: str
    version: Version | None  # None: an untagged tree (abra's "chaos" deploy)


def is_local(source: str) -> bool:
    """A filesystem path rather than a URL (git's own rule: scp-like `host:path` has a `:`
    before any `/`)."""
    if "://" in source:
        return False
    colon = source.find(":")
    return colon < 0 or ("/" in source and source.index("/") < colon)


class RecipeStore:
    def __init__(
        self,
        cache_dir: Path,
        url_template: str,
        overrides: Mapping[str, str] | None = None,
        *,
        fetch_timeout: float = 60.0,
    ) -> None:
        if "{recipe}" not in url_template:
            raise ConfigError(["the recipe URL template must contain `{recipe}`"])
        self.cache_dir = cache_dir
        self.url_template = url_template
        self.overrides = dict(overrides or {})
        self.fetch_timeout = fetch_timeout
        self._locks: dict[str, asyncio.Lock] = {}
        self._fetch_started: dict[str, float] = {}

    # -- naming ---------------------------------------------------------------------------

    def source_for(self, recipe: str) -> str:
        """Where `recipe` is cloned from: its override, else the template; local paths absolute."""
        _check_name(recipe)
        source = self.overrides.get(recipe) or self.url_template.format(recipe=recipe)
        return str(Path(source).expanduser().resolve()) if is_local(source) else source

    def mirror_path(self, recipe: str) -> Path:
        _check_name(recipe)
        return self.cache_dir / f"{recipe}.git"

    def _lock(self, recipe: str) -> asyncio.Lock:
        return self._locks.setdefault(recipe, asyncio.Lock())

    # -- fetching -------------------------------------------------------------------------

    async def fetch(self, recipe: str) -> None:
        """Clone the recipe into the cache on first use, else fetch new tags and branches.
        On return, everything pushed before the call is visible."""
        requested = time.monotonic()
        async with self._lock(recipe):
            # A fetch that *started* after our request (while we waited) is as fresh as ours.
            if self._fetch_started.get(recipe, float("-inf")) >= requested:
                return
            await self._fetch_locked(recipe)

    async def _fetch_locked(self, recipe: str) -> None:
        started = time.monotonic()
        await asyncio.to_thread(self._fetch_blocking, recipe)
        self._fetch_started[recipe] = started

    async def _ensure(self, recipe: str) -> Path:
        """The mirror, cloned first if needed (but not refreshed: that is `fetch()`)."""
        mirror = self.mirror_path(recipe)
        if not mirror.is_dir():
            async with self._lock(recipe):
                if not mirror.is_dir():  # not cloned by another task while we waited
                    await self._fetch_locked(recipe)
        return mirror

    def _fetch_blocking(self, recipe: str) -> None:
        mirror, source = self.mirror_path(recipe), self.source_for(recipe)
        try:
            if mirror.is_dir():
                run_git(["remote", "set-url", "origin", source], cwd=mirror)
                run_git(
                    ["fetch", "--prune", "--quiet", "origin"],
                    cwd=mirror,
                    timeout=self.fetch_timeout,
                )
                run_git(["worktree", "prune"], cwd=mirror)  # forget trees lost in a crash
            else:
                self._clone_blocking(mirror, source)
        except GitRunError as error:
            if error.not_found and not mirror.is_dir():
                raise NotFound(
                    f"Unknown recipe `{recipe}`: there is no repository for it.",
                    detail=error.detail,
                ) from None
            raise GitError(
                f"could not fetch recipe {recipe}: {error.reason}", detail=error.detail
            ) from None
        log.info("recipe %s fetched", recipe)

    def _clone_blocking(self, mirror: Path, source: str) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # Clone beside the final path and rename: a half-done clone never looks like a cache.
        partial = self.cache_dir / f".{mirror.name}.{uuid.uuid4().hex}.partial"
        try:
            run_git(
                ["clone", "--mirror", "--quiet", "--", source, str(partial)],
                cwd=self.cache_dir,
                timeout=self.fetch_timeout,
            )
            try:
                partial.rename(mirror)
            except OSError:
                # A clone whose caller was cancelled may have finished first: use that one.
                if not mirror.is_dir():
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    # -- versions -------------------------------------------------------------------------

    async def versions(self, recipe: str) -> list[RecipeVersion]:
        """Released versions, newest first: annotated tags that parse as versions (abra makes
        releases with annotated tags; a lightweight tag is a maintainer's bookmark). Uses the
        cache as is: call `fetch()` to see new releases."""
        mirror = await self._ensure(recipe)
        return await asyncio.to_thread(self._versions_blocking, recipe, mirror)

    def _versions_blocking(self, recipe: str, mirror: Path) -> list[RecipeVersion]:
        try:
            out = run_git(["for-each-ref", f"--format={_TAG_FORMAT}", "refs/tags"], cwd=mirror)
        except GitRunError as error:
            raise GitError(
                f"could not read recipe {recipe}: {error.reason}", detail=error.detail
            ) from None
        found: list[RecipeVersion] = []
        for line in out.splitlines():
            tag, kind, obj, peeled_kind, peeled = line.split("\t")
            version = try_parse(tag)
            annotated = kind == "tag"
            commit = peeled if annotated else obj
            if version is None or not annotated or peeled_kind != "commit":
                continue
            found.append(RecipeVersion(version, tag, commit, annotated))
        return sorted(found, key=lambda rv: rv.version, reverse=True)

    async def resolve(self, recipe: str, version: Version | str | None = None) -> RecipeVersion:
        """The release matching `version`: its exact tag, the same version without/with `v`,
        or a unique `X.Y.Z` without `+build`; None means the newest release."""
        releases = await self.versions(recipe)
        if version is None:
            if not releases:
                raise NoReleases(recipe)
            return releases[0]
        wanted = str(version).strip()
        found = match_release(releases, wanted)
        if found is not None:
            return found
        for matches in _candidates(releases, wanted):
            if len(matches) > 1:
                tags = ", ".join(m.tag for m in matches[:_SHOWN_VERSIONS])
                raise UserError(f"`{wanted}` matches several versions of {recipe}: {tags}.")
        newest = ", ".join(r.tag for r in releases[:_SHOWN_VERSIONS])
        known = f" Newest: {newest}." if newest else " It has no releases yet."
        raise NotFound(f"Recipe `{recipe}` has no version `{wanted}`.{known}")

    async def release_notes(self, recipe: str, version: Version | str) -> str | None:
        """The `release/<version>` file in the tree at that tag (abra's convention), or None."""
        release = await self.resolve(recipe, version)
        mirror = self.mirror_path(recipe)
        return await asyncio.to_thread(_read_notes, mirror, release.commit, release.tag)

    # -- checkouts ------------------------------------------------------------------------

    @asynccontextmanager
    async def checkout(
        self, recipe: str, version: Version | str | None = None, *, chaos: bool = False,
        ref: str | None = None,
    ) -> AsyncIterator[Checkout]:
        """`async with store.checkout(recipe, version) as co:` a private tree at that version.

        `version=None` is abra's default: the newest release, or the default branch's head if
        the recipe has none. `chaos=True` checks out `ref` (a commit or branch; default: the
        default branch's head), untagged. The tree is removed on exit.
        """
        mirror = await self._ensure(recipe)
        release: RecipeVersion | None = None
        # No version and no releases: abra deploys the latest commit, so do we.
        if not chaos and (version is not None or await self.versions(recipe)):
            release = await self.resolve(recipe, version)
        rev = release.commit if release else (ref or "HEAD") if chaos else "HEAD"
        if chaos and ref is not None:
            _check_ref(ref)
        async with self._lock(recipe):
            adding = asyncio.ensure_future(
                asyncio.to_thread(self._add_worktree, recipe, mirror, rev)
            )
            try:
                path, commit = await asyncio.shield(adding)
            except asyncio.CancelledError:
                # The thread finishes anyway: wait for its tree and give it back.
                with contextlib.suppress(Exception):
                    path, _ = await adding
                    await asyncio.to_thread(_remove_worktree_blocking, mirror, path)
                raise
        try:
            yield Checkout(recipe, path, commit, release.version if release else None)
        finally:
            # Shielded: a cancelled operation must still give its tree back.
            await asyncio.shield(self._remove_worktree(recipe, mirror, path))

    def _add_worktree(self, recipe: str, mirror: Path, rev: str) -> tuple[Path, str]:
        parent = self.cache_dir / "checkouts"
        parent.mkdir(parents=True, exist_ok=True)
        path = parent / f"{recipe}-{uuid.uuid4().hex[:12]}"
        try:
            commit = run_git(["rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=mirror).strip()
            run_git(["worktree", "add", "--detach", "--quiet", str(path), commit], cwd=mirror)
        except GitRunError as error:
            shutil.rmtree(path, ignore_errors=True)
            raise GitError(
                f"could not check out recipe {recipe}: {error.reason}", detail=error.detail
            ) from None
        return path, commit

    async def _remove_worktree(self, recipe: str, mirror: Path, path: Path) -> None:
        async with self._lock(recipe):
            await asyncio.to_thread(_remove_worktree_blocking, mirror, path)


class NoReleases(NotFound):
    """The recipe has no release tag at all (abra then deploys its newest commit: chaos)."""

    def __init__(self, recipe: str) -> None:
        super().__init__(f"Recipe `{recipe}` has no releases yet.")
        self.recipe = recipe


_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./+-]{0,127}")


def _check_ref(ref: str) -> None:
    # A ref from chat reaches git's command line: never an option, never a range or `..`.
    if not _REF.fullmatch(ref) or ".." in ref or ref.endswith((".", "/", ".lock")):
        raise UserError(f"`{ref}` is not a commit or branch name.")


def match_release(releases: list[RecipeVersion], wanted: str) -> RecipeVersion | None:
    """The one release `wanted` names (a tag, a version label, what a member typed), or None.

    Strictest first: the exact tag; the same tag with or without `v`; `X.Y.Z` for the one tag
    of that version whatever its `+upstream`; a label `X.Y.Z+anything` for the one tag
    `[v]X.Y.Z` that has no `+` part (recipes that tag `v1.0.2` but label `1.0.2+1.0.2`).
    Anything else (`latest`, a commit) names no release.
    """
    for matches in _candidates(releases, wanted.strip()):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            return None
    return None


def _check_name(recipe: str) -> None:
    # Names come from chat: this also keeps them from walking out of the cache directory.
    if not _RECIPE_NAME.fullmatch(recipe):
        raise UserError(f"`{recipe}` is not a valid recipe name.")


def _candidates(releases: list[RecipeVersion], wanted: str) -> list[list[RecipeVersion]]:
    """Ways to match `wanted`, strictest first."""
    bare = wanted.removeprefix("v")
    labelled = try_parse(wanted)
    return [
        [r for r in releases if r.tag == wanted],
        [r for r in releases if r.tag.removeprefix("v") == bare],
        [r for r in releases if "+" not in wanted and r.version.core == bare],
        [r for r in releases if labelled is not None and labelled.build is not None
         and r.version.build is None and r.version.core == labelled.core],
    ]


def _read_notes(mirror: Path, commit: str, tag: str) -> str | None:
    with Repo(mirror) as repo:
        try:
            blob = repo.commit(commit).tree.join(f"release/{tag}")
        except KeyError:
            return None
        if blob.type != "blob":
            return None
        data: bytes = blob.data_stream.read()
    return data.decode("utf-8", errors="replace").strip() or None


def _remove_worktree_blocking(mirror: Path, path: Path) -> None:
    try:
        run_git(["worktree", "remove", "--force", str(path)], cwd=mirror)
    except GitRunError as error:
        log.warning("worktree %s not removed cleanly: %s", path.name, error.detail)
        shutil.rmtree(path, ignore_errors=True)
        try:
            run_git(["worktree", "prune"], cwd=mirror)
        except GitRunError as prune_error:
            log.warning("worktree prune failed: %s", prune_error.detail)
