import subprocess
import sys
from pathlib import Path

import pytest

from coopbot.config import SSHServer, load_config
from coopbot.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = """
matrix:
  homeserver: http://127.0.0.1:8008
  user_id: "@coopbot:localhost"
  password: secret
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.matrix.password == "secret"
    assert list(config.roles) == ["member", "operator", "admin"]
    # relative paths are taken from the config file's folder
    assert config.database == tmp_path / "state" / "coopbot.db"
    assert config.matrix.store == tmp_path / "state" / "matrix"


def test_example_config_is_valid() -> None:
    config = load_config(ROOT / "config.example.yaml")
    assert config.rooms


def test_every_problem_names_its_key(tmp_path: Path) -> None:
    path = write(tmp_path, """
matrix:
  homeserver: localhost:8008
  user_id: bot
  pasword: x
rooms:
  "!a:b": {colour: red}
  "ops": {}
roles:
  admin: {power_level: "high"}
""")
    problems = problems_of(path)
    assert "matrix.homeserver: must start with http:// or https://" in problems
    assert "matrix.user_id: 'bot' is not a Matrix user id like @name:server" in problems
    assert "matrix.pasword: is not a known key" in problems
    assert "rooms.!a:b.colour: is not a known key" in problems
    assert any(p.startswith("roles.admin.power_level: has the wrong type") for p in problems)


def test_missing_keys_and_credentials(tmp_path: Path) -> None:
    assert problems_of(write(tmp_path, "database: x.db\n")) == ["matrix: is required"]
    problems = problems_of(write(tmp_path, MINIMAL.replace("password: secret", "")))
    assert problems == [
        "matrix: give exactly one of password, password_file, access_token, access_token_file"
    ]


def test_password_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    config = load_config(write(tmp_path, MINIMAL.replace("password: secret", "password_file: pw")))
    assert config.matrix.password == "from-file"
    monkeypatch.setenv("BOT_PW", "from-env")
    config = load_config(write(tmp_path, MINIMAL.replace("secret", "${BOT_PW}")))
    assert config.matrix.password == "from-env"


def test_unreadable_password_file_and_unset_env(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, MINIMAL.replace("password: secret", "password_file: nope")))
    assert len(problems) == 1
    assert problems[0].startswith("matrix.password_file: cannot read")
    problems = problems_of(write(tmp_path, MINIMAL.replace("secret", "${COOPBOT_NOT_SET_ANYWHERE}")))
    assert problems == ["matrix.password: environment variable COOPBOT_NOT_SET_ANYWHERE is not set"]


def test_mute_rooms_must_be_notification_rooms_under_rooms(tmp_path: Path) -> None:
    rooms = """
rooms:
  "#ops:localhost":
    mute_rooms: ["{target}"]
  "#news:localhost":
    notifications: {notified}
"""
    path = write(tmp_path, MINIMAL + rooms.format(target="#elsewhere:localhost", notified="true"))
    assert problems_of(path) == [
        "rooms.#ops:localhost.mute_rooms: '#elsewhere:localhost' is not under `rooms`"]
    path = write(tmp_path, MINIMAL + rooms.format(target="#news:localhost", notified="false"))
    assert problems_of(path) == [
        "rooms.#ops:localhost.mute_rooms: '#news:localhost' gets no notifications"]
    config = load_config(write(tmp_path, MINIMAL + rooms.format(target="#news:localhost",
                                                               notified="true")))
    assert config.rooms["#ops:localhost"].mute_rooms == ["#news:localhost"]


def test_room_references_unknown_server_and_role(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + """
rooms:
  "#ops:localhost":
    servers: [prod]
""")
    assert problems_of(path) == ["rooms.#ops:localhost.servers: unknown server 'prod'"]
    path = write(tmp_path, MINIMAL + """
rooms:
  "#ops:localhost":
    roles: {boss: {power_level: 10}}
""")
    assert problems_of(path) == ["rooms.#ops:localhost.roles: unknown role 'boss'"]


def test_ssh_server_paths_resolved(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL + """
servers:
  prod: {kind: ssh, host: 127.0.0.1, port: 2222, key_file: keys/id, known_hosts_file: kh}
  here: {kind: local}
"""))
    prod = config.servers["prod"]
    assert isinstance(prod, SSHServer)
    assert prod.key_file == tmp_path / "keys" / "id"
    assert prod.port == 2222


def test_ssh_server_missing_known_hosts(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, MINIMAL + """
servers:
  prod: {kind: ssh, host: h, key_file: k}
"""))
    assert problems == ["servers.prod.known_hosts_file: is required"]


def test_invalid_yaml_and_non_mapping(tmp_path: Path) -> None:
    assert problems_of(write(tmp_path, "matrix: [unclosed\n"))[0].endswith("not valid YAML at line 2")
    assert "top level must be a mapping" in problems_of(write(tmp_path, "- a\n- b\n"))[0]


def test_cli_exits_2_with_one_line_per_problem_and_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "matrix:\n  homeserver: nope\n  user_id: x\n  password: p\n  extra: 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "coopbot", "check-config", str(path)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "config error: matrix.homeserver: must start with http:// or https://",
        "config error: matrix.user_id: 'x' is not a Matrix user id like @name:server",
        "config error: matrix.extra: is not a known key",
    ]
    assert "Traceback" not in result.stderr


def test_cli_summarises_a_valid_config(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + 'rooms:\n  "#ops:localhost": {notifications: true}\n')
    result = subprocess.run(
        [sys.executable, "-m", "coopbot", "check-config", str(path)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "room #ops:localhost: servers none; apps *; notifications" in result.stdout
    assert "role operator: power >= 50" in result.stdout


def test_backups_validated(tmp_path: Path) -> None:
    (tmp_path / "restic-pw").write_text("pw\n")
    base = MINIMAL + "servers:\n  local: {kind: local}\n"
    config = load_config(write(tmp_path, base + """
backups:
  local: {repository: /srv/restic, password_file: restic-pw, schedule: daily 03:00}
"""))
    assert config.backups["local"].password_file == tmp_path / "restic-pw"
    assert config.backups["local"].retention.keep_daily == 7
    problems = problems_of(write(tmp_path, base + """
backups:
  local: {repository: /srv/restic, password_file: nope, schedule: weekly}
  other: {repository: /srv/restic, password_env: X, password_file: restic-pw}
"""))
    assert problems == [
        "backups.local.schedule: must be hourly, daily or daily HH:MM",
        "backups.other: give exactly one of password_file, password_env",
    ]
    problems = problems_of(write(tmp_path, base + """
backups:
  local: {repository: /srv/restic, password_file: nope}
"""))
    assert problems[0].startswith("backups.local.password_file: cannot read")
