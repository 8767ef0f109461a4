"""The operations coopbot runs: one name each, for commands, policies, locks and the audit.

A low module of its own: the config validates policies against these names, and the
operations package builds on the config.
"""

from __future__ import annotations

from enum import StrEnum


class OperationKind(StrEnum):
    DEPLOY = "deploy"
    UPGRADE = "upgrade"
    ROLLBACK = "rollback"
    UNDEPLOY = "undeploy"
    BACKUP = "backup"
    RESTORE = "restore"
    EXPORT = "export"
    NEW = "new"
    CONFIG = "config"
    SECRET = "secret"
    RESTART = "restart"
    CMD = "cmd"
    REMOVE = "remove"
    PRUNE = "prune"  # unused images and stopped containers on every node of a server
