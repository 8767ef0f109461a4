"""backupbot hooks: a command run inside the service's running container, exit status checked.

Recipes write hooks for backup-bot-two, which strips a leading `sh -c`/`bash -c` and its
quotes and runs the rest with bash's pipefail (so `dump | gzip > f` fails when the dump does).
The same here: the command travels in an exec environment variable (no quoting to get
wrong) and runs in bash with pipefail where the image has bash, else in sh.
"""

from __future__ import annotations

import logging

from coopbot.errors import OperationFailed
from coopbot.redact import Redactor
from coopbot.servers.containers import RunningTask
from coopbot.servers.engine import DockerEngine

log = logging.getLogger(__name__)

HOOK_VARIABLE = "COOPBOT_HOOK"
RUNNER = (
    f'if command -v bash >/dev/null 2>&1; then exec bash -o pipefail -c "${HOOK_VARIABLE}"; fi; '
    f'exec sh -c "${HOOK_VARIABLE}"'
)
OUTPUT_LINES_IN_ROOM = 3
OUTPUT_LINE_WIDTH = 200


def unwrap(command: str) -> str:
    """`sh -c 'pg_dump ... > f'` -> `pg_dump ... > f`, as backup-bot-two does."""
    command = command.strip()
    for shell in ("bash -c", "sh -c"):
        if command.startswith(shell):
            command = command[len(shell):].strip()
            break
    if len(command) >= 2 and command[0] == command[-1] and command[0] in "'\"":
        command = command[1:-1]
    return command


async def run_hook(engine: DockerEngine, task: RunningTask, short_name: str, label: str,
                   command: str, redact: Redactor, *, timeout: float) -> None:
    """Run one hook in the task's container, on whichever node it runs; OperationFailed
    (with a few redacted output lines) when it fails."""
    result = await engine.helpers.exec_in_task(
        task, ["sh", "-c", RUNNER], env={HOOK_VARIABLE: unwrap(command)}, timeout=timeout,
    )
    output = redact(result.output).strip()
    log.info("%s of service %s exited %d; output: %s", label, task.service, result.exit_code,
             output[-2000:] or "(none)")
    if result.exit_code == 0:
        return
    lines = [line[:OUTPUT_LINE_WIDTH] for line in output.splitlines()[-OUTPUT_LINES_IN_ROOM:]]
    shown = ("\nLast output lines (env values redacted):\n" + "\n".join(f"    {x}" for x in lines)
             if lines else "")
    raise OperationFailed(
        f"the {label} of service `{short_name}` failed (exit status {result.exit_code}).{shown}"
    )
