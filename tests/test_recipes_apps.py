"""AppCatalog: apps discovered from abra's `servers/<server>/<app>.env` files."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from coopbot.errors import NotFound, UserError
from coopbot.operations.deployer import convergence_timeout
from coopbot.recipes.apps import App, AppCatalog
from coopbot.recipes.envfile import EnvFileError
from tests.harness.recipes import AbraDir


def test_app_fields_from_an_abra_env_file(abra_dir: AbraDir) -> None:
    abra_dir.write_app(
        "srv1",
        "blog.example.com",
        version="1.1.0+v2",
        extra={
            "SECRET_DB_PASSWORD_VERSION": "v1 # length=32",
            "TIMEOUT": "600",
            "COMPOSE_FILE": '"compose.yml"',
            "COMPOSE_FILE ": '"$COMPOSE_FILE:compose.extra.yml"',
        },
    )
    app = AppCatalog(abra_dir.path).get("blog.example.com")
    assert app.name == "blog.example.com"
    assert app.server == "srv1"
    assert app.domain == "blog.example.com"
    assert app.stack_name == "blog_example_com"
    assert (app.recipe, app.version) == ("testapp", "1.1.0+v2")
    assert app.timeout == 600
    assert app.compose_files == ("compose.yml", "compose.extra.yml")
    assert app.env["SECRET_DB_PASSWORD_VERSION"] == "v1"
    assert app.modifiers["SECRET_DB_PASSWORD_VERSION"] == {"length": "32"}
    assert app.env_path == abra_dir.path / "servers" / "srv1" / "blog.example.com.env"


def test_defaults_legacy_recipe_key_and_chosen_names(abra_dir: AbraDir) -> None:
    folder = abra_dir.path / "servers" / "srv1"
    folder.mkdir(parents=True)
    (folder / "mysite.env").write_text("RECIPE=wordpress\nDOMAIN=www.example.org\n")
    (folder / "custom.example.org.env").write_text("TYPE=gitea:2.0.0+1.21\nSTACK_NAME=git\n")
    catalog = AppCatalog(abra_dir.path)

    site = catalog.get("mysite")
    assert (site.recipe, site.version) == ("wordpress", None)
    assert site.domain == "www.example.org"  # DOMAIN wins over the file name
    assert site.stack_name == "mysite"
    assert site.timeout == 300
    assert site.compose_files == ("compose.yml",)

    custom = catalog.get("custom.example.org")
    assert custom.domain == "custom.example.org"  # no DOMAIN: the app name
    assert custom.stack_name == "git"


def test_list_across_servers_following_symlinks(abra_dir: AbraDir, tmp_path: Path) -> None:
    abra_dir.write_app("srv1", "b.example.com")
    abra_dir.write_app("srv1", "a.example.com")
    abra_dir.write_app("srv2", "c.example.com")
    # An operator keeps srv3's folder in a git checkout and links it in.
    kept = tmp_path / "ops-git" / "srv3"
    kept.mkdir(parents=True)
    (kept / "d.example.com.env").write_text("TYPE=testapp:1.0.0+v1\n")
    (abra_dir.path / "servers" / "srv3").symlink_to(kept, target_is_directory=True)
    (abra_dir.path / "servers" / "srv1" / "notes.txt").write_text("not an app")
    (abra_dir.path / "servers" / "srv1" / ".hidden.env").write_text("TYPE=x\n")

    catalog = AppCatalog(abra_dir.path)
    assert catalog.servers() == ["srv1", "srv2", "srv3"]
    assert [(a.server, a.name) for a in catalog.list()] == [
        ("srv1", "a.example.com"),
        ("srv1", "b.example.com"),
        ("srv2", "c.example.com"),
        ("srv3", "d.example.com"),
    ]
    assert [a.name for a in catalog.list(["srv2", "srv3"])] == ["c.example.com", "d.example.com"]
    assert catalog.list(["unknown"]) == []
    assert catalog.get("d.example.com").version == "1.0.0+v1"


def test_missing_abra_dir_lists_nothing(tmp_path: Path) -> None:
    catalog = AppCatalog(tmp_path / "nowhere")
    assert catalog.servers() == []
    assert catalog.list() == []


def test_unknown_app_suggests_close_names(abra_dir: AbraDir) -> None:
    abra_dir.write_app("srv1", "blog.example.com")
    abra_dir.write_app("srv1", "wiki.example.com")
    catalog = AppCatalog(abra_dir.path)
    with pytest.raises(NotFound) as caught:
        catalog.get("blog.exmple.com")
    assert str(caught.value) == "Unknown app `blog.exmple.com`. Did you mean `blog.example.com`?"
    with pytest.raises(NotFound, match=r"^Unknown app `zzz`\.$"):
        catalog.get("zzz")


def test_same_app_name_on_two_servers_is_ambiguous(abra_dir: AbraDir) -> None:
    abra_dir.write_app("srv1", "blog.example.com")
    abra_dir.write_app("srv2", "blog.example.com")
    with pytest.raises(UserError, match=r"on several servers \(srv1, srv2\)"):
        AppCatalog(abra_dir.path).get("blog.example.com")


def test_a_malformed_file_is_skipped_in_lists_and_an_error_in_get(
    abra_dir: AbraDir, caplog: pytest.LogCaptureFixture
) -> None:
    abra_dir.write_app("srv1", "good.example.com")
    broken = abra_dir.write_app("srv1", "broken.example.com", extra={"PASSWORD": '"unclosed'})
    abra_dir.write_app("srv1", "slow.example.com", extra={"TIMEOUT": "soon"})
    # "²".isdigit() is true, but int("²") fails: only ASCII digits are a number of seconds.
    abra_dir.write_app("srv1", "squared.example.com", extra={"TIMEOUT": "6²"})
    (abra_dir.path / "servers" / "srv1" / "notype.example.com.env").write_text("DOMAIN=x\n")
    catalog = AppCatalog(abra_dir.path)

    with caplog.at_level(logging.WARNING, logger="coopbot.recipes.apps"):
        assert [a.name for a in catalog.list()] == ["good.example.com"]
    assert "srv1/broken.example.com.env, line 8" in caplog.text
    with pytest.raises(EnvFileError) as caught:
        catalog.get("broken.example.com")
    assert str(caught.value) == (
        "App env file srv1/broken.example.com.env, line 8: the double quote is never closed."
    )
    assert caught.value.path == broken
    with pytest.raises(EnvFileError, match=r"line 8: TIMEOUT must be a whole number"):
        catalog.get("slow.example.com")
    with pytest.raises(EnvFileError, match=r"line 8: TIMEOUT must be a whole number"):
        catalog.get("squared.example.com")
    with pytest.raises(EnvFileError, match=r"srv1/notype.example.com.env: it has no TYPE line"):
        catalog.get("notype.example.com")

    # A broken file is parsed (and logged) again only once it changes.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="coopbot.recipes.apps"):
        catalog.list()
    assert caplog.text == ""


def test_changes_on_disk_are_seen_and_unchanged_files_not_reparsed(abra_dir: AbraDir) -> None:
    path = abra_dir.write_app("srv1", "blog.example.com", version="1.0.0+v1")
    catalog = AppCatalog(abra_dir.path)
    first = catalog.get("blog.example.com")
    assert catalog.get("blog.example.com") is first  # cached: same stat, same object

    path.write_text(path.read_text().replace("1.0.0+v1", "1.1.0+v2"))
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 1_000_000))
    assert catalog.get("blog.example.com").version == "1.1.0+v2"

    abra_dir.write_app("srv2", "new.example.com")
    assert [a.name for a in catalog.list()] == ["blog.example.com", "new.example.com"]
    path.unlink()
    assert [a.name for a in catalog.list()] == ["new.example.com"]
    with pytest.raises(NotFound):
        catalog.get("blog.example.com")


@pytest.mark.parametrize(("labels", "timeout", "expected"), [
    ({"coop-cloud.x_org.timeout": "120"}, 300, 120.0),  # the recipe's label wins
    (["coop-cloud.x_org.timeout=90", "other=1"], 300, 90.0),  # list form of labels
    ({"coop-cloud.other.timeout": "120"}, 600, 600.0),  # another stack's label: TIMEOUT
    ({"coop-cloud.x_org.timeout": "soon"}, 300, 300.0),  # unreadable: the app's TIMEOUT
])
def test_convergence_timeout_from_the_recipe_label_else_the_env(
    labels: object, timeout: int, expected: float, tmp_path: Path
) -> None:
    app = App(name="x.org", server="s", domain="x.org", stack_name="x_org", recipe="r",
              version=None, env={}, env_path=tmp_path / "x.org.env", timeout=timeout,
              compose_files=("compose.yml",), modifiers={})
    compose = {"services": {"app": {"deploy": {"labels": labels}}}}
    assert convergence_timeout(app, compose) == expected
