"""What a failed operation does with the snapshot it took first (restore_on_failure), and what a
rollback offers: each rule, a return that failed, no snapshot, a restore that fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from coopbot.config import RestoreRule, RoomConfig
from coopbot.errors import OperationFailed
from coopbot.ids import OperationID
from coopbot.operations.data_safety import DataSafety
from coopbot.recipes.apps import App
from coopbot.status_message import Progress

APP = App(name="blog.example.org", server="prod", domain="blog.example.org",
          stack_name="blog_example_org", recipe="blog", version="1.0.0", env={},
          env_path=Path("/nonexistent"), timeout=60, compose_files=("compose.yml",),
          modifiers={})


class Restorer:
    def __init__(self, fail: bool = False, pre_upgrade: str | None = None) -> None:
        self.restored: list[str] = []
        self.fail = fail
        self.pre_upgrade = pre_upgrade

    async def restore_locked(self, app: App, operation_id: OperationID, snapshot_id: str,
                             progress: Progress, room: RoomConfig | None) -> str:
        if self.fail:
            raise OperationFailed("volume `db` could not be emptied")
        self.restored.append(snapshot_id)
        return f"`{app.name}` restored from snapshot `{snapshot_id}`."

    async def pre_upgrade_snapshot(self, app: App, version: str) -> str | None:
        return self.pre_upgrade if version == "1.0.0" else None


async def said(line: str) -> None:
    pass


async def after(rule: RestoreRule, restorer: Restorer, *, snapshot: str | None = "ab12cd34",
                returned: bool = True) -> str:
    safety = DataSafety(restorer, lambda kind, room, app: rule)
    return await safety.after_return(APP, "upgrade", None, OperationID(7), snapshot, returned,
                                     "2.0.0", said, said)


@pytest.mark.parametrize("rule, expected, restored", [
    ("ask", "2.0.0 may already have migrated the data, which the previous version now runs "
            "on: `!restore blog.example.org ab12cd34` puts back the data from before the "
            "upgrade (under the restore policy).", []),
    ("always", "The data from before the upgrade is back: `blog.example.org` restored from "
               "snapshot `ab12cd34`.", ["ab12cd34"]),
    ("never", "The data from before the upgrade is in snapshot `ab12cd34`.", []),
])
async def test_each_rule(rule: RestoreRule, expected: str, restored: list[str]) -> None:
    restorer = Restorer()
    assert await after(rule, restorer) == expected
    assert restorer.restored == restored


@pytest.mark.parametrize("rule", ["ask", "always", "never"])
async def test_a_failed_return_only_names_the_snapshot(rule: RestoreRule) -> None:
    restorer = Restorer()
    answer = await after(rule, restorer, returned=False)
    assert answer.startswith("The data from before the upgrade is in snapshot `ab12cd34`; "
                             "restore it once the app runs the version it came from")
    assert restorer.restored == []


async def test_nothing_to_say_without_a_snapshot() -> None:
    assert await after("always", Restorer(), snapshot=None) == ""


async def test_a_restore_that_fails_is_said_not_raised() -> None:
    answer = await after("always", Restorer(fail=True))
    assert answer == ("Restoring the data from before the upgrade (snapshot `ab12cd34`) "
                      "failed: volume `db` could not be emptied")


async def test_a_rollback_offers_the_snapshot_of_the_upgrade_from_its_version() -> None:
    safety = DataSafety(Restorer(pre_upgrade="ff00ff00"), lambda kind, room, app: "ask")
    offer = await safety.rollback_offer(APP, "1.0.0")
    assert "`!restore blog.example.org ff00ff00`" in offer
    assert await safety.rollback_offer(APP, "0.9.0") == ""
