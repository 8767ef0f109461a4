"""The app lifecycle's own decisions on a real recipe repo (bare git, annotated tags), a real
abra dir that is a real git repository, and a real SQLite operation store; only the swarm is
FakeEngine. tests/test_bot_lifecycle.py runs the flow through a real room on a real swarm."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from coopbot.commands.apps import mask_values
from coopbot.commands.secrets import mask_insert
from pydantic import ValidationError

from coopbot.config import Config, RoomConfig
from coopbot.errors import NotFound, UsageError, UserError
from coopbot.ids import EventID, RoomID, UserID
from coopbot.operations.app_files import AppFiles, EnvEdit, Requested
from coopbot.operations.app_runtime import _output_reply, abra_functions
from coopbot.operations.deployer import Deployer
from coopbot.operations.plan import OperationRequest, PlanChanged
from coopbot.operations.preflight import Preflight
from coopbot.operations.scope import AppScope
from coopbot.operations.secret_ops import ALL, SecretService
from coopbot.recipes.app_secrets import DEFAULT_LENGTH, generate, next_version
from coopbot.recipes.apps import AppCatalog
from coopbot.recipes.apps_history import AppsHistory
from coopbot.recipes.repo import RecipeStore
from coopbot.replies import Reply
from coopbot.store.database import Database
from coopbot.store.operations import OperationStore
from tests.fakes import FakeEngine, FakePool
from tests.harness.apps import app_env, stack_of, unique_domain
from tests.harness.recipes import AbraDir, tree_of_testapp

BOB = UserID("@bob:example.org")
ASKED = Requested(BOB, RoomID("!ops:example.org"), EventID("$cmd"))


@dataclass
class Life:
    files: AppFiles
    secrets: SecretService
    engine: FakeEngine
    operations: OperationStore
    abra: AbraDir
    redeploys: list[str]

    def git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.abra.path, check=True,
                              capture_output=True, text=True).stdout


@pytest.fixture
def git_abra_dir(abra_dir: AbraDir) -> AbraDir:
    subprocess.run(["git", "init", "-q", str(abra_dir.path)], check=True)
    return abra_dir


@pytest.fixture
async def life(tmp_path: Path, git_abra_dir: AbraDir,
               testapp_recipe: Path) -> AsyncIterator[Life]:
    abra_dir = git_abra_dir
    engine = FakeEngine()
    pool = FakePool({"local": engine, "other": FakeEngine("other")})
    recipes = RecipeStore(tmp_path / "cache", "/nonexistent/{recipe}.git",
                          {"testapp": str(testapp_recipe)})
    redeploys: list[str] = []

    async def redeploy(request: OperationRequest, room: object, progress: object) -> Reply:
        redeploys.append(request.app_name)
        return Reply.of("redeployed")

    async with Database(tmp_path / "bot.db") as database:
        operations = OperationStore(database)
        files = AppFiles(AppScope(AppCatalog(abra_dir.path)), recipes, pool,  # type: ignore[arg-type]
                         operations, AppsHistory(abra_dir.path))
        secrets = SecretService(files, pool, operations, redeploy)  # type: ignore[arg-type]
        yield Life(files, secrets, engine, operations, abra_dir, redeploys)


async def test_new_copies_the_newest_sample_with_type_and_domain_and_commits(life: Life) -> None:
    domain = unique_domain()
    app, made_from, note = await life.files.create("testapp", domain, "local", None,
                                                   chaos=False, request=ASKED)
    sample = tree_of_testapp("1.2.0+v3")[".env.sample"]
    path = life.abra.path / "servers" / "local" / f"{domain}.env"
    # abra's new: the sample byte for byte, with TYPE and DOMAIN set in place.
    assert path.read_text() == sample.replace("TYPE=testapp\n", "TYPE=testapp:1.2.0+v3\n") \
        .replace("DOMAIN=testapp.example.com", f"DOMAIN={domain}")
    assert made_from == "1.2.0+v3" and app.version == "1.2.0+v3"
    assert "Committed to the apps dir's history" in note
    log = life.git("log", "-1", "--format=%s%n%b")
    assert f"new {domain} on local: testapp 1.2.0+v3" in log and f"Requested-by: {BOB}" in log
    with pytest.raises(UserError, match="exists already"):
        await life.files.create("testapp", domain, "other", None, chaos=False, request=ASKED)
    with pytest.raises(NotFound, match="Unknown server"):
        await life.files.plan_new("testapp", unique_domain(), "nowhere", None, False)
    room = RoomConfig(servers=["local"], apps=["*.coop.example"])
    with pytest.raises(UserError, match="does not control"):
        await life.files.plan_new("testapp", domain, None, room, False)


async def test_new_chaos_takes_the_latest_commit_untagged(life: Life) -> None:
    domain = unique_domain()
    app, made_from, _ = await life.files.create("testapp", domain, "local", None, chaos=True,
                                                request=ASKED)
    assert app.version is None and app.recipe == "testapp" and "(chaos)" in made_from


async def test_config_show_hides_values_and_edits_keep_bytes(life: Life) -> None:
    domain = unique_domain()
    app, _, _ = await life.files.create("testapp", domain, "local", None, chaos=False,
                                        request=ASKED)
    shown = "\n".join(await life.files.show(domain, None))
    assert f"`DOMAIN` = `{domain}`" in shown and "`GREETING` = (hidden)" in shown
    assert "hello" not in shown.replace(domain, "")
    assert "length=32" in shown

    before = app.env_path.read_text()
    edit = EnvEdit({"GREETING": "bonjour tout le monde"}, ())
    planned = await life.files.plan_edit(domain, None, edit)
    assert "bonjour" not in " ".join(planned.lines) and "GREETING" in planned.lines[0]
    # Another value than the one voted on does not ride on the votes.
    other = EnvEdit({"GREETING": "hola"}, ())
    with pytest.raises(PlanChanged):
        await life.files.edit(domain, None, other, Requested(
            BOB, None, None, expected_binding=planned.binding))
    changed, note = await life.files.edit(domain, None, edit, ASKED)
    assert changed and "Committed" in note
    after = app.env_path.read_text()
    assert after == before.replace("GREETING=hello", 'GREETING="bonjour tout le monde"')
    shown = "\n".join(await life.files.show(domain, None))
    assert "`GREETING` = (hidden) (differs from .env.sample)" in shown
    subject = life.git("log", "-1", "--format=%s")
    assert subject.strip() == f"config {domain}: set GREETING"
    assert "bonjour" not in life.git("log", "--format=%B")

    for bad, why in ((EnvEdit({"DB_PASSWORD": "x"}, ()), "looks like a secret"),
                     (EnvEdit({"TYPE": "x"}, ()), "is set by"),
                     (EnvEdit({"NOT_IN_SAMPLE": "x"}, ()), "--force"),
                     (EnvEdit({}, ("NOPE",)), "has no key")):
        with pytest.raises(UserError, match=why):
            await life.files.edit(domain, None, bad, ASKED)
    await life.files.edit(domain, None, EnvEdit({"NOT_IN_SAMPLE": "x"}, (), force=True), ASKED)
    await life.files.edit(domain, None, EnvEdit({}, ("NOT_IN_SAMPLE",)), ASKED)
    assert app.env_path.read_text() == after
    history = await life.files.changes(domain, None, 10)
    assert history is not None
    assert [c.subject for c in history][:3] == [
        f"config {domain}: unset NOT_IN_SAMPLE", f"config {domain}: set NOT_IN_SAMPLE",
        f"config {domain}: set GREETING"]
    assert all(c.requester == BOB for c in history)


async def test_secrets_follow_the_length_rule_names_and_versions(life: Life) -> None:
    domain = unique_domain()
    await life.files.create("testapp", domain, "local", None, chaos=False, request=ASKED)
    lines = "\n".join(await life.secrets.describe(domain, None))
    assert f"`{stack_of(domain)}_db_password_v1` **missing**" in lines
    assert "`SECRET_DB_PASSWORD_VERSION` = `v1`" in lines and "length 32" in lines
    made = await life.secrets.generate(domain, None, ALL, ASKED)
    assert made == [f"{stack_of(domain)}_db_password_v1"]
    value = life.engine.secret_values[made[0]]
    assert len(value) == 32 and value.isalnum()
    with pytest.raises(UserError, match="exists already"):
        await life.secrets.generate(domain, None, ALL, ASKED)

    # Rotation of an app that is not deployed: v2 made, the version key bumped, no redeploy.
    rotated = "\n".join(await life.secrets.rotate(domain, None, "db_password", ASKED, _ignore))
    env_path = life.abra.path / "servers" / "local" / f"{domain}.env"
    assert "SECRET_DB_PASSWORD_VERSION=v2 # length=32\n" in env_path.read_text()
    assert f"{stack_of(domain)}_db_password_v2" in life.engine.secrets
    assert f"`{stack_of(domain)}_db_password_v1` is no longer used" in rotated
    assert life.redeploys == []
    with pytest.raises(UserError, match="uses db_password v2"):
        await life.secrets.remove(domain, None, "db_password", "v2", ASKED)
    removed = await life.secrets.remove(domain, None, "db_password", "v1", ASKED)
    assert removed == f"{stack_of(domain)}_db_password_v1"
    assert removed not in life.engine.secrets
    assert "db_password v1 -> v2" in life.git("log", "-1", "--format=%s")

    # Once deployed, rotation redeploys through the deployer.
    life.engine.run(stack_of(domain), "1.2.0+v3")
    await life.secrets.rotate(domain, None, "db_password", ASKED, _ignore)
    assert life.redeploys == [domain]


async def test_secret_names_over_64_characters_are_refused(life: Life) -> None:
    domain = "a" * 40 + ".example.org"
    await life.files.create("testapp", domain, "local", None, chaos=False, request=ASKED)
    with pytest.raises(UserError, match="Docker allows 64"):
        await life.secrets.generate(domain, None, "db_password", ASKED)
    assert life.engine.secrets == set()


def test_generation_rule_and_versions() -> None:
    assert len(generate(None)) == DEFAULT_LENGTH and len(generate(7)) == 7
    assert generate(40) != generate(40)
    with pytest.raises(UserError):
        generate(0)
    assert next_version("v1") == "v2" and next_version("v9") == "v10"
    with pytest.raises(UserError):
        next_version("2024-01")


def test_abra_sh_functions_and_audit_masks() -> None:
    script = ("export X=1\nmigrate() {\n  echo hi\n}\nfunction backup_db {\n  :\n}\n"
              "  greet () { echo \"$1\"; }\n# fake() {\n")
    assert abra_functions(script) == ["backup_db", "greet", "migrate"]
    assert mask_values(("blog", "set", "GREETING=hello world")) == ("blog", "set", "GREETING=…")
    assert mask_values(("blog", "set GREETING=hello world")) == ("blog", "set", "GREETING=…")
    assert mask_values(("blog",)) == ("blog",)
    assert mask_insert(("blog", "insert", "db v2 s3cr3t value")) == (
        "blog", "insert", "db", "v2", "[value]")
    assert mask_insert(("blog", "insert", "db", "v2", "s3cr3t")) == (
        "blog", "insert", "db", "v2", "[value]")
    assert mask_insert(("blog", "rotate", "db")) == ("blog", "rotate", "db")


async def _ignore(update: Reply) -> None:
    return None


async def test_a_deploys_type_rewrite_is_committed_with_the_requester(
        life: Life, tmp_path: Path, testapp_recipe: Path) -> None:
    domain = unique_domain()
    env_path = app_env(life.abra, "local", domain)
    life.engine.secrets.add(f"{stack_of(domain)}_db_password_v1")
    scope = AppScope(AppCatalog(life.abra.path))
    recipes = RecipeStore(tmp_path / "cache2", "/nonexistent/{recipe}.git",
                          {"testapp": str(testapp_recipe)})

    deployer = Deployer(scope, recipes, FakePool({"local": life.engine}),  # type: ignore[arg-type]
                        life.operations, Preflight({"local": False}),
                        env_written=life.files.env_written)
    await deployer.run(OperationRequest(kind="deploy", app_name=domain, version="1.0.0+v1",
                                        requester=BOB), None, _ignore)
    assert "TYPE=testapp:1.0.0+v1\n" in env_path.read_text()
    assert life.git("log", "-1", "--format=%s|%b").strip() == (
        f"deploy {domain}: TYPE 1.0.0+v1|Requested-by: {BOB}")


def test_check_config_knows_the_lifecycle_policies() -> None:
    base = {"matrix": {"homeserver": "http://127.0.0.1:1", "user_id": "@bot:localhost",
                       "password": "x"}}
    config = Config.model_validate({**base, "policies": {
        kind: {"approvals": 1} for kind in ("new", "config", "secret", "restart", "cmd",
                                            "remove")}})
    assert set(config.policies) == {"new", "config", "secret", "restart", "cmd", "remove"}
    with pytest.raises(ValidationError, match="unknown operation 'secrets'"):
        Config.model_validate({**base, "policies": {"secrets": {"approvals": 1}}})


def test_an_insert_mistyped_never_echoes_its_words() -> None:
    from coopbot.commands.secrets import ACTIONS

    from coopbot.subcommands import bind_action

    with pytest.raises(UsageError) as caught:
        bind_action("secret", "member", ACTIONS, (), "insert", "db_pass/word!x", maxsplit=2)
    assert "db_pass/word!x" not in str(caught.value)


def test_long_cmd_output_is_attached_and_the_room_sees_its_tail() -> None:
    short = _output_reply("**`greet`**: ok", "hello\n", "x.txt")
    assert short.attachment is None and "hello" in short.text
    output = "".join(f"line {n}\n" for n in range(100))
    long = _output_reply("**`dump`**: ok", output, "app-dump.txt")
    assert long.attachment is not None and long.attachment.data == output.encode()
    assert "line 99" in long.text and "line 10\n" not in long.text
    assert "The last 20 of 100 lines" in long.text


async def test_new_with_secrets_is_a_plan_of_its_own(life: Life) -> None:
    domain = unique_domain()
    plain, _ = await life.files.plan_new("testapp", domain, "local", None, False)
    with_secrets, _ = await life.files.plan_new("testapp", domain, "local", None, False, True)
    assert "generate every secret it needs" in with_secrets.lines[0]
    assert plain.binding != with_secrets.binding  # votes for one never run the other
    with pytest.raises(PlanChanged):
        await life.files.create("testapp", domain, "local", None, chaos=False,
                                with_secrets=True, request=Requested(
                                    BOB, None, None, expected_binding=plain.binding))
    assert not (life.abra.path / "servers" / "local" / f"{domain}.env").exists()


def test_the_audit_masks_a_mistyped_secret_command_too() -> None:
    from coopbot.commands.secrets import SecretCommands

    from coopbot.registry import CommandRegistry

    registry = CommandRegistry(SecretCommands(None, None, read_role="member",  # type: ignore[arg-type]
                                              change_role="operator").specs())
    words = ("blog", "insert", "db", "v2", "s3cr3t")
    assert registry.audited("secret", words)[-1] == "[value]"
    assert registry.audited("secrte", words)[-1] == "[value]"
    assert registry.audited("ping", ("a", "b")) == ("a", "b")
