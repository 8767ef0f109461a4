"""Running git through GitPython, blocking (call it from `asyncio.to_thread`), with a timeout,
no credential prompts, and failures reduced to a short room-safe reason."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from git.cmd import Git
from git.exc import GitCommandError, GitCommandNotFound

# Never wait on a terminal prompt for credentials: a bot has no one to type them.
_ENV = {"GIT_TERMINAL_PROMPT": "0"}

# (phrase in git's stderr, reason we can post), first match wins. git's messages are English
# (GitPython runs it with LC_ALL=C). The stderr holds URLs and paths: it only goes to `detail`.
_REASONS = (
    ("not found", "repository not found"),
    ("does not appear to be a git repository", "repository not found"),
    ("does not exist", "repository not found"),
    ("no such file or directory", "repository not found"),
    ("could not resolve host", "host not found"),
    ("name or service not known", "host not found"),
    ("temporary failure in name resolution", "host not found"),
    ("connection refused", "connection failed"),
    ("connection timed out", "connection failed"),
    ("network is unreachable", "connection failed"),
    ("failed to connect", "connection failed"),
    ("could not connect", "connection failed"),
    ("connection reset", "connection failed"),
    ("authentication failed", "access denied"),
    ("terminal prompts disabled", "access denied"),
    ("could not read username", "access denied"),
    ("permission denied", "access denied"),
    ("access denied", "access denied"),
    ("certificate", "TLS error"),
    ("ssl", "TLS error"),
)


class GitRunError(Exception):
    """A git command failed. `reason` is short and room-safe; `detail` is git's own output."""

    def __init__(self, reason: str, detail: str, *, not_found: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.not_found = not_found


def run_git(args: Sequence[str], *, cwd: Path, timeout: float | None = None) -> str:
    """Run `git <args>` in `cwd` and return its stdout; raise GitRunError on failure."""
    started = time.monotonic()
    try:
        output = Git(str(cwd)).execute(
            ["git", *args], kill_after_timeout=timeout, env=_ENV, stdout_as_string=True
        )
    except GitCommandNotFound as error:
        raise GitRunError("git is not installed", str(error)) from None
    except GitCommandError as error:
        stderr = str(error.stderr or "")
        timed_out = "timeout:" in stderr.lower() or (
            timeout is not None and time.monotonic() - started >= timeout
        )
        if timed_out:
            raise GitRunError(f"timed out after {timeout:g} s", str(error)) from None
        reason = classify(stderr, error.status)
        raise GitRunError(reason, str(error), not_found=reason == "repository not found") from None
    return output if isinstance(output, str) else ""


def classify(stderr: str, status: object) -> str:
    lowered = stderr.lower()
    for phrase, reason in _REASONS:
        if phrase in lowered:
            return reason
    return f"git exited with status {status}"
