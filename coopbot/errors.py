"""The exception tree. Every error meant for a room carries a short, safe sentence.

    CoopbotError
    ├── ConfigError            config file invalid (one line per problem); CLI exit 2
    ├── UserError              the member asked for something we can refuse with a sentence
    │   ├── UsageError         wrong arguments: carries the command's usage line
    │   ├── UnknownCommand     carries a suggestion
    │   ├── PermissionDenied   carries the role that was needed
    │   ├── NotFound           unknown app, server, recipe, version
    │   └── Busy               another operation holds the app
    ├── AdapterError           a boundary (Matrix, Docker/SSH, git, restic) failed; detail is logged
    │   ├── MatrixError
    │   ├── ServerUnreachable
    │   ├── HostKeyError       unknown or changed SSH host key: never auto-accepted
    │   ├── DockerError
    │   ├── GitError
    │   └── ResticError
    └── OperationFailed        an operation ran and failed (deploy did not converge, ...)

`str(error)` is always safe to post in a room: adapters build it from facts they checked
(names, versions, counts), never from raw library messages that may hold paths, hosts or env values.
The raw detail, when useful, goes in `detail` and is logged only.
"""

from __future__ import annotations

from coopbot.echo import shown


class CoopbotError(Exception):
    """Base class. `str(error)` is the room-safe sentence; `detail` is for the log."""

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class ConfigError(CoopbotError):
    """The config is invalid. `problems` holds one line per problem, each naming its key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class UserError(CoopbotError):
    """A request we refuse with a sentence."""


class UsageError(UserError):
    def __init__(self, message: str, usage: str) -> None:
        super().__init__(f"{message}\nUsage: {usage}")
        self.usage = usage


class UnknownCommand(UserError):
    def __init__(self, name: str, suggestion: str | None) -> None:
        hint = f" Did you mean `{suggestion}`?" if suggestion else ""
        super().__init__(f"Unknown command `{shown(name)}`.{hint} Try `!help`.")
        self.name = name
        self.suggestion = suggestion


class PermissionDenied(UserError):
    def __init__(self, command: str, role: str) -> None:
        super().__init__(f"`{command}` needs the {role} role in this room.")
        self.command = command
        self.role = role


class NotFound(UserError):
    pass


class Busy(UserError):
    pass


class AdapterError(CoopbotError):
    pass


class MatrixError(AdapterError):
    pass


class ServerUnreachable(AdapterError):
    def __init__(self, server: str, reason: str, *, detail: str | None = None) -> None:
        super().__init__(f"server {server} unreachable: {reason}", detail=detail)
        self.server = server
        self.reason = reason


class HostKeyError(AdapterError):
    pass


class DockerError(AdapterError):
    pass


class GitError(AdapterError):
    pass


class ResticError(AdapterError):
    pass


class OperationFailed(CoopbotError):
    pass
