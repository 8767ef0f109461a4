"""`verified_devices_only` as a policy key: layered like the others, shown on the card, and
absent from requests stored before it existed (read as off)."""

from __future__ import annotations

from dataclasses import asdict

from coopbot.approvals.policy import Policy, PolicyResolver
from coopbot.config import RoomConfig
from tests.test_approvals_tally import make_config


def test_verified_devices_only_layers_and_describes() -> None:
    config = make_config(policies={"deploy": {"approvals": 1, "verified_devices_only": True}},
                         app_policies={"wiki": {"deploy": {"verified_devices_only": False}}})
    resolver = PolicyResolver(config)
    room = RoomConfig.model_validate({"policies": {"deploy": {"approvals": 2}}})
    strict = resolver.resolve("deploy", room, "blog")
    assert strict is not None and strict.verified_devices_only and strict.approvals == 2
    assert "only votes sent as commands from cross-signed devices count" in strict.describe()
    relaxed = resolver.resolve("deploy", room, "wiki")
    assert relaxed is not None and not relaxed.verified_devices_only
    assert "cross-signed" not in relaxed.describe()


def test_requests_stored_before_the_key_existed_read_it_as_off() -> None:
    resolver = PolicyResolver(make_config(policies={"deploy": {"approvals": 1}}))
    policy = resolver.resolve("deploy", None, "blog")
    assert policy is not None
    stored = asdict(policy)
    del stored["verified_devices_only"]
    assert Policy(**stored).verified_devices_only is False
