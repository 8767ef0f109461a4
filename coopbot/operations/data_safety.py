"""Old code must not be left on migrated data without a way back.

An upgrade that fails after its database migration ran, and is then returned to the previous
version, leaves that version running on data the new one may have changed. The snapshot taken
before the upgrade (backup_first) is the way back; policy `restore_on_failure` says what to do
with it: `ask` (default) offers `!restore <app> <snapshot>` in the failure answer, `always`
restores it as part of the return, `never` only names it. A `!rollback` to a version an
upgrade took a snapshot of offers the same restore.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from coopbot.config import RestoreRule, RoomConfig
from coopbot.errors import CoopbotError
from coopbot.ids import OperationID
from coopbot.recipes.apps import App
from coopbot.status_message import Progress

log = logging.getLogger(__name__)

# (operation kind, room, app) -> the policy's restore_on_failure.
RestoreOnFailure = Callable[[str, RoomConfig | None, str], RestoreRule]


class SnapshotRestorer(Protocol):
    """The backups side, as the deployer needs it."""

    async def restore_locked(self, app: App, operation_id: OperationID, snapshot_id: str,
                             progress: Progress, room: RoomConfig | None) -> str:
        """Restore a snapshot inside an operation that holds the app's lock; a room sentence
        of the result (raises CoopbotError when it fails)."""
        ...

    async def pre_upgrade_snapshot(self, app: App, version: str) -> str | None:
        """The newest verified snapshot taken before an upgrade from `version`."""
        ...


class DataSafety:
    def __init__(self, restorer: SnapshotRestorer, rule: RestoreOnFailure) -> None:
        self._restorer = restorer
        self._rule = rule

    async def after_return(self, app: App, kind: str, room: RoomConfig | None,
                           operation_id: OperationID, snapshot: str | None, returned: bool,
                           target: str, progress: Callable[[str], Awaitable[None]],
                           relay: Progress) -> str:
        """What to say (and do) about the data once a failed operation returned, or tried to
        return, to the previous version. "" when no snapshot was taken first."""
        if snapshot is None:
            return ""
        rule = self._rule(kind, room, app.name)
        if not returned:
            # Old data under whatever runs now would be a guess: only name the snapshot.
            return (f"The data from before the {kind} is in snapshot `{snapshot}`; restore it "
                    f"once the app runs the version it came from (`!restore {app.name} "
                    f"{snapshot}`).")
        if rule == "never":
            return f"The data from before the {kind} is in snapshot `{snapshot}`."
        if rule == "ask":
            return (f"{target} may already have migrated the data, which the previous version "
                    f"now runs on: `!restore {app.name} {snapshot}` puts back the data from "
                    f"before the {kind} (under the restore policy).")
        await progress(f"{kind} `{app.name}`: restoring the data from before it "
                       f"(snapshot `{snapshot}`)...")
        try:
            done = await self._restorer.restore_locked(app, operation_id, snapshot, relay, room)
        except CoopbotError as error:
            log.warning("restore of %s after a failed %s failed: %s (%s)", app.name, kind,
                        error, error.detail)
            return (f"Restoring the data from before the {kind} (snapshot `{snapshot}`) "
                    f"failed: {error}")
        return f"The data from before the {kind} is back: {done}"

    async def rollback_offer(self, app: App, version: str) -> str:
        """After a rollback to `version`: the restore an upgrade from it makes possible."""
        try:
            snapshot = await self._restorer.pre_upgrade_snapshot(app, version)
        except CoopbotError as error:
            log.info("could not look for a pre-upgrade snapshot of %s: %s", app.name, error)
            return ""
        if snapshot is None:
            return ""
        return (f"The upgrade from {version} took snapshot `{snapshot}` first: if the newer "
                f"version migrated the data, `!restore {app.name} {snapshot}` puts it back as "
                "it was before that upgrade.")
