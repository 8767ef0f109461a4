"""The one redaction mechanism: values hidden longest first, env values named for the CLI,
credential shapes hidden in logs, short and harmless values left alone."""

from __future__ import annotations

from coopbot.redact import REDACTED, Redactor


def test_values_are_hidden_longest_first_and_short_ones_are_kept() -> None:
    redact = Redactor(["hunter2hunter2", "hunter2", "abc", "true"])
    assert redact("pw hunter2hunter2 / hunter2 / abc / true") == (
        f"pw {REDACTED} / {REDACTED} / abc / true")


def test_env_values_are_hidden_except_the_public_keys() -> None:
    env = {"DOMAIN": "blog.example.org", "DB_PASSWORD": "s3cret-value", "TYPE": "blog:1.0.0"}
    redact = Redactor.for_env(env)
    assert redact("blog.example.org failed with s3cret-value (blog:1.0.0)") == (
        f"blog.example.org failed with {REDACTED} (blog:1.0.0)")


def test_the_cli_sees_env_values_by_name() -> None:
    env = {"DB_PASSWORD": "s3cret-value", "DB_PASSWORD_OLD": "s3cret-value-old", "X": "1"}
    assert Redactor.naming(env)("got s3cret-value-old then s3cret-value, X=1") == (
        "got ${DB_PASSWORD_OLD} then ${DB_PASSWORD}, X=1")


def test_credential_shapes_only_when_asked_and_values_can_be_added() -> None:
    text = "GET /sync?access_token=abc123def Authorization: Bearer xyz.789 syt_bot_token_x"
    assert Redactor()(text) == text
    shaped = Redactor(credential_shapes=True)
    assert shaped(text) == (f"GET /sync?access_token={REDACTED} Authorization: Bearer "
                            f"{REDACTED} {REDACTED}")
    grown = shaped.adding(["my-restic-password"])
    assert grown("restic: my-restic-password") == f"restic: {REDACTED}"
    assert shaped("restic: my-restic-password") == "restic: my-restic-password"
