"""Which node's copy of an app's volumes is the app's data.

Volumes are local to a node: a task that once ran elsewhere (before a placement constraint,
after a drain or a node failure) leaves a same-named, stale copy there. The app's data is on
the node of its running task; for a stopped app, on the one node that has a volume of that
name, or the node the command (`--node`) or else the config names when several have one.
Anything else is refused, naming the nodes: a backup or restore of the wrong copy is worse
than none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from coopbot.errors import OperationFailed, UserError
from coopbot.servers.containers import ServiceMounts
from coopbot.servers.engine import DockerEngine
from coopbot.servers.node_helpers import SwarmNodeRef


@dataclass(frozen=True)
class DataNode:
    node_id: str
    hostname: str


async def locate_data(engine: DockerEngine, app: str, server: str, volumes: Sequence[str],
                      services: Iterable[ServiceMounts],
                      chosen: Mapping[str, str], node: str | None = None) -> DataNode:
    """The node holding the app's `volumes`; `chosen` is the config's app -> node hostname,
    `node` the command's choice (a hostname or node id), which comes first."""
    nodes = {n.node_id: n for n in await engine.helpers.nodes()}
    if node is not None and not any(node in (n.hostname, n.node_id) for n in nodes.values()):
        raise UserError(f"`{node}` is not a node of server {server}; its nodes are "
                        f"{_list(nodes, nodes)}.")
    if not volumes:
        own = await engine.helpers.own_node()
        return DataNode(own, _name(nodes, own))
    wanted = set(volumes)
    running: dict[str, list[str]] = {}
    for service in services:
        if not any(m.source in wanted for m in service.mounts):
            continue
        task = await engine.containers.running_task(service.name)
        if task is not None:
            running.setdefault(task.node_id, []).append(service.short_name)
    if len(running) > 1:
        where = "; ".join(f"`{', '.join(s)}` on {_name(nodes, n)}" for n, s in running.items())
        raise OperationFailed(
            f"the services of `{app}` that use its volumes run on different nodes ({where}), "
            "so no single copy of its data can be backed up or restored; pin them to one node")
    if running:
        where = next(iter(running))
        if node is not None and node not in (where, _name(nodes, where)):
            raise OperationFailed(
                f"`{app}` runs on node {_name(nodes, where)}, so its data is the copy there, "
                f"not the one on `{node}`; stop the app first to act on another node's copy")
        return DataNode(where, _name(nodes, where))
    holders = await _holders(engine, nodes.values(), wanted)
    pick = node if node is not None else chosen.get(app)
    if pick is not None:
        match = [n for n in holders if pick in (nodes[n].hostname, n)]
        if not match:
            named = ("`--node`" if node is not None
                     else f"backups.{server}.volume_nodes")
            raise OperationFailed(
                f"{named} names node `{pick}` for `{app}`, but that node has none of its "
                f"volumes ({_list(nodes, holders) or 'no node has them'})")
        return DataNode(match[0], _name(nodes, match[0]))
    if not holders:
        raise OperationFailed(f"`{app}` runs no task and no node of server {server} has its "
                              "volumes, so there is no data to act on")
    if len(holders) > 1:
        raise OperationFailed(
            f"`{app}` runs no task and its volumes exist on several nodes: "
            f"{_list(nodes, holders)}. Only one copy is its data and nothing says which: "
            f"start the app, name the node with `--node <node>`, or set "
            f"backups.{server}.volume_nodes.{app} to the node's name")
    return DataNode(holders[0], _name(nodes, holders[0]))


async def _holders(engine: DockerEngine, nodes: Iterable[SwarmNodeRef],
                   wanted: set[str]) -> list[str]:
    """Reachable nodes having a volume of one of `wanted`'s names."""
    found = []
    for node in nodes:
        if node.state != "ready":
            continue
        if wanted & await engine.helpers.volume_names(node.node_id):
            found.append(node.node_id)
    return found


def _name(nodes: Mapping[str, SwarmNodeRef], node_id: str) -> str:
    ref = nodes.get(node_id)
    return ref.hostname if ref else node_id


def _list(nodes: Mapping[str, SwarmNodeRef], ids: Iterable[str]) -> str:
    return ", ".join(f"`{_name(nodes, n)}`" for n in ids)
