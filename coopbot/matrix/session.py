"""The bot's Matrix login (user, device, token) kept across restarts next to the crypto store.

Keeping the device id stable is what keeps end-to-end encryption working: a new device per start
would orphan every session key the bot ever received. The bot never logs out: that would destroy
its device keys.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import nio

from coopbot.config import MatrixConfig
from coopbot.errors import MatrixError
from coopbot.matrix.cross_signing import ensure_cross_signed
from coopbot.matrix.verification import Verifications

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredSession:
    homeserver: str
    user_id: str
    device_id: str
    access_token: str


def load_session(path: Path) -> StoredSession | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return StoredSession(**data)
    except (OSError, ValueError, TypeError):
        return None


def save_session(path: Path, session: StoredSession) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    # The access token is a secret: owner-only from the first byte written.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(asdict(session), handle)
    os.replace(temporary, path)


class MatrixSession:
    """Logs the client in on its stored device, or once with the configured credential."""

    def __init__(self, client: nio.AsyncClient, config: MatrixConfig, session_file: Path, *,
                 verifications: Verifications) -> None:
        self._client = client
        self._config = config
        self._session_file = session_file
        self._verifications = verifications

    async def login(self) -> None:
        """Restore the stored device, or log in once and store it. Never creates a second device
        while the stored one still works."""
        client = self._client
        stored = load_session(self._session_file)
        if stored and stored.user_id == self._config.user_id:
            client.restore_login(stored.user_id, stored.device_id, stored.access_token)
            whoami = await client.whoami()
            if isinstance(whoami, nio.WhoamiResponse):
                log.info("restored Matrix session for device %s", stored.device_id)
                await self._device_ready()
                return
            log.warning("stored Matrix session no longer valid; logging in again")
            client.device_id = stored.device_id
        if self._config.access_token:
            client.access_token = self._config.access_token
            whoami = await client.whoami()
            if not isinstance(whoami, nio.WhoamiResponse) or not whoami.device_id:
                raise MatrixError("the configured access token was refused by the homeserver")
            client.restore_login(self._config.user_id, whoami.device_id, self._config.access_token)
        else:
            response = await client.login(
                password=self._config.password, device_name=self._config.device_name
            )
            if not isinstance(response, nio.LoginResponse):
                raise MatrixError(f"login as {self._config.user_id} failed",
                                  detail=getattr(response, "message", ""))
        save_session(self._session_file, StoredSession(
            homeserver=self._config.homeserver,
            user_id=self._config.user_id,
            device_id=str(client.device_id),
            access_token=str(client.access_token),
        ))
        log.info("logged in as %s on device %s", self._config.user_id, client.device_id)
        await self._device_ready()

    async def _device_ready(self) -> None:
        """Device keys on the homeserver, then the device signed by the account's
        cross-signing identity (created on first start): see cross_signing.py."""
        await self.upload_keys()
        self._verifications.attach()
        if self._config.cross_signing:
            await ensure_cross_signed(self._client, store=Path(self._config.store),
                                      password=self._config.password,
                                      recovery_key=self._config.recovery_key)

    async def upload_keys(self) -> None:
        if self._client.should_upload_keys:
            await self._client.keys_upload()
