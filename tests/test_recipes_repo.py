"""RecipeStore against REAL git repos: clone, versions, release notes, private checkouts."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest
from git.repo import Repo

from coopbot.errors import ConfigError, GitError, NotFound, UserError
from coopbot.recipes.gitcmd import run_git
from coopbot.recipes.repo import RecipeStore, RecipeVersion, is_local, match_release
from coopbot.recipes.versions import Version
from tests.harness.recipes import (
    TESTAPP_NOTES,
    MakeRecipeRepo,
    RecipeRelease,
    add_commit,
    add_release,
    tree_of_testapp,
)

NOWHERE = "/nonexistent/recipes/{recipe}.git"


def store_for(tmp_path: Path, recipe: str, bare: Path, **kwargs: float) -> RecipeStore:
    return RecipeStore(tmp_path / "cache", NOWHERE, {recipe: str(bare)}, **kwargs)


def small_release(version: str, marker: str | None = None) -> RecipeRelease:
    return RecipeRelease(version, {"compose.yml": f"# {marker or version}\n"})


def worktrees(mirror: Path) -> list[str]:
    listing = run_git(["worktree", "list", "--porcelain"], cwd=mirror)
    return [line for line in listing.splitlines() if line.startswith("worktree ")]


async def test_clone_from_a_bare_repo_path(tmp_path: Path, testapp_recipe: Path) -> None:
    store = store_for(tmp_path, "testapp", testapp_recipe)
    releases = await store.versions("testapp")  # first use clones
    assert [r.tag for r in releases] == ["1.2.0+v3", "1.1.0+v2", "1.0.0+v1"]
    assert all(r.annotated for r in releases)
    with Repo(testapp_recipe) as upstream:
        assert [r.commit for r in releases] == [upstream.commit(r.tag).hexsha for r in releases]
    assert (tmp_path / "cache" / "testapp.git").is_dir()
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name.endswith(".partial")] == []


async def test_clone_through_a_file_url(tmp_path: Path, testapp_recipe: Path) -> None:
    template = f"file://{testapp_recipe.parent}/{{recipe}}.git"
    store = RecipeStore(tmp_path / "cache", template, {})
    assert store.source_for("testapp") == f"file://{testapp_recipe}"
    assert [r.tag for r in await store.versions("testapp")] == ["1.2.0+v3", "1.1.0+v2", "1.0.0+v1"]


def test_sources_local_paths_and_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = RecipeStore(tmp_path, "https://git.example.org/{recipe}.git", {"mine": "repos/m.git"})
    assert store.source_for("other") == "https://git.example.org/other.git"
    assert store.source_for("mine") == str(tmp_path / "repos" / "m.git")
    assert is_local("/srv/recipes/x.git") and is_local("./x") and is_local("x.git")
    assert not is_local("git@git.example.org:org/x.git")
    assert not is_local("ssh://git@host/x.git") and not is_local("file:///srv/x.git")
    with pytest.raises(ConfigError, match="must contain"):
        RecipeStore(tmp_path, "https://git.example.org/fixed.git", {})
    for bad in ("../etc", "a/b", "", "-rf", "x" * 101):
        with pytest.raises(UserError, match="not a valid recipe name"):
            store.mirror_path(bad)


async def test_releases_are_annotated_version_tags_only(
    tmp_path: Path, make_recipe_repo: MakeRecipeRepo
) -> None:
    bare = make_recipe_repo(
        "lw",
        [
            small_release("0.1.0+1"),
            RecipeRelease("0.2.0+1", {"compose.yml": "#\n"}, annotated=False),
            small_release("v0.10.0+1"),
        ],
    )
    with Repo(bare) as repo:
        repo.create_tag("latest", ref="main")
        repo.create_tag("not-a-version", ref="main", message="annotated but not a version")
    store = store_for(tmp_path, "lw", bare)
    releases = await store.versions("lw")
    # A lightweight tag is a maintainer's bookmark, not an abra release.
    assert [(r.tag, r.annotated) for r in releases] == [("v0.10.0+1", True), ("0.1.0+1", True)]
    with pytest.raises(NotFound, match=r"no version `0\.2\.0"):
        await store.resolve("lw", "0.2.0+1")
    # ... but its commit can still be deployed untagged (chaos).
    async with store.checkout("lw", chaos=True, ref="0.2.0+1") as checkout:
        assert checkout.version is None and (checkout.path / "compose.yml").read_text() == "#\n"


async def test_release_notes(tmp_path: Path, testapp_recipe: Path) -> None:
    store = store_for(tmp_path, "testapp", testapp_recipe)
    assert await store.release_notes("testapp", "1.1.0+v2") == TESTAPP_NOTES["1.1.0+v2"].strip()
    assert await store.release_notes("testapp", "1.2.0") == TESTAPP_NOTES["1.2.0+v3"].strip()
    assert await store.release_notes("testapp", "1.0.0+v1") is None


async def test_resolving_what_people_type(tmp_path: Path, testapp_recipe: Path) -> None:
    store = store_for(tmp_path, "testapp", testapp_recipe)
    assert (await store.resolve("testapp")).tag == "1.2.0+v3"
    assert (await store.resolve("testapp", "1.1.0+v2")).tag == "1.1.0+v2"
    assert (await store.resolve("testapp", "v1.1.0+v2")).tag == "1.1.0+v2"
    assert (await store.resolve("testapp", "1.1.0")).tag == "1.1.0+v2"
    releases = await store.versions("testapp")
    assert (await store.resolve("testapp", releases[2].version)).tag == "1.0.0+v1"


async def test_ambiguous_core_version(tmp_path: Path, make_recipe_repo: MakeRecipeRepo) -> None:
    bare = make_recipe_repo("amb", [small_release("1.0.0+a"), small_release("1.0.0+b")])
    with pytest.raises(UserError, match=r"`1.0.0` matches several versions of amb: 1.0.0\+b"):
        await store_for(tmp_path, "amb", bare).resolve("amb", "1.0.0")


async def test_unknown_version_lists_the_newest(tmp_path: Path, testapp_recipe: Path) -> None:
    store = store_for(tmp_path, "testapp", testapp_recipe)
    with pytest.raises(NotFound) as caught:
        async with store.checkout("testapp", "9.9.9+x"):
            pass
    assert str(caught.value) == (
        "Recipe `testapp` has no version `9.9.9+x`. Newest: 1.2.0+v3, 1.1.0+v2, 1.0.0+v1."
    )


async def test_unknown_recipe(tmp_path: Path) -> None:
    store = RecipeStore(tmp_path / "cache", NOWHERE, {})
    with pytest.raises(NotFound) as caught:
        await store.versions("nope")
    assert str(caught.value) == "Unknown recipe `nope`: there is no repository for it."
    assert caught.value.detail is not None and "/nonexistent/" in caught.value.detail
    assert not (tmp_path / "cache" / "nope.git").exists()
    assert list((tmp_path / "cache").iterdir()) == []  # no half-done clone left


async def test_a_recipe_without_releases(tmp_path: Path, make_recipe_repo: MakeRecipeRepo) -> None:
    bare = make_recipe_repo("fresh", [])
    add_commit(bare, {"compose.yml": "# work in progress\n"}, "start").close()
    store = store_for(tmp_path, "fresh", bare)
    assert await store.versions("fresh") == []
    with pytest.raises(NotFound, match=r"no version `1.0.0`\. It has no releases yet\."):
        await store.resolve("fresh", "1.0.0")
    with pytest.raises(NotFound, match="has no releases yet"):
        await store.resolve("fresh")
    async with store.checkout("fresh") as checkout:  # abra: no release -> latest commit
        assert checkout.version is None
        assert (checkout.path / "compose.yml").read_text() == "# work in progress\n"


async def test_checkout_default_newest_and_chaos_head(
    tmp_path: Path, make_recipe_repo: MakeRecipeRepo
) -> None:
    bare = make_recipe_repo("chaos", [small_release("1.0.0+1"), small_release("1.1.0+1")])
    with add_commit(bare, {"compose.yml": "# unreleased\n"}, "wip") as work:
        head = work.head.commit.hexsha
    store = store_for(tmp_path, "chaos", bare)
    async with store.checkout("chaos") as newest:
        assert str(newest.version) == "1.1.0+1"
        assert (newest.path / "compose.yml").read_text() == "# 1.1.0+1\n"
    async with store.checkout("chaos", chaos=True) as untagged:
        assert untagged.version is None
        assert untagged.commit == head
        assert (untagged.path / "compose.yml").read_text() == "# unreleased\n"


async def test_concurrent_checkouts_see_their_own_trees(
    tmp_path: Path, testapp_recipe: Path
) -> None:
    store = store_for(tmp_path, "testapp", testapp_recipe)
    mirror = store.mirror_path("testapp")
    both_open = asyncio.Barrier(2)
    seen: dict[str, tuple[Path, str, str]] = {}

    async def use(version: str) -> None:
        async with store.checkout("testapp", version) as checkout:
            # Write into the tree while the other operation holds its own: it must not see it.
            (checkout.path / "generated.txt").write_text(version)
            await both_open.wait()
            compose = (checkout.path / "compose.yml").read_text()
            seen[version] = (checkout.path, compose, (checkout.path / "generated.txt").read_text())
            assert str(checkout.version) == version
            assert len(worktrees(mirror)) == 3  # the mirror itself + two private trees
            await both_open.wait()

    await asyncio.gather(use("1.0.0+v1"), use("1.2.0+v3"))

    (path_v1, compose_v1, mark_v1), (path_v3, compose_v3, mark_v3) = (
        seen["1.0.0+v1"],
        seen["1.2.0+v3"],
    )
    assert path_v1 != path_v3
    assert compose_v1 == tree_of_testapp("1.0.0+v1")["compose.yml"]
    assert "image: coopbot-test/app:v1" in compose_v1
    assert "image: coopbot-test/app:v3" in compose_v3
    assert (mark_v1, mark_v3) == ("1.0.0+v1", "1.2.0+v3")
    # Both trees are gone, and git forgot them.
    assert not path_v1.exists() and not path_v3.exists()
    assert len(worktrees(mirror)) == 1


async def test_checkout_is_removed_when_the_operation_fails(
    tmp_path: Path, testapp_recipe: Path
) -> None:
    store = store_for(tmp_path, "testapp", testapp_recipe)
    with pytest.raises(RuntimeError, match="deploy blew up"):
        async with store.checkout("testapp", "1.1.0+v2") as checkout:
            path = checkout.path
            raise RuntimeError("deploy blew up")
    assert not path.exists()
    assert len(worktrees(store.mirror_path("testapp"))) == 1


async def test_a_cancelled_operation_gives_its_tree_back(
    tmp_path: Path, testapp_recipe: Path
) -> None:
    store = store_for(tmp_path, "testapp", testapp_recipe)
    inside = asyncio.Event()
    paths: list[Path] = []

    async def operation() -> None:
        async with store.checkout("testapp", "1.0.0+v1") as checkout:
            paths.append(checkout.path)
            inside.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(operation())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not paths[0].exists()
    assert len(worktrees(store.mirror_path("testapp"))) == 1


async def test_fetch_picks_up_a_newly_pushed_tag(
    tmp_path: Path, make_recipe_repo: MakeRecipeRepo
) -> None:
    bare = make_recipe_repo("growing", [small_release("1.0.0+1")])
    store = store_for(tmp_path, "growing", bare)
    assert [r.tag for r in await store.versions("growing")] == ["1.0.0+1"]

    commit = add_release(bare, small_release("1.0.1+1"))
    # The cache is used as is until someone fetches.
    assert [r.tag for r in await store.versions("growing")] == ["1.0.0+1"]
    await asyncio.gather(store.fetch("growing"), store.fetch("growing"))
    releases = await store.versions("growing")
    assert [r.tag for r in releases] == ["1.0.1+1", "1.0.0+1"]
    assert releases[0].commit == commit
    async with store.checkout("growing", "1.0.1+1") as checkout:
        assert (checkout.path / "compose.yml").read_text() == "# 1.0.1+1\n"


async def test_a_failing_fetch_is_a_room_safe_git_error(
    tmp_path: Path, make_recipe_repo: MakeRecipeRepo
) -> None:
    bare = make_recipe_repo("moving", [small_release("1.0.0+1")])
    store = store_for(tmp_path, "moving", bare)
    await store.fetch("moving")
    shutil.rmtree(bare)
    with pytest.raises(GitError) as caught:
        await store.fetch("moving")
    assert str(caught.value) == "could not fetch recipe moving: repository not found"
    assert caught.value.detail is not None and str(bare) in caught.value.detail
    # The cache still serves what it had.
    assert [r.tag for r in await store.versions("moving")] == ["1.0.0+1"]


async def test_fetch_timeout_kills_git_without_blocking_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An SSH "server" that never answers: git waits on it until our timeout kills git.
    monkeypatch.setenv("GIT_SSH_COMMAND", "sleep 3 #")
    store = RecipeStore(
        tmp_path / "cache", "ssh://git@recipes.invalid/{recipe}.git", {}, fetch_timeout=0.8
    )
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    started = time.monotonic()
    try:
        with pytest.raises(GitError) as caught:
            await store.fetch("slow")
    finally:
        ticking.cancel()
    elapsed = time.monotonic() - started
    assert str(caught.value) == "could not fetch recipe slow: timed out after 0.8 s"
    assert 0.7 < elapsed < 2.5
    assert ticks >= 20  # the event loop kept running while git hung


def _release(tag: str) -> RecipeVersion:
    return RecipeVersion(Version.parse(tag), tag, "0" * 40, True)


def test_a_label_names_its_release_whatever_the_tag_scheme() -> None:
    v_tags = [_release("v1.0.3"), _release("v1.0.2")]
    # A recipe tagging `vX.Y.Z` whose compose labels say `X.Y.Z+X.Y.Z`.
    assert match_release(v_tags, "1.0.2+1.0.2") == v_tags[1]
    assert match_release(v_tags, "1.0.3") == v_tags[0]
    assert match_release(v_tags, "v1.0.2") == v_tags[1]
    abra_tags = [_release("1.1.0+v2"), _release("1.0.0+v1")]
    assert match_release(abra_tags, "1.1.0+v2") == abra_tags[0]
    assert match_release(abra_tags, "1.0.0") == abra_tags[1]
    # A different upstream part of a `+` tag is another release: not this one.
    assert match_release(abra_tags, "1.0.0+v9") is None
    for odd in ("latest", "", "0a1b2c3d", "chaos 0a1b2c3d"):
        assert match_release(v_tags + abra_tags, odd) is None
    # Two tags of one version with different upstream parts: a bare `X.Y.Z` is ambiguous.
    assert match_release([_release("2.0.0+a"), _release("2.0.0+b")], "2.0.0") is None


async def test_a_chaos_ref_from_chat_is_never_an_option_or_a_range(
    tmp_path: Path, testapp_recipe: Path
) -> None:
    store = store_for(tmp_path, "testapp", testapp_recipe)
    for bad in ("--upload-pack=x", "main..other", "a b", "HEAD~1", "x.lock", "@{-1}"):
        with pytest.raises(UserError, match="not a commit or branch"):
            async with store.checkout("testapp", chaos=True, ref=bad):
                pass
    async with store.checkout("testapp", chaos=True, ref="main") as checkout:
        async with store.checkout("testapp", chaos=True) as head:
            assert checkout.commit == head.commit and checkout.version is None
