"""API keys for ``cra serve``: a JSON file of hashed keys, reloaded when it changes (``cra keys``)."""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..clock import Clock, SystemClock, format_timestamp
from ..errors import UnauthorizedError
from ._principal import SCOPE_ADMIN, SCOPE_AGENT, SCOPES, Principal, check_identifier, unauthorized

__all__ = ["ApiKeyStore", "KeyFileError", "KeyRecord"]

logger = logging.getLogger("cra.server.auth")


class KeyFileError(ValueError):
    """The API key file exists but is not a valid key file (the message names the file and the problem)."""


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
            raise unauthorized("malformed", "malformed API key (expected cra_<key_id>_<secret>)")
        self._refresh()
        if self._broken is not None:
            # The path and parse error stay in the server log: no internal path reaches a client.
            raise unauthorized("unavailable", "API keys cannot be checked: the server's key file is unusable")
        key_id, secret = match.groups()
        entry = self._principals.get(key_id)
        # Whether a key id exists is no secret (ids are listed and logged), so only the secret's comparison
        # needs to be constant-time.
        if entry is None or not hmac.compare_digest(entry[0].secret_sha256, _hash_secret(secret)):
            raise unauthorized("unknown_key", "unknown API key")
        record, principal = entry
        if record.revoked_at is not None:
            # Said only to whoever holds the secret, so it reveals nothing to a guesser.
            raise unauthorized("revoked", f"API key {key_id} was revoked")
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
            check_identifier(agent_id, "agent_id")
        elif agent_id is not None:
            raise ValueError("an admin key sees every agent; it takes no agent_id")
        if name is not None:
            check_identifier(name, "name")
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
