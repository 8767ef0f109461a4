"""Small helpers to give tests an app of the testapp recipe on a server (env file, secret)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from tests.harness.recipes import AbraDir


def unique_domain() -> str:
    return f"t{uuid.uuid4().hex[:8]}.example.org"


def stack_of(domain: str) -> str:
    return domain.replace(".", "_")


def docker(*args: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(["docker", *args], input=stdin, capture_output=True, check=True)
    return result.stdout.decode()


def create_secret(domain: str) -> None:
    docker("secret", "create", f"{stack_of(domain)}_db_password_v1", "-", stdin=b"s3cret-value")


def app_env(abra: AbraDir, server: str, domain: str, **extra: str) -> Path:
    values = {"SECRET_DB_PASSWORD_VERSION": "v1", "GREETING": "hello-from-env"}
    values.update(extra)
    return abra.write_app(server, domain, extra=values)
