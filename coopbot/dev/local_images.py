"""Small images built on the local Docker engine from Debian's static busybox (and restic), for
machines that reach no registry: `coopbot dev`'s sample app, the test suite and the bench.

- `build_busybox_image`: busybox alone, optionally serving files from /www with httpd.
- `build_restic_image`: restic plus the libraries `ldd` lists, and busybox (coopbot's restores
  empty paths with `sh`, `find` and `rm`, as the official restic image can).
- `build_docker_cli_image`: the docker CLI the same way, as the `docker:cli` image has it: what
  a per-node helper runs to reach a task's container on a node the bot cannot reach itself.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

BUILD_TIMEOUT = 300  # seconds; a build takes a second or two

_BUSYBOX_BASE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
"""

_BINARY_TAIL = """\
RUN ["/bin/busybox", "mkdir", "-p", "/tmp", "/root"]
{libraries}COPY {name} /usr/bin/{name}
ENTRYPOINT ["/usr/bin/{name}"]
"""


def build_busybox_image(
    tag: str, *, cmd: Sequence[str], www: Mapping[str, str] | None = None,
    busybox: str | None = None,
) -> str:
    """Build `tag`: busybox, the files of `www` (name -> text) under /www, and `cmd`."""
    with tempfile.TemporaryDirectory() as folder:
        context = Path(folder)
        shutil.copy(_binary("busybox", busybox, "busybox-static"), context / "busybox")
        dockerfile = _BUSYBOX_BASE
        if www is not None:
            (context / "www").mkdir()
            for name, text in www.items():
                (context / "www" / name).write_text(text)
            dockerfile += "COPY www /www\n"
        (context / "Dockerfile").write_text(dockerfile + f"CMD {json.dumps(list(cmd))}\n")
        _docker_build(context, tag)
    return tag


def build_restic_image(tag: str, *, restic: str | None = None,
                       busybox: str | None = None) -> str:
    """Build `tag`: this machine's restic (with its shared libraries) and busybox."""
    return _build_binary_image(tag, "restic", _binary("restic", restic, "restic"), busybox)


def build_docker_cli_image(tag: str, *, docker: str | None = None,
                           busybox: str | None = None) -> str:
    """Build `tag`: this machine's docker CLI (with its shared libraries) and busybox."""
    return _build_binary_image(tag, "docker", _binary("docker", docker, "docker.io"), busybox)


def _build_binary_image(tag: str, name: str, binary: str, busybox: str | None) -> str:
    with tempfile.TemporaryDirectory() as folder:
        context = Path(folder)
        shutil.copy(_binary("busybox", busybox, "busybox-static"), context / "busybox")
        shutil.copy(binary, context / name)
        (context / "lib").mkdir()
        libraries = _shared_libraries(binary)
        for library in libraries:
            target = context / "lib" / library.relative_to("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(library.resolve(), target)
        # No COPY of an empty folder for a static binary: the legacy builder loses that layer.
        copy_libraries = "COPY lib/ /\n" if libraries else ""
        (context / "Dockerfile").write_text(
            _BUSYBOX_BASE + _BINARY_TAIL.format(name=name, libraries=copy_libraries))
        _docker_build(context, tag)
    return tag


def _binary(name: str, given: str | None, package: str) -> str:
    found = given or shutil.which(name)
    if found is None or not Path(found).exists():
        raise RuntimeError(f"{name} is not installed (Debian: apt-get install {package})")
    return found


def _shared_libraries(binary: str) -> list[Path]:
    """Absolute paths of the libraries `ldd` lists (a static binary has none)."""
    listing = subprocess.run(["ldd", binary], capture_output=True, text=True,
                             check=False).stdout
    return [Path(p) for p in re.findall(r"(/\S+)\s+\(0x", listing)]


def _docker_build(context: Path, tag: str) -> None:
    result = subprocess.run(["docker", "build", "-q", "-t", tag, str(context)],
                            capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"docker build of {tag} failed: {result.stderr.strip()[-2000:]}")
