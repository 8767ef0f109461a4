"""Summaries of py-spy's raw (collapsed) profiles written by `bench/run --profile`: where the
bot's CPU went, by function, inclusive and self. `python -m bench.profiles FILE...` prints them."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<path>[^()]*?)(?::\d+)?\)$")
_SITE = re.compile(r".*/(site-packages|lib/python3\.\d+)/")
_REPO = str(Path(__file__).resolve().parent.parent) + "/"


def _name(frame: str) -> str | None:
    match = _FRAME.match(frame.strip())
    if match is None:
        return None
    path = _SITE.sub("", match.group("path")).replace(_REPO, "")
    return f"{match.group('func')} ({path})"


def summarize(path: Path, top: int = 25) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        names = [n for n in (_name(f) for f in stack.split(";")) if n]
        if not names:
            continue
        total += count
        own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    if not total:
        return f"### {path.name}\n\n(no samples)\n"
    lines = [f"### {path.name}", "", f"{total} samples (py-spy at 250 Hz; with `--profile wall` "
             "waiting threads count too, else only CPU time).", "",
             "| inclusive | self | function |", "|---:|---:|---|"]
    for name, count in inclusive.most_common(top):
        lines.append(f"| {100 * count / total:.1f}% | {100 * own[name] / total:.1f}% | "
                     f"`{name}` |")
    lines += ["", "Most self time:", ""]
    lines += [f"- {100 * count / total:.1f}% `{name}`" for name, count in own.most_common(12)]
    return "\n".join(lines) + "\n"


def write_summary(folder: Path) -> Path | None:
    files = sorted(folder.glob("*.txt"))
    if not files:
        return None
    target = folder / "SUMMARY.md"
    target.write_text("# py-spy profiles of the bots (bench/run --profile)\n\n"
                      + "\n".join(summarize(f) for f in files))
    return target


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        print(summarize(Path(argument)))
