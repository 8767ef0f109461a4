"""Build the docker SDK client: one connection pool for all endpoints, sized to our threads.

docker-py keeps one pool PER URL PATH, so every endpoint ever called (`/info`, `/tasks`,
`/services/<id>/logs`, ...) keeps its own idle connection. Through the SSH tunnel each of those
is an SSH channel plus a remote `docker system dial-stdio` process, and sshd refuses the 11th
(MaxSessions 10: "no more sessions"). One shared pool keeps it to `max_connections`.
"""

from __future__ import annotations

from typing import Any

import docker
from docker.transport import UnixHTTPAdapter


class _OnePoolAdapter(UnixHTTPAdapter):  # type: ignore[misc]  # docker ships no type hints
    def get_connection(self, url: str, proxies: Any = None) -> Any:
        return super().get_connection("docker", proxies)


def open_api_client(socket_path: str, *, timeout: float, max_connections: int) -> Any:
    """A `docker.APIClient` on a UNIX socket (blocking: it asks the daemon its API version)."""
    # "auto" negotiates the daemon's API version (1.41 for Debian's 20.10).
    api = docker.APIClient(base_url=f"unix://{socket_path}", version="auto", timeout=timeout)
    adapter = _OnePoolAdapter(f"http+unix://{socket_path}", timeout, max_pool_size=max_connections)
    previous = api._custom_adapter
    api.mount("http+docker://", adapter)
    api._custom_adapter = adapter
    previous.close()  # drops the connection used for the version check
    return api
