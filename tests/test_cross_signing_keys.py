"""Cross-signing keys and signatures, checked against an independent implementation
(matrix.org's signedjson, as Synapse uses it) and against tampering."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import signedjson.key
import signedjson.sign
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coopbot.errors import MatrixError
from coopbot.matrix import cross_signing as xs

USER = "@bot:example.org"


def _nacl_verify_key(private: Ed25519PrivateKey) -> signedjson.key.VerifyKey:
    return signedjson.key.decode_verify_key_bytes(
        f"ed25519:{xs.public_key_of(private)}", private.public_key().public_bytes_raw())


def test_signatures_are_those_signedjson_accepts_and_cover_everything_but_unsigned() -> None:
    private = Ed25519PrivateKey.generate()
    device = {"user_id": USER, "device_id": "DEV", "algorithms": ["m.olm.v1"],
              "keys": {"ed25519:DEV": "x"}, "unsigned": {"device_display_name": "bot"},
              "signatures": {USER: {"ed25519:DEV": "device-self-signature"}}}
    signed = xs.sign(device, USER, private)
    # The device's own signature is kept; ours is added.
    assert signed["signatures"][USER]["ed25519:DEV"] == "device-self-signature"
    signedjson.sign.verify_signed_json(signed, USER, _nacl_verify_key(private))
    assert xs.verify(signed, USER, xs.public_key_of(private))
    assert xs.verify({**signed, "unsigned": {"other": 1}}, USER, xs.public_key_of(private))
    tampered = {**signed, "keys": {"ed25519:DEV": "y"}}
    assert not xs.verify(tampered, USER, xs.public_key_of(private))
    assert not xs.verify(signed, "@other:example.org", xs.public_key_of(private))
    assert not xs.verify(signed, USER, xs.public_key_of(Ed25519PrivateKey.generate()))


@pytest.mark.parametrize("hostile", [None, [], "x", {"signatures": "x"},
                                     {"signatures": {USER: {"ed25519:k": 5}}},
                                     {"signatures": {USER: {"ed25519:k": "!!notbase64"}}}])
def test_verify_never_raises_on_hostile_json(hostile: object) -> None:
    assert not xs.verify(hostile, USER, "k")
    assert not xs.verify({"signatures": {USER: {"ed25519:k": "AAAA"}}}, USER, "not a key")


def test_published_keys_are_signed_by_the_master_key() -> None:
    keys = xs.CrossSigningKeys.generate(USER)
    published = keys.published()
    assert published["master_key"]["usage"] == ["master"]
    assert xs.single_key(published["master_key"]) == keys.master_public
    for name, usage in (("self_signing_key", "self_signing"), ("user_signing_key", "user_signing")):
        assert published[name]["usage"] == [usage]
        signedjson.sign.verify_signed_json(published[name], USER, _nacl_verify_key(keys.master))
    assert xs.single_key(published["self_signing_key"]) == keys.self_signing_public


def test_keys_file_is_owner_only_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / xs.KEYS_FILE
    assert xs.load_keys(path, USER) is None
    keys = xs.CrossSigningKeys.generate(USER)
    xs.save_keys(path, keys)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = xs.load_keys(path, USER)
    assert loaded is not None
    assert loaded.master_public == keys.master_public
    assert loaded.self_signing_public == keys.self_signing_public


@pytest.mark.parametrize("content", ["", "{", '{"version": 1}', '{"version": 2, "user_id": "x"}'])
def test_a_damaged_keys_file_is_an_error_never_new_keys(tmp_path: Path, content: str) -> None:
    path = tmp_path / xs.KEYS_FILE
    path.write_text(content)
    with pytest.raises(MatrixError):
        xs.load_keys(path, USER)


def test_a_keys_file_of_another_account_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / xs.KEYS_FILE
    xs.save_keys(path, xs.CrossSigningKeys.generate("@someone-else:example.org"))
    with pytest.raises(MatrixError, match="another account"):
        xs.load_keys(path, USER)
