"""Server configuration: argument > environment > file > default, checked once, failing closed."""

from __future__ import annotations

from pathlib import Path

import pytest

from cra.server.config import ServerConfig, is_loopback, load_config


def test_defaults_serve_loopback_on_sqlite() -> None:
    config = load_config()
    assert (config.host, config.port, config.storage, config.workers) == (
        "127.0.0.1",
        8420,
        "sqlite:///cra.db",
        1,
    )
    assert not config.auth_configured


def test_arguments_beat_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    file = tmp_path / "cra.toml"
    file.write_text('port = 1111\nstorage = "memory://"\natlas = ["a", "b"]\nworkers = 2\n', encoding="utf-8")
    env = {"CRA_PORT": "2222", "CRA_ATLAS_DIR": "x, y", "CRA_CONFIG": str(file)}
    config = load_config({"port": 3333}, env)
    assert config.port == 3333
    assert config.atlas == ("x", "y")
    assert config.storage == "memory://"
    assert config.workers == 2
    assert load_config({}, env).port == 2222


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ({}, {"CRA_PORT": "eighty"}, "environment CRA_PORT"),
        ({"port": 0}, {}, "port must be"),
        ({"workers": 0}, {}, "workers"),
        ({"max_body_bytes": 10}, {}, "max_body_bytes"),
        ({"host": "0.0.0.0"}, {}, "without auth"),
        ({"host": "10.1.2.3"}, {}, "without auth"),
        ({"nonsense": 1}, {}, "unknown setting"),
        ({}, {"CRA_RATE_LIMIT_PER_SECOND": "-1"}, "rate_limit"),
    ],
)
def test_bad_settings_fail_at_start(args: dict[str, object], env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(args, env)


def test_unknown_keys_in_the_file_are_refused(tmp_path: Path) -> None:
    file = tmp_path / "cra.toml"
    file.write_text("prot = 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown settings prot"):
        load_config({}, {}, file)


def test_a_public_host_is_allowed_with_auth() -> None:
    config = load_config({"host": "0.0.0.0", "api_keys_file": "keys.json"})
    assert config.auth_configured and config.host == "0.0.0.0"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("127.0.0.1", True), ("::1", True), ("0.0.0.0", False), ("example.com", False)],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert ServerConfig(host=host, api_keys_file="k").check().host == host


def test_a_variable_set_but_empty_is_refused() -> None:
    with pytest.raises(ValueError, match="CRA_JWT_SECRET is set but empty"):
        load_config({}, {"CRA_JWT_SECRET": ""})


def test_the_server_checks_credentials_as_the_environment_reader_does(tmp_path: Path) -> None:
    from cra.server.serve import authenticator_from_config

    assert not authenticator_from_config(load_config()).enabled  # nothing configured: auth off (loopback)
    with pytest.raises(ValueError, match="no key file"):
        authenticator_from_config(load_config({"api_keys_file": str(tmp_path / "missing.json")}))
    with pytest.raises(ValueError, match="required with"):
        authenticator_from_config(load_config({}, {"CRA_JWT_PUBLIC_KEY_FILE": str(tmp_path / "k.pem")}))
    with pytest.raises(ValueError, match="HS256"):
        authenticator_from_config(load_config({}, {"CRA_JWT_SECRET": "short"}))
    secret = "s" * 32
    auth = authenticator_from_config(load_config({}, {"CRA_JWT_SECRET": secret, "CRA_JWT_AUDIENCE": "cra"}))
    assert auth.enabled and auth.jwt is not None
