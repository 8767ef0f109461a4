"""bench/RESULTS.md (and bench/results.json with every sample) from the sections of one run."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.results import WORSE, Figure, Section

RATIO_WORSE = 1.05  # a ratio coopbot/alternative above this is listed as worse
KEPT = "kept_from"  # raw key: the earlier run a section was taken from




def _number(value: float, digits: int) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def _row(figure: Figure) -> str:
    s = figure.summary
    cells = [figure.name, figure.unit, _number(s.min, figure.digits),
             _number(s.median, figure.digits), _number(s.max, figure.digits), str(s.n)]
    if figure.note:
        cells[0] += f" ({figure.note})"
    return "| " + " | ".join(cells) + " |"


def render(meta: dict[str, Any], sections: list[Section]) -> str:
    lines = [
        "# coopbot benchmark results",
        "",
        f"Written by `{meta['command']}` on {meta['date']} ({meta['mode']} run, "
        f"{meta['duration']}). Every figure is min / median / max over the repeated runs "
        "(column n); each ratio is taken within one repeat, coopbot and its alternative measured "
        "in the same run. How each benchmark works: bench/README.md.",
        "",
        "## Machine and versions",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {key} | {value} |" for key, value in meta["machine"].items()]
    lines += [f"| {key} | {value} |" for key, value in meta["versions"].items()]
    if meta.get("notes"):
        lines += ["", *[f"- {note}" for note in meta["notes"]]]
    worse = [f"- {s.title.split(' ', 1)[1]}: {f.removeprefix(WORSE).strip()}"
             for s in sections for f in s.findings if f.startswith(WORSE)]
    # Every ratio above 1 counts, in a section that has no sentence of its own about it.
    for section in sections:
        if any(f.startswith(WORSE) for f in section.findings):
            continue
        for figure in section.figures:
            summary = figure.summary
            if figure.name.startswith("ratio coopbot") and summary.median > RATIO_WORSE:
                worse.append(f"- {section.title.split(' ', 1)[1]}: {figure.name} is "
                             f"{summary.median:.2f} (min {summary.min:.2f}, max "
                             f"{summary.max:.2f}).")
    if worse:
        lines += ["", "## Where coopbot is worse than the alternative", "",
                  "(What costs the time, and what would fix it, is in bench/README.md.)", "",
                  *worse]
    for section in sections:
        lines += ["", f"## {section.title}", ""]
        if origin := section.raw.get(KEPT):
            lines += [f"*Not run this time: kept from `{origin['command']}` of {origin['date']} "
                      f"({origin['mode']} run, coopbot {origin['coopbot']}).*", ""]
        if section.status == "pending":
            lines += ["**Pending.**", ""]
        elif section.status == "failed":
            lines += ["**Failed in this run** (see below).", ""]
        elif section.status == "skipped":
            lines += ["*Not run (`--only`).*"]
            continue
        lines += [section.method, ""]
        if section.figures:
            lines += ["| figure | unit | min | median | max | n |",
                      "|---|---|---:|---:|---:|---:|"]
            lines += [_row(f) for f in section.figures]
            lines.append("")
        if section.findings:
            lines += [*[f"- {f}" for f in section.findings], ""]
        lines.append(f"*Section took {section.seconds:.0f} s.*")
    return "\n".join(lines).rstrip() + "\n"


def load(path: Path) -> tuple[dict[str, Any], list[Section]]:
    """Sections and meta back from a results.json."""
    raw = json.loads(path.read_text())
    sections = []
    for data in raw["sections"]:
        figures = [Figure(**f) for f in data.pop("figures")]
        sections.append(Section(**data, figures=figures))
    return raw["meta"], sections


def keep_earlier(directory: Path, sections: list[Section]) -> list[Section]:
    """Sections not run this time (`--only`) taken from the previous results.json in
    `directory`, marked with the run they came from, so a partial run adds to the file."""
    path = directory / "results.json"
    if not path.exists():
        return sections
    try:
        meta, earlier = load(path)
    except (ValueError, KeyError, TypeError):
        return sections
    by_key = {s.key: s for s in earlier if s.status != "skipped"}
    origin = {"command": meta.get("command", "?"), "date": meta.get("date", "?"),
              "mode": meta.get("mode", "?"),
              "coopbot": meta.get("versions", {}).get("coopbot", "?")}
    kept = []
    for section in sections:
        old = by_key.get(section.key)
        if section.status == "skipped" and old is not None:
            old.raw.setdefault(KEPT, origin)
            kept.append(old)
        else:
            kept.append(section)
    return kept


def write(directory: Path, meta: dict[str, Any], sections: list[Section]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "RESULTS.md"
    path.write_text(render(meta, sections))
    raw = {"meta": meta, "sections": [asdict(s) for s in sections]}
    (directory / "results.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    return path


if __name__ == "__main__":
    # `python -m bench.report [bench/results.json]`: write RESULTS.md again from the raw results.
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results.json"
    print(write(source.parent, *load(source)))
