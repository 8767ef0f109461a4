"""Servers: Docker engines reached through their local socket or a strict SSH tunnel."""

from coopbot.servers.engine import DockerEngine
from coopbot.servers.pool import ServerPool
from coopbot.servers.spec import ServerSpec
from coopbot.servers.states import (
    ConvergenceProgress,
    ConvergenceResult,
    NodeState,
    ServerInfo,
    ServiceFailure,
    ServiceState,
)
from coopbot.servers.tunnel import SSHTunnel

__all__ = [
    "ConvergenceProgress",
    "ConvergenceResult",
    "DockerEngine",
    "NodeState",
    "SSHTunnel",
    "ServerInfo",
    "ServerPool",
    "ServerSpec",
    "ServiceFailure",
    "ServiceState",
]
