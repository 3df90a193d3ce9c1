"""``cra.server.auth``: API keys in a hashed file, JWT bearer tokens, the authenticator and its env config.

Real keys and real PyJWT tokens throughout; time is injected, nothing sleeps.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from starlette.datastructures import Headers

from cra.clock import ManualClock
from cra.errors import ForbiddenError, UnauthorizedError
from cra.server import _api_keys
from cra.server.auth import (
    ANONYMOUS_ADMIN,
    ApiKeyStore,
    Authenticator,
    JwtVerifier,
    KeyFileError,
    Principal,
    authenticator_from_env,
)

NOW = 1_750_000_000.0
SECRET = "test-secret-that-is-32-bytes-ok!"  # exactly 32 bytes: the HS256 minimum
OTHER_SECRET = "another-secret-of-32-bytes-long!"


class FakeMonotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.value = 100.0

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds


class FakeNow:
    """Epoch seconds for the JWT verifier, moved by hand."""

    def __init__(self, value: float = NOW) -> None:
        self.value = value

    def __call__(self) -> float:
        return self.value


def reason(exc: pytest.ExceptionInfo[UnauthorizedError]) -> Any:
    assert exc.value.details is not None
    return exc.value.details["reason"]


def assert_not_echoed(error: Exception, secret: str) -> None:
    assert secret not in str(error)
    if isinstance(error, UnauthorizedError):
        assert secret not in json.dumps(error.to_dict())


# --- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture
def keys_path(tmp_path: Path) -> Path:
    return tmp_path / "keys.json"


@pytest.fixture
def monotonic() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def store(keys_path: Path, monotonic: FakeMonotonic) -> ApiKeyStore:
    return ApiKeyStore(keys_path, clock=ManualClock("2025-01-01T00:00:00Z"), monotonic=monotonic)


@pytest.fixture
def now() -> FakeNow:
    return FakeNow()


@pytest.fixture
def hs256(now: FakeNow) -> JwtVerifier:
    return JwtVerifier(secret=SECRET, now=now)


def claims(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"sub": "support-bot", "exp": int(NOW) + 300, "iat": int(NOW)}
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


def hs_token(body: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(body, secret, algorithm=algorithm)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_token(header: dict[str, Any], body: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def pem_public(private_key: Any) -> str:
    return str(
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


# --- Principal --------------------------------------------------------------------------------------------


def test_principal_scopes_decide_admin_and_the_agent_filter() -> None:
    agent = Principal(subject="support-bot", scope="agent", credential_id="k1")
    admin = Principal(subject="ops", scope="admin", credential_id="k2")
    assert not agent.is_admin and agent.agent_filter == "support-bot"
    assert admin.is_admin and admin.agent_filter is None
    assert ANONYMOUS_ADMIN.is_admin and ANONYMOUS_ADMIN.agent_filter is None


# --- API keys ---------------------------------------------------------------------------------------------


def test_a_created_agent_key_authenticates_as_its_agent(store: ApiKeyStore) -> None:
    plaintext, record = store.create("agent", agent_id="support-bot")
    assert plaintext.startswith(f"cra_{record.key_id}_")
    assert record.scope == "agent" and record.agent_id == "support-bot" and record.name == "support-bot"
    assert record.created_at == "2025-01-01T00:00:00.000000Z" and record.revoked_at is None
    assert store.lookup(plaintext) == Principal("support-bot", "agent", record.key_id)


def test_an_admin_key_authenticates_as_admin_under_its_name(store: ApiKeyStore) -> None:
    plaintext, record = store.create("admin", name="ops")
    principal = store.verify(plaintext)
    assert principal == Principal("ops", "admin", record.key_id)
    _, unnamed = store.create("admin")
    assert unnamed.name == f"admin-{unnamed.key_id}"


def test_every_key_is_different(store: ApiKeyStore) -> None:
    keys = {store.create("agent", agent_id="a")[0] for _ in range(20)}
    assert len(keys) == 20
    assert len({k.split("_")[1] for k in keys}) == 20


@pytest.mark.parametrize(
    ("scope", "kwargs", "match"),
    [
        ("root", {}, "scope must be one of"),
        ("agent", {}, "needs an agent_id"),
        ("admin", {"agent_id": "a"}, "takes no agent_id"),
        ("agent", {"agent_id": ""}, "agent_id must be"),
        ("agent", {"agent_id": "x" * 256}, "agent_id must be"),
        ("agent", {"agent_id": "a", "name": "bad\nname"}, "name must be"),
    ],
)
def test_create_refuses_bad_arguments(
    store: ApiKeyStore, keys_path: Path, scope: str, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        store.create(scope, **kwargs)
    assert not keys_path.exists()


def test_the_file_holds_only_a_hash_of_the_secret(store: ApiKeyStore, keys_path: Path) -> None:
    plaintext, record = store.create("agent", agent_id="support-bot")
    secret = plaintext.rsplit("_", 1)[1]
    text = keys_path.read_text()
    assert plaintext not in text and secret not in text
    document = json.loads(text)
    assert document["version"] == 1
    (stored,) = document["keys"]
    assert stored["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert set(stored) == {"key_id", "name", "scope", "agent_id", "created_at", "revoked_at", "secret_sha256"}
    assert "secret_sha256" not in record.to_dict()
    assert record.secret_sha256 not in repr(record)


def test_the_file_is_written_with_mode_0600_and_no_temp_file_is_left(
    store: ApiKeyStore, keys_path: Path
) -> None:
    old = os.umask(0o000)  # even a permissive umask must not widen the file
    try:
        _, record = store.create("agent", agent_id="a")
        assert stat.S_IMODE(keys_path.stat().st_mode) == 0o600
        store.revoke(record.key_id)
        assert stat.S_IMODE(keys_path.stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert sorted(p.name for p in keys_path.parent.iterdir()) == ["keys.json", "keys.json.lock"]


def test_an_unknown_key_is_refused(store: ApiKeyStore) -> None:
    plaintext, _ = store.create("agent", agent_id="a")
    unknown = "cra_" + "0" * 16 + "_" + "a" * 64
    with pytest.raises(UnauthorizedError) as exc:
        store.verify(unknown)
    assert reason(exc) == "unknown_key" and exc.value.http_status == 401
    assert store.lookup(unknown) is None
    # The right key id with a wrong secret is just as unknown.
    forged = plaintext[: -len("0" * 64)] + "0" * 64
    with pytest.raises(UnauthorizedError) as exc:
        store.verify(forged)
    assert reason(exc) == "unknown_key"
    assert_not_echoed(exc.value, forged.rsplit("_", 1)[1])


@pytest.mark.parametrize(
    "value",
    [
        "",
        "cra_",
        "nonsense",
        "cra_0123456789abcdef",
        "cra_0123456789ABCDEF_" + "a" * 64,
        "cra_0123_" + "a" * 64,
    ],
)
def test_a_malformed_key_is_refused_without_touching_the_store(store: ApiKeyStore, value: str) -> None:
    with pytest.raises(UnauthorizedError) as exc:
        store.verify(value)
    assert reason(exc) == "malformed"
    if len(value) > 8:  # shorter ones are substrings of the format the message shows
        assert_not_echoed(exc.value, value)


def test_a_revoked_key_is_refused_and_stays_in_the_file(store: ApiKeyStore, keys_path: Path) -> None:
    plaintext, record = store.create("agent", agent_id="a")
    revoked = store.revoke(record.key_id)
    assert revoked.revoked and revoked.revoked_at == "2025-01-01T00:00:00.000000Z"
    with pytest.raises(UnauthorizedError) as exc:
        store.verify(plaintext)
    assert reason(exc) == "revoked"
    assert_not_echoed(exc.value, plaintext.rsplit("_", 1)[1])
    assert store.lookup(plaintext) is None
    assert [r.key_id for r in store.list()] == [record.key_id]
    assert store.revoke(record.key_id) == revoked  # again: nothing changes
    with pytest.raises(KeyError):
        store.revoke("0" * 16)


def test_a_key_created_by_another_store_is_seen_after_the_reload_interval(
    store: ApiKeyStore, keys_path: Path, monotonic: FakeMonotonic
) -> None:
    assert store.list() == []
    other = ApiKeyStore(keys_path)  # e.g. `cra keys create` while the server runs
    plaintext, record = other.create("agent", agent_id="late-bot")
    assert store.lookup(plaintext) is None  # checked at most once a second: not yet
    monotonic.advance(0.5)
    assert store.lookup(plaintext) is None
    monotonic.advance(0.5)
    assert store.lookup(plaintext) == Principal("late-bot", "agent", record.key_id)

    other.revoke(record.key_id)
    assert store.lookup(plaintext) is not None
    monotonic.advance(1.0)
    with pytest.raises(UnauthorizedError) as exc:
        store.verify(plaintext)
    assert reason(exc) == "revoked"


def test_an_unchanged_file_is_not_read_again(
    store: ApiKeyStore, monotonic: FakeMonotonic, monkeypatch: pytest.MonkeyPatch
) -> None:
    plaintext, _ = store.create("agent", agent_id="a")
    reads: list[Path] = []
    real_read = _api_keys._read_key_file

    def counting_read(path: Path) -> Any:
        reads.append(path)
        return real_read(path)

    monkeypatch.setattr(_api_keys, "_read_key_file", counting_read)
    for _ in range(5):
        monotonic.advance(1.0)
        assert store.lookup(plaintext) is not None
    assert reads == []


def test_writers_read_the_file_fresh_so_no_key_is_lost(store: ApiKeyStore, keys_path: Path) -> None:
    other = ApiKeyStore(keys_path)
    _, first = store.create("agent", agent_id="a")
    _, second = other.create("agent", agent_id="b")
    _, third = store.create("agent", agent_id="c")  # store has not reloaded, but must keep b's key
    assert [r.key_id for r in ApiKeyStore(keys_path).list()] == [first.key_id, second.key_id, third.key_id]


def test_a_broken_file_is_refused_at_start(keys_path: Path) -> None:
    keys_path.write_text('{"version": 1, "keys": [{"key_id": "nope"}]}')
    with pytest.raises(KeyFileError, match=r"keys\[0\]: key_id"):
        ApiKeyStore(keys_path)
    keys_path.write_text("not json")
    with pytest.raises(KeyFileError, match="not a JSON document"):
        ApiKeyStore(keys_path)
    keys_path.write_text("[]")
    with pytest.raises(KeyFileError, match="not a CRA key file"):
        ApiKeyStore(keys_path)


def test_a_file_broken_while_running_refuses_every_key_until_fixed(
    store: ApiKeyStore, keys_path: Path, monotonic: FakeMonotonic
) -> None:
    plaintext, _ = store.create("agent", agent_id="a")
    good = keys_path.read_bytes()
    keys_path.write_text("{ truncated")
    monotonic.advance(1.0)
    with pytest.raises(UnauthorizedError) as exc:
        store.verify(plaintext)
    assert reason(exc) == "unavailable"
    assert str(keys_path) not in exc.value.message  # no internal path reaches a client
    with pytest.raises(KeyFileError):
        store.create("agent", agent_id="b")  # and a writer never overwrites it
    assert keys_path.read_text() == "{ truncated"

    keys_path.write_bytes(good)
    monotonic.advance(1.0)
    assert store.lookup(plaintext) is not None


def test_a_missing_file_is_an_empty_store(keys_path: Path) -> None:
    store = ApiKeyStore(keys_path)
    assert store.list() == [] and len(store) == 0
    assert not keys_path.exists()


# --- JWT --------------------------------------------------------------------------------------------------


def test_an_hs256_token_authenticates_its_subject_as_an_agent(hs256: JwtVerifier) -> None:
    principal = hs256.verify(hs_token(claims()))
    assert principal == Principal("support-bot", "agent", "jwt:support-bot")


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("cra:admin", "admin"),
        ("openid cra:admin", "admin"),
        ("admin", "admin"),
        (["cra:admin"], "admin"),
        ("cra:agent", "agent"),
        (["agent"], "agent"),
        ("read write", "agent"),
        (None, "agent"),
    ],
)
def test_the_scope_claim_picks_the_scope(hs256: JwtVerifier, scope: Any, expected: str) -> None:
    assert hs256.verify(hs_token(claims(scope=scope))).scope == expected


@pytest.mark.parametrize("scope", [42, {"cra": "admin"}, ["admin", 1]])
def test_a_scope_claim_of_the_wrong_type_is_refused(hs256: JwtVerifier, scope: Any) -> None:
    with pytest.raises(UnauthorizedError) as exc:
        hs256.verify(hs_token(claims(scope=scope)))
    assert reason(exc) == "invalid_claims"


def test_a_bad_signature_is_refused(hs256: JwtVerifier) -> None:
    token = hs_token(claims(), secret=OTHER_SECRET)
    with pytest.raises(UnauthorizedError) as exc:
        hs256.verify(token)
    assert reason(exc) == "bad_signature"
    assert_not_echoed(exc.value, token)
    assert_not_echoed(exc.value, SECRET)


def test_a_tampered_payload_is_refused(hs256: JwtVerifier) -> None:
    header, _, signature = hs_token(claims()).split(".")
    payload = _b64(json.dumps(claims(scope="cra:admin")).encode())
    with pytest.raises(UnauthorizedError) as exc:
        hs256.verify(f"{header}.{payload}.{signature}")
    assert reason(exc) == "bad_signature"


def test_an_expired_token_is_refused_and_leeway_is_honoured(now: FakeNow) -> None:
    token = hs_token(claims(exp=int(NOW) - 10))
    with pytest.raises(UnauthorizedError) as exc:
        JwtVerifier(secret=SECRET, now=now).verify(token)
    assert reason(exc) == "expired"
    assert JwtVerifier(secret=SECRET, now=now, leeway_seconds=30).verify(token).subject == "support-bot"
    at_exp = hs_token(claims(exp=int(NOW)))
    with pytest.raises(UnauthorizedError):
        JwtVerifier(secret=SECRET, now=now).verify(at_exp)  # expired at exp itself


def test_a_token_before_its_nbf_is_refused(hs256: JwtVerifier) -> None:
    with pytest.raises(UnauthorizedError) as exc:
        hs256.verify(hs_token(claims(nbf=int(NOW) + 60)))
    assert reason(exc) == "not_yet_valid"


@pytest.mark.parametrize(
    ("missing", "expected_reason"), [("exp", "invalid_claims"), ("sub", "invalid_claims")]
)
def test_exp_and_sub_are_required(hs256: JwtVerifier, missing: str, expected_reason: str) -> None:
    body = claims()
    del body[missing]
    with pytest.raises(UnauthorizedError) as exc:
        hs256.verify(hs_token(body))
    assert reason(exc) == expected_reason
    assert missing in exc.value.message


@pytest.mark.parametrize("sub", ["", "x" * 256, 42])
def test_a_bad_subject_is_refused(hs256: JwtVerifier, sub: Any) -> None:
    token = forged_token(
        {"alg": "HS256", "typ": "JWT"},
        claims(sub=sub),
        lambda data: hmac.new(SECRET.encode(), data, hashlib.sha256).digest(),
    )
    with pytest.raises(UnauthorizedError) as exc:
        hs256.verify(token)
    assert reason(exc) == "invalid_claims"


def test_the_audience_is_checked_when_configured(now: FakeNow) -> None:
    verifier = JwtVerifier(secret=SECRET, audience="cra", now=now)
    assert verifier.verify(hs_token(claims(aud="cra"))).subject == "support-bot"
    assert verifier.verify(hs_token(claims(aud=["other", "cra"]))).subject == "support-bot"
    for body in (claims(aud="other"), claims()):
        with pytest.raises(UnauthorizedError) as exc:
            verifier.verify(hs_token(body))
        assert reason(exc) == "wrong_audience"


def test_a_token_naming_an_audience_is_refused_when_none_is_configured(hs256: JwtVerifier) -> None:
    with pytest.raises(UnauthorizedError) as exc:
        hs256.verify(hs_token(claims(aud="someone-else")))
    assert reason(exc) == "wrong_audience"


def test_the_issuer_is_checked_when_configured(now: FakeNow) -> None:
    verifier = JwtVerifier(secret=SECRET, issuer="https://idp.example", now=now)
    assert verifier.verify(hs_token(claims(iss="https://idp.example"))).subject == "support-bot"
    for body in (claims(iss="https://evil.example"), claims()):
        with pytest.raises(UnauthorizedError) as exc:
            verifier.verify(hs_token(body))
        assert reason(exc) == "wrong_issuer"


def test_alg_none_is_refused(hs256: JwtVerifier) -> None:
    unsigned = jwt.encode(claims(scope="cra:admin"), "", algorithm="none")
    with pytest.raises(UnauthorizedError) as exc:
        hs256.verify(unsigned)
    assert reason(exc) == "algorithm_not_allowed"
    for alg in ("None", "NONE"):
        token = forged_token({"alg": alg}, claims(), lambda data: b"")
        with pytest.raises(UnauthorizedError) as exc:
            hs256.verify(token)
        assert reason(exc) == "algorithm_not_allowed"


def test_an_algorithm_not_configured_is_refused(
    hs256: JwtVerifier, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    hs512 = hs_token(claims(), secret=SECRET * 2, algorithm="HS512")
    with pytest.raises(UnauthorizedError) as exc:
        hs256.verify(hs512)
    assert reason(exc) == "algorithm_not_allowed"
    eddsa = jwt.encode(claims(), ed_key, algorithm="EdDSA")
    with pytest.raises(UnauthorizedError) as exc:
        hs256.verify(eddsa)
    assert reason(exc) == "algorithm_not_allowed"


def test_a_public_key_cannot_be_used_as_an_hmac_secret(rsa_key: rsa.RSAPrivateKey, now: FakeNow) -> None:
    # The classic RS256 -> HS256 confusion: sign with the (public) PEM as the HMAC key.
    public = pem_public(rsa_key)
    verifier = JwtVerifier(public_key=public, algorithms=["RS256"], now=now)
    token = forged_token(
        {"alg": "HS256", "typ": "JWT"},
        claims(scope="cra:admin"),
        lambda data: hmac.new(public.encode(), data, hashlib.sha256).digest(),
    )
    with pytest.raises(UnauthorizedError) as exc:
        verifier.verify(token)
    assert reason(exc) == "algorithm_not_allowed"


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "e30.e30.", "x" * 9000])
def test_garbage_tokens_are_malformed(hs256: JwtVerifier, token: str) -> None:
    with pytest.raises(UnauthorizedError) as exc:
        hs256.verify(token)
    assert reason(exc) in {"malformed", "algorithm_not_allowed"}


def test_rs256_with_a_pem_public_key(rsa_key: rsa.RSAPrivateKey, now: FakeNow) -> None:
    verifier = JwtVerifier(public_key=pem_public(rsa_key), algorithms=["RS256", "PS256"], now=now)
    token = jwt.encode(claims(scope="cra:admin"), rsa_key, algorithm="RS256")
    assert verifier.verify(token) == Principal("support-bot", "admin", "jwt:support-bot")
    assert verifier.verify(jwt.encode(claims(), rsa_key, algorithm="PS256")).scope == "agent"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(UnauthorizedError) as exc:
        verifier.verify(jwt.encode(claims(), other, algorithm="RS256"))
    assert reason(exc) == "bad_signature"


def test_eddsa_and_es256_with_a_pem_public_key(ed_key: ed25519.Ed25519PrivateKey, now: FakeNow) -> None:
    verifier = JwtVerifier(public_key=pem_public(ed_key), algorithms=["EdDSA"], now=now)
    assert verifier.verify(jwt.encode(claims(), ed_key, algorithm="EdDSA")).subject == "support-bot"
    ec_key = ec.generate_private_key(ec.SECP256R1())
    es = JwtVerifier(public_key=pem_public(ec_key), algorithms=["ES256"], now=now)
    assert es.verify(jwt.encode(claims(), ec_key, algorithm="ES256")).subject == "support-bot"


def test_a_repeated_token_is_verified_once(
    hs256: JwtVerifier, now: FakeNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_decode = jwt.decode

    def counting_decode(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return real_decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    token = hs_token(claims(exp=int(NOW) + 60))
    first = hs256.verify(token)
    for _ in range(100):
        assert hs256.verify(token) is first
    assert calls == [token]
    assert hs256.cache_info() == {"size": 1, "max_size": 10_000}

    now.value = NOW + 60  # the cached entry dies at exp, without a new decode
    with pytest.raises(UnauthorizedError) as exc:
        hs256.verify(token)
    assert reason(exc) == "expired"
    assert calls == [token]
    assert hs256.cache_info()["size"] == 0


def test_failures_are_not_cached(hs256: JwtVerifier) -> None:
    bad = hs_token(claims(), secret=OTHER_SECRET)
    for _ in range(3):
        with pytest.raises(UnauthorizedError):
            hs256.verify(bad)
    assert hs256.cache_info()["size"] == 0


def test_the_cache_is_bounded(now: FakeNow) -> None:
    verifier = JwtVerifier(secret=SECRET, now=now, cache_size=3)
    tokens = [hs_token(claims(sub=f"agent-{i}")) for i in range(10)]
    for token in tokens:
        verifier.verify(token)
    assert verifier.cache_info() == {"size": 3, "max_size": 3}
    assert verifier.verify(tokens[0]).subject == "agent-0"  # evicted entries are verified again


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one"),
        ({"secret": SECRET, "public_key": "x"}, "exactly one"),
        ({"secret": "short"}, "at least 32 bytes"),
        ({"secret": SECRET, "algorithms": ["HS512"]}, "at least 64 bytes"),
        ({"secret": SECRET, "algorithms": []}, "at least one"),
        ({"secret": SECRET, "algorithms": "HS256"}, "sequence"),
        ({"secret": SECRET, "algorithms": ["none"]}, "never accepted"),
        ({"secret": SECRET, "algorithms": ["HS256", "RS256"]}, "need a public key"),
        ({"secret": SECRET, "algorithms": ["XS1"]}, "unknown JWT algorithm"),
        ({"public_key": "not a pem", "algorithms": ["RS256"]}, "not a PEM public key"),
        ({"secret": SECRET, "leeway_seconds": -1}, "leeway"),
        ({"secret": SECRET, "leeway_seconds": float("nan")}, "leeway"),
        ({"secret": SECRET, "leeway_seconds": 3600}, "leeway"),
        ({"secret": SECRET, "audience": ""}, "audience"),
    ],
)
def test_bad_verifier_configuration_is_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        JwtVerifier(**kwargs)


def test_a_public_key_must_fit_every_configured_algorithm(
    rsa_key: rsa.RSAPrivateKey, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    with pytest.raises(ValueError, match="need a shared secret"):
        JwtVerifier(public_key=pem_public(rsa_key), algorithms=["RS256", "HS256"])
    with pytest.raises(ValueError, match="needs an EC public key"):
        JwtVerifier(public_key=pem_public(rsa_key), algorithms=["ES256"])
    with pytest.raises(ValueError, match="Ed25519"):
        JwtVerifier(public_key=pem_public(rsa_key), algorithms=["EdDSA"])
    with pytest.raises(ValueError, match="needs an RSA public key"):
        JwtVerifier(public_key=pem_public(ed_key), algorithms=["RS256"])
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="secp256r1"):
        JwtVerifier(public_key=pem_public(p384), algorithms=["ES256"])
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="at least 2048 bits"):
        JwtVerifier(public_key=pem_public(small), algorithms=["RS256"])
    private_pem = ed_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    with pytest.raises(ValueError, match="not a PEM public key"):
        JwtVerifier(public_key=private_pem, algorithms=["EdDSA"])


# --- Authenticator ----------------------------------------------------------------------------------------


def test_with_auth_off_every_request_is_the_anonymous_admin() -> None:
    authenticator = Authenticator()
    assert not authenticator.enabled
    assert authenticator.authenticate({}) is ANONYMOUS_ADMIN
    assert authenticator.authenticate({"x-api-key": "anything"}) is ANONYMOUS_ADMIN


def test_an_api_key_header_authenticates(store: ApiKeyStore) -> None:
    plaintext, record = store.create("agent", agent_id="support-bot")
    authenticator = Authenticator(api_keys=store)
    assert authenticator.enabled
    expected = Principal("support-bot", "agent", record.key_id)
    assert authenticator.authenticate({"x-api-key": plaintext}) == expected
    # starlette's Headers, as the server passes them: case-insensitive names.
    assert authenticator.authenticate(Headers({"X-API-Key": plaintext})) == expected


def test_a_bearer_token_authenticates(hs256: JwtVerifier) -> None:
    authenticator = Authenticator(jwt=hs256)
    token = hs_token(claims(scope="cra:admin"))
    for header in (f"Bearer {token}", f"bearer  {token} "):
        assert authenticator.authenticate({"authorization": header}).is_admin


def test_an_empty_key_file_still_turns_auth_on(store: ApiKeyStore) -> None:
    authenticator = Authenticator(api_keys=store)
    assert authenticator.enabled
    with pytest.raises(UnauthorizedError) as exc:
        authenticator.authenticate({})
    assert reason(exc) == "missing"
    assert "X-API-Key" in exc.value.message and "Bearer" not in exc.value.message


@pytest.mark.parametrize(
    ("headers", "expected_reason"),
    [
        ({}, "missing"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, "unsupported"),
        ({"authorization": "Bearer"}, "malformed"),
        ({"authorization": "Bearer   "}, "malformed"),
        ({"x-api-key": "cra_short"}, "malformed"),
        ({"x-api-key": "cra_0123456789abcdef_" + "a" * 64, "authorization": "Bearer x"}, "ambiguous"),
    ],
)
def test_bad_headers_are_401(
    store: ApiKeyStore, hs256: JwtVerifier, headers: dict[str, str], expected_reason: str
) -> None:
    with pytest.raises(UnauthorizedError) as exc:
        Authenticator(api_keys=store, jwt=hs256).authenticate(headers)
    assert reason(exc) == expected_reason
    assert exc.value.code == "UNAUTHORIZED" and exc.value.http_status == 401


def test_a_credential_kind_the_server_does_not_accept_is_refused(
    store: ApiKeyStore, hs256: JwtVerifier
) -> None:
    plaintext, _ = store.create("agent", agent_id="a")
    with pytest.raises(UnauthorizedError) as exc:
        Authenticator(jwt=hs256).authenticate({"x-api-key": plaintext})
    assert reason(exc) == "unsupported"
    assert_not_echoed(exc.value, plaintext)
    with pytest.raises(UnauthorizedError) as exc:
        Authenticator(api_keys=store).authenticate({"authorization": f"Bearer {hs_token(claims())}"})
    assert reason(exc) == "unsupported"


def test_require_admin_refuses_the_agent_scope(store: ApiKeyStore) -> None:
    authenticator = Authenticator(api_keys=store)
    agent_key, _ = store.create("agent", agent_id="a")
    admin_key, _ = store.create("admin", name="ops")
    agent = authenticator.authenticate({"x-api-key": agent_key})
    with pytest.raises(ForbiddenError) as exc:
        authenticator.require_admin(agent)
    assert exc.value.code == "FORBIDDEN" and exc.value.http_status == 403
    authenticator.require_admin(authenticator.authenticate({"x-api-key": admin_key}))
    authenticator.require_admin(ANONYMOUS_ADMIN)


# --- configuration from the environment -----------------------------------------------------------------


def test_nothing_configured_is_auth_off() -> None:
    assert not authenticator_from_env({}).enabled
    assert not authenticator_from_env({"UNRELATED": "1"}).enabled


def test_env_with_keys_and_a_secret(keys_path: Path) -> None:
    plaintext, _ = ApiKeyStore(keys_path).create("agent", agent_id="a")
    authenticator = authenticator_from_env(
        {
            "CRA_API_KEYS_FILE": str(keys_path),
            "CRA_JWT_SECRET": SECRET * 2,  # 64 bytes: enough for HS384
            "CRA_JWT_ALGORITHMS": "HS256, HS384",
            "CRA_JWT_AUDIENCE": "cra",
            "CRA_JWT_ISSUER": "idp",
            "CRA_JWT_LEEWAY_SECONDS": "5",
        }
    )
    assert authenticator.api_keys is not None and authenticator.jwt is not None
    assert authenticator.jwt.algorithms == ("HS256", "HS384")
    assert authenticator.jwt.audience == "cra" and authenticator.jwt.issuer == "idp"
    assert authenticator.jwt.leeway_seconds == 5.0
    assert authenticator.authenticate({"x-api-key": plaintext}).subject == "a"


def test_env_with_a_public_key_file(tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey) -> None:
    pem = tmp_path / "jwt.pem"
    pem.write_text(pem_public(ed_key))
    authenticator = authenticator_from_env(
        {"CRA_JWT_PUBLIC_KEY_FILE": str(pem), "CRA_JWT_ALGORITHMS": "EdDSA"}
    )
    assert authenticator.api_keys is None and authenticator.jwt is not None
    token = jwt.encode(claims(exp=2**40), ed_key, algorithm="EdDSA")  # verified on the real clock
    assert authenticator.authenticate({"authorization": f"Bearer {token}"}).subject == "support-bot"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"CRA_API_KEYS_FILE": ""}, "CRA_API_KEYS_FILE"),
        ({"CRA_API_KEYS_FILE": "{missing}"}, "CRA_API_KEYS_FILE"),
        ({"CRA_API_KEYS_FILE": "{broken}"}, "CRA_API_KEYS_FILE"),
        ({"CRA_JWT_SECRET": " "}, "CRA_JWT_SECRET"),
        ({"CRA_JWT_SECRET": "short"}, "CRA_JWT_SECRET"),
        ({"CRA_JWT_SECRET": SECRET, "CRA_JWT_PUBLIC_KEY_FILE": "{pem}"}, "CRA_JWT_PUBLIC_KEY_FILE"),
        ({"CRA_JWT_PUBLIC_KEY_FILE": "{pem}"}, "CRA_JWT_ALGORITHMS"),
        ({"CRA_JWT_PUBLIC_KEY_FILE": "{missing}", "CRA_JWT_ALGORITHMS": "EdDSA"}, "CRA_JWT_PUBLIC_KEY_FILE"),
        ({"CRA_JWT_PUBLIC_KEY_FILE": "{pem}", "CRA_JWT_ALGORITHMS": "RS256"}, "CRA_JWT_PUBLIC_KEY_FILE"),
        ({"CRA_JWT_SECRET": SECRET, "CRA_JWT_ALGORITHMS": "HS256,,HS512"}, "CRA_JWT_ALGORITHMS"),
        ({"CRA_JWT_SECRET": SECRET, "CRA_JWT_ALGORITHMS": "none"}, "CRA_JWT_ALGORITHMS"),
        ({"CRA_JWT_SECRET": SECRET, "CRA_JWT_ALGORITHMS": "HS256,XS9"}, "CRA_JWT_ALGORITHMS"),
        ({"CRA_JWT_SECRET": SECRET, "CRA_JWT_ALGORITHMS": "RS256"}, "CRA_JWT_ALGORITHMS"),
        ({"CRA_JWT_SECRET": SECRET, "CRA_JWT_LEEWAY_SECONDS": "soon"}, "CRA_JWT_LEEWAY_SECONDS"),
        ({"CRA_JWT_SECRET": SECRET, "CRA_JWT_LEEWAY_SECONDS": "-1"}, "CRA_JWT_LEEWAY_SECONDS"),
        ({"CRA_JWT_SECRET": SECRET, "CRA_JWT_LEEWAY_SECONDS": "nan"}, "CRA_JWT_LEEWAY_SECONDS"),
        ({"CRA_JWT_SECRET": SECRET, "CRA_JWT_LEEWAY_SECONDS": "86400"}, "CRA_JWT_LEEWAY_SECONDS"),
        ({"CRA_JWT_SECRET": SECRET, "CRA_JWT_AUDIENCE": ""}, "CRA_JWT_AUDIENCE"),
        ({"CRA_JWT_AUDIENCE": "cra"}, "CRA_JWT_AUDIENCE"),
        ({"CRA_JWT_ISSUER": "idp", "CRA_JWT_LEEWAY_SECONDS": "5"}, "CRA_JWT_ISSUER"),
    ],
)
def test_a_bad_env_value_is_refused_naming_the_variable(
    tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey, env: dict[str, str], variable: str
) -> None:
    pem = tmp_path / "jwt.pem"
    pem.write_text(pem_public(ed_key))
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    paths = {"{missing}": str(tmp_path / "missing"), "{broken}": str(broken), "{pem}": str(pem)}
    resolved = {name: paths.get(value, value) for name, value in env.items()}
    with pytest.raises(ValueError, match=variable) as exc:
        authenticator_from_env(resolved)
    assert SECRET not in str(exc.value)
