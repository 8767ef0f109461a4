"""Recovery keys in Element's format: base58, "EsT..." in groups of four, holding the 32-byte
secret storage key behind a two-byte prefix and a parity byte. A value format only (the config
checks a configured key with it); the secret storage that uses the key is in
coopbot/matrix/secret_storage.py.
"""

from __future__ import annotations

import os

import base58

RECOVERY_PREFIX = bytes([0x8B, 0x01])


class BadRecoveryKey(ValueError):
    """Not a recovery key (wrong characters, length, prefix or parity)."""


def decode_recovery_key(text: str) -> bytes:
    """The 32-byte secret storage key inside a recovery key (spaces ignored)."""
    try:
        raw = base58.b58decode("".join(text.split()))
    except ValueError as error:
        raise BadRecoveryKey("not base58") from error
    if len(raw) != 35 or raw[:2] != RECOVERY_PREFIX:
        raise BadRecoveryKey("wrong length or prefix")
    parity = 0
    for byte in raw:
        parity ^= byte
    if parity != 0:
        raise BadRecoveryKey("parity check failed (a typo?)")
    return raw[2:34]


def encode_recovery_key(key: bytes) -> str:
    raw = RECOVERY_PREFIX + key
    parity = 0
    for byte in raw:
        parity ^= byte
    text = base58.b58encode(raw + bytes([parity])).decode("ascii")
    return " ".join(text[i:i + 4] for i in range(0, len(text), 4))


def new_recovery_key() -> str:
    return encode_recovery_key(os.urandom(32))
