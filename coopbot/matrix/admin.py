"""Bot-admin commands on the bot's own Matrix device, run from the shell (`coopbot
cross-signing ...`): they use the stored login (session.json) and never create a device."""

from __future__ import annotations

from pathlib import Path

import nio

from coopbot.config import MatrixConfig
from coopbot.errors import MatrixError
from coopbot.matrix.cross_signing import CrossSigning, NioKeysApi
from coopbot.matrix.session import load_session


async def _client(config: MatrixConfig) -> nio.AsyncClient:
    store = Path(config.store)
    stored = load_session(store / "session.json")
    if stored is None or stored.user_id != config.user_id:
        raise MatrixError(f"no stored login for {config.user_id} in {store}: start the bot "
                          "once first (it logs in and keeps its device there)")
    client = nio.AsyncClient(config.homeserver, config.user_id)
    client.restore_login(stored.user_id, stored.device_id, stored.access_token)
    whoami = await client.whoami()
    if not isinstance(whoami, nio.WhoamiResponse):
        await client.close()
        raise MatrixError("the stored login was refused by the homeserver",
                          detail=getattr(whoami, "message", ""))
    return client


async def cross_signing(config: MatrixConfig, action: str) -> str:
    """`status`: what the account publishes and whether this store can sign with it.
    `reset`: a new identity replacing the account's (members must verify the bot again)."""
    client = await _client(config)
    try:
        signing = CrossSigning(NioKeysApi(client), user_id=config.user_id,
                               device_id=str(client.device_id), store=Path(config.store),
                               password=config.password)
        status = await (signing.reset() if action == "reset" else signing.status())
        return f"{config.user_id} device {client.device_id}: {status.describe()}"
    finally:
        await client.close()
