"""Summaries of repeated measurements: min/median/max over runs, percentiles within a run."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], pct: float) -> float:
    """The pct-th percentile (0-100), linear between closest ranks (numpy's default)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    n: int
    min: float
    median: float
    max: float

    @staticmethod
    def of(samples: Sequence[float]) -> Summary:
        values = [s for s in samples if not math.isnan(s)]
        if not values:
            return Summary(0, math.nan, math.nan, math.nan)
        return Summary(len(values), min(values), statistics.median(values), max(values))


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Pairwise ratios of measurements taken in the same repeat (nan where undefined)."""
    return [n / d if d else math.nan for n, d in zip(numerators, denominators, strict=True)]
