"""Why a task failed, in words safe for a room.

The daemon's task errors may name host paths, mount sources or image digests, so they are
never posted: only a known kind of failure is named, else the reader is pointed at the logs.
"""

from __future__ import annotations

import re

_EXIT_CODE = re.compile(r"non-zero exit \((\d+)\)")


def failure_reason(task_error: str | None) -> str:
    """A verb phrase completing "the latest task ...", e.g. "failed its healthcheck"."""
    text = (task_error or "").lower()
    if "unhealthy" in text:
        return "failed its healthcheck"
    if "no such image" in text or ("image" in text and "not found" in text):
        return "found no image on its node"
    if "oom" in text or "out of memory" in text:
        return "ran out of memory"
    if "mount" in text or "volume" in text:
        return "could not mount its volumes"
    if "secret" in text or ("config" in text and "not found" in text):
        return "missed a secret or config"
    exit_code = _EXIT_CODE.search(text)
    if exit_code:
        return f"exited with code {exit_code.group(1)}"
    return "failed (its logs tell why)"
