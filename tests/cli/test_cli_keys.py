"""``cra keys create|list|revoke``: keys shown once, stored hashed, listed without secrets, revoked for good.

The commands run in a local typer app (``cra keys`` is registered in ``cra.cli`` separately).
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from cra.cli import keys
from cra.server.auth import ApiKeyStore

from .conftest import PLAIN_ENV

KEY = re.compile(r"cra_([0-9a-f]{16})_[0-9a-f]{64}")

app = typer.Typer(rich_markup_mode=None)
app.add_typer(keys.app, name="keys")

Run = Callable[..., Result]


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    """``run("create", "--agent-id", "a")``: ``cra keys ...`` in tmp_path, with no CRA_API_KEYS_FILE set."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str | Path, env: dict[str, str | None] | None = None) -> Result:
        full_env = {**PLAIN_ENV, "CRA_API_KEYS_FILE": None, **(env or {})}
        return runner.invoke(app, ["keys", *(str(a) for a in args)], env=full_env)

    return invoke


def test_create_prints_the_key_once_and_stores_only_its_hash(run: Run, tmp_path: Path) -> None:
    result = run("create", "--scope", "agent", "--agent-id", "support-bot")
    assert result.exit_code == 0, result.output
    match = KEY.search(result.stdout)
    assert match is not None
    plaintext, key_id = match.group(0), match.group(1)
    assert result.stdout.startswith(
        f"created agent key {key_id} (support-bot, agent support-bot) in cra-keys.json"
    )
    assert f"key: {plaintext}" in result.stdout
    assert "only time the key is shown" in result.stderr
    path = tmp_path / "cra-keys.json"  # the default file
    assert plaintext not in path.read_text()
    assert plaintext.rsplit("_", 1)[1] not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    principal = ApiKeyStore(path).lookup(plaintext)
    assert principal is not None and principal.subject == "support-bot" and principal.credential_id == key_id


def test_create_json_holds_the_key_and_the_record(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    result = run("create", "--scope", "admin", "--name", "ops", "--file", path, "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert KEY.fullmatch(body["key"])
    assert body["scope"] == "admin" and body["name"] == "ops" and body["agent_id"] is None
    assert body["revoked_at"] is None and body["file"] == str(path)
    assert "secret_sha256" not in body
    principal = ApiKeyStore(path).lookup(body["key"])
    assert principal is not None and principal.is_admin and principal.subject == "ops"


def test_the_file_defaults_to_cra_api_keys_file(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "from-env.json"
    result = run("create", "--agent-id", "a", "--json", env={"CRA_API_KEYS_FILE": str(path)})
    assert result.exit_code == 0, result.output
    assert path.is_file() and not (tmp_path / "cra-keys.json").exists()
    listed = run("list", "--json", env={"CRA_API_KEYS_FILE": str(path)})
    assert [k["key_id"] for k in json.loads(listed.stdout)] == [json.loads(result.stdout)["key_id"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scope", "agent"], "needs --agent-id"),
        (["--scope", "admin", "--agent-id", "a"], "drop --agent-id"),
        (["--scope", "root"], "root"),
        (["--agent-id", "a", "--name", ""], "name must be"),
    ],
)
def test_create_usage_errors_exit_2_and_write_nothing(
    run: Run, tmp_path: Path, args: list[str], message: str
) -> None:
    result = run("create", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tmp_path / "cra-keys.json").exists()


def test_list_shows_every_key_without_secrets(run: Run, tmp_path: Path) -> None:
    created = [json.loads(run("create", "--agent-id", name, "--json").stdout) for name in ("bot-a", "bot-b")]
    admin = json.loads(run("create", "--scope", "admin", "--name", "ops", "--json").stdout)
    run("revoke", created[1]["key_id"])

    result = run("list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "API keys in cra-keys.json (2 live, 1 revoked):"
    assert lines[1].split() == ["KEY_ID", "NAME", "SCOPE", "AGENT_ID", "CREATED", "REVOKED"]
    rows = [line.split() for line in lines[2:]]
    assert [row[:4] for row in rows] == [
        [created[0]["key_id"], "bot-a", "agent", "bot-a"],
        [created[1]["key_id"], "bot-b", "agent", "bot-b"],
        [admin["key_id"], "ops", "admin", "-"],
    ]
    assert rows[0][5] == "-" and rows[1][5] != "-" and rows[2][5] == "-"
    for key in (*created, admin):
        assert key["key"] not in result.stdout

    listed = json.loads(run("list", "--json").stdout)
    assert [k["key_id"] for k in listed] == [k["key_id"] for k in (*created, admin)]
    assert listed[1]["revoked_at"] is not None
    assert all("key" not in k and "secret_sha256" not in k for k in listed)


def test_list_on_a_terminal_is_a_table(run: Run) -> None:
    run("create", "--agent-id", "bot-a")
    result = run("list", env={"TTY_COMPATIBLE": "1"})
    assert result.exit_code == 0, result.output
    assert "key_id" in result.stdout and "bot-a" in result.stdout


def test_list_without_a_file_fails(run: Run) -> None:
    result = run("list")
    assert result.exit_code == 1
    assert "KEYS_FILE_NOT_FOUND" in result.stderr
    body = json.loads(run("list", "--json").stderr)
    assert body["error"]["code"] == "KEYS_FILE_NOT_FOUND"


def test_revoke_refuses_the_key_from_then_on(run: Run, tmp_path: Path) -> None:
    created = json.loads(run("create", "--agent-id", "bot-a", "--json").stdout)
    store = ApiKeyStore(tmp_path / "cra-keys.json")
    assert store.lookup(created["key"]) is not None

    result = run("revoke", created["key_id"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"revoked {created['key_id']} (bot-a) at ")
    assert ApiKeyStore(tmp_path / "cra-keys.json").lookup(created["key"]) is None

    again = run("revoke", created["key_id"])
    assert again.exit_code == 0
    assert "was already revoked at" in again.stdout
    body = json.loads(run("revoke", created["key_id"], "--json").stdout)
    assert body["key_id"] == created["key_id"] and body["revoked_at"] is not None


def test_revoke_an_unknown_key_fails(run: Run) -> None:
    run("create", "--agent-id", "bot-a")
    result = run("revoke", "0123456789abcdef")
    assert result.exit_code == 1
    assert "KEY_NOT_FOUND" in result.stderr


def test_revoke_asks_for_the_id_not_the_whole_key(run: Run) -> None:
    created = json.loads(run("create", "--agent-id", "bot-a", "--json").stdout)
    result = run("revoke", created["key"])
    assert result.exit_code == 2
    assert "not the whole key" in result.stderr


def test_a_broken_key_file_is_reported_and_left_alone(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "cra-keys.json"
    path.write_text("{ not json")
    for args in (["create", "--agent-id", "a"], ["list"], ["revoke", "0123456789abcdef"]):
        result = run(*args)
        assert result.exit_code == 1, args
        assert "INVALID_KEYS_FILE" in result.stderr
    assert path.read_text() == "{ not json"


def test_help_has_examples(run: Run) -> None:
    for args in ([], ["create"], ["list"], ["revoke"]):
        result = run(*args, "--help")
        assert result.exit_code == 0
        assert "Example:" in result.stdout
    assert "CRA_API_KEYS_FILE" in run("create", "--help").stdout
