"""The config file: YAML validated into typed, frozen models.

Validation is pydantic's (a maintained validator that names the key of every problem); this module
only shapes its errors into one sentence per problem and resolves secrets (`*_file`, `${ENV}`).
Loading never raises anything but ConfigError, so the CLI can print the problems and exit 2.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from coopbot.errors import ConfigError
from coopbot.operation_kinds import OperationKind
from coopbot.recovery_key import BadRecoveryKey, decode_recovery_key

MXID = re.compile(r"^@[^:\s]+:[A-Za-z0-9.\-\[\]:]+$")
# Room ids of version 12+ rooms have no server part (`!hash`); aliases always have one.
ROOM_REF = re.compile(r"^(![^:\s]+(:[A-Za-z0-9.\-\[\]:]+)?|#[^:\s]+:[A-Za-z0-9.\-\[\]:]+)$")
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
HOMESERVER = re.compile(r"^[A-Za-z0-9.\-\[\]:]+$")


class Strict(BaseModel):
    """Unknown keys are errors (a typo must not silently disable a setting)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _check_mxid(value: str) -> str:
    if not MXID.match(value):
        raise ValueError(f"{value!r} is not a Matrix user id like @name:server")
    return value


UserId = Annotated[str, AfterValidator(_check_mxid)]
# YAML has no path type: paths arrive as strings, so these fields convert instead of being strict.
FilePath = Annotated[Path, Field(strict=False)]


class MatrixConfig(Strict):
    homeserver: str
    user_id: UserId
    password: str | None = None
    password_file: FilePath | None = None
    access_token: str | None = None
    access_token_file: FilePath | None = None
    device_name: str = "coopbot"
    store: FilePath = Path("state/matrix")
    command_prefix: str = "!"
    # Commands that reached the homeserver more than this many seconds before the bot came up
    # are answered as expired instead of run.
    offline_grace_seconds: float = Field(default=5.0, ge=0)
    # Give the account a cross-signing identity and sign the bot's device with it, so clients
    # that exclude insecure devices (Element's direction) share room keys with the bot.
    cross_signing: bool = True
    # A recovery key (Element's format) opening the account's secret storage, where the private
    # cross-signing keys are also kept: a new device of the bot then signs itself. At most one.
    recovery_key: str | None = None
    recovery_key_file: FilePath | None = None
    # Confirm a member's emoji verification of the bot's device without a bot admin's
    # `coopbot verify <user> <device>`. Convenient, but then nobody compares the emoji.
    auto_confirm_verification: bool = False

    @field_validator("homeserver")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("command_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("must be a non-empty string without spaces")
        return value

    @model_validator(mode="after")
    def _one_recovery_key(self) -> MatrixConfig:
        if self.recovery_key is not None and self.recovery_key_file is not None:
            raise ValueError("give at most one of recovery_key, recovery_key_file")
        return self

    @model_validator(mode="after")
    def _one_credential(self) -> MatrixConfig:
        given = [k for k in ("password", "password_file", "access_token", "access_token_file")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of password, password_file, access_token, access_token_file"
                + (f" (found {', '.join(given)})" if given else "")
            )
        return self


class RoleRule(Strict):
    """A role is held by whoever has at least `power_level` in the room, or is listed in `users`."""

    power_level: int | None = None
    users: list[UserId] = []


DURATION = re.compile(r"^(\d+)([smhd])$")
DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Policies are keyed by operation kind; the commands declare theirs from the same enum.
OPERATIONS = tuple(kind.value for kind in OperationKind)


def parse_duration(text: str) -> int:
    """`90s`, `30m`, `24h`, `7d` -> seconds."""
    match = DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30m, 24h or 7d")
    return int(match.group(1)) * DURATION_SECONDS[match.group(2)]


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[str, AfterValidator(_check_duration)]


# What a failed operation does with the snapshot it took first (policies.<op>.restore_on_failure).
RestoreRule = Literal["ask", "always", "never"]


class PolicyConfig(Strict):
    """When an operation needs the co-op's approval first. Every key is optional so that room and
    app overrides only change what they name; unset keys fall back to the next level."""

    # Approvals needed (0: runs at once, but `backup_first` still applies).
    approvals: int | None = Field(default=None, ge=0, le=50)
    # The role a voter must hold, checked again when votes are counted.
    approver_role: str | None = None
    # How long a request stays open.
    expires: Duration | None = None
    # Whether the requester's own vote counts.
    self_vote: bool | None = None
    # Whether one "no" from an eligible approver blocks the request.
    veto: bool | None = None
    # Whether a verified backup must succeed before the operation runs.
    backup_first: bool | None = None
    # When the operation fails after that backup and returns to the previous version, whose
    # code may now run on data the new one migrated: offer the restore (ask), restore it
    # (always), or only name the snapshot (never).
    restore_on_failure: RestoreRule | None = None
    # Whether upgrades the bot starts itself (auto-update) are approved without votes.
    auto_approve_autoupdates: bool | None = None
    # Whether the command and the votes count only from devices their owner has cross-signed
    # (checked again when votes are counted); needs an encrypted room.
    verified_devices_only: bool | None = None
    # Votes of any kind (consent, stand aside, block) needed before a decision.
    participation: int | None = Field(default=None, ge=0, le=50)
    # Who has one vote: each person, or each organisation (see `organisations`).
    count: Literal["people", "organisations"] | None = None
    # An organisation's vote: its latest member's, or its members' when they all agree
    # (unanimous; else it counts as a stand aside).
    organisation_rule: Literal["latest", "unanimous"] | None = None
    # Lazy consensus: the request is decided when this time runs out (instead of `expires`):
    # it passes with `approvals` consents and `participation` votes and no block.
    lazy: Duration | None = None
    # Remind the room who has not voted yet, once, this long before the deadline.
    remind: Duration | None = None

    @model_validator(mode="after")
    def _remind_before_deadline(self) -> PolicyConfig:
        deadline = self.lazy or self.expires
        if self.remind is not None and deadline is not None and (
                parse_duration(self.remind) >= parse_duration(deadline)):
            key = "lazy" if self.lazy else "expires"
            raise ValueError(f"remind: {self.remind} must be shorter than {key} ({deadline})")
        return self


class OrganisationConfig(Strict):
    """A member organisation of a federation: its people by MXID or by homeserver name (a
    listed MXID wins over a homeserver)."""

    users: list[UserId] = []
    servers: list[str] = []

    @field_validator("servers")
    @classmethod
    def _servers(cls, value: list[str]) -> list[str]:
        for server in value:
            if not HOMESERVER.match(server):
                raise ValueError(f"{server!r} is not a homeserver name like example.org")
        return value


class RoomConfig(Strict):
    servers: list[str] = []
    apps: list[str] = ["*"]
    notifications: bool = False
    # Notification rooms (refs under `rooms`) that a `!mute` in this room silences too.
    mute_rooms: list[str] = []
    roles: dict[str, RoleRule] = {}
    # Per-operation policy overrides for this room.
    policies: dict[str, PolicyConfig] = {}


class InviteConfig(Strict):
    users: list[UserId] = []
    servers: list[str] = []


class LocalServer(Strict):
    kind: Literal["local"] = "local"
    socket: str = "/var/run/docker.sock"
    command_timeout: float = Field(default=60.0, gt=0)
    # Preflight requires every image to be on the node already (servers without a registry).
    check_images: bool = False
    # Runs the docker CLI on a node to exec into its tasks or list its volumes.
    node_helper_image: str = "docker:24-cli"


class SSHServer(Strict):
    kind: Literal["ssh"] = "ssh"
    host: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str = "root"
    key_file: FilePath
    known_hosts_file: FilePath
    connect_timeout: float = Field(default=10.0, gt=0)
    command_timeout: float = Field(default=60.0, gt=0)
    check_images: bool = False
    node_helper_image: str = "docker:24-cli"


ServerConfig = Annotated[LocalServer | SSHServer, Field(discriminator="kind")]


class RecipesConfig(Strict):
    url_template: str = "https://git.coopcloud.tech/coop-cloud/{recipe}.git"
    overrides: dict[str, str] = {}
    cache: FilePath = Path("state/recipes")

    @field_validator("url_template")
    @classmethod
    def _template(cls, value: str) -> str:
        if "{recipe}" not in value:
            raise ValueError("must contain {recipe}")
        return value


class RetentionConfig(Strict):
    """restic `forget --prune` policy applied after scheduled backups."""

    keep_last: int | None = Field(default=None, ge=1)
    keep_daily: int | None = Field(default=7, ge=1)
    keep_weekly: int | None = Field(default=4, ge=1)
    keep_monthly: int | None = Field(default=6, ge=1)


EXPORTS_DIR = re.compile(r"^/[A-Za-z0-9._/-]*$")
SCHEDULE = re.compile(r"^(hourly|daily( [0-2][0-9]:[0-5][0-9])?)$")


class RepositoryConfig(Strict):
    """A restic repository and what opens it."""

    # A path on that server, or `sftp:user@host:/path`, or `s3:https://host/bucket`.
    repository: str
    # The repository password: exactly one of a file or an environment variable's name.
    password_file: FilePath | None = None
    password_env: str | None = None
    # Extra environment for restic (e.g. AWS_ACCESS_KEY_ID for s3:), one KEY=value per line.
    environment_file: FilePath | None = None

    @model_validator(mode="after")
    def _one_password(self) -> RepositoryConfig:
        if (self.password_file is None) == (self.password_env is None):
            raise ValueError("give exactly one of password_file, password_env")
        return self


class BackupConfig(RepositoryConfig):
    """Where one server's app backups go (a restic repository) and how they run."""

    # The image that runs restic on the node holding the volumes.
    helper_image: str = "restic/restic:0.16.4"
    # A path repository is on one node's disk; true when it is storage shared by every node
    # (then volumes on workers can be backed up into it too).
    shared_repository: bool = False
    # app -> node hostname: whose copy to back up when a stopped app's volumes exist on more
    # than one node (a running app's data is on the node of its task).
    volume_nodes: dict[str, str] = {}
    retention: RetentionConfig = RetentionConfig()
    # "hourly", "daily" or "daily HH:MM" (UTC); none: only on request and before operations.
    schedule: str | None = None
    # More repositories (e.g. off-site) that receive a copy of each verified snapshot, by name.
    copies: dict[str, RepositoryConfig] = {}
    # Where `!export` writes its tar.gz files on the server (created when missing).
    exports_dir: str = "/var/lib/coopbot/exports"

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None and not SCHEDULE.match(value):
            raise ValueError("must be hourly, daily or daily HH:MM")
        return value

    @field_validator("exports_dir")
    @classmethod
    def _exports_dir(cls, value: str) -> str:
        if not EXPORTS_DIR.match(value) or ".." in value.split("/"):
            raise ValueError("must be an absolute path on the server (letters, digits, . _ - /)")
        return value.rstrip("/") or "/"

    @field_validator("copies")
    @classmethod
    def _copy_names(cls, value: dict[str, RepositoryConfig]) -> dict[str, RepositoryConfig]:
        for name in value:
            if not NAME.match(name):
                raise ValueError(f"copy name {name!r}: use lower-case letters, digits, _ and -")
        return value


class NodeHealthConfig(Strict):
    """Each node's disk, inodes (Docker data root and `/`) and memory, read by a helper."""

    every: Duration = "5m"  # how often; 0s: never
    disk_percent: float = Field(default=90.0, gt=0, le=100)
    inode_percent: float = Field(default=90.0, gt=0, le=100)
    memory_percent: float = Field(default=95.0, gt=0, le=100)


class UpdatesConfig(Strict):
    """Checking recipe repos of deployed apps for newer versions."""

    # How often to fetch recipes and look ("0s" turns the check off).
    check_every: Duration = "24h"
    # Apps (name patterns) that get minor/patch upgrades started by the bot itself, besides
    # those labelled `coop-cloud.<stack>.autoupdate=true`. They go through the same policies.
    auto_update: list[str] = []


class HealthConfig(Strict):
    """Health and metrics: an optional HTTP listener with /healthz and /metrics."""

    enabled: bool = False
    # Address to listen on; 0.0.0.0 inside a container so the stack's network can scrape it.
    bind: str = "127.0.0.1"
    # TCP port; 0 takes any free port (it is logged).
    port: int = Field(default=9180, ge=0, le=65535)
    # /healthz fails when the last completed sync is older than this (a sync long-polls 30 s).
    max_sync_age_seconds: float = Field(default=120.0, gt=0)
    # How often the servers are probed for the reachability gauge.
    probe_interval_seconds: float = Field(default=60.0, gt=0)


class LoggingConfig(Strict):
    """Logging: human-readable lines by default, JSON lines on request."""

    format: Literal["human", "json"] = "human"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(Strict):
    matrix: MatrixConfig
    database: FilePath = Path("state/coopbot.db")
    # Bot admins hold every role in every room and are the only ones answered in rooms not listed.
    admins: list[UserId] = []
    # Listed from least to most privileged: holding a role also grants every role listed before it.
    roles: dict[str, RoleRule] = {
        "member": RoleRule(power_level=0),
        "operator": RoleRule(power_level=50),
        "admin": RoleRule(power_level=100),
    }
    # When set, only users of these homeservers may hold roles (remote servers can forge users).
    role_homeservers: list[str] | None = None
    invites: InviteConfig = InviteConfig()
    rooms: dict[str, RoomConfig] = {}
    servers: dict[str, ServerConfig] = {}
    apps_dir: FilePath = Path("~/.abra")
    recipes: RecipesConfig = RecipesConfig()
    # Per server name: its restic repository for app backups.
    backups: dict[str, BackupConfig] = {}
    # Per operation (deploy, upgrade, rollback, undeploy, backup, restore, export, new,
    # config, secret, restart, cmd, remove): approval policy.
    policies: dict[str, PolicyConfig] = {
        "upgrade": PolicyConfig(approvals=0, backup_first=True),
        "restore": PolicyConfig(approvals=1, backup_first=True),
        "remove": PolicyConfig(approvals=1),
    }
    # App env keys whose values `!config` shows (besides TYPE, DOMAIN and the like, and the
    # keys a recipe's .env.sample marks `# public=true`); every other value stays hidden.
    public_env_keys: list[str] = []
    # How long `!cmd` may run a recipe function before it is given up on.
    cmd_timeout_seconds: float = Field(default=300.0, gt=0, le=86400)
    # Per app name: policy overrides that win over the room's and the global ones.
    app_policies: dict[str, dict[str, PolicyConfig]] = {}
    # Member organisations (for policies with `count: organisations`): each has one vote.
    organisations: dict[str, OrganisationConfig] = {}
    # People who want to be mentioned (pinged) by the reminder of who has not voted yet.
    reminder_mentions: list[UserId] = []
    # Per command: the role it needs, overriding the command's default (e.g. audit: admin).
    command_roles: dict[str, str] = {}
    updates: UpdatesConfig = UpdatesConfig()
    # Watch every server's Docker events and tell notification rooms what changes or breaks,
    # including changes made outside coopbot.
    watch_swarms: bool = True
    node_health: NodeHealthConfig = NodeHealthConfig()
    # health and metrics: the optional HTTP listener; logging: format and level.
    health: HealthConfig = HealthConfig()
    logging: LoggingConfig = LoggingConfig()

    @field_validator("roles")
    @classmethod
    def _role_names(cls, value: dict[str, RoleRule]) -> dict[str, RoleRule]:
        if not value:
            raise ValueError("at least one role is needed")
        for name, rule in value.items():
            if not NAME.match(name):
                raise ValueError(f"role name {name!r} must be lowercase letters, digits, - or _")
            if rule.power_level is None and not rule.users:
                raise ValueError(f"role {name!r} grants nobody: give power_level or users")
        return value

    @field_validator("rooms")
    @classmethod
    def _room_refs(cls, value: dict[str, RoomConfig]) -> dict[str, RoomConfig]:
        for ref in value:
            if not ROOM_REF.match(ref):
                raise ValueError(f"{ref!r} is not a room id (!id) or alias (#name:server)")
        return value

    @model_validator(mode="after")
    def _cross_references(self) -> Config:
        for ref, room in self.rooms.items():
            for role in room.roles:
                if role not in self.roles:
                    raise ValueError(f"rooms.{ref}.roles: unknown role {role!r}")
            for server in room.servers:
                if server not in self.servers:
                    raise ValueError(f"rooms.{ref}.servers: unknown server {server!r}")
            for other in room.mute_rooms:
                if other not in self.rooms:
                    raise ValueError(f"rooms.{ref}.mute_rooms: {other!r} is not under `rooms`")
                if not self.rooms[other].notifications:
                    raise ValueError(f"rooms.{ref}.mute_rooms: {other!r} gets no notifications")
        for server in self.backups:
            if server not in self.servers:
                raise ValueError(f"backups: unknown server {server!r}")
        scopes: list[tuple[str, dict[str, PolicyConfig]]] = [("policies", self.policies)]
        scopes += [(f"rooms.{ref}.policies", room.policies) for ref, room in self.rooms.items()]
        scopes += [(f"app_policies.{app}", policies)
                   for app, policies in self.app_policies.items()]
        for where, policies in scopes:
            for operation, policy in policies.items():
                if operation not in OPERATIONS:
                    raise ValueError(f"{where}: unknown operation {operation!r} "
                                     f"(one of {', '.join(OPERATIONS)})")
                if policy.approver_role is not None and policy.approver_role not in self.roles:
                    raise ValueError(f"{where}.{operation}.approver_role: unknown role "
                                     f"{policy.approver_role!r}")
                if policy.count == "organisations" and not self.organisations:
                    raise ValueError(f"{where}.{operation}.count: organisations needs the "
                                     "`organisations` key")
        self._check_organisations()
        for command, role in self.command_roles.items():
            if role not in self.roles:
                raise ValueError(f"command_roles.{command}: unknown role {role!r}")
        return self

    def _check_organisations(self) -> None:
        users: dict[str, str] = {}
        servers: dict[str, str] = {}
        for name, organisation in self.organisations.items():
            if not NAME.match(name):
                raise ValueError(f"organisations: name {name!r} must be lowercase letters, "
                                 "digits, - or _")
            if not organisation.users and not organisation.servers:
                raise ValueError(f"organisations.{name}: lists nobody: give users or servers")
            for kind, seen, entries in (("users", users, organisation.users),
                                        ("servers", servers, organisation.servers)):
                for entry in entries:
                    if entry in seen and seen[entry] != name:
                        raise ValueError(f"organisations.{name}.{kind}: {entry} is already in "
                                         f"organisation {seen[entry]!r}")
                    seen[entry] = name

    def role_order(self) -> list[str]:
        return list(self.roles)


def load_config(path: Path) -> Config:
    """Read, validate and resolve a config file. Raises ConfigError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([f"{path}: cannot read the config file ({error.strerror})"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError([f"{path}: not valid YAML{line}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of keys"])
    base = path.parent
    try:
        config = Config.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
    return _resolve(config, base)


def _describe(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        loc = list(item["loc"])
        if len(loc) > 2 and loc[0] == "servers" and loc[2] in ("local", "ssh"):
            del loc[2]  # pydantic's union tag for the server kind: users never wrote it
        parts = [str(p) for p in loc]
        key = ".".join(parts)
        kind = item["type"]
        if kind == "missing":
            message = "is required"
        elif kind == "extra_forbidden":
            message = "is not a known key"
        elif kind.endswith("_type") or kind == "model_type":
            message = f"has the wrong type: {item['msg'].lower()}"
        else:
            message = item["msg"].removeprefix("Value error, ")
        # Cross-key checks already name their key in the message.
        problems.append(f"{key}: {message}" if key else message)
    return problems


def _resolve(config: Config, base: Path) -> Config:
    """Make paths absolute (relative to the config file) and read secrets from files or env."""
    problems: list[str] = []
    matrix = config.matrix

    def secret(key: str, inline: str | None, file: Path | None) -> str | None:
        if file is not None:
            target = file if file.is_absolute() else base / file
            try:
                return target.read_text(encoding="utf-8").strip()
            except OSError as error:
                problems.append(f"matrix.{key}_file: cannot read {target} ({error.strerror})")
                return None
        if inline is None:
            return None
        missing = [name for name in ENV_REF.findall(inline) if name not in os.environ]
        if missing:
            problems.append(f"matrix.{key}: environment variable {missing[0]} is not set")
            return None
        return ENV_REF.sub(lambda m: os.environ[m.group(1)], inline)

    password = secret("password", matrix.password, matrix.password_file)
    token = secret("access_token", matrix.access_token, matrix.access_token_file)
    recovery_key = secret("recovery_key", matrix.recovery_key, matrix.recovery_key_file)
    if recovery_key is not None:
        try:
            decode_recovery_key(recovery_key)
        except BadRecoveryKey as error:
            key = "recovery_key_file" if matrix.recovery_key_file else "recovery_key"
            problems.append(f"matrix.{key}: not a valid recovery key ({error})")
    if problems:
        raise ConfigError(problems)

    def absolute(p: Path) -> Path:
        p = p.expanduser()
        return p if p.is_absolute() else (base / p).resolve()

    servers: dict[str, Any] = {}
    for name, server in config.servers.items():
        if isinstance(server, SSHServer):
            server = server.model_copy(update={
                "key_file": absolute(server.key_file),
                "known_hosts_file": absolute(server.known_hosts_file),
            })
        servers[name] = server
    backups: dict[str, BackupConfig] = {}
    for name, backup in config.backups.items():
        update: dict[str, Any] = {}
        for key in ("password_file", "environment_file"):
            file = getattr(backup, key)
            if file is None:
                continue
            target = absolute(file)
            if not os.access(target, os.R_OK):
                problems.append(f"backups.{name}.{key}: cannot read {target}")
            update[key] = target
        if backup.password_env is not None and backup.password_env not in os.environ:
            problems.append(f"backups.{name}.password_env: environment variable "
                            f"{backup.password_env} is not set")
        backups[name] = backup.model_copy(update=update)
    if problems:
        raise ConfigError(problems)
    return config.model_copy(update={
        "backups": backups,
        "matrix": matrix.model_copy(update={
            "password": password, "password_file": None,
            "access_token": token, "access_token_file": None,
            "recovery_key": recovery_key, "recovery_key_file": None,
            "store": absolute(matrix.store),
        }),
        "database": absolute(config.database),
        "apps_dir": absolute(config.apps_dir),
        "recipes": config.recipes.model_copy(update={"cache": absolute(config.recipes.cache)}),
        "servers": servers,
    })


def summary(config: Config) -> list[str]:
    """What check-config prints: rooms, roles, servers, in a few lines."""
    lines = [f"homeserver {config.matrix.homeserver} as {config.matrix.user_id}"]
    order = config.role_order()
    for name in order:
        rule = config.roles[name]
        grants = []
        if rule.power_level is not None:
            grants.append(f"power >= {rule.power_level}")
        if rule.users:
            grants.append(f"{len(rule.users)} listed user(s)")
        lines.append(f"role {name}: {' or '.join(grants)}")
    if config.role_homeservers is not None:
        lines.append(f"roles only for users of: {', '.join(config.role_homeservers)}")
    lines.append(f"bot admins: {', '.join(config.admins) or 'none'}")
    for name, organisation in config.organisations.items():
        parts = [f"{len(organisation.users)} listed user(s)"]
        if organisation.servers:
            parts.append(f"users of {', '.join(organisation.servers)}")
        lines.append(f"organisation {name}: {', '.join(parts)}")
    for ref, room in config.rooms.items():
        parts = [f"servers {', '.join(room.servers) or 'none'}", f"apps {', '.join(room.apps)}"]
        if room.notifications:
            parts.append("notifications")
        if room.roles:
            parts.append(f"role overrides: {', '.join(room.roles)}")
        lines.append(f"room {ref}: {'; '.join(parts)}")
    if not config.rooms:
        lines.append("no rooms configured: only bot admins get answers")
    for name, server in config.servers.items():
        if isinstance(server, SSHServer):
            lines.append(f"server {name}: ssh {server.user}@{server.host}:{server.port}")
        else:
            lines.append(f"server {name}: local docker socket {server.socket}")
    lines.append(f"database {config.database}")
    return lines
