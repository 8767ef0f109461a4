"""Small in-memory fakes of the ports in coopbot/ports.py, for unit tests. They are used in
addition to the real adapters, never instead: tests/test_room_sender_contract.py runs the same
checks against FakeRoom and against the real RoomSender on a real homeserver, so a unit test
that passes on the fake relies only on what the real adapter does too. FakeEngine stands in
for one server's DockerEngine where the deployer's own logic is tested; tests/test_bot_swarm.py
runs the deployer on a real swarm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from coopbot.errors import MatrixError
from coopbot.ids import EventID, RoomID
from coopbot.messages import ReplyTarget
from coopbot.recipes.compose import images, load_compose
from coopbot.recipes.labels import compose_labels, label
from coopbot.replies import Reply
from coopbot.roles import PowerInfo
from coopbot.servers.convergence import ProgressCallback
from coopbot.servers.node_helpers import SwarmNodeRef
from coopbot.servers.states import (
    ConvergenceProgress,
    ConvergenceResult,
    NodeState,
    ServerInfo,
    ServiceFailure,
    ServiceState,
)


@dataclass
class Sent:
    """One message the bot sent, as a room member reads it: `text` is the latest edit's."""

    event_id: EventID
    room_id: RoomID
    text: str
    thread_root: EventID | None = None  # the thread it is in, if any
    reply_to: EventID | None = None  # the event it replies to, if any
    filename: str | None = None  # set for an attachment's file message
    edits: list[str] = field(default_factory=list)  # every text it had after the first


@dataclass
class FakeRoom:
    """Responder, RoomPoster and PowerSource in memory. Sends are kept in order in `sent`;
    `log` records every call (reply, edit, post, typing) in order; the same `key` sent twice
    posts once (as the homeserver does with a transaction id). `fail_replies` makes every
    reply raise MatrixError (a homeserver that is down)."""

    levels: dict[str, int] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)
    typing_calls: list[tuple[RoomID, bool]] = field(default_factory=list)
    fail_replies: bool = False
    _by_key: dict[str, EventID] = field(default_factory=dict)

    # ---- Responder ---------------------------------------------------------------------------

    async def reply(self, to: ReplyTarget, reply: Reply, *, key: str) -> EventID:
        if self.fail_replies:
            raise MatrixError("could not send to the room", detail="HTTP 502 (fake)")
        root = to.reply_thread_root
        event_id = self._send(key, to.room_id, reply.text, root, to.event_id)
        self.log.append(("reply", reply.text))
        if reply.attachment is not None:
            self._send(f"{key}/file", to.room_id, reply.attachment.filename, root, event_id,
                       filename=reply.attachment.filename)
        return event_id

    async def edit(self, room_id: RoomID, event_id: EventID, reply: Reply) -> None:
        message = self.by_id(event_id)
        message.text = reply.text
        message.edits.append(reply.text)
        self.log.append(("edit", reply.text))

    async def typing(self, room_id: RoomID, active: bool) -> None:
        self.typing_calls.append((room_id, active))

    # ---- RoomPoster ---------------------------------------------------------------------------

    async def post(self, room_id: RoomID, reply: Reply, *, key: str,
                   thread_root: EventID | None = None) -> EventID:
        event_id = self._send(key, room_id, reply.text, thread_root, thread_root)
        self.log.append(("post", reply.text))
        return event_id

    # ---- PowerSource --------------------------------------------------------------------------

    async def power_info(self, room_id: RoomID) -> PowerInfo:
        return PowerInfo(users=dict(self.levels))

    # ---- reading --------------------------------------------------------------------------------

    def by_id(self, event_id: EventID) -> Sent:
        return next(m for m in self.sent if m.event_id == event_id)

    def replies_to(self, event_id: EventID) -> list[Sent]:
        return [m for m in self.sent if m.reply_to == event_id]

    def texts(self) -> list[str]:
        return [m.text for m in self.sent]

    def _send(self, key: str, room_id: RoomID, text: str, thread_root: EventID | None,
              reply_to: EventID | None, *, filename: str | None = None) -> EventID:
        if key in self._by_key:
            return self._by_key[key]
        event_id = EventID(f"$fake{len(self.sent)}")
        self._by_key[key] = event_id
        self.sent.append(Sent(event_id, room_id, text, thread_root, reply_to, filename))
        return event_id


@dataclass
class FakeEngine:
    """The part of a DockerEngine the deployer uses, in memory. `stack_deploy` reads the
    compose files it is given (the real checkout) and makes the `app` service run with their
    labels and image; `wait_converged` fails for the versions in `failing` (with a raw log
    tail, as the real one returns it) and converges otherwise."""

    name: str = "local"
    secrets: set[str] = field(default_factory=set)
    stacks: dict[str, list[ServiceState]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    failing_log: tuple[str, ...] = ()
    deployed: list[tuple[str, str | None]] = field(default_factory=list)  # (stack, version)
    removed: list[str] = field(default_factory=list)
    secret_values: dict[str, bytes] = field(default_factory=dict)
    options: list[tuple[bool, str]] = field(default_factory=list)  # (prune, resolve_image)

    def run(self, stack: str, version: str, image: str = "app:1") -> None:
        """Make `stack` run `version` already (as if deployed before the test)."""
        self.stacks[stack] = [_service(stack, image, {label(stack, "version"): version})]

    async def services(self, stack: str) -> list[ServiceState]:
        return list(self.stacks.get(stack, []))

    async def secret_names(self) -> set[str]:
        return set(self.secrets)

    async def network_names(self) -> set[str]:
        return {"ingress", "bridge"}

    async def image_tags(self) -> set[str]:
        return set()

    async def stack_volumes(self, stack: str) -> list[str]:
        return [f"{stack}_data"] if stack in self.stacks else []

    async def stack_volumes_by_node(self, stack: str) -> dict[str, list[str]]:
        volumes = await self.stack_volumes(stack)
        return {"node1": volumes} if volumes else {}

    async def info(self) -> ServerInfo:
        return ServerInfo(self.name, "20.10", "1.41", "manager", (FAKE_NODE,), len(self.stacks))

    @property
    def helpers(self) -> FakeHelpers:
        return FakeHelpers()

    async def stack_deploy(self, stack: str, compose_files: Sequence[Path],
                           env: Mapping[str, str], cwd: Path, *, prune: bool = True,
                           resolve_image: str = "never") -> None:
        self.options.append((prune, resolve_image))
        compose = load_compose(cwd, [f.name for f in compose_files], env)
        labels = {k: str(v) for k, v in compose_labels(compose).items()}
        self.stacks[stack] = [_service(stack, images(compose).get("app", ""), labels)]
        self.deployed.append((stack, labels.get(label(stack, "version"))))

    async def wait_converged(self, stack: str, timeout: float,
                             progress: ProgressCallback | None = None) -> ConvergenceResult:
        services = tuple(self.stacks[stack])
        if progress is not None:
            await progress(ConvergenceProgress(stack, 0.0, services, ("app",)))
        version = services[0].labels.get(label(stack, "version"))
        if version not in self.failing:
            return ConvergenceResult(stack, True, False, 1.0, services, ())
        failure = ServiceFailure(f"{stack}_app", "app", "its healthcheck failed", "updating",
                                 "task: non-zero exit (1)", self.failing_log)
        return ConvergenceResult(stack, False, False, 1.0, services, (failure,))

    async def stack_remove(self, stack: str) -> None:
        self.stacks.pop(stack, None)
        self.removed.append(stack)

    async def create_secret(self, name: str, data: bytes) -> None:
        assert name not in self.secrets, f"secret {name} exists (swarm secrets are immutable)"
        self.secrets.add(name)
        self.secret_values[name] = data

    async def remove_secret(self, name: str) -> None:
        self.secrets.discard(name)


FAKE_NODE = NodeState("node1", "manager", "ready", "active", True, node_id="n1")


class FakeHelpers:
    """A single-node swarm's node helpers."""

    async def nodes(self) -> list[SwarmNodeRef]:
        return [SwarmNodeRef("n1", "node1", "manager", "ready", "active")]

    async def own_node(self) -> str:
        return "n1"


def _service(stack: str, image: str, labels: Mapping[str, str]) -> ServiceState:
    return ServiceState(
        name=f"{stack}_app", short_name="app", stack=stack, image=image, mode="replicated",
        replicas_desired=1, replicas_running=1, replicas_updated=1, update_state=None,
        update_message="", last_error=None, health="healthy", labels=dict(labels))


@dataclass
class FakePool:
    """A ServerPool of FakeEngines, by server name."""

    engines: dict[str, FakeEngine]

    @property
    def names(self) -> list[str]:
        return list(self.engines)

    def get(self, server: str) -> FakeEngine:
        return self.engines[server]
