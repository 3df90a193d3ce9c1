"""``cra serve``: configuration checks that stop the start, and ``--check``. (Serving itself is tested end to
end in tests/e2e.)"""

from __future__ import annotations

from pathlib import Path

from .conftest import Invoke


def test_check_loads_the_atlases_and_reports_the_configuration(
    cli: Invoke, atlas_dir: Path, tmp_path: Path
) -> None:
    db = tmp_path / "cra.db"
    result = cli("serve", "--atlas", atlas_dir, "--storage", f"sqlite:///{db}", "--port", "9999", "--check")
    assert result.exit_code == 0, result.output
    assert "127.0.0.1:9999" in result.output and "com.example.support 1.0.0" in result.output


def test_a_public_host_without_auth_is_refused(cli: Invoke, atlas_dir: Path) -> None:
    result = cli("serve", "--atlas", atlas_dir, "--host", "0.0.0.0", "--check")
    assert result.exit_code == 2
    assert "without auth" in result.output


def test_an_atlas_that_fails_to_load_stops_the_start(cli: Invoke, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "atlas.json").write_text('{"atlas_id": "Not Valid"}', encoding="utf-8")
    result = cli("serve", "--atlas", broken, "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--check")
    assert result.exit_code == 2
    assert "INVALID_ATLAS" in result.output or "InvalidAtlasError" in result.output


def test_a_bad_setting_names_its_source(cli: Invoke, tmp_path: Path) -> None:
    config = tmp_path / "cra.toml"
    config.write_text('port = "many"\n', encoding="utf-8")
    result = cli("serve", "--config", config, "--check")
    assert result.exit_code == 2
    assert "config file" in result.output and "port" in result.output


def test_check_refuses_a_key_file_that_does_not_exist(cli: Invoke, atlas_dir: Path, tmp_path: Path) -> None:
    result = cli("serve", "--atlas", atlas_dir, "--api-keys-file", tmp_path / "none.json", "--check")
    assert result.exit_code == 2
    assert "no key file" in result.output
