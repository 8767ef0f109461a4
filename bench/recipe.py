"""The bench recipe `benchapp`: three services (two healthchecked httpd, one worker) built from
busybox, as a bare git repo with annotated release tags, plus abra-style env files.

Images are built locally (no registry is reachable): `coopbot-bench/app:v1` and `:v2`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from coopbot.dev.local_images import build_busybox_image, build_restic_image

RECIPE = "benchapp"
IMAGE = "coopbot-bench/app"
RESTIC_IMAGE = "coopbot-bench/restic:local"
RELEASES = (("1.0.0+v1", "v1"), ("1.1.0+v2", "v2"))
SERVICES = ("api", "app", "worker")
# The multi-node variant (bench/worker.py): one healthchecked service, its data pinned to a node.
NODE_RECIPE = "benchnode"
NODE_VERSION = "1.0.0+v1"

_HEALTH = """\
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O- http://127.0.0.1:80/health || exit 1"]
      interval: 1s
      timeout: 2s
      retries: 3
"""

_COMPOSE = """\
version: "3.8"

services:
  app:
    image: {image}
    environment:
      - GREETING=${{GREETING}}
    volumes:
      - data:/data
    stop_grace_period: 1s
{health}    deploy:
      update_config:
        failure_action: rollback
        order: start-first
      labels:
        - "coop-cloud.${{STACK_NAME}}.version={version}"
        - "coop-cloud.${{STACK_NAME}}.timeout=${{TIMEOUT:-120}}"
        - "coop-cloud.${{STACK_NAME}}.recipe={recipe}"
        - "backupbot.backup=true"
  api:
    image: {image}
    stop_grace_period: 1s
{health}  worker:
    image: {image}
    command: ["sleep", "1000000"]
    stop_grace_period: 1s

volumes:
  data:
"""

# No VIP or ingress mesh on this kernel (no IPVS): dnsrr and no published port.
_NODE_COMPOSE = """\
version: "3.8"

services:
  app:
    image: {image}
    volumes:
      - data:/data
    stop_grace_period: 1s
{health}    deploy:
      endpoint_mode: dnsrr
      placement:
        constraints:
          - "node.hostname == ${{DATA_NODE}}"
      labels:
        - "coop-cloud.${{STACK_NAME}}.version={version}"
        - "coop-cloud.${{STACK_NAME}}.timeout=${{TIMEOUT:-120}}"
        - "coop-cloud.${{STACK_NAME}}.recipe={recipe}"
        - "backupbot.backup=true"

volumes:
  data:
"""

ENV_SAMPLE = """\
TYPE=benchapp

DOMAIN=benchapp.example.org

GREETING=hello
"""


def compose(version: str, *, healthchecks: bool = True) -> str:
    tag = dict(RELEASES)[version]
    return _COMPOSE.format(image=f"{IMAGE}:{tag}", version=version, recipe=RECIPE,
                           health=_HEALTH if healthchecks else "")


def build_images() -> list[str]:
    """The app images v1 and v2, and a restic helper image (restic + the libs ldd lists)."""
    tags = [
        build_busybox_image(f"{IMAGE}:{tag}", cmd=["httpd", "-f", "-p", "80", "-h", "/www"],
                            www={"index.html": f"<h1>benchapp {tag}</h1>\n", "health": "ok\n"})
        for _, tag in RELEASES
    ]
    if shutil.which("restic") is not None:
        tags.append(build_restic_image(RESTIC_IMAGE))
    return tags


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, timeout=60,
                   env={"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@coopbot.invalid",
                        "GIT_COMMITTER_NAME": "bench",
                        "GIT_COMMITTER_EMAIL": "bench@coopbot.invalid",
                        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(cwd)})


def _init_work(bare: Path) -> Path:
    work = bare.parent / f"{bare.name}.work"
    work.mkdir(parents=True)
    _git("init", "-q", "-b", "main", cwd=work)
    _git("config", "commit.gpgsign", "false", cwd=work)
    _git("config", "tag.gpgsign", "false", cwd=work)
    return work


def create_node_repo(bare: Path) -> Path:
    """`benchnode`: one release whose app service runs on the node the env's DATA_NODE names."""
    work = _init_work(bare)
    (work / "compose.yml").write_text(_NODE_COMPOSE.format(
        image=f"{IMAGE}:v1", version=NODE_VERSION, recipe=NODE_RECIPE, health=_HEALTH))
    (work / ".env.sample").write_text(f"TYPE={NODE_RECIPE}\n\nDOMAIN=benchnode.example.org\n")
    (work / "README.md").write_text("# benchnode\n\ncoopbot's multi-node benchmark recipe.\n")
    _git("add", "--all", cwd=work)
    _git("commit", "-q", "-m", f"Release {NODE_VERSION}", cwd=work)
    _git("tag", "-a", NODE_VERSION, "-m", f"Release {NODE_VERSION}", cwd=work)
    _git("clone", "-q", "--bare", str(work), str(bare), cwd=bare.parent)
    return bare


def create_repo(bare: Path) -> Path:
    """A bare repo with one commit and one annotated tag per release (abra's layout)."""
    work = _init_work(bare)
    for version, tag in RELEASES:
        (work / "compose.yml").write_text(compose(version))
        (work / ".env.sample").write_text(ENV_SAMPLE)
        (work / "abra.sh").write_text("export BENCH_CONF_VERSION=v1\n")
        (work / "README.md").write_text("# benchapp\n\ncoopbot's benchmark recipe.\n")
        (work / "release").mkdir(exist_ok=True)
        (work / "release" / version).write_text(f"Serves the {tag} page.\n")
        _git("add", "--all", cwd=work)
        _git("commit", "-q", "-m", f"Release {version}", cwd=work)
        _git("tag", "-a", version, "-m", f"Release {version}", cwd=work)
    _git("clone", "-q", "--bare", str(work), str(bare), cwd=bare.parent)
    return bare


def write_env(apps_dir: Path, server: str, name: str, *, version: str | None = None,
              stack: str | None = None) -> Path:
    """`<apps_dir>/servers/<server>/<name>.env`, as `abra app new` writes it."""
    path = apps_dir / "servers" / server / f"{name}.env"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"TYPE={RECIPE}:{version}" if version else f"TYPE={RECIPE}", "", f"DOMAIN={name}",
             ""]
    if stack:
        lines.append(f"STACK_NAME={stack}")
    lines.append("GREETING=hello")
    path.write_text("\n".join(lines) + "\n")
    return path


def stack_of(name: str) -> str:
    return name.replace(".", "_")
