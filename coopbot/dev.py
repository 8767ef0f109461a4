"""`coopbot dev`: the embedded default. A throwaway Synapse on 127.0.0.1, a bot account, an admin
account and an ops room, all kept in one work folder so that re-running picks up where it left off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
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


def _write_config(workdir: Path, base_url: str, bot_id: str, bot_password: str, admin_id: str,
                  room_id: str) -> Path:
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
        "rooms": {room_id: {"notifications": True}},
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


async def run_dev(workdir: Path, *, port: int | None = None) -> None:
    from coopbot.homeserver import LocalSynapse

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
            _write_config(workdir, synapse.base_url, bot_id, state["bot_password"], admin_id,
                          state["room_id"])
        print(
            "\n".join([
                "",
                "coopbot dev is running.",
                f"  homeserver: {synapse.base_url}",
                f"  log in as:  {admin_id}  password: {state['admin_password']}",
                f"  ops room:   {state['room_id']}",
                f"  config:     {config_path}",
                "Open any Matrix client on that homeserver, join the ops room and type !help.",
                "Stop with Ctrl-C; run `coopbot dev` again to continue where you left off.",
                "",
            ]),
            flush=True,
        )
        await run_bot(load_config(config_path))
    finally:
        await asyncio.to_thread(synapse.stop)
