"""`coopbot dev`: the embedded default. A throwaway Synapse on 127.0.0.1, a bot account, an admin
account and an ops room, all kept in one work folder so that re-running picks up where it left off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import nio
import yaml

from coopbot.app import run_bot
from coopbot.config import load_config
from coopbot.errors import MatrixError

log = logging.getLogger(__name__)

BOT = "coopbot"
ADMIN = "admin"


def _state(workdir: Path) -> dict[str, Any]:
    path = workdir / "dev.json"
    if path.exists():
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    data = {
        "bot_password": secrets.token_urlsafe(18),
        "admin_password": secrets.token_urlsafe(12),
        "room_id": None,
    }
    _save_state(workdir, data)
    return data


def _save_state(workdir: Path, data: dict[str, Any]) -> None:
    path = workdir / "dev.json"
    path.write_text(json.dumps(data, indent=2))
    path.chmod(0o600)


async def _ensure_room(base_url: str, admin_id: str, password: str, bot_id: str,
                       workdir: Path) -> str:
    client = nio.AsyncClient(base_url, admin_id, store_path=None)
    try:
        login = await client.login(password=password, device_name="coopbot-dev setup")
        if not isinstance(login, nio.LoginResponse):
            raise MatrixError("could not log in as the dev admin", detail=str(login))
        created = await client.room_create(
            name="coopbot ops", topic="Talk to coopbot here: try !help", invite=[bot_id],
        )
        if not isinstance(created, nio.RoomCreateResponse):
            raise MatrixError("could not create the dev ops room", detail=str(created))
        return str(created.room_id)
    finally:
        # This throwaway setup device holds no keys worth keeping: logging it out is fine.
        await client.logout()
        await client.close()


def _swarm_ready(init_swarm: bool) -> bool:
    """Whether the local engine runs a swarm; initialise one only when allowed (flag or yes)."""
    try:
        state = subprocess.run(
            ["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"],
            capture_output=True, text=True, timeout=15, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        print("No local Docker engine answers: the bot runs without servers "
              "(scripts/try starts one).", flush=True)
        return False
    if state == "active":
        return True
    if not init_swarm:
        if not sys.stdin.isatty():
            print("The local Docker engine is not a swarm; run `coopbot dev --swarm` to make it "
                  "a single-node swarm and get a sample app to deploy.", flush=True)
            return False
        answer = input("Make the local Docker engine a single-node swarm for coopbot? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return False
    subprocess.run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
                   capture_output=True, timeout=60, check=True)
    print("Initialised a single-node swarm on the local Docker engine.", flush=True)
    return True


def _sample_config(workdir: Path, room_id: str) -> dict[str, Any]:
    """The local engine as server `local`, the sample recipe and its app `hello.localhost`."""
    from coopbot.dev import sample

    sample.build_images()
    bare = sample.create_recipe(workdir / "recipes" / f"{sample.RECIPE}.git")
    sample.write_app(workdir / "abra", "local")
    return {
        "servers": {"local": {"kind": "local", "check_images": True}},
        "apps_dir": "abra",
        "recipes": {"overrides": {sample.RECIPE: str(bare)}, "cache": "state/recipes"},
        "room_servers": ["local"],
        **_local_backups(workdir),
    }


def _local_backups(workdir: Path) -> dict[str, Any]:
    """Backups of server `local` into a restic repository in the work folder, run by a restic
    image built here (no registry): so a newcomer's first `!backup` works."""
    from coopbot.dev import sample
    from coopbot.dev.local_images import build_restic_image

    try:
        build_restic_image(sample.RESTIC_IMAGE)
    except RuntimeError as error:
        print(f"No backups in this dev setup: {error}", flush=True)
        return {}
    password = workdir / "restic-password"
    if not password.exists():
        password.write_text(secrets.token_urlsafe(24) + "\n")
        password.chmod(0o600)
    # Absolute: restic runs in a helper container that mounts the path on the local node.
    repository = (workdir / "restic").resolve()
    return {"backups": {"local": {"repository": str(repository),
                                  "password_file": "restic-password",
                                  "helper_image": sample.RESTIC_IMAGE}}}


def _write_config(workdir: Path, base_url: str, bot_id: str, bot_password: str, admin_id: str,
                  room_id: str, extra: dict[str, Any]) -> Path:
    room_servers = extra.pop("room_servers", [])
    config = {
        "matrix": {
            "homeserver": base_url,
            "user_id": bot_id,
            "password_file": "bot-password",
            "device_name": "coopbot (dev)",
            "store": "state/matrix",
        },
        "database": "state/coopbot.db",
        "admins": [admin_id],
        "invites": {"users": [admin_id]},
        "rooms": {room_id: {"notifications": True, "servers": room_servers}},
        **extra,
    }
    password_file = workdir / "bot-password"
    password_file.write_text(bot_password)
    password_file.chmod(0o600)
    path = workdir / "config.yaml"
    path.write_text("# Written by `coopbot dev`; edit freely, it is reused on the next run.\n"
                    + yaml.safe_dump(config, sort_keys=False))
    return path


def _prepare(workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o700)
    return _state(workdir)


async def run_dev(workdir: Path, *, port: int | None = None, init_swarm: bool = False) -> None:
    from coopbot.dev.homeserver import LocalSynapse

    state = _prepare(workdir)
    synapse = LocalSynapse(workdir / "synapse", port=port)
    synapse.ensure_config()
    print(f"Starting a local homeserver in {workdir / 'synapse'} ...", flush=True)
    await asyncio.to_thread(synapse.start)
    try:
        bot_id = await asyncio.to_thread(synapse.register, BOT, state["bot_password"], False)
        admin_id = await asyncio.to_thread(
            synapse.register, ADMIN, state["admin_password"], True
        )
        if not state.get("room_id"):
            state["room_id"] = await _ensure_room(
                synapse.base_url, admin_id, state["admin_password"], bot_id, workdir
            )
            _save_state(workdir, state)
        config_path = workdir / "config.yaml"
        if not await asyncio.to_thread(config_path.exists):
            extra: dict[str, Any] = {}
            if await asyncio.to_thread(_swarm_ready, init_swarm):
                print("Preparing the sample app (building two small local images)...", flush=True)
                extra = await asyncio.to_thread(_sample_config, workdir, state["room_id"])
            _write_config(workdir, synapse.base_url, bot_id, state["bot_password"], admin_id,
                          state["room_id"], extra)
        print(
            "\n".join([
                "",
                "coopbot dev is running.",
                f"  homeserver: {synapse.base_url}",
                f"  log in as:  {admin_id}  password: {state['admin_password']}",
                f"  ops room:   {state['room_id']}",
                f"  config:     {config_path}",
                "Open any Matrix client on that homeserver, join the ops room and type !help"
                " (with a swarm: `!apps`, then `!deploy hello.localhost`).",
                "Stop with Ctrl-C; run `coopbot dev` again to continue where you left off.",
                "",
            ]),
            flush=True,
        )
        await run_bot(load_config(config_path))
    finally:
        await asyncio.to_thread(synapse.stop)
