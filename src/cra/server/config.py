"""How ``cra serve`` is configured: argument > ``CRA_*`` environment variable > config file > default.

Every setting is parsed once, at start. A bad value fails the start with a ``ValueError`` that names where it
came from (fail closed): a server never silently falls back to a default it was told not to use.

The config file is TOML (``--config cra.toml`` or ``CRA_CONFIG``), with the settings' names as keys::

    host = "0.0.0.0"
    port = 8420
    atlas = ["atlases/support", "atlases/billing"]
    storage = "sqlite:///var/lib/cra/cra.db"
    api_keys_file = "/etc/cra/keys.json"
    rate_limit_per_second = 200
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_PREFIX",
    "ServerConfig",
    "is_loopback",
    "load_config",
]

ENV_PREFIX = "CRA_"
"""Environment variables are the settings' names upper-cased with this prefix (``CRA_PORT``, ...)."""

_LIST_SEPARATOR = ","  # CRA_ATLAS_DIR=a,b and CRA_CORS... lists in the environment


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The settings of one ``cra serve`` process (see docs/server.md for each one)."""

    host: str = "127.0.0.1"
    """Interface to bind. Anything but loopback requires auth (API keys or JWT)."""
    port: int = 8420
    atlas: tuple[str, ...] = ()
    """Atlas directories (or manifest files) loaded at start; env ``CRA_ATLAS_DIR`` (comma-separated)."""
    storage: str = "sqlite:///cra.db"
    """Trace and state storage URL; SQLite in the working directory by default, so a restart loses nothing."""
    workers: int = 1
    """Server processes. Each runs its own runtime; see docs/server.md on sharing one SQLite file."""
    api_keys_file: str | None = None
    """JSON file of hashed API keys (``cra keys create``)."""
    jwt_secret: str | None = None
    jwt_public_key_file: str | None = None
    jwt_algorithms: tuple[str, ...] = ()
    """JWT algorithms accepted; HS256 when only a secret is set, required with a public key."""
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway_seconds: float = 0.0
    max_body_bytes: int = 1_048_576
    """Largest request body accepted (413 ``PAYLOAD_TOO_LARGE`` above it)."""
    rate_limit_per_second: float = 1000.0
    """Requests per second per credential (a token bucket); 429 with ``Retry-After`` above it. 0 = off."""
    rate_limit_burst: int = 2000
    ws_backlog: int = 10_000
    """Events a WebSocket client may fall behind by before it is closed (code 1013) to resume later."""
    request_timeout_seconds: float = 30.0
    """Longest a request may take inside the runtime (handlers, durable writes) before 503."""
    session_idle_timeout_seconds: float | None = None
    session_max_lifetime_seconds: float | None = None
    max_resolutions_per_session: int = 10_000
    """Beyond this many, a session's oldest resolutions are forgotten (bounds memory; the trace keeps them)."""
    heartbeat_interval_seconds: float | None = None
    sweep_interval_seconds: float = 1.0
    log_level: str = "info"

    @property
    def auth_configured(self) -> bool:
        """True when some credential source (API keys or JWT) is configured."""
        return bool(self.api_keys_file or self.jwt_secret or self.jwt_public_key_file)

    def check(self) -> ServerConfig:
        """Refuse settings that cannot work or are unsafe; returns self for chaining."""
        if not 0 < self.port < 65_536:
            raise ValueError(f"port must be 1..65535, not {self.port}")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")
        if self.rate_limit_per_second < 0 or self.rate_limit_burst < 1:
            raise ValueError("rate_limit_per_second must be >= 0 and rate_limit_burst >= 1")
        if self.ws_backlog < 1:
            raise ValueError("ws_backlog must be at least 1")
        if self.max_resolutions_per_session < 1:
            raise ValueError("max_resolutions_per_session must be at least 1")
        if not self.request_timeout_seconds > 0:
            raise ValueError("request_timeout_seconds must be positive")
        if not self.auth_configured and not is_loopback(self.host):
            raise ValueError(
                f"refusing to serve {self.host} without auth: configure API keys (CRA_API_KEYS_FILE) or JWT "
                "(CRA_JWT_SECRET / CRA_JWT_PUBLIC_KEY_FILE), or bind to 127.0.0.1"
            )
        return self


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (only there may the server run without auth)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_FIELDS = {f.name: f for f in fields(ServerConfig)}
_ENV_NAMES = {"atlas": "CRA_ATLAS_DIR"}  # the documented name; the rest follow the prefix rule


def _env_name(name: str) -> str:
    return _ENV_NAMES.get(name, ENV_PREFIX + name.upper())


def _coerce(name: str, value: Any, where: str) -> Any:
    default = getattr(ServerConfig(), name)
    kind = _FIELDS[name].type
    try:
        if isinstance(default, tuple):
            if isinstance(value, str):
                items = [v.strip() for v in value.split(_LIST_SEPARATOR) if v.strip()]
            elif isinstance(value, list | tuple):
                items = [str(v) for v in value]
            else:
                raise TypeError("a list")
            return tuple(items)
        if isinstance(default, bool):
            raise TypeError("unexpected bool setting")
        if isinstance(default, int):
            if isinstance(value, bool):
                raise TypeError("an integer")
            return int(value)
        if isinstance(default, float) or "float" in str(kind):
            if isinstance(value, bool):
                raise TypeError("a number")
            return None if value in ("", None) and "None" in str(kind) else float(value)
        return None if value in ("", None) else str(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {name} has a bad value {value!r} ({exc})") from None


def load_config(
    args: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> ServerConfig:
    """Build the configuration: ``args`` (None values are unset) > ``environ`` > the TOML file > defaults.

    The file is ``config_file`` or ``environ["CRA_CONFIG"]``. Unknown keys in the file are an error.
    """
    environ = environ if environ is not None else {}
    values: dict[str, Any] = {}
    path = config_file if config_file is not None else environ.get("CRA_CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"config file {path}: {exc}") from None
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise ValueError(f"config file {path}: unknown settings {', '.join(unknown)}")
        values.update({k: _coerce(k, v, f"config file {path}") for k, v in data.items()})
    for name in _FIELDS:
        env = _env_name(name)
        if env in environ:
            if not environ[env].strip():  # `CRA_JWT_SECRET=` by mistake must not quietly turn a setting off
                raise ValueError(f"environment {env} is set but empty; unset it or give a value")
            values[name] = _coerce(name, environ[env], f"environment {env}")
    for name, value in (args or {}).items():
        if name not in _FIELDS:
            raise ValueError(f"unknown setting {name}")
        if value is not None and value != ():
            values[name] = _coerce(name, value, "argument")
    return replace(ServerConfig(), **values).check()
