"""abra env files: parsing every supported form, and the byte-exact TYPE rewrite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coopbot.errors import UserError
from coopbot.recipes.envfile import EnvFileError, parse_env_file, write_type_version


def write(tmp_path: Path, text: str | bytes, name: str = "blog.example.com.env") -> Path:
    folder = tmp_path / "servers" / "srv1"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def values(tmp_path: Path, text: str) -> dict[str, str]:
    return parse_env_file(write(tmp_path, text)).values


# -- parsing ----------------------------------------------------------------------------------


def test_plain_export_and_quoted_forms(tmp_path: Path) -> None:
    text = (
        "TYPE=wordpress:1.2.0+6.4\n"
        "export DOMAIN=blog.example.com\n"
        "  export   INDENTED=yes\n"
        "SINGLE='it is $DOMAIN'\n"
        'DOUBLE="on $DOMAIN"\n'
        "EMPTY=\n"
        'EMPTY_QUOTED=""\n'
        "SPACED = value with spaces  \n"
    )
    assert values(tmp_path, text) == {
        "TYPE": "wordpress:1.2.0+6.4",
        "DOMAIN": "blog.example.com",
        "INDENTED": "yes",
        "SINGLE": "it is $DOMAIN",
        "DOUBLE": "on blog.example.com",
        "EMPTY": "",
        "EMPTY_QUOTED": "",
        "SPACED": "value with spaces",
    }


def test_comments_and_commented_out_keys_are_not_keys(tmp_path: Path) -> None:
    text = (
        "# a comment\n"
        "#COMPOSE_FILE=compose.yml:compose.smtp.yml\n"
        "   # EXTRA_DOMAINS=x\n"
        "\n"
        "A=1 # trailing comment\n"
        "B=val#ue\n"
        'C="quoted # not a comment" # but this is\n'
        "D= # only a comment\n"
    )
    assert values(tmp_path, text) == {
        "A": "1",
        "B": "val#ue",
        "C": "quoted # not a comment",
        "D": "",
    }


def test_modifiers_from_trailing_comments(tmp_path: Path) -> None:
    text = (
        "SECRET_DB_PASSWORD_VERSION=v1 # length=48\n"
        'SECRET_TOKEN_VERSION="v2" # length=128 charset=special,safe\n'
        "SECRET_KEY_VERSION=v1 # generate=false and some words\n"
        "PLAIN=x\n"
    )
    env = parse_env_file(write(tmp_path, text))
    assert env.values["SECRET_DB_PASSWORD_VERSION"] == "v1"
    assert env.values["SECRET_TOKEN_VERSION"] == "v2"
    assert env.modifiers == {
        "SECRET_DB_PASSWORD_VERSION": {"length": "48"},
        "SECRET_TOKEN_VERSION": {"length": "128", "charset": "special,safe"},
        "SECRET_KEY_VERSION": {"generate": "false"},
        "PLAIN": {},
    }


def test_references_to_earlier_keys(tmp_path: Path) -> None:
    text = (
        'COMPOSE_FILE="compose.yml"\n'
        'COMPOSE_FILE="$COMPOSE_FILE:compose.postgres.yml"\n'
        "COMPOSE_FILE=${COMPOSE_FILE}:compose.smtp.yml\n"
        "HOST=$DOMAIN\n"  # DOMAIN is only defined later: expands to ""
        "DOMAIN=example.com\n"
        "URL=https://${DOMAIN}/path\n"
        "WITH_DEFAULT=${MISSING:-fallback}\n"
        "LITERAL='${DOMAIN}'\n"
        'ESCAPED="cost: \\$5 and $$"\n'
        "ESCAPED_BARE=\\$DOMAIN\n"
    )
    env = values(tmp_path, text)
    assert env["COMPOSE_FILE"] == "compose.yml:compose.postgres.yml:compose.smtp.yml"
    assert env["HOST"] == ""
    assert env["URL"] == "https://example.com/path"
    assert env["WITH_DEFAULT"] == "fallback"
    assert env["LITERAL"] == "${DOMAIN}"
    assert env["ESCAPED"] == "cost: $5 and $"
    assert env["ESCAPED_BARE"] == "$DOMAIN"


def test_the_process_environment_never_leaks_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME_SECRET", "from-the-bot")
    assert values(tmp_path, "A=$HOME_SECRET\nB=${HOME_SECRET:-default}\n") == {
        "A": "",
        "B": "default",
    }


def test_double_quote_escapes_and_multiline_values(tmp_path: Path) -> None:
    text = (
        'ESCAPES="tab\\tnew\\nquote\\" backslash\\\\"\n'
        'MULTI="line one\n'
        'line two"\n'
        "SINGLE_MULTI='a\n"
        "b'\n"
        "AFTER=$MULTI\n"
    )
    env = parse_env_file(write(tmp_path, text))
    assert env.values["ESCAPES"] == 'tab\tnew\nquote" backslash\\'
    assert env.values["MULTI"] == "line one\nline two"
    assert env.values["SINGLE_MULTI"] == "a\nb"
    assert env.values["AFTER"] == "line one\nline two"
    assert env.lines == {"ESCAPES": 1, "MULTI": 2, "SINGLE_MULTI": 4, "AFTER": 6}


def test_crlf_line_endings(tmp_path: Path) -> None:
    env = parse_env_file(write(tmp_path, b'A=1\r\nB="two"\r\n# C=3\r\nD=4 # length=8\r\n'))
    assert env.values == {"A": "1", "B": "two", "D": "4"}
    assert env.modifiers["D"] == {"length": "8"}


def test_last_assignment_wins_with_its_line_and_modifiers(tmp_path: Path) -> None:
    env = parse_env_file(write(tmp_path, "A=1 # length=4\n\nA=2\n"))
    assert env.values == {"A": "2"}
    assert env.lines == {"A": 3}
    assert env.modifiers == {"A": {}}


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("A=1\njust some words\n", 2, "expected KEY=value"),
        ("A=1\n\n1BAD=x\n", 3, "the key is not a valid name"),
        ('A="never closed\nB=2\n', 1, "the double quote is never closed"),
        ("A='never closed\n", 1, "the single quote is never closed"),
        ('A="x" y\n', 1, "unexpected text after the closing quote"),
        ("A=${NEEDED:?set NEEDED first}\n", 1, "Variable NEEDED is required: set NEEDED first"),
        ("A=${UNCLOSED\n", 1, "Unclosed `${` at character 1"),
    ],
)
def test_malformed_files_name_the_file_and_line(
    tmp_path: Path, text: str, line: int, reason: str
) -> None:
    path = write(tmp_path, "X=secret-value-0123\n" + text)
    with pytest.raises(EnvFileError) as caught:
        parse_env_file(path)
    assert caught.value.line == line + 1
    assert reason in str(caught.value)
    assert str(caught.value).startswith(f"App env file srv1/blog.example.com.env, line {line + 1}:")
    assert "secret-value-0123" not in str(caught.value)  # content never reaches the room
    assert caught.value.detail == str(path)
    assert isinstance(caught.value, UserError)


def test_unreadable_file_is_an_env_file_error(tmp_path: Path) -> None:
    with pytest.raises(EnvFileError, match="cannot be read"):
        parse_env_file(tmp_path / "servers" / "srv1" / "missing.env")


# -- rewriting TYPE ---------------------------------------------------------------------------

ORIGINAL = (
    b"# Managed by abra\n"
    b"TYPE=wordpress:1.0.0+6.3   # pinned by last deploy\n"
    b"\n"
    b"DOMAIN=blog.example.com\n"
    b"#TYPE=commented:0.0.1\n"
    b'NOTE="a multi-line value\n'
    b'TYPE=this-is-inside-a-value"\n'
    b"SECRET_DB_PASSWORD_VERSION=v1 # length=48\n"
    b"BYTES=caf\xe9-not-utf8\n"
    b"COMPOSE_FILE='compose.yml'"  # no final newline
)


def test_rewrite_changes_only_the_type_value(tmp_path: Path) -> None:
    path = write(tmp_path, ORIGINAL)
    assert write_type_version(path, "wordpress", "1.1.0+6.4") is True
    expected = ORIGINAL.replace(b"TYPE=wordpress:1.0.0+6.3   #", b"TYPE=wordpress:1.1.0+6.4   #", 1)
    assert path.read_bytes() == expected
    assert parse_env_file(path).values["TYPE"] == "wordpress:1.1.0+6.4"


@pytest.mark.parametrize(
    ("line", "rewritten"),
    [
        (b"TYPE=app", b"TYPE=app:2.0.0+1"),
        (b"TYPE=app:1.0.0+0", b"TYPE=app:2.0.0+1"),
        (b'TYPE="app:1.0.0+0"', b'TYPE="app:2.0.0+1"'),
        (b"TYPE='app' # keep me", b"TYPE='app:2.0.0+1' # keep me"),
        (b"export TYPE=app", b"export TYPE=app:2.0.0+1"),
        (b"RECIPE=app:1.0.0+0", b"RECIPE=app:2.0.0+1"),  # older files keep their key, as in abra
    ],
)
def test_rewrite_keeps_quoting_comments_and_key(
    tmp_path: Path, line: bytes, rewritten: bytes
) -> None:
    path = write(tmp_path, b"A=1\n" + line + b"\nB=2\n")
    write_type_version(path, "app", "2.0.0+1")
    assert path.read_bytes() == b"A=1\n" + rewritten + b"\nB=2\n"


def test_rewrite_is_atomic_keeps_mode_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = write(tmp_path, "TYPE=app\n")
    path.chmod(0o640)
    inode_before = path.stat().st_ino
    write_type_version(path, "app", "1.0.0")
    assert path.stat().st_mode & 0o777 == 0o640
    assert path.stat().st_ino != inode_before  # replaced by rename, not written in place
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_rewrite_to_the_same_version_does_not_touch_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "TYPE=app:1.0.0\n")
    inode_before = path.stat().st_ino
    assert write_type_version(path, "app", "1.0.0") is False
    assert path.stat().st_ino == inode_before


def test_rewrite_follows_a_symlinked_server_folder(tmp_path: Path) -> None:
    real = tmp_path / "ops-repo" / "srv1"
    real.mkdir(parents=True)
    (real / "app.example.com.env").write_text("TYPE=app:1.0.0\n")
    servers = tmp_path / "abra" / "servers"
    servers.mkdir(parents=True)
    (servers / "srv1").symlink_to(real, target_is_directory=True)
    linked_file = servers / "srv1" / "app.example.com.env"

    assert write_type_version(linked_file, "app", "1.1.0") is True
    assert (servers / "srv1").is_symlink()
    assert (real / "app.example.com.env").read_text() == "TYPE=app:1.1.0\n"
    assert sorted(p.name for p in real.iterdir()) == ["app.example.com.env"]


def test_rewrite_follows_a_symlinked_file(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.env"
    target.write_text("TYPE=app\n")
    link = write(tmp_path, "")
    link.unlink()
    link.symlink_to(target)
    write_type_version(link, "app", "3.0.0")
    assert link.is_symlink()
    assert target.read_text() == "TYPE=app:3.0.0\n"


def test_rewrite_refuses_files_without_type_and_bad_versions(tmp_path: Path) -> None:
    no_type = write(tmp_path, "DOMAIN=x\n#TYPE=app\n")
    with pytest.raises(EnvFileError, match="has no TYPE line"):
        write_type_version(no_type, "app", "1.0.0")
    with_type = write(tmp_path, "TYPE=app\n", name="other.env")
    for bad in ("1.0.0 # evil", "1.0.0\nX=1", '1.0"', ""):
        with pytest.raises(UserError, match="not a valid version"):
            write_type_version(with_type, "app", bad)
    with pytest.raises(UserError, match="not a valid recipe name"):
        write_type_version(with_type, "../app", "1.0.0")
    assert with_type.read_text() == "TYPE=app\n"


def test_rewrite_of_a_malformed_file_is_refused_untouched(tmp_path: Path) -> None:
    path = write(tmp_path, "TYPE=app\nbroken line\n")
    with pytest.raises(EnvFileError, match="line 2"):
        write_type_version(path, "app", "1.0.0")
    assert path.read_text() == "TYPE=app\nbroken line\n"
    assert os.listdir(path.parent) == [path.name]
