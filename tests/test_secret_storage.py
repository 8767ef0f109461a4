"""Secret storage and recovery keys, checked against matrix-js-sdk's own implementation (what
Element runs), both ways: what coopbot writes, js-sdk reads, and the other way round."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from coopbot import recovery_key as rk
from coopbot.cli import main
from coopbot.errors import MatrixError
from coopbot.matrix import secret_storage as ss
from tests.harness.jsmember import JSCLIENT, _check_installed

JS = """
import { decodeRecoveryKey, encodeRecoveryKey } from "matrix-js-sdk/lib/crypto-api/recovery-key.js";
import decrypt from "matrix-js-sdk/lib/utils/decryptAESSecretStorageItem.js";
import encrypt from "matrix-js-sdk/lib/utils/encryptAESSecretStorageItem.js";
import { calculateKeyCheck } from "matrix-js-sdk/lib/secret-storage.js";
const input = JSON.parse(await new Promise((resolve) => {
  let text = ""; process.stdin.on("data", (c) => text += c); process.stdin.on("end", () => resolve(text));
}));
const key = Uint8Array.from(Buffer.from(input.key, "base64"));
const out = {
  decoded: Buffer.from(decodeRecoveryKey(input.recovery_key)).toString("base64"),
  encoded: encodeRecoveryKey(key),
  plaintext: await decrypt(input.encrypted, key, input.name),
  ours_for_them: await encrypt(input.plaintext, key, input.name),
  check: await calculateKeyCheck(key, input.check_iv),
};
process.stdout.write(JSON.stringify(out));
"""


def _js(payload: dict[str, object]) -> dict[str, object]:
    node = _check_installed()
    result = subprocess.run([node, "--input-type=module", "-e", JS], cwd=JSCLIENT,
                            input=json.dumps(payload), capture_output=True, text=True,
                            timeout=60, check=True)
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def test_recovery_keys_and_secrets_are_what_js_sdk_reads_and_writes() -> None:
    key = os.urandom(32)
    recovery_key = rk.encode_recovery_key(key)
    name = "m.cross_signing.master"
    plaintext = base64.b64encode(os.urandom(32)).decode().rstrip("=")
    check = ss.encrypt(key, "", "\0" * 32)
    answer = _js({"key": base64.b64encode(key).decode(), "recovery_key": recovery_key,
                  "name": name, "encrypted": ss.encrypt(key, name, plaintext),
                  "plaintext": plaintext, "check_iv": check["iv"]})
    assert base64.b64decode(str(answer["decoded"])) == key
    assert rk.decode_recovery_key(str(answer["encoded"])) == key
    assert answer["plaintext"] == plaintext
    theirs = answer["ours_for_them"]
    assert isinstance(theirs, dict)
    assert ss.decrypt(key, name, theirs) == plaintext
    js_check = answer["check"]
    assert isinstance(js_check, dict)
    assert ss.key_matches(key, {"algorithm": ss.ALGORITHM, **js_check})


def test_a_mistyped_recovery_key_is_refused() -> None:
    recovery_key = rk.new_recovery_key()
    assert len(rk.decode_recovery_key(recovery_key)) == 32
    assert rk.decode_recovery_key(recovery_key.replace(" ", "")) == \
        rk.decode_recovery_key(recovery_key)
    position = 5
    wrong = "2" if recovery_key[position] != "2" else "3"
    typo = recovery_key[:position] + wrong + recovery_key[position + 1:]
    for bad in (typo, recovery_key[:-1], "not a key at all 0OIl", ""):
        with pytest.raises(rk.BadRecoveryKey):
            rk.decode_recovery_key(bad)


def test_a_secret_does_not_open_with_another_key_or_once_tampered() -> None:
    key, other = os.urandom(32), os.urandom(32)
    encrypted = ss.encrypt(key, "m.cross_signing.master", "seed")
    assert ss.decrypt(key, "m.cross_signing.master", encrypted) == "seed"
    with pytest.raises(MatrixError):
        ss.decrypt(other, "m.cross_signing.master", encrypted)
    with pytest.raises(MatrixError):  # bound to its name too
        ss.decrypt(key, "m.cross_signing.self_signing", encrypted)
    flipped = base64.b64decode(encrypted["ciphertext"])
    tampered = {**encrypted, "ciphertext": base64.b64encode(bytes([flipped[0] ^ 1]) +
                                                            flipped[1:]).decode()}
    with pytest.raises(MatrixError):
        ss.decrypt(key, "m.cross_signing.master", tampered)
    check = ss.encrypt(key, "", "\0" * 32)
    description = {"algorithm": ss.ALGORITHM, **check}
    assert ss.key_matches(key, description) and not ss.key_matches(other, description)


@pytest.mark.parametrize("inline", [False, True], ids=["file", "inline"])
def test_a_mistyped_recovery_key_in_the_config_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], inline: bool
) -> None:
    good = rk.new_recovery_key()
    typo = good[:-1] + ("2" if good[-1] != "2" else "3")
    matrix: dict[str, str] = {"homeserver": "https://matrix.example.org",
                              "user_id": "@bot:example.org", "password": "x"}
    if inline:
        matrix["recovery_key"] = typo
    else:
        (tmp_path / "recovery-key").write_text(typo + "\n")
        matrix["recovery_key_file"] = "recovery-key"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"matrix": matrix}))
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    key = "recovery_key" if inline else "recovery_key_file"
    assert f"matrix.{key}: not a valid recovery key" in err
    assert typo not in err  # the secret itself is never echoed

    matrix.pop("recovery_key", None)
    matrix["recovery_key_file"] = "recovery-key"
    (tmp_path / "recovery-key").write_text(good + "\n")
    matrix["recovery_key"] = good
    config.write_text(yaml.safe_dump({"matrix": matrix}))
    assert main(["check-config", str(config)]) == 2
    assert "give at most one of recovery_key, recovery_key_file" in capsys.readouterr().err
    del matrix["recovery_key"]
    config.write_text(yaml.safe_dump({"matrix": matrix}))
    assert main(["check-config", str(config)]) == 0
