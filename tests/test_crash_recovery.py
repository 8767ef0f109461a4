"""A crash at any moment loses nothing. The bot runs as a real subprocess
(tests/harness/process.py) on the real swarm and Synapse and is killed: by a real SIGKILL from
the test at an observed moment (during convergence, over SSH; during a failing upgrade the
swarm rolls back; while restic backs up; while a restore writes a volume), at a crash point
where the moment cannot be seen from outside (just before `docker stack deploy`; after success
before the lock release; after the lock release before the answer), or by SIGTERM mid-deploy.
Started again on the same state folder, it must tell the requester's thread the truth, close
the ⏳ status message, leave the env file's TYPE saying what the swarm runs, keep one audit
row per operation, release the lock and run nothing twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nio import Event

from coopbot.servers.containers import HELPER_LABEL
from tests.harness.apps import app_env, create_secret, docker, stack_of, unique_domain
from tests.harness.backups import ResticRepository, tree_of_backuptest
from tests.harness.bot import STATUS_MARK, answer_to, coop_room
from tests.harness.process import BotProcess, StartBotProcess
from tests.harness.recipes import AbraDir, MakeRecipeRepo, RecipeRelease, tree_of_testapp
from tests.harness.swarm import AppImages, Dockerd, Sshd, remove_stack, ssh_server
from tests.harness.swarm import docker as swarm_docker
from tests.harness.synapse import MakeMember, Member

pytestmark = pytest.mark.real

TIMEOUT = 150.0
RECOVERED = "recovery done"


@pytest.fixture(scope="session")
def slowapp_recipe(make_recipe_repo: MakeRecipeRepo, test_images: AppImages) -> Path:
    """testapp whose first healthcheck runs 20 s after start: convergence lasts long enough to
    kill the bot in the middle of it."""
    def slow(version: str) -> dict[str, str]:
        files = tree_of_testapp(version)
        files["compose.yml"] = files["compose.yml"].replace(
            "interval: 2s", "interval: 20s").replace("start_period: 5s", "start_period: 30s")
        return files

    return make_recipe_repo("slowapp", [RecipeRelease(v, slow(v))
                                        for v in ("1.0.0+v1", "1.1.0+v2")])


@dataclass
class CrashRoom:
    bot: BotProcess
    room: str
    alice: Member
    bob: Member
    abra: AbraDir

    async def send(self, body: str) -> str:
        return await self.bob.send(self.room, body)

    async def answer(self, command: str, timeout: float = TIMEOUT) -> str:
        return await answer_to(self.bob, self.room, self.bot.user_id, command, timeout=timeout)

    async def status_of(self, command: str, timeout: float = TIMEOUT) -> str:
        """The event id of the ⏳ status message in reply to `command` (waits for it)."""
        def is_status(event: Any) -> bool:
            content = event.source.get("content", {})
            return (content.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
                    == command and str(content.get("body", "")).startswith(STATUS_MARK))

        event = await self.bob.wait_for_message(self.room, sender=self.bot.user_id,
                                                predicate=is_status, timeout=timeout,
                                                after_event_id=command)
        return str(event.event_id)

    def edits(self, event_id: str) -> list[str]:
        return [str(e.source["content"]["m.new_content"]["body"])
                for e in self.bob.timeline(self.room) if _replaces(e) == event_id]

    def latest_edit(self, event_id: str) -> str:
        edits = self.edits(event_id)
        assert edits, "the status message was never edited"
        return edits[-1]

    def notifications(self, app: str) -> list[str]:
        """The bot's notification-room posts about `app` (the room is its own notification
        room: they are the messages outside any thread)."""
        return [str(m.source["content"]["body"])
                for m in self.bob.messages_from(self.room, self.bot.user_id)
                if "m.relates_to" not in m.source["content"] and f"`{app}`" in
                str(m.source["content"]["body"])]

    async def restart(self) -> None:
        """A new run on the same state folder; returns once recovery has finished."""
        self.bot.start()
        await self.bot.wait_logged(RECOVERED, TIMEOUT)

    def operation(self, app: str) -> dict[str, Any]:
        rows = self.bot.query("SELECT id, result, summary, finished_at, event_id FROM operations"
                              " WHERE app = ? ORDER BY started_at DESC", app)
        assert rows, f"no operation of {app} was recorded"
        op_id, result, summary, finished_at, event_id = rows[0]
        return {"id": op_id, "result": result, "summary": summary, "finished_at": finished_at,
                "event_id": event_id}

    def operation_audit(self, operation_id: str) -> list[str]:
        return [row[0] for row in self.bot.query(
            "SELECT result FROM audit_log WHERE decision = 'operation' AND operation_id = ?",
            operation_id)]

    def locks(self) -> list[str]:
        return [row[0] for row in self.bot.query("SELECT app FROM app_locks")]


def _replaces(event: Event) -> str | None:
    relates = event.source.get("content", {}).get("m.relates_to", {})
    return relates.get("event_id") if relates.get("rel_type") == "m.replace" else None


def service_version(stack: str) -> str:
    """The app service's spec version: it changes with every `docker stack deploy`."""
    return docker("service", "inspect", "--format", "{{.Version.Index}}/{{.UpdatedAt}}",
                  f"{stack}_app").strip()


def env_type(env_path: Path) -> str:
    return next(line for line in env_path.read_text().splitlines() if line.startswith("TYPE="))


@pytest.fixture
async def crash_room(
    make_member: MakeMember, start_bot_process: StartBotProcess, abra_dir: AbraDir,
    tmp_path: Path, dockerd: Dockerd, sshd: Sshd, testapp_recipe: Path, slowapp_recipe: Path,
) -> CrashRoom:
    alice, bob, _carol, room = await coop_room(make_member)
    servers: dict[str, Any] = {"local": {"kind": "local", "socket": dockerd.socket},
                               "remote": ssh_server(sshd, connect_timeout=5)}
    bot = await start_bot_process(
        rooms={room: {"servers": list(servers), "notifications": True}},
        servers=servers, apps_dir=str(abra_dir.path),
        recipes={"overrides": {"testapp": str(testapp_recipe), "slowapp": str(slowapp_recipe)},
                 "cache": str(tmp_path / "recipe-cache")},
    )
    await alice.invite(room, bot.user_id)
    await alice.wait_joined(room, bot.user_id, timeout=60)
    await bot.wait_logged(RECOVERED, TIMEOUT)
    return CrashRoom(bot, room, alice, bob, abra_dir)


@pytest.fixture
def stacks() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        remove_stack(name)


def new_app(c: CrashRoom, stacks: list[str], server: str = "local",
            recipe: str = "testapp") -> tuple[str, Path]:
    domain = unique_domain()
    stacks.append(stack_of(domain))
    create_secret(domain)
    env_path = app_env(c.abra, server, domain)
    if recipe != "testapp":
        env_path.write_text(env_path.read_text().replace("TYPE=testapp", f"TYPE={recipe}", 1))
    return domain, env_path


async def starting_container(stack: str, timeout: float = TIMEOUT) -> None:
    """Wait until the stack's app service has a container up, its health still starting
    (swarm counts the task as running only once healthy: the stack is converging)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = docker("ps", "--filter", f"label=com.docker.swarm.service.name={stack}_app",
                        "--format", "{{.Status}}")
        if "health: starting" in status:
            return
        assert "healthy" not in status, f"too late to be during convergence: {status}"
        await asyncio.sleep(0.2)
    raise AssertionError(f"no container of {stack}_app started within {timeout:g} s")


async def test_kill_during_convergence_the_swarm_finishes_and_the_restart_says_so(
    crash_room: CrashRoom, stacks: list[str]
) -> None:
    c = crash_room
    domain, env_path = new_app(c, stacks, server="remote", recipe="slowapp")
    stack = stack_of(domain)
    command = await c.send(f"!deploy {domain} 1.0.0+v1")
    status = await c.status_of(command)
    await starting_container(stack)
    c.bot.kill()
    deployed = service_version(stack)
    op = c.operation(domain)
    assert op["result"] == "running" and c.locks() == [domain]

    await c.restart()
    answer = await c.answer(command)
    assert any("the swarm is still converging, waiting up to 120 s" in e
               for e in c.edits(status)), "the restart did not find the stack converging"
    assert answer.startswith(f"✅ I restarted while the deploy of `{domain}` ran.")
    assert "ok: not deployed -> 1.0.0+v1: finished by the swarm" in answer
    assert not c.latest_edit(status).startswith(STATUS_MARK)
    assert env_type(env_path) == "TYPE=slowapp:1.0.0+v1"
    op = c.operation(domain)
    assert op["result"] == "ok"
    audit = c.operation_audit(op["id"])
    assert len(audit) == 1 and audit[0].startswith("ok in "), audit
    assert c.locks() == []
    assert service_version(stack) == deployed, "the restart deployed again"
    news = [n for n in c.notifications(domain) if n.startswith(f"✅ deploy `{domain}` on")]
    assert len(news) == 1, c.notifications(domain)


async def test_a_stop_mid_deploy_is_resolved_like_a_crash(
    crash_room: CrashRoom, stacks: list[str]
) -> None:
    """SIGTERM waits a while for running work, then cancels it: the operation is left open,
    not recorded as failed, and the next start finds out the swarm finished it."""
    c = crash_room
    domain, env_path = new_app(c, stacks, recipe="slowapp")
    command = await c.send(f"!deploy {domain} 1.0.0+v1")
    status = await c.status_of(command)
    await starting_container(stack_of(domain))
    c.bot.stop()
    assert c.operation(domain)["result"] == "running" and c.locks() == [domain]

    await c.restart()
    answer = await c.answer(command)
    assert answer.startswith(f"✅ I restarted while the deploy of `{domain}` ran.")
    assert "ok: not deployed -> 1.0.0+v1: finished by the swarm" in answer
    assert not c.latest_edit(status).startswith(STATUS_MARK)
    assert env_type(env_path) == "TYPE=slowapp:1.0.0+v1"
    op = c.operation(domain)
    assert op["result"] == "ok" and len(c.operation_audit(op["id"])) == 1
    assert c.locks() == []


async def test_kill_just_before_stack_deploy_of_an_upgrade_keeps_the_old_version(
    crash_room: CrashRoom, stacks: list[str]
) -> None:
    c = crash_room
    domain, env_path = new_app(c, stacks)
    stack = stack_of(domain)
    assert "converged and healthy" in await c.answer(await c.send(f"!deploy {domain} 1.0.0+v1"))
    deployed = service_version(stack)
    c.bot.stop()

    c.bot.start(crash_at="before-stack-deploy")
    await c.bot.wait_logged(RECOVERED, TIMEOUT)
    command = await c.send(f"!upgrade {domain} 1.1.0+v2")
    status = await c.status_of(command)
    assert await c.bot.exited(TIMEOUT) == -9
    assert c.operation(domain)["result"] == "running"

    await c.restart()
    answer = await c.answer(command)
    assert answer.startswith(f"⚠️ I restarted while the upgrade of `{domain}` ran.")
    assert ("interrupted: the bot stopped while this ran: 1.0.0+v1 -> 1.1.0+v2: did not "
            "happen; running now is 1.0.0+v1, converged and healthy.") in answer
    assert not c.latest_edit(status).startswith(STATUS_MARK)
    assert env_type(env_path) == "TYPE=testapp:1.0.0+v1"
    assert service_version(stack) == deployed
    op = c.operation(domain)
    assert op["result"] == "interrupted"
    assert len(c.operation_audit(op["id"])) == 1 and c.locks() == []
    news = [n for n in c.notifications(domain) if n.startswith(f"⚠️ upgrade `{domain}` on")]
    assert len(news) == 1 and "interrupted" in news[0], c.notifications(domain)


async def test_kill_during_a_failing_upgrade_the_swarm_rolls_back_and_the_restart_says_so(
    crash_room: CrashRoom, stacks: list[str]
) -> None:
    c = crash_room
    domain, env_path = new_app(c, stacks)
    stack = stack_of(domain)
    assert "converged and healthy" in await c.answer(await c.send(f"!deploy {domain} 1.1.0+v2"))
    command = await c.send(f"!upgrade {domain} 1.2.0+v3")  # v3 never becomes healthy
    status = await c.status_of(command)
    deadline = time.monotonic() + TIMEOUT
    while "coopbot-test/app:v3" not in docker("service", "inspect", "--format",
                                              "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
                                              f"{stack}_app"):
        assert time.monotonic() < deadline, "the upgrade never reached the swarm"
        await asyncio.sleep(0.2)
    c.bot.kill()

    await c.restart()
    answer = await c.answer(command)
    assert answer.startswith(f"⚠️ I restarted while the upgrade of `{domain}` ran.")
    assert ("interrupted: the bot stopped while this ran: 1.1.0+v2 -> 1.2.0+v3: the swarm "
            "rolled it back; running now is 1.1.0+v2, converged and healthy.") in answer
    assert not c.latest_edit(status).startswith(STATUS_MARK)
    assert env_type(env_path) == "TYPE=testapp:1.1.0+v2"
    assert "coopbot-test/app:v2" in docker("service", "inspect", "--format",
                                           "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
                                           f"{stack}_app")
    op = c.operation(domain)
    assert op["result"] == "interrupted"
    assert len(c.operation_audit(op["id"])) == 1 and c.locks() == []


async def test_kill_after_success_before_the_lock_is_released_keeps_the_success(
    crash_room: CrashRoom, stacks: list[str]
) -> None:
    c = crash_room
    domain, env_path = new_app(c, stacks)
    stack = stack_of(domain)
    c.bot.stop()
    c.bot.start(crash_at="operation-done")
    await c.bot.wait_logged(RECOVERED, TIMEOUT)
    command = await c.send(f"!deploy {domain} 1.0.0+v1")
    status = await c.status_of(command)
    assert await c.bot.exited(TIMEOUT) == -9
    finished = c.operation(domain)
    assert finished["result"] == "ok" and c.locks() == [domain]
    deployed = service_version(stack)

    await c.restart()
    answer = await c.answer(command)
    assert answer.startswith(f"✅ I restarted before answering; the deploy of `{domain}` had "
                             "finished. What came of it: ok: deploy")
    assert not c.latest_edit(status).startswith(STATUS_MARK)
    assert env_type(env_path) == "TYPE=testapp:1.0.0+v1"
    op = c.operation(domain)
    assert (op["result"], op["summary"], op["finished_at"]) == (
        "ok", finished["summary"], finished["finished_at"])  # never rewritten
    assert len(c.operation_audit(op["id"])) == 1 and c.locks() == []
    assert service_version(stack) == deployed
    news = [n for n in c.notifications(domain) if n.startswith(f"✅ deploy `{domain}` on")]
    assert len(news) == 1, c.notifications(domain)
    # one answer in the thread, and a third start does not repeat it
    c.bot.stop()
    await c.restart()
    answers = [m for m in c.bob.messages_from(c.room, c.bot.user_id)
               if m.source["content"].get("m.relates_to", {}).get("m.in_reply_to", {})
               .get("event_id") == command and not str(m.source["content"]["body"])
               .startswith(STATUS_MARK)]
    assert len(answers) == 1


async def test_kill_after_the_lock_release_before_the_answer_posts_the_answer(
    crash_room: CrashRoom, stacks: list[str]
) -> None:
    c = crash_room
    domain, env_path = new_app(c, stacks)
    c.bot.stop()
    c.bot.start(crash_at="before-answer")
    await c.bot.wait_logged(RECOVERED, TIMEOUT)
    command = await c.send(f"!deploy {domain} 1.0.0+v1")
    status = await c.status_of(command)
    assert await c.bot.exited(TIMEOUT) == -9
    finished = c.operation(domain)
    assert finished["result"] == "ok" and c.locks() == []

    await c.restart()
    answer = await c.answer(command)
    assert answer.startswith(f"✅ I restarted before answering; the deploy of `{domain}` had "
                             "finished. What came of it: ok: deploy")
    assert not c.latest_edit(status).startswith(STATUS_MARK)
    assert env_type(env_path) == "TYPE=testapp:1.0.0+v1"
    op = c.operation(domain)
    assert (op["result"], op["finished_at"]) == ("ok", finished["finished_at"])
    assert len(c.operation_audit(op["id"])) == 1


@pytest.fixture
async def backup_crash_room(
    make_member: MakeMember, start_bot_process: StartBotProcess, abra_dir: AbraDir,
    tmp_path: Path, dockerd: Dockerd, make_recipe_repo: MakeRecipeRepo, test_images: AppImages,
    restic_image: str, restic_repository: ResticRepository,
) -> CrashRoom:
    alice, bob, _carol, room = await coop_room(make_member)
    recipe = make_recipe_repo("backuptest-crash", [
        RecipeRelease("1.0.0+v1", tree_of_backuptest("1.0.0+v1"))])
    bot = await start_bot_process(
        rooms={room: {"servers": ["local"]}},
        servers={"local": {"kind": "local", "socket": dockerd.socket}},
        policies={"restore": {"approvals": 0, "backup_first": False}},
        backups={"local": {"repository": str(restic_repository.path / "local"),
                           "password_file": str(restic_repository.password_file),
                           "helper_image": restic_image}},
        apps_dir=str(abra_dir.path),
        recipes={"overrides": {"backuptest": str(recipe)},
                 "cache": str(tmp_path / "recipe-cache")},
    )
    await alice.invite(room, bot.user_id)
    await alice.wait_joined(room, bot.user_id, timeout=60)
    await bot.wait_logged(RECOVERED, TIMEOUT)
    return CrashRoom(bot, room, alice, bob, abra_dir)


def helpers() -> set[str]:
    return set(docker("ps", "-aq", "--filter", f"label={HELPER_LABEL}").split())


async def test_kill_during_a_backup_reports_it_not_done(
    backup_crash_room: CrashRoom, stacks: list[str]
) -> None:
    c = backup_crash_room
    before = helpers()
    domain = f"b{uuid.uuid4().hex[:8]}.example.org"
    stacks.append(stack_of(domain))
    c.abra.write_app("local", domain, recipe="backuptest", extra={"DB_PASSWORD": "x"})
    assert "converged and healthy" in await c.answer(await c.send(f"!deploy {domain} 1.0.0+v1"))
    try:
        command = await c.send(f"!backup {domain}")
        status = await c.status_of(command)
        deadline = time.monotonic() + TIMEOUT
        while not helpers() - before:  # restic is running in its helper: kill now
            assert time.monotonic() < deadline, "no restic helper started"
            await asyncio.sleep(0.05)
        c.bot.kill()

        await c.restart()
        answer = await c.answer(command)
        assert answer.startswith(f"⚠️ I restarted while the backup of `{domain}` ran.")
        assert "interrupted: the bot stopped while this ran: the backup was not " \
               "completed" in answer
        assert not c.latest_edit(status).startswith(STATUS_MARK)
        op = c.operation(domain)
        assert op["result"] == "interrupted"
        assert len(c.operation_audit(op["id"])) == 1 and c.locks() == []
    finally:
        left = helpers() - before
        if left:  # restic helpers the killed run started (some may be gone by now)
            swarm_docker("rm", "-f", *left, check=False)


def replicas(stack: str) -> int:
    return int(docker("service", "inspect", "--format", "{{.Spec.Mode.Replicated.Replicas}}",
                      f"{stack}_app").strip())


async def test_kill_during_a_restore_says_which_volume_is_in_which_state(
    backup_crash_room: CrashRoom, stacks: list[str]
) -> None:
    c = backup_crash_room
    domain = f"b{uuid.uuid4().hex[:8]}.example.org"
    stack = stack_of(domain)
    stacks.append(stack)
    c.abra.write_app("local", domain, recipe="backuptest", extra={"DB_PASSWORD": "x"})
    assert "converged and healthy" in await c.answer(await c.send(f"!deploy {domain} 1.0.0+v1"))
    backed_up = await c.answer(await c.send(f"!backup {domain}"))
    snapshot = backed_up.split("snapshot `")[1][:8]
    before = helpers()
    try:
        command = await c.send(f"!restore {domain} {snapshot}")
        status = await c.status_of(command)
        deadline = time.monotonic() + TIMEOUT
        # The services are stopped and restic writes into a volume: kill now.
        while not (replicas(stack) == 0 and c.operation(domain)["id"] and
                   "incomplete" in "".join(r[0] for r in c.bot.query(
                       "SELECT checkpoint FROM operations WHERE app = ?", domain))):
            assert time.monotonic() < deadline, "the restore never reached a volume"
            await asyncio.sleep(0.05)
        c.bot.kill()

        await c.restart()
        answer = await c.answer(command)
        lines = answer.splitlines()
        assert lines[0].startswith(f"⚠️ I restarted while the restore of `{domain}` ran.")
        assert (f"interrupted: the bot stopped while this ran: the restore from snapshot "
                f"{snapshot} is incomplete") in lines[0]
        assert "- volume `db`: INCOMPLETE: the bot stopped while restoring it" in lines
        assert "Services `app` are left stopped, so nothing runs on incomplete data." in lines
        assert f"`!restore {domain} {snapshot}` tries again." in lines
        assert replicas(stack) == 0  # nothing was started on half-restored data
        assert not c.latest_edit(status).startswith(STATUS_MARK)
        op = c.operation(domain)
        assert op["result"] == "interrupted"
        assert len(c.operation_audit(op["id"])) == 1 and c.locks() == []
    finally:
        left = helpers() - before
        if left:  # restic helpers the killed run started (some may be gone by now)
            swarm_docker("rm", "-f", *left, check=False)


async def test_kill_while_an_approved_request_runs(
    make_member: MakeMember, start_bot_process: StartBotProcess, abra_dir: AbraDir,
    tmp_path: Path, dockerd: Dockerd, slowapp_recipe: Path, stacks: list[str],
) -> None:
    """A deploy approved by a vote, killed during convergence: after the restart the request's
    card says it was interrupted (never left running), the thread says what came of the
    operation, the audit closes the request once, and the vote does not run it again."""
    alice, bob, _carol, room = await coop_room(make_member)
    bot = await start_bot_process(
        rooms={room: {"servers": ["local"], "notifications": True}},
        servers={"local": {"kind": "local", "socket": dockerd.socket}},
        apps_dir=str(abra_dir.path),
        recipes={"overrides": {"slowapp": str(slowapp_recipe)},
                 "cache": str(tmp_path / "recipe-cache")},
        policies={"deploy": {"approvals": 1, "approver_role": "operator", "expires": "1h"}},
    )
    await alice.invite(room, bot.user_id)
    await alice.wait_joined(room, bot.user_id, timeout=60)
    await bot.wait_logged(RECOVERED, TIMEOUT)
    c = CrashRoom(bot, room, alice, bob, abra_dir)
    domain, env_path = new_app(c, stacks, recipe="slowapp")
    stack = stack_of(domain)

    command = await c.send(f"!deploy {domain} 1.0.0+v1")
    card = await bob.wait_for_message(
        room, sender=bot.user_id, after_event_id=command, timeout=TIMEOUT,
        predicate=lambda e: str(e.source["content"].get("body", "")).startswith("Request #"))
    request_id = int(str(card.source["content"]["body"]).split("#", 1)[1].split(":", 1)[0])
    await alice.send(room, f"!approve {request_id}")
    await starting_container(stack)
    c.bot.kill()
    assert bot.query("SELECT state FROM approval_requests WHERE id = ?", request_id) == [
        ("running",)]

    await c.restart()
    told = await bob.wait_for_message(
        room, sender=bot.user_id, after_event_id=command, timeout=TIMEOUT,
        predicate=lambda e: str(e.source["content"].get("body", "")).startswith(
            f"✅ I restarted while the deploy of `{domain}` ran."))
    assert "finished by the swarm" in str(told.source["content"]["body"])
    assert env_type(env_path) == "TYPE=slowapp:1.0.0+v1"

    def card_closed(event: Event) -> bool:
        content = event.source.get("content", {})
        return (_replaces(event) == card.event_id and "interrupted: coopbot stopped before it "
                "recorded the outcome" in str(content.get("m.new_content", {}).get("body", "")))

    await bob.wait_for_event(room, card_closed, timeout=TIMEOUT, what="the card closed")
    assert bot.query("SELECT state FROM approval_requests WHERE id = ?", request_id) == [
        ("interrupted",)]
    closes = [row[0] for row in bot.query(
        "SELECT result FROM audit_log WHERE command = ? AND decision = 'result'",
        f"request #{request_id}")]
    assert closes == ["interrupted: coopbot stopped before it recorded the outcome"], closes
    deployed = service_version(stack)
    await asyncio.sleep(3)  # nothing runs the approved deploy a second time
    assert service_version(stack) == deployed
    ops = bot.query("SELECT result FROM operations WHERE app = ?", domain)
    assert ops == [("ok",)], ops
