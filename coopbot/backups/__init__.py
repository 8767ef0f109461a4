"""App backups with restic, honouring backup-bot-two's labels, verified after every snapshot.

    labels.py    what to back up (backupbot.* labels + the services' volume mounts)
    restic.py    restic in a helper container on the server's node
    output.py    restic's --json output
    verify.py    is a snapshot a real backup?
    hooks.py     pre/post hooks inside the service's running container
    target.py    one app as backups see it
    backup.py    the backup flow;  restore.py  the restore flow
    service.py   BackupService: locks, operation records, what commands call
    schedule.py  BackupScheduler: scheduled backups + retention
"""

from coopbot.backups.output import Snapshot
from coopbot.backups.password import read_password
from coopbot.backups.results import BackupResult, RestoreResult, ScheduledBackup
from coopbot.backups.schedule import BackupScheduler, next_run
from coopbot.backups.service import BackupService

__all__ = [
    "BackupResult",
    "BackupScheduler",
    "BackupService",
    "RestoreResult",
    "ScheduledBackup",
    "Snapshot",
    "next_run",
    "read_password",
]
