"""Backup fixtures: a restic helper image built here, and the `backuptest` recipe.

- `restic_image` (session): `coopbot-test/restic:0.14`, FROM scratch: Debian's /usr/bin/restic
  plus the libraries `ldd` lists, and busybox (the restore empties paths with `sh`, `find`,
  `rm`, as the official restic image can). No registry is reachable: it is built locally.
- `backuptest_recipe` (session): a bare git repo, annotated tags 1.0.0+v1 and 1.1.0+v2. Its
  service `app` writes a "database" (`/var/lib/db/live.db`) and uploads (`/srv/files`) into
  two volumes and a cache into a third. Labels: the `db` volume narrowed by a v2 path label to
  the dump, `files` whole, `cache` excluded; a pre-hook dumping the database (it fails when
  `/fail-hook` exists, printing an env value first), a restore pre-hook leaving a mark in
  the cache, and a restore post-hook loading the dump.
- `migratetest_recipe` (session): the same, plus a release 2.0.0+v3 that rewrites the database
  as it starts (a migration) and then crashes.
- `restic_repository` (function): a fresh repository folder and a password file holding a
  random password (the test checks that it never shows up anywhere).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest

from coopbot.dev.local_images import build_restic_image
from tests.harness.recipes import MakeRecipeRepo, RecipeRelease
from tests.harness.swarm import AppImages, Dockerd

RESTIC_IMAGE = "coopbot-test/restic:0.14"


@pytest.fixture(scope="session")
def restic_image(dockerd: Dockerd) -> str:
    try:
        return build_restic_image(RESTIC_IMAGE)
    except RuntimeError as error:
        pytest.fail(f"{error} (restic and busybox are needed)")


# -- the backuptest recipe ------------------------------------------------------------------

BACKUPTEST_VERSIONS = {"1.0.0+v1": "coopbot-test/app:v1", "1.1.0+v2": "coopbot-test/app:v2"}
DB, DUMP = "/var/lib/db/live.db", "/var/lib/db/dump.sql"
UPLOAD, README = "/srv/files/upload.bin", "/srv/files/docs/readme.txt"
CACHE_FILE, RESTORE_MARK = "/var/cache/app/cache.txt", "/var/cache/app/restore-pre-hook-ran"
FAIL_FLAG = "/fail-hook"  # outside every volume (the image has no /tmp)

# `$$` is a literal `$` for `docker stack deploy`'s interpolation.
_INIT = (
    f"mkdir -p /srv/files/docs; "
    f"[ -e {DB} ] || head -c 3000 /dev/urandom > {DB}; "
    f"[ -e {UPLOAD} ] || head -c 9000 /dev/urandom > {UPLOAD}; "
    f"[ -e {README} ] || echo uploaded by a member > {README}; "
    f"echo warm > {CACHE_FILE}; "
    "exec httpd -f -p 80 -h /www"
)
_PRE_HOOK = (
    f"if [ -e {FAIL_FLAG} ]; then echo connecting with $$DB_PASSWORD >&2; "
    f"echo dump failed: disk full >&2; exit 3; fi; cat {DB} > {DUMP}"
)

_BACKUPTEST_COMPOSE = """\
version: "3.8"

services:
  app:
    image: {image}
    command: ["sh", "-c", "{init}"]
    environment:
      - DB_PASSWORD=${{DB_PASSWORD}}
    volumes:
      - db:/var/lib/db
      - files:/srv/files
      - cache:/var/cache/app
    stop_grace_period: 1s
    deploy:
      labels:
        - "coop-cloud.${{STACK_NAME}}.version={version}"
        - "coop-cloud.${{STACK_NAME}}.timeout=${{TIMEOUT:-120}}"
        - "coop-cloud.${{STACK_NAME}}.recipe=backuptest"
        - "backupbot.backup=true"
        - "backupbot.backup.volumes.db.path=dump.sql"
        - "backupbot.backup.volumes.cache=false"
        - "backupbot.backup.pre-hook={pre_hook}"
        - "backupbot.restore.pre-hook=date > {mark}"
        - "backupbot.restore.post-hook=cp {dump} {db}"

volumes:
  db:
  files:
  cache:
"""

_BACKUPTEST_ENV_SAMPLE = """\
TYPE=backuptest
DOMAIN=backuptest.example.com
DB_PASSWORD=change-me
"""


def tree_of_backuptest(version: str, *, image: str | None = None,
                       init: str = _INIT) -> dict[str, str]:
    compose = _BACKUPTEST_COMPOSE.format(
        image=image or BACKUPTEST_VERSIONS[version], version=version, init=init,
        pre_hook=_PRE_HOOK, mark=RESTORE_MARK, dump=DUMP, db=DB,
    )
    return {
        "README.md": "# backuptest\n\nA recipe with backupbot labels for coopbot's tests.\n",
        "compose.yml": compose,
        ".env.sample": _BACKUPTEST_ENV_SAMPLE,
    }


@pytest.fixture(scope="session")
def backuptest_recipe(make_recipe_repo: MakeRecipeRepo, test_images: AppImages) -> Path:
    """Bare repo of the backuptest recipe (shared: never push to it)."""
    releases = [RecipeRelease(v, tree_of_backuptest(v)) for v in BACKUPTEST_VERSIONS]
    return make_recipe_repo("backuptest", releases)


# `migratetest`: backuptest's releases, then 2.0.0+v3, which "migrates" the database (rewrites
# it) as it starts and then crashes: the upgrade that fails after its migration ran.
MIGRATING = "2.0.0+v3"
MIGRATED = b"migrated by 2.0.0\n"
_MIGRATE_AND_CRASH = (f"echo migrated by 2.0.0 > {DB}; "
                      "echo the new version crashes after its migration >&2; exit 1")


@pytest.fixture(scope="session")
def migratetest_recipe(make_recipe_repo: MakeRecipeRepo, test_images: AppImages) -> Path:
    """Bare repo of the migratetest recipe (shared: never push to it)."""
    releases = [RecipeRelease(v, tree_of_backuptest(v)) for v in BACKUPTEST_VERSIONS]
    releases.append(RecipeRelease(MIGRATING, tree_of_backuptest(
        MIGRATING, image=BACKUPTEST_VERSIONS["1.0.0+v1"], init=_MIGRATE_AND_CRASH)))
    return make_recipe_repo("migratetest", releases)


@dataclass(frozen=True)
class ResticRepository:
    path: Path
    password: str
    password_file: Path


@pytest.fixture
def restic_repository(tmp_path: Path) -> ResticRepository:
    folder = tmp_path / "restic"
    folder.mkdir()
    password = f"restic-{secrets.token_urlsafe(18)}"
    password_file = tmp_path / "restic-password"
    password_file.write_text(password + "\n")
    return ResticRepository(folder / "repo", password, password_file)
