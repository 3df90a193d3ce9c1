"""JWT bearer tokens for ``cra serve``: verification with a shared secret or a public key, cached per token."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ._principal import MAX_ID_LENGTH, SCOPE_ADMIN, SCOPE_AGENT, Principal, check_identifier, unauthorized

__all__ = ["ALGORITHMS", "MAX_LEEWAY_SECONDS", "JwtVerifier"]

logger = logging.getLogger("cra.server.auth")

MAX_LEEWAY_SECONDS: Final = 300.0
"""A larger leeway would quietly turn short-lived tokens into long-lived ones."""

_MAX_TOKEN_BYTES = 8192  # far above any real JWT; bounds parsing work and the cache's memory

_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}  # RFC 7518 3.2: at least the hash's size
_EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_ASYMMETRIC = _RSA_ALGORITHMS | frozenset(_EC_CURVES) | {"EdDSA"}
ALGORITHMS = frozenset(_HMAC_MIN_BYTES) | _ASYMMETRIC
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
        raise unauthorized("invalid_claims", f"the token's {name} claim must be a number (a NumericDate)")
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
            if name not in ALGORITHMS:
                raise ValueError(
                    f"unknown JWT algorithm {name!r}; supported: {', '.join(sorted(ALGORITHMS))}"
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
            raise unauthorized("expired", "the token has expired")
        if len(token) > _MAX_TOKEN_BYTES:
            raise unauthorized("malformed", f"the token is longer than {_MAX_TOKEN_BYTES} bytes")
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
            raise unauthorized("malformed", "malformed bearer token (not a JWT)") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            if isinstance(alg, str) and alg.lower() == "none":
                message = "unsigned tokens (alg none) are never accepted"
            else:
                message = f"the token's algorithm is not accepted (accepted: {', '.join(self.algorithms)})"
            raise unauthorized("algorithm_not_allowed", message)
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
            raise unauthorized("bad_signature", "the token's signature is invalid") from None
        except jwt.InvalidAudienceError:
            raise unauthorized("wrong_audience", "the token's audience (aud) is not accepted") from None
        except jwt.InvalidIssuerError:
            raise unauthorized("wrong_issuer", "the token's issuer (iss) is not accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            if exc.claim == "aud":
                raise unauthorized("wrong_audience", "the token has no audience (aud) claim") from None
            if exc.claim == "iss":
                raise unauthorized("wrong_issuer", "the token has no issuer (iss) claim") from None
            raise unauthorized("invalid_claims", f"the token has no {exc.claim} claim") from None
        except jwt.InvalidAlgorithmError:
            raise unauthorized("algorithm_not_allowed", "the token's algorithm is not accepted") from None
        except jwt.InvalidTokenError as exc:
            # DecodeError and the claim-format errors; PyJWT's messages describe the token, never the key.
            raise unauthorized("malformed", f"invalid bearer token: {exc}") from None
        exp = _numeric_claim(claims, "exp")
        assert exp is not None  # required above
        if now >= exp + self.leeway_seconds:
            raise unauthorized("expired", "the token has expired")
        nbf = _numeric_claim(claims, "nbf")
        if nbf is not None and now < nbf - self.leeway_seconds:
            raise unauthorized("not_yet_valid", "the token is not valid yet (nbf)")
        subject = claims.get("sub")
        try:
            check_identifier(subject, "sub")
        except ValueError:
            raise unauthorized(
                "invalid_claims", f"the token's sub must be 1 to {MAX_ID_LENGTH} characters (the agent id)"
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
        raise unauthorized("invalid_claims", "the token's scope claim must be a string or a list of strings")
    if any(not isinstance(s, str) for s in scopes):
        raise unauthorized("invalid_claims", "the token's scope claim must be a string or a list of strings")
    return SCOPE_ADMIN if _ADMIN_SCOPES.intersection(scopes) else SCOPE_AGENT
