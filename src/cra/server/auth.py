"""Who is calling ``cra serve``: API keys and JWT bearer tokens (SPEC 7 "Auth").

Framework-free on purpose: the server hands :meth:`Authenticator.authenticate` the request headers and gets a
:class:`Principal` back, or an :class:`~cra.errors.UnauthorizedError` (401). Scopes are ``agent`` (only its
own sessions, traces and approvals) and ``admin`` (atlases, approvals, every session).

- **API keys** (``X-API-Key: cra_<key_id>_<secret>``) live in a JSON file holding only a hash of each
  secret (:class:`ApiKeyStore`); ``cra keys create|list|revoke`` edits it, and a running server picks up the
  change within a second.
- **JWT** (``Authorization: Bearer <token>``) signed with a shared secret (HS256) or an asymmetric key whose
  PEM public key the server holds (RS256, PS256, ES256, EdDSA, ...) (:class:`JwtVerifier`).
- **No auth** (nothing configured): every request is :data:`ANONYMOUS_ADMIN`. The server allows that only
  when bound to loopback (``cra.server.config``).

:func:`authenticator_from_env` builds the whole thing from ``CRA_*`` variables and refuses a bad value at
start rather than running with less protection than was asked for.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ..clock import Clock, SystemClock, format_timestamp
from ..errors import ForbiddenError, UnauthorizedError

__all__ = [
    "ANONYMOUS_ADMIN",
    "ApiKeyStore",
    "Authenticator",
    "authenticator_from_env",
    "ENV_API_KEYS_FILE",
    "ENV_JWT_ALGORITHMS",
    "ENV_JWT_AUDIENCE",
    "ENV_JWT_ISSUER",
    "ENV_JWT_LEEWAY_SECONDS",
    "ENV_JWT_PUBLIC_KEY_FILE",
    "ENV_JWT_SECRET",
    "JwtVerifier",
    "KeyFileError",
    "KeyRecord",
    "MAX_LEEWAY_SECONDS",
    "Principal",
    "SCOPE_ADMIN",
    "SCOPE_AGENT",
    "SCOPES",
]

logger = logging.getLogger("cra.server.auth")

SCOPE_AGENT: Final = "agent"
"""Only its own sessions, traces and approvals (a session belongs to the agent that created it)."""
SCOPE_ADMIN: Final = "admin"
"""Sees everything; manages atlases and decides approvals."""
SCOPES: Final = (SCOPE_AGENT, SCOPE_ADMIN)
"""Every scope a credential may carry."""

ENV_API_KEYS_FILE: Final = "CRA_API_KEYS_FILE"
"""Path of the API key file (written by ``cra keys``). It must exist when the server starts."""
ENV_JWT_SECRET: Final = "CRA_JWT_SECRET"
"""Shared secret for HS256/HS384/HS512 tokens: at least as many bytes as the hash (32 for HS256)."""
ENV_JWT_PUBLIC_KEY_FILE: Final = "CRA_JWT_PUBLIC_KEY_FILE"
"""Path of a PEM public key (RSA >= 2048 bits, EC P-256/P-384/P-521, Ed25519/Ed448) for asymmetric tokens."""
ENV_JWT_ALGORITHMS: Final = "CRA_JWT_ALGORITHMS"
"""Comma-separated accepted ``alg`` values. Default ``HS256`` with a secret; required with a public key."""
ENV_JWT_AUDIENCE: Final = "CRA_JWT_AUDIENCE"
"""When set, a token's ``aud`` must contain it. When unset, a token that carries ``aud`` is refused."""
ENV_JWT_ISSUER: Final = "CRA_JWT_ISSUER"
"""When set, a token's ``iss`` must equal it."""
ENV_JWT_LEEWAY_SECONDS: Final = "CRA_JWT_LEEWAY_SECONDS"
"""Clock skew tolerated on ``exp`` and ``nbf``, in seconds (0 to :data:`MAX_LEEWAY_SECONDS`; default 0)."""

MAX_LEEWAY_SECONDS: Final = 300.0
"""A larger leeway would quietly turn short-lived tokens into long-lived ones."""

_MAX_ID_LENGTH = 255  # the CARP schema's limit on agent_id; names share it
_MAX_TOKEN_BYTES = 8192  # far above any real JWT; bounds parsing work and the cache's memory
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_identifier(value: object, what: str) -> str:
    """An agent id or key name: 1..255 characters, no control characters."""
    if not isinstance(value, str) or not value or len(value) > _MAX_ID_LENGTH or _CONTROL.search(value):
        raise ValueError(f"{what} must be 1 to {_MAX_ID_LENGTH} characters without control characters")
    return value


def _unauthorized(reason: str, message: str) -> UnauthorizedError:
    # details.reason lets clients and tests tell the failures apart without parsing the message.
    return UnauthorizedError(message, details={"reason": reason})


class KeyFileError(ValueError):
    """The API key file exists but is not a valid key file (the message names the file and the problem)."""


# --- principal ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    subject: str
    """The agent id for scope ``agent``; the key name or the JWT ``sub`` for ``admin``."""
    scope: str
    """``agent`` or ``admin``."""
    credential_id: str
    """Stable id of the credential (an API key id, or ``jwt:<sub>``): the per-credential rate-limit key."""

    @property
    def is_admin(self) -> bool:
        """True for the admin scope."""
        return self.scope == SCOPE_ADMIN

    @property
    def agent_filter(self) -> str | None:
        """The agent whose resources this caller may see: ``None`` (all) for admin, else the subject."""
        return None if self.scope == SCOPE_ADMIN else self.subject


ANONYMOUS_ADMIN: Final = Principal(subject="anonymous", scope=SCOPE_ADMIN, credential_id="anonymous")
"""Every request's principal when auth is off, which the server allows only on a loopback address."""


# --- API keys -----------------------------------------------------------------------------------------------

_KEY_PREFIX = "cra_"
_KEY_ID_HEX = 16  # 64 random bits: an id, not a secret; only needs to be unique in one file
_SECRET_HEX = 64  # 256 random bits
_KEY_FORMAT = re.compile(rf"cra_([0-9a-f]{{{_KEY_ID_HEX}}})_([0-9a-f]{{{_SECRET_HEX}}})")
_FILE_VERSION = 1


def _hash_secret(secret: str) -> str:
    # A plain SHA-256 is enough here, and a slow password hash (bcrypt, argon2) would only cost every request
    # milliseconds: those exist to stop guessing of low-entropy human passwords, whereas this secret is 256
    # bits from `secrets`, so neither brute force nor a precomputed table can find it from the hash.
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One API key as stored: everything but the secret, which is kept only as its SHA-256."""

    key_id: str
    """The public part of the key (``cra_<key_id>_<secret>``), shown by ``cra keys list``."""
    name: str
    """A label; the principal's subject for an admin key."""
    scope: str
    """``agent`` or ``admin``."""
    agent_id: str | None
    """The agent an agent-scoped key acts as (``None`` for admin keys)."""
    created_at: str
    """When the key was created (``YYYY-MM-DDTHH:MM:SS.ffffffZ``)."""
    revoked_at: str | None
    """When the key was revoked, or ``None`` while it is live."""
    secret_sha256: str = field(repr=False)
    """Hex SHA-256 of the secret part."""

    @property
    def revoked(self) -> bool:
        """True once the key has been revoked."""
        return self.revoked_at is not None

    def principal(self) -> Principal:
        """The caller this key authenticates."""
        if self.scope == SCOPE_AGENT:
            assert self.agent_id is not None  # guaranteed by _record_from_json and create
            return Principal(subject=self.agent_id, scope=SCOPE_AGENT, credential_id=self.key_id)
        return Principal(subject=self.name, scope=SCOPE_ADMIN, credential_id=self.key_id)

    def to_dict(self) -> dict[str, Any]:
        """The public view (``cra keys list --json``): every field but the hash."""
        return {
            "key_id": self.key_id,
            "name": self.name,
            "scope": self.scope,
            "agent_id": self.agent_id,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }

    def _to_file(self) -> dict[str, Any]:
        return {**self.to_dict(), "secret_sha256": self.secret_sha256}


def _record_from_json(raw: object, where: str) -> KeyRecord:
    if not isinstance(raw, dict):
        raise KeyFileError(f"{where}: must be an object")

    def text(name: str, *, optional: bool = False) -> str | None:
        value = raw.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise KeyFileError(f"{where}: {name} must be a non-empty string")
        return value

    key_id = text("key_id")
    if key_id is None or not re.fullmatch(rf"[0-9a-f]{{{_KEY_ID_HEX}}}", key_id):
        raise KeyFileError(f"{where}: key_id must be {_KEY_ID_HEX} lower-case hex digits")
    digest = text("secret_sha256")
    if digest is None or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise KeyFileError(f"{where}: secret_sha256 must be 64 lower-case hex digits")
    scope = text("scope")
    if scope not in SCOPES:
        raise KeyFileError(f"{where}: scope must be one of {', '.join(SCOPES)}")
    agent_id = text("agent_id", optional=True)
    if scope == SCOPE_AGENT and agent_id is None:
        raise KeyFileError(f"{where}: an agent-scoped key needs an agent_id")
    if scope == SCOPE_ADMIN and agent_id is not None:
        raise KeyFileError(f"{where}: an admin key has no agent_id")
    return KeyRecord(
        key_id=key_id,
        name=str(text("name")),
        scope=scope,
        agent_id=agent_id,
        created_at=str(text("created_at")),
        revoked_at=text("revoked_at", optional=True),
        secret_sha256=digest,
    )


def _read_key_file(path: Path) -> dict[str, KeyRecord]:
    """The records of a key file by key id; ``{}`` if it does not exist; KeyFileError says what is wrong."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: not a JSON document ({exc})") from None
    if not isinstance(document, dict) or document.get("version") != _FILE_VERSION:
        raise KeyFileError(
            f'{path}: not a CRA key file (expected {{"version": {_FILE_VERSION}, "keys": [...]}})'
        )
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise KeyFileError(f"{path}: keys must be a list")
    records: dict[str, KeyRecord] = {}
    for index, raw in enumerate(keys):
        record = _record_from_json(raw, f"{path}: keys[{index}]")
        if record.key_id in records:
            raise KeyFileError(f"{path}: keys[{index}]: duplicate key_id {record.key_id}")
        records[record.key_id] = record
    return records


def _write_key_file(path: Path, records: Mapping[str, KeyRecord]) -> None:
    """Replace the file atomically: a reader (the server) sees the old file or the new one, never half."""
    document = {"version": _FILE_VERSION, "keys": [r._to_file() for r in records.values()]}
    data = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp already creates 0600; fchmod says so explicitly and survives any umask oddity.
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    # Make the rename itself durable; not every platform can open a directory, and the data is safe anyway.
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of the key file across processes (two ``cra keys create`` at once would
    otherwise each write the file without the other's key). A sidecar lock file, because the key file itself
    is replaced on every write and a lock on it would be a lock on a file about to be discarded."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; concurrent edits from several processes are not serialised
        yield
        return
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _file_signature(path: Path) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    # The inode changes on every atomic replace, so two writes within the file system's mtime granularity
    # are still told apart; size and ctime cover an editor that rewrites in place.
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class ApiKeyStore:
    """API keys in a JSON file, stored hashed. Thread-safe.

    A key reads ``cra_<key_id>_<secret>``: the key id finds the record, and the secret's SHA-256 must match.
    The file is re-read when it changes on disk (checked at most once per ``reload_interval`` seconds of
    ``monotonic``), so ``cra keys create`` or ``revoke`` takes effect on a running server. A missing file is
    an empty store; a file that cannot be parsed is refused at construction, and if it breaks later every
    key is refused until it is fixed (fail closed: a broken file cannot tell which keys were revoked).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        reload_interval: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self._clock: Clock = clock or SystemClock()
        self._monotonic = monotonic
        self._reload_interval = reload_interval
        self._lock = threading.Lock()
        self._signature = _file_signature(self.path)
        self._records = _read_key_file(self.path)  # a broken file fails here, at start
        self._principals = self._live_principals(self._records)
        self._broken: str | None = None
        self._checked_at = monotonic()

    @staticmethod
    def _live_principals(records: Mapping[str, KeyRecord]) -> dict[str, tuple[KeyRecord, Principal]]:
        return {key_id: (record, record.principal()) for key_id, record in records.items()}

    # --- reading (the server's side) ---

    def _refresh(self) -> None:
        now = self._monotonic()
        if now - self._checked_at < self._reload_interval:
            return
        with self._lock:
            if now - self._checked_at < self._reload_interval:
                return  # another thread checked meanwhile
            self._checked_at = now
            try:
                signature = _file_signature(self.path)
            except OSError as exc:
                self._fail(f"cannot stat {self.path}: {exc}")
                self._signature = None
                return
            if signature == self._signature and self._broken is None:
                return
            self._signature = signature
            try:
                records = _read_key_file(self.path)
            except (OSError, ValueError) as exc:
                self._fail(str(exc))
                return
            self._records = records
            self._principals = self._live_principals(records)
            if self._broken is not None:
                logger.warning("API key file %s is readable again", self.path)
            self._broken = None
            logger.info("reloaded %d API keys from %s", len(records), self.path)

    def _fail(self, problem: str) -> None:
        if self._broken != problem:
            logger.error("API key file unusable, refusing every API key until it is fixed: %s", problem)
        self._broken = problem
        self._records = {}
        self._principals = {}

    def verify(self, plaintext: str) -> Principal:
        """The principal of a live key, or :class:`~cra.errors.UnauthorizedError` saying what is wrong
        (malformed, unknown, revoked, or the key file is unusable). The message never contains the key."""
        match = _KEY_FORMAT.fullmatch(plaintext)
        if match is None:
            raise _unauthorized("malformed", "malformed API key (expected cra_<key_id>_<secret>)")
        self._refresh()
        if self._broken is not None:
            # The path and parse error stay in the server log: no internal path reaches a client.
            raise _unauthorized(
                "unavailable", "API keys cannot be checked: the server's key file is unusable"
            )
        key_id, secret = match.groups()
        entry = self._principals.get(key_id)
        # Whether a key id exists is no secret (ids are listed and logged), so only the secret's comparison
        # needs to be constant-time.
        if entry is None or not hmac.compare_digest(entry[0].secret_sha256, _hash_secret(secret)):
            raise _unauthorized("unknown_key", "unknown API key")
        record, principal = entry
        if record.revoked_at is not None:
            # Said only to whoever holds the secret, so it reveals nothing to a guesser.
            raise _unauthorized("revoked", f"API key {key_id} was revoked")
        return principal

    def lookup(self, plaintext: str) -> Principal | None:
        """The principal of a live key; ``None`` if the key is malformed, unknown or revoked (or the file is
        unusable). :meth:`verify` says which."""
        try:
            return self.verify(plaintext)
        except UnauthorizedError:
            return None

    # --- writing (``cra keys``) ---

    def create(
        self, scope: str, *, agent_id: str | None = None, name: str | None = None
    ) -> tuple[str, KeyRecord]:
        """Make a key and save its hash; returns ``(plaintext, record)``. The plaintext exists only in the
        return value: show it once, it cannot be recovered.

        ``scope`` ``agent`` needs ``agent_id``; ``admin`` takes none. ``name`` defaults to the agent id
        (agent) or ``admin-<key_id>`` (admin). ValueError for a bad argument, :class:`KeyFileError` for a
        broken file (which is then left as it is), OSError if the file cannot be written.
        """
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        if scope == SCOPE_AGENT:
            if agent_id is None:
                raise ValueError("an agent-scoped key needs an agent_id")
            _check_identifier(agent_id, "agent_id")
        elif agent_id is not None:
            raise ValueError("an admin key sees every agent; it takes no agent_id")
        if name is not None:
            _check_identifier(name, "name")
        with self._lock, _file_lock(self.path):
            records = _read_key_file(self.path)  # fresh: another process may have written since
            key_id = secrets.token_hex(_KEY_ID_HEX // 2)
            while key_id in records:  # 64 bits make this loop theoretical
                key_id = secrets.token_hex(_KEY_ID_HEX // 2)
            secret = secrets.token_hex(_SECRET_HEX // 2)
            record = KeyRecord(
                key_id=key_id,
                name=name if name is not None else (agent_id or f"admin-{key_id}"),
                scope=scope,
                agent_id=agent_id,
                created_at=format_timestamp(self._clock.now_us()),
                revoked_at=None,
                secret_sha256=_hash_secret(secret),
            )
            records[key_id] = record
            _write_key_file(self.path, records)
            self._adopt(records)
        return f"{_KEY_PREFIX}{key_id}_{secret}", record

    def revoke(self, key_id: str) -> KeyRecord:
        """Mark a key revoked (it is kept, for the record) and return it. Revoking a revoked key changes
        nothing. KeyError if no key has this id."""
        with self._lock, _file_lock(self.path):
            records = _read_key_file(self.path)
            record = records.get(key_id)
            if record is None:
                raise KeyError(key_id)
            if record.revoked_at is None:
                record = replace(record, revoked_at=format_timestamp(self._clock.now_us()))
                records[key_id] = record
                _write_key_file(self.path, records)
            self._adopt(records)
        return record

    def list(self) -> builtins.list[KeyRecord]:
        """Every key, revoked ones included, oldest first, as the file holds them now."""
        with self._lock:
            records = _read_key_file(self.path)
            self._adopt(records)
        return builtins.list(records.values())

    def _adopt(self, records: dict[str, KeyRecord]) -> None:
        # Called under self._lock with what was just read or written, so this instance is current at once.
        self._records = records
        self._principals = self._live_principals(records)
        self._signature = _file_signature(self.path)
        self._broken = None

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"ApiKeyStore({str(self.path)!r}, keys={len(self._records)})"


# --- JWT ----------------------------------------------------------------------------------------------------

_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}  # RFC 7518 3.2: at least the hash's size
_EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_ASYMMETRIC = _RSA_ALGORITHMS | frozenset(_EC_CURVES) | {"EdDSA"}
_ALGORITHMS = frozenset(_HMAC_MIN_BYTES) | _ASYMMETRIC
_RSA_MIN_BITS = 2048
_ADMIN_SCOPES = frozenset({"cra:admin", "admin"})


def _check_key_fits(public_key: object, algorithm: str) -> None:
    if algorithm in _RSA_ALGORITHMS:
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise ValueError(f"{algorithm} needs an RSA public key")
        if public_key.key_size < _RSA_MIN_BITS:
            raise ValueError(f"RSA keys must have at least {_RSA_MIN_BITS} bits, not {public_key.key_size}")
    elif algorithm in _EC_CURVES:
        if (
            not isinstance(public_key, ec.EllipticCurvePublicKey)
            or public_key.curve.name != _EC_CURVES[algorithm]
        ):
            raise ValueError(f"{algorithm} needs an EC public key on curve {_EC_CURVES[algorithm]}")
    elif not isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        raise ValueError("EdDSA needs an Ed25519 or Ed448 public key")


def _numeric_claim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _unauthorized("invalid_claims", f"the token's {name} claim must be a number (a NumericDate)")
    return float(value)


class JwtVerifier:
    """Verifies ``Authorization: Bearer`` tokens and caches the result per token.

    Either ``secret`` with HMAC algorithms (HS256, HS384, HS512) or ``public_key`` (PEM) with asymmetric
    ones (RS*, PS*, ES256/384/512, EdDSA), never both: the key is fixed by configuration and the token's
    ``alg`` must be one of ``algorithms``, so no token can pick how it is checked (no ``alg: none``, no
    RS-to-HS confusion). ``exp`` and ``sub`` are required; ``aud`` and ``iss`` are checked when configured
    (a token carrying an ``aud`` is refused when no audience is configured, RFC 7519 4.1.3); ``nbf`` is
    honoured. ``leeway_seconds`` is tolerated on ``exp`` and ``nbf``; ``now`` is the clock (epoch seconds).

    ``sub`` is the agent id. The ``scope`` claim (a space-separated string or a list) holding ``cra:admin``
    (or ``admin``) gives the admin scope; anything else is ``agent``.

    A verified token is cached until its ``exp`` (up to ``cache_size`` tokens, the oldest evicted first), so
    a repeated token costs a dict lookup. Failures are not cached. Configuration errors raise ValueError.
    """

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key: str | None = None,
        algorithms: Sequence[str] = ("HS256",),
        audience: str | None = None,
        issuer: str | None = None,
        leeway_seconds: float = 0,
        now: Callable[[], float] = time.time,
        cache_size: int = 10_000,
    ) -> None:
        if isinstance(algorithms, str):
            raise ValueError("algorithms must be a sequence of names, not one string")
        names = tuple(dict.fromkeys(algorithms))
        if not names:
            raise ValueError("at least one JWT algorithm is required")
        for name in names:
            if name.lower() == "none":
                raise ValueError("alg none (unsigned tokens) is never accepted")
            if name not in _ALGORITHMS:
                raise ValueError(
                    f"unknown JWT algorithm {name!r}; supported: {', '.join(sorted(_ALGORITHMS))}"
                )
        if (secret is None) == (public_key is None):
            raise ValueError("give exactly one of a JWT secret (HMAC) or a public key (asymmetric)")
        self._key: Any
        if secret is not None:
            if asymmetric := [n for n in names if n in _ASYMMETRIC]:
                raise ValueError(f"{', '.join(asymmetric)} need a public key, not a shared secret")
            key_bytes = secret.encode("utf-8")
            needed = max(_HMAC_MIN_BYTES[n] for n in names)
            if len(key_bytes) < needed:
                raise ValueError(f"the JWT secret must be at least {needed} bytes for {', '.join(names)}")
            self._key = key_bytes
        else:
            assert public_key is not None
            if hmac_names := [n for n in names if n in _HMAC_MIN_BYTES]:
                raise ValueError(f"{', '.join(hmac_names)} need a shared secret, not a public key")
            try:
                loaded = load_pem_public_key(public_key.encode("utf-8"))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"not a PEM public key ({exc})") from None
            for name in names:
                _check_key_fits(loaded, name)
            self._key = loaded
        if audience is not None and not audience:
            raise ValueError("the JWT audience must not be empty")
        if issuer is not None and not issuer:
            raise ValueError("the JWT issuer must not be empty")
        if not (0 <= leeway_seconds <= MAX_LEEWAY_SECONDS):  # also refuses NaN
            raise ValueError(f"the JWT leeway must be 0 to {MAX_LEEWAY_SECONDS:g} seconds")
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self.algorithms = names
        self.audience = audience
        self.issuer = issuer
        self.leeway_seconds = float(leeway_seconds)
        self._now = now
        self._cache_size = cache_size
        self._cache: dict[str, tuple[Principal, float]] = {}  # token -> (principal, exp)
        self._cache_lock = threading.Lock()
        self._options: dict[str, Any] = {
            "require": ["exp", "sub"],
            # exp and nbf are checked here against the injected clock (PyJWT reads the system clock); iat is
            # informational and not checked.
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            # Always on: with no audience configured PyJWT refuses a token that names one.
            "verify_aud": True,
            "verify_iss": issuer is not None,
            # sub is checked below (a string, 1..255 characters) so that its failure reads invalid_claims.
            "verify_sub": False,
        }

    def verify(self, token: str) -> Principal:
        """The principal a valid token names, or :class:`~cra.errors.UnauthorizedError` saying what is wrong
        (``details.reason``); the message never contains the token."""
        now = self._now()
        cached = self._cache.get(token)
        if cached is not None:
            principal, exp = cached
            if now < exp + self.leeway_seconds:
                return principal
            with self._cache_lock:  # mutations share the lock: the eviction below iterates the dict
                self._cache.pop(token, None)
            raise _unauthorized("expired", "the token has expired")
        if len(token) > _MAX_TOKEN_BYTES:
            raise _unauthorized("malformed", f"the token is longer than {_MAX_TOKEN_BYTES} bytes")
        principal, exp = self._decode(token, now)
        with self._cache_lock:
            if len(self._cache) >= self._cache_size:
                # Drop the oldest entry: a cache may forget, and FIFO keeps this O(1) under a flood.
                self._cache.pop(next(iter(self._cache)), None)
            self._cache[token] = (principal, exp)
        return principal

    def _decode(self, token: str, now: float) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _unauthorized("malformed", "malformed bearer token (not a JWT)") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            if isinstance(alg, str) and alg.lower() == "none":
                message = "unsigned tokens (alg none) are never accepted"
            else:
                message = f"the token's algorithm is not accepted (accepted: {', '.join(self.algorithms)})"
            raise _unauthorized("algorithm_not_allowed", message)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=self._key,
                algorithms=list(self.algorithms),
                audience=self.audience,
                issuer=self.issuer,
                options=self._options,  # type: ignore[arg-type]  # a plain dict of PyJWT's documented options
            )
        except jwt.InvalidSignatureError:
            raise _unauthorized("bad_signature", "the token's signature is invalid") from None
        except jwt.InvalidAudienceError:
            raise _unauthorized("wrong_audience", "the token's audience (aud) is not accepted") from None
        except jwt.InvalidIssuerError:
            raise _unauthorized("wrong_issuer", "the token's issuer (iss) is not accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            if exc.claim == "aud":
                raise _unauthorized("wrong_audience", "the token has no audience (aud) claim") from None
            if exc.claim == "iss":
                raise _unauthorized("wrong_issuer", "the token has no issuer (iss) claim") from None
            raise _unauthorized("invalid_claims", f"the token has no {exc.claim} claim") from None
        except jwt.InvalidAlgorithmError:
            raise _unauthorized("algorithm_not_allowed", "the token's algorithm is not accepted") from None
        except jwt.InvalidTokenError as exc:
            # DecodeError and the claim-format errors; PyJWT's messages describe the token, never the key.
            raise _unauthorized("malformed", f"invalid bearer token: {exc}") from None
        exp = _numeric_claim(claims, "exp")
        assert exp is not None  # required above
        if now >= exp + self.leeway_seconds:
            raise _unauthorized("expired", "the token has expired")
        nbf = _numeric_claim(claims, "nbf")
        if nbf is not None and now < nbf - self.leeway_seconds:
            raise _unauthorized("not_yet_valid", "the token is not valid yet (nbf)")
        subject = claims.get("sub")
        try:
            _check_identifier(subject, "sub")
        except ValueError:
            raise _unauthorized(
                "invalid_claims", f"the token's sub must be 1 to {_MAX_ID_LENGTH} characters (the agent id)"
            ) from None
        assert isinstance(subject, str)
        return Principal(subject, _scope_of(claims), f"jwt:{subject}"), exp

    def cache_info(self) -> dict[str, int]:
        """How many verified tokens are cached, and the bound."""
        return {"size": len(self._cache), "max_size": self._cache_size}

    def __repr__(self) -> str:
        algorithms = ",".join(self.algorithms)
        return f"JwtVerifier(algorithms={algorithms!r}, audience={self.audience!r}, issuer={self.issuer!r})"


def _scope_of(claims: Mapping[str, Any]) -> str:
    raw = claims.get("scope")
    if raw is None:
        return SCOPE_AGENT
    if isinstance(raw, str):
        scopes: Sequence[object] = raw.split()
    elif isinstance(raw, list):
        scopes = raw
    else:
        raise _unauthorized("invalid_claims", "the token's scope claim must be a string or a list of strings")
    if any(not isinstance(s, str) for s in scopes):
        raise _unauthorized("invalid_claims", "the token's scope claim must be a string or a list of strings")
    return SCOPE_ADMIN if _ADMIN_SCOPES.intersection(scopes) else SCOPE_AGENT


# --- the authenticator --------------------------------------------------------------------------------------


class Authenticator:
    """Turns request headers into a :class:`Principal`.

    Credentials: ``X-API-Key: cra_<key_id>_<secret>`` (needs ``api_keys``) or ``Authorization: Bearer <jwt>``
    (needs ``jwt``); one per request. With neither configured, auth is off and every request is
    :data:`ANONYMOUS_ADMIN`, which the server permits only on loopback.
    """

    def __init__(self, *, api_keys: ApiKeyStore | None = None, jwt: JwtVerifier | None = None) -> None:
        self.api_keys = api_keys
        self.jwt = jwt

    @property
    def enabled(self) -> bool:
        """True when any credential source is configured (an empty key file counts: it admits nobody)."""
        return self.api_keys is not None or self.jwt is not None

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller, from lower-case header names (starlette's ``Headers`` work as they are).

        Auth off: :data:`ANONYMOUS_ADMIN`. Otherwise missing, malformed, unknown, expired or revoked
        credentials raise :class:`~cra.errors.UnauthorizedError` (401) whose message says what is wrong and
        whose ``details.reason`` is a stable word; the secret is never echoed.
        """
        if self.api_keys is None and self.jwt is None:
            return ANONYMOUS_ADMIN
        api_key = headers.get("x-api-key")
        authorization = headers.get("authorization")
        if api_key is not None and authorization is not None:
            raise _unauthorized("ambiguous", "send one credential: X-API-Key or Authorization, not both")
        if api_key is not None:
            if self.api_keys is None:
                raise _unauthorized("unsupported", "this server does not accept API keys; use a bearer token")
            return self.api_keys.verify(api_key.strip())
        if authorization is not None:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer":
                raise _unauthorized("unsupported", "the Authorization header must be 'Bearer <token>'")
            token = token.strip()
            if not token:
                raise _unauthorized("malformed", "the Authorization header has no token after 'Bearer'")
            if self.jwt is None:
                raise _unauthorized("unsupported", "this server does not accept bearer tokens; use X-API-Key")
            return self.jwt.verify(token)
        accepted = " or ".join(
            name
            for name, on in (("X-API-Key", self.api_keys), ("Authorization: Bearer <token>", self.jwt))
            if on is not None
        )
        raise _unauthorized("missing", f"credentials required: send {accepted}")

    def require_admin(self, principal: Principal) -> None:
        """:class:`~cra.errors.ForbiddenError` (403) unless ``principal`` has the admin scope."""
        if not principal.is_admin:
            raise ForbiddenError("this needs the admin scope", details={"scope": principal.scope})

    def __repr__(self) -> str:
        return f"Authenticator(api_keys={self.api_keys!r}, jwt={self.jwt!r})"


# --- configuration from the environment ---------------------------------------------------------------------


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    if value is None:
        return None
    # Set-but-empty is refused, not read as unset: `CRA_JWT_SECRET=` by mistake must not turn auth off.
    if not value.strip():
        raise ValueError(f"{name} is set but empty; unset it or give a value")
    return value


def _read_env_file(name: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{name}: cannot read {path} ({exc})") from None


def authenticator_from_env(environ: Mapping[str, str]) -> Authenticator:
    """An :class:`Authenticator` from ``CRA_API_KEYS_FILE`` and ``CRA_JWT_*`` (see the ``ENV_*`` constants).

    Nothing set: auth off. A bad value (an empty one, a missing or broken key file, an unreadable or wrong
    key, an unknown algorithm, JWT options without a secret or key, ...) raises ValueError naming the
    variable, so the server fails at start instead of running with less protection than was configured.
    """
    api_keys: ApiKeyStore | None = None
    keys_file = _env(environ, ENV_API_KEYS_FILE)
    if keys_file is not None:
        if not Path(keys_file).is_file():
            raise ValueError(
                f"{ENV_API_KEYS_FILE}: no key file at {keys_file} "
                "(create one with `cra keys create --file ...`)"
            )
        try:
            api_keys = ApiKeyStore(keys_file)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{ENV_API_KEYS_FILE}: {exc}") from None

    secret = _env(environ, ENV_JWT_SECRET)
    public_key_file = _env(environ, ENV_JWT_PUBLIC_KEY_FILE)
    algorithms_raw = _env(environ, ENV_JWT_ALGORITHMS)
    audience = _env(environ, ENV_JWT_AUDIENCE)
    issuer = _env(environ, ENV_JWT_ISSUER)
    leeway_raw = _env(environ, ENV_JWT_LEEWAY_SECONDS)

    if secret is None and public_key_file is None:
        stray = [
            name
            for name, value in (
                (ENV_JWT_ALGORITHMS, algorithms_raw),
                (ENV_JWT_AUDIENCE, audience),
                (ENV_JWT_ISSUER, issuer),
                (ENV_JWT_LEEWAY_SECONDS, leeway_raw),
            )
            if value is not None
        ]
        if stray:
            raise ValueError(
                f"{', '.join(stray)} set without {ENV_JWT_SECRET} or {ENV_JWT_PUBLIC_KEY_FILE}: "
                "JWT is not configured"
            )
        return Authenticator(api_keys=api_keys)
    if secret is not None and public_key_file is not None:
        raise ValueError(f"set {ENV_JWT_SECRET} or {ENV_JWT_PUBLIC_KEY_FILE}, not both")

    if algorithms_raw is None:
        if public_key_file is not None:
            raise ValueError(f"{ENV_JWT_ALGORITHMS} is required with {ENV_JWT_PUBLIC_KEY_FILE} (e.g. RS256)")
        algorithms: tuple[str, ...] = ("HS256",)
    else:
        algorithms = tuple(part.strip() for part in algorithms_raw.split(","))
        if any(not part for part in algorithms):
            raise ValueError(f"{ENV_JWT_ALGORITHMS}: an empty name in {algorithms_raw!r}")
        for name in algorithms:
            if name.lower() == "none":
                raise ValueError(f"{ENV_JWT_ALGORITHMS}: alg none (unsigned tokens) is never accepted")
            if name not in _ALGORITHMS:
                raise ValueError(
                    f"{ENV_JWT_ALGORITHMS}: unknown algorithm {name!r}; "
                    f"supported: {', '.join(sorted(_ALGORITHMS))}"
                )

    leeway = 0.0
    if leeway_raw is not None:
        try:
            leeway = float(leeway_raw)
        except ValueError:
            raise ValueError(f"{ENV_JWT_LEEWAY_SECONDS}: not a number: {leeway_raw!r}") from None
        if not (0 <= leeway <= MAX_LEEWAY_SECONDS):
            raise ValueError(
                f"{ENV_JWT_LEEWAY_SECONDS}: must be 0 to {MAX_LEEWAY_SECONDS:g} seconds, not {leeway_raw}"
            )

    public_key = _read_env_file(ENV_JWT_PUBLIC_KEY_FILE, public_key_file) if public_key_file else None
    try:
        verifier = JwtVerifier(
            secret=secret,
            public_key=public_key,
            algorithms=algorithms,
            audience=audience,
            issuer=issuer,
            leeway_seconds=leeway,
        )
    except ValueError as exc:
        # Name the variable the problem came from; the secret itself never appears in these messages.
        source = ENV_JWT_SECRET if secret is not None else ENV_JWT_PUBLIC_KEY_FILE
        raise ValueError(f"{source} / {ENV_JWT_ALGORITHMS}: {exc}") from None
    return Authenticator(api_keys=api_keys, jwt=verifier)
