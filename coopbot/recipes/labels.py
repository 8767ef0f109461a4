"""abra's label rules, in one place: which `coop-cloud.<stack>.*` label says what, and where.

abra labels the stack's `app` service (any other service carrying a label is a fallback):
`.version` (the version deployed; older recipes write `.app.version`), `.timeout` (seconds to
wait for convergence), `.recipe`, `.chaos` / `.chaos-version` (deployed from an untagged tree)
and `.autoupdate` (read by kadabra). The same rules apply to labels in a recipe's compose
(`deploy.labels`, list or map form) and to the labels a running service carries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import yaml

from coopbot.recipes.merge import as_map

MAIN_SERVICE = "app"
DEFAULT_TIMEOUT = 300.0


class Labelled(Protocol):
    """A running service as the swarm reports it (ServiceState has these)."""

    @property
    def short_name(self) -> str: ...

    @property
    def labels(self) -> Mapping[str, str]: ...


def label(stack: str, name: str) -> str:
    return f"coop-cloud.{stack}.{name}"


def version_keys(stack: str) -> tuple[str, str]:
    """The version label in today's scheme, then in the old one (traefik 2.4 and others)."""
    return label(stack, "version"), label(stack, "app.version")


# ---- running services ---------------------------------------------------------------------------


def _main_first(services: Iterable[Labelled]) -> list[Labelled]:
    return sorted(services, key=lambda s: s.short_name != MAIN_SERVICE)


def version_label(services: Iterable[Labelled], stack: str) -> str | None:
    """The `.version` label (either scheme) as it is: it may name no release (`latest`, a
    `1.0.2+1.0.2` label on a `v1.0.2` tag); operations/deployed.py finds the release."""
    ordered = _main_first(services)
    for key in version_keys(stack):
        for service in ordered:
            value = service.labels.get(key)
            if value:
                return value
    return None


def chaos_commit(services: Iterable[Labelled], stack: str) -> str | None:
    """The commit of a chaos deploy (`.chaos=true`, `.chaos-version`), else None."""
    for service in _main_first(services):
        if service.labels.get(label(stack, "chaos")) == "true":
            return service.labels.get(label(stack, "chaos-version")) or "unknown"
    return None


def chaos_text(commit: str) -> str:
    """How a chaos deploy is shown (`!ps`, `!apps`, plans, notifications)."""
    return f"chaos {commit}"


def deployed_version(services: Iterable[Labelled], stack: str) -> str | None:
    """What a stack runs, for people: `chaos <commit>` for a chaos deploy, else its version
    label; None when unlabelled."""
    services = list(services)
    commit = chaos_commit(services, stack)
    return chaos_text(commit) if commit is not None else version_label(services, stack)


def running_timeout(services: Iterable[Labelled], stack: str, default: float) -> float:
    """The convergence timeout a running stack's labels give, else `default`."""
    for service in _main_first(services):
        value = _seconds(service.labels.get(label(stack, "timeout")))
        if value is not None:
            return value
    return default


def autoupdate(services: Iterable[Labelled], stack: str) -> bool:
    """Whether the stack opted into automatic updates (kadabra's label)."""
    return any(s.labels.get(label(stack, "autoupdate")) == "true" for s in services)


# ---- what a deploy writes ------------------------------------------------------------------

CHAOS_COMMIT_LENGTH = 8  # abra's short commit


def deploy_labels(stack: str, recipe: str, version: str | None, chaos: str | None,
                  env: Mapping[str, str]) -> dict[str, str]:
    """abra's labels for the `app` service at deploy time: the recipe, whether it is a chaos
    deploy (and its short commit), the version actually deployed (overriding the compose's
    own; on a chaos deploy the last release, as abra keeps it) and kadabra's autoupdate flag
    from the env's ENABLE_AUTO_UPDATE."""
    labels = {
        label(stack, "recipe"): recipe,
        label(stack, "chaos"): "true" if chaos else "false",
    }
    if chaos:
        labels[label(stack, "chaos-version")] = chaos[:CHAOS_COMMIT_LENGTH]
    if version:
        labels[label(stack, "version")] = version
    wanted = env.get("ENABLE_AUTO_UPDATE", "").strip().lower() == "true"
    labels[label(stack, "autoupdate")] = "true" if wanted else "false"
    return labels


# ---- a recipe's compose ------------------------------------------------------------------------


def compose_labels(compose: Mapping[str, Any]) -> dict[str, Any]:
    """The `app` service's deploy labels (list or map form) as a map; {} when absent."""
    services = compose.get("services")
    app = services.get(MAIN_SERVICE) if isinstance(services, Mapping) else None
    deploy = app.get("deploy") if isinstance(app, Mapping) else None
    labels = deploy.get("labels") if isinstance(deploy, Mapping) else None
    return as_map(labels) if labels else {}


def compose_timeout(compose: Mapping[str, Any], stack: str, default: float) -> float:
    """The recipe's timeout label on its app service, else `default` (the app's TIMEOUT,
    itself 300 s unless set, as abra)."""
    value = _seconds(compose_labels(compose).get(label(stack, "timeout")))
    return default if value is None else value


def _seconds(raw: object) -> float | None:
    if raw is None:
        return None
    try:
        value = float(str(raw).strip())
    except ValueError:
        return None
    return value if 0 < value < float("inf") else None


def labels_overlay(compose: Mapping[str, Any], labels: Mapping[str, str]) -> str | None:
    """A compose overlay (given last to `docker stack deploy`) that sets `labels` on the `app`
    service, or None when the recipe has no `app` service. It repeats the recipe's `version:`
    key: the CLI refuses files of different compose versions (an absent key means 3.x's
    newest)."""
    services = compose.get("services")
    if not isinstance(services, Mapping) or MAIN_SERVICE not in services:
        return None
    overlay: dict[str, Any] = {}
    if compose.get("version") is not None:
        overlay["version"] = str(compose["version"])
    overlay["services"] = {MAIN_SERVICE: {"deploy": {"labels": dict(labels)}}}
    return yaml.safe_dump(overlay, sort_keys=False)
