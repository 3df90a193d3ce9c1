"""``cra keys ...``: create, list and revoke the API keys ``cra serve`` accepts (SPEC 7 "Auth").

Keys live in a JSON file holding only a hash of each secret (``cra.server.auth.ApiKeyStore``); a running
server re-reads it within a second, so a created key works and a revoked key stops working without a
restart. The server modules are imported only when a command runs, so ``cra --help`` needs no server extra.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from ._output import Output, fail, print_json, warn

if TYPE_CHECKING:
    from cra.server.auth import ApiKeyStore

__all__ = ["DEFAULT_KEYS_FILE", "KeyScope", "app", "create_command", "list_command", "revoke_command"]

DEFAULT_KEYS_FILE = Path("cra-keys.json")
"""The key file when neither ``--file`` nor ``CRA_API_KEYS_FILE`` names one."""

app = typer.Typer(
    name="keys",
    help=(
        "Create, list and revoke API keys for cra serve.\n\n"
        "The key file stores only a hash of each key, so a key is shown once, when it is created. A running "
        "server picks up changes to the file within a second.\n\n"
        "\b\nExample:\n"
        "  cra keys create --scope agent --agent-id support-bot\n"
        "  cra keys list\n"
        "  cra keys revoke 3f9c2a7e51d04b86"
    ),
    no_args_is_help=True,
)


class KeyScope(StrEnum):
    """What a key may see: ``agent`` (its own sessions, traces and approvals) or ``admin`` (everything)."""

    agent = "agent"
    admin = "admin"


FileOption = Annotated[
    Path,
    typer.Option(
        "--file",
        metavar="PATH",
        envvar="CRA_API_KEYS_FILE",
        dir_okay=False,
        help="The key file (the one cra serve reads from CRA_API_KEYS_FILE).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _fail_file(exc: Exception, path: Path, json_mode: bool) -> NoReturn:
    if isinstance(exc, ValueError):  # the store's message names the file and what is wrong in it
        fail(str(exc), code="INVALID_KEYS_FILE", json_mode=json_mode)
    if isinstance(exc, OSError):
        fail(f"cannot write {path}: {exc.strerror or exc}", code="WRITE_FAILED", json_mode=json_mode)
    raise exc


def _store(path: Path, json_mode: bool, *, must_exist: bool) -> ApiKeyStore:
    try:
        from cra.server.auth import ApiKeyStore
    except ImportError as exc:
        fail(
            f"cra keys needs the server extra (pip install 'cra[server]'): {exc}",
            code="MISSING_EXTRA",
            json_mode=json_mode,
        )
    if must_exist and not path.is_file():
        # Listing or revoking in a file that is not there is almost always a wrong path, not "no keys".
        fail(
            f"no key file at {path} (create a key with `cra keys create --file {path}`)",
            code="KEYS_FILE_NOT_FOUND",
            json_mode=json_mode,
        )
    try:
        return ApiKeyStore(path)
    except (OSError, ValueError) as exc:
        _fail_file(exc, path, json_mode)


@app.command("create")
def create_command(
    scope: Annotated[
        KeyScope,
        typer.Option(
            "--scope", help="agent: only its own sessions, traces and approvals; admin: everything."
        ),
    ] = KeyScope.agent,
    agent_id: Annotated[
        str | None,
        typer.Option(
            "--agent-id", metavar="AGENT", help="The agent the key acts as (required for --scope agent)."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", metavar="NAME", help="A label for the key (default: the agent id, or admin-<key_id>)."
        ),
    ] = None,
    file: FileOption = DEFAULT_KEYS_FILE,
    json_output: JsonOption = False,
) -> None:
    """Create an API key and print it, once.

    The key (cra_<key_id>_<secret>) is printed on stdout and never again: the file keeps only a SHA-256 of
    the secret. Send it as the X-API-Key header. The file is created if needed (mode 0600). Exit 0 when the
    key was created, 1 if the file cannot be read or written, 2 for bad options.

    \b
    Example:
      cra keys create --scope agent --agent-id support-bot
      cra keys create --scope admin --name ops --file /etc/cra/keys.json
      export CRA_API_KEY=$(cra keys create --agent-id support-bot --json | jq -r .key)
    """
    if scope is KeyScope.agent and agent_id is None:
        raise typer.BadParameter("an agent-scoped key needs --agent-id", param_hint="'--agent-id'")
    if scope is KeyScope.admin and agent_id is not None:
        raise typer.BadParameter("an admin key sees every agent; drop --agent-id", param_hint="'--agent-id'")
    store = _store(file, json_output, must_exist=False)
    from cra.server.auth import KeyFileError  # importable: _store succeeded

    try:
        plaintext, record = store.create(scope.value, agent_id=agent_id, name=name)
    except KeyFileError as exc:  # broken since the store opened it; left as it is
        _fail_file(exc, file, json_output)
    except ValueError as exc:  # the name's or agent id's format
        raise typer.BadParameter(str(exc)) from None
    except OSError as exc:
        _fail_file(exc, file, json_output)
    warn("this is the only time the key is shown: the key file stores only its hash. Keep it safe.")
    if json_output:
        print_json({"key": plaintext, **record.to_dict(), "file": str(file)})
        return
    out = Output()
    who = f"agent {record.agent_id}" if record.agent_id is not None else "every agent"
    out.line(
        ("created", "bold green"), f" {record.scope} key {record.key_id} ({record.name}, {who}) in {file}"
    )
    out.line(f"key: {plaintext}")


def _second(timestamp: str | None) -> str | None:
    # Microseconds are for the record (--json has them); a person reads the second.
    return None if timestamp is None else timestamp[:19] + "Z"


@app.command("list")
def list_command(file: FileOption = DEFAULT_KEYS_FILE, json_output: JsonOption = False) -> None:
    """List the keys in the key file, revoked ones included (never a secret).

    Exit 0 when the file was read, 1 if it does not exist or cannot be read.

    \b
    Example:
      cra keys list
      cra keys list --file /etc/cra/keys.json --json
    """
    store = _store(file, json_output, must_exist=True)
    try:
        records = store.list()
    except (OSError, ValueError) as exc:
        _fail_file(exc, file, json_output)
    if json_output:
        print_json([record.to_dict() for record in records])
        return
    out = Output()
    live = sum(1 for record in records if not record.revoked)
    rows = [
        [r.key_id, r.name, r.scope, r.agent_id, _second(r.created_at), _second(r.revoked_at)] for r in records
    ]
    out.table(
        f"API keys in {file} ({live} live, {len(records) - live} revoked)",
        ["key_id", "name", "scope", "agent_id", "created", "revoked"],
        rows,
        styles={0: "cyan", 2: "magenta", 5: "red"},
    )


@app.command("revoke")
def revoke_command(
    key_id: Annotated[
        str,
        typer.Argument(metavar="KEY_ID", help="The key's id, as cra keys list shows it.", show_default=False),
    ],
    file: FileOption = DEFAULT_KEYS_FILE,
    json_output: JsonOption = False,
) -> None:
    """Revoke a key: from then on every request with it is refused (401).

    The record stays in the file, marked with the time it was revoked; revoking it again changes nothing.
    A running server stops accepting the key within a second. Exit 0 when the key is revoked, 1 if there is
    no such key or the file cannot be read or written.

    \b
    Example:
      cra keys revoke 3f9c2a7e51d04b86
    """
    if key_id.startswith("cra_"):
        # A whole key on the command line ends up in shell history: ask for the id, which is not secret.
        raise typer.BadParameter(
            "give the key id (the 16 hex digits after cra_), not the whole key", param_hint="'KEY_ID'"
        )
    store = _store(file, json_output, must_exist=True)
    try:
        was_revoked = any(r.key_id == key_id and r.revoked for r in store.list())
        record = store.revoke(key_id)
    except KeyError:
        fail(f"no key {key_id} in {file}", code="KEY_NOT_FOUND", json_mode=json_output)
    except (OSError, ValueError) as exc:
        _fail_file(exc, file, json_output)
    if json_output:
        print_json(record.to_dict())
        return
    out = Output()
    if was_revoked:
        out.line(f"{record.key_id} ({record.name}) was already revoked at {record.revoked_at}")
    else:
        out.line(("revoked", "bold red"), f" {record.key_id} ({record.name}) at {record.revoked_at}")
