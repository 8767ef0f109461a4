"""Merge compose overlays (`-c compose.yml -c compose.x.yml`) the way `docker stack deploy` does,
for the keys recipes use, so the preflight sees what the deploy will deploy.

- top level: `services`, `volumes`, `networks`, `secrets`, `configs` merged per entry;
  other keys merged recursively; scalars (e.g. `version`) overridden.
- per service: mappings merged recursively; `environment`, `labels` (also `deploy.labels`),
  `build.args`, `sysctls`, `extra_hosts` merged as maps (list form converted);
  `ports` keyed by published port as docker does (short forms made long; an overlay's port
  replaces the base's with the same published port, unpublished ones share key 0; sorted by
  published port); `volumes` keyed by container path, `secrets`/`configs` by source (the overlay
  wins for the same key); `networks` merged (list or map form); `command`, `entrypoint` and
  `healthcheck.test` replaced; other lists appended without duplicates; scalars overridden.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

# Values in compose files are arbitrary YAML; `Any` is the honest type here.
Compose = dict[str, Any]

_MAP_KEYS = frozenset({"environment", "labels", "args", "sysctls"})
_REPLACED_KEYS = frozenset({"command", "entrypoint", "test"})
_TOP_LEVEL_TABLES = frozenset({"services", "volumes", "networks", "secrets", "configs"})


def as_map(value: Any, separator: str = "=") -> dict[str, Any]:
    """Compose list form (`["A=1", "B"]`) or map form to a map; `B` alone maps to None."""
    if isinstance(value, dict):
        return dict(value)
    result: dict[str, Any] = {}
    for item in value or []:
        name, sep, rest = str(item).partition(separator)
        result[name] = rest if sep else None
    return result


def normalize(compose: Compose) -> Compose:
    """Map form for environment/labels everywhere, so consumers handle one shape."""
    for service in (compose.get("services") or {}).values():
        if not isinstance(service, dict):
            continue
        for key in ("environment", "labels"):
            if key in service:
                service[key] = as_map(service[key])
        deploy = service.get("deploy")
        if isinstance(deploy, dict) and "labels" in deploy:
            deploy["labels"] = as_map(deploy["labels"])
    return compose


def merge_files(base: Compose, overlay: Compose) -> Compose:
    """A new dict: `overlay` applied on `base` (neither is modified)."""
    result = copy.deepcopy(base)
    for key, value in overlay.items():
        if key in _TOP_LEVEL_TABLES and isinstance(value, dict):
            table = result.setdefault(key, {}) or {}
            for name, entry in value.items():
                old = table.get(name)
                merged = _merge(old, entry, "") if key == "services" else _merge_entry(old, entry)
                table[name] = merged
            result[key] = table
        else:
            result[key] = _merge(result.get(key), value, key)
    return result


def _merge_entry(old: Any, new: Any) -> Any:
    # A volume/network/secret/config declared twice: keys merged, the overlay winning.
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **copy.deepcopy(new)}
    return copy.deepcopy(new) if new is not None else old


def _merge(old: Any, new: Any, key: str) -> Any:
    if old is None:
        return copy.deepcopy(new)
    if new is None:
        return old
    if key == "extra_hosts":  # list form is `host:ip`
        return {**as_map(old, ":"), **as_map(new, ":")}
    if key in _MAP_KEYS:
        return {**as_map(old), **as_map(new)}
    if key in _REPLACED_KEYS:
        return copy.deepcopy(new)
    if key == "networks" and (isinstance(old, dict) or isinstance(new, dict)):
        return {**_network_map(old), **_network_map(new)}
    if isinstance(old, dict) and isinstance(new, dict):
        merged = dict(old)
        for sub, value in new.items():
            merged[sub] = _merge(old.get(sub), value, sub)
        return merged
    if key == "ports" and isinstance(old, list) and isinstance(new, list):
        return merge_ports(old, new)
    if isinstance(old, list) and isinstance(new, list):
        return _merge_lists(old, new, _LIST_KEYS.get(key, _identity))
    return copy.deepcopy(new)


def _network_map(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    return {str(name): None for name in value or []}


def _merge_lists(old: list[Any], new: list[Any], key_of: Callable[[Any], object]) -> list[Any]:
    """Union keyed by `key_of`: the overlay replaces an item with the same key, in place."""
    result = list(old)
    index = {key_of(item): pos for pos, item in enumerate(result)}
    for item in new:
        item_key = key_of(item)
        if item_key in index:
            result[index[item_key]] = copy.deepcopy(item)
        else:
            index[item_key] = len(result)
            result.append(copy.deepcopy(item))
    return result


def _identity(item: Any) -> object:
    return repr(item)


def _volume_target(item: Any) -> object:
    if isinstance(item, dict):
        return item.get("target")
    parts = str(item).split(":")
    # `src:/target[:mode]` or an anonymous `/target`.
    return parts[1] if len(parts) > 1 else parts[0]


def _source(item: Any) -> object:
    return item.get("source") if isinstance(item, dict) else str(item)


def merge_ports(old: list[Any], new: list[Any]) -> list[Any]:
    """docker's port merge (measured with `docker stack config`): both lists in long form,
    one entry per published port, the overlay's last entry winning, sorted by published port."""
    by_published: dict[int, Any] = {}
    for item in [*old, *new]:
        for port in long_ports(item):
            by_published[_published(port)] = port
    return [by_published[key] for key in sorted(by_published)]


def long_ports(item: Any) -> list[Any]:
    """One port entry in long form; a short one may name a range, giving several."""
    if isinstance(item, dict):
        return [copy.deepcopy(item)]
    text = str(item)
    spec, _, protocol = text.partition("/")
    parts = spec.rsplit(":", 2)
    target = parts[-1]
    published = parts[-2] if len(parts) > 1 else ""
    targets, publisheds = _port_range(target), _port_range(published)
    if targets is None or publisheds is None or (publisheds and len(publisheds) != len(targets)):
        return [text]  # not a form we know: docker will say what is wrong with it
    ports = []
    for index, port in enumerate(targets):
        entry: dict[str, Any] = {"mode": "ingress", "target": port}
        if publisheds:
            entry["published"] = publisheds[index]
        entry["protocol"] = protocol or "tcp"
        ports.append(entry)
    return ports


def _port_range(text: str) -> list[int] | None:
    if not text:
        return []
    low, _, high = text.partition("-")
    if not low.isdigit() or (high and not high.isdigit()):
        return None
    return list(range(int(low), int(high or low) + 1))


def _published(port: Any) -> int:
    value = port.get("published") if isinstance(port, dict) else None
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0


_LIST_KEYS: dict[str, Callable[[Any], object]] = {
    "volumes": _volume_target,
    "secrets": _source,
    "configs": _source,
}
