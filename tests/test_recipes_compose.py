"""Preflight helpers: abra.sh exports, the deploy env, loading + merging compose files, facts."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
import yaml

from coopbot.errors import NotFound, UserError
from coopbot.recipes.apps import App
from coopbot.recipes.compose import (
    abra_sh_exports,
    deploy_env,
    external_networks,
    images,
    load_compose,
    missing_env_keys,
    required_secrets,
)
from coopbot.recipes.interpolation import RequiredVariableError
from coopbot.recipes.repo import Checkout
from tests.harness.recipes import tree_of_testapp


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def make_app(env: dict[str, str], name: str = "blog.example.com") -> App:
    return App(
        name=name,
        server="srv1",
        domain=name,
        stack_name=name.replace(".", "_"),
        recipe="testapp",
        version=None,
        env=env,
        env_path=Path(f"/nonexistent/{name}.env"),
        timeout=300,
        compose_files=("compose.yml",),
        modifiers={},
    )


# -- abra.sh and the deploy env ---------------------------------------------------------------


def test_abra_sh_exports_simple_values_only(tmp_path: Path) -> None:
    script = tmp_path / "abra.sh"
    script.write_text(
        "#!/bin/bash\n"
        "export NGINX_CONF_VERSION=v2\n"
        'export ENTRYPOINT_VERSION="v5" # bump on change\n'
        "export QUOTED='v1'\n"
        "export COMMENTED=v3 # note\n"
        "#export DISABLED=v9\n"
        "export DYNAMIC=$(cat /run/secrets/x)\n"
        'export REFERENCE="${OTHER}"\n'
        "export SPACES=a b\n"
        "\n"
        "custom_fn() {\n"
        "  export INSIDE_FN=v4\n"
        "}\n"
    )
    assert abra_sh_exports(script) == {
        "NGINX_CONF_VERSION": "v2",
        "ENTRYPOINT_VERSION": "v5",
        "QUOTED": "v1",
        "COMMENTED": "v3",
        "INSIDE_FN": "v4",  # abra reads indented exports too
    }
    assert abra_sh_exports(tmp_path / "missing.sh") == {}


def test_deploy_env_precedence(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_tree(tmp_path, {"abra.sh": "export CONF_VERSION=v2\nexport ONLY_SH=sh\n"})
    app = make_app(
        {"DOMAIN": "blog.example.com", "CONF_VERSION": "v1", "STACK_NAME": "ignored", "K": "app"}
    )
    checkout = Checkout("testapp", tmp_path, "0" * 40, None)
    with caplog.at_level(logging.WARNING, logger="coopbot.recipes.compose"):
        env = deploy_env(app, checkout)
    assert env == {
        "DOMAIN": "blog.example.com",
        "CONF_VERSION": "v2",  # abra.sh wins, as in abra: it versions the recipe's configs
        "ONLY_SH": "sh",
        "K": "app",
        "STACK_NAME": "blog_example_com",  # always the app's stack
    }
    assert "CONF_VERSION" in caplog.text


# -- loading and merging ----------------------------------------------------------------------

BASE = """\
version: "3.8"
services:
  app:
    image: nginx:${NGINX_VERSION:-1.25}
    command: ["serve", "--old"]
    environment:
      - A=1
      - B=${B_VALUE}
      - PASSTHROUGH
    labels:
      base.label: "yes"
    ports:
      - "80:80"
    volumes:
      - data:/data
      - config:/etc/app
    secrets:
      - db_password
    networks:
      - internal
    healthcheck:
      test: ["CMD", "true"]
      interval: 10s
    deploy:
      labels:
        - "coop-cloud.${STACK_NAME}.version=1.0.0+1"
      update_config:
        order: start-first
  db:
    image: postgres:15
volumes:
  data:
  config:
secrets:
  db_password:
    external: true
    name: ${STACK_NAME}_db_password_${SECRET_DB_PASSWORD_VERSION}
networks:
  internal:
"""

OVERLAY = """\
version: "3.8"
services:
  app:
    command: ["serve", "--new"]
    environment:
      B: overridden
      C: "3"
    labels:
      - overlay.label=1
    ports:
      - "443:443"
      - "80:80"
    volumes:
      - other:/etc/app
      - logs:/var/log
    secrets:
      - source: db_password
        target: /run/secrets/pw
      - smtp_password
    networks:
      - proxy
    healthcheck:
      test: ["CMD", "false"]
    deploy:
      labels:
        - "coop-cloud.${STACK_NAME}.extra=true"
      update_config:
        failure_action: rollback
  worker:
    image: busybox
volumes:
  data:
    driver: local
  other:
  logs:
secrets:
  smtp_password:
    external: true
networks:
  proxy:
    external: true
"""

ENV = {"B_VALUE": "two", "STACK_NAME": "blog_example_com", "SECRET_DB_PASSWORD_VERSION": "v1"}


def test_overlay_merge_follows_stack_deploy(tmp_path: Path) -> None:
    write_tree(tmp_path, {"compose.yml": BASE, "compose.smtp.yml": OVERLAY})
    compose = load_compose(tmp_path, ["compose.yml", "compose.smtp.yml"], ENV)
    app = compose["services"]["app"]
    assert app["image"] == "nginx:1.25"
    assert app["command"] == ["serve", "--new"]
    assert app["environment"] == {"A": "1", "B": "overridden", "PASSTHROUGH": None, "C": "3"}
    assert app["labels"] == {"base.label": "yes", "overlay.label": "1"}
    assert app["ports"] == [  # long form, one per published port, as docker merges them
        {"mode": "ingress", "target": 80, "published": 80, "protocol": "tcp"},
        {"mode": "ingress", "target": 443, "published": 443, "protocol": "tcp"},
    ]
    assert app["volumes"] == ["data:/data", "other:/etc/app", "logs:/var/log"]
    assert app["secrets"] == [
        {"source": "db_password", "target": "/run/secrets/pw"},
        "smtp_password",
    ]
    assert app["networks"] == ["internal", "proxy"]
    assert app["healthcheck"] == {"test": ["CMD", "false"], "interval": "10s"}
    assert app["deploy"] == {
        "labels": {
            "coop-cloud.blog_example_com.version": "1.0.0+1",
            "coop-cloud.blog_example_com.extra": "true",
        },
        "update_config": {"order": "start-first", "failure_action": "rollback"},
    }
    assert compose["services"]["db"] == {"image": "postgres:15"}
    assert compose["services"]["worker"] == {"image": "busybox"}
    assert compose["volumes"] == {
        "data": {"driver": "local"},
        "config": None,
        "other": None,
        "logs": None,
    }
    assert set(compose["secrets"]) == {"db_password", "smtp_password"}
    assert compose["networks"] == {"internal": None, "proxy": {"external": True}}


def test_networks_in_map_form_merge_with_list_form(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "compose.yml": "services:\n  app:\n    image: x\n    networks: [internal]\n",
            "compose.b.yml": (
                "services:\n  app:\n    networks:\n      proxy:\n        aliases: [web]\n"
            ),
        },
    )
    compose = load_compose(tmp_path, ["compose.yml", "compose.b.yml"], {})
    assert compose["services"]["app"]["networks"] == {
        "internal": None,
        "proxy": {"aliases": ["web"]},
    }


def test_extra_hosts_and_build_args_merge_as_maps(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "compose.yml": (
                "services:\n  app:\n    image: x\n"
                "    extra_hosts: ['db:10.0.0.2', 'cache:10.0.0.3']\n"
                "    build: {context: ., args: [A=1]}\n"
            ),
            "compose.b.yml": (
                "services:\n  app:\n    extra_hosts: {db: 10.0.0.9}\n    build: {args: {B: '2'}}\n"
            ),
        },
    )
    app = load_compose(tmp_path, ["compose.yml", "compose.b.yml"], {})["services"]["app"]
    assert app["extra_hosts"] == {"db": "10.0.0.9", "cache": "10.0.0.3"}
    assert app["build"] == {"context": ".", "args": {"A": "1", "B": "2"}}


def test_interpolation_happens_after_yaml_parsing(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "compose.yml": (
                "# ${NOT_EVALUATED?comments are not interpolated}\n"
                "services:\n"
                "  app:\n"
                "    image: busybox\n"
                "    environment:\n"
                "      - MESSAGE=${MESSAGE}\n"
            )
        },
    )
    # Substituted into the raw text, this value would turn the list item into a mapping.
    tricky = 'a: b\n"quoted" - [not, yaml] # no comment'
    compose = load_compose(tmp_path, ["compose.yml"], {"MESSAGE": tricky})
    assert compose["services"]["app"]["environment"] == {"MESSAGE": tricky}


def test_required_variable_errors_name_the_variable(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"compose.yml": "services:\n  app:\n    image: ${IMAGE:?set IMAGE in the app env}\n"},
    )
    with pytest.raises(RequiredVariableError, match="IMAGE is required: set IMAGE in the app env"):
        load_compose(tmp_path, ["compose.yml"], {})


def test_unset_variables_are_reported(tmp_path: Path) -> None:
    write_tree(tmp_path, {"compose.yml": BASE})
    unset: set[str] = set()
    load_compose(tmp_path, ["compose.yml"], {"STACK_NAME": "s"}, unset=unset)
    assert unset == {"B_VALUE", "SECRET_DB_PASSWORD_VERSION"}


def test_bad_compose_files(tmp_path: Path) -> None:
    write_tree(tmp_path, {"compose.yml": "services: [unclosed\n", "list.yml": "- a\n"})
    with pytest.raises(NotFound, match=r"no compose file `compose\.missing\.yml`"):
        load_compose(tmp_path, ["compose.missing.yml"], {})
    with pytest.raises(UserError, match="outside the recipe"):
        load_compose(tmp_path, ["../compose.yml"], {})
    with pytest.raises(UserError, match="not valid YAML"):
        load_compose(tmp_path, ["compose.yml"], {})
    with pytest.raises(UserError, match="not a compose mapping"):
        load_compose(tmp_path, ["list.yml"], {})


# -- facts ------------------------------------------------------------------------------------


@pytest.fixture
def testapp_tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "testapp", tree_of_testapp("1.1.0+v2"))


def env_of_testapp() -> dict[str, str]:
    return {
        "TYPE": "testapp:1.1.0+v2",
        "DOMAIN": "blog.example.com",
        "SECRET_DB_PASSWORD_VERSION": "v1",
        "GREETING": "hi",
        "STACK_NAME": "blog_example_com",
        "APP_CONF_VERSION": "v1",
    }


def test_facts_of_the_testapp_recipe(testapp_tree: Path) -> None:
    compose = load_compose(testapp_tree, ["compose.yml", "compose.extra.yml"], env_of_testapp())
    assert required_secrets(compose) == ["blog_example_com_db_password_v1"]
    assert external_networks(compose) == []
    assert images(compose) == {"app": "coopbot-test/app:v2"}
    labels = compose["services"]["app"]["deploy"]["labels"]
    assert labels["coop-cloud.blog_example_com.version"] == "1.1.0+v2"
    assert labels["coop-cloud.blog_example_com.timeout"] == "120"
    assert labels["coop-cloud.blog_example_com.extra"] == "true"
    assert compose["services"]["app"]["environment"] == {
        "GREETING": "hi",
        "APP_CONF_VERSION": "v1",
    }


def test_external_objects_used_by_services(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "compose.yml": (
                "services:\n"
                "  app:\n"
                "    image: x\n"
                "    secrets: [named, plain, {source: legacy}]\n"
                "    networks: [proxy, internal, legacy_net]\n"
                "secrets:\n"
                "  named: {external: true, name: s_named_v2}\n"
                "  plain: {external: true}\n"
                "  legacy: {external: {name: old_style}}\n"
                "  unused: {external: true}\n"
                "  local: {file: ./x}\n"
                "networks:\n"
                "  proxy: {external: true}\n"
                "  internal: {}\n"
                "  legacy_net: {external: {name: shared}}\n"
                "  unused_net: {external: true}\n"
            )
        },
    )
    compose = load_compose(tmp_path, ["compose.yml"], {})
    assert required_secrets(compose) == ["s_named_v2", "plain", "old_style"]
    assert external_networks(compose) == ["proxy", "shared"]


def test_missing_env_keys(testapp_tree: Path) -> None:
    sample = testapp_tree / ".env.sample"
    assert missing_env_keys(sample, env_of_testapp()) == []
    assert missing_env_keys(sample, {"TYPE": "testapp", "DOMAIN": "x"}) == [
        "SECRET_DB_PASSWORD_VERSION",
        "GREETING",
    ]  # the commented-out COMPOSE_FILE and EXTRA_DOMAINS are not asked for
    assert missing_env_keys(testapp_tree / "no-such-sample", {}) == []




def test_short_and_long_ports_across_overlays_merge_as_docker_stack_config(
    tmp_path: Path,
) -> None:
    """`docker stack config` (the docker CLI's own loader, no daemon) is the oracle."""
    from tests.harness.recipes import PORTS_BASE, PORTS_OVERLAY

    write_tree(tmp_path, {"compose.yml": PORTS_BASE, "compose.ports.yml": PORTS_OVERLAY,
                          "c.yml": 'version: "3.8"\nservices:\n  app:\n    ports:\n'
                                   '      - "8443:444"\n      - "81"\n'})
    for files in (["compose.yml", "compose.ports.yml"],
                  ["compose.yml", "compose.ports.yml", "c.yml"], ["compose.yml"]):
        ours = load_compose(tmp_path, files, {})["services"]["app"]["ports"]
        args = [part for name in files for part in ("-c", name)]
        docker = subprocess.run(["docker", "stack", "config", *args], cwd=tmp_path,
                                capture_output=True, text=True, check=True).stdout
        theirs = yaml.safe_load(docker)["services"]["app"]["ports"]
        if len(files) == 1:  # one file: docker normalizes, nothing is merged
            assert len(ours) == len(theirs) == 3
        else:
            assert ours == theirs, files
