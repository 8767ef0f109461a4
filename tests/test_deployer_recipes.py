"""Recipes as they are (tests/harness/recipes.py shapes: untagged, `vX.Y.Z` tags with
`X.Y.Z+X.Y.Z` labels, a `latest` label, the old `.app.version` scheme, a commented-out secret
version), through the real deployer, recipe repos, env files, preflight and SQLite, with the
in-memory FakeEngine for the swarm; and the update check of apps deployed from them.
tests/test_bot_recipes.py runs them on a real swarm."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from coopbot.config import RoomConfig
from coopbot.errors import OperationFailed, UserError
from coopbot.ids import EventID, RoomID, UserID
from coopbot.notify.notifier import Notifier
from coopbot.notify.targets import NotificationTargets
from coopbot.notify.updates import Available, UpdateChecker
from coopbot.observe import Observers
from coopbot.operations.deployer import Deployer
from coopbot.operations.plan import OperationRequest
from coopbot.operations.preflight import Preflight, PreflightFailed
from coopbot.operations.scope import AppScope
from coopbot.recipes.apps import AppCatalog
from coopbot.recipes.labels import label
from coopbot.recipes.repo import RecipeStore
from coopbot.replies import Reply
from coopbot.rooms import RoomDirectory
from coopbot.servers.states import ServiceState
from coopbot.store.database import Database
from coopbot.store.notices import NoticeStore
from coopbot.store.operations import OperationStore
from tests.fakes import FakeEngine, FakePool
from tests.harness.apps import stack_of, unique_domain
from tests.harness.recipes import AbraDir

ALICE = UserID("@alice:example.org")


@dataclass
class Shapes:
    deployer: Deployer
    engine: FakeEngine
    operations: OperationStore
    abra: AbraDir
    recipes: RecipeStore
    posted: Posted
    database: Database

    def app(self, recipe: str, version: str | None = None, **extra: str) -> str:
        domain = unique_domain()
        self.abra.write_app("local", domain, recipe=recipe, version=version, extra=extra)
        return domain

    async def run(self, kind: str, domain: str, version: str | None = None,
                  chaos: str | None = None) -> Reply:
        async def progress(update: Reply) -> None:
            pass

        request = OperationRequest(kind=kind, app_name=domain, version=version,
                                   requester=ALICE, room_id=RoomID("!ops:x"),
                                   event_id=EventID("$cmd"), chaos=chaos)
        return await self.deployer.run(request, None, progress)

    def labels(self, domain: str) -> dict[str, str]:
        stack = stack_of(domain)
        prefix = f"coop-cloud.{stack}."
        return {key.removeprefix(prefix): value
                for key, value in self.engine.stacks[stack][0].labels.items()
                if key.startswith(prefix) and not key.endswith((".timeout", "app.version"))}

    def env_type(self, domain: str) -> str:
        path = self.abra.path / "servers" / "local" / f"{domain}.env"
        return next(x for x in path.read_text().splitlines() if x.startswith("TYPE="))

    def runs_label(self, domain: str, key: str, value: str) -> None:
        """The app runs with a label as the recipe's compose says it (deployed by hand)."""
        stack = stack_of(domain)
        self.engine.run(stack, "unused")
        service = self.engine.stacks[stack][0]
        self.engine.stacks[stack] = [replace(service, labels={label(stack, key): value})]


@dataclass
class Posted:
    """Notification rooms (a recording fake of the Matrix side)."""

    texts: list[str] = field(default_factory=list)

    async def post(self, room_id: RoomID, reply: Reply, *, key: str,
                   thread_root: EventID | None = None) -> EventID:
        self.texts.append(reply.text)
        return EventID(f"$n{len(self.texts)}")


@pytest.fixture
async def shapes(tmp_path: Path, abra_dir: AbraDir,
                 recipe_shapes: dict[str, Path]) -> AsyncIterator[Shapes]:
    engine, posted = FakeEngine(), Posted()
    recipes = RecipeStore(tmp_path / "cache", "/nonexistent/{recipe}.git",
                          {name: str(path) for name, path in recipe_shapes.items()})
    async with Database(tmp_path / "bot.db") as database:
        observers = Observers()
        news = RoomID("!news:x")
        notifier = Notifier(NotificationTargets(RoomDirectory({
            news: RoomConfig(servers=["local"], notifications=True)})), posted,
            NoticeStore(database))
        observers.subscribe(notifier.on_event)
        operations = OperationStore(database, observers=observers)
        deployer = Deployer(AppScope(AppCatalog(abra_dir.path)), recipes,
                            FakePool({"local": engine}), operations, Preflight({"local": False}),
                            needs_backup=lambda kind, room, app: False)
        yield Shapes(deployer, engine, operations, abra_dir, recipes, posted, database)


async def test_v_tags_with_plus_labels_deploy_redeploy_and_recover(shapes: Shapes) -> None:
    domain = shapes.app("vtags")
    reply = await shapes.run("deploy", domain, "1.0.1")
    assert "deployed: v1.0.1 on local" in reply.text
    # The label says the version deployed (the tag), not the compose's `1.0.1+1.0.1`.
    assert shapes.labels(domain)["version"] == "v1.0.1"
    assert shapes.env_type(domain) == "TYPE=vtags:v1.0.1"

    # Deployed by hand (or an older coopbot) with the compose's own label: still v1.0.2.
    shapes.runs_label(domain, "version", "1.0.2+1.0.2")
    reply = await shapes.run("deploy", domain)
    assert "deployed: v1.0.2 on local" in reply.text
    shapes.runs_label(domain, "version", "1.0.2+1.0.2")
    shapes.engine.failing = {"v1.0.3"}
    with pytest.raises(OperationFailed) as failed:
        await shapes.run("upgrade", domain)
    assert "v1.0.2 -> v1.0.3 failed" in str(failed.value)
    assert "Returned to v1.0.2: running now is v1.0.2, converged and healthy." in str(failed.value)


async def test_a_latest_label_is_read_from_the_env_file_else_the_operation_store(
    shapes: Shapes,
) -> None:
    domain = shapes.app("latestlabel", "1.0.0+v1")
    shapes.runs_label(domain, "version", "latest")
    reply = await shapes.run("upgrade", domain)
    assert "upgraded: 1.0.0+v1 -> 1.1.0+v2" in reply.text
    # The env file no longer says it (edited by hand): the operation store still knows.
    env = shapes.abra.path / "servers" / "local" / f"{domain}.env"
    env.write_text(env.read_text().replace("TYPE=latestlabel:1.1.0+v2", "TYPE=latestlabel"))
    shapes.runs_label(domain, "version", "latest")
    with pytest.raises(UserError, match=r"already runs the newest version, 1\.1\.0\+v2"):
        await shapes.run("upgrade", domain)
    reply = await shapes.run("rollback", domain)
    assert "rolled back: 1.1.0+v2 -> 1.0.0+v1" in reply.text


async def test_the_old_label_scheme_is_deployed_and_upgradable(shapes: Shapes) -> None:
    domain = shapes.app("oldscheme")
    shapes.runs_label(domain, "app.version", "2.4.7+v1")
    reply = await shapes.run("upgrade", domain)
    assert "upgraded: 2.4.7+v1 -> 2.4.8+v2" in reply.text
    assert shapes.labels(domain)["version"] == "2.4.8+v2"


async def test_an_untagged_recipe_says_how_and_deploys_chaos_the_abra_way(
    shapes: Shapes,
) -> None:
    domain = shapes.app("untagged")
    with pytest.raises(UserError, match=rf"no releases yet: `!deploy {domain} --chaos`"):
        await shapes.run("deploy", domain)
    plan = await shapes.deployer.plan(OperationRequest(
        kind="deploy", app_name=domain, version=None, requester=ALICE, chaos=""), None)
    assert plan.commit is not None and len(plan.commit) == 40, "the vote binds the commit"
    short = plan.commit[:8]
    reply = await shapes.run("deploy", domain, chaos="")
    assert f"deployed: chaos {short} on local" in reply.text
    assert shapes.labels(domain) == {"recipe": "untagged", "chaos": "true",
                                     "chaos-version": short, "autoupdate": "false",
                                     "version": "0.1.0+dev"}  # no release: the compose's own
    assert shapes.env_type(domain) == f"TYPE=untagged:{short}"  # as abra writes it
    with pytest.raises(UserError, match=rf"runs chaos {short} \(a chaos deploy\)"):
        await shapes.run("deploy", domain)
    with pytest.raises(UserError, match="not a version"):
        await shapes.run("deploy", domain, "1.0.0", chaos="")


async def test_a_chaos_deploy_keeps_the_last_release_as_its_version(shapes: Shapes) -> None:
    domain = shapes.app("vtags", ENABLE_AUTO_UPDATE="true")
    await shapes.run("deploy", domain, "v1.0.1")
    assert shapes.labels(domain) == {"recipe": "vtags", "chaos": "false", "version": "v1.0.1",
                                     "autoupdate": "true"}
    reply = await shapes.run("deploy", domain, chaos="main")
    labels = shapes.labels(domain)
    assert labels["chaos"] == "true" and labels["version"] == "v1.0.3"
    assert f"v1.0.1 -> chaos {labels['chaos-version']}" in reply.text
    # From a chaos deploy, a release again; abra's digests resolved (no check_images here),
    # services never pruned.
    reply = await shapes.run("deploy", domain, "v1.0.2")
    assert shapes.labels(domain)["chaos"] == "false"
    assert set(shapes.engine.options) == {(False, "always")}


async def test_a_secret_whose_version_variable_is_unset_names_the_variable(
    shapes: Shapes,
) -> None:
    domain = shapes.app("commentsecret")
    with pytest.raises(PreflightFailed) as failed:
        await shapes.run("deploy", domain)
    assert (f"`{stack_of(domain)}_ari_password_`; the env file of `{domain}` does not set "
            "`SECRET_ARI_PASSWORD_VERSION`, which their names use") in str(failed.value)


async def test_undeploy_of_a_stack_that_never_ran_says_so(shapes: Shapes) -> None:
    domain = shapes.app("missingimage")
    shapes.runs_label(domain, "version", "1.0.0+missing")
    stack = stack_of(domain)
    service = shapes.engine.stacks[stack][0]
    shapes.engine.stacks[stack] = [replace(service, replicas_running=0, replicas_updated=0,
                                           rejections=3)]
    reply = await shapes.run("undeploy", domain)
    assert "(1.0.0+missing was deployed but never ran)" in reply.text
    assert "it ran" not in reply.text


async def test_a_refused_upgrade_is_not_announced_but_a_chaos_deploy_is(shapes: Shapes) -> None:
    domain = shapes.app("oldscheme")
    shapes.runs_label(domain, "app.version", "2.4.8+v2")
    with pytest.raises(UserError, match="already runs the newest version"):
        await shapes.run("upgrade", domain)
    assert shapes.posted.texts == [], "a refusal changed nothing: only its requester is told"
    reply = await shapes.run("deploy", domain, chaos="")
    short = reply.text.split("chaos ")[1][:8]
    [news] = shapes.posted.texts
    assert f"deploy `{domain}` on local: 2.4.8+v2 -> chaos {short}: ok" in news


@dataclass
class _Swarm:
    """What the update check reads of a pool: every stack of the FakeEngine."""

    engine: FakeEngine
    names: tuple[str, ...] = ("local",)

    def get(self, server: str) -> _Swarm:
        return self

    async def stacks(self) -> dict[str, list[ServiceState]]:
        return dict(self.engine.stacks)

    @asynccontextmanager
    async def background(self) -> AsyncIterator[None]:
        yield


@dataclass
class Offers:
    texts: list[str] = field(default_factory=list)
    upgrades: list[Available] = field(default_factory=list)

    async def announce(self, server: str, app: str, reply: Reply, key: str) -> int:
        self.texts.append(reply.text)
        return 1

    async def upgrade(self, available: Available) -> None:
        self.upgrades.append(available)


async def test_odd_labels_still_get_update_offers_but_chaos_deploys_do_not(
    shapes: Shapes,
) -> None:
    vtags = shapes.app("vtags")
    await shapes.run("deploy", vtags, "v1.0.1")
    shapes.runs_label(vtags, "version", "1.0.1+1.0.1")  # the compose's own label
    latest = shapes.app("latestlabel", "1.0.0+v1")  # the env file says the release
    shapes.runs_label(latest, "version", "latest")
    old = shapes.app("oldscheme")  # deployed by hand: only the label says the release
    shapes.runs_label(old, "app.version", "2.4.7+v1")
    service = shapes.engine.stacks[stack_of(old)][0]
    shapes.engine.stacks[stack_of(old)] = [replace(service, labels={
        **service.labels, label(stack_of(old), "autoupdate"): "true"})]
    chaos = shapes.app("vtags")
    await shapes.run("deploy", chaos, "v1.0.1")
    await shapes.run("deploy", chaos, chaos="")  # its `.version` label is the last release

    offers = Offers()
    checker = UpdateChecker(AppScope(AppCatalog(shapes.abra.path)), shapes.recipes,
                            _Swarm(shapes.engine), NoticeStore(shapes.database),
                            shapes.operations, offers.announce, [], offers.upgrade)
    found = {a.app.name: (a.running, a.newest_tag, a.auto_update)
             for a in await checker.check_once()}
    assert found == {vtags: ("v1.0.1", "v1.0.3", False),
                     latest: ("1.0.0+v1", "1.1.0+v2", False),
                     old: ("2.4.7+v1", "2.4.8+v2", True)}
    assert chaos not in found, "a chaos deploy gets no offer (kadabra skips it too)"
    [offer] = [t for t in offers.texts if vtags in t]
    assert "v1.0.3 is available (running v1.0.1)." in offer
    assert f"To upgrade: `!upgrade {vtags} v1.0.3`" in offer
    assert [a.app.name for a in offers.upgrades] == [old]
    assert await checker.check_once() == []  # each offer once
