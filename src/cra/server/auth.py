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

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from ..errors import ForbiddenError
from ._api_keys import ApiKeyStore, KeyFileError, KeyRecord
from ._jwt import ALGORITHMS, MAX_LEEWAY_SECONDS, JwtVerifier
from ._principal import ANONYMOUS_ADMIN, SCOPE_ADMIN, SCOPE_AGENT, SCOPES, Principal, unauthorized

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
            raise unauthorized("ambiguous", "send one credential: X-API-Key or Authorization, not both")
        if api_key is not None:
            if self.api_keys is None:
                raise unauthorized("unsupported", "this server does not accept API keys; use a bearer token")
            return self.api_keys.verify(api_key.strip())
        if authorization is not None:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer":
                raise unauthorized("unsupported", "the Authorization header must be 'Bearer <token>'")
            token = token.strip()
            if not token:
                raise unauthorized("malformed", "the Authorization header has no token after 'Bearer'")
            if self.jwt is None:
                raise unauthorized("unsupported", "this server does not accept bearer tokens; use X-API-Key")
            return self.jwt.verify(token)
        accepted = " or ".join(
            name
            for name, on in (("X-API-Key", self.api_keys), ("Authorization: Bearer <token>", self.jwt))
            if on is not None
        )
        raise unauthorized("missing", f"credentials required: send {accepted}")

    def require_admin(self, principal: Principal) -> None:
        """:class:`~cra.errors.ForbiddenError` (403) unless ``principal`` has the admin scope."""
        if not principal.is_admin:
            raise ForbiddenError("this needs the admin scope", details={"scope": principal.scope})

    def __repr__(self) -> str:
        return f"Authenticator(api_keys={self.api_keys!r}, jwt={self.jwt!r})"


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
            if name not in ALGORITHMS:
                raise ValueError(
                    f"{ENV_JWT_ALGORITHMS}: unknown algorithm {name!r}; "
                    f"supported: {', '.join(sorted(ALGORITHMS))}"
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
