"""The tally and policy resolution as pure functions."""

from __future__ import annotations

from pathlib import Path

from coopbot.approvals.policy import Policy, PolicyResolver
from coopbot.approvals.tally import Outcome, latest_per_voter, tally
from coopbot.config import Config, RoomConfig
from coopbot.store.approvals import Vote


def policy(**changes: object) -> Policy:
    values: dict[str, object] = dict(
        operation="upgrade", approvals=2, approver_role="operator", expires_seconds=3600,
        self_vote=False, veto=True, backup_first=False, auto_approve_autoupdates=False,
    )
    values.update(changes)
    return Policy(**values)  # type: ignore[arg-type]


def vote(voter: str, approve: bool, seq: int) -> Vote:
    return Vote(voter=voter, approve=approve, event_id=f"$e{seq}", seq=seq)


def test_quorum_reached() -> None:
    result = tally(policy(), "@req:x", [vote("@a:x", True, 1), vote("@b:x", True, 2)], {})
    assert result.outcome == Outcome.APPROVED
    assert result.progress == "2 of 2"


def test_pending_below_quorum() -> None:
    result = tally(policy(), "@req:x", [vote("@a:x", True, 1)], {})
    assert result.outcome == Outcome.PENDING


def test_self_vote_ignored_unless_allowed() -> None:
    votes = [vote("@req:x", True, 1), vote("@a:x", True, 2)]
    result = tally(policy(), "@req:x", votes, {})
    assert result.outcome == Outcome.PENDING
    assert result.ignored[0][1] == "the requester's own vote does not count"
    assert tally(policy(self_vote=True), "@req:x", votes, {}).outcome == Outcome.APPROVED


def test_ineligible_votes_are_listed_with_the_reason() -> None:
    votes = [vote("@a:x", True, 1), vote("@low:x", True, 2)]
    result = tally(policy(), "@req:x", votes, {"@low:x": "lacks the operator role"})
    assert result.outcome == Outcome.PENDING
    assert [(v.voter, why) for v, why in result.ignored] == [("@low:x", "lacks the operator role")]


def test_veto_blocks_even_with_quorum() -> None:
    votes = [vote("@a:x", True, 1), vote("@b:x", True, 2), vote("@c:x", False, 3)]
    assert tally(policy(), "@req:x", votes, {}).outcome == Outcome.DENIED
    assert tally(policy(veto=False), "@req:x", votes, {}).outcome == Outcome.APPROVED


def test_ineligible_no_does_not_veto() -> None:
    votes = [vote("@a:x", True, 1), vote("@b:x", True, 2), vote("@low:x", False, 3)]
    result = tally(policy(), "@req:x", votes, {"@low:x": "lacks the operator role"})
    assert result.outcome == Outcome.APPROVED


def test_latest_vote_per_user_counts_by_receive_order() -> None:
    votes = [vote("@a:x", False, 5), vote("@a:x", True, 9), vote("@b:x", True, 7)]
    latest = latest_per_voter(votes)
    assert [(v.voter, v.approve) for v in latest] == [("@b:x", True), ("@a:x", True)]
    assert tally(policy(), "@req:x", votes, {}).outcome == Outcome.APPROVED


def make_config(**overrides: object) -> Config:
    base: dict[str, object] = {
        "matrix": {"homeserver": "http://x", "user_id": "@bot:x", "password": "p"},
        "database": Path("db"),
    }
    base.update(overrides)
    return Config.model_validate(base)


def test_policy_layers_app_over_room_over_global() -> None:
    config = make_config(
        policies={"upgrade": {"approvals": 2, "expires": "1h"}},
        app_policies={"blog": {"upgrade": {"approvals": 3}}},
    )
    resolver = PolicyResolver(config)
    room = RoomConfig.model_validate({"policies": {"upgrade": {"veto": False, "approvals": 1}}})
    assert resolver.resolve("upgrade", None, "wiki") == policy(
        approvals=2, expires_seconds=3600)
    in_room = resolver.resolve("upgrade", room, "wiki")
    assert in_room is not None and in_room.approvals == 1 and not in_room.veto
    for_blog = resolver.resolve("upgrade", room, "blog")
    assert for_blog is not None and for_blog.approvals == 3 and not for_blog.veto
    assert resolver.resolve("undeploy", room, "blog") is None


def test_default_policies_need_a_vote_for_restore_and_backups_first() -> None:
    resolver = PolicyResolver(make_config())
    restore = resolver.resolve("restore", None, "blog")
    upgrade = resolver.resolve("upgrade", None, "blog")
    assert restore is not None and restore.approvals == 1 and restore.backup_first
    assert upgrade is not None and upgrade.approvals == 0 and upgrade.backup_first
