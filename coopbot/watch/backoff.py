"""Reconnect delays: doubling from a first delay up to a cap, so a server that is down for
hours costs one attempt a minute, and one that blinked is back within a second."""

from __future__ import annotations


def backoff_delay(failures: int, initial: float, cap: float) -> float:
    """Delay before the next attempt after `failures` consecutive failed ones (0: none)."""
    if failures <= 0:
        return 0.0
    return min(cap, initial * 2.0 ** min(failures - 1, 32))
