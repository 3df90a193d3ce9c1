"""The ``cra`` program as a whole: version, help, usage errors, and real subprocess runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cra

from .conftest import Invoke

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"


def _cra_executable() -> str:
    beside = Path(sys.executable).parent / "cra"
    if beside.exists():
        return str(beside)
    found = shutil.which("cra")
    if found is None:
        pytest.skip("the cra console script is not installed")
    return found


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR")}
    return subprocess.run(
        [_cra_executable(), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_version(cli: Invoke) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"cra {cra.__version__}"


def test_help_lists_every_command(cli: Invoke) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("init", "validate", "resolve", "trace", "conformance"):
        assert command in result.stdout


@pytest.mark.parametrize(
    "command",
    [["init"], ["validate"], ["resolve"], ["trace"], ["trace", "verify"], ["conformance"]],
)
def test_every_command_has_help_with_an_example(cli: Invoke, command: list[str]) -> None:
    result = cli(*command, "--help")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "Usage: cra " in text
    assert "Example:" in text
    assert f"cra {' '.join(command)} " in text.split("Example:")[1]


def test_no_command_and_unknown_command_are_usage_errors(cli: Invoke) -> None:
    assert cli().exit_code == 2
    assert cli("frobnicate").exit_code == 2
    assert cli("--frobnicate").exit_code == 2


def test_console_script_end_to_end(tmp_path: Path) -> None:
    target = tmp_path / "support"
    assert _run("init", target).returncode == 0
    validated = _run("validate", target)
    assert validated.returncode == 0, validated.stderr
    assert validated.stdout.startswith("valid: com.example.support 1.0.0")
    assert "\x1b[" not in validated.stdout  # piped: plain text

    resolved = _run("resolve", "--atlas", target, "--agent", "support-bot", "--goal", "Answer T-1", "--json")
    assert resolved.returncode == 0, resolved.stderr
    assert json.loads(resolved.stdout)["decision"]["type"] == "requires_approval"


def test_console_script_usage_error_exits_2(tmp_path: Path) -> None:
    result = _run("validate", tmp_path / "missing")
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_console_script_conformance_json(tmp_path: Path) -> None:
    result = _run("conformance", CONFORMANCE, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["implementation"] == "cra-python"
    assert report["test_run"]["failed"] == 0
