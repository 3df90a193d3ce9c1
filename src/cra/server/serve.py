"""Running the server: ``serve(config)`` starts uvicorn (uvloop + httptools) with one or more workers.

With ``workers > 1`` uvicorn starts the app in each worker process from an import string, so the (already
checked) configuration travels to the workers in one environment variable as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

from starlette.applications import Starlette

from .app import build_app, build_runtime
from .auth import (
    ENV_API_KEYS_FILE,
    ENV_JWT_ALGORITHMS,
    ENV_JWT_AUDIENCE,
    ENV_JWT_ISSUER,
    ENV_JWT_LEEWAY_SECONDS,
    ENV_JWT_PUBLIC_KEY_FILE,
    ENV_JWT_SECRET,
    Authenticator,
    authenticator_from_env,
)
from .config import ServerConfig

__all__ = ["authenticator_from_config", "serve", "worker_app"]

_CONFIG_ENV = "_CRA_SERVE_CONFIG_JSON"  # internal: the parent's checked config, for worker processes

logger = logging.getLogger("cra.server")


def authenticator_from_config(config: ServerConfig) -> Authenticator:
    """The credential sources the configuration names, checked exactly as ``authenticator_from_env`` checks
    the ``CRA_*`` variables (a missing key file, an unknown algorithm, JWT options without a key, ... stop the
    start). Nothing configured: auth off, which ``config.check`` allows on loopback only."""
    settings = {
        ENV_API_KEYS_FILE: config.api_keys_file,
        ENV_JWT_SECRET: config.jwt_secret,
        ENV_JWT_PUBLIC_KEY_FILE: config.jwt_public_key_file,
        ENV_JWT_ALGORITHMS: ",".join(config.jwt_algorithms) or None,
        ENV_JWT_AUDIENCE: config.jwt_audience,
        ENV_JWT_ISSUER: config.jwt_issuer,
        ENV_JWT_LEEWAY_SECONDS: str(config.jwt_leeway_seconds) if config.jwt_leeway_seconds else None,
    }
    return authenticator_from_env({name: value for name, value in settings.items() if value is not None})


def _config_json(config: ServerConfig) -> str:
    data = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return json.dumps(data)


def worker_app() -> Starlette:
    """The app of one worker process (uvicorn's factory for ``workers > 1``)."""
    raw: dict[str, Any] = json.loads(os.environ[_CONFIG_ENV])
    for name in ("atlas", "jwt_algorithms"):
        raw[name] = tuple(raw[name])
    config = ServerConfig(**raw).check()
    return build_app(config, authenticator_from_config(config))


def serve(config: ServerConfig, *, access_log: bool = False) -> None:
    """Serve until interrupted (SIGINT/SIGTERM: in-flight requests finish, the trace is flushed)."""
    import uvicorn

    config.check()
    common: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "log_level": config.log_level,
        "access_log": access_log,
        "loop": "uvloop",
        "http": "httptools",
        "ws": "websockets-sansio",
        "lifespan": "on",
        "timeout_graceful_shutdown": 30,
    }
    if config.workers == 1:
        uvicorn.run(build_app(config, authenticator_from_config(config)), **common)
        return
    # Traces and limits are shared through the storage file, but each worker keeps its own resolutions,
    # approvals and pending completions in memory (shared state across processes is the PostgreSQL
    # scale-out): say so at start rather than let a client discover it as a 404.
    logger.warning(
        "%d workers: each keeps its own resolutions and approvals in memory; a client should keep one "
        "connection per session (HTTP keep-alive pins it to one worker). See docs/server.md, Workers.",
        config.workers,
    )
    # Fail here, once, on a bad Atlas or storage, rather than in every worker after the fork.
    build_runtime(config).close()
    os.environ[_CONFIG_ENV] = _config_json(config)
    uvicorn.run("cra.server.serve:worker_app", factory=True, workers=config.workers, **common)
