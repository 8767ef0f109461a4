"""Cross-signing for the bot's account (Matrix client-server spec, "Cross-signing").

Clients that "exclude insecure devices" (Element's direction) share room keys only with devices
their owner has signed. nio has no cross-signing, so this module gives the bot an identity on
top of it: three ed25519 keys (master, self-signing, user-signing), published with
`POST /keys/device_signing/upload`, and the bot's device key signed by the self-signing key,
published with `POST /keys/signatures/upload`. Signatures are over canonical JSON
(`canonicaljson`), made with `cryptography`'s ed25519: no hand-written primitives.

The private keys live in `<store>/cross_signing.json` (mode 0600) next to nio's crypto store
and must be backed up with it. A device that finds an identity on the account whose keys it
does not hold never replaces it: it logs what to do and stays unsigned until an admin restores
the file or runs `coopbot cross-signing reset`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from canonicaljson import encode_canonical_json
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from coopbot.errors import MatrixError

log = logging.getLogger(__name__)

KEYS_FILE = "cross_signing.json"
KEYS_VERSION = 1
DOCS = "docs/security.md#cross-signing"


# ---- encoding and signatures ------------------------------------------------------------------

def unpadded_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def from_unpadded_b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def public_key_of(private: Ed25519PrivateKey) -> str:
    """The key as Matrix writes it: unpadded base64 of the 32 raw bytes (also its key id)."""
    return unpadded_b64(private.public_key().public_bytes_raw())


def signable(obj: Mapping[str, Any]) -> bytes:
    """What a Matrix signature covers: canonical JSON without `signatures` and `unsigned`."""
    return bytes(encode_canonical_json(
        {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}))


def sign(obj: Mapping[str, Any], user_id: str, private: Ed25519PrivateKey) -> dict[str, Any]:
    """A copy of `obj` with `user_id`'s signature by `private` added to its other signatures."""
    signature = unpadded_b64(private.sign(signable(obj)))
    signed = dict(obj)
    signatures = {u: dict(s) for u, s in dict(obj.get("signatures") or {}).items()}
    signatures.setdefault(user_id, {})[f"ed25519:{public_key_of(private)}"] = signature
    signed["signatures"] = signatures
    return signed


def verify(obj: object, user_id: str, public_key: str, key_id: str | None = None) -> bool:
    """Whether `obj` carries a valid signature by `user_id`'s ed25519 key `public_key`
    (listed under `ed25519:<key_id>`, by default the public key itself)."""
    if not isinstance(obj, Mapping):
        return False
    signatures = obj.get("signatures")
    by_user = signatures.get(user_id) if isinstance(signatures, Mapping) else None
    signature = (by_user.get(f"ed25519:{key_id or public_key}")
                 if isinstance(by_user, Mapping) else None)
    if not isinstance(signature, str):
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(from_unpadded_b64(public_key))
        key.verify(from_unpadded_b64(signature), signable(obj))
    except (ValueError, InvalidSignature, TypeError):
        return False
    return True


def single_key(cross_signing_key: object) -> str | None:
    """The public key of a published cross-signing key object (`keys` holds exactly one)."""
    if not isinstance(cross_signing_key, Mapping):
        return None
    keys = cross_signing_key.get("keys")
    if not isinstance(keys, Mapping) or len(keys) != 1:
        return None
    value = next(iter(keys.values()))
    return value if isinstance(value, str) else None


# ---- the private keys ---------------------------------------------------------------------

@dataclass(frozen=True)
class CrossSigningKeys:
    user_id: str
    master: Ed25519PrivateKey
    self_signing: Ed25519PrivateKey
    user_signing: Ed25519PrivateKey

    @classmethod
    def generate(cls, user_id: str) -> CrossSigningKeys:
        return cls(user_id, Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(),
                   Ed25519PrivateKey.generate())

    @property
    def master_public(self) -> str:
        return public_key_of(self.master)

    @property
    def self_signing_public(self) -> str:
        return public_key_of(self.self_signing)

    def seeds(self) -> dict[str, str]:
        """The private keys as Matrix secrets: unpadded base64 of each 32-byte seed."""
        return {"master": _seed(self.master), "self_signing": _seed(self.self_signing),
                "user_signing": _seed(self.user_signing)}

    @classmethod
    def from_seeds(cls, user_id: str, seeds: Mapping[str, str]) -> CrossSigningKeys:
        return cls(user_id, *(Ed25519PrivateKey.from_private_bytes(from_unpadded_b64(seeds[role]))
                              for role in ("master", "self_signing", "user_signing")))

    def published(self) -> dict[str, dict[str, Any]]:
        """The three public key objects as `POST /keys/device_signing/upload` takes them; the
        subkeys are signed by the master key."""

        def key_object(private: Ed25519PrivateKey, usage: str) -> dict[str, Any]:
            public = public_key_of(private)
            return {"user_id": self.user_id, "usage": [usage],
                    "keys": {f"ed25519:{public}": public}}

        return {
            "master_key": key_object(self.master, "master"),
            "self_signing_key": sign(key_object(self.self_signing, "self_signing"),
                                     self.user_id, self.master),
            "user_signing_key": sign(key_object(self.user_signing, "user_signing"),
                                     self.user_id, self.master),
        }


def _seed(private: Ed25519PrivateKey) -> str:
    return unpadded_b64(private.private_bytes_raw())


def save_keys(path: Path, keys: CrossSigningKeys) -> None:
    """Write the private keys, owner-only from the first byte, replacing the file atomically."""
    data = {"version": KEYS_VERSION, "user_id": keys.user_id, **keys.seeds()}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def load_keys(path: Path, user_id: str) -> CrossSigningKeys | None:
    """The stored keys; None if there is no file. A damaged file, or one for another account,
    is an error: silently making new keys would replace the account's identity."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise MatrixError("the cross-signing keys file cannot be read",
                          detail=f"{path}: {error.strerror}") from error
    try:
        data = json.loads(text)
        if data["version"] != KEYS_VERSION or data["user_id"] != user_id:
            raise ValueError("another version or account")
        return CrossSigningKeys.from_seeds(user_id, data)
    except (ValueError, KeyError, TypeError) as error:
        raise MatrixError(f"the cross-signing keys file {path} is damaged or belongs to "
                          "another account", detail=repr(error)) from error


# ---- talking to the homeserver -------------------------------------------------------------

class SecretStore(Protocol):
    """Where the private keys are also kept, encrypted (secret_storage.SecretStorage)."""

    async def store(self, seeds: Mapping[str, str]) -> None: ...

    async def load(self) -> dict[str, str] | None: ...


class KeysApi(Protocol):
    """The few client-server endpoints this needs: (HTTP status, JSON body)."""

    async def request(
        self, method: str, path: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]: ...


@dataclass(frozen=True)
class Published:
    """What the homeserver holds for the bot's account and device."""

    master: str | None
    self_signing: str | None
    device_keys: dict[str, Any] | None

    def device_signed_by(self, user_id: str, self_signing: str) -> bool:
        return self.device_keys is not None and verify(self.device_keys, user_id, self_signing)


@dataclass(frozen=True)
class Status:
    """`coopbot cross-signing status` and the start-up log line."""

    master: str | None  # the account's published master key (what members see)
    holds_keys: bool  # this store holds the private keys of that identity
    device_signed: bool

    def describe(self) -> str:
        if self.master is None:
            return "the account has no cross-signing identity"
        fingerprint = " ".join(self.master[i:i + 4] for i in range(0, len(self.master), 4))
        held = ("this store holds its private keys" if self.holds_keys
                else "this store does NOT hold its private keys")
        signed = "signed" if self.device_signed else "NOT signed"
        return f"master key {fingerprint}; {held}; this device is {signed}"


class CrossSigning:
    """Makes sure the account has a cross-signing identity and the device is signed by it."""

    def __init__(self, api: KeysApi, *, user_id: str, device_id: str, store: Path,
                 password: str | None, secrets: SecretStore | None = None) -> None:
        self._api = api
        self._secrets = secrets
        self._user_id = user_id
        self._device_id = device_id
        self._path = store / KEYS_FILE
        self._password = password

    async def published(self) -> Published:
        status, body = await self._api.request(
            "POST", "/_matrix/client/v3/keys/query", {"device_keys": {self._user_id: []}})
        if status != 200:
            raise MatrixError("could not read the account's keys", detail=f"{status} {body}")

        def mine(field: str) -> object:
            section = body.get(field)
            return section.get(self._user_id) if isinstance(section, Mapping) else None

        devices = mine("device_keys")
        device = devices.get(self._device_id) if isinstance(devices, Mapping) else None
        return Published(
            master=single_key(mine("master_keys")),
            self_signing=single_key(mine("self_signing_keys")),
            device_keys=dict(device) if isinstance(device, Mapping) else None,
        )

    async def status(self) -> Status:
        published = await self.published()
        keys = load_keys(self._path, self._user_id)
        holds = (keys is not None and published.master == keys.master_public
                 and published.self_signing == keys.self_signing_public)
        signed = (published.self_signing is not None
                  and published.device_signed_by(self._user_id, published.self_signing))
        return Status(published.master, holds, signed)

    async def ensure(self) -> Status:
        """At start-up: create the identity if the account has none, then sign this device
        if it is not signed yet. Never replaces an identity it does not hold the keys of."""
        published = await self.published()
        keys = load_keys(self._path, self._user_id)
        if published.master is not None and (keys is None
                                             or published.master != keys.master_public):
            keys = await self._recover(published) or keys
        if published.master is None:
            if keys is None:
                keys = CrossSigningKeys.generate(self._user_id)
                # Stored before publishing: a crash in between must not lose the keys of an
                # identity the homeserver then holds.
                save_keys(self._path, keys)
            await self._publish_identity(keys)
            log.info("created the account's cross-signing identity (master key %s)",
                     keys.master_public)
            await self._keep_in_secret_storage(keys)
            published = await self.published()
        elif keys is None or published.master != keys.master_public:
            what = ("this store has no cross-signing keys" if keys is None
                    else "the keys in this store are not the account's")
            log.error("the account %s has a cross-signing identity (master key %s) but %s: "
                      "this device stays unsigned, and members whose clients exclude "
                      "insecure devices cannot reach the bot. Restore %s from a backup, give "
                      "the account's recovery key (matrix.recovery_key_file), or run "
                      "`coopbot cross-signing reset` (see %s)",
                      self._user_id, published.master, what, self._path.name, DOCS)
            return await self.status()
        elif published.self_signing != keys.self_signing_public:
            # Our master key but another self-signing key: publish ours again.
            await self._publish_identity(keys)
            published = await self.published()
        else:
            await self._keep_in_secret_storage(keys, only_if_missing=True)
        if not published.device_signed_by(self._user_id, keys.self_signing_public):
            await self._sign_device(keys, published)
            log.info("signed device %s with the account's self-signing key", self._device_id)
        return await self.status()

    async def reset(self) -> Status:
        """A new identity replacing whatever the account had (the `coopbot cross-signing
        reset` command): members who verified the bot must verify it again."""
        keys = CrossSigningKeys.generate(self._user_id)
        previous = self._path.with_name(KEYS_FILE + ".previous")
        if self._path.exists():
            os.replace(self._path, previous)
        save_keys(self._path, keys)
        try:
            await self._publish_identity(keys)
        except BaseException:
            # Not published: the keys the account still has stay the stored ones.
            if previous.exists():
                os.replace(previous, self._path)
            else:
                self._path.unlink(missing_ok=True)
            raise
        # The replaced identity's private keys are of no use any more: none left lying around.
        previous.unlink(missing_ok=True)
        await self._keep_in_secret_storage(keys)
        await self._sign_device(keys, await self.published())
        return await self.status()

    async def _recover(self, published: Published) -> CrossSigningKeys | None:
        """The account's keys from its secret storage (a new store with a recovery key)."""
        if self._secrets is None:
            return None
        try:
            seeds = await self._secrets.load()
        except MatrixError as error:
            log.error("cross-signing keys could not be read from secret storage: %s", error)
            return None
        if seeds is None:
            log.warning("the account's secret storage holds no cross-signing keys")
            return None
        try:
            keys = CrossSigningKeys.from_seeds(self._user_id, seeds)
        except (ValueError, KeyError) as error:
            log.error("the cross-signing keys in secret storage are malformed: %r", error)
            return None
        if (keys.master_public, keys.self_signing_public) != (published.master,
                                                              published.self_signing):
            log.error("the cross-signing keys in secret storage are not the account's "
                      "published ones; not using them")
            return None
        save_keys(self._path, keys)
        log.info("restored the account's cross-signing keys from its secret storage")
        return keys

    async def _keep_in_secret_storage(self, keys: CrossSigningKeys, *,
                                      only_if_missing: bool = False) -> None:
        if self._secrets is None:
            return
        try:
            if only_if_missing and await self._secrets.load() == keys.seeds():
                return
            await self._secrets.store(keys.seeds())
        except MatrixError as error:
            log.error("cross-signing keys could not be kept in secret storage: %s (%s)",
                      error, error.detail)
            return
        log.info("the cross-signing keys are kept in the account's secret storage")

    async def _publish_identity(self, keys: CrossSigningKeys) -> None:
        """`POST /keys/device_signing/upload`, with password auth when the homeserver asks
        (it does unless this is the account's first identity and it allows that)."""
        path = "/_matrix/client/v3/keys/device_signing/upload"
        body: dict[str, Any] = keys.published()
        status, answer = await self._api.request("POST", path, body)
        if status == 401 and "flows" in answer:
            if self._password is None:
                raise MatrixError(
                    "the homeserver wants the bot's password to publish its cross-signing "
                    "keys; configure matrix.password or matrix.password_file",
                    detail=str(answer.get("flows")))
            body["auth"] = {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": self._user_id},
                "password": self._password,
                "session": answer.get("session"),
            }
            status, answer = await self._api.request("POST", path, body)
        if status != 200:
            raise MatrixError("the homeserver refused the bot's cross-signing keys",
                              detail=f"{status} {answer.get('errcode')} {answer.get('error')}")

    async def _sign_device(self, keys: CrossSigningKeys, published: Published) -> None:
        if published.device_keys is None:
            raise MatrixError("the homeserver does not know this device's keys yet",
                              detail=self._device_id)
        signed = sign(published.device_keys, self._user_id, keys.self_signing)
        status, answer = await self._api.request(
            "POST", "/_matrix/client/v3/keys/signatures/upload",
            {self._user_id: {self._device_id: signed}})
        failures = answer.get("failures")
        if status != 200 or failures:
            raise MatrixError("the homeserver refused the signature of the bot's device",
                              detail=f"{status} {failures or answer}")


class NioKeysApi:
    """KeysApi over a logged-in nio client's HTTP session (its homeserver, TLS and timeouts)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def request(
        self, method: str, path: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        response = await self._client.send(
            method, path, json.dumps(body),
            headers={"Authorization": f"Bearer {self._client.access_token}",
                     "Content-Type": "application/json"})
        try:
            answer = await response.json(content_type=None)
        except ValueError:
            answer = None
        return response.status, answer if isinstance(answer, dict) else {}


def for_client(client: Any, *, store: Path, password: str | None,
               recovery_key: str | None) -> CrossSigning:
    """CrossSigning for a logged-in nio client, with secret storage under `recovery_key`."""
    from coopbot.matrix.secret_storage import SecretStorage
    from coopbot.recovery_key import decode_recovery_key

    api = NioKeysApi(client)
    secrets = (SecretStorage(api, str(client.user_id), decode_recovery_key(recovery_key))
               if recovery_key else None)
    return CrossSigning(api, user_id=str(client.user_id), device_id=str(client.device_id),
                        store=store, password=password, secrets=secrets)


async def ensure_cross_signed(client: Any, *, store: Path, password: str | None,
                              recovery_key: str | None = None) -> None:
    """The start-up step: the gateway calls it once after login. A failure is logged, never
    fatal: members whose clients share keys with unsigned devices can still use the bot."""
    signing = for_client(client, store=store, password=password, recovery_key=recovery_key)
    try:
        status = await signing.ensure()
    except MatrixError as error:
        log.error("cross-signing the bot's device failed: %s (%s); see %s",
                  error, error.detail, DOCS)
        return
    except (TimeoutError, OSError) as error:
        log.error("cross-signing the bot's device failed: %r; see %s", error, DOCS)
        return
    log.info("cross-signing: %s", status.describe())
