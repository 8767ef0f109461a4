"""Which nodes a service's placement constraints allow. Pure.

Swarm's syntax: `<attribute> == <value>` or `!=`, all of them must hold. The attributes
coopbot knows from a node listing are matched; any other (node.platform.*, engine.labels.*)
is assumed to hold, so a check built on this can only ever warn too little, never refuse a
node swarm would use.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from coopbot.servers.states import NodeState

_CONSTRAINT = re.compile(r"^\s*([\w.\-]+)\s*(==|!=)\s*(.*?)\s*$")


def allows(constraints: Iterable[str], node: NodeState) -> bool:
    for constraint in constraints:
        match = _CONSTRAINT.match(constraint)
        if match is None:
            continue  # swarm itself refuses a malformed one at deploy time
        attribute, operator, wanted = match.groups()
        actual = _attribute(node, attribute)
        if actual is None:
            continue
        if (actual == wanted) != (operator == "=="):
            return False
    return True


def eligible(constraints: Sequence[str], nodes: Iterable[NodeState], *,
             ready_only: bool = True) -> list[NodeState]:
    """The nodes that may run a task with `constraints` (ready and active ones by default)."""
    return [n for n in nodes if allows(constraints, n)
            and (not ready_only or (n.state == "ready" and n.availability == "active"))]


def _attribute(node: NodeState, attribute: str) -> str | None:
    if attribute == "node.id":
        return node.node_id
    if attribute == "node.hostname":
        return node.hostname
    if attribute == "node.role":
        return node.role
    if attribute.startswith("node.labels."):
        # A missing label never equals a value (and always differs from one).
        return node.labels.get(attribute.removeprefix("node.labels."), "")
    return None
