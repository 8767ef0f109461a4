"""Checks made before a deploy touches the server, each failing with a list of what is missing."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from coopbot.errors import UserError
from coopbot.recipes.apps import App
from coopbot.recipes.compose import (
    deploy_env,
    external_networks,
    images,
    missing_env_keys,
    required_secrets,
    unset_in_secret_names,
)
from coopbot.recipes.repo import Checkout
from coopbot.servers.engine import DockerEngine


class PreflightFailed(UserError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("Preflight found problems, nothing was changed:\n"
                         + "\n".join(f"- {p}" for p in problems))
        self.problems = problems


class Preflight:
    def __init__(self, check_images: Mapping[str, bool]) -> None:
        # Per server: whether images must already be on the node (no registry reachable).
        self._check_images = dict(check_images)

    def checks_images(self, server: str) -> bool:
        """Whether `server`'s images must be on the node already (no registry reachable)."""
        return bool(self._check_images.get(server))

    async def check(self, app: App, engine: DockerEngine, checkout: Checkout,
                    compose: dict[str, Any]) -> None:
        problems: list[str] = []
        missing_keys = await asyncio.to_thread(
            missing_env_keys, checkout.path / ".env.sample", app.env
        )
        if missing_keys:
            problems.append(
                f"env file of `{app.name}` lacks keys that the recipe's .env.sample sets: "
                + ", ".join(f"`{k}`" for k in missing_keys)
            )
        secrets, networks, tags = await asyncio.gather(
            engine.secret_names(), engine.network_names(),
            engine.image_tags() if self._check_images.get(app.server) else _no_tags(),
        )
        missing_secrets = [s for s in required_secrets(compose) if s not in secrets]
        if missing_secrets:
            gaps = await asyncio.to_thread(unset_in_secret_names, checkout.path,
                                           app.compose_files, deploy_env(app, checkout))
            unset = sorted({v for s in missing_secrets for v in gaps.get(s, ())})
            named = (f"; the env file of `{app.name}` does not set "
                     + ", ".join(f"`{v}`" for v in unset) + ", which their names use"
                     if unset else "")
            problems.append(
                f"missing swarm secrets on {app.server}: "
                + ", ".join(f"`{s}`" for s in missing_secrets) + named
                + " (create them with `abra app secret generate` or `docker secret create`)"
            )
        missing_networks = [n for n in external_networks(compose) if n not in networks]
        if missing_networks:
            problems.append(
                f"missing external networks on {app.server}: "
                + ", ".join(f"`{n}`" for n in missing_networks)
            )
        if self._check_images.get(app.server):
            wanted = sorted(set(images(compose).values()))
            missing_images = [i for i in wanted if _with_tag(i) not in tags]
            if missing_images:
                problems.append(
                    f"images not present on {app.server}: "
                    + ", ".join(f"`{i}`" for i in missing_images)
                )
        if problems:
            raise PreflightFailed(problems)


async def _no_tags() -> set[str]:
    return set()


def _with_tag(image: str) -> str:
    """Docker lists `name:latest` for an image referenced without a tag."""
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last or "@" in last else f"{image}:latest"
