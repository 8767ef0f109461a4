"""How `!apps` names a stack's state from its services (pure)."""

from __future__ import annotations

from dataclasses import replace

from coopbot.operations.status import _stack_state
from coopbot.servers.states import ServiceState

APP = ServiceState(name="s_app", short_name="app", stack="s", image="app:v2",
                   mode="replicated", replicas_desired=1, replicas_running=1,
                   replicas_updated=1, update_state="completed", update_message="",
                   last_error=None, health="healthy")


def test_a_rolled_back_update_whose_old_spec_runs_healthy_is_running() -> None:
    rolled_back = replace(APP, update_state="rollback_completed",
                          last_error="task: non-zero exit (137): dockerexec: unhealthy container")
    assert _stack_state([rolled_back]) == "running"


def test_failing_is_kept_for_what_does_not_run() -> None:
    assert _stack_state([replace(APP, update_state="paused")]) == "failing: app"
    assert _stack_state([replace(APP, update_state="rollback_completed", replicas_updated=0,
                                 replicas_running=0)]) == "failing: app"
    assert _stack_state([replace(APP, health="unhealthy")]) == "failing: app"
    assert _stack_state([replace(APP, update_state="updating")]) == "converging: app"
    assert _stack_state([]) == "not deployed"
