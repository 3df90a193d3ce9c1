"""``cra serve``: the HTTP + WebSocket API (SPEC 7) on uvicorn."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ._output import EXIT_USAGE, fail

__all__ = ["serve_command"]


def serve_command(
    host: Annotated[
        str | None, typer.Option("--host", help="Interface to bind [env CRA_HOST; default 127.0.0.1].")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port [env CRA_PORT; default 8420].")] = None,
    atlas: Annotated[
        list[str] | None,
        typer.Option(
            "--atlas",
            help="An Atlas directory or manifest to load; repeat for several [env CRA_ATLAS_DIR, comma-separated].",
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="Storage URL [env CRA_STORAGE; default sqlite:///cra.db]."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Worker processes [env CRA_WORKERS; default 1].")
    ] = None,
    api_keys_file: Annotated[
        str | None,
        typer.Option(
            "--api-keys-file", help="Hashed API keys from `cra keys create` [env CRA_API_KEYS_FILE]."
        ),
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="A TOML config file [env CRA_CONFIG].", show_default=False)
    ] = None,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request (uvicorn).")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Check the configuration and Atlases, print them, and exit.")
    ] = False,
) -> None:
    """Serve the HTTP + WebSocket API.

    Settings come from options, then CRA_* environment variables, then the --config file, then defaults.
    Without API keys or JWT configured the server binds to loopback only (it refuses any other host).
    Stops cleanly on Ctrl-C / SIGTERM, flushing the trace. Exit 2 on a bad setting or an Atlas that fails to load.

    \b
    Example:
      cra init support-atlas
      cra serve --atlas support-atlas
      cra keys create --scope admin --name ops && cra serve --host 0.0.0.0 --api-keys-file cra-keys.json
      CRA_STORAGE=sqlite:///var/lib/cra/cra.db cra serve --workers 2
    """
    try:
        from cra.server.config import load_config
        from cra.server.serve import serve
    except ImportError as exc:  # the server is an extra
        fail(f"the server needs its extra: pip install 'cra[server]' ({exc})", code="MISSING_EXTRA")
    args = {
        "host": host,
        "port": port,
        "atlas": tuple(atlas or ()),
        "storage": storage,
        "workers": workers,
        "api_keys_file": api_keys_file,
    }
    try:
        config = load_config(args, os.environ, config_file)
    except ValueError as exc:
        fail(str(exc), code="BAD_CONFIG", exit_code=EXIT_USAGE)
    if check:
        from cra.server.app import build_runtime
        from cra.server.serve import authenticator_from_config

        try:
            auth = authenticator_from_config(config)
            runtime = build_runtime(config)
        except Exception as exc:
            fail(f"{type(exc).__name__}: {exc}", code="BAD_CONFIG", exit_code=EXIT_USAGE)
        names = ", ".join(f"{a.atlas_id} {a.version}" for a in runtime.atlases()) or "none"
        runtime.close()
        typer.echo(
            f"ok: {config.host}:{config.port}, storage {config.storage}, atlases: {names}, "
            f"auth: {'on' if auth.enabled else 'off (loopback only)'}"
        )
        return
    from cra import CRAError

    try:
        serve(config, access_log=access_log)
    except (ValueError, OSError, CRAError) as exc:
        fail(f"{type(exc).__name__}: {exc}", code="SERVE_FAILED", exit_code=EXIT_USAGE)
