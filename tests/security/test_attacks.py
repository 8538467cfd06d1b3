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


# ------------------------------------------------------------------------- hostile input (issue 13)
SECURITY_HEADER_NAMES = ("Strict-Transport-Security", "X-Content-Type-Options", "Content-Security-Policy")


def _answer(response: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of a proxy response, after checking it carries the security headers."""
    for name in SECURITY_HEADER_NAMES:
        assert name in response["headers"], (name, response)
    return int(response["statusCode"]), json.loads(response["body"])


def _forged_header_token(header: dict[str, Any]) -> str:
    signature = base64.urlsafe_b64encode(b"s" * 64).rstrip(b"=").decode()
    return f"{_b64(header)}.{_b64({'sub': 'x'})}.{signature}"


@pytest.mark.parametrize("alg", [["ES256"], {"ES256": True}, 256, None])
def test_a_jwt_header_whose_alg_is_not_a_string_is_401(secured: Any, alg: Any) -> None:
    token = _forged_header_token({"alg": alg, "kid": "k"})
    status, body = _answer(secured.http("GET", "/v1/agents", {"Authorization": f"Bearer {token}"}, None))
    assert (status, body["error"]) == (401, "Unauthorized")
    assert "is not accepted (RS256 or ES256 only)" in _reason(token)


@pytest.fixture
def records() -> Any:
    """Every log record the functions write during the test (their Powertools logger, in process)."""
    import logging

    from tdev.observability import logger

    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    handler = Keep(level=logging.DEBUG)
    logger._logger.addHandler(handler)  # the standard logger Powertools writes through
    try:
        yield captured
    finally:
        logger._logger.removeHandler(handler)


def _logged(records: list[Any]) -> str:
    return "\n".join(json.dumps(vars(r), default=str) for r in records)


def test_a_rejected_tokens_kid_is_logged_bounded_and_escaped(secured: Any, records: list[Any]) -> None:
    kid = 'evil"}\n{"level":"INFO","message":"forged line"' + "k" * 5000
    token = _forged_header_token({"alg": "ES256", "kid": kid})
    assert secured.http("GET", "/v1/agents", {"Authorization": f"Bearer {token}"}, None)["statusCode"] == 401
    reasons = [r.reason for r in records if getattr(r, "security_event", "") == "authentication_failed"]
    assert reasons and all("\n" not in r and len(r) <= 240 for r in reasons)
    assert "kkkkkkkkkk" * 30 not in _logged(records)
    # Within the validator's bound, a kid is quoted escaped: no newline reaches a log line.
    short = _forged_header_token({"alg": "ES256", "kid": "a\nb\x1b[31m"})
    assert "a\\nb\\x1b[31m" in _reason(short)


HOSTILE_BODIES = {
    "not JSON": "this is not json",
    "nested 5,000 levels": "[" * 5000 + "]" * 5000,
    "an integer of 5,000 digits": '{"request": ' + "9" * 5000 + "}",
    "NaN": '{"request": NaN}',
}


def _every_route() -> list[tuple[str, str]]:
    """Every route of the API with its parameters filled with well-formed values."""
    from functions.api.handler import app

    document = json.loads(app.get_openapi_json_schema(title="t", version="0"))
    values = {
        "key_id": "0123456789abcdef",
        "principal": "someone",
        "name": "role-x",
        "session_id": "ses-0123abcd",
        "execution_id": "00000000-0000-4000-8000-000000000000",
        "project_id": "proj-x",
        "key": "default_model",
        "change_id": "0123456789abcdef",
        "agent_name": "DocsAgent",
        "signature": "0123456789abcdef",
        "alert_id": "0123456789abcdef0123",
        "user_id": "someone",
    }
    routes = []
    for path, methods in document["paths"].items():
        for method in methods:
            routes.append((method.upper(), path.format(**values)))
    assert len(routes) >= 20
    return routes


@pytest.mark.parametrize("kind", sorted(HOSTILE_BODIES))
def test_a_malformed_body_is_400_naming_the_body_on_every_route(secured: Any, kind: str) -> None:
    for method, path in _every_route():
        admin = secured.token(f"admin-{uuid.uuid4().hex[:8]}", ("admin",))  # its own strict-route bucket
        headers = {"Authorization": f"Bearer {admin}"}
        status, body = _answer(secured.http(method, path, headers, HOSTILE_BODIES[kind]))
        assert (status, body.get("field")) == (400, "body"), (method, path, body)


@pytest.mark.parametrize(
    ("content_type", "route"),
    [
        ("text/plain", ("POST", "/v1/requests")),
        ("multipart/form-data", ("POST", "/v1/requests")),
        ("multipart/form-data", ("PUT", "/v1/roles/role-x")),
        ("application/x-www-form-urlencoded", ("POST", "/v1/sessions")),
    ],
)
def test_a_body_in_another_media_type_is_415(secured: Any, content_type: str, route: tuple[str, str]) -> None:
    admin = secured.token(f"admin-{uuid.uuid4().hex[:8]}", ("admin",))
    headers = {"Authorization": f"Bearer {admin}", "Content-Type": content_type}
    status, body = _answer(secured.http(*route, headers, json.dumps(REQUEST)))
    assert (status, body["error"], body["field"]) == (415, "UnsupportedMediaType", "Content-Type")


def test_revoking_with_an_expiry_past_any_token_is_400(secured: Any) -> None:
    admin = secured.token(f"admin-{uuid.uuid4().hex[:8]}", ("admin",))
    status, body = _status(
        secured, admin, "POST", "/v1/tokens/revoke", {"jti": "a" * 32, "expires_at": 10**19}
    )
    assert (status, body["field"]) == (400, "expires_at")


@pytest.mark.parametrize("timestamp", ["\u00b2" * 10, "\u0661\u0667" + "\u0660" * 8, "1700000000\n"])
def test_a_signing_timestamp_of_non_ascii_digits_is_401_naming_it(secured: Any, timestamp: str) -> None:
    created = _signing_key(secured)
    raw = json.dumps(REQUEST)
    headers = signing.sign(
        created["signing_secret"], "POST", "/v1/requests", raw.encode(), nonce=uuid.uuid4().hex
    )
    headers["X-Tdev-Timestamp"] = timestamp
    status, body = secured.api(
        "POST", "/v1/requests", raw_body=raw, headers={"X-Api-Key": created["api_key"], **headers}
    )
    assert (status, body["field"]) == (401, "X-Tdev-Timestamp")


@pytest.mark.parametrize(
    "route", [("POST", "/v1/requests"), ("PUT", "/v1/roles/role-x"), ("POST", "/v1/api-keys")]
)
def test_a_viewer_is_refused_before_the_body_is_read(secured: Any, route: tuple[str, str]) -> None:
    viewer = secured.token(f"viewer-{uuid.uuid4().hex[:8]}", ("viewer",))
    for raw in HOSTILE_BODIES.values():
        status, body = _answer(secured.http(*route, {"Authorization": f"Bearer {viewer}"}, raw))
        assert (status, body["error"]) == (403, "Forbidden")


def test_calls_with_invalid_bodies_count_against_the_rate_limit(secured: Any) -> None:
    viewer = secured.token(f"viewer-{uuid.uuid4().hex[:8]}", ("viewer",))
    statuses = [
        secured.http("POST", "/v1/requests", {"Authorization": f"Bearer {viewer}"}, "not json")["statusCode"]
        for _ in range(110)
    ]
    assert statuses == [403] * 100 + [429] * 10


def test_query_strings_reach_the_handler(secured: Any, user: str) -> None:
    headers = {"Authorization": f"Bearer {secured.token(user, ('viewer',))}"}
    status, body = _answer(secured.http("GET", "/v1/models?provider=bedrock", headers, None))
    assert status == 200 and [p["name"] for p in body["providers"]] == ["bedrock"]
    status, body = _answer(secured.http("GET", "/v1/models", headers, None))
    assert len(body["providers"]) > 1


def test_an_overlong_correlation_id_is_400_at_the_edge(secured: Any, user: str) -> None:
    headers = {"Authorization": f"Bearer {secured.token(user)}", "X-Correlation-Id": "c" * 201}
    status, body = _answer(secured.http("POST", "/v1/requests", headers, json.dumps(REQUEST)))
    assert (status, body["field"]) == (400, "X-Correlation-Id")


def test_the_longest_accepted_correlation_id_runs_to_the_end_and_the_request_text_is_never_logged(
    secured: Any, user: str, records: list[Any]
) -> None:
    marker = f"zebra{uuid.uuid4().hex[:10]}"
    request = {**REQUEST, "request": f"Design and implement a REST API for {marker} items"}
    headers = {"Authorization": f"Bearer {secured.token(user)}", "X-Correlation-Id": "c" * 200}
    status, body = _answer(secured.http("POST", "/v1/requests", headers, json.dumps(request)))
    assert status == 202, body
    execution_id, deadline = body["execution_id"], time.monotonic() + 240
    while secured.workflow_status(execution_id) == "RUNNING":
        assert time.monotonic() < deadline, "the workflow did not end"
        time.sleep(0.5)
    # Read as its submitter: in the shared project nobody else but an admin sees an execution.
    reader = {"Authorization": headers["Authorization"]}
    status, view = secured.api("GET", f"/v1/executions/{execution_id}", headers=reader)
    assert status == 200 and view["status"] in ("SUCCEEDED", "DEGRADED"), view
    planned = [r for r in records if r.getMessage() == "request planned"]
    assert planned and planned[0].request_chars == len(request["request"])
    assert marker not in _logged(records)
