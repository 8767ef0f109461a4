"""The apps abra knows: one env file per app at `<abra dir>/servers/<server>/<app>.env`.

Files change under us (abra, an operator's git pull), so every call re-reads the folder; a
stat-based cache makes that cheap. One malformed file never hides the other apps.
"""

from __future__ import annotations

import builtins
import difflib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from coopbot.errors import NotFound, UserError
from coopbot.recipes.envfile import TYPE_KEYS, EnvFile, EnvFileError, parse_env_file

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 300
DEFAULT_COMPOSE_FILES = ("compose.yml",)


@dataclass(frozen=True)
class App:
    name: str  # the env file name without `.env`: usually the domain
    server: str
    domain: str
    stack_name: str
    recipe: str
    version: str | None  # the version after `:` in TYPE: the one deployed last
    env: dict[str, str] = field(repr=False)
    env_path: Path
    timeout: int
    compose_files: tuple[str, ...]
    modifiers: dict[str, dict[str, str]] = field(repr=False)


def stack_name_for(name: str, env: dict[str, str]) -> str:
    """abra's rule: a STACK_NAME key if the env sets one, else the app name with `.` -> `_`."""
    return env.get("STACK_NAME") or name.replace(".", "_")


def app_from_env_file(env_file: EnvFile, server: str) -> App:
    """Build an App from a parsed env file; raises EnvFileError naming the bad key's line."""
    path, values = env_file.path, env_file.values
    name = path.name.removesuffix(".env")
    type_key = next((key for key in TYPE_KEYS if values.get(key)), None)
    if type_key is None:
        raise EnvFileError(path, None, "it has no TYPE line")
    recipe, _, version = values[type_key].strip().partition(":")
    if not recipe:
        raise EnvFileError(path, env_file.lines[type_key], f"{type_key} names no recipe")
    timeout_text = values.get("TIMEOUT", "").strip()
    if timeout_text and not (timeout_text.isascii() and timeout_text.isdigit()):
        raise EnvFileError(
            path, env_file.lines["TIMEOUT"], "TIMEOUT must be a whole number of seconds"
        )
    compose_files = tuple(
        part.strip() for part in values.get("COMPOSE_FILE", "").split(":") if part.strip()
    )
    return App(
        name=name,
        server=server,
        domain=values.get("DOMAIN") or name,
        stack_name=stack_name_for(name, values),
        recipe=recipe,
        version=version or None,
        env=dict(values),
        env_path=path,
        timeout=int(timeout_text) if timeout_text else DEFAULT_TIMEOUT,
        compose_files=compose_files or DEFAULT_COMPOSE_FILES,
        modifiers=env_file.modifiers,
    )


_StatKey = tuple[int, int, int, int]


class AppCatalog:
    def __init__(self, apps_dir: Path) -> None:
        self.apps_dir = apps_dir
        self._cache: dict[Path, tuple[_StatKey, App | EnvFileError]] = {}

    @property
    def servers_dir(self) -> Path:
        return self.apps_dir / "servers"

    def servers(self) -> builtins.list[str]:
        """Server folders (symlinked ones included), sorted."""
        try:
            entries = builtins.list(self.servers_dir.iterdir())
        except FileNotFoundError:
            return []
        # is_dir() follows symlinks: operators often keep server folders in git and link them.
        return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())

    def list(self, servers: Iterable[str] | None = None) -> builtins.list[App]:
        """Every readable app, sorted by server then name; malformed files are logged, skipped."""
        wanted = None if servers is None else set(servers)
        apps: builtins.list[App] = []
        for server, path in self._env_files():
            if wanted is not None and server not in wanted:
                continue
            loaded = self._load(server, path)
            if isinstance(loaded, App):
                apps.append(loaded)
        return apps

    def get(self, name: str) -> App:
        """The app `name`; NotFound suggests close names, a malformed file raises its error."""
        matches = [(server, path) for server, path in self._env_files() if _app_name(path) == name]
        if not matches:
            known = sorted({_app_name(path) for _, path in self._env_files()})
            # A high cutoff: app names share long suffixes (`.example.com`) that look "close".
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.8)
            hint = f" Did you mean {' or '.join(f'`{c}`' for c in close)}?" if close else ""
            raise NotFound(f"Unknown app `{name}`.{hint}")
        if len(matches) > 1:
            servers = ", ".join(sorted(server for server, _ in matches))
            raise UserError(f"App `{name}` is configured on several servers ({servers}).")
        loaded = self._load(*matches[0])
        if isinstance(loaded, EnvFileError):
            # A fresh instance: re-raising the cached one would stack tracebacks on it.
            raise EnvFileError(loaded.path, loaded.line, loaded.reason)
        return loaded

    def _env_files(self) -> builtins.list[tuple[str, Path]]:
        found: builtins.list[tuple[str, Path]] = []
        for server in self.servers():
            try:
                entries = sorted((self.servers_dir / server).iterdir())
            except OSError as error:
                log.warning("cannot list server folder %s: %s", server, error)
                continue
            found.extend(
                (server, path)
                for path in entries
                if path.name.endswith(".env") and not path.name.startswith(".")
            )
        live = {path for _, path in found}
        for gone in self._cache.keys() - live:
            del self._cache[gone]
        return found

    def _load(self, server: str, path: Path) -> App | EnvFileError:
        try:
            info = os.stat(path)  # follows symlinks: the target's change is what matters
        except OSError as error:
            return EnvFileError(path, None, f"it cannot be read ({error.strerror})")
        key = (info.st_mtime_ns, info.st_size, info.st_ino, info.st_dev)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        result: App | EnvFileError
        try:
            result = app_from_env_file(parse_env_file(path), server)
        except EnvFileError as error:
            log.warning("skipping app env file: %s", error)
            result = error
        self._cache[path] = (key, result)
        return result


def _app_name(path: Path) -> str:
    return path.name.removesuffix(".env")
