"""A small sample recipe and app for `coopbot dev`, so a newcomer can `!deploy` something real in
the first minute without any registry: the images are built locally from busybox.

The recipe follows the Co-op Cloud layout (compose.yml with an `app` service and deploy labels,
.env.sample, abra.sh, release notes, annotated `X.Y.Z+upstream` tags).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from git import Actor, Repo

from coopbot.dev.local_images import build_busybox_image

RECIPE = "hello"
IMAGE = "coopbot-dev/hello"
RESTIC_IMAGE = "coopbot-dev/restic:local"
RELEASES = (("1.0.0+v1", "v1"), ("1.1.0+v2", "v2"))

COMPOSE = """\
version: "3.8"

services:
  app:
    image: {image}
    # Something worth a backup in the data volume (`!backup hello.localhost`).
    command:
      - sh
      - -c
      - echo "$${{GREETING}}" > /data/greeting.txt; exec httpd -f -p 80 -h /www
    environment:
      - GREETING=${{GREETING}}
    volumes:
      - data:/data
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O- http://127.0.0.1:80/ || exit 1"]
      interval: 5s
      timeout: 3s
      retries: 3
      start_period: 5s
    deploy:
      update_config:
        failure_action: rollback
        order: start-first
      labels:
        - "coop-cloud.${{STACK_NAME}}.version={version}"
        - "coop-cloud.${{STACK_NAME}}.timeout=${{TIMEOUT:-120}}"
        - "coop-cloud.${{STACK_NAME}}.recipe={recipe}"
        - "backupbot.backup=true"

volumes:
  data:
"""

ENV_SAMPLE = """\
TYPE=hello

DOMAIN=hello.localhost

GREETING=hello from coopbot
"""


def build_images(busybox: str | None = None) -> list[str]:
    """Build the sample's images on the local engine (seconds; no registry needed)."""
    return [
        build_busybox_image(
            f"{IMAGE}:{upstream}", cmd=["httpd", "-f", "-p", "80", "-h", "/www"],
            www={"index.html": f"<h1>Hello from coopbot's sample app {version}</h1>\n"},
            busybox=busybox,
        )
        for version, upstream in RELEASES
    ]


def create_recipe(bare: Path) -> Path:
    """A bare git repo holding the sample recipe with one annotated tag per release."""
    if bare.exists():
        return bare
    with tempfile.TemporaryDirectory() as folder:
        work = Repo.init(folder)
        author = Actor("coopbot dev", "dev@coopbot.invalid")
        root = Path(folder)
        for version, upstream in RELEASES:
            (root / "compose.yml").write_text(COMPOSE.format(
                image=f"{IMAGE}:{upstream}", version=version, recipe=RECIPE))
            (root / ".env.sample").write_text(ENV_SAMPLE)
            (root / "abra.sh").write_text("export HELLO_CONF_VERSION=v1\n")
            (root / "README.md").write_text("# hello\n\ncoopbot's sample recipe.\n")
            (root / "release").mkdir(exist_ok=True)
            (root / "release" / version).write_text(f"Serves the {upstream} page.\n")
            work.index.add(["compose.yml", ".env.sample", "abra.sh", "README.md",
                            f"release/{version}"])
            work.index.commit(f"Release {version}", author=author, committer=author)
            work.create_tag(version, message=f"Release {version}")
        work.clone(str(bare), bare=True)
    return bare


def write_app(apps_dir: Path, server: str, domain: str = "hello.localhost") -> Path:
    path = apps_dir / "servers" / server / f"{domain}.env"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"TYPE={RECIPE}\n\nDOMAIN={domain}\n\nGREETING=hello from coopbot\n")
    return path
