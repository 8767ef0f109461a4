"""What coopbot's dependencies cost at start: RSS (VmRSS) and time after importing each in turn,
in a fresh interpreter. `python -m bench.importcost` prints one JSON line per step."""

from __future__ import annotations

import importlib
import json
import time

from bench.procs import rss_kib

STEPS = (
    ("nio", "matrix-nio (as the echo bot uses it)"),
    ("nio.crypto", "nio's encryption (vodozemac, peewee store)"),
    ("pydantic", "pydantic"),
    ("yaml", "PyYAML"),
    ("aiosqlite", "aiosqlite"),
    ("docker", "docker SDK"),
    ("paramiko", "paramiko"),
    ("git", "GitPython"),
    ("coopbot.app", "coopbot itself (composition root and everything it imports)"),
)


def main() -> None:
    import os

    pid = os.getpid()
    print(json.dumps({"step": "python", "what": "the interpreter", "rss_kib":
                      rss_kib(pid)["VmRSS"], "seconds": 0.0}))
    for module, what in STEPS:
        started = time.perf_counter()
        importlib.import_module(module)
        print(json.dumps({"step": module, "what": what, "rss_kib": rss_kib(pid)["VmRSS"],
                          "seconds": time.perf_counter() - started}), flush=True)


if __name__ == "__main__":
    main()
