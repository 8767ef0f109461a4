"""Checks made before a deploy touches the server, each failing with a list of what is missing."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from coopbot.errors import UserError
from coopbot.recipes.apps import App
from coopbot.recipes.compose import (
    deploy_env,
    external_networks,
    images,
    missing_env_keys,
    placement_constraints,
    required_secrets,
    unset_in_secret_names,
)
from coopbot.recipes.repo import Checkout
from coopbot.servers.engine import DockerEngine
from coopbot.servers.placement import eligible
from coopbot.servers.states import NodeState


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
                    compose: dict[str, Any]) -> list[str]:
        """Raises PreflightFailed with every problem; returns warnings (room-safe sentences)
        about what may still work, e.g. a placement constraint no ready node matches now."""
        problems: list[str] = []
        missing_keys = await asyncio.to_thread(
            missing_env_keys, checkout.path / ".env.sample", app.env
        )
        if missing_keys:
            problems.append(
                f"env file of `{app.name}` lacks keys that the recipe's .env.sample sets: "
                + ", ".join(f"`{k}`" for k in missing_keys)
            )
        secrets, networks, info = await asyncio.gather(
            engine.secret_names(), engine.network_names(), engine.info())
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
        constraints = placement_constraints(compose)
        warnings = [
            f"service `{name}` of `{app.name}`: its placement constraints "
            f"({', '.join(f'`{c}`' for c in wanted)}) match no ready, active node of "
            f"{app.server} now, so its task will wait until one does"
            for name, wanted in constraints.items() if not eligible(wanted, info.nodes)]
        if self._check_images.get(app.server):
            problems += await _missing_images(app, engine, compose, constraints, info.nodes)
        if problems:
            raise PreflightFailed(problems)
        return warnings


async def _missing_images(app: App, engine: DockerEngine, compose: dict[str, Any],
                          constraints: Mapping[str, list[str]],
                          nodes: Sequence[NodeState]) -> list[str]:
    """Each service's image on every node that may run its task (not only the manager's)."""
    wanted = images(compose)
    by_node: dict[str, set[str]] = {}
    missing: dict[str, list[str]] = {}
    for service, image in sorted(wanted.items()):
        # A single-node swarm (or an unknown node listing): the engine's own node.
        targets: list[NodeState | None] = (
            list(eligible(constraints.get(service, []), nodes)) if len(nodes) > 1 else [])
        for node in targets or [None]:
            node_id = node.node_id if node else await engine.helpers.own_node()
            if node_id not in by_node:
                by_node[node_id] = await engine.helpers.image_tags(node_id)
            if _with_tag(image) not in by_node[node_id]:
                where = missing.setdefault(image, [])
                if node is not None:
                    where.append(node.hostname)
    return [f"images not present on {app.server}"
            + (f" (node {', '.join(where)})" if where else "") + f": `{image}`"
            for image, where in missing.items()]


def _with_tag(image: str) -> str:
    """Docker lists `name:latest` for an image referenced without a tag."""
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last or "@" in last else f"{image}:latest"
