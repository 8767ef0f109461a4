"""`coopbot dev` configures backups of server `local` into a restic repository in its work
folder, with a restic image it builds itself: a newcomer's first backup works (real dockerd,
real restic)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from coopbot.backups.password import read_password
from coopbot.backups.restic import Restic
from coopbot.config import BackupConfig
from coopbot.dev import sample
from coopbot.dev.embedded import _local_backups
from coopbot.servers import DockerEngine, ServerSpec
from coopbot.servers.containers import Bind
from tests.harness.swarm import Dockerd, docker

pytestmark = pytest.mark.real


@pytest.fixture
def dev_backups(dockerd: Dockerd, tmp_path: Path) -> dict[str, str]:
    """What `coopbot dev` writes into its config (it builds the restic image)."""
    config: dict[str, str] = _local_backups(tmp_path)["backups"]["local"]
    assert config["repository"] == str(tmp_path.resolve() / "restic")
    assert (tmp_path / config["password_file"]).stat().st_mode & 0o077 == 0
    return config


async def test_the_dev_setup_backs_up_into_its_own_repository(
    dockerd: Dockerd, tmp_path: Path, dev_backups: dict[str, str]
) -> None:
    config = dev_backups
    backup = BackupConfig.model_validate(
        {**config, "password_file": tmp_path / config["password_file"]})
    # The sample recipe is labelled for backups and writes into its volume.
    compose = yaml.safe_load(sample.COMPOSE.format(image="i", version="1", recipe="hello"))
    assert "backupbot.backup=true" in compose["services"]["app"]["deploy"]["labels"]
    assert "/data/greeting.txt" in " ".join(compose["services"]["app"]["command"])

    volume = f"devtest-{tmp_path.name[-8:]}"
    docker("volume", "create", volume)
    docker("run", "--rm", "-v", f"{volume}:/data", "--entrypoint", "sh", sample.RESTIC_IMAGE,
           "-c", "echo hello > /data/greeting.txt")
    engine = DockerEngine(ServerSpec(name="local", socket=dockerd.socket))
    try:
        restic = Restic("local", engine, backup, read_password)
        await restic.ensure_repository()
        made = await restic.backup_and_list([Bind(volume, "/backup/data")], ["/backup/data"],
                                            ["coopbot", "app=hello.localhost"])
        assert any(n.path == "/backup/data/greeting.txt" and n.size == 6 for n in made.nodes)
        assert made.node == await engine.helpers.own_node()
        assert [s.id for s in await restic.snapshots(["app=hello.localhost"])] != []
    finally:
        await engine.close()
        docker("volume", "rm", "-f", volume)
