"""abra's label rules: the deployed version (both schemes), timeout and autoupdate, read from
running services and from a recipe's compose."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from coopbot.recipes.labels import (
    autoupdate,
    chaos_commit,
    compose_timeout,
    deploy_labels,
    deployed_version,
    labels_overlay,
    running_timeout,
    version_label,
)

STACK = "blog_example_org"


@dataclass(frozen=True)
class Service:
    short_name: str
    labels: Mapping[str, str] = field(default_factory=dict)


def test_the_app_service_label_wins_and_others_are_a_fallback() -> None:
    app = Service("app", {f"coop-cloud.{STACK}.version": "1.2.0+2"})
    db = Service("db", {f"coop-cloud.{STACK}.version": "0.9.0+1"})
    assert deployed_version([db, app], STACK) == "1.2.0+2"
    assert deployed_version([db, Service("app")], STACK) == "0.9.0+1"
    assert deployed_version([Service("app"), Service("db")], STACK) is None
    assert deployed_version([], STACK) is None


def test_the_old_app_version_scheme_is_read_when_the_new_one_is_absent() -> None:
    old = Service("app", {f"coop-cloud.{STACK}.app.version": "2.4.8+v2.4.8"})
    assert deployed_version([old], STACK) == "2.4.8+v2.4.8"
    both = Service("app", {f"coop-cloud.{STACK}.app.version": "1.0.0+1",
                           f"coop-cloud.{STACK}.version": "1.1.0+1"})
    assert deployed_version([both], STACK) == "1.1.0+1"
    # Another stack's label is not this one's.
    assert deployed_version([Service("app", {"coop-cloud.other.version": "9"})], STACK) is None


@pytest.mark.parametrize(("labels", "expected"), [
    ({f"coop-cloud.{STACK}.timeout": "120"}, 120.0),
    ({f"coop-cloud.{STACK}.timeout": " 45.5 "}, 45.5),
    ({f"coop-cloud.{STACK}.timeout": "0"}, 300.0),
    ({f"coop-cloud.{STACK}.timeout": "-5"}, 300.0),
    ({f"coop-cloud.{STACK}.timeout": "inf"}, 300.0),
    ({f"coop-cloud.{STACK}.timeout": "${TIMEOUT}"}, 300.0),
    ({}, 300.0),
])
def test_timeouts_from_running_labels_and_from_compose(
    labels: dict[str, str], expected: float
) -> None:
    assert running_timeout([Service("app", labels)], STACK, 300.0) == expected
    as_map = {"services": {"app": {"deploy": {"labels": labels}}}}
    as_list = {"services": {"app": {"deploy": {"labels": [f"{k}={v}" for k, v in
                                                          labels.items()]}}}}
    assert compose_timeout(as_map, STACK, 300.0) == expected
    assert compose_timeout(as_list, STACK, 300.0) == expected


@pytest.mark.parametrize("compose", [
    {}, {"services": None}, {"services": {"app": None}}, {"services": {"app": {"deploy": 5}}},
    {"services": {"app": {"deploy": {"labels": None}}}}, {"services": ["app"]},
])
def test_composes_without_labels_have_the_default_timeout(compose: dict[str, object]) -> None:
    assert compose_timeout(compose, STACK, 60.0) == 60.0


def test_autoupdate_is_the_kadabra_label_set_to_true() -> None:
    assert autoupdate([Service("app", {f"coop-cloud.{STACK}.autoupdate": "true"})], STACK)
    assert not autoupdate([Service("app", {f"coop-cloud.{STACK}.autoupdate": "false"})], STACK)
    assert not autoupdate([Service("app")], STACK)


def test_a_chaos_deploy_is_shown_by_its_commit_and_keeps_its_version_label() -> None:
    chaos = Service("app", {f"coop-cloud.{STACK}.chaos": "true",
                            f"coop-cloud.{STACK}.chaos-version": "0a1b2c3d",
                            f"coop-cloud.{STACK}.version": "1.2.0+2"})
    assert deployed_version([chaos], STACK) == "chaos 0a1b2c3d"
    assert version_label([chaos], STACK) == "1.2.0+2" and chaos_commit([chaos], STACK) == "0a1b2c3d"
    released = Service("app", {f"coop-cloud.{STACK}.chaos": "false",
                               f"coop-cloud.{STACK}.version": "1.2.0+2"})
    assert deployed_version([released], STACK) == "1.2.0+2"
    assert chaos_commit([released], STACK) is None


def test_the_deploy_labels_are_abras() -> None:
    env = {"ENABLE_AUTO_UPDATE": "true"}
    assert deploy_labels(STACK, "blog", "1.2.0+2", None, env) == {
        f"coop-cloud.{STACK}.recipe": "blog", f"coop-cloud.{STACK}.chaos": "false",
        f"coop-cloud.{STACK}.version": "1.2.0+2", f"coop-cloud.{STACK}.autoupdate": "true"}
    chaos = deploy_labels(STACK, "blog", "1.2.0+2", "0a1b2c3d4e5f" + "0" * 28, {})
    assert chaos[f"coop-cloud.{STACK}.chaos"] == "true"
    assert chaos[f"coop-cloud.{STACK}.chaos-version"] == "0a1b2c3d"
    assert chaos[f"coop-cloud.{STACK}.version"] == "1.2.0+2"  # the last release, kept
    assert chaos[f"coop-cloud.{STACK}.autoupdate"] == "false"
    assert f"coop-cloud.{STACK}.version" not in deploy_labels(STACK, "blog", None, "ab", {})


def test_the_labels_overlay_overrides_the_recipes_labels_in_docker_stack_config(
    tmp_path: Path,
) -> None:
    """docker's own merge (`docker stack config`, no daemon) is the oracle: the overlay must
    carry the recipe's compose version, and its labels win."""
    base = ('version: "3.8"\nservices:\n  app:\n    image: x:1\n    deploy:\n      labels:\n'
            '        - "coop-cloud.${STACK_NAME}.version=1.0.2+1.0.2"\n')
    (tmp_path / "compose.yml").write_text(base)
    labels = deploy_labels(STACK, "blog", "v1.0.2", None, {})
    overlay = labels_overlay(yaml.safe_load(base), labels)
    assert overlay is not None
    (tmp_path / "labels.yml").write_text(overlay)
    merged = subprocess.run(
        ["docker", "stack", "config", "-c", "compose.yml", "-c", "labels.yml"], cwd=tmp_path,
        env={"STACK_NAME": STACK, "PATH": os.environ["PATH"]},
        capture_output=True, text=True, check=True).stdout
    assert yaml.safe_load(merged)["services"]["app"]["deploy"]["labels"] == labels
    assert labels_overlay({"services": {"web": {}}}, labels) is None, "no app service"
