"""What an operation stores as its checkpoint at every step, so that a restart after a crash
can tell how far it got. For a restore: which volume is in which state, and which services it
stopped. Written by the restore (coopbot/backups/), read back by the crash recovery here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

VolumeState = Literal["unchanged", "restored", "incomplete"]


@dataclass(frozen=True)
class VolumeRestore:
    name: str
    state: VolumeState
    note: str = ""


def volume_lines(volumes: Sequence[VolumeRestore]) -> list[str]:
    words = {"unchanged": "unchanged", "restored": "restored",
             "incomplete": "INCOMPLETE"}
    return [f"- volume `{v.name}`: {words[v.state]}{': ' + v.note if v.note else ''}"
            for v in volumes]


@dataclass(frozen=True)
class RestoreProgress:
    """How far a restore got, stored as the operation's checkpoint at every step, so a restart
    after a crash can say which volume is in which state and which services it stopped."""

    snapshot: str  # short id
    volumes: tuple[VolumeRestore, ...]
    stopped: tuple[tuple[str, int], ...] = ()  # service -> the replicas it had

    def encode(self) -> str:
        return json.dumps({"snapshot": self.snapshot,
                           "volumes": [[v.name, v.state, v.note] for v in self.volumes],
                           "stopped": [list(s) for s in self.stopped]})

    @staticmethod
    def decode(text: str) -> RestoreProgress | None:
        """None for an empty or unreadable checkpoint (the restore had not begun its work)."""
        try:
            data = json.loads(text)
            return RestoreProgress(
                snapshot=str(data["snapshot"]),
                volumes=tuple(VolumeRestore(str(n), s, str(note)) for n, s, note in
                              data["volumes"] if s in ("unchanged", "restored", "incomplete")),
                stopped=tuple((str(name), int(count)) for name, count in data["stopped"]))
        except (ValueError, KeyError, TypeError):
            return None
