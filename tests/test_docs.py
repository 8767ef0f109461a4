"""The docs are checked against the code (issue 8):

- docs/operator.md's config reference names every key of the config models (coopbot/config.py,
  the validator) and no key they lack; config.example.yaml shows every key.
- docs/members.md's command reference is exactly what the registry declares (usage, summary,
  details, arguments, examples, role): the same detail `!help <command>` gives. After changing a
  command, regenerate it with `.venv/bin/python -m tests.test_docs`.
- README.md stays short and links the guides; docs/security.md covers the roles it names.
"""

from __future__ import annotations

import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from coopbot.app import build
from coopbot.config import Config
from coopbot.registry import CommandSpec

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BEGIN, END = "<!-- commands:begin -->", "<!-- commands:end -->"
# A dotted config key as the operator guide writes it: `servers.<name>.key_file`.
DOC_KEY = re.compile(r"^\|\s*`([a-z_]+(?:\.(?:<[a-z_ -]+>|[a-z_]+))*)`\s*\|", re.MULTILINE)


# -- config keys ----------------------------------------------------------------------------------


def _models(annotation: Any) -> list[tuple[type[BaseModel], str]]:
    """The config models inside a field's type, each with the key suffix that leads to it
    (".*" through a mapping whose keys the operator chooses)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    if origin is dict:
        return [(model, ".*" + suffix) for model, suffix in
                _models(typing.get_args(annotation)[1])]
    if origin is list:
        return _models(typing.get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, "")]
    return []


def config_keys() -> list[str]:
    """Every key path of the config, e.g. `matrix.homeserver`, `servers.*.key_file`. A model met
    again deeper down (the policy keys under `rooms.*.policies`) is documented once, where it is
    nearest the top (breadth first)."""
    keys: list[str] = []
    queue: list[tuple[type[BaseModel], str]] = [(Config, "")]
    seen: set[type[BaseModel]] = {Config}
    while queue:
        model, prefix = queue.pop(0)
        for name, field in model.model_fields.items():
            keys.append(prefix + name)
            for sub, suffix in _models(field.annotation):
                if sub not in seen:
                    seen.add(sub)
                    queue.append((sub, f"{prefix}{name}{suffix}."))
    return list(dict.fromkeys(keys))


def documented_keys() -> list[str]:
    """Keys in the first column of the operator guide's reference tables, `<x>` as `*`."""
    text = (DOCS / "operator.md").read_text()
    return [re.sub(r"<[^>]+>", "*", key) for key in DOC_KEY.findall(text)]


def test_operator_guide_documents_every_config_key_and_only_those() -> None:
    keys = config_keys()
    documented = documented_keys()
    assert {"matrix.homeserver", "servers.*.key_file", "roles.*.power_level", "rooms.*.roles",
            "policies.*.approvals", "app_policies", "health.port", "logging.format"} <= set(keys)
    missing = [k for k in keys if k not in documented]
    assert not missing, f"docs/operator.md's config reference lacks: {missing}"
    unknown = [k for k in documented if k not in keys]
    assert not unknown, f"docs/operator.md documents keys the validator does not know: {unknown}"


def test_config_example_shows_every_key() -> None:
    text = (ROOT / "config.example.yaml").read_text()
    names = {key.rsplit(".", 1)[-1] for key in config_keys()}
    missing = sorted(n for n in names
                     if not re.search(rf"^[\s#]*{re.escape(n)}:", text, re.MULTILINE))
    assert not missing, f"config.example.yaml shows no `{missing[0]}:` (all missing: {missing})"


# -- commands ------------------------------------------------------------------------------------


def all_commands(tmp: Path) -> list[CommandSpec]:
    """The registry of a bot built by the composition root with every optional family on."""
    config = Config.model_validate({
        "matrix": {"homeserver": "http://127.0.0.1:1", "user_id": "@bot:localhost",
                   "password": "unused", "store": str(tmp / "matrix")},
        "database": str(tmp / "coopbot.db"),
        "servers": {"local": {"kind": "local"}},
        "backups": {"local": {"repository": "/srv/restic", "password_env": "HOME"}},
        "recipes": {"cache": str(tmp / "recipes")},
    })
    return build(config).registry.all()


def reference(spec: CommandSpec) -> str:
    """One command as the member guide shows it: what `!help <command>` says, as Markdown."""
    lines = [f"### `{spec.usage('!')}`", "", f"{spec.summary[0].upper()}{spec.summary[1:]}."]
    if spec.details:
        lines += ["", spec.details]
    described = [f"- `{a.name}`: {a.describe()}" for a in spec.args if a.describe()]
    described += [f"- `{f.usage()[1:-1]}`: {f.help}"
                  + (f"; needs the {f.role} role" if f.role else "") for f in spec.flags]
    if described:
        lines.append("")
        lines += described
    if spec.examples:
        lines += ["", "Examples: " + ", ".join(f"`{e}`" for e in spec.examples)]
    if spec.aliases:
        lines += ["", "Also: " + ", ".join(f"`!{a}`" for a in spec.aliases)]
    kind = (f"; a `{spec.operation.kind}` operation (approval policy applies)"
            if spec.operation else "")
    lines += ["", f"Needs the **{spec.role}** role by default{kind}."]
    return "\n".join(lines)


def command_reference(specs: list[CommandSpec]) -> str:
    return "\n\n".join([BEGIN, *(reference(s) for s in specs), END])


def _block(text: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[start:end]


def test_member_guide_holds_every_command_as_help_shows_it(tmp_path: Path) -> None:
    specs = all_commands(tmp_path)
    assert {"help", "ping", "deploy", "backup", "approve"} <= {s.name for s in specs}
    text = (DOCS / "members.md").read_text()
    for spec in specs:
        assert f"`{spec.usage('!')}`" in text, f"docs/members.md lacks `{spec.usage('!')}`"
    assert _block(text) == command_reference(specs), (
        "docs/members.md's command reference differs from the registry: run "
        "`.venv/bin/python -m tests.test_docs` to regenerate it")


# -- README and the other guides -----------------------------------------------------------------


def test_readme_is_short_and_links_the_guides() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 90
    for command in ("scripts/try", "scripts/test"):
        assert f"    {command}\n" in text
    for guide in ("docs/operator.md", "docs/members.md", "docs/security.md"):
        assert f"]({guide})" in text
        assert (ROOT / guide).exists()
    assert "coopbot> pong" in text  # the transcript of a session in a room


def test_security_model_names_every_role_and_operation() -> None:
    text = (DOCS / "security.md").read_text()
    for word in ("member", "operator", "admin", "power level", "creator", "approval",
                 "Docker socket", "known_hosts", "audit", "[redacted]"):
        assert word in text, f"docs/security.md does not mention {word!r}"


def write_command_reference() -> None:
    """`python -m tests.test_docs`: rewrite the generated block of docs/members.md."""
    import tempfile

    path = DOCS / "members.md"
    text = path.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = command_reference(all_commands(Path(tmp)))
    path.write_text(text.replace(_block(text), fresh))
    print(f"{path}: command reference regenerated", file=sys.stderr)


if __name__ == "__main__":
    write_command_reference()


def test_every_operation_kind_is_declared_by_exactly_one_command(tmp_path: Path) -> None:
    """Policies are validated against the kinds; each kind is one command's operation, so a
    policy can never name an operation no command runs."""
    from coopbot.operation_kinds import OperationKind

    declared = [spec.operation.kind for spec in all_commands(tmp_path) if spec.operation]
    assert sorted(declared) == sorted(OperationKind)
