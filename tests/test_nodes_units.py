"""Multi-node views, pure: placement constraints, a service without a running task, the
apps a drained node's alert names, node-aware health, tables for phones."""

from __future__ import annotations

from typing import Any

from coopbot.replies import Reply
from coopbot.servers.placement import allows, eligible
from coopbot.servers.states import NodeState, ServiceState
from coopbot.servers.swarm_parse import service_state
from coopbot.watch.conditions import no_task, node_conditions

W1 = NodeState("w1", "worker", "ready", "active", node_id="id1", labels={"disk": "ssd"})
W2 = NodeState("w2", "worker", "ready", "drain", node_id="id2")
M = NodeState("m", "manager", "down", "active", node_id="id3")


def test_constraints_match_known_attributes_and_assume_the_rest() -> None:
    assert allows(["node.hostname == w1"], W1) and not allows(["node.hostname==w2"], W1)
    assert allows(["node.role != manager", "node.labels.disk == ssd"], W1)
    assert not allows(["node.labels.disk == hdd"], W1)
    assert not allows(["node.labels.gpu == yes"], W1)  # a missing label equals nothing
    assert allows(["node.platform.os == linux"], W1)  # unknown to coopbot: never refused
    assert [n.hostname for n in eligible([], [W1, W2, M])] == ["w1"]  # ready and active
    assert eligible(["node.hostname == w2"], [W1, W2, M]) == []


def service(**extra: Any) -> ServiceState:
    fields: dict[str, Any] = dict(
        name="s_app", short_name="app", stack="s", image="i", mode="replicated",
        replicas_desired=1, replicas_running=0, replicas_updated=0, update_state=None,
        update_message="", last_error=None, health="no running task", unplaceable=True,
        task_error="no suitable node (1 node not available for new tasks)",
        recent_nodes=("w2",), last_node="w2")
    fields.update(extra)
    return ServiceState(**fields)


def test_a_pinned_task_on_a_drained_node_is_no_running_task_and_did_not_move() -> None:
    [condition] = no_task("srv", service(), {"w2": W2})
    assert condition.message == ("Service app of s on server srv has no running task: its node "
                                 "w2 is drained and no other node may run it (its placement "
                                 "constraints).")
    assert condition.severity == "critical" and condition.recovery is not None
    [drained] = node_conditions("srv", W2, [service()])
    assert "Apps with tasks there: s (service app: did NOT move" in drained.message
    moved = service(replicas_running=1, replicas_updated=1, unplaceable=False, nodes=("w1",),
                    health="none")
    assert no_task("srv", moved, {"w2": W2}) == []
    [drained] = node_conditions("srv", W2, [moved])
    assert "s (service app: moved to w1)" in drained.message
    # A first deploy whose task is merely starting has no error: not announced.
    assert no_task("srv", service(unplaceable=False), {}) == []


def task(state: str, node: str | None, err: str | None = None, desired: str = "running",
         stamp: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    status: dict[str, Any] = {"State": state, "Timestamp": stamp}
    if err:
        status["Err"] = err
    found: dict[str, Any] = {"ServiceID": "x", "DesiredState": desired, "Status": status}
    if node:
        found["NodeID"] = node
    return found


def test_health_node_and_error_come_from_the_current_task() -> None:
    spec = {"Spec": {"Name": "s_app", "Labels": {"com.docker.stack.namespace": "s"},
                     "TaskTemplate": {"ContainerSpec": {"Image": "i"}},
                     "Mode": {"Replicated": {"Replicas": 1}}}}
    old = task("failed", "id1", "task: non-zero exit (1)", desired="shutdown",
               stamp="2026-01-01T00:00:01Z")
    gone = task("shutdown", "id2", desired="shutdown", stamp="2026-01-01T00:00:02Z")
    pending = task("pending", None, "no suitable node", stamp="2026-01-01T00:00:03Z")
    state = service_state(spec, [old, gone, pending], [pending], {"id1": "w1", "id2": "w2"})
    assert state.health == "no running task" and state.nodes == ()
    assert state.task_error == "no suitable node"  # not the older task's exit
    assert state.last_node == "w2" and state.recent_nodes == ("w1", "w2")
    running = task("running", "id1", stamp="2026-01-01T00:00:04Z")
    state = service_state(spec, [old, running], [running], {"id1": "w1"})
    assert state.health == "none" and state.nodes == ("w1",) and state.task_error is None


def test_a_table_is_aligned_in_plain_text_and_a_real_table_in_html() -> None:
    reply = Reply.table("**`a`** on s:", ("service", "health"), [("app", "no running task")])
    assert reply.text == "`a` on s:\nservice  health\napp      no running task"
    assert "<table><thead><tr><th>service</th><th>health</th></tr></thead>" in reply.html
    assert "<td>no running task</td>" in reply.html and "<pre>" not in reply.html
