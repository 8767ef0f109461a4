"""The account's secret storage (SSSS, Matrix client-server spec "Secret storage"), for one use:
keeping the bot's private cross-signing keys on the homeserver, encrypted under a recovery key
from the config, so that a new device of the bot (a lost store) can sign itself with the
account's identity instead of leaving it unsigned.

The format is Element's: a recovery key (base58, "EsT..." in groups of four) holds the 32-byte
secret storage key; `m.secret_storage.v1.aes-hmac-sha2` encrypts each secret with AES-CTR and
authenticates it with HMAC-SHA-256, keys derived by HKDF-SHA-256 (all from `cryptography`).
The recovery key itself never leaves the machine and is never logged.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import sha256
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from coopbot.errors import MatrixError
from coopbot.matrix.cross_signing import KeysApi

ALGORITHM = "m.secret_storage.v1.aes-hmac-sha2"
DEFAULT_KEY = "m.secret_storage.default_key"
SECRETS = {"master": "m.cross_signing.master", "self_signing": "m.cross_signing.self_signing",
           "user_signing": "m.cross_signing.user_signing"}


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _keys(key: bytes, name: str) -> tuple[bytes, bytes]:
    derived = HKDF(algorithm=hashes.SHA256(), length=64, salt=bytes(32),
                   info=name.encode()).derive(key)
    return derived[:32], derived[32:]


def _ctr(aes_key: bytes, iv: bytes, data: bytes) -> bytes:
    cipher = Cipher(algorithms.AES(aes_key), modes.CTR(iv)).encryptor()
    return cipher.update(data) + cipher.finalize()


def encrypt(key: bytes, name: str, plaintext: str, iv: bytes | None = None) -> dict[str, str]:
    aes_key, mac_key = _keys(key, name)
    counter = bytearray(iv if iv is not None else os.urandom(16))
    counter[8] &= 0x7F  # bit 63 cleared: counter implementations differ on overflow
    ciphertext = _ctr(aes_key, bytes(counter), plaintext.encode())
    mac = hmac.new(mac_key, ciphertext, sha256).digest()
    return {"iv": base64.b64encode(bytes(counter)).decode(),
            "ciphertext": base64.b64encode(ciphertext).decode(),
            "mac": base64.b64encode(mac).decode()}


def decrypt(key: bytes, name: str, encrypted: Mapping[str, Any]) -> str:
    try:
        iv, ciphertext, mac = (_b64decode(str(encrypted[k])) for k in ("iv", "ciphertext", "mac"))
    except (KeyError, ValueError) as error:
        raise MatrixError(f"the secret {name} in secret storage is malformed") from error
    aes_key, mac_key = _keys(key, name)
    if not hmac.compare_digest(hmac.new(mac_key, ciphertext, sha256).digest(), mac):
        raise MatrixError(f"the secret {name} does not open with the recovery key")
    return _ctr(aes_key, iv, ciphertext).decode()


def key_matches(key: bytes, description: Mapping[str, Any]) -> bool:
    """Whether `key` is the one a key description (its iv and mac of 32 zero bytes) is for."""
    iv, mac = description.get("iv"), description.get("mac")
    if description.get("algorithm") != ALGORITHM or not isinstance(iv, str) \
            or not isinstance(mac, str):
        return False
    try:
        expected = encrypt(key, "", "\0" * 32, _b64decode(iv))["mac"]
    except ValueError:
        return False
    return hmac.compare_digest(_b64decode(expected), _b64decode(mac))


@dataclass(frozen=True)
class SecretStorage:
    """The account's secret storage, opened with a recovery key."""

    api: KeysApi
    user_id: str
    key: bytes

    def _path(self, kind: str) -> str:
        return (f"/_matrix/client/v3/user/{quote(self.user_id, safe='')}/account_data/"
                f"{quote(kind, safe='')}")

    async def _get(self, kind: str) -> dict[str, Any] | None:
        status, body = await self.api.request("GET", self._path(kind), {})
        if status == 404:
            return None
        if status != 200:
            raise MatrixError("could not read the account's secret storage",
                              detail=f"{status} {body.get('errcode')}")
        return body

    async def _put(self, kind: str, content: dict[str, Any]) -> None:
        status, body = await self.api.request("PUT", self._path(kind), content)
        if status != 200:
            raise MatrixError("could not write the account's secret storage",
                              detail=f"{status} {body.get('errcode')}")

    async def key_id(self, *, create: bool) -> str | None:
        """The id of the account's default secret storage key if the recovery key opens it;
        with `create`, a new default key for it when the account has none."""
        default = await self._get(DEFAULT_KEY)
        key_id = default.get("key") if default else None
        if isinstance(key_id, str):
            description = await self._get(f"m.secret_storage.key.{key_id}")
            if description is None or not key_matches(self.key, description):
                raise MatrixError("the configured recovery key does not open the account's "
                                  "secret storage (it has another key)")
            return key_id
        if not create:
            return None
        key_id = secrets.token_hex(16)
        check = encrypt(self.key, "", "\0" * 32)
        await self._put(f"m.secret_storage.key.{key_id}", {
            "name": "coopbot", "algorithm": ALGORITHM, "iv": check["iv"], "mac": check["mac"]})
        await self._put(DEFAULT_KEY, {"key": key_id})
        return key_id

    async def store(self, seeds: Mapping[str, str]) -> None:
        """Store the cross-signing private keys (unpadded base64 seeds, by role)."""
        key_id = await self.key_id(create=True)
        assert key_id is not None
        for role, name in SECRETS.items():
            await self._put(name, {"encrypted": {key_id: encrypt(self.key, name, seeds[role])}})

    async def load(self) -> dict[str, str] | None:
        """The cross-signing private key seeds by role, or None if not all are stored."""
        key_id = await self.key_id(create=False)
        if key_id is None:
            return None
        seeds: dict[str, str] = {}
        for role, name in SECRETS.items():
            content = await self._get(name)
            encrypted = content.get("encrypted") if content else None
            entry = encrypted.get(key_id) if isinstance(encrypted, Mapping) else None
            if not isinstance(entry, Mapping):
                return None
            seeds[role] = decrypt(self.key, name, entry)
        return seeds
