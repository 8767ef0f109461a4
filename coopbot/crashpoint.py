"""Test-only fault injection: kill this process with SIGKILL at a named point.

Off unless the environment variable COOPBOT_TEST_CRASH_AT names the point; the crash tests
set it for the bot subprocess to hit moments a test cannot observe from outside. The points:

- `before-stack-deploy`: a deploy, upgrade or rollback is planned and about to run
  `docker stack deploy` (nothing has changed on the swarm yet);
- `operation-done`: an operation has recorded its result, its lock is not released yet and
  the requester has not been answered;
- `before-answer`: a command has run (an operation's lock is released), its answer is not
  posted yet.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

ENV = "COOPBOT_TEST_CRASH_AT"


def crash_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        log.warning("crash point %s: killing this process (%s is set)", name, ENV)
        os.kill(os.getpid(), signal.SIGKILL)
