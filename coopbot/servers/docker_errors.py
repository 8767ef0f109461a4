"""Translate docker SDK / requests failures into the error tree, at the adapter boundary.

The sentence is built from what we know (server, action, HTTP status); the daemon's own text
goes to `detail`, which is only logged.
"""

from __future__ import annotations

import docker.errors
import requests.exceptions

from coopbot.errors import CoopbotError, DockerError, NotFound, ServerUnreachable

# Failures that mean "the engine is not reachable" rather than "the engine said no".
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.RequestException,
    docker.errors.DockerException,
    OSError,
)


def translate_docker_error(server: str, action: str, exc: BaseException) -> CoopbotError:
    """`action` is a verb phrase naming what was tried, e.g. "list the services"."""
    if isinstance(exc, CoopbotError):
        return exc
    detail = repr(exc)
    if isinstance(exc, docker.errors.NotFound):
        return NotFound(f"could not {action} on server {server}: it does not exist", detail=detail)
    if isinstance(exc, docker.errors.APIError):
        explanation = str(exc.explanation or "")
        if "not a swarm manager" in explanation:
            return DockerError(
                f"could not {action} on server {server}: it is not a swarm manager", detail=detail
            )
        return DockerError(
            f"could not {action} on server {server}: Docker refused (HTTP {exc.status_code})",
            detail=f"{detail}: {explanation}",
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return ServerUnreachable(server, "Docker did not answer in time", detail=detail)
    cause = _root_os_error(exc)
    if isinstance(cause, FileNotFoundError):
        return ServerUnreachable(server, "its Docker socket does not exist", detail=detail)
    if isinstance(cause, PermissionError):
        return ServerUnreachable(server, "no permission to use its Docker socket", detail=detail)
    if isinstance(exc, TRANSPORT_ERRORS):
        return ServerUnreachable(server, "Docker is not answering", detail=detail)
    return DockerError(f"could not {action} on server {server}", detail=detail)


def _root_os_error(exc: BaseException) -> OSError | None:
    """The OSError buried in requests/urllib3 wrappers (they nest it in args or __cause__)."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and not isinstance(item, requests.exceptions.RequestException):
            return item
        todo.extend([item.__cause__, item.__context__, *item.args, getattr(item, "reason", None)])
    return None
