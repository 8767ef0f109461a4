"""The apps dir's git history: when `apps_dir` is a git repository, every change coopbot makes
to an app's env file is committed there, naming who asked, so a co-op has one history of its
configuration (Co-op Cloud's handbook asks teams to keep `~/.abra` in git).

Only the changed file is committed (`git commit -- <path>`): an operator's other edits in the
same checkout stay theirs to commit. A folder that is no git repository is left alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from coopbot.errors import GitError
from coopbot.recipes.gitcmd import GitRunError, run_git

log = logging.getLogger(__name__)

GIT_TIMEOUT = 30.0
_IDENTITY = ("-c", "user.name=coopbot", "-c", "user.email=coopbot@localhost",
             "-c", "commit.gpgsign=false")
_FIELD = "\x1f"


@dataclass(frozen=True)
class Change:
    commit: str
    when: str  # ISO date of the commit
    subject: str
    requester: str  # from the Requested-by trailer, "" for commits coopbot did not make


class AppsHistory:
    def __init__(self, apps_dir: Path) -> None:
        self._apps_dir = apps_dir
        self._lock = asyncio.Lock()  # one git index: commits one at a time

    async def record(self, path: Path, subject: str, requester: str) -> str | None:
        """Commit the file's current state (or its deletion); the commit id, or None when the
        apps dir is no git repository or nothing changed. A git failure is logged and raised:
        the change itself is made, the room is told it is not in the history."""
        async with self._lock:
            return await asyncio.to_thread(self._record_blocking, path, subject, requester)

    async def log(self, path: Path, limit: int) -> list[Change] | None:
        """The last `limit` commits touching the file, newest first; None without a repo."""
        return await asyncio.to_thread(self._log_blocking, path, limit)

    def _top(self) -> Path | None:
        if not self._apps_dir.exists():
            return None
        try:
            top = run_git(["rev-parse", "--show-toplevel"], cwd=self._apps_dir,
                          timeout=GIT_TIMEOUT).strip()
        except GitRunError:
            return None
        return Path(top) if top else None

    def _relative(self, top: Path, path: Path) -> str | None:
        # The file's folder may be a symlink (operators link server folders): git sees the target.
        real = Path(os.path.realpath(path.parent)) / path.name
        try:
            return str(real.relative_to(Path(os.path.realpath(top))))
        except ValueError:
            log.info("%s is outside the apps dir's git repository: not committed", path.name)
            return None

    def _record_blocking(self, path: Path, subject: str, requester: str) -> str | None:
        top = self._top()
        relative = self._relative(top, path) if top is not None else None
        if top is None or relative is None:
            return None
        message = f"{subject}\n\nRequested-by: {requester}\n"
        try:
            run_git(["add", "--all", "--", relative], cwd=top, timeout=GIT_TIMEOUT)
            if not run_git(["status", "--porcelain", "--", relative], cwd=top,
                           timeout=GIT_TIMEOUT).strip():
                return None
            run_git([*_IDENTITY, "commit", "--quiet", "--no-verify", "-m", message, "--",
                     relative], cwd=top, timeout=GIT_TIMEOUT)
            return run_git(["rev-parse", "HEAD"], cwd=top, timeout=GIT_TIMEOUT).strip()
        except GitRunError as error:
            raise GitError(f"the change is made but could not be committed to the apps dir's "
                           f"git history ({error.reason})", detail=error.detail) from None

    def _log_blocking(self, path: Path, limit: int) -> list[Change] | None:
        top = self._top()
        relative = self._relative(top, path) if top is not None else None
        if top is None or relative is None:
            return None
        fmt = _FIELD.join(["%h", "%cI", "%s", "%(trailers:key=Requested-by,valueonly)"])
        try:
            out = run_git(["log", f"-n{limit}", f"--format={fmt}%x1e", "--", relative],
                          cwd=top, timeout=GIT_TIMEOUT)
        except GitRunError as error:
            if "does not have any commits" in error.detail:
                return []
            raise GitError(f"could not read the apps dir's history ({error.reason})",
                           detail=error.detail) from None
        changes = []
        for record in out.split("\x1e"):
            parts = record.strip().split(_FIELD)
            if len(parts) == 4:
                changes.append(Change(parts[0], parts[1], parts[2], parts[3].strip()))
        return changes
