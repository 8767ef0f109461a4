"""Consent decisions in the config and the store: check-config names the key of every wrong
organisation or policy key, and votes stored before stand asides existed read as they were."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from coopbot.approvals.policy import PolicyResolver
from coopbot.config import load_config
from coopbot.store.approvals import ApprovalStore, Choice
from coopbot.store.database import Database
from coopbot.store.migrations import MIGRATIONS
from tests.test_config import MINIMAL, problems_of, write


@pytest.mark.parametrize(("extra", "problem"), [
    ("policies: {deploy: {count: organisations}}",
     "policies.deploy.count: organisations needs the `organisations` key"),
    ("organisations: {ara: {users: ['@a:x']}, bee: {users: ['@a:x']}}",
     "organisations.bee.users: @a:x is already in organisation 'ara'"),
    ("organisations: {ara: {servers: [ara.coop]}, bee: {servers: [ara.coop]}}",
     "organisations.bee.servers: ara.coop is already in organisation 'ara'"),
    ("organisations: {ara: {servers: ['not a server']}}",
     "organisations.ara.servers: 'not a server' is not a homeserver name like example.org"),
    ("organisations: {Ara: {users: ['@a:x']}}",
     "organisations: name 'Ara' must be lowercase letters, digits, - or _"),
    ("organisations: {ara: {}}", "organisations.ara: lists nobody: give users or servers"),
    ("organisations: {ara: {users: [ana]}}",
     "organisations.ara.users.0: 'ana' is not a Matrix user id like @name:server"),
    ("policies: {deploy: {organisation_rule: majority}}",
     "policies.deploy.organisation_rule: Input should be 'latest' or 'unanimous'"),
    ("policies: {deploy: {lazy: 2h, remind: 3h}}",
     "policies.deploy: remind: 3h must be shorter than lazy (2h)"),
    ("policies: {deploy: {lazy: soon}}",
     "policies.deploy.lazy: 'soon' is not a duration like 30m, 24h or 7d"),
    ("policies: {deploy: {participation: -1}}",
     "policies.deploy.participation: Input should be greater than or equal to 0"),
    ("reminder_mentions: [bob]",
     "reminder_mentions.0: 'bob' is not a Matrix user id like @name:server"),
])
def test_check_config_names_the_key(tmp_path: Path, extra: str, problem: str) -> None:
    assert problems_of(write(tmp_path, MINIMAL + extra + "\n")) == [problem]


FEDERATION = MINIMAL + """
organisations:
  ara: {users: ["@ana:ara.coop"], servers: [ara.coop]}
  bee: {servers: [bee.coop]}
policies:
  upgrade: {count: organisations, approvals: 2, participation: 2, lazy: 48h, remind: 12h,
            organisation_rule: unanimous}
"""


def test_a_federation_policy_resolves_and_check_config_summarises_it(tmp_path: Path) -> None:
    path = write(tmp_path, FEDERATION)
    result = subprocess.run([sys.executable, "-m", "coopbot", "check-config", str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "organisation ara: 1 listed user(s), users of ara.coop" in result.stdout
    assert "organisation bee: 0 listed user(s), users of bee.coop" in result.stdout
    upgrade = PolicyResolver(load_config(path)).resolve("upgrade", None, "cloud")
    assert upgrade is not None and upgrade.needs_votes
    assert (upgrade.count, upgrade.organisation_rule, upgrade.lazy_seconds,
            upgrade.remind_seconds, upgrade.deadline_seconds) == (
        "organisations", "unanimous", 48 * 3600, 12 * 3600, 48 * 3600)
    assert "lazy consensus: decided after 2d" in upgrade.describe()


async def test_votes_stored_before_stand_asides_existed_keep_their_meaning(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    for script in MIGRATIONS[:6]:
        old.executescript(script)
    old.execute("PRAGMA user_version = 6")
    old.execute(
        "INSERT INTO approval_requests(room_id, command_event_id, thread_root, requester,"
        " command, args, operation, app, binding, plan_text, policy, created_at, expires_at)"
        " VALUES('!r:x', '$c', '$c', '@req:x', 'deploy', '{}', 'deploy', 'a', 'b', 'p', '{}',"
        " 0, 1)")
    old.executemany(
        "INSERT INTO approval_votes(request_id, voter, approve, event_id, reason, seq, via)"
        " VALUES(1, ?, ?, ?, '', ?, 'reaction')",
        [("@yes:x", 1, "$y", 1), ("@no:x", 0, "$n", 2)])
    old.commit()
    old.close()
    async with Database(path) as database:
        store = ApprovalStore(database)
        votes = await store.votes(1)
        assert [(v.voter, v.choice) for v in votes] == [
            ("@yes:x", Choice.CONSENT), ("@no:x", Choice.BLOCK)]
        request = await store.get(1)
        assert request is not None and request.reminded_at is None
        assert await store.mark_reminded(1) is True
        assert await store.mark_reminded(1) is False  # the one reminder is claimed once
