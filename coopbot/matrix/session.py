"""The bot's Matrix login (user, device, token) kept across restarts next to the crypto store.

Keeping the device id stable is what keeps end-to-end encryption working: a new device per start
would orphan every session key the bot ever received.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


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
