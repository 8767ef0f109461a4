"""What each benchmark hands to the report: figures (samples over repeated runs) and findings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from bench.stats import Summary

Status = Literal["ok", "pending", "failed", "skipped"]
# A finding that starts with this is also listed at the top of RESULTS.md.
WORSE = "**Worse:**"


@dataclass
class Figure:
    """One measured quantity; `samples` holds one value per repeated run."""

    name: str
    unit: str
    samples: list[float]
    digits: int = 1
    note: str = ""

    @property
    def summary(self) -> Summary:
        return Summary.of(self.samples)


@dataclass
class Section:
    key: str
    title: str
    method: str
    figures: list[Figure] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    status: Status = "ok"
    seconds: float = 0.0
    raw: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, unit: str, samples: list[float], digits: int = 1,
            note: str = "") -> Figure:
        figure = Figure(name, unit, list(samples), digits, note)
        self.figures.append(figure)
        return figure

    def find(self, name: str) -> Figure:
        return next(f for f in self.figures if f.name == name)
