"""The operations coopbot runs: one name each, for commands, policies, locks and the audit."""

from __future__ import annotations

from enum import StrEnum


class OperationKind(StrEnum):
    DEPLOY = "deploy"
    UPGRADE = "upgrade"
    ROLLBACK = "rollback"
    UNDEPLOY = "undeploy"
    BACKUP = "backup"
    RESTORE = "restore"
