"""Recipe fixtures: REAL bare git repos with annotated release tags, and abra-style app dirs.

- `make_recipe_repo(name, releases)` (session): a bare repo whose history has one commit and
  one tag per release; each release gives the WHOLE tree at that version.
- `add_release(bare, release)`: commit + tag + `git push` one more release into a bare repo
  (what a recipe maintainer does), e.g. to test that a fetch picks it up; `add_commit(bare,
  files, message)` pushes an untagged commit (a "chaos" tree).
- `testapp_recipe` (session): the `testapp` recipe, releases 1.0.0+v1, 1.1.0+v2, 1.2.0+v3 using
  images coopbot-test/app:v1/v2/v3 (busybox httpd; v3 is built unhealthy by the swarm harness).
- `abra_dir` (function): an empty abra dir; `.write_app(server, domain, ...)` writes
  `servers/<server>/<domain>.env` as `abra app new` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from git.repo import Repo


@dataclass(frozen=True)
class RecipeRelease:
    version: str  # the tag, e.g. "1.1.0+v2"
    files: Mapping[str, str]  # path -> content: the whole tree at this release
    message: str = ""  # tag message; defaults to "Release <version>"
    annotated: bool = True  # abra tags releases with annotated tags


MakeRecipeRepo = Callable[[str, Sequence[RecipeRelease]], Path]

_IDENTITY = (("user", "name", "coopbot tests"), ("user", "email", "tests@coopbot.invalid"))
_NO_SIGNING = (("commit", "gpgsign", "false"), ("tag", "gpgsign", "false"))


def add_commit(bare: Path, files: Mapping[str, str], message: str) -> Repo:
    """Commit `files` as the whole new tree of `main` in a work clone beside `bare`, and push
    it. Returns the open work repo (close it). Without a tag this is a "chaos" commit."""
    work = bare.parent / f"{bare.name}.work"
    if not work.exists():
        Repo.clone_from(str(bare), str(work)).close()
    repo = Repo(work)
    with repo.config_writer() as config:
        for section, option, value in _IDENTITY + _NO_SIGNING:
            config.set_value(section, option, value)
    for tracked in repo.git.ls_files().splitlines():
        (work / tracked).unlink()
    for name, content in files.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    repo.git.add("--all")
    repo.git.commit("--allow-empty", "--quiet", "-m", message)
    repo.git.push("--quiet", "origin", "HEAD:refs/heads/main")
    return repo


def add_release(bare: Path, release: RecipeRelease) -> str:
    """Commit `release.files`, tag the commit, push both (as a maintainer does); the commit."""
    with add_commit(bare, release.files, f"Release {release.version}") as repo:
        if release.annotated:
            message = release.message or f"Release {release.version}"
            repo.git.tag("-a", release.version, "-m", message)
        else:
            repo.git.tag(release.version)
        repo.git.push("--quiet", "origin", f"refs/tags/{release.version}")
        return repo.head.commit.hexsha


@pytest.fixture(scope="session")
def make_recipe_repo(tmp_path_factory: pytest.TempPathFactory) -> MakeRecipeRepo:
    def make(name: str, releases: Sequence[RecipeRelease]) -> Path:
        bare = tmp_path_factory.mktemp("recipe-repos") / f"{name}.git"
        Repo.init(bare, bare=True, initial_branch="main").close()
        for release in releases:
            add_release(bare, release)
        return bare

    return make


# -- the testapp recipe ---------------------------------------------------------------------

TESTAPP_IMAGES = {
    "1.0.0+v1": "coopbot-test/app:v1",
    "1.1.0+v2": "coopbot-test/app:v2",
    "1.2.0+v3": "coopbot-test/app:v3",  # deliberately unhealthy
}
TESTAPP_VERSIONS = tuple(TESTAPP_IMAGES)
TESTAPP_NOTES = {
    "1.1.0+v2": "Serves the v2 page.\n\nNo manual steps needed.\n",
    "1.2.0+v3": "Serves the v3 page.\n\nThis release's healthcheck fails: expect a rollback.\n",
}

_TESTAPP_COMPOSE = """\
version: "3.8"

services:
  app:
    image: {image}
    environment:
      - GREETING=${{GREETING}}
      - APP_CONF_VERSION=${{APP_CONF_VERSION:-v0}}
    volumes:
      - data:/data
    secrets:
      - db_password
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O- http://127.0.0.1:80/ || exit 1"]
      interval: 2s
      timeout: 2s
      retries: 3
      start_period: 5s
    deploy:
      update_config:
        failure_action: rollback
        order: start-first
        monitor: 5s
      rollback_config:
        order: start-first
      labels:
        - "coop-cloud.${{STACK_NAME}}.version={version}"
        - "coop-cloud.${{STACK_NAME}}.timeout=${{TIMEOUT:-120}}"
        - "coop-cloud.${{STACK_NAME}}.recipe=testapp"

volumes:
  data:

secrets:
  db_password:
    external: true
    name: ${{STACK_NAME}}_db_password_${{SECRET_DB_PASSWORD_VERSION}}
"""

_TESTAPP_EXTRA = """\
version: "3.8"

services:
  app:
    deploy:
      labels:
        - "coop-cloud.${STACK_NAME}.extra=true"
"""

_TESTAPP_ENV_SAMPLE = """\
TYPE=testapp

DOMAIN=testapp.example.com

## Domain aliases
#EXTRA_DOMAINS=',`www.testapp.example.com`'

## Extra label overlay
#COMPOSE_FILE="compose.yml:compose.extra.yml"

SECRET_DB_PASSWORD_VERSION=v1 # length=32

GREETING=hello
"""


def tree_of_testapp(version: str) -> dict[str, str]:
    """The testapp tree at `version` (release notes of that and every earlier release)."""
    files = {
        "README.md": "# testapp\n\nA recipe for coopbot's tests.\n",
        "compose.yml": _TESTAPP_COMPOSE.format(image=TESTAPP_IMAGES[version], version=version),
        "compose.extra.yml": _TESTAPP_EXTRA,
        ".env.sample": _TESTAPP_ENV_SAMPLE,
        "abra.sh": "export APP_CONF_VERSION=v1\n",
    }
    for released in TESTAPP_VERSIONS[: TESTAPP_VERSIONS.index(version) + 1]:
        if released in TESTAPP_NOTES:
            files[f"release/{released}"] = TESTAPP_NOTES[released]
    return files


TESTAPP_RELEASES = tuple(RecipeRelease(v, tree_of_testapp(v)) for v in TESTAPP_VERSIONS)


@pytest.fixture(scope="session")
def testapp_recipe(make_recipe_repo: MakeRecipeRepo) -> Path:
    """Bare repo of the testapp recipe (shared: never push to it; make your own to do that)."""
    return make_recipe_repo("testapp", TESTAPP_RELEASES)


# -- abra app dirs --------------------------------------------------------------------------


@dataclass
class AbraDir:
    path: Path
    written: list[Path] = field(default_factory=list)

    def write_app(
        self,
        server: str,
        domain: str,
        recipe: str = "testapp",
        version: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> Path:
        """Write `servers/<server>/<domain>.env` like `abra app new` (TYPE, DOMAIN, the
        sample's comments), then `extra` as raw `KEY=value` lines (quote values yourself)."""
        folder = self.path / "servers" / server
        folder.mkdir(parents=True, exist_ok=True)
        type_value = f"{recipe}:{version}" if version else recipe
        lines = [
            f"TYPE={type_value}",
            "",
            f"DOMAIN={domain}",
            "",
            "## Domain aliases",
            f"#EXTRA_DOMAINS=',`www.{domain}`'",
            "",
            *(f"{key}={value}" for key, value in (extra or {}).items()),
        ]
        env_path = folder / f"{domain}.env"
        env_path.write_text("\n".join(lines) + "\n")
        self.written.append(env_path)
        return env_path


@pytest.fixture
def abra_dir(tmp_path: Path) -> AbraDir:
    folder = tmp_path / "abra"
    (folder / "servers").mkdir(parents=True)
    return AbraDir(folder)


# -- recipe shapes seen in the wild (written here, modelled on no particular recipe) ----------
#
# Each is a small recipe of its own whose `app` service runs the busybox test images (v1, v2
# healthy; v3 unhealthy) or an image that was never built. No secrets, so an app needs only its
# env file. `recipe_shapes` (session) gives name -> bare repo.

SHAPE_COMPOSE = """\
version: "3.8"

services:
  app:
    image: {image}
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O- http://127.0.0.1:80/ || exit 1"]
      interval: 2s
      timeout: 2s
      retries: 3
      start_period: 5s
    deploy:
      update_config:
        failure_action: rollback
        order: start-first
        monitor: 5s
      labels:
{labels}
"""

SHAPE_ENV_SAMPLE = "TYPE={recipe}\n\nDOMAIN={recipe}.example.com\n"


def shape_tree(recipe: str, image: str, labels: Sequence[str],
               files: Mapping[str, str] | None = None) -> dict[str, str]:
    """A recipe tree: compose.yml with `labels` (compose list form) on `app`, .env.sample."""
    listed = "\n".join(f'        - "{line}"' for line in labels)
    return {"compose.yml": SHAPE_COMPOSE.format(image=image, labels=listed),
            ".env.sample": SHAPE_ENV_SAMPLE.format(recipe=recipe), **(files or {})}


def _labelled(version_label: str, scheme: str = "version") -> list[str]:
    return [f"coop-cloud.${{STACK_NAME}}.{scheme}={version_label}",
            "coop-cloud.${STACK_NAME}.timeout=${TIMEOUT:-120}"]


IMAGE_BASE = "coopbot-test/app"
MISSING_IMAGE = "coopbot-test/never-built:v9"

# `vX.Y.Z` tags whose compose labels say `X.Y.Z+X.Y.Z` (v1.0.3 is the unhealthy image).
VTAG_RELEASES = tuple(
    RecipeRelease(f"v1.0.{n}", shape_tree("vtags", f"{IMAGE_BASE}:v{n}",
                                          _labelled(f"1.0.{n}+1.0.{n}")))
    for n in (1, 2, 3))
# Every release labels its version `latest`.
LATEST_RELEASES = tuple(
    RecipeRelease(tag, shape_tree("latestlabel", f"{IMAGE_BASE}:{image}", _labelled("latest")))
    for tag, image in (("1.0.0+v1", "v1"), ("1.1.0+v2", "v2")))
# The old label scheme `coop-cloud.<stack>.app.version`.
OLD_SCHEME_RELEASES = tuple(
    RecipeRelease(tag, shape_tree("oldscheme", f"{IMAGE_BASE}:{image}",
                                  _labelled(tag, "app.version")))
    for tag, image in (("2.4.7+v1", "v1"), ("2.4.8+v2", "v2")))
# One annotated release and a newer lightweight tag (a bookmark, not a release).
LIGHTWEIGHT_RELEASES = (
    RecipeRelease("1.0.0+v1", shape_tree("lightweight", f"{IMAGE_BASE}:v1",
                                         _labelled("1.0.0+v1"))),
    RecipeRelease("1.1.0+v2", shape_tree("lightweight", f"{IMAGE_BASE}:v2",
                                         _labelled("1.1.0+v2")), annotated=False),
)
# Short port forms in compose.yml, long ones for some of the same ports in an overlay.
PORTS_BASE = """\
version: "3.8"
services:
  app:
    image: coopbot-test/app:v1
    ports:
      - "8080:80"
      - "9000:9000/udp"
      - "7000:70"
"""
PORTS_OVERLAY = """\
version: "3.8"
services:
  app:
    ports:
      - target: 80
        published: 8080
        mode: host
      - target: 443
        published: 8443
        protocol: tcp
"""
PORTS_RELEASES = (RecipeRelease("1.0.0+ports", {"compose.yml": PORTS_BASE,
                                               "compose.ports.yml": PORTS_OVERLAY}),)
# A secret whose version variable the sample has only in a comment (abra's `app new` then
# leaves it unset).
SECRET_COMPOSE = """\
version: "3.8"
services:
  app:
    image: coopbot-test/app:v1
    secrets:
      - ari_password
secrets:
  ari_password:
    external: true
    name: ${STACK_NAME}_ari_password_${SECRET_ARI_PASSWORD_VERSION}
"""
SECRET_RELEASES = (RecipeRelease("1.0.0+secret", {
    "compose.yml": SECRET_COMPOSE,
    ".env.sample": "TYPE=commentsecret\n\n#SECRET_ARI_PASSWORD_VERSION=v1 # length=32\n"}),)
# An image that does not exist anywhere.
MISSING_IMAGE_RELEASES = (
    RecipeRelease("1.0.0+missing", shape_tree("missingimage", MISSING_IMAGE,
                                              _labelled("1.0.0+missing"))),)
# No tags at all: two plain commits (abra deploys the newest: chaos).
UNTAGGED_COMMITS = (
    shape_tree("untagged", f"{IMAGE_BASE}:v1", _labelled("0.1.0+dev")),
    shape_tree("untagged", f"{IMAGE_BASE}:v2", _labelled("0.1.0+dev")),
)

SHAPE_RELEASES: dict[str, Sequence[RecipeRelease]] = {
    "vtags": VTAG_RELEASES,
    "latestlabel": LATEST_RELEASES,
    "oldscheme": OLD_SCHEME_RELEASES,
    "lightweight": LIGHTWEIGHT_RELEASES,
    "ports": PORTS_RELEASES,
    "commentsecret": SECRET_RELEASES,
    "missingimage": MISSING_IMAGE_RELEASES,
}


@pytest.fixture(scope="session")
def recipe_shapes(make_recipe_repo: MakeRecipeRepo) -> dict[str, Path]:
    """name -> bare repo of each shape above (shared: never push to them)."""
    repos = {name: make_recipe_repo(name, releases) for name, releases in SHAPE_RELEASES.items()}
    untagged = make_recipe_repo("untagged", ())
    for number, files in enumerate(UNTAGGED_COMMITS, 1):
        add_commit(untagged, files, f"Work in progress {number}").close()
    repos["untagged"] = untagged
    return repos
