"""What a preflight needs from a recipe checkout: the deploy env, the interpolated and merged
compose config, and the facts to check before `docker stack deploy -c ... -c ...` runs.

This module never translates compose to Docker API calls: the deploy itself is done by
`docker stack deploy` with the files and `deploy_env()` as its environment.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from coopbot.errors import NotFound, UserError
from coopbot.recipes.envfile import EnvFileError, parse_env_file
from coopbot.recipes.interpolation import substitute
from coopbot.recipes.merge import Compose, merge_files, normalize

if TYPE_CHECKING:
    from coopbot.recipes.apps import App
    from coopbot.recipes.repo import Checkout

log = logging.getLogger(__name__)

_EXPORT = re.compile(r"^\s*export\s+([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_UNSAFE_IN_EXPORT = re.compile(r"[$`\\;&|<>()]")


def abra_sh_exports(path: Path) -> dict[str, str]:
    """`export X=Y` lines of a recipe's abra.sh, simple values only (no `$`, backticks,
    command syntax), as abra reads them; quotes and a trailing ` # comment` are removed.
    A missing abra.sh gives {}."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    exports: dict[str, str] = {}
    for line in text.splitlines():
        match = _EXPORT.match(line)
        if match is None:
            continue
        value = _simple_value(match[2])
        if value is None:
            log.debug("abra.sh export %s skipped: not a simple value", match[1])
            continue
        exports[match[1]] = value
    return exports


def _simple_value(raw: str) -> str | None:
    raw = raw.strip()
    if raw[:1] in ("'", '"'):
        close = raw.find(raw[0], 1)
        if close < 0:
            return None
        rest = raw[close + 1 :].strip()
        if rest and not rest.startswith("#"):
            return None
        value = raw[1:close]
        return value if raw[0] == "'" or ("$" not in value and "`" not in value) else None
    value = re.split(r"\s+#", raw, maxsplit=1)[0].strip()
    if _UNSAFE_IN_EXPORT.search(value) or any(c.isspace() for c in value):
        return None
    return value


def deploy_env(app: App, checkout: Checkout) -> dict[str, str]:
    """The environment for interpolation and `docker stack deploy`.

    Precedence (as abra's deploy does): app env < abra.sh exports < STACK_NAME. abra.sh wins
    over the app env because its exports version swarm configs the recipe owns: a stale
    `X_CONF_VERSION` copied into an old env file would reuse an immutable config name for
    changed content and fail the deploy. Overridden keys are logged.
    """
    exports = abra_sh_exports(checkout.path / "abra.sh")
    shadowed = sorted(k for k in exports if k in app.env and app.env[k] != exports[k])
    if shadowed:
        log.warning("app %s: abra.sh overrides env keys %s", app.name, ", ".join(shadowed))
    return {**app.env, **exports, "STACK_NAME": app.stack_name}


def interpolate(text: str, env: Mapping[str, str], *, unset: set[str] | None = None) -> str:
    """Compose interpolation of one string; `${VAR?msg}` errors are UserErrors naming VAR."""
    return substitute(text, env.get, unset=unset)


def interpolate_tree(value: Any, env: Mapping[str, str], unset: set[str] | None = None) -> Any:
    """Interpolate every string value of a parsed YAML tree (keys are left alone, as compose
    does). Done after parsing, not on the raw text, so that a value holding `: ` or quotes
    cannot change the YAML structure, and a `${X?}` in a YAML comment is not evaluated."""
    if isinstance(value, str):
        return interpolate(value, env, unset=unset)
    if isinstance(value, dict):
        return {key: interpolate_tree(item, env, unset) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate_tree(item, env, unset) for item in value]
    return value


def load_compose(
    checkout_path: Path,
    compose_files: Iterable[str],
    env: Mapping[str, str],
    *,
    unset: set[str] | None = None,
) -> Compose:
    """Read, interpolate and merge the compose files in order (COMPOSE_FILE order)."""
    root = checkout_path.resolve()
    merged: Compose = {}
    for name in compose_files:
        path = (root / name).resolve()
        if not path.is_relative_to(root):
            raise UserError(f"Compose file `{name}` is outside the recipe.")
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFound(f"The recipe has no compose file `{name}`.") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise UserError(
                f"Compose file `{name}` is not valid YAML.", detail=str(error)
            ) from None
        if loaded is None:
            continue
        if not isinstance(loaded, dict):
            raise UserError(f"Compose file `{name}` is not a compose mapping.")
        merged = merge_files(merged, normalize(interpolate_tree(loaded, env, unset)))
    return merged


def unset_in_secret_names(
    checkout_path: Path, compose_files: Iterable[str], env: Mapping[str, str]
) -> dict[str, list[str]]:
    """Swarm secret name -> the variables its `name:` uses that the env does not set (a
    `SECRET_X_VERSION` left commented out gives `<stack>_x_`: the answer names the variable,
    not only that odd name). Files were checked by `load_compose` already."""
    gaps: dict[str, list[str]] = {}
    for name in compose_files:
        try:
            loaded = yaml.safe_load((checkout_path / name).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        secrets = loaded.get("secrets") if isinstance(loaded, dict) else None
        for entry in (secrets or {}).values() if isinstance(secrets, dict) else ():
            template = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(template, str):
                continue
            unset: set[str] = set()
            try:
                secret = interpolate(template, env, unset=unset)
            except UserError:
                continue
            if unset:
                gaps[secret] = sorted(unset)
    return gaps


def _services(compose: Compose) -> dict[str, dict[str, Any]]:
    services = compose.get("services") or {}
    return {name: svc for name, svc in services.items() if isinstance(svc, dict)}


def _used(compose: Compose, key: str) -> set[str]:
    """Names in `key` (secrets/configs/networks) referenced by at least one service."""
    used: set[str] = set()
    for service in _services(compose).values():
        refs = service.get(key) or []
        if isinstance(refs, dict):
            used.update(str(name) for name in refs)
        else:
            used.update(str(r["source"]) if isinstance(r, dict) else str(r) for r in refs)
    return used


def _external_names(compose: Compose, key: str) -> list[str]:
    """Swarm names of external entries used by services: `name:` if given, else the key
    (docker stack deploy does not prefix external objects with the stack name)."""
    used = _used(compose, key)
    names: list[str] = []
    for entry_key, entry in (compose.get(key) or {}).items():
        entry = entry or {}
        external = entry.get("external")
        if not external or entry_key not in used:
            continue
        legacy_name = external.get("name") if isinstance(external, dict) else None
        name = str(entry.get("name") or legacy_name or entry_key)
        if name not in names:
            names.append(name)
    return names


def required_secrets(compose: Compose) -> list[str]:
    """External secrets the deploy needs to exist, by their swarm name, in file order."""
    return _external_names(compose, "secrets")


def external_networks(compose: Compose) -> list[str]:
    """External networks (e.g. Traefik's `proxy`) the deploy needs to exist."""
    return _external_names(compose, "networks")


def images(compose: Compose) -> dict[str, str]:
    """service -> image reference."""
    return {
        name: str(service["image"])
        for name, service in _services(compose).items()
        if service.get("image")
    }


def missing_env_keys(env_sample_path: Path, app_env: Mapping[str, str]) -> list[str]:
    """Keys set (uncommented) in the recipe's `.env.sample` that the app env lacks."""
    try:
        sample = parse_env_file(env_sample_path)
    except EnvFileError:
        if not env_sample_path.exists():
            return []
        raise
    return [key for key in sample.values if key not in app_env]



def placement_constraints(compose: Compose) -> dict[str, list[str]]:
    """service -> its `deploy.placement.constraints` (none: runs on any node)."""
    found: dict[str, list[str]] = {}
    for name, service in _services(compose).items():
        deploy = service.get("deploy")
        placement = deploy.get("placement") if isinstance(deploy, dict) else None
        constraints = placement.get("constraints") if isinstance(placement, dict) else None
        found[name] = [str(c) for c in constraints] if isinstance(constraints, list) else []
    return found
