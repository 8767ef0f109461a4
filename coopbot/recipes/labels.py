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


def deployed_version(services: Iterable[Labelled], stack: str) -> str | None:
    """The version a stack runs, from its labels as abra reads them; None when unlabelled."""
    ordered = _main_first(services)
    for key in version_keys(stack):
        for service in ordered:
            value = service.labels.get(key)
            if value:
                return value
    return None


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
