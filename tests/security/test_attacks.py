"""The attack suite: every attack goes through API Gateway's steps (authorizer → API function) on the local
runtime and must be refused with the right status; where several checks answer 401, the validator's
reason is asserted too, so each test fails if its own check is removed."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tdev.errors import AuthenticationError
from tdev.security import signing

pytestmark = pytest.mark.slow

REQUEST = {"request": "Design and implement a REST API for todo items", "project_id": "default"}


def _status(
    rt: Any, token: str, method: str = "GET", path: str = "/v1/agents", body: Any = None
) -> tuple[int, Any]:
    return rt.api(method, path, body, headers={"Authorization": f"Bearer {token}"})


def _reason(token: str) -> str:
    from tdev.security import services

    with pytest.raises(AuthenticationError) as caught:
        services.token_validator().validate(token)
    return caught.value.message


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(rt: Any, user: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": rt.issuer.issuer,
        "aud": rt.issuer.audience,
        "sub": user,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "token_use": "access",
        "roles": ["developer"],
    }
    claims.update(overrides)
    return claims


def _signed(rt: Any, claims: dict[str, Any], kid: str | None = None) -> str:
    key = serialization.load_pem_private_key(rt.issuer.private_key_path.read_bytes(), password=None)
    kid = kid or (rt.issuer.directory / "kid").read_text().strip()
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})  # type: ignore[arg-type]


def test_a_valid_developer_token_is_accepted(secured: Any, user: str) -> None:
    status, body = secured.api(
        "POST", "/v1/requests", REQUEST, headers={"Authorization": f"Bearer {secured.token(user)}"}
    )
    assert status == 202, body


def test_no_credentials_is_401(secured: Any) -> None:
    status, body = secured.api("GET", "/v1/agents", authenticate=False)
    assert (status, body["error"]) == (401, "Unauthorized")


def test_alg_none_is_rejected(secured: Any, user: str) -> None:
    token = (
        f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'x'})}.{_b64(_claims(secured, user, roles=['admin']))}."
    )
    assert _status(secured, token)[0] == 401
    assert "algorithm 'none' is not accepted" in _reason(token)


def test_hs256_signed_with_the_public_key_is_rejected(secured: Any, user: str) -> None:
    public_jwk = secured.issuer.jwks()["keys"][0]
    public_pem = jwt.PyJWK(public_jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": public_jwk["kid"]}
    signing_input = f"{_b64(header)}.{_b64(_claims(secured, user, roles=['admin']))}"
    import hashlib
    import hmac

    signature = base64.urlsafe_b64encode(
        hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    )
    token = f"{signing_input}.{signature.rstrip(b'=').decode()}"
    assert _status(secured, token)[0] == 401
    assert "algorithm 'HS256' is not accepted" in _reason(token)


def test_unknown_kid_is_rejected(secured: Any, user: str) -> None:
    token = _signed(secured, _claims(secured, user), kid="not-a-published-kid")
    assert _status(secured, token)[0] == 401
    assert "unknown signing key id" in _reason(token)


def test_a_token_signed_by_another_key_under_our_kid_is_rejected(secured: Any, user: str) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    kid = (secured.issuer.directory / "kid").read_text().strip()
    token = jwt.encode(_claims(secured, user), other, algorithm="ES256", headers={"kid": kid})  # type: ignore[arg-type]
    assert _status(secured, token)[0] == 401
    assert "Signature verification failed" in _reason(token)


def test_tampered_payload_is_rejected(secured: Any, user: str) -> None:
    header, _, signature = secured.token(user, ("viewer",)).split(".")
    forged = f"{header}.{_b64(_claims(secured, user, roles=['admin']))}.{signature}"
    assert _status(secured, forged)[0] == 401
    assert "Signature verification failed" in _reason(forged)


def test_expired_token_is_rejected(secured: Any, user: str) -> None:
    now = int(time.time())
    token = _signed(secured, _claims(secured, user, iat=now - 4000, nbf=now - 4000, exp=now - 400))
    assert _status(secured, token)[0] == 401
    assert "expired" in _reason(token)


def test_expired_within_the_clock_skew_is_still_accepted(secured: Any, user: str) -> None:
    now = int(time.time())
    token = _signed(secured, _claims(secured, user, iat=now - 600, nbf=now - 600, exp=now - 5))
    assert _status(secured, token)[0] == 200


def test_nbf_in_the_future_is_rejected(secured: Any, user: str) -> None:
    now = int(time.time())
    token = _signed(secured, _claims(secured, user, nbf=now + 600, exp=now + 1200))
    assert _status(secured, token)[0] == 401
    assert "not valid yet" in _reason(token)


def test_iat_in_the_future_is_rejected(secured: Any, user: str) -> None:
    now = int(time.time())
    token = _signed(secured, _claims(secured, user, iat=now + 600, nbf=now, exp=now + 1200))
    assert _status(secured, token)[0] == 401
    assert "not valid yet" in _reason(token)


def test_wrong_issuer_is_rejected(secured: Any, user: str) -> None:
    token = _signed(secured, _claims(secured, user, iss="https://evil.example/issuer"))
    assert _status(secured, token)[0] == 401
    assert "another issuer" in _reason(token)


def test_wrong_audience_is_rejected(secured: Any, user: str) -> None:
    token = _signed(secured, _claims(secured, user, aud="some-other-api"))
    assert _status(secured, token)[0] == 401
    assert "another audience" in _reason(token)


def test_overlong_lifetime_is_rejected(secured: Any, user: str) -> None:
    now = int(time.time())
    token = _signed(secured, _claims(secured, user, exp=now + 30 * 86_400))
    assert _status(secured, token)[0] == 401
    assert "lifetime" in _reason(token)


def test_revoked_jti_is_rejected(secured: Any, user: str) -> None:
    token = secured.token(user)
    assert _status(secured, token)[0] == 200
    claims = jwt.decode(token, options={"verify_signature": False})
    jti = claims["jti"]
    admin = secured.token("admin-1", ("admin",))
    status, body = _status(
        secured, admin, "POST", "/v1/tokens/revoke", {"jti": jti, "expires_at": claims["exp"]}
    )
    assert status == 200 and 3500 < body["ttl_seconds"] <= 3600  # the Redis key lives as long as the token
    assert _status(secured, token)[0] == 401
    assert "revoked" in _reason(token)
    # The durable copy survives a Redis flush: restored, the token stays revoked.
    from tdev import cache
    from tdev.security import services

    cache.redis_client().delete(f"tdev:revoked:jti:{jti}")
    assert services.revocations().restore() >= 1
    assert _status(secured, token)[0] == 401


def test_only_admins_may_revoke(secured: Any, user: str) -> None:
    status, body = _status(secured, secured.token(user), "POST", "/v1/tokens/revoke", {"jti": "a" * 32})
    assert (status, body["error"]) == (403, "Forbidden")


def test_token_of_a_deleted_user_is_rejected(secured: Any, user: str) -> None:
    token = secured.token(user)
    assert _status(secured, token)[0] == 200
    admin = secured.token("admin-2", ("admin",))
    assert _status(secured, admin, "POST", f"/v1/principals/{user}/disable")[0] == 200
    assert _status(secured, token)[0] == 401
    assert "no longer exists" in _reason(token)


def _signing_key(rt: Any) -> dict[str, Any]:
    admin = rt.token("admin-3", ("admin",))
    status, created = _status(
        rt, admin, "POST", "/v1/api-keys", {"name": "ci", "roles": ["developer"], "signing_required": True}
    )
    assert status == 201, created
    return dict(created)


def _signed_call(rt: Any, created: dict[str, Any], body: dict[str, Any], **sign_args: Any) -> tuple[int, Any]:
    raw = json.dumps(body)
    signed_body = sign_args.pop("signed_body", raw).encode()
    headers = signing.sign(created["signing_secret"], "POST", "/v1/requests", signed_body, **sign_args)
    return rt.api("POST", "/v1/requests", raw_body=raw, headers={"X-Api-Key": created["api_key"], **headers})


def test_a_correctly_signed_request_is_accepted_once_and_its_replay_rejected(secured: Any) -> None:
    created = _signing_key(secured)
    nonce = uuid.uuid4().hex
    assert _signed_call(secured, created, REQUEST, nonce=nonce)[0] == 202
    status, body = _signed_call(secured, created, REQUEST, nonce=nonce)
    assert (status, body["error"]) == (401, "Unauthorized") and "replayed" in body["message"]


def test_a_stale_timestamp_is_rejected(secured: Any) -> None:
    created = _signing_key(secured)
    status, body = _signed_call(
        secured, created, REQUEST, nonce=uuid.uuid4().hex, timestamp=int(time.time()) - 301
    )
    assert status == 401 and "outside ±300 s" in body["message"]


def test_a_wrong_body_hash_is_rejected(secured: Any) -> None:
    created = _signing_key(secured)
    status, body = _signed_call(
        secured,
        created,
        REQUEST,
        nonce=uuid.uuid4().hex,
        signed_body=json.dumps({**REQUEST, "request": "other"}),
    )
    assert status == 401 and "signature does not match" in body["message"]


def test_an_unsigned_request_with_a_signing_key_is_rejected(secured: Any) -> None:
    created = _signing_key(secured)
    status, body = secured.api("POST", "/v1/requests", REQUEST, headers={"X-Api-Key": created["api_key"]})
    assert status == 401 and "requires signed requests" in body["message"]


def test_tampered_ciphertext_is_rejected(secured: Any) -> None:
    from tdev.crypto import DecryptionError
    from tdev.security import services

    created = _signing_key(secured)
    table = __import__("tdev.aws", fromlist=["table"]).table("tdev-local")
    key = {"PK": f"APIKEY#{created['key_id']}", "SK": "APIKEY"}
    envelope = bytearray(table.get_item(Key=key)["Item"]["metadata"].value)
    envelope[-1] ^= 0x01
    table.update_item(
        Key=key, UpdateExpression="SET metadata = :m", ExpressionAttributeValues={":m": bytes(envelope)}
    )
    with pytest.raises(DecryptionError, match="GCM tag"):
        services.api_keys().metadata(created["key_id"])


def test_ciphertext_under_another_encryption_context_is_rejected(secured: Any) -> None:
    """Moving one key's encrypted metadata onto another key's item must not decrypt (context = item key)."""
    from tdev.crypto import DecryptionError
    from tdev.security import services

    first, second = _signing_key(secured), _signing_key(secured)
    table = __import__("tdev.aws", fromlist=["table"]).table("tdev-local")
    stolen = table.get_item(Key={"PK": f"APIKEY#{first['key_id']}", "SK": "APIKEY"})["Item"]["metadata"]
    table.update_item(
        Key={"PK": f"APIKEY#{second['key_id']}", "SK": "APIKEY"},
        UpdateExpression="SET metadata = :m",
        ExpressionAttributeValues={":m": stolen},
    )
    services.api_keys().cipher.cache.clear()
    with pytest.raises(DecryptionError):
        services.api_keys().metadata(second["key_id"])


def test_an_over_limit_body_is_413(secured: Any, user: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tdev.settings import get_settings

    monkeypatch.setenv("TDEV_MAX_BODY_BYTES", "2048")
    get_settings.cache_clear()
    try:
        status, body = secured.api(
            "POST",
            "/v1/requests",
            {"request": "x" * 4096},
            headers={"Authorization": f"Bearer {secured.token(user)}"},
        )
    finally:
        monkeypatch.delenv("TDEV_MAX_BODY_BYTES")
        get_settings.cache_clear()
    assert (status, body["error"], body["field"]) == (413, "PayloadTooLarge", "body")


def test_the_101st_request_in_the_window_is_429_with_retry_after(secured: Any, user: str) -> None:
    token = secured.token(user, ("viewer",))
    statuses = [
        secured.http("GET", "/v1/agents", {"Authorization": f"Bearer {token}"}, None)["statusCode"]
        for _ in range(100)
    ]
    assert set(statuses) == {200}
    response = secured.http("GET", "/v1/agents", {"Authorization": f"Bearer {token}"}, None)
    assert response["statusCode"] == 429
    assert 0 < int(response["headers"]["Retry-After"]) <= 900  # when the first of the 100 ages out
    assert json.loads(response["body"])["error"] == "RateLimited"
    # Another principal has its own bucket.
    assert _status(secured, secured.token(f"{user}-other", ("viewer",)))[0] == 200


def test_strict_routes_allow_10_per_window(secured: Any) -> None:
    admin = secured.token(f"admin-{uuid.uuid4().hex[:6]}", ("admin",))
    statuses = [
        _status(secured, admin, "POST", "/v1/tokens/revoke", {"jti": uuid.uuid4().hex})[0] for _ in range(11)
    ]
    assert statuses == [200] * 10 + [429]


def test_an_api_key_has_its_own_per_minute_limit(secured: Any) -> None:
    admin = secured.token("admin-4", ("admin",))
    created = _status(
        secured, admin, "POST", "/v1/api-keys", {"name": "bot", "roles": ["viewer"], "rate_limit": "3/60"}
    )[1]
    statuses = [
        secured.api("GET", "/v1/agents", headers={"X-Api-Key": created["api_key"]})[0] for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]


def test_every_answer_carries_the_security_headers(secured: Any, user: str) -> None:
    for response in (
        secured.http("GET", "/health", {}, None),
        secured.http("GET", "/v1/agents", {}, None),
        secured.http("GET", "/v1/agents", {"Authorization": f"Bearer {secured.token(user)}"}, None),
    ):
        headers = response["headers"]
        assert headers["Strict-Transport-Security"].startswith("max-age=")
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert "default-src 'none'" in headers["Content-Security-Policy"]


def test_an_id_token_is_not_an_access_token(secured: Any, user: str) -> None:
    for claims in (
        _claims(secured, user, token_use="id"),
        {k: v for k, v in _claims(secured, user).items() if k != "token_use"},
    ):
        token = _signed(secured, claims)
        assert _status(secured, token)[0] == 401
        assert "only access tokens are accepted (token_use)" in _reason(token)
