"""The deployer's own decisions, on a real recipe (a bare git repo with release tags), a real
abra app dir, real preflight and a real SQLite operation store; only the swarm is FakeEngine
(tests/fakes.py). tests/test_bot_swarm.py runs the same flows on a real swarm."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from coopbot.errors import Busy, CoopbotError, NotFound, OperationFailed, UserError
from coopbot.ids import EventID, OperationID, RoomID, UserID
from coopbot.operations.deployer import Deployer
from coopbot.operations.plan import Binding, OperationRequest, PlanChanged
from coopbot.operations.preflight import Preflight, PreflightFailed
from coopbot.operations.scope import AppScope
from coopbot.recipes.apps import App, AppCatalog
from coopbot.recipes.repo import RecipeStore
from coopbot.replies import Reply
from coopbot.store.audit import AuditLog
from coopbot.store.database import Database
from coopbot.store.operations import OperationStore
from tests.fakes import FakeEngine, FakePool
from tests.harness.apps import app_env, stack_of, unique_domain
from tests.harness.recipes import AbraDir

ALICE = UserID("@alice:example.org")
ROOM = RoomID("!ops:example.org")


@dataclass
class Bench:
    deployer: Deployer
    engine: FakeEngine
    operations: OperationStore
    audit: AuditLog
    domain: str
    env_path: Path
    progress: list[str] = field(default_factory=list)
    backups: list[tuple[str, str]] = field(default_factory=list)  # (app, kind)
    backup_error: CoopbotError | None = None

    @property
    def stack(self) -> str:
        return stack_of(self.domain)

    def request(self, kind: str, version: str | None = None,
                expected_binding: Binding | None = None) -> OperationRequest:
        return OperationRequest(kind=kind, app_name=self.domain, version=version,
                                requester=ALICE, room_id=ROOM, event_id=EventID("$cmd"),
                                expected_binding=expected_binding)

    async def run(self, kind: str, version: str | None = None,
                  expected_binding: Binding | None = None) -> Reply:
        async def progress(update: Reply) -> None:
            self.progress.append(update.text)

        request = self.request(kind, version, expected_binding)
        return await self.deployer.run(request, None, progress)

    async def outcome(self) -> str:
        """The result of the last operation, from its audit row."""
        rows = [row for row in await self.audit.recent() if row.decision == "operation"]
        return rows[0].result

    def env_type(self) -> str:
        return next(line for line in self.env_path.read_text().splitlines()
                    if line.startswith("TYPE="))


@pytest.fixture
async def bench(tmp_path: Path, abra_dir: AbraDir, testapp_recipe: Path) -> AsyncIterator[Bench]:
    domain = unique_domain()
    env_path = app_env(abra_dir, "local", domain)
    engine = FakeEngine(secrets={f"{stack_of(domain)}_db_password_v1"})
    recipes = RecipeStore(tmp_path / "cache", "/nonexistent/{recipe}.git",
                          {"testapp": str(testapp_recipe)})
    async with Database(tmp_path / "bot.db") as database:
        operations = OperationStore(database)
        holder: list[Bench] = []

        async def pre_backup(app: App, operation_id: str, kind: str, progress: object) -> None:
            bench = holder[0]
            assert await operations.get(OperationID(operation_id)) is not None
            assert engine.deployed == [], "the backup comes before anything changes"
            bench.backups.append((app.name, kind))
            if bench.backup_error is not None:
                raise bench.backup_error

        deployer = Deployer(AppScope(AppCatalog(abra_dir.path)), recipes,
                            FakePool({"local": engine}),  # a ServerPool as the deployer uses it
                            operations, Preflight({"local": False}), pre_backup=pre_backup,
                            needs_backup=lambda kind, room, app: kind == "upgrade")
        holder.append(Bench(deployer, engine, operations, AuditLog(database), domain,
                            env_path))
        yield holder[0]


async def test_a_first_deploy_runs_the_version_asked_and_records_it(bench: Bench) -> None:
    reply = await bench.run("deploy", "1.0.0+v1")
    assert reply.text.startswith(f"`{bench.domain}` deployed: 1.0.0+v1 on local, converged")
    assert bench.engine.deployed == [(bench.stack, "1.0.0+v1")]
    assert bench.env_type() == "TYPE=testapp:1.0.0+v1"
    assert (await bench.outcome()).startswith("ok in ")
    assert await bench.operations.deployed_versions(bench.domain) == ["1.0.0+v1"]
    assert await bench.operations.lock_holder(bench.domain) is None
    assert bench.backups == [], "a deploy needs no backup first (by this policy)"
    # Progress is throttled (one edit per 2 s at most): the first update always goes out.
    assert bench.progress[0] == f"⏳ deploy `{bench.domain}`: reading the swarm and the recipe..."


async def test_a_deploy_never_changes_the_version_that_runs(bench: Bench) -> None:
    bench.engine.run(bench.stack, "1.0.0+v1")
    with pytest.raises(UserError, match=r"already runs 1\.0\.0\+v1\. Use `!upgrade` or `!rollback`"):
        await bench.run("deploy", "1.1.0+v2")
    assert bench.engine.deployed == []
    assert (await bench.outcome()).startswith("refused")
    # Redeploying what runs is fine.
    await bench.run("deploy")
    assert bench.engine.deployed == [(bench.stack, "1.0.0+v1")]


async def test_an_upgrade_backs_up_first_and_tells_the_release_notes(bench: Bench) -> None:
    bench.engine.run(bench.stack, "1.0.0+v1")
    reply = await bench.run("upgrade", "1.1.0+v2")
    assert reply.text.startswith(f"`{bench.domain}` upgraded: 1.0.0+v1 -> 1.1.0+v2 on local")
    assert "Release notes 1.1.0+v2:\n    Serves the v2 page." in reply.text
    assert bench.backups == [(bench.domain, "upgrade")]
    assert bench.engine.deployed == [(bench.stack, "1.1.0+v2")]
    assert bench.env_type() == "TYPE=testapp:1.1.0+v2"


async def test_a_failed_backup_stops_the_upgrade_before_anything_changes(bench: Bench) -> None:
    bench.engine.run(bench.stack, "1.0.0+v1")
    bench.backup_error = CoopbotError("restic could not reach the repository")
    with pytest.raises(OperationFailed, match="did not run, nothing was changed: the backup "
                                              "before it failed: restic could not reach"):
        await bench.run("upgrade")
    assert bench.engine.deployed == []
    assert (await bench.outcome()).startswith("failed")
    assert await bench.operations.lock_holder(bench.domain) is None


async def test_already_the_newest_version_is_a_refusal(bench: Bench) -> None:
    bench.engine.run(bench.stack, "1.2.0+v3")
    with pytest.raises(UserError, match=r"already runs the newest version, 1\.2\.0\+v3"):
        await bench.run("upgrade")
    with pytest.raises(UserError, match=r"1\.1\.0\+v2 is not newer than 1\.2\.0\+v3"):
        await bench.run("upgrade", "1.1.0+v2")
    assert bench.engine.deployed == [] and bench.backups == []
    assert (await bench.outcome()).startswith("refused")


async def test_only_the_plan_that_was_approved_runs(bench: Bench) -> None:
    bench.engine.run(bench.stack, "1.0.0+v1")
    plan = await bench.deployer.plan(bench.request("upgrade", "1.1.0+v2"), None)
    assert (plan.from_version, plan.to_version) == ("1.0.0+v1", "1.1.0+v2")
    assert bench.engine.deployed == [], "planning changes nothing"
    # The app's env file changes after the vote: the approved plan is not what would run.
    bench.env_path.write_text(bench.env_path.read_text() + "EXTRA=1\n")
    with pytest.raises(PlanChanged) as refused:
        await bench.run("upgrade", "1.1.0+v2", expected_binding=plan.binding)
    assert "app env file" in str(refused.value)
    fresh = refused.value.fresh.binding
    assert fresh.env_digest != plan.binding.env_digest and fresh.to_version == "1.1.0+v2"
    assert bench.engine.deployed == [] and bench.backups == []
    assert (await bench.outcome()).startswith("refused")
    # The fresh plan, approved, runs.
    await bench.run("upgrade", "1.1.0+v2", expected_binding=fresh)
    assert bench.engine.deployed == [(bench.stack, "1.1.0+v2")]


async def test_a_failed_upgrade_returns_to_the_previous_version_and_says_why(
    bench: Bench,
) -> None:
    bench.engine.run(bench.stack, "1.1.0+v2")
    bench.engine.failing = {"1.2.0+v3"}
    bench.engine.failing_log = ("GREETING is hello-from-env", "healthcheck: connection refused")
    with pytest.raises(OperationFailed) as failed:
        await bench.run("upgrade")
    message = str(failed.value)
    assert message.startswith(f"upgrade `{bench.domain}` on local: 1.1.0+v2 -> 1.2.0+v3 "
                              "failed after ")
    assert "Service `app`: its healthcheck failed. Last task error: task: non-zero exit" in message
    assert "healthcheck: connection refused" in message
    assert "hello-from-env" not in message, "env values are redacted from the log tail"
    assert "Returned to 1.1.0+v2: running now is 1.1.0+v2, converged and healthy." in message
    assert bench.engine.deployed == [(bench.stack, "1.2.0+v3"), (bench.stack, "1.1.0+v2")]
    assert bench.env_type() == "TYPE=testapp", "a failed upgrade records no new version"
    assert (await bench.outcome()).startswith("failed")
    assert await bench.operations.deployed_versions(bench.domain) == []


async def test_a_failed_first_deploy_leaves_the_stack_as_it_is(bench: Bench) -> None:
    bench.engine.failing = {"1.0.0+v1"}
    with pytest.raises(OperationFailed, match="There was no earlier version to return to"):
        await bench.run("deploy", "1.0.0+v1")
    assert bench.engine.deployed == [(bench.stack, "1.0.0+v1")]


async def test_a_busy_app_is_refused_without_changing_anything(bench: Bench) -> None:
    await bench.operations.try_lock(bench.domain, OperationID("other"), "backup",
                                    UserID("@bob:example.org"))
    since = time.strftime("%H:", time.gmtime())
    with pytest.raises(Busy, match=f"busy: backup of `{bench.domain}` by @bob:example.org "
                                   f"since {since}"):
        await bench.run("deploy", "1.0.0+v1")
    assert bench.engine.deployed == []
    holder = await bench.operations.lock_holder(bench.domain)
    assert holder is not None and holder.operation_id == "other", "the lock stays its holder's"


async def test_preflight_refuses_a_deploy_whose_secret_is_missing(bench: Bench) -> None:
    bench.engine.secrets = set()
    with pytest.raises(PreflightFailed, match="missing swarm secrets on local"):
        await bench.run("deploy", "1.0.0+v1")
    assert bench.engine.deployed == []
    assert (await bench.outcome()).startswith("refused")


async def test_undeploy_removes_the_stack_and_keeps_the_volumes(bench: Bench) -> None:
    with pytest.raises(NotFound, match="is not deployed on local"):
        await bench.run("undeploy")
    bench.engine.run(bench.stack, "1.1.0+v2")
    reply = await bench.run("undeploy")
    assert reply.text.startswith(f"`{bench.domain}` undeployed from local (it ran 1.1.0+v2).")
    assert f"volumes `{bench.stack}_data`" in reply.text
    assert bench.engine.removed == [bench.stack]
    assert (await bench.outcome()).startswith("ok in ")
