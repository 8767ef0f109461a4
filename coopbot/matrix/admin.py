"""Bot-admin commands on the bot's own Matrix device, run from the shell (`coopbot
cross-signing ...`, `coopbot verify ...`): they use the stored login (session.json) and never
create a device."""

from __future__ import annotations

import time
from pathlib import Path

import nio

from coopbot.config import MatrixConfig
from coopbot.errors import MatrixError
from coopbot.matrix.cross_signing import for_client
from coopbot.matrix.session import load_session
from coopbot.matrix.verification import pending, request_confirmation


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
        signing = for_client(client, store=Path(config.store), password=config.password,
                             recovery_key=config.recovery_key)
        status = await (signing.reset() if action == "reset" else signing.status())
        return f"{config.user_id} device {client.device_id}: {status.describe()}"
    finally:
        await client.close()


def verify(config: MatrixConfig, user: str | None, device: str | None,
           *, wait: float = 15.0) -> tuple[int, str]:
    """`coopbot verify`: list the emoji of verifications waiting for a confirmation, or confirm
    one (`user` and `device`) on the running bot. Returns (exit code, text)."""
    store = Path(config.store)
    waiting = pending(store)
    if user is None or device is None:
        if not waiting:
            return 0, "no verification is waiting for a confirmation"
        lines = []
        for item in waiting:
            emoji = "  ".join(f"{e} {name}" for e, name in item.get("emoji", []))
            lines.append(f"{item.get('user')} {item.get('device')}: {emoji}")
        lines.append("if they match what the member sees: coopbot verify <user> <device>")
        return 0, "\n".join(lines)
    if not any(i.get("user") == user and i.get("device") == device for i in waiting):
        return 1, f"no verification with {user} {device} is waiting for a confirmation"
    path = request_confirmation(store, user, device)
    deadline = time.monotonic() + wait
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if path.exists():
        path.unlink(missing_ok=True)
        return 1, "the bot did not pick up the confirmation: is it running on this store?"
    return 0, f"confirmed: the bot sends its half of the verification with {user} {device}"
